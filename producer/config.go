package producer

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config tunes the producer. Durations compared with record times (settle
// lag, lookback, rescan ages, window size) are on the producer's clock,
// which SimClock may speed up; PollInterval and the backoffs are too, and
// are slept in proportion.
type Config struct {
	Orgs             []string        `yaml:"org_handles" env:"UNPOD_ORG_HANDLES" flag:"org" doc:"Org-Handles to poll, comma-separated; empty means every organization the token sees."`
	PollInterval     time.Duration   `yaml:"poll_interval" env:"CALLSTREAM_POLL_INTERVAL" doc:"Wait between two polls of an organization that is busy (its last poll published something) or catching up; see idle_poll_interval and org_request_budget."`
	IdlePollInterval time.Duration   `yaml:"idle_poll_interval" env:"CALLSTREAM_IDLE_POLL_INTERVAL" doc:"Longest wait between two polls: after each poll that published nothing the wait doubles from poll_interval up to this. At or below poll_interval, polling never backs off."`
	OrgRequestBudget int             `yaml:"org_request_budget" env:"CALLSTREAM_ORG_REQUEST_BUDGET" doc:"Most API requests an hour one organization's polling spends on average (a quarter of an hour's worth may be spent at once, as in a catch-up); 0 means no budget. unpod.rate_limit stays the ceiling for all organizations together."`
	SettleLag        time.Duration   `yaml:"settle_lag" env:"CALLSTREAM_SETTLE_LAG" doc:"Age at which a slice of time is first read: windows end at now minus this lag. Raise it only for an API whose records commonly appear a little after their creation_time or whose clock runs behind the producer's (each such record otherwise waits for the next poll's recent re-read)."`
	RecentRescan     time.Duration   `yaml:"recent_rescan" env:"CALLSTREAM_RECENT_RESCAN" doc:"Span before the settle lag whose newest page is read again at every poll, so that records that appear or change late reach the topic at the next poll instead of at the next rung; 0 turns it off."`
	Lookback         time.Duration   `yaml:"lookback" env:"CALLSTREAM_LOOKBACK" doc:"How far back the first run of an organization starts."`
	RescanAges       []time.Duration `yaml:"rescan_ages" env:"CALLSTREAM_RESCAN_AGES" doc:"Ages (after the settle lag) at which each slice of time is read again to catch late and changed records; must start with 0s."`
	Partitions       int             `yaml:"partitions" doc:"Partitions of the events topic when the producer creates it; 0 means the broker's default."`
	PageSize         int             `yaml:"page_size" doc:"Records per page requested; the largest size the API accepts."`
	MaxWindow        time.Duration   `yaml:"max_window" doc:"Longest window read as one unit; longer ranges are split."`
	MaxWindowReads   int             `yaml:"max_window_reads" doc:"Reads of a window whose count changed while paging before it is reported and accepted."`
	SaveInterval     time.Duration   `yaml:"save_interval" doc:"How often the checkpoint is saved when it changed."`
	OrgBackoff       time.Duration   `yaml:"org_backoff" doc:"First pause of an organization whose requests fail; it doubles up to org_backoff_max."`
	OrgBackoffMax    time.Duration   `yaml:"org_backoff_max" doc:"Longest pause of a failing organization."`
	AuditInterval    time.Duration   `yaml:"audit_interval" env:"CALLSTREAM_AUDIT_INTERVAL" doc:"How often the producer compares the API's count of each closed hour with the calls it published (callstream_audit_missing_calls); one request per organization and audited hour; 0 disables."`
	AuditSpan        time.Duration   `yaml:"audit_span" doc:"How far back from the lowest rescan frontier the periodic audit checks closed hours; each run costs audit_span/1h requests per organization."`
	// Ownership: several `callstream produce` share the organizations
	// through a Kafka consumer group (see the package documentation, One
	// owner per organization). Embedded mode has one owner and ignores them.
	DiscoveryInterval   time.Duration `yaml:"discovery_interval" env:"CALLSTREAM_DISCOVERY_INTERVAL" doc:"How often the organizations endpoint is read again when org_handles is empty: new organizations start being polled, vanished ones stop."`
	GroupID             string        `yaml:"group_id" env:"CALLSTREAM_PRODUCER_GROUP" doc:"Kafka consumer group of the producers that share the organizations; a topic_prefix other than the default is put in front of it."`
	OrgPartitions       int           `yaml:"org_partitions" env:"CALLSTREAM_ORG_PARTITIONS" doc:"Partitions of the ownership topic (producer-orgs.v1) when it is created: each organization belongs to one (murmur2 of its handle), each partition to one producer, so it bounds how many producers share the work."`
	GroupSessionTimeout time.Duration `yaml:"group_session_timeout" env:"CALLSTREAM_PRODUCER_SESSION_TIMEOUT" doc:"How long a silent producer keeps its organizations before the others take them over (Kafka session timeout; heartbeats every third of it)."`
	SimClock            string        `yaml:"sim_clock" env:"CALLSTREAM_SIM_CLOCK" doc:"Run on a simulated clock, SPEEDx@RFC3339-origin (e.g. 60x@2026-01-01T00:00:00Z), for demos and tests against the simulator; empty means real time."`

	// The size limits of the bus, which the producer checks before it
	// publishes so that one huge record never blocks its organization.
	MaxMessageBytes    int `yaml:"max_message_bytes" doc:"Largest event published (payload, key and headers, in bytes); a larger one is dead-lettered as too large. Keep it under the events topic's max.message.bytes (Kafka's default 1048588) and the Kafka publisher's batch_bytes (1 MiB, pkg/kafkabus)."`
	DLQMaxMessageBytes int `yaml:"dlq_max_message_bytes" doc:"Largest dead letter put on the DLQ with the raw record whole; a larger one carries its first 64 KiB, size and sha256 (stored by reference to the API). Keep it under the DLQ topic's max.message.bytes and the publisher's batch_bytes."`
}

// DefaultConfig returns the production defaults: fresh by default (a call
// visible in the API reaches the topic within idle_poll_interval plus a
// read), at the request cost the package documentation states.
func DefaultConfig() Config {
	return Config{
		PollInterval:        2 * time.Second,
		IdlePollInterval:    10 * time.Second,
		OrgRequestBudget:    3600,
		SettleLag:           0,
		RecentRescan:        30 * time.Minute,
		Lookback:            time.Hour,
		RescanAges:          []time.Duration{0, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute, 2 * time.Hour},
		Partitions:          6,
		PageSize:            1000,
		MaxWindow:           time.Hour,
		MaxWindowReads:      3,
		SaveInterval:        time.Second,
		OrgBackoff:          30 * time.Second,
		OrgBackoffMax:       15 * time.Minute,
		AuditInterval:       time.Hour,
		AuditSpan:           24 * time.Hour,
		DiscoveryInterval:   5 * time.Minute,
		GroupID:             "callstream-producers",
		OrgPartitions:       12,
		GroupSessionTimeout: 10 * time.Second,
		// 1 MiB less 32 KiB for the record batch's framing and headers.
		MaxMessageBytes:    1<<20 - 32<<10,
		DLQMaxMessageBytes: 8 << 20,
	}
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	var errs []error
	pos := func(name string, d time.Duration) {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s = %s: want a positive duration", name, d))
		}
	}
	pos("poll_interval", c.PollInterval)
	pos("max_window", c.MaxWindow)
	pos("save_interval", c.SaveInterval)
	pos("org_backoff", c.OrgBackoff)
	pos("org_backoff_max", c.OrgBackoffMax)
	pos("discovery_interval", c.DiscoveryInterval)
	if c.GroupID == "" {
		errs = append(errs, errors.New("group_id is empty: want the producers' consumer group"))
	}
	if c.OrgPartitions < 1 {
		errs = append(errs, fmt.Errorf("org_partitions = %d: want at least 1", c.OrgPartitions))
	}
	if c.GroupSessionTimeout < 6*time.Second {
		errs = append(errs, fmt.Errorf("group_session_timeout = %s: want at least 6s (Kafka's group.min.session.timeout.ms)", c.GroupSessionTimeout))
	}
	if c.SettleLag < 0 {
		errs = append(errs, fmt.Errorf("settle_lag = %s: want 0 or more", c.SettleLag))
	}
	if c.IdlePollInterval < 0 {
		errs = append(errs, fmt.Errorf("idle_poll_interval = %s: want 0 or more", c.IdlePollInterval))
	}
	if c.OrgRequestBudget < 0 {
		errs = append(errs, fmt.Errorf("org_request_budget = %d: want 0 (no budget) or more", c.OrgRequestBudget))
	}
	if c.RecentRescan < 0 {
		errs = append(errs, fmt.Errorf("recent_rescan = %s: want 0 (off) or more", c.RecentRescan))
	}
	if c.Lookback < 0 {
		errs = append(errs, fmt.Errorf("lookback = %s: want 0 or more", c.Lookback))
	}
	if len(c.RescanAges) == 0 || c.RescanAges[0] != 0 {
		errs = append(errs, fmt.Errorf("rescan_ages = %v: want a list starting with 0s", c.RescanAges))
	} else if !slices.IsSorted(c.RescanAges) || len(slices.Compact(slices.Clone(c.RescanAges))) != len(c.RescanAges) {
		errs = append(errs, fmt.Errorf("rescan_ages = %v: want strictly increasing ages", c.RescanAges))
	}
	if c.AuditInterval < 0 {
		errs = append(errs, fmt.Errorf("audit_interval = %s: want 0 (off) or more", c.AuditInterval))
	}
	if c.AuditInterval > 0 && c.AuditSpan < time.Hour {
		errs = append(errs, fmt.Errorf("audit_span = %s: want at least 1h (the audit checks whole hours)", c.AuditSpan))
	}
	if c.PageSize <= 0 {
		errs = append(errs, fmt.Errorf("page_size = %d: want a positive size", c.PageSize))
	}
	if c.MaxMessageBytes < 4096 {
		errs = append(errs, fmt.Errorf("max_message_bytes = %d: want at least 4096", c.MaxMessageBytes))
	}
	if c.DLQMaxMessageBytes < 4096 {
		errs = append(errs, fmt.Errorf("dlq_max_message_bytes = %d: want at least 4096", c.DLQMaxMessageBytes))
	}
	if c.MaxWindowReads <= 0 {
		errs = append(errs, fmt.Errorf("max_window_reads = %d: want at least 1", c.MaxWindowReads))
	}
	if _, err := ParseSimClock(c.SimClock); err != nil {
		errs = append(errs, err)
	}
	for _, o := range c.Orgs {
		if strings.TrimSpace(o) == "" {
			errs = append(errs, errors.New("org_handles holds an empty handle"))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("producer: config: %w", err)
	}
	return nil
}

// Clock is the producer's time. The zero value is real time.
type Clock struct {
	speed  float64
	origin time.Time
	wall   func() time.Time
}

// NewSimClock returns a clock that equals the wall clock at origin and runs
// speed times faster from there.
func NewSimClock(speed float64, origin time.Time) Clock {
	return Clock{speed: speed, origin: origin}
}

// ParseSimClock parses "SPEEDx@ORIGIN" (ORIGIN in RFC 3339); "" is real time.
func ParseSimClock(s string) (Clock, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Clock{}, nil
	}
	sp, or, ok := strings.Cut(s, "@")
	speed, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(sp), "x"), 64)
	if !ok || err != nil || speed <= 0 {
		return Clock{}, fmt.Errorf("sim_clock %q: want SPEEDx@RFC3339-origin, e.g. 60x@2026-01-01T00:00:00Z", s)
	}
	origin, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(or))
	if err != nil {
		return Clock{}, fmt.Errorf("sim_clock %q: origin: %w", s, err)
	}
	return NewSimClock(speed, origin), nil
}

// String renders the clock in the form ParseSimClock reads.
func (c Clock) String() string {
	if c.speed == 0 {
		return ""
	}
	return strconv.FormatFloat(c.speed, 'g', -1, 64) + "x@" + c.origin.UTC().Format(time.RFC3339Nano)
}

// Now returns the clock's time, in UTC.
func (c Clock) Now() time.Time {
	wall := time.Now
	if c.wall != nil {
		wall = c.wall
	}
	now := wall()
	if c.speed == 0 {
		return now.UTC()
	}
	return c.origin.Add(time.Duration(float64(now.Sub(c.origin)) * c.speed)).UTC()
}

// Wall converts a duration on this clock to wall time, for sleeping.
func (c Clock) Wall(d time.Duration) time.Duration {
	if c.speed == 0 {
		return d
	}
	return time.Duration(float64(d) / c.speed)
}
