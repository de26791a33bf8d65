package lake

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/pkg/testenv"
	"github.com/callstream/callstream/schemas"
)

// duckdbScript runs the lake's queries with DuckDB's Python package and
// prints what the test compares: row count, rows per (org, dt) and the
// latest revision per call.
const duckdbScript = `
import duckdb, json, sys
con = duckdb.connect()
all_rows, latest = sys.argv[1], sys.argv[2]
out = {
  "rows": con.execute("SELECT count(*) FROM (" + all_rows + ")").fetchone()[0],
  "by_dir": [[o, str(d), n] for o, d, n in con.execute(
      "SELECT org, dt, count(*) FROM (" + all_rows + ") GROUP BY ALL ORDER BY ALL").fetchall()],
  "dt_type": con.execute("SELECT typeof(dt) FROM (" + all_rows + ") LIMIT 1").fetchone()[0],
  "latest": {k: [r, e] for k, r, e in con.execute(
      "SELECT org || '/' || call_key, revision, event_id FROM (" + latest + ")").fetchall()},
}
print(json.dumps(out))
`

// duckdbPython returns a Python that can import duckdb, or skips (fails
// under CALLSTREAM_INTEGRATION=1) when there is none.
func duckdbPython(t *testing.T) string {
	t.Helper()
	py := os.Getenv("CALLSTREAM_DUCKDB_PYTHON")
	if py == "" {
		py = "python3"
	}
	if err := exec.Command(py, "-c", "import duckdb").Run(); err != nil {
		msg := "DuckDB's Python package is missing (" + py + ": " + err.Error() + "); install it with `python3 -m pip install duckdb`"
		if testenv.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return py
}

// TestDuckDBReadsLake writes events of two orgs over two days, with several
// revisions of some calls, and checks that DuckDB's read_parquet with hive
// partitioning sees every row, the org and dt columns, and that the
// latest-revision query returns exactly the newest revision of each call.
func TestDuckDBReadsLake(t *testing.T) {
	py := duckdbPython(t)
	l := newLake(t, Config{MaxFileRows: 300})
	events := genEvents(2000, []string{"unpod", "acme", "1234"}, 2, base, 21)
	ds := make([]consumers.Delivery, len(events))
	for i, e := range events {
		ds[i] = delivery(e, i%2, int64(i/2))
	}
	handleAll(t, context.Background(), l, ds)

	wantDirs := map[string]int{}
	wantLatest := map[string]schemas.CallEvent{}
	for _, e := range events {
		wantDirs[e.Org+"/"+e.CreationTime.UTC().Format(time.DateOnly)]++
		k := e.Org + "/" + e.CallKey
		if cur, ok := wantLatest[k]; !ok || e.Revision > cur.Revision {
			wantLatest[k] = e
		}
	}

	out, err := exec.Command(py, "-c", duckdbScript, AllRowsQuery(l.cfg.Dir), LatestRevisionQuery(l.cfg.Dir)).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("duckdb: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var got struct {
		Rows   int               `json:"rows"`
		ByDir  [][]any           `json:"by_dir"`
		DtType string            `json:"dt_type"`
		Latest map[string][2]any `json:"latest"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("duckdb output %q: %v", out, err)
	}
	if got.Rows != len(events) {
		t.Errorf("DuckDB counts %d rows, want %d", got.Rows, len(events))
	}
	if got.DtType != "DATE" {
		t.Errorf("dt is %s, want DATE", got.DtType)
	}
	gotDirs := map[string]int{}
	for _, r := range got.ByDir {
		gotDirs[r[0].(string)+"/"+r[1].(string)] = int(r[2].(float64))
	}
	if len(gotDirs) != len(wantDirs) || len(wantDirs) < 6 {
		t.Errorf("DuckDB sees directories %v, want %v", gotDirs, wantDirs)
	}
	for k, n := range wantDirs {
		if gotDirs[k] != n {
			t.Errorf("org/dt %s: DuckDB counts %d rows, want %d", k, gotDirs[k], n)
		}
	}
	if len(got.Latest) != len(wantLatest) {
		t.Errorf("latest-revision query returns %d calls, want %d", len(got.Latest), len(wantLatest))
	}
	multi := 0
	for k, e := range wantLatest {
		g, ok := got.Latest[k]
		if !ok {
			t.Errorf("call %s missing from the latest-revision query", k)
			continue
		}
		if int(g[0].(float64)) != e.Revision || g[1].(string) != e.EventID {
			t.Errorf("call %s: latest is revision %v (%v), want %d (%s)", k, g[0], g[1], e.Revision, e.EventID)
		}
		if e.Revision > 1 {
			multi++
		}
	}
	if multi == 0 {
		t.Fatal("no call has several revisions: the latest-revision check proves nothing")
	}
	t.Logf("DuckDB: %d rows, %d calls (%d with several revisions), %d org/dt directories", got.Rows, len(got.Latest), multi, len(gotDirs))
}
