// Command callstream turns the Unpod call-logs API into a stream of call
// events on Kafka and fans them out to consumers. One binary, several
// subcommands; see `callstream help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// env is what a subcommand may touch of the outside world, so tests can run
// subcommands in-process.
type env struct {
	stdout, stderr io.Writer
	lookupEnv      func(string) (string, bool)
}

type command struct {
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"run":         {"run the producer and every enabled consumer in one process (embedded mode)", cmdRun},
		"produce":     {"poll the Unpod API and publish call events to the bus", cmdProduce},
		"consume":     {"run consumer plug-ins (--only a,b for a subset)", cmdConsume},
		"dlq":         {"put dead-lettered messages back on their topics (dlq replay [--limit N] [--dry-run])", cmdDLQ},
		"simulate":    {"serve a simulated Unpod API", cmdSimulate},
		"backfill":    {"read a past time range once through the dedup gate", cmdBackfill},
		"audit":       {"compare the API's count per day or hour with what was published, stored and written to the lake", cmdAudit},
		"config":      {"validate or print the effective configuration (config validate|print)", cmdConfig},
		"version":     {"print the version", cmdVersion},
		"healthcheck": {"probe a running process's /readyz (for container health checks)", cmdHealthcheck},
	}
}

// errUsage marks an error caused by how the command was called: exit code 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runMain(ctx, &env{stdout: os.Stdout, stderr: os.Stderr, lookupEnv: os.LookupEnv}, os.Args[1:]))
}

func runMain(ctx context.Context, e *env, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(e.stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "callstream: unknown command %q\n\n", args[0])
		usage(e.stderr, cmds)
		return 2
	}
	err := c.run(ctx, e, args[1:])
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "callstream %s: %v\n", args[0], err)
		return 2
	default:
		fmt.Fprintf(e.stderr, "callstream %s: %v\n", args[0], err)
		return 1
	}
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: callstream <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-9s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nEvery command takes --config FILE (YAML); environment variables override the file, flags override both.")
	fmt.Fprintln(w, "Run `callstream <command> -h` for its flags.")
}

func cmdVersion(_ context.Context, e *env, _ []string) error {
	fmt.Fprintln(e.stdout, "callstream", version)
	return nil
}
