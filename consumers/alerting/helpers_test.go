package alerting

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// fileState is a file-backed consumers.StateStore: one file per key,
// replaced atomically.
type fileState struct {
	dir   string
	fail  bool // when set, Save fails
	saves int
}

func (f *fileState) Load(_ context.Context, key string) ([]byte, error) {
	data, err := os.ReadFile(filepath.Join(f.dir, key))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return data, err
}

func (f *fileState) Save(_ context.Context, key string, value []byte) error {
	if f.fail {
		return errors.New("disk full")
	}
	f.saves++
	tmp := filepath.Join(f.dir, key+".tmp")
	if err := os.WriteFile(tmp, value, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(f.dir, key))
}

// memPublisher records what is published.
type memPublisher struct {
	mu   sync.Mutex
	msgs []*message.Message
	fail bool
}

func (m *memPublisher) Publish(_ string, msgs ...*message.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("broker down")
	}
	m.msgs = append(m.msgs, msgs...)
	return nil
}

func (m *memPublisher) Close() error { return nil }

func (m *memPublisher) alerts(t *testing.T) []schemas.AlertEvent {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	v, err := schemas.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	var out []schemas.AlertEvent
	for _, msg := range m.msgs {
		if err := v.ValidateAlert(msg.Payload); err != nil {
			t.Fatalf("published alert does not validate: %v\n%s", err, msg.Payload)
		}
		a := decodeAlert(t, msg.Payload)
		if got := msg.Metadata.Get(schemas.HeaderType); got != a.Type() {
			t.Fatalf("ce_type %q for state %q", got, a.State)
		}
		if msg.Metadata.Get("partition_key") != a.AlertID || msg.Metadata.Get(schemas.HeaderID) != msg.UUID {
			t.Fatalf("bad metadata %v", msg.Metadata)
		}
		out = append(out, a)
	}
	return out
}

// incident changes the outcome of one org's calls for a while.
type incident struct {
	org      string
	from, to time.Duration // from the stream's start
	status   string
	share    float64 // of the org's calls (inbound calls for missed)
}

// traffic describes a generated call stream whose truth is known.
type traffic struct {
	start     time.Time
	length    time.Duration
	orgs      []string
	perMinute float64 // calls per org per minute at the daily peak
	diurnal   bool    // volume follows the time of day
	missed    float64 // share of inbound calls missed
	failed    float64 // share of calls failed
	incidents []incident
	disorder  time.Duration // arrival delay, uniform in [0, disorder)
	seed      uint64
}

// generate returns the stream in arrival order.
func (tr traffic) generate() []schemas.CallEvent {
	rng := rand.New(rand.NewPCG(tr.seed, 7))
	type arrival struct {
		at time.Time
		ev schemas.CallEvent
	}
	var all []arrival
	n := 0
	for _, org := range tr.orgs {
		t := tr.start
		for {
			rate := tr.perMinute
			if tr.diurnal {
				h := float64(t.Hour()) + float64(t.Minute())/60
				rate *= 0.15 + 0.85*math.Pow(math.Sin(math.Pi*h/24), 2)
			}
			t = t.Add(time.Duration(rng.ExpFloat64() / rate * float64(time.Minute)))
			if t.Sub(tr.start) >= tr.length {
				break
			}
			n++
			ev := schemas.CallEvent{
				EventID: fmt.Sprintf("ev-%d", n), Org: org, CallKey: fmt.Sprintf("call-%d", n), Revision: 1,
				SourceNumber: fmt.Sprintf("+9100%04d", rng.IntN(50)), DestinationNumber: "+919800000000",
				CallType: schemas.CallOutbound, CallStatus: schemas.StatusCompleted, CreationTime: t,
				EndReason: "caller_hangup", ObservedAt: t,
			}
			if rng.Float64() < 0.6 {
				ev.CallType = schemas.CallInbound
			}
			missed, failed := tr.missed, tr.failed
			for _, in := range tr.incidents {
				if in.org == org && t.Sub(tr.start) >= in.from && t.Sub(tr.start) < in.to {
					if in.status == schemas.StatusMissed {
						missed = in.share
					} else {
						failed = in.share
					}
				}
			}
			switch u := rng.Float64(); {
			case u < failed:
				ev.CallStatus, ev.EndReason = schemas.StatusFailed, "sip_error"
			case ev.CallType == schemas.CallInbound && u < failed+missed:
				ev.CallStatus, ev.EndReason = schemas.StatusMissed, "no_answer"
			}
			delay := time.Duration(0)
			if tr.disorder > 0 {
				delay = time.Duration(rng.Int64N(int64(tr.disorder)))
			}
			all = append(all, arrival{at: t.Add(delay), ev: ev})
		}
	}
	slices.SortStableFunc(all, func(a, b arrival) int { return a.at.Compare(b.at) })
	out := make([]schemas.CallEvent, len(all))
	for i := range all {
		out[i] = all[i].ev
	}
	return out
}

var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)

// replayConfig is the default configuration without the startup hold:
// tests that feed the evaluator a constant wall clock (a replay) would
// otherwise never see the hold end.
func replayConfig() Config {
	cfg := DefaultConfig()
	cfg.StartupHold = 0
	return cfg
}

// wall is the wall clock of engine tests: later than every generated call.
var wall = t0.Add(100 * 24 * time.Hour)

// runEngine feeds events through a fresh engine with one partition and
// returns every notice.
func runEngine(t *testing.T, cfg Config, events []schemas.CallEvent) []Notice {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := newEngine(cfg)
	var out []Notice
	for i := range events {
		e.Observe("", &events[i], wall)
		out = append(out, e.TakeNotices()...)
	}
	return out
}

func feed(t *testing.T, p *Plugin, events []schemas.CallEvent) {
	t.Helper()
	for i := range events {
		if err := p.Handle(context.Background(), consumers.Delivery{Event: events[i]}); err != nil {
			t.Fatalf("Handle event %d: %v", i, err)
		}
	}
}

func kinds(ns []Notice) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Kind + " " + n.Alert.Rule + " " + n.Alert.Org + " " + n.At.Format("15:04:05")
	}
	return out
}
