package storage

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// DefaultStateDir is the state directory assumed when Config.StateDir is
// empty; it matches the default of CALLSTREAM_STATE_DIR.
const DefaultStateDir = ".callstream"

// Config configures the storage consumer.
type Config struct {
	DSN string `yaml:"dsn" env:"CALLSTREAM_STORAGE_DSN" secret:"true" doc:"Where call logs are stored: sqlite:///path/to/file.db or postgres://user:pass@host/db; empty means sqlite://<state_dir>/callstream.db."`
	// StateDir is the process's state directory; the composing command copies
	// its own state_dir here so the default SQLite file follows it.
	StateDir string `yaml:"-"`

	BatchSize   int           `yaml:"batch_size" doc:"Most events written in one transaction."`
	BatchWait   time.Duration `yaml:"batch_wait" doc:"Longest an event waits for its batch to fill before the batch is written."`
	MaxInFlight int           `yaml:"max_in_flight" doc:"Unacknowledged events the subscriber may hand out at once; at least batch_size. The runtime raises it to three batches, so the next batch fills and waits while one is written."`

	ConnectTimeout time.Duration `yaml:"connect_timeout" doc:"How long opening the database and running migrations may take at start."`
	MaxConns       int           `yaml:"max_conns" doc:"PostgreSQL connection pool size (SQLite always uses one writer connection)."`
	BusyTimeout    time.Duration `yaml:"busy_timeout" doc:"How long SQLite waits for a lock held by another process before a write fails."`
}

// DefaultConfig returns the configuration used when nothing is set: SQLite
// under the state directory, batches of up to 2000 events or 100 ms.
func DefaultConfig() Config {
	return Config{
		BatchSize:      2000,
		BatchWait:      100 * time.Millisecond,
		MaxInFlight:    6000,
		ConnectTimeout: 30 * time.Second,
		MaxConns:       4,
		BusyTimeout:    5 * time.Second,
	}
}

// EffectiveDSN returns the DSN the consumer opens: DSN, or the SQLite file
// under the state directory when DSN is empty.
func (c Config) EffectiveDSN() string {
	if strings.TrimSpace(c.DSN) != "" {
		return strings.TrimSpace(c.DSN)
	}
	dir := c.StateDir
	if dir == "" {
		dir = DefaultStateDir
	}
	return "sqlite://" + filepath.Join(dir, "callstream.db")
}

// Dialects a DSN can name.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// target is a parsed DSN.
type target struct {
	dialect string
	// path is the SQLite file (without query); conn is the PostgreSQL
	// connection string as given.
	path string
	conn string
	// redacted names the database in errors and logs without a password.
	redacted string
}

// parseDSN splits a DSN into its dialect and location. Its errors never
// contain a password.
func parseDSN(dsn string) (target, error) {
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok || scheme == "" {
		// Not echoed: a key=value connection string may hold a password.
		return target{}, errors.New("storage: the DSN has no scheme: want sqlite:///path/file.db or postgres://host/db (key=value connection strings are not supported)")
	}
	switch strings.ToLower(scheme) {
	case "sqlite", "sqlite3", "file":
		// sqlite:///abs/path, sqlite://rel/path and sqlite:rel/path all name a file.
		p := strings.TrimPrefix(rest, "//")
		if i := strings.IndexByte(p, '?'); i >= 0 {
			return target{}, fmt.Errorf("storage: SQLite DSN %q: query parameters are not supported; pragmas are set by the consumer", redact(dsn))
		}
		if p == "" {
			return target{}, fmt.Errorf("storage: SQLite DSN %q names no file", dsn)
		}
		return target{dialect: DialectSQLite, path: p, redacted: "sqlite://" + p}, nil
	case "postgres", "postgresql":
		u, err := url.Parse(dsn)
		if err != nil {
			return target{}, fmt.Errorf("storage: PostgreSQL DSN %q does not parse as a URL", redact(dsn))
		}
		return target{dialect: DialectPostgres, conn: dsn, redacted: u.Redacted()}, nil
	default:
		// Only the scheme: the rest may hold a password in a form we cannot parse.
		return target{}, fmt.Errorf("storage: unsupported DSN scheme %q: want sqlite:///path/file.db or postgres://host/db", scheme)
	}
}

// redact hides the password of anything that looks like user:pass@host.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	// Not a URL: hide everything between the first ':' after "//" and '@'.
	if i := strings.Index(dsn, "//"); i >= 0 {
		if at := strings.LastIndexByte(dsn, '@'); at > i {
			creds := dsn[i+2 : at]
			if c := strings.IndexByte(creds, ':'); c >= 0 {
				return dsn[:i+2] + creds[:c] + ":xxxxx" + dsn[at:]
			}
		}
	}
	return dsn
}
