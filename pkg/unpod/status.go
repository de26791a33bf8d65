package unpod

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Status spellings are compared by their key: lower-cased ASCII with
// '-', '_', spaces and tabs removed, so "No-Answer", "no_answer",
// "noanswer" and "no answer" are one spelling.
//
// The default mapping below covers the spellings telephony APIs use
// (Unpod's three and no-answer, and those of Twilio, Vonage, Plivo,
// Exotel and SIP). The rule behind each choice: "failed" means the call
// could not be placed or carried (a technical fault, what the failed-call
// alerts watch for); "missed" means the call reached the callee's side and
// was not answered by a person, for whatever reason on that side or the
// caller's; "completed" means it was answered.
//
//   - completed: completed, complete, answered.
//   - missed: missed; no-answer, noanswer, no_answer, unanswered, timeout
//     and timed-out (it rang out); busy (the callee's line was engaged: a
//     normal outcome, not a fault); voicemail (a machine took it, no
//     person did); declined (the callee refused it); canceled and
//     cancelled (the caller gave up before an answer); abandoned (the
//     caller hung up while queued).
//   - failed: failed, failure, error; rejected (Vonage, Plivo and carriers
//     use it for a call refused by the platform or the network before it
//     rang, unlike declined).
//
// In-progress statuses (queued, initiated, ringing, in-progress) are not
// outcomes and are deliberately not mapped: a record seen in one of them
// cannot be normalised, so the producer dead-letters it and publishes the
// call's final record when it comes. Config.StatusMap adds spellings or
// overrides any of these.
var defaultStatuses = map[string]string{
	"completed": StatusCompleted, "complete": StatusCompleted, "answered": StatusCompleted,

	"missed": StatusMissed, "noanswer": StatusMissed, "unanswered": StatusMissed,
	"timeout": StatusMissed, "timedout": StatusMissed, "busy": StatusMissed,
	"voicemail": StatusMissed, "declined": StatusMissed, "canceled": StatusMissed,
	"cancelled": StatusMissed, "abandoned": StatusMissed,

	"failed": StatusFailed, "failure": StatusFailed, "error": StatusFailed, "rejected": StatusFailed,
}

// ErrUnknownStatus is wrapped by the decoding error of a record whose
// call_status neither the default mapping nor Config.StatusMap knows.
var ErrUnknownStatus = errors.New("unknown call_status")

// statusError names the unknown spelling.
type statusError struct{ status string }

func (e *statusError) Error() string { return fmt.Sprintf("unknown call_status %q", e.status) }
func (e *statusError) Unwrap() error { return ErrUnknownStatus }

// UnknownStatus returns the call_status spelling that err (a record's
// decoding error) could not map, and whether err is such an error.
func UnknownStatus(err error) (string, bool) {
	var se *statusError
	if errors.As(err, &se) {
		return se.status, true
	}
	return "", false
}

// statusKey returns the comparison key of a spelling.
func statusKey(s string) string {
	key := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '-' || c == '_' || c == ' ' || c == '\t':
		case c >= 'A' && c <= 'Z':
			key = append(key, c+'a'-'A')
		default:
			key = append(key, c)
		}
	}
	return string(key)
}

// statusTable is the default mapping with a Config.StatusMap over it. The
// zero value (and nil) is the default mapping alone.
type statusTable struct {
	extra map[string]string // key -> normalised status
}

// normalize maps a spelling to completed, missed or failed.
func (t *statusTable) normalize(s string) (string, bool) {
	switch s {
	case StatusCompleted, StatusMissed, StatusFailed:
		if t == nil || len(t.extra) == 0 {
			return s, true // the usual spellings, without building a key
		}
	}
	key := statusKey(s)
	if t != nil {
		if st, ok := t.extra[key]; ok {
			return st, true
		}
	}
	st, ok := defaultStatuses[key]
	return st, ok
}

// NormalizeStatus maps the API's status spellings to completed, missed or
// failed with the default mapping (see defaultStatuses above for each
// choice). It reports false for a status it does not know.
func NormalizeStatus(s string) (string, bool) { return (*statusTable)(nil).normalize(s) }

// StatusMap adds call_status spellings to the default mapping, or changes
// it: each entry is "spelling=status" with status completed, missed or
// failed, and the spelling compared as the defaults are (case, '-', '_'
// and spaces do not count). In YAML it is a mapping, e.g.
// {busy: failed, ringing_out: missed}; in the environment a comma-separated
// list, e.g. UNPOD_STATUS_MAP=busy=failed,ringing_out=missed.
type StatusMap []string

// UnmarshalYAML reads a mapping of spelling to status (or a list of
// "spelling=status" entries).
func (m *StatusMap) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		var kv map[string]string
		if err := n.Decode(&kv); err != nil {
			return err
		}
		out := make(StatusMap, 0, len(kv))
		for k, v := range kv {
			out = append(out, k+"="+v)
		}
		slices.Sort(out)
		*m = out
		return nil
	case yaml.SequenceNode:
		var list []string
		if err := n.Decode(&list); err != nil {
			return err
		}
		*m = list
		return nil
	}
	return fmt.Errorf("line %d: status_map: want a mapping of spelling to status, e.g. {busy: missed}", n.Line)
}

// MarshalYAML writes the mapping form.
func (m StatusMap) MarshalYAML() (any, error) {
	out := make(map[string]string, len(m))
	for _, e := range m {
		k, v, _ := strings.Cut(e, "=")
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out, nil
}

// compile checks every entry and returns the table, or an error naming
// each bad entry.
func (m StatusMap) compile() (*statusTable, error) {
	t := &statusTable{extra: make(map[string]string, len(m))}
	var errs []error
	for _, e := range m {
		k, v, ok := strings.Cut(e, "=")
		k, v = strings.TrimSpace(k), strings.ToLower(strings.TrimSpace(v))
		key := statusKey(k)
		switch {
		case !ok || key == "":
			errs = append(errs, fmt.Errorf("status_map entry %q: want spelling=status", e))
		case v != StatusCompleted && v != StatusMissed && v != StatusFailed:
			errs = append(errs, fmt.Errorf("status_map entry %q: status %q: want completed, missed or failed", e, v))
		default:
			t.extra[key] = v
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("unpod: %w", err)
	}
	return t, nil
}
