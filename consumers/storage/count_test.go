package storage

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/callstream/callstream/schemas"
)

// TestCountCalls writes calls of two orgs across three hours (two
// revisions of some, one call_key in both orgs), deletes some rows behind
// the consumer's back, and counts each hour: the figures the audit
// compares with the API must be exactly the rows left, per org.
func TestCountCalls(t *testing.T) {
	forEachDialect(t, func(t *testing.T, dsn string) {
		s := openStore(t, dsn)
		h0 := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
		var evs []schemas.CallEvent
		want := map[string][3]int64{}
		add := func(org string, hour, i int, revs int) {
			for rev := 1; rev <= revs; rev++ {
				e := callEvent(fmt.Sprintf("c%d-%d", hour, i), rev)
				e.Org = org
				e.EventID = fmt.Sprintf("%08d-0000-5000-8000-%012d", hour*1000+i, rev+len(org)*10)
				// The first call of each hour sits on its start (inclusive),
				// the last a nanosecond before its end (exclusive).
				e.CreationTime = h0.Add(time.Duration(hour)*time.Hour + time.Duration(i)*time.Minute)
				if i == 59 {
					e.CreationTime = h0.Add(time.Duration(hour+1)*time.Hour - time.Nanosecond)
				}
				evs = append(evs, e)
			}
			w := want[org]
			w[hour]++
			want[org] = w
		}
		for hour := range 3 {
			for i := 0; i < 10+hour; i++ {
				add("acme", hour, i, 1+i%2)
			}
			add("acme", hour, 59, 1)
			for i := 0; i < 4; i++ {
				add("globex", hour, i, 1) // the same call_keys as acme's
			}
		}
		handle(t, s, evs...)
		// Rows disappear behind the consumer's back: 2 in hour 1 of acme.
		execSQL(t, s, `DELETE FROM call_logs WHERE org = 'acme' AND call_key IN ('c1-3', 'c1-4')`)
		w := want["acme"]
		w[1] -= 2
		want["acme"] = w

		ctx := context.Background()
		for org, counts := range want {
			for hour, n := range counts {
				start := h0.Add(time.Duration(hour) * time.Hour)
				got, err := s.CountCalls(ctx, org, start, start.Add(time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				if got != n {
					t.Errorf("%s hour %d: counted %d, want %d", org, hour, got, n)
				}
			}
			all, err := s.CountCalls(ctx, org, h0, h0.Add(3*time.Hour))
			if err != nil || all != counts[0]+counts[1]+counts[2] {
				t.Errorf("%s, three hours: %d, %v; want %d", org, all, err, counts[0]+counts[1]+counts[2])
			}
		}
		if n, err := s.CountCalls(ctx, "nobody", h0, h0.Add(3*time.Hour)); n != 0 || err != nil {
			t.Errorf("an org without rows: %d, %v", n, err)
		}
	})
}

func TestExistingSQLite(t *testing.T) {
	dsn := sqliteDSN(t)
	cfg := testConfig(dsn)
	if _, ok, err := cfg.ExistingSQLite(); ok || err != nil {
		t.Fatalf("before Open: exists %v, %v", ok, err)
	}
	openStore(t, dsn)
	if _, ok, err := cfg.ExistingSQLite(); !ok || err != nil {
		t.Fatalf("after Open: exists %v, %v", ok, err)
	}
	if _, ok, err := testConfig("postgres://u@127.0.0.1:1/db").ExistingSQLite(); !ok || err != nil {
		t.Fatalf("PostgreSQL: %v, %v; want true", ok, err)
	}
	if _, _, err := testConfig("mysql://x").ExistingSQLite(); err == nil {
		t.Fatal("an unknown scheme was accepted")
	}
}
