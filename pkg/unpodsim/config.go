package unpodsim

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a simulated Unpod API. Rates are fractions in [0, 1].
type Config struct {
	Listen string `yaml:"listen" env:"UNPOD_SIM_LISTEN" flag:"listen" doc:"Address the simulator listens on."`
	Seed   uint64 `yaml:"seed" env:"UNPOD_SIM_SEED" flag:"seed" doc:"Seed of the traffic and fault generators; the same seed gives the same calls."`

	Orgs   []string            `yaml:"orgs" env:"UNPOD_SIM_ORGS" flag:"orgs" doc:"Organization handles the simulator serves."`
	Token  string              `yaml:"token" env:"UNPOD_SIM_TOKEN" secret:"true" doc:"A token that may see every organization."`
	Tokens map[string][]string `yaml:"tokens" secret:"true" doc:"More tokens, each with the handles it may see (\"*\" for all)."`

	// Start is the creation time of the oldest call; zero means History
	// before the clock's time when New is called.
	Start   time.Time     `yaml:"start" doc:"Creation time of the oldest call (default: now minus history)."`
	History time.Duration `yaml:"history" flag:"history" doc:"How much past traffic exists when Start is not set."`

	CallsPerMinute    float64            `yaml:"calls_per_minute" env:"UNPOD_SIM_CALLS_PER_MINUTE" flag:"calls-per-minute" doc:"Mean calls per minute per organization over a day."`
	OrgCallsPerMinute map[string]float64 `yaml:"org_calls_per_minute" doc:"Calls per minute for single organizations, overriding calls_per_minute."`
	DailyShape        bool               `yaml:"daily_shape" flag:"daily-shape" doc:"Vary the call rate over the day (peak 14:00 UTC, trough 02:00 UTC)."`
	InboundShare      float64            `yaml:"inbound_share" doc:"Share of calls that are inbound."`
	MissedShare       float64            `yaml:"missed_share" doc:"Share of calls that are missed outside incidents."`
	FailedShare       float64            `yaml:"failed_share" doc:"Share of calls that fail outside incidents."`
	Incidents         []Incident         `yaml:"incidents" doc:"Scripted missed-call spikes, failed-call bursts and outages."`

	// The messy parts of the real API, each switchable.
	LateRecords     float64       `yaml:"late_records" flag:"late-records" doc:"Share of calls that appear only after the call ended."`
	LateDelayMax    time.Duration `yaml:"late_delay_max" doc:"Longest delay between a call's end and the appearance of a late record."`
	Updates         float64       `yaml:"updates" flag:"updates" doc:"Share of calls whose status or end_time changes after they first appear."`
	UpdateDelayMax  time.Duration `yaml:"update_delay_max" doc:"Longest delay between a call's end and its record's final update."`
	PageShifts      float64       `yaml:"page_shifts" flag:"page-shifts" doc:"Share of calls inserted into the past at a random time up to shift_spread after creation, shifting pages."`
	ShiftSpread     time.Duration `yaml:"shift_spread" doc:"Longest delay of a page-shifting insert."`
	DurationFormats string        `yaml:"duration_formats" flag:"duration-formats" doc:"call_duration as int (207), hms (\"0:03:27\") or mixed."`
	NoAnswer        float64       `yaml:"no_answer" doc:"Share of missed calls spelled no-answer or no_answer."`
	IDPresent       float64       `yaml:"id_present" doc:"Share of records that carry an id field."`
	MillisTimes     float64       `yaml:"millis_times" doc:"Share of records whose times carry milliseconds."`
	ExtraFields     bool          `yaml:"extra_fields" doc:"Add fields the client does not know (bridge, metadata)."`
	InvalidRecords  float64       `yaml:"invalid_records" doc:"Share of records served without creation_time (undecodable; excluded from ground truth)."`

	MaxPageSize int    `yaml:"max_page_size" doc:"Largest page_size honoured; larger requests are clamped."`
	Faults      Faults `yaml:"faults"`

	// Clock is the simulator's time; records become visible and change as
	// it moves. nil means time.Now.
	Clock func() time.Time `yaml:"-"`
	// Logger logs requests at debug level and faults at info; nil discards.
	Logger *slog.Logger `yaml:"-"`
	// Registerer receives the simulator's metrics; nil registers nothing.
	Registerer prometheus.Registerer `yaml:"-"`
	// RecordRequests keeps a log of the call-logs requests served, for
	// Requests: which client polled which organization when.
	RecordRequests bool `yaml:"-"`
}

// Faults are injected per request, each with a rate in [0, 1]. The rates of
// Error500, Throttle429, Malformed and Reset add up to the share of failed
// requests; Slow is drawn independently.
type Faults struct {
	Error500    float64       `yaml:"error_500" flag:"fault-500" doc:"Share of requests answered 500."`
	Throttle429 float64       `yaml:"throttle_429" flag:"fault-429" doc:"Share of requests answered 429 with Retry-After."`
	Slow        float64       `yaml:"slow" flag:"fault-slow" doc:"Share of requests delayed by slow_delay."`
	Malformed   float64       `yaml:"malformed" flag:"fault-malformed" doc:"Share of requests answered with a truncated or malformed body."`
	Reset       float64       `yaml:"reset" flag:"fault-reset" doc:"Share of requests whose connection is reset."`
	RetryAfter  time.Duration `yaml:"retry_after" doc:"Retry-After sent with 429 (as seconds or as an HTTP date)."`
	SlowDelay   time.Duration `yaml:"slow_delay" doc:"Delay of a slow response."`
}

// Incident kinds.
const (
	MissedSpike = "missed_spike"
	FailedBurst = "failed_burst"
)

// Incident is a scripted stretch of bad calls, for testing alerting.
type Incident struct {
	Kind       string        `yaml:"kind" doc:"missed_spike, failed_burst or outage (no calls at all)."`
	Org        string        `yaml:"org" doc:"Organization it hits; empty means all."`
	Start      time.Time     `yaml:"start" doc:"When it starts; zero means after the simulator starts."`
	After      time.Duration `yaml:"after" doc:"Delay after the simulator starts, used when start is zero."`
	Duration   time.Duration `yaml:"duration" doc:"How long it lasts."`
	Every      time.Duration `yaml:"every" doc:"Repeat period; zero means once."`
	Intensity  float64       `yaml:"intensity" doc:"Share of the calls during the incident that get its status (for an outage: that are lost)."`
	RateFactor float64       `yaml:"rate_factor" doc:"Multiplier of the call rate during the incident (0 means 1)."`
}

// DefaultToken is the token of a simulator started without configuration,
// as `callstream run` does; it sees every organization.
const DefaultToken = "sim-token"

// ChaosFaults returns fault rates for resilience tests and demos: about one
// request in three fails in some way, and one in ten is slow.
func ChaosFaults() Faults {
	return Faults{
		Error500: 0.1, Throttle429: 0.05, Malformed: 0.08, Reset: 0.08, Slow: 0.1,
		RetryAfter: time.Second, SlowDelay: 50 * time.Millisecond,
	}
}

// ScaledClock returns a clock that starts at start and runs factor times
// faster than the wall clock: with factor 60 a simulated hour of late
// records and updates plays out in a minute.
func ScaledClock(start time.Time, factor float64) func() time.Time {
	origin := time.Now()
	return func() time.Time {
		return start.Add(time.Duration(float64(time.Since(origin)) * factor))
	}
}

// DefaultConfig returns a lively but friendly simulator: three orgs, a few
// calls a minute, every messy part on at a modest rate, no faults.
func DefaultConfig() Config {
	return Config{
		Listen:         "127.0.0.1:8089",
		Seed:           1,
		Orgs:           []string{"acme", "globex", "initech"},
		Token:          DefaultToken,
		History:        time.Hour,
		CallsPerMinute: 20,
		DailyShape:     true,
		InboundShare:   0.6,
		MissedShare:    0.12,
		FailedShare:    0.04,
		Incidents: []Incident{
			{Kind: MissedSpike, Org: "acme", After: 2 * time.Minute, Duration: 3 * time.Minute, Every: 30 * time.Minute, Intensity: 0.7, RateFactor: 1.5},
			{Kind: FailedBurst, Org: "globex", After: 10 * time.Minute, Duration: 2 * time.Minute, Every: 30 * time.Minute, Intensity: 0.6},
			{Kind: Outage, Org: "initech", After: 20 * time.Minute, Duration: 10 * time.Minute, Every: time.Hour, Intensity: 1},
		},
		LateRecords:     0.2,
		LateDelayMax:    3 * time.Minute,
		Updates:         0.1,
		UpdateDelayMax:  5 * time.Minute,
		PageShifts:      0.05,
		ShiftSpread:     10 * time.Minute,
		DurationFormats: "mixed",
		NoAnswer:        0.3,
		IDPresent:       0.5,
		MillisTimes:     0.5,
		ExtraFields:     true,
		MaxPageSize:     1000,
		Faults:          Faults{RetryAfter: time.Second, SlowDelay: 300 * time.Millisecond},
	}
}

func (c *Config) validate() error {
	var errs []error
	rate := func(name string, v float64) {
		if v < 0 || v > 1 {
			errs = append(errs, fmt.Errorf("%s = %v: want a share in [0, 1]", name, v))
		}
	}
	rate("inbound_share", c.InboundShare)
	rate("missed_share", c.MissedShare)
	rate("failed_share", c.FailedShare)
	rate("late_records", c.LateRecords)
	rate("updates", c.Updates)
	rate("page_shifts", c.PageShifts)
	rate("no_answer", c.NoAnswer)
	rate("id_present", c.IDPresent)
	rate("millis_times", c.MillisTimes)
	rate("invalid_records", c.InvalidRecords)
	rate("faults.error_500", c.Faults.Error500)
	rate("faults.throttle_429", c.Faults.Throttle429)
	rate("faults.slow", c.Faults.Slow)
	rate("faults.malformed", c.Faults.Malformed)
	rate("faults.reset", c.Faults.Reset)
	if c.MissedShare+c.FailedShare > 1 {
		errs = append(errs, errors.New("missed_share + failed_share > 1"))
	}
	if c.LateRecords+c.Updates+c.PageShifts > 1 {
		errs = append(errs, errors.New("late_records + updates + page_shifts > 1"))
	}
	if f := c.Faults; f.Error500+f.Throttle429+f.Malformed+f.Reset > 1 {
		errs = append(errs, errors.New("faults: error_500 + throttle_429 + malformed + reset > 1"))
	}
	if c.CallsPerMinute < 0 || c.CallsPerMinute > 100000 {
		errs = append(errs, fmt.Errorf("calls_per_minute = %v: want 0..100000", c.CallsPerMinute))
	}
	for org, v := range c.OrgCallsPerMinute {
		if v < 0 || v > 100000 {
			errs = append(errs, fmt.Errorf("org_calls_per_minute[%s] = %v: want 0..100000", org, v))
		}
	}
	switch c.DurationFormats {
	case "", "int", "hms", "mixed":
	default:
		errs = append(errs, fmt.Errorf("duration_formats %q: want int, hms or mixed", c.DurationFormats))
	}
	if len(c.Orgs) == 0 {
		errs = append(errs, errors.New("no orgs"))
	}
	for i, in := range c.Incidents {
		if !knownIncidentKind(in.Kind) {
			errs = append(errs, fmt.Errorf("incident %d: kind %q: want one of %v", i, in.Kind, incidentKinds))
		}
		if in.Duration <= 0 {
			errs = append(errs, fmt.Errorf("incident %d: duration must be positive", i))
		}
		if in.Every < 0 || (in.Every > 0 && in.Every < in.Duration) {
			errs = append(errs, fmt.Errorf("incident %d: every must be 0 or at least the duration", i))
		}
		rate(fmt.Sprintf("incident %d intensity", i), in.Intensity)
	}
	return errors.Join(errs...)
}
