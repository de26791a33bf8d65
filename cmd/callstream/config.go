package main

import (
	"flag"
	"fmt"
	"path/filepath"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/consumers/alerting"
	"github.com/callstream/callstream/consumers/lake"
	"github.com/callstream/callstream/consumers/storage"
	"github.com/callstream/callstream/consumers/webhooks"
	"github.com/callstream/callstream/pkg/config"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// Config is the whole configuration of a callstream process: one YAML file
// serves every subcommand, each section owned by the package it configures.
type Config struct {
	Log         telemetry.LogConfig  `yaml:"log"`
	HTTP        telemetry.HTTPConfig `yaml:"http"`
	TopicPrefix string               `yaml:"topic_prefix" env:"CALLSTREAM_TOPIC_PREFIX" doc:"Prefix of every topic name, so several pipelines can share a cluster."`
	StateDir    string               `yaml:"state_dir" env:"CALLSTREAM_STATE_DIR" flag:"state-dir" doc:"Directory of embedded-mode state (producer checkpoint, consumer state, SQLite file)."`
	Simulator   unpodsim.Config      `yaml:"simulator"`
	Kafka       kafkabus.Config      `yaml:"kafka"`
	Unpod       unpod.Config         `yaml:"unpod"`
	Producer    producer.Config      `yaml:"producer"`
	Consumers   consumers.Config     `yaml:"consumers"`
	Storage     storage.Config       `yaml:"storage"`
	Alerting    alerting.Config      `yaml:"alerting"`
	Webhooks    webhooks.Config      `yaml:"webhooks"`
	Lake        lake.Config          `yaml:"lake"`
}

// DefaultConfig is the configuration before any file, variable or flag.
func DefaultConfig() Config {
	return Config{
		Log:         telemetry.DefaultLogConfig(),
		HTTP:        telemetry.DefaultHTTPConfig(),
		TopicPrefix: schemas.DefaultTopicPrefix,
		StateDir:    ".callstream",
		Simulator:   unpodsim.DefaultConfig(),
		// No brokers by default: DESIGN.md 6 says an empty KAFKA_BROKERS
		// means the in-process bus.
		Kafka:     func() kafkabus.Config { c := kafkabus.DefaultConfig(); c.Brokers = nil; return c }(),
		Unpod:     unpod.DefaultConfig(),
		Producer:  producer.DefaultConfig(),
		Consumers: consumers.DefaultConfig(),
		Storage:   storage.DefaultConfig(),
		Alerting:  alerting.DefaultConfig(),
		Webhooks:  webhooks.DefaultConfig(),
		Lake:      lake.DefaultConfig(),
	}
}

// loadConfig parses a subcommand's flags and loads the configuration in
// order: defaults, --config file, environment, flags. Flags are offered for
// the top-level options and for the named config sections (e.g. "producer").
// extra registers the subcommand's own flags on fs before parsing.
func loadConfig(e *env, name string, args []string, sections []string, extra func(fs *flag.FlagSet)) (*Config, *flag.FlagSet, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("callstream "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	file := fs.String("config", "", "YAML configuration file")
	bound, err := config.BindFlags(fs, &cfg, append([]string{"log", "http", "topic_prefix", "state_dir"}, sections...)...)
	if err != nil {
		return nil, nil, err
	}
	if extra != nil {
		extra(fs)
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return nil, nil, err
		}
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return nil, nil, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if err := config.LoadFile(*file, &cfg); err != nil {
		return nil, nil, err
	}
	if err := config.ApplyEnv(&cfg, e.lookupEnv); err != nil {
		return nil, nil, err
	}
	if err := bound.Apply(fs); err != nil {
		return nil, nil, err
	}
	if err := cfg.HTTP.Validate(); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	return &cfg, fs, nil
}

// statePath is a file or directory under the state directory.
func (c *Config) statePath(name string) string { return filepath.Join(c.StateDir, name) }
