package main

import (
	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/consumers/alerting"
	"github.com/callstream/callstream/consumers/lake"
	"github.com/callstream/callstream/consumers/storage"
	"github.com/callstream/callstream/consumers/webhooks"
)

// plugins is the registry of consumer plug-ins: every consumer this binary
// can run, each built from its own config section. Adding a consumer is one
// line here and one section in Config; no other consumer changes.
func plugins(cfg *Config) []consumers.Factory {
	st := cfg.Storage
	st.StateDir = cfg.StateDir
	lk := cfg.Lake
	lk.Dir = lakeDir(cfg)
	al := cfg.Alerting
	al.StatusPageURL = cfg.HTTP.BaseURL()
	return []consumers.Factory{
		storage.Factory(st),
		alerting.Factory(al),
		webhooks.Factory(cfg.Webhooks),
		lake.Factory(lk),
	}
}
