package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/testenv"
)

// privatePostgres is a PostgreSQL server of the test's own, which the test
// may stop and start (the shared one must never be stopped). It is run by
// deploy/postgres/postgres.sh, as `make test` runs the shared one, on a free
// port with a data directory of its own, and is stopped and removed when the
// test ends.
type privatePostgres struct {
	t      testing.TB
	script string
	env    []string
	dir    string
	dsn    string
}

// startPrivatePostgres starts a private server. Like testenv, it skips the
// test when no integration services are configured, and fails it when
// CALLSTREAM_INTEGRATION=1 and the server cannot be started.
func startPrivatePostgres(t testing.TB) *privatePostgres {
	t.Helper()
	if !testenv.Required() && os.Getenv("CALLSTREAM_TEST_POSTGRES_DSN") == "" {
		t.Skip("a private PostgreSQL needs the PostgreSQL server binaries; run `make test`, which has them")
	}
	script, err := filepath.Abs(filepath.Join("..", "..", "deploy", "postgres", "postgres.sh"))
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	// Not under t.TempDir: the server runs as the postgres user when the
	// test runs as root, and must be able to reach its directory.
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("callstream-storage-pg-%d-%06d", port, rand.IntN(1_000_000)))
	p := &privatePostgres{
		t:      t,
		script: script,
		env:    append(os.Environ(), fmt.Sprintf("PG_PORT=%d", port), "PG_DATA_DIR="+dir),
		dir:    dir,
	}
	t.Cleanup(func() {
		p.run("down")
		_ = os.RemoveAll(dir)
		_ = os.Remove(dir + ".initdb.log")
	})
	p.dsn = strings.TrimSpace(p.run("up"))
	if !strings.HasPrefix(p.dsn, "postgres://") {
		t.Fatalf("postgres.sh up printed %q, want a DSN", p.dsn)
	}
	return p
}

// stop stops the server (a fast shutdown: sessions are terminated).
func (p *privatePostgres) stop() { p.run("down") }

// start starts the stopped server again, with its data.
func (p *privatePostgres) start() { p.run("up") }

func (p *privatePostgres) run(verb string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.script, verb)
	cmd.Env = p.env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("postgres.sh %s (data %s): %v\n%s", verb, p.dir, err, stderr.String())
	}
	return string(out)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
