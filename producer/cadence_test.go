package producer

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCadence(t *testing.T) {
	t.Parallel()
	busy := pollOutcome{requests: 2, published: 5}
	empty := pollOutcome{requests: 1}
	s := time.Second
	tests := []struct {
		name   string
		min    time.Duration
		idle   time.Duration
		budget int
		polls  []pollOutcome
		every  time.Duration // time between the ends of two polls
		want   []time.Duration
	}{
		{name: "busy polls at poll_interval", min: 2 * s, idle: 10 * s,
			polls: []pollOutcome{busy, busy, busy}, every: 2 * s, want: []time.Duration{2 * s, 2 * s, 2 * s}},
		{name: "idle backs off by doubling up to idle_poll_interval", min: 2 * s, idle: 10 * s,
			polls: []pollOutcome{empty, empty, empty, empty}, every: 2 * s, want: []time.Duration{4 * s, 8 * s, 10 * s, 10 * s}},
		{name: "a call ends the back-off at once", min: 2 * s, idle: 10 * s,
			polls: []pollOutcome{empty, empty, busy, empty}, every: 2 * s, want: []time.Duration{4 * s, 8 * s, 2 * s, 4 * s}},
		{name: "catching up never backs off", min: 2 * s, idle: 10 * s,
			polls: []pollOutcome{{requests: 60, catchingUp: true}, {requests: 60, catchingUp: true}}, every: 2 * s, want: []time.Duration{2 * s, 2 * s}},
		{name: "a failed poll resets the back-off", min: 2 * s, idle: 10 * s,
			polls: []pollOutcome{empty, empty, {failed: true}, empty}, every: 2 * s, want: []time.Duration{4 * s, 8 * s, 2 * s, 4 * s}},
		{name: "idle at poll_interval: no back-off", min: 5 * s, idle: 5 * s,
			polls: []pollOutcome{empty, empty}, every: 5 * s, want: []time.Duration{5 * s, 5 * s}},
		// 360 requests an hour is one every 10 s, with a burst of 90: the
		// first 90 requests go at once, the next wait for the bucket.
		{name: "the budget slows sustained polling once its burst is spent", min: 2 * s, idle: 10 * s, budget: 360,
			polls: []pollOutcome{{requests: 45, published: 1}, {requests: 45, published: 1}, {requests: 1, published: 1}, {requests: 1, published: 1}},
			every: 0, want: []time.Duration{2 * s, 2 * s, 10 * s, 20 * s}},
		{name: "a catch-up within the burst is not slowed", min: 2 * s, idle: 10 * s, budget: 3600,
			polls: []pollOutcome{{requests: 300, catchingUp: true}, {requests: 2, published: 3}}, every: 2 * s, want: []time.Duration{2 * s, 2 * s}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			c := newCadence(Config{PollInterval: tt.min, IdlePollInterval: tt.idle, OrgRequestBudget: tt.budget}, now)
			for i, o := range tt.polls {
				got := c.next(now, o)
				if d := got - tt.want[i]; d < -10*time.Millisecond || d > 10*time.Millisecond {
					t.Fatalf("poll %d (%+v): wait %s, want %s", i+1, o, got, tt.want[i])
				}
				now = now.Add(tt.every)
			}
		})
	}
}

func TestRecentWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ages := []time.Duration{0, 2 * time.Minute, 2 * time.Hour}
	at := func(f0, low time.Time) *Checkpoint {
		c := &Checkpoint{Rungs: []Rung{{Age: 0, Frontier: f0}, {Age: ages[1], Frontier: f0.Add(-ages[1])}, {Age: ages[2], Frontier: low}}}
		return c
	}
	tests := []struct {
		name      string
		cp        *Checkpoint
		span      time.Duration
		ok        bool
		wantStart time.Time
	}{
		{name: "steady: the span before the target", cp: at(now.Add(-3*time.Second), now.Add(-3*time.Hour)), span: 30 * time.Minute,
			ok: true, wantStart: now.Add(-30*time.Minute - time.Second)},
		{name: "never below the lowest frontier", cp: at(now.Add(-3*time.Second), now.Add(-10*time.Minute)), span: 30 * time.Minute,
			ok: true, wantStart: now.Add(-10 * time.Minute)},
		{name: "catching up: the ladder reads the backlog", cp: at(now.Add(-40*time.Minute), now.Add(-3*time.Hour)), span: 30 * time.Minute},
		{name: "off", cp: at(now.Add(-3*time.Second), now.Add(-3*time.Hour)), span: 0},
		{name: "rung 0 already at its target", cp: at(now.Add(-time.Second), now.Add(-3*time.Hour)), span: 30 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, ok := recentWindow(tt.cp, now, time.Second, tt.span)
			if ok != tt.ok {
				t.Fatalf("due = %v, want %v (%+v)", ok, tt.ok, w)
			}
			if !ok {
				return
			}
			if !w.Start.Equal(tt.wantStart) || !w.End.Equal(now.Add(-time.Second)) {
				t.Fatalf("window [%s, %s), want [%s, %s)", w.Start, w.End, tt.wantStart, now.Add(-time.Second))
			}
		})
	}
}

// TestPollOutcome: a poll's outcome holds the requests and events since
// the org's last poll, whether it failed, and whether rung 0 lags by more
// than the idle interval (catching up: no back-off).
func TestPollOutcome(t *testing.T) {
	t.Parallel()
	cfg := DefaultConfig()
	cfg.SettleLag = time.Minute // rung 0 stops a minute short of now
	p, err := New(cfg, Deps{Source: noSource{}, Publisher: nopPublisher{}, Topic: "t", DLQTopic: "dlq", Store: NewFileStore(t.TempDir() + "/s")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	p.now = func() time.Time { return now }
	idle := max(cfg.IdlePollInterval, cfg.PollInterval)
	// A new organization starts at the lookback before what has settled.
	if got, want := p.checkpoint("acme").Rungs[0].Frontier, now.Add(-cfg.SettleLag-cfg.Lookback); !got.Equal(want) {
		t.Fatalf("a new organization starts at %s, want %s", got, want)
	}
	setLag := func(lag time.Duration) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.cps["acme"].Rungs[0].Frontier = now.Add(-cfg.SettleLag - lag)
	}
	p.act.add("acme", 3, 2)
	p.act.add("acme", 1, 0)
	p.act.add("globex", 7, 7)
	for _, tc := range []struct {
		lag  time.Duration
		err  error
		want pollOutcome
	}{
		{cfg.Lookback, nil, pollOutcome{requests: 4, published: 2, catchingUp: true}},
		{idle + time.Second, errors.New("down"), pollOutcome{failed: true, catchingUp: true}},
		{idle, nil, pollOutcome{}},
		{0, nil, pollOutcome{}},
	} {
		setLag(tc.lag)
		if got := p.pollOutcome("acme", tc.err); got != tc.want {
			t.Errorf("lag %s, err %v: %+v, want %+v", tc.lag, tc.err, got, tc.want)
		}
	}
}

// TestFirstSampleIsDurable: an organization's first sample (where a
// restart reads its events back from) is saved before its first event can
// be published; later samples ride on the periodic save.
func TestFirstSampleIsDurable(t *testing.T) {
	t.Parallel()
	store := NewFileStore(t.TempDir() + "/s")
	p, err := New(DefaultConfig(), Deps{Source: noSource{}, Publisher: nopPublisher{}, Topic: "t", DLQTopic: "dlq",
		Store: store, EventLog: &recordingLog{end: map[int]int64{0: 42, 1: 7}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := p.sampleIfDue(ctx, "acme", p.checkpoint("acme")); err != nil {
		t.Fatal(err)
	}
	st, err := store.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp := st.Orgs["acme"]
	if cp == nil || len(cp.Samples) != 1 || cp.Samples[0].Offsets[0] != 42 || cp.Samples[0].Offsets[1] != 7 {
		t.Fatalf("saved checkpoint %+v, want the first sample (offsets 42 and 7) on disk", cp)
	}
}

// TestSampleStep: a new sample is taken once rung 0's frontier moved a
// step past the last one: a sixteenth of the oldest rescan age (so a
// restart reads back little more than the horizon), or the poll interval
// when that is longer.
func TestSampleStep(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		poll, oldest, step time.Duration
	}{
		{time.Minute, 24 * time.Hour, 90 * time.Minute},
		{2 * time.Hour, 24 * time.Hour, 2 * time.Hour},
	} {
		cfg := DefaultConfig()
		cfg.PollInterval, cfg.RescanAges = tc.poll, []time.Duration{0, time.Hour, tc.oldest}
		log := &recordingLog{end: map[int]int64{0: 1}}
		p, err := New(cfg, Deps{Source: noSource{}, Publisher: nopPublisher{}, Topic: "t", DLQTopic: "dlq",
			Store: NewFileStore(t.TempDir() + "/s"), EventLog: log})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		start := time.Date(2026, 2, 7, 0, 0, 0, 0, time.UTC)
		p.checkpoint("acme") // created
		lastSample := func() time.Time {
			s := p.checkpoint("acme").Samples
			return s[len(s)-1].Frontier
		}
		sampleAt := func(at time.Duration) {
			p.update("acme", func(c *Checkpoint) {
				for i := range c.Rungs {
					c.Rungs[i].Frontier = start.Add(at)
				}
			})
			if err := p.sampleIfDue(ctx, "acme", p.checkpoint("acme")); err != nil {
				t.Fatal(err)
			}
		}
		sampleAt(0)
		if sampleAt(tc.step - time.Minute); !lastSample().Equal(start) {
			t.Errorf("poll %s, oldest age %s: sampled again %s after the last, before the step of %s", tc.poll, tc.oldest, tc.step-time.Minute, tc.step)
		}
		sampleAt(tc.step)
		if last := lastSample(); !last.Equal(start.Add(tc.step)) {
			t.Errorf("poll %s, oldest age %s: last sample at %s, want one at the step, %s", tc.poll, tc.oldest, last, start.Add(tc.step))
		}
	}
}
