package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/callstream/callstream/pkg/statuspage"
	"github.com/callstream/callstream/pkg/telemetry"
)

// serveStatusPage mounts the live status page at / on the operational
// listener and samples reg for it in g until ctx ends. The page shows the
// parts this process runs: the producer when withProducer, and plugins.
func serveStatusPage(ctx context.Context, g *errgroup.Group, ops *telemetry.Server, cfg telemetry.HTTPConfig,
	reg prometheus.Gatherer, logger *slog.Logger, process string, withProducer bool, plugins []string) error {
	if cfg.Listen == "" {
		return nil // no listener, nobody to show it to
	}
	page, err := statuspage.New(statuspage.DefaultConfig(), statuspage.Deps{
		Gatherer: reg, Process: process, Producer: withProducer, Plugins: plugins,
		Logger: logger.With("component", "statuspage"),
	})
	if err != nil {
		return fmt.Errorf("status page: %w", err)
	}
	page.Register(ops)
	g.Go(func() error { return page.Run(ctx) })
	logger.Info("status page up", "url", cfg.BaseURL()+"/")
	return nil
}
