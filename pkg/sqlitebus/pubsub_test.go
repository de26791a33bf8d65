package sqlitebus_test

import (
	"context"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"

	"github.com/callstream/callstream/pkg/sqlitebus"
)

var unsafeGroupChars = regexp.MustCompile(`[^a-zA-Z0-9._-]+`)

// openBus opens a Bus on a new file in the test's temporary directory and
// closes it when the test ends.
func openBus(t testing.TB, cfg sqlitebus.Config) *sqlitebus.Bus {
	t.Helper()
	if cfg.Path == "" {
		cfg.Path = filepath.Join(t.TempDir(), "bus.db")
	}
	b, err := sqlitebus.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func newSubscriber(t testing.TB, b *sqlitebus.Bus, cfg sqlitebus.SubscriberConfig) *sqlitebus.Subscriber {
	t.Helper()
	if cfg.NackResendSleep == 0 {
		cfg.NackResendSleep = 10 * time.Millisecond
	}
	s, err := b.Subscriber(cfg)
	if err != nil {
		t.Fatalf("Subscriber: %v", err)
	}
	return s
}

// suiteConstructors returns the suite's constructors on one Bus (one
// process owns the file, as in embedded mode): every Pub/Sub a suite test
// builds is a Publisher and a Subscriber of that Bus, in the test's group
// (or the one the suite names, or none).
func suiteConstructors(b *sqlitebus.Bus, grouped bool) (tests.PubSubConstructor, tests.ConsumerGroupPubSubConstructor) {
	build := func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
		return b.Publisher(), newSubscriber(t, b, sqlitebus.SubscriberConfig{ConsumerGroup: group, MaxInFlight: 1})
	}
	return func(t *testing.T) (message.Publisher, message.Subscriber) {
			group := ""
			if grouped {
				group = "suite-" + unsafeGroupChars.ReplaceAllString(t.Name(), "_")
			}
			return build(t, group)
		}, func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return build(t, group)
		}
}

// TestPubSubSuite runs watermill's universal suite with consumer groups and
// strict (MaxInFlight 1) delivery.
//
// GuaranteedOrder holds outright: a topic is one partition, and strict
// delivery hands out the next message only after the current one is acked
// (TestNoAck checks that). RequireSingleInstance: one process owns the file,
// so the suite's Pub/Subs are faces of one Bus, and the multi-instance
// variants (ten subscribers of one group sharing the work) do not apply:
// members of one group take turns (see the package doc). TestReconnect is
// skipped by the suite itself (there is no server to restart).
func TestPubSubSuite(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	newPS, newPSInGroup := suiteConstructors(b, true)
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:        true,
		ExactlyOnceDelivery:   false,
		GuaranteedOrder:       true,
		Persistent:            true,
		RequireSingleInstance: true,
	}, newPS, newPSInGroup)
}

// TestPubSubSuiteNoGroup runs the suite with subscribers outside any group:
// each reads the topic from its first offset and commits nothing, so a new
// subscriber sees old messages.
func TestPubSubSuiteNoGroup(t *testing.T) {
	b := openBus(t, sqlitebus.Config{})
	newPS, _ := suiteConstructors(b, false)
	tests.TestPubSub(t, tests.Features{
		ConsumerGroups:                   false,
		ExactlyOnceDelivery:              false,
		GuaranteedOrder:                  true,
		Persistent:                       true,
		RequireSingleInstance:            true,
		NewSubscriberReceivesOldMessages: true,
	}, newPS, nil)
}
