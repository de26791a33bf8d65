package producer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// sources keeps the outcome of each organization's last poll, for
// readiness and the operator.
type sources struct {
	mu   sync.Mutex
	last map[string]sourceState
}

type sourceState struct {
	at     time.Time
	reason string // "" when the poll succeeded, else its pauseReason
}

func (s *sources) record(org string, err error) {
	st := sourceState{at: time.Now()}
	if err != nil {
		st.reason = pauseReason(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		s.last = map[string]sourceState{}
	}
	s.last[org] = st
}

// Sources reports each organization's last poll: "ok", or the class of its
// failure ("paused: unauthorized", ...), never an error text that could
// hold a URL or a token.
func (p *Producer) Sources() map[string]string {
	p.sources.mu.Lock()
	defer p.sources.mu.Unlock()
	out := make(map[string]string, len(p.sources.last))
	for org, st := range p.sources.last {
		if st.reason == "" {
			out[org] = "ok"
		} else {
			out[org] = "paused: " + st.reason + " (since " + st.at.UTC().Format(time.RFC3339) + ")"
		}
	}
	return out
}

// errNoSource is Ready's answer when the API answers no organization.
var errNoSource = errors.New("the API answers no organization")

// Ready is a readiness check. The producer is not ready before its first
// poll ended, and when the last poll of every organization failed for a
// reason that is the API's or the network's (unreachable, 5xx, rate
// limited): then nothing flows, and it says why. An organization the API
// refuses (401, 403, 404, 400) or whose events cannot be published is
// reported by Sources but does not make the producer unready: the other
// organizations go on, and a restart would not help. A producer that
// shares the organizations and was assigned none is ready: a standby.
func (p *Producer) Ready(context.Context) error {
	if p.standby() {
		return nil // a standby: ready to take organizations over
	}
	p.sources.mu.Lock()
	defer p.sources.mu.Unlock()
	if len(p.sources.last) == 0 {
		return errors.New("no organization polled yet")
	}
	var down []string
	for org, st := range p.sources.last {
		switch st.reason {
		case "", reasonUnauthorized, reasonForbidden, reasonNotFound, reasonBadRequest, reasonPublish:
			return nil
		}
		down = append(down, org+": "+st.reason)
	}
	sort.Strings(down)
	return fmt.Errorf("%w: %s", errNoSource, strings.Join(down, ", "))
}
