package alerting

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/callstream/callstream/schemas"
)

// Group labels a rule may group by. The org label is always part of a group.
const (
	LabelOrg               = "org"
	LabelSourceNumber      = "source_number"
	LabelDestinationNumber = "destination_number"
)

// Rule kinds. A rise (the default) fires on too many matching calls; an
// absence on none while some were expected; a drop on a rate fallen below
// a share of its baseline; org_paused on an org the producer has paused
// after failed polls.
const (
	KindRise      = "rise"
	KindAbsence   = "absence"
	KindDrop      = "drop"
	KindOrgPaused = "org_paused"
)

// Config is the alerting consumer's configuration section.
type Config struct {
	Grace              time.Duration  `yaml:"grace" env:"CALLSTREAM_ALERTING_GRACE" doc:"How far (in event time) a call may arrive behind the newest one and still be counted; keep it above the producer's poll interval."`
	EvaluationInterval time.Duration  `yaml:"evaluation_interval" doc:"Event-time step at which rules are evaluated; windows are whole multiples of it."`
	IdleTimeout        time.Duration  `yaml:"idle_timeout" doc:"Wall-clock silence after which a partition no longer holds the watermark back; keep it above the producer's poll interval."`
	StartupHold        time.Duration  `yaml:"startup_hold" doc:"Wall time after the first call a process sees during which the evaluation clock stands still, so every org's catch-up is counted before any step is evaluated; 0 turns it off (replays fed with a constant clock)."`
	Source             string         `yaml:"source" doc:"The ce_source of published alert events."`
	Rules              []Rule         `yaml:"rules" doc:"Alerting rules; the defaults are missed-call-spike, failed-call-burst, call-absence, call-volume-drop and org-paused."`
	Notifiers          NotifierConfig `yaml:"notifiers" doc:"Where notifications go besides the alerts topic."`
	// StatusPageURL is the base URL of the process's status page, set by
	// the binary from http.external_url: an alert's link (the Alertmanager
	// generatorURL) is <StatusPageURL>/#alert-<alert_id>. Empty sends none.
	StatusPageURL string `yaml:"-"`

	// Clock is the wall clock (idle sources, the startup hold, org_paused
	// rules, the future-call check); nil means time.Now. Embedded mode on
	// a simulated clock sets it to the producer's.
	Clock func() time.Time `yaml:"-"`
}

// Rule is one alerting rule, applied separately to every group of calls.
// Conditions that are set (non-zero) must all hold; at least one must be set.
type Rule struct {
	Name    string        `yaml:"name" doc:"Unique, stable name; the alertname in Alertmanager."`
	Kind    string        `yaml:"kind" doc:"rise (default: too many matching calls), absence (none while the baseline expects some), drop (rate below baseline_factor times the baseline) or org_paused (the producer paused the org)."`
	Match   Match         `yaml:"match" doc:"Which calls count towards the rule."`
	GroupBy []string      `yaml:"group_by" doc:"Labels that split calls into groups: org (always), destination_number, source_number."`
	Window  time.Duration `yaml:"window" doc:"Event-time window over which calls are counted."`

	MinCount       int           `yaml:"min_count" doc:"Fire only when at least this many matching calls are in the window."`
	MinRatio       float64       `yaml:"min_ratio" doc:"Fire only when matching calls are at least this share of the group's calls in the window."`
	MinVolume      int           `yaml:"min_volume" doc:"The ratio condition holds only when the group had at least this many calls in the window."`
	BaselineFactor float64       `yaml:"baseline_factor" doc:"rise: fire only when the matching rate in the window is at least this many times the rate in the baseline window before it; drop: fire when it is below this many times that rate (in (0, 1))."`
	BaselineWindow time.Duration `yaml:"baseline_window" doc:"The trailing window the baseline rate is taken over."`
	MinExpected    float64       `yaml:"min_expected" doc:"absence and drop: fire only when the baseline rate expects at least this many matching calls in the window."`

	For            time.Duration `yaml:"for" doc:"How long the conditions must hold (pending) before the alert fires."`
	KeepFiringFor  time.Duration `yaml:"keep_firing_for" doc:"How long a firing alert stays firing after its conditions stopped holding."`
	RepeatInterval time.Duration `yaml:"repeat_interval" doc:"How often a reminder is sent while the alert fires; 0 sends none."`

	Labels      map[string]string `yaml:"labels" doc:"Labels added to every notification of the rule."`
	Annotations map[string]string `yaml:"annotations" doc:"Annotations (summary, description, runbook_url) added to every notification."`
}

// Match selects the calls a rule counts. Empty lists match anything.
//
// CallStatus and EndReason select the calls that count ("matching calls");
// CallType and Numbers also narrow the calls the ratio is taken over, so a
// rule on missed inbound calls compares them with all inbound calls.
type Match struct {
	CallStatus []string `yaml:"call_status" doc:"Call statuses that count: completed, missed, failed."`
	CallType   []string `yaml:"call_type" doc:"Call types the rule looks at: inbound, outbound."`
	EndReason  []string `yaml:"end_reason" doc:"End reasons that count, e.g. no_answer."`
	Numbers    []string `yaml:"numbers" doc:"Phone numbers the rule looks at (source or destination)."`
}

// DefaultConfig returns the configuration with the default rules.
func DefaultConfig() Config {
	return Config{
		Grace:              time.Minute,
		EvaluationInterval: 10 * time.Second,
		IdleTimeout:        time.Minute,
		StartupHold:        time.Minute,
		Source:             "callstream/alerting",
		Rules:              DefaultRules(),
		Notifiers:          DefaultNotifierConfig(),
	}
}

// DefaultRules returns missed-call-spike, failed-call-burst, call-absence,
// call-volume-drop and org-paused, documented in the package documentation.
func DefaultRules() []Rule {
	return []Rule{
		{
			Name:           "missed-call-spike",
			Match:          Match{CallStatus: []string{schemas.StatusMissed}, CallType: []string{schemas.CallInbound}},
			GroupBy:        []string{LabelOrg},
			Window:         3 * time.Minute,
			MinCount:       8,
			MinRatio:       0.5,
			MinVolume:      15,
			BaselineFactor: 3,
			BaselineWindow: time.Hour,
			For:            30 * time.Second,
			KeepFiringFor:  time.Minute,
			RepeatInterval: time.Hour,
			Labels:         map[string]string{"severity": "warning"},
			Annotations: map[string]string{
				"summary":     "Inbound calls are going unanswered",
				"description": "Half or more of the inbound calls of the last 3 minutes were missed (at least 8 of at least 15), at 3 times the missed-call rate of the hour before.",
			},
		},
		{
			Name:           "failed-call-burst",
			Match:          Match{CallStatus: []string{schemas.StatusFailed}},
			GroupBy:        []string{LabelOrg},
			Window:         2 * time.Minute,
			MinCount:       6,
			MinRatio:       0.3,
			MinVolume:      10,
			For:            20 * time.Second,
			KeepFiringFor:  time.Minute,
			RepeatInterval: 30 * time.Minute,
			Labels:         map[string]string{"severity": "critical"},
			Annotations: map[string]string{
				"summary":     "Calls are failing",
				"description": "30% or more of the calls of the last 2 minutes failed (at least 6 of at least 10).",
			},
		},
		{
			Name:           "call-absence",
			Kind:           KindAbsence,
			GroupBy:        []string{LabelOrg},
			Window:         5 * time.Minute,
			MinExpected:    30,
			BaselineWindow: time.Hour,
			KeepFiringFor:  time.Minute,
			RepeatInterval: time.Hour,
			Labels:         map[string]string{"severity": "critical"},
			Annotations: map[string]string{
				"summary":     "No calls are coming in",
				"description": "Not one call in the last 5 minutes, where the hour before expected at least 30: the telephony side may be down.",
			},
		},
		{
			Name:           "call-volume-drop",
			Kind:           KindDrop,
			GroupBy:        []string{LabelOrg},
			Window:         10 * time.Minute,
			BaselineFactor: 0.25,
			MinExpected:    60,
			BaselineWindow: time.Hour,
			For:            time.Minute,
			KeepFiringFor:  time.Minute,
			RepeatInterval: time.Hour,
			Labels:         map[string]string{"severity": "warning"},
			Annotations: map[string]string{
				"summary":     "Call volume has collapsed",
				"description": "The calls of the last 10 minutes are fewer than a quarter of the rate of the hour before (which expected at least 60).",
			},
		},
		{
			Name:           "org-paused",
			Kind:           KindOrgPaused,
			GroupBy:        []string{LabelOrg},
			For:            2 * time.Minute,
			KeepFiringFor:  time.Minute,
			RepeatInterval: time.Hour,
			Labels:         map[string]string{"severity": "critical"},
			Annotations: map[string]string{
				"summary":     "The producer cannot read this org's calls",
				"description": "Polls of the Unpod API for this org have failed for 2 minutes; its calls are not being read, so no other rule can see them.",
			},
		},
	}
}

// Validate reports the first configuration error, naming the rule and field.
func (c *Config) Validate() error {
	if c.Grace < 0 {
		return fmt.Errorf("alerting: grace %s is negative", c.Grace)
	}
	if c.EvaluationInterval <= 0 {
		return fmt.Errorf("alerting: evaluation_interval %s must be positive", c.EvaluationInterval)
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("alerting: idle_timeout %s must be positive", c.IdleTimeout)
	}
	if c.StartupHold < 0 {
		return fmt.Errorf("alerting: startup_hold %s is negative", c.StartupHold)
	}
	seen := map[string]bool{}
	for i := range c.Rules {
		r := &c.Rules[i]
		if r.Name == "" {
			return fmt.Errorf("alerting: rule %d has no name", i)
		}
		if seen[r.Name] {
			return fmt.Errorf("alerting: rule name %q is used twice", r.Name)
		}
		seen[r.Name] = true
		if err := r.validate(c.EvaluationInterval); err != nil {
			return fmt.Errorf("alerting: rule %q: %w", r.Name, err)
		}
	}
	return c.Notifiers.validate()
}

func (r *Rule) validate(step time.Duration) error {
	if r.MinCount < 0 || r.MinVolume < 0 || r.MinRatio < 0 || r.MinRatio > 1 || r.BaselineFactor < 0 || r.MinExpected < 0 {
		return errors.New("min_count, min_volume, min_expected and baseline_factor must not be negative, min_ratio must be in [0, 1]")
	}
	if r.For < 0 || r.KeepFiringFor < 0 || r.RepeatInterval < 0 {
		return errors.New("for, keep_firing_for and repeat_interval must not be negative")
	}
	switch r.Kind {
	case "", KindRise:
		if r.MinCount == 0 && r.MinRatio == 0 && r.BaselineFactor == 0 {
			return errors.New("no condition: set min_count, min_ratio or baseline_factor")
		}
		if r.MinExpected != 0 {
			return errors.New("min_expected is for absence and drop rules; a rise uses min_count")
		}
		if r.MinVolume != 0 && r.MinRatio == 0 {
			return errors.New("min_volume guards min_ratio (a ratio of few calls means little); set min_ratio, or use min_count alone")
		}
	case KindAbsence, KindDrop:
		if r.MinCount != 0 || r.MinRatio != 0 || r.MinVolume != 0 {
			return fmt.Errorf("a %s rule takes min_expected, not min_count, min_ratio or min_volume", r.Kind)
		}
		if r.MinExpected <= 0 {
			return fmt.Errorf("a %s rule needs min_expected: the matching calls its baseline must expect in the window, the guard against quiet orgs", r.Kind)
		}
		if r.Kind == KindAbsence && r.BaselineFactor != 0 {
			return errors.New("an absence rule takes no baseline_factor (it fires on zero calls); use a drop rule for a share of the baseline")
		}
		if r.Kind == KindDrop && (r.BaselineFactor <= 0 || r.BaselineFactor >= 1) {
			return fmt.Errorf("baseline_factor %v of a drop rule must be in (0, 1): the share of its baseline the rate fell below", r.BaselineFactor)
		}
		if r.BaselineWindow <= 0 || r.BaselineWindow%step != 0 {
			return fmt.Errorf("baseline_window %s must be a positive multiple of evaluation_interval %s", r.BaselineWindow, step)
		}
	case KindOrgPaused:
		if r.Window != 0 || r.MinCount != 0 || r.MinRatio != 0 || r.MinVolume != 0 || r.BaselineFactor != 0 || r.MinExpected != 0 ||
			r.BaselineWindow != 0 || !reflect.DeepEqual(r.Match, Match{}) {
			return errors.New("an org_paused rule takes no window, match or conditions: only for, keep_firing_for, repeat_interval, labels and annotations")
		}
		if slices.ContainsFunc(r.GroupBy, func(l string) bool { return l != LabelOrg }) {
			return errors.New("an org_paused rule groups by org only")
		}
		return nil
	default:
		return fmt.Errorf("kind %q is not rise, absence, drop or org_paused", r.Kind)
	}
	if r.Window <= 0 || r.Window%step != 0 {
		return fmt.Errorf("window %s must be a positive multiple of evaluation_interval %s", r.Window, step)
	}
	if r.BaselineFactor > 0 && (r.BaselineWindow <= 0 || r.BaselineWindow%step != 0) {
		return fmt.Errorf("baseline_window %s must be a positive multiple of evaluation_interval %s", r.BaselineWindow, step)
	}
	for _, l := range r.GroupBy {
		if !slices.Contains([]string{LabelOrg, LabelSourceNumber, LabelDestinationNumber}, l) {
			return fmt.Errorf("group_by label %q is not one of org, source_number, destination_number", l)
		}
	}
	for _, s := range r.Match.CallStatus {
		if !slices.Contains([]string{schemas.StatusCompleted, schemas.StatusMissed, schemas.StatusFailed}, s) {
			return fmt.Errorf("match.call_status %q is not completed, missed or failed", s)
		}
	}
	for _, s := range r.Match.CallType {
		if s != schemas.CallInbound && s != schemas.CallOutbound {
			return fmt.Errorf("match.call_type %q is not inbound or outbound", s)
		}
	}
	return nil
}

// usesBaseline reports whether the rule needs the baseline window counted.
func (r *Rule) usesBaseline() bool {
	switch r.Kind {
	case KindAbsence, KindDrop:
		return true
	case KindOrgPaused:
		return false
	}
	return r.BaselineFactor > 0
}

// groupLabels returns the rule's group labels in a fixed order: org first,
// then the others as configured, without repeats.
func (r *Rule) groupLabels() []string {
	out := []string{LabelOrg}
	for _, l := range r.GroupBy {
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	return out
}
