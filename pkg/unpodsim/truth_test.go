package unpodsim

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/unpod"
)

// diffRecords compares decoded records with the ground truth, field by
// normalised field (Raw included), in order, and describes each
// difference. It is the comparison the tests of this package use.
func diffRecords(truth, got []unpod.Record) []string {
	var out []string
	if len(truth) != len(got) {
		out = append(out, fmt.Sprintf("%d records, ground truth has %d", len(got), len(truth)))
	}
	ts := func(t *time.Time) string {
		if t == nil {
			return "null"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for i := range min(len(truth), len(got)) {
		w, g := &truth[i], &got[i]
		for _, f := range []struct{ name, want, got string }{
			{"id", w.ID, g.ID},
			{"source_number", w.SourceNumber, g.SourceNumber},
			{"destination_number", w.DestinationNumber, g.DestinationNumber},
			{"call_type", w.CallType, g.CallType},
			{"call_status", w.CallStatus, g.CallStatus},
			{"raw status", w.RawStatus, g.RawStatus},
			{"creation_time", ts(&w.CreationTime), ts(&g.CreationTime)},
			{"start_time", ts(w.StartTime), ts(g.StartTime)},
			{"end_time", ts(w.EndTime), ts(g.EndTime)},
			{"call_duration", fmt.Sprint(w.DurationSeconds), fmt.Sprint(g.DurationSeconds)},
			{"end_reason", w.EndReason, g.EndReason},
			{"raw", string(w.Raw), string(g.Raw)},
		} {
			if f.want != f.got {
				out = append(out, fmt.Sprintf("record %d %s: %q, ground truth %q", i, f.name, f.got, f.want))
			}
		}
	}
	return out
}

// TestTruthCatchesDecoderBug seeds deliberate normalisation bugs into a
// copy of the client's decoding (a test-only wrapper around it) and shows
// that the comparison against the ground truth reports exactly the records
// each bug touches, while the real decoder gives no difference.
func TestTruthCatchesDecoderBug(t *testing.T) {
	clock := &fakeClock{now: t0}
	cfg := testConfig(clock)
	cfg.NoAnswer, cfg.MillisTimes, cfg.DurationFormats = 0.5, 0.5, "mixed"
	sim, url := newSim(t, cfg)
	from, to := t0.Add(-90*time.Minute), t0.Add(-30*time.Minute)
	truth := sim.GroundTruthWindow("acme", from, to, t0)
	w, err := client(t, url, DefaultToken).ReadWindow(context.Background(), unpod.Query{Org: "acme", PageSize: 200, Start: from, End: to})
	if err != nil {
		t.Fatal(err)
	}
	if d := diffRecords(truth, w.Records); len(d) != 0 {
		t.Fatalf("the real decoder differs from the ground truth: %v", d[:min(3, len(d))])
	}
	noAnswer, millis, hms := 0, 0, 0
	for _, r := range truth {
		if r.RawStatus == "no-answer" {
			noAnswer++
		}
		if r.CreationTime.Nanosecond() != 0 {
			millis++
		}
		if strings.Contains(string(r.Raw), `"call_duration":"`) && r.DurationSeconds > 0 {
			hms++
		}
	}
	if noAnswer == 0 || millis == 0 || hms == 0 {
		t.Fatalf("window without the variants to test: %d no-answer, %d with milliseconds, %d H:MM:SS", noAnswer, millis, hms)
	}
	bugs := []struct {
		name   string
		bug    func(*unpod.Record)
		wanted int
	}{
		{"no-answer mapped to failed", func(r *unpod.Record) {
			if r.RawStatus == "no-answer" {
				r.CallStatus = unpod.StatusFailed
			}
		}, noAnswer},
		{"milliseconds dropped", func(r *unpod.Record) { r.CreationTime = r.CreationTime.Truncate(time.Second) }, millis},
		{"H:MM:SS read as minutes", func(r *unpod.Record) {
			if strings.Contains(string(r.Raw), `"call_duration":"`) {
				r.DurationSeconds /= 60
			}
		}, hms},
	}
	for _, b := range bugs {
		t.Run(b.name, func(t *testing.T) {
			buggy := make([]unpod.Record, 0, len(w.Records))
			for _, r := range w.Records {
				rec, err := buggyDecode(r.Raw, b.bug)
				if err != nil {
					t.Fatal(err)
				}
				buggy = append(buggy, rec)
			}
			if d := diffRecords(truth, buggy); len(d) != b.wanted {
				t.Fatalf("the comparison found %d differences, want the %d records the bug touches", len(d), b.wanted)
			}
		})
	}
}

// buggyDecode is the client's decoder with a bug seeded after it.
func buggyDecode(raw json.RawMessage, bug func(*unpod.Record)) (unpod.Record, error) {
	rec, err := unpod.DecodeRecord(raw)
	if err == nil {
		bug(&rec)
	}
	return rec, err
}

// TestTruthIndependentOfClient reads this package's code and fails if it
// calls into pkg/unpod at all: the ground truth and the server's reading
// of queries must not share the client's decoding, parsing or normalising,
// or a bug there would be on both sides of every comparison. Types and
// constants (unpod.Record) may be named.
func TestTruthIndependentOfClient(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := gotoken.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if sel, ok := call.Fun.(*ast.SelectorExpr); ok {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "unpod" {
					t.Errorf("%s: calls unpod.%s", fset.Position(call.Pos()), sel.Sel.Name)
				}
			}
			return true
		})
	}
}
