package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/consumers/lake"
	"github.com/callstream/callstream/consumers/storage"
	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/sqlitebus"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/pkg/unpodsim"
	"github.com/callstream/callstream/producer"
	"github.com/callstream/callstream/schemas"
)

// TestAuditFlags: every bad flag is a usage error (exit 2) naming it.
func TestAuditFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", "2026-12-01"}, "--org"},
		{[]string{"--org", "acme"}, "--from"},
		{[]string{"--org", "acme", "--from", "yesterday"}, "--from"},
		{[]string{"--org", "acme", "--from", "2026-12-01", "--to", "soon"}, "--to"},
		{[]string{"--org", "acme", "--from", "2026-12-02", "--to", "2026-12-01"}, "is not before --to"},
		{[]string{"--org", "acme", "--from", "2026-12-01", "--to", "2026-12-02", "--by", "week"}, "--by"},
		{[]string{"--org", "acme", "--from", "2026-12-01", "--to", "2026-12-02", "--only", "webhooks"}, "--only"},
		{[]string{"--org", "acme", "--from", time.Now().Add(-time.Hour).Format(time.RFC3339)}, "no window of the range is closed yet"},
		{[]string{"--org", "acme", "--from", "2026-12-01", "--to", "2026-12-02", "--bogus"}, "bogus"},
	} {
		var out bytes.Buffer
		e := &env{stdout: &out, stderr: &out, lookupEnv: func(string) (string, bool) { return "", false }}
		code := runMain(context.Background(), e, append([]string{"audit", "--state-dir", t.TempDir()}, c.args...))
		if code != 2 || !strings.Contains(out.String(), c.want) {
			t.Errorf("audit %v: exit %d, output %q; want exit 2 naming %q", c.args, code, out.String(), c.want)
		}
	}
}

// TestAuditBinary runs `callstream audit` as a process against the
// simulator and a state directory the test fills itself: the events of
// the simulator's own truth on the embedded bus, in call_logs and in the
// lake, with a few left out of each. The table must show, per hour,
// the simulator's count and exactly what was left out, and the exit code
// must say whether anything is missing. In integration mode the same
// events go to a fresh topic of the shared Kafka broker too, and the audit
// reads them there.
func TestAuditBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "callstream")
	if err := e2eGoBuild(bin); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// Three hours ending 37 hours ago; the audit runs with a rescan
	// horizon of a day, so they are closed (a day old) and still on the
	// embedded bus (which keeps events twice the horizon plus an hour).
	hour0 := time.Now().UTC().Truncate(time.Hour).Add(-40 * time.Hour)
	day := hour0.Truncate(24 * time.Hour)
	sc := unpodsim.DefaultConfig()
	sc.Orgs, sc.Token, sc.Start, sc.CallsPerMinute, sc.DailyShape, sc.Incidents = []string{"acme", "globex"}, "audit-token", day, 1, false, nil
	sc.Updates, sc.InvalidRecords, sc.Faults = 0, 0, unpodsim.Faults{}
	sim, err := unpodsim.New(sc)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	url, wait, err := sim.Listen(sctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); _ = wait() }()

	// Three hours of each org; acme loses 3 calls of hour 1 on the bus
	// (so in storage and the lake too), 2 of hour 2 in storage and 1 of
	// hour 0 in the lake.
	hours := []time.Time{hour0, hour0.Add(time.Hour), hour0.Add(2 * time.Hour)}
	now := time.Now()
	type call struct {
		ev   schemas.CallEvent
		hour int
	}
	var all []call
	truth := map[string][]int{}
	for _, org := range sc.Orgs {
		for h, start := range hours {
			recs := sim.GroundTruthWindow(org, start, start.Add(time.Hour), now)
			if len(recs) < 20 {
				t.Fatalf("%s hour %d: only %d calls in the simulator", org, h, len(recs))
			}
			truth[org] = append(truth[org], len(recs))
			for i := range recs {
				id := producer.Identify(org, &recs[i])
				all = append(all, call{producer.NewEvent(org, &recs[i], id, 1, now), h})
				if h == 0 && i < 5 {
					rev2 := producer.NewEvent(org, &recs[i], id, 2, now.Add(time.Minute))
					rev2.EventID = rev2.EventID[:len(rev2.EventID)-1] + "f"
					all = append(all, call{rev2, h})
				}
			}
		}
	}
	state := t.TempDir()
	// The calls left out, by key (every revision): the first of acme's
	// hour 1 on the bus, of hour 2 in storage, and of hour 0 in the lake.
	// Five calls of hour 0 have two revisions: counting events or rows
	// instead of call keys would find too many there.
	omit := map[string]map[string]bool{"bus": {}, "storage": {}, "lake": {}}
	for _, c := range all {
		switch {
		case c.ev.Org != "acme" || c.ev.Revision != 1:
		case c.hour == 1 && len(omit["bus"]) < 3:
			omit["bus"][c.ev.CallKey] = true
		case c.hour == 2 && len(omit["storage"]) < 2:
			omit["storage"][c.ev.CallKey] = true
		case c.hour == 0 && len(omit["lake"]) < 1:
			omit["lake"][c.ev.CallKey] = true
		}
	}
	var published, stored, inLake []schemas.CallEvent
	for _, c := range all {
		k := c.ev.CallKey
		if c.ev.Org == "acme" && omit["bus"][k] {
			continue
		}
		published = append(published, c.ev)
		if c.ev.Org != "acme" || !omit["storage"][k] {
			stored = append(stored, c.ev)
		}
		if c.ev.Org != "acme" || !omit["lake"][k] {
			inLake = append(inLake, c.ev)
		}
	}
	fillBus(t, filepath.Join(state, busFile), schemas.TopicName(schemas.DefaultTopicPrefix, schemas.CallsTopic), published)
	fillStorage(t, state, stored)
	fillLake(t, filepath.Join(state, "lake"), inLake)

	envv := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "CALLSTREAM_STATE_DIR=" + state,
		"UNPOD_API_URL=" + url, "UNPOD_API_TOKEN=audit-token", "CALLSTREAM_LOG_LEVEL=warn", "CALLSTREAM_LOG_FORMAT=text"}
	run := func(rescan string, args ...string) (int, string, string) {
		cmd := exec.Command(bin, append([]string{"audit"}, args...)...)
		var out, errb bytes.Buffer
		cmd.Env, cmd.Stdout, cmd.Stderr = append(envv, "CALLSTREAM_RESCAN_AGES="+rescan), &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String(), errb.String()
		case errors.As(err, &ee):
			return ee.ExitCode(), out.String(), errb.String()
		}
		t.Fatal(err)
		return 0, "", ""
	}
	from, to := hours[0].Format(time.RFC3339), hours[2].Add(time.Hour).Format(time.RFC3339)

	code, out, errs := run("0s,24h", "--org", "acme,globex", "--from", from, "--to", to, "--by", "hour")
	t.Logf("audit of both orgs: exit %d\n%s%s", code, out, errs)
	if code != 1 || !strings.Contains(errs, "6 calls missing in 3 windows") {
		t.Errorf("exit %d, stderr %q: want 1 and 6 calls missing in 3 windows", code, errs)
	}
	rows := auditTable(t, out)
	for _, org := range sc.Orgs {
		for h, start := range hours {
			n := truth[org][h]
			want := []int{n, n, n, n, 0} // api, published, stored, lake, missing
			if org == "acme" {
				switch h {
				case 0:
					want = []int{n, n, n, n - 1, 1}
				case 1:
					want = []int{n, n - 3, n - 3, n - 3, 3}
				case 2:
					want = []int{n, n, n - 2, n, 2}
				}
			}
			key := org + " " + start.Format("2006-01-02T15:04Z")
			if got := rows[key]; fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: api, published, stored, lake, missing = %v, want %v", key, got, want)
			}
		}
	}
	if len(rows) != 6 {
		t.Errorf("%d rows, want 6", len(rows))
	}

	// With the default horizon the bus keeps five hours: the published
	// column of hours older than that is not checked, and says so.
	code, out, errs = run("0s,5m,30m,2h", "--org", "globex", "--from", from, "--to", to, "--by", "hour")
	for key, r := range auditTable(t, out) {
		if r[1] != -1 || r[4] != 0 {
			t.Errorf("default horizon: %s: %v, want published not checked and nothing missing", key, r)
		}
	}
	if code != 0 || !strings.Contains(errs, "published not checked in 3 windows") {
		t.Errorf("default horizon: exit %d\n%s%s", code, out, errs)
	}

	// A clean org: exit 0, nothing missing. By day, with the default
	// horizon, the lake only: the day's other hours are missing there.
	code, out, errs = run("0s,24h", "--org", "globex", "--from", from, "--to", to, "--by", "hour")
	if code != 0 || !strings.Contains(out, "missing: 0 calls in 0 of 3 windows") {
		t.Errorf("globex: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = run("0s,5m,30m,2h", "--org", "globex", "--from", hours[0].Format(time.RFC3339), "--to", hours[0].Add(time.Minute).Format(time.RFC3339), "--only", "lake")
	dayRows := auditTable(t, out)
	dayKey := "globex " + day.Format(time.DateOnly)
	// Only the three hours were written anywhere, and from 22:00 on the
	// last of them fall on the next day.
	dayLake := 0
	for h, start := range hours {
		if start.Truncate(24 * time.Hour).Equal(day) {
			dayLake += truth["globex"][h]
		}
	}
	if n := len(sim.GroundTruthWindow("globex", day, day.Add(24*time.Hour), now)); code != 1 || len(dayRows) != 1 ||
		dayRows[dayKey][0] != n || dayRows[dayKey][1] != -1 || dayRows[dayKey][2] != -1 || dayRows[dayKey][3] != dayLake || dayRows[dayKey][4] != n-dayLake {
		t.Errorf("globex by day, lake only: exit %d, row %v, want api %d, lake %d, published and storage not checked\n%s%s", code, dayRows[dayKey], n, dayLake, out, errs)
	}

	// Kafka mode: the same events on a fresh topic of the shared broker.
	t.Run("kafka", func(t *testing.T) {
		kcfg := testenv.KafkaConfig(t)
		prefix := testenv.Prefix(t)
		topic := schemas.TopicName(prefix, schemas.CallsTopic)
		if err := kafkabus.EnsureTopic(ctx, kcfg, kafkabus.TopicSpec{Name: topic, Partitions: 3}); err != nil {
			t.Fatal(err)
		}
		pcfg := kafkabus.DefaultPublisherConfig()
		pcfg.Config = kcfg
		kp, err := kafkabus.NewPublisher(pcfg, watermill.NopLogger{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range published {
			m, err := producer.NewMessage(&published[i])
			if err != nil {
				t.Fatal(err)
			}
			if err := kp.Publish(topic, m); err != nil {
				t.Fatal(err)
			}
		}
		if err := kp.Close(); err != nil {
			t.Fatal(err)
		}
		envv := append(envv, "KAFKA_BROKERS="+strings.Join(kcfg.Brokers, ","), "CALLSTREAM_TOPIC_PREFIX="+prefix)
		cmd := exec.Command(bin, "audit", "--org", "acme,globex", "--from", from, "--to", to, "--by", "hour", "--only", "published")
		var out, errb bytes.Buffer
		cmd.Env, cmd.Stdout, cmd.Stderr = append(envv, "CALLSTREAM_RESCAN_AGES=0s,24h"), &out, &errb
		err = cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(errb.String(), "3 calls missing in 1 windows") {
			t.Fatalf("exit %v, want 1 and 3 calls missing in 1 windows\n%s%s", err, out.String(), errb.String())
		}
		rows := auditTable(t, out.String())
		for _, org := range sc.Orgs {
			for h, start := range hours {
				n := truth[org][h]
				want := []int{n, n, -1, -1, 0}
				if org == "acme" && h == 1 {
					want = []int{n, n - 3, -1, -1, 3}
				}
				key := org + " " + start.Format("2006-01-02T15:04Z")
				if got := rows[key]; fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("%s: %v, want %v", key, got, want)
				}
			}
		}
	})
}

// auditTable reads the table `callstream audit` printed: "org window" ->
// api, published, stored, lake, missing (-1 for "-").
func auditTable(t *testing.T, out string) map[string][]int {
	t.Helper()
	rows := map[string][]int{}
	header := false
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 7 && f[0] == "org" {
			header = true
			continue
		}
		if !header || len(f) != 7 {
			continue
		}
		var nums []int
		for _, s := range f[2:] {
			n := -1
			if s != "-" {
				var err error
				if n, err = strconv.Atoi(s); err != nil {
					t.Fatalf("bad cell %q in %q", s, line)
				}
			}
			nums = append(nums, n)
		}
		rows[f[0]+" "+f[1]] = nums
	}
	if !header {
		t.Fatalf("no table in\n%s", out)
	}
	return rows
}

func fillBus(t *testing.T, path, topic string, evs []schemas.CallEvent) {
	t.Helper()
	ctx := context.Background()
	b, err := sqlitebus.Open(ctx, sqlitebus.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	pub := b.Publisher()
	msgs := make([]*message.Message, 0, len(evs))
	for i := range evs {
		m, err := producer.NewMessage(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	if err := pub.Publish(topic, msgs...); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(pub.Close(), b.Close()); err != nil {
		t.Fatal(err)
	}
}

func fillStorage(t *testing.T, state string, evs []schemas.CallEvent) {
	t.Helper()
	ctx := context.Background()
	cfg := storage.DefaultConfig()
	cfg.StateDir = state
	s, err := storage.Open(ctx, cfg, consumers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ds := make([]consumers.Delivery, len(evs))
	for i, e := range evs {
		ds[i] = consumers.Delivery{Event: e}
	}
	if err := s.HandleBatch(ctx, ds); err != nil {
		t.Fatal(err)
	}
}

func fillLake(t *testing.T, dir string, evs []schemas.CallEvent) {
	t.Helper()
	l, err := lake.New(lake.Config{Dir: dir}, consumers.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ds := make([]consumers.Delivery, len(evs))
	for i, e := range evs {
		pos := schemas.Position{Topic: "calls", Partition: int32(i % 2), Offset: int64(i)}
		ds[i] = consumers.Delivery{Event: e, Position: pos, HasPosition: true}
	}
	done := make(chan error, 1)
	go func() { done <- l.HandleBatch(context.Background(), ds) }()
	for {
		l.Flush()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}
