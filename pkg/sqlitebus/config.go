package sqlitebus

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults and bounds of Config.
const (
	// DefaultMaxMessageBytes is Kafka's default message.max.bytes, so a
	// message refused in Kafka mode is refused in embedded mode too.
	DefaultMaxMessageBytes = 1 << 20
	// MaxMessageBytesCap is the largest MaxMessageBytes Open accepts: a
	// message is held in memory whole by the publisher, the writer and every
	// subscriber that has it in flight.
	MaxMessageBytesCap = 64 << 20

	DefaultRetention         = 7 * 24 * time.Hour
	DefaultGroupRetention    = 7 * 24 * time.Hour
	DefaultRetentionInterval = time.Minute
	DefaultPollInterval      = 200 * time.Millisecond
	DefaultBusyTimeout       = 5 * time.Second
	DefaultLockTimeout       = 2 * time.Minute
	DefaultReadConns         = 4
)

// Config configures a Bus.
type Config struct {
	// Path is the SQLite file; its directory is created if missing.
	Path string
	// Logger receives the bus's errors and notices; nil discards them.
	Logger *slog.Logger
	// Registerer receives the bus's metrics; nil keeps them private.
	Registerer prometheus.Registerer

	// Retention is how long a message is kept at least (the producer's
	// lookback horizon plus a margin, so its restore can re-read it). Older
	// messages are deleted once every consumer group of their topic has
	// committed past them (see the package doc). Zero means
	// DefaultRetention.
	Retention time.Duration
	// GroupRetention is how long a consumer group that is not subscribed in
	// this process and has not committed keeps holding back retention (a
	// plug-in that was switched off). Zero means DefaultGroupRetention.
	GroupRetention time.Duration
	// RetentionInterval is the period of the retention loop. Zero means
	// DefaultRetentionInterval; negative disables the loop (ApplyRetention
	// still works).
	RetentionInterval time.Duration

	// MaxMessageBytes is the largest message Publish accepts: payload, UUID
	// and metadata keys and values. Zero means DefaultMaxMessageBytes; it
	// cannot exceed MaxMessageBytesCap.
	MaxMessageBytes int

	// PollInterval is how often an idle subscription looks for messages
	// another process wrote to the file; messages published through this
	// Bus wake its subscriptions at once. Zero means DefaultPollInterval.
	PollInterval time.Duration
	// BusyTimeout is SQLite's busy_timeout: how long one statement waits for
	// a lock another process holds. Zero means DefaultBusyTimeout.
	BusyTimeout time.Duration
	// LockTimeout is how long a write (a Publish, a commit) keeps retrying,
	// with backoff, while the file stays locked by another process, before
	// it fails. Zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// ReadConns is the number of read connections (subscriptions and the
	// offset queries share them). Zero means DefaultReadConns.
	ReadConns int
}

func (c *Config) setDefaults() error {
	if strings.TrimSpace(c.Path) == "" {
		return errors.New("sqlitebus: Config.Path is empty")
	}
	if strings.ContainsAny(c.Path, "?#") {
		return fmt.Errorf("sqlitebus: Config.Path %q contains '?' or '#', which SQLite would read as URI parameters", c.Path)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"Retention", &c.Retention, DefaultRetention},
		{"GroupRetention", &c.GroupRetention, DefaultGroupRetention},
		{"PollInterval", &c.PollInterval, DefaultPollInterval},
		{"BusyTimeout", &c.BusyTimeout, DefaultBusyTimeout},
		{"LockTimeout", &c.LockTimeout, DefaultLockTimeout},
	}
	for _, d := range durations {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 0:
			return fmt.Errorf("sqlitebus: Config.%s is negative (%s)", d.name, *d.v)
		}
	}
	if c.RetentionInterval == 0 {
		c.RetentionInterval = DefaultRetentionInterval
	}
	switch {
	case c.MaxMessageBytes == 0:
		c.MaxMessageBytes = DefaultMaxMessageBytes
	case c.MaxMessageBytes < 0 || c.MaxMessageBytes > MaxMessageBytesCap:
		return fmt.Errorf("sqlitebus: Config.MaxMessageBytes %d is out of range (1 to %d)", c.MaxMessageBytes, MaxMessageBytesCap)
	}
	switch {
	case c.ReadConns == 0:
		c.ReadConns = DefaultReadConns
	case c.ReadConns < 0:
		return fmt.Errorf("sqlitebus: Config.ReadConns is negative (%d)", c.ReadConns)
	}
	return nil
}

// Initial offsets accepted in SubscriberConfig.InitialOffset.
const (
	OffsetFirst = "first"
	OffsetLast  = "last"
)

// SubscriberConfig configures a Subscriber; it mirrors
// kafkabus.SubscriberConfig.
type SubscriberConfig struct {
	// ConsumerGroup names the group whose committed offset the subscriber
	// resumes from and advances; empty reads from InitialOffset and commits
	// nothing.
	ConsumerGroup string
	// InitialOffset is where a group without a committed offset (or a
	// subscription without a group) starts: OffsetFirst (the default) or
	// OffsetLast.
	InitialOffset string
	// MaxInFlight bounds the messages delivered and not yet acked per
	// subscription; 1 (the default) keeps offset order.
	MaxInFlight int
	// NackResendSleep is the pause before a nacked message is delivered
	// again. Zero means 100 ms; negative means none.
	NackResendSleep time.Duration
}

const defaultNackResendSleep = 100 * time.Millisecond

func (c *SubscriberConfig) setDefaults() error {
	switch strings.ToLower(strings.TrimSpace(c.InitialOffset)) {
	case "", OffsetFirst:
		c.InitialOffset = OffsetFirst
	case OffsetLast:
		c.InitialOffset = OffsetLast
	default:
		return fmt.Errorf("sqlitebus: unknown InitialOffset %q (want first or last)", c.InitialOffset)
	}
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = 1
	}
	switch {
	case c.NackResendSleep == 0:
		c.NackResendSleep = defaultNackResendSleep
	case c.NackResendSleep < 0:
		c.NackResendSleep = 0
	}
	return nil
}
