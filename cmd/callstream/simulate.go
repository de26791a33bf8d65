package main

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sync/errgroup"

	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/pkg/unpodsim"
)

// cmdSimulate serves the simulated Unpod API as a process, for demos, the
// compose file and tests that want a separate server.
func cmdSimulate(ctx context.Context, e *env, args []string) error {
	cfg, _, err := loadConfig(e, "simulate", args, []string{"simulator"}, nil)
	if err != nil {
		return err
	}
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	reg := telemetry.NewRegistry()
	sim := cfg.Simulator
	sim.Logger, sim.Registerer = logger, reg
	srv, err := unpodsim.New(sim)
	if err != nil {
		return fmt.Errorf("simulator: %w", err)
	}
	ln, err := net.Listen("tcp", sim.Listen)
	if err != nil {
		return fmt.Errorf("simulator: listen on %s: %w", sim.Listen, err)
	}
	logger.Info("simulated Unpod API up", "url", "http://"+ln.Addr().String(), "orgs", srv.Orgs(),
		"hint", "point the client at it: UNPOD_API_URL=http://"+ln.Addr().String()+" UNPOD_API_TOKEN=<simulator.token>")
	fmt.Fprintf(e.stdout, "simulator listening on http://%s\n", ln.Addr())

	ops := telemetry.NewServer(cfg.HTTP, reg, logger)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(ctx, ln) })
	g.Go(func() error { return ops.Run(ctx) })
	return g.Wait()
}
