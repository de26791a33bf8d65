package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/consumers/lake"
	"github.com/callstream/callstream/consumers/storage"
	"github.com/callstream/callstream/pkg/audit"
	"github.com/callstream/callstream/pkg/telemetry"
	"github.com/callstream/callstream/pkg/unpod"
	"github.com/callstream/callstream/schemas"
)

// errGap is the error of an audit that found a difference: exit code 1,
// after the table.
var errGap = errors.New("completeness gap")

// auditOpts are the flags of `callstream audit`.
type auditOpts struct {
	orgs     []string
	from, to time.Time
	step     time.Duration
	only     []string
}

// cmdAudit is the completeness audit: for each organization and each closed
// day (or hour) of a range, the API's count against the distinct calls on
// the events topic, in storage and in the lake (those configured). It
// prints the table and fails when a count differs.
func cmdAudit(ctx context.Context, e *env, args []string) error {
	var orgS, fromS, toS, by, only string
	cfg, _, err := loadConfig(e, "audit", args, []string{"kafka", "unpod", "lake"}, func(fs *flag.FlagSet) {
		fs.StringVar(&orgS, "org", "", "Org-Handles to audit, comma-separated (default: producer.org_handles)")
		fs.StringVar(&fromS, "from", "", "start of the range, creation time, ISO 8601 (required); moved back to the start of its day or hour")
		fs.StringVar(&toS, "to", "", "end of the range (exclusive), ISO 8601; default now; windows not closed yet are skipped")
		fs.StringVar(&by, "by", "day", "window size: day or hour (UTC)")
		fs.StringVar(&only, "only", "", "check only these, comma-separated (published, storage, lake); default: the events topic and the enabled consumer plug-ins")
	})
	if err != nil {
		return err
	}
	o, err := parseAuditFlags(cfg, orgS, fromS, toS, by, only, time.Now())
	if err != nil {
		return err
	}
	p := cfg.Producer
	settled := p.SettleLag + slices.Max(p.RescanAges)
	ws, open, err := audit.Windows(o.from, o.to, time.Now().Add(-settled), o.step)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(ws) == 0 {
		return fmt.Errorf("%w: --from %s --to %s: no window of the range is closed yet: a window closes settle_lag plus the largest rescan age (%s) after it ends",
			errUsage, fromS, o.to.Format(time.RFC3339), settled)
	}
	logger, err := telemetry.NewLogger(e.stderr, cfg.Log)
	if err != nil {
		return err
	}
	if strings.TrimSpace(cfg.Unpod.Token) == "" {
		return fmt.Errorf("%w: the audit asks the API for its counts: set UNPOD_API_TOKEN", errUsage)
	}
	ucfg := cfg.Unpod
	ucfg.Logger = logger
	client, err := unpod.New(ucfg)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	checkStorage, checkLake, err := auditSinks(e, cfg, o.only)
	if err != nil {
		return err
	}
	checkPublished := len(o.only) == 0 || slices.Contains(o.only, publishedSink)

	rows := make(map[string][]audit.Row, len(o.orgs))
	for _, org := range o.orgs {
		r := make([]audit.Row, len(ws))
		for i, w := range ws {
			r[i] = audit.Row{Org: org, Window: w, Published: audit.NotChecked, Stored: audit.NotChecked, Lake: audit.NotChecked}
			// One request per window: page_size=1 returns the count.
			pg, err := client.CallLogs(ctx, unpod.Query{Org: org, Page: 1, PageSize: 1, Start: w.Start, End: w.End})
			if err != nil {
				return fmt.Errorf("API count of org %s in [%s, %s): %w", org, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339), err)
			}
			r[i].API = int64(pg.Count)
		}
		rows[org] = r
	}
	if checkPublished {
		if err := countPublished(ctx, e, cfg, logger, o.orgs, ws, rows); err != nil {
			return err
		}
	}
	if checkStorage {
		if err := countStored(ctx, cfg, logger, o.orgs, rows); err != nil {
			return err
		}
	}
	if checkLake {
		for _, org := range o.orgs {
			n, err := lake.CountCalls(ctx, lakeDir(cfg), org, ws)
			if err != nil {
				return err
			}
			for i := range n {
				rows[org][i].Lake = n[i]
			}
		}
	}

	var all []audit.Row
	for _, org := range o.orgs {
		all = append(all, rows[org]...)
	}
	fmt.Fprintf(e.stdout, "audit of [%s, %s) by %s: %d closed windows per org, %d not closed yet; %d API requests\n",
		ws[0].Start.Format(time.RFC3339), ws[len(ws)-1].End.Format(time.RFC3339), by, len(ws), open, len(ws)*len(o.orgs))
	if err := audit.WriteTable(e.stdout, all); err != nil {
		return err
	}
	s := audit.Summarize(all)
	fmt.Fprintf(e.stdout, "missing: %d calls in %d of %d windows; extra: %d calls in %d windows\n",
		s.Missing, s.GapWindows, s.Windows, s.Extra, s.ExtraWindows)
	if s.Missing > 0 || s.Extra > 0 {
		return fmt.Errorf("%w: %d calls missing in %d windows, %d extra in %d windows", errGap, s.Missing, s.GapWindows, s.Extra, s.ExtraWindows)
	}
	return nil
}

// parseAuditFlags checks the flags, naming the one that is wrong.
func parseAuditFlags(cfg *Config, orgS, fromS, toS, by, only string, now time.Time) (auditOpts, error) {
	var o auditOpts
	for _, s := range strings.Split(orgS, ",") {
		if s = strings.TrimSpace(s); s != "" {
			o.orgs = append(o.orgs, s)
		}
	}
	if len(o.orgs) == 0 {
		o.orgs = cfg.Producer.Orgs
	}
	if len(o.orgs) == 0 {
		return o, fmt.Errorf("%w: --org: want at least one Org-Handle (or set UNPOD_ORG_HANDLES)", errUsage)
	}
	if fromS == "" {
		return o, fmt.Errorf("%w: --from: want the start of the range, e.g. --from 2026-12-01", errUsage)
	}
	var err error
	if o.from, err = unpod.ParseTime(fromS); err != nil {
		return o, fmt.Errorf("%w: --from: %v", errUsage, err)
	}
	o.to = now.UTC()
	if toS != "" {
		if o.to, err = unpod.ParseTime(toS); err != nil {
			return o, fmt.Errorf("%w: --to: %v", errUsage, err)
		}
	}
	if !o.from.Before(o.to) {
		return o, fmt.Errorf("%w: --from %s is not before --to %s", errUsage, fromS, o.to.Format(time.RFC3339))
	}
	if o.step, err = audit.ParseStep(by); err != nil {
		return o, fmt.Errorf("%w: --by: %v", errUsage, err)
	}
	for _, s := range strings.Split(only, ",") {
		switch s = strings.TrimSpace(s); s {
		case "":
		case publishedSink, storageSink, lakeSink:
			o.only = append(o.only, s)
		default:
			return o, fmt.Errorf("%w: --only: unknown sink %q: want published, storage or lake", errUsage, s)
		}
	}
	return o, nil
}

const (
	publishedSink = "published"
	storageSink   = "storage"
	lakeSink      = lake.Name
)

// auditSinks says which sinks the audit checks: those named by only, else
// the enabled plug-ins among storage and lake. A sink left at its default
// location that has nothing there is not checked (this process may not be
// where the consumers run), with a note on stderr.
func auditSinks(e *env, cfg *Config, only []string) (checkStorage, checkLake bool, err error) {
	var names []string
	if len(only) > 0 {
		names = only
	} else {
		sel, err := consumers.Select(plugins(cfg), cfg.Consumers.Enabled, nil)
		if err != nil {
			return false, false, fmt.Errorf("%w: %v", errUsage, err)
		}
		for _, f := range sel {
			names = append(names, f.Name)
		}
	}
	explicit := len(only) > 0
	if slices.Contains(names, storageSink) {
		st := cfg.Storage
		st.StateDir = cfg.StateDir
		path, exists, err := st.ExistingSQLite()
		switch {
		case err != nil:
			return false, false, fmt.Errorf("%w: %v", errUsage, err)
		case exists:
			checkStorage = true
		case explicit || strings.TrimSpace(cfg.Storage.DSN) != "":
			return false, false, fmt.Errorf("storage: the SQLite file %s does not exist", path)
		default:
			fmt.Fprintf(e.stderr, "storage not checked: no database at the default %s (set CALLSTREAM_STORAGE_DSN)\n", path)
		}
	}
	if slices.Contains(names, lakeSink) {
		dir := lakeDir(cfg)
		_, statErr := os.Stat(dir)
		switch {
		case statErr == nil:
			checkLake = true
		case explicit || cfg.Lake.Dir != lake.DefaultConfig().Dir:
			return false, false, fmt.Errorf("lake: directory %s: %w", dir, statErr)
		default:
			fmt.Fprintf(e.stderr, "lake not checked: no lake at the default %s (set CALLSTREAM_LAKE_DIR)\n", dir)
		}
	}
	return checkStorage, checkLake, nil
}

// auditEvent is what the audit reads of an event on the calls topic.
type auditEvent struct {
	Org          string    `json:"org"`
	CallKey      string    `json:"call_key"`
	CreationTime time.Time `json:"creation_time"`
}

// countPublished reads the events topic once (Kafka, or the embedded bus of
// the state directory) and counts the distinct (org, call_key) of each
// window. The topic's retention bounds how far back this can see: the
// embedded bus keeps localRetention, so older windows are not checked
// there; Kafka's retention.ms is the operator's (7 days by default).
func countPublished(ctx context.Context, e *env, cfg *Config, logger *slog.Logger, orgs []string, ws []audit.Window, rows map[string][]audit.Row) error {
	b, err := openBus(ctx, cfg, "reads the published events from", logger, nil)
	if err != nil {
		return err
	}
	defer b.close()
	topic := schemas.TopicName(cfg.TopicPrefix, schemas.CallsTopic)
	seen := make(map[string][]map[string]struct{}, len(orgs))
	for _, org := range orgs {
		seen[org] = make([]map[string]struct{}, len(ws))
	}
	bad := 0
	err = b.eventLog(topic).ReadFrom(ctx, map[int]int64{}, func(v []byte) error {
		var ev auditEvent
		if err := json.Unmarshal(v, &ev); err != nil || ev.CallKey == "" {
			bad++
			return nil
		}
		s, ok := seen[ev.Org]
		if !ok {
			return nil
		}
		i := audit.Locate(ws, ev.CreationTime)
		if i < 0 {
			return nil
		}
		if s[i] == nil {
			s[i] = map[string]struct{}{}
		}
		s[i][ev.CallKey] = struct{}{}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the events of %s: %w", topic, err)
	}
	if bad > 0 {
		logger.Warn("records of the events topic that are not call events were skipped", "topic", topic, "records", bad)
	}
	var kept time.Time // windows starting before it may have lost events to retention
	if len(cfg.Kafka.Brokers) == 0 {
		kept = time.Now().Add(-localRetention(cfg.Producer))
	}
	skipped := 0
	for org, s := range seen {
		for i := range s {
			if ws[i].Start.Before(kept) {
				skipped++
				continue
			}
			rows[org][i].Published = int64(len(s[i]))
		}
	}
	if skipped > 0 {
		fmt.Fprintf(e.stderr, "published not checked in %d windows: the embedded bus keeps events only %s (twice the rescan horizon plus an hour)\n",
			skipped, localRetention(cfg.Producer))
	}
	return nil
}

// countStored counts the rows of each window in call_logs.
func countStored(ctx context.Context, cfg *Config, logger *slog.Logger, orgs []string, rows map[string][]audit.Row) error {
	st := cfg.Storage
	st.StateDir = cfg.StateDir
	store, err := storage.Open(ctx, st, consumers.Deps{Logger: logger})
	if err != nil {
		return err
	}
	defer store.Close()
	for _, org := range orgs {
		for i := range rows[org] {
			w := rows[org][i].Window
			n, err := store.CountCalls(ctx, org, w.Start, w.End)
			if err != nil {
				return err
			}
			rows[org][i].Stored = n
		}
	}
	return nil
}
