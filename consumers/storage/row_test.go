package storage

import (
	"testing"

	"github.com/callstream/callstream/schemas"
)

func TestLatestPerKey(t *testing.T) {
	ev := func(key string, rev int, id string) schemas.CallEvent {
		return schemas.CallEvent{Org: "acme", CallKey: key, Revision: rev, EventID: id}
	}
	inOrg := func(org string, e schemas.CallEvent) schemas.CallEvent {
		e.Org = org
		return e
	}
	tests := []struct {
		name string
		in   []schemas.CallEvent
		want []int // batch indexes kept, in call_key order
	}{
		{"one", []schemas.CallEvent{ev("a", 1, "x")}, []int{0}},
		{"highest revision wins", []schemas.CallEvent{ev("a", 1, "x"), ev("a", 3, "z"), ev("a", 2, "y")}, []int{1}},
		{"equal revision, greater id wins", []schemas.CallEvent{ev("a", 2, "b"), ev("a", 2, "c"), ev("a", 2, "a")}, []int{1}},
		{"exact duplicate keeps the first", []schemas.CallEvent{ev("a", 2, "b"), ev("a", 2, "b")}, []int{0}},
		{"sorted by key", []schemas.CallEvent{ev("c", 1, "x"), ev("a", 1, "x"), ev("b", 1, "x"), ev("a", 2, "y")}, []int{3, 2, 0}},
		{"same call_key in two orgs: two calls", []schemas.CallEvent{inOrg("zeta", ev("a", 3, "z")), inOrg("beta", ev("a", 1, "x"))}, []int{1, 0}},
		{"sorted by org, then key", []schemas.CallEvent{inOrg("b", ev("a", 1, "x")), inOrg("a", ev("b", 1, "x")), inOrg("b", ev("a", 2, "y")), inOrg("a", ev("a", 1, "x"))}, []int{3, 1, 2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := latestPerKey(deliveries(tc.in...))
			if len(got) != len(tc.want) {
				t.Fatalf("kept %d rows, want %d", len(got), len(tc.want))
			}
			for i, r := range got {
				want := tc.in[tc.want[i]]
				if r.idx != tc.want[i] || r.ev.Org != want.Org || r.ev.CallKey != want.CallKey || r.ev.Revision != want.Revision {
					t.Errorf("row %d is batch item %d, want %d", i, r.idx, tc.want[i])
				}
			}
		})
	}
}

func TestMigrationsMatchAcrossDialects(t *testing.T) {
	sq, err := loadMigrations(DialectSQLite)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := loadMigrations(DialectPostgres)
	if err != nil {
		t.Fatal(err)
	}
	if len(sq) == 0 || len(sq) != len(pg) {
		t.Fatalf("%d SQLite and %d PostgreSQL migrations: every version needs both", len(sq), len(pg))
	}
	for i := range sq {
		if sq[i].version != pg[i].version || sq[i].name != pg[i].name {
			t.Errorf("migration %d: SQLite %d_%s, PostgreSQL %d_%s", i, sq[i].version, sq[i].name, pg[i].version, pg[i].name)
		}
		if i > 0 && sq[i].version <= sq[i-1].version {
			t.Errorf("migrations out of order at %d", sq[i].version)
		}
	}
}
