package main

import (
	"errors"
	"io"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/telemetry"
)

// Validate runs every check that run, produce and consume run on their
// sections before they start, so `callstream config validate` refuses what
// they would refuse, and names each problem. Sections a command does not
// use are checked too: one file serves every command.
func (c *Config) Validate() error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	_, err := telemetry.NewLogger(io.Discard, c.Log)
	add(err)
	add(c.HTTP.Validate())
	if len(c.Kafka.Brokers) > 0 {
		add(c.Kafka.Validate())
	}
	add(c.Unpod.Validate())
	add(c.Producer.Validate())
	_, err = consumers.Select(plugins(c), c.Consumers.Enabled, c.Consumers.Only)
	add(err)
	add(c.Storage.Validate())
	add(c.Alerting.Validate())
	add(c.Webhooks.Validate())
	add(c.Lake.Validate())
	return errors.Join(errs...)
}
