package main

import (
	"flag"
	"fmt"
	"path/filepath"

	"github.com/callstream/callstream/pkg/config"
	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/schemas"
)

// Config is the whole configuration of a callstream process: one YAML file
// serves every subcommand, each section owned by the package it configures.
type Config struct {
	Log         telemetry.LogConfig  `yaml:"log"`
	HTTP        telemetry.HTTPConfig `yaml:"http"`
	TopicPrefix string               `yaml:"topic_prefix" env:"CALLSTREAM_TOPIC_PREFIX" doc:"Prefix of every topic name, so several pipelines can share a cluster."`
	StateDir    string               `yaml:"state_dir" env:"CALLSTREAM_STATE_DIR" flag:"state-dir" doc:"Directory of embedded-mode state (producer checkpoint, consumer state, SQLite file)."`
}

// DefaultConfig is the configuration before any file, variable or flag.
func DefaultConfig() Config {
	return Config{
		Log:         telemetry.DefaultLogConfig(),
		HTTP:        telemetry.DefaultHTTPConfig(),
		TopicPrefix: schemas.DefaultTopicPrefix,
		StateDir:    ".callstream",
	}
}

// loadConfig parses a subcommand's flags and loads the configuration in
// order: defaults, --config file, environment, flags. extra registers the
// subcommand's own flags on fs before parsing.
func loadConfig(e *env, name string, args []string, extra func(fs *flag.FlagSet)) (*Config, *flag.FlagSet, error) {
	cfg := DefaultConfig()
	fs := flag.NewFlagSet("callstream "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	file := fs.String("config", "", "YAML configuration file")
	bound, err := config.BindFlags(fs, &cfg)
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
	return &cfg, fs, nil
}

// statePath is a file or directory under the state directory.
func (c *Config) statePath(name string) string { return filepath.Join(c.StateDir, name) }
