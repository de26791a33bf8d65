package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"time"
)

// cmdHealthcheck probes a callstream process's /readyz (or any URL) and
// exits 0 only on a 2xx answer: container images without a shell or curl use
// it as their health check.
func cmdHealthcheck(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("callstream healthcheck", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	url := fs.String("url", "http://127.0.0.1:9464/readyz", "URL to probe")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("%w: bad --url %q: %v", errUsage, *url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("probe %s: %w", *url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("probe %s: status %d", *url, resp.StatusCode)
	}
	fmt.Fprintln(e.stdout, "ok")
	return nil
}
