package storage

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
)

func TestEffectiveDSN(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"default state dir", Config{}, "sqlite://" + filepath.Join(DefaultStateDir, "callstream.db")},
		{"state dir given", Config{StateDir: "/var/lib/cs"}, "sqlite:///var/lib/cs/callstream.db"},
		{"DSN wins", Config{StateDir: "/var/lib/cs", DSN: " postgres://h/db "}, "postgres://h/db"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.cfg.EffectiveDSN(); got != tc.want {
				t.Errorf("EffectiveDSN() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn     string
		dialect string
		path    string
	}{
		{"sqlite:///abs/calls.db", DialectSQLite, "/abs/calls.db"},
		{"sqlite://rel/calls.db", DialectSQLite, "rel/calls.db"},
		{"sqlite:calls.db", DialectSQLite, "calls.db"},
		{"file:/x/calls.db", DialectSQLite, "/x/calls.db"},
		{"postgres://u:pw@h:5432/db?sslmode=disable", DialectPostgres, ""},
		{"postgresql://h/db", DialectPostgres, ""},
	}
	for _, tc := range tests {
		t.Run(tc.dsn, func(t *testing.T) {
			got, err := parseDSN(tc.dsn)
			if err != nil {
				t.Fatalf("parseDSN: %v", err)
			}
			if got.dialect != tc.dialect || got.path != tc.path {
				t.Errorf("parseDSN = %s %q, want %s %q", got.dialect, got.path, tc.dialect, tc.path)
			}
			if strings.Contains(got.redacted, "pw") {
				t.Errorf("redacted form %q shows the password", got.redacted)
			}
		})
	}
}

// TestBadDSN: a DSN that cannot work fails Open with an error that names
// what is wrong (the scheme, the server) and never shows the password.
func TestBadDSN(t *testing.T) {
	const secret = "s3cr3t-pw"
	tests := []struct {
		dsn  string
		want string
	}{
		{"mysql://app:" + secret + "@db:3306/calls", `scheme "mysql"`},
		{"mongodb://app:" + secret + "@db/calls", `scheme "mongodb"`},
		{"app:" + secret + "@db/calls", `scheme "app"`},
		{"just-a-file.db", "has no scheme"},
		{"host=db user=app password=" + secret, "has no scheme"},
		{"postgres://app:" + secret + "%zz@db/calls", "does not parse"},
		{"sqlite://", "names no file"},
		{"sqlite:///tmp/x.db?_pragma=foo", "query parameters"},
		{"sqlite:?_pragma=foo", "query parameters"}, // nothing but the query
		// Port 1 on loopback: nothing listens; it is retried until the
		// context ends, and the error is the database's.
		{"postgres://app:" + secret + "@127.0.0.1:1/calls?sslmode=disable&connect_timeout=2", "connect to PostgreSQL postgres://app:xxxxx@127.0.0.1:1/calls"},
		{"postgres://app:" + secret + "@127.0.0.1:1/calls?sslmode=bogus", "PostgreSQL DSN"},
	}
	for _, tc := range tests {
		t.Run(tc.dsn, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			s, err := Open(ctx, testConfig(tc.dsn), consumers.Deps{})
			if err == nil {
				_ = s.Close()
				t.Fatalf("Open(%q) succeeded", tc.dsn)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestSQLiteDefaultFileUnderStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "nested")
	cfg := DefaultConfig()
	cfg.StateDir = dir
	s, err := Open(context.Background(), cfg, consumers.Deps{})
	if err != nil {
		t.Fatalf("Open with the default DSN: %v", err)
	}
	defer s.Close()
	handle(t, s, callEvent("state-1", 1))
	if got := readAll(t, s); len(got) != 1 {
		t.Fatalf("%d rows, want 1", len(got))
	}
	if _, err := filepath.Glob(filepath.Join(dir, "callstream.db")); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "callstream.db")); len(m) != 1 {
		t.Errorf("no callstream.db under the state directory %s", dir)
	}
}

// TestConfigValidate: each bad setting is refused with an error naming it;
// the edges just inside are accepted.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name                   string
		batch, inFlight, conns int
		want                   string // "" when valid
	}{
		{"defaults", 0, 0, 0, ""},
		{"negative batch_size", -1, 0, 0, "batch_size -1"},
		{"in flight below the batch", 100, 99, 0, "max_in_flight 99"},
		{"in flight equal to the batch", 100, 100, 0, ""},
		{"in flight left to the runtime", 100, 0, 0, ""},
		{"in flight with the default batch", 0, 5, 0, ""},
		{"negative max_conns", 0, 0, -1, "max_conns -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.BatchSize, cfg.MaxInFlight, cfg.MaxConns = tt.batch, tt.inFlight, tt.conns
			err := cfg.validate()
			if tt.want == "" && err != nil {
				t.Fatalf("validate: %v, want no error", err)
			}
			if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("validate: %v, want an error naming %q", err, tt.want)
			}
		})
	}
	// Open refuses it too, before it connects to anything.
	cfg := DefaultConfig()
	cfg.BatchSize, cfg.MaxInFlight = 100, 10
	if _, err := Open(context.Background(), cfg, consumers.Deps{}); err == nil || !strings.Contains(err.Error(), "max_in_flight") {
		t.Errorf("Open with max_in_flight below batch_size: %v, want an error naming max_in_flight", err)
	}
}

// TestRedact: the password goes, everything else that names the database
// stays, also in DSNs that do not parse as URLs.
func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://app:pw@db:5432/calls", "postgres://app:xxxxx@db:5432/calls"},
		{"postgres://app:pw%zz@db/calls", "postgres://app:xxxxx@db/calls"}, // a bad escape: not a URL
		{"postgres://app:p@w@db/calls?x=%zz", "postgres://app:xxxxx@db/calls?x=%zz"},
		{"postgres://app@db/calls?x=%zz", "postgres://app@db/calls?x=%zz"}, // no password
		{"postgres://:pw%zz@db/calls", "postgres://:xxxxx@db/calls"},       // a password and no user
		{"//app:pw%zz@db/calls", "//app:xxxxx@db/calls"},                   // no scheme
		{"sqlite:///tmp/x.db", "sqlite:///tmp/x.db"},
	} {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
