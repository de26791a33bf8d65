package consumers

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/callstream/callstream/pkg/kafkabus"
	"github.com/callstream/callstream/pkg/testenv"
)

// testStateStore checks the StateStore contract on any implementation:
// missing keys load as nil, the last Save wins, keys are independent, and
// an empty key is refused.
func testStateStore(t *testing.T, s StateStore) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []struct {
		op    string // save or load
		key   string
		value string
		want  string // for load; "<nil>" means no value
	}{
		{op: "load", key: "window", want: "<nil>"},
		{op: "save", key: "window", value: "v1"},
		{op: "load", key: "window", want: "v1"},
		{op: "save", key: "window", value: "v2"},
		{op: "save", key: "other/key with spaces", value: "x"},
		{op: "load", key: "window", want: "v2"},
		{op: "load", key: "other/key with spaces", want: "x"},
		{op: "save", key: "empty", value: ""},
		{op: "load", key: "empty", want: ""},
		{op: "load", key: "..", want: "<nil>"},
	}
	for i, st := range steps {
		switch st.op {
		case "save":
			if err := s.Save(ctx, st.key, []byte(st.value)); err != nil {
				t.Fatalf("step %d: save %q: %v", i, st.key, err)
			}
		case "load":
			got, err := s.Load(ctx, st.key)
			if err != nil && st.key != ".." {
				t.Fatalf("step %d: load %q: %v", i, st.key, err)
			}
			gotS := "<nil>"
			if got != nil {
				gotS = string(got)
			}
			if gotS != st.want {
				t.Fatalf("step %d: load %q = %q, want %q", i, st.key, gotS, st.want)
			}
		}
	}
	if err := s.Save(ctx, "", []byte("x")); err == nil {
		t.Fatal("empty key accepted")
	}
	// SaveStates: through SaveAll when s has it, one Save per key when it
	// is hidden behind a plain StateStore.
	for name, store := range map[string]StateStore{"as is": s, "Save only": saveOnly{s}} {
		batch := map[string][]byte{"batch/over": []byte("v-" + name), "batch/a": []byte("a-" + name), "batch/b": nil}
		if err := SaveStates(ctx, store, batch); err != nil {
			t.Fatalf("%s: SaveStates: %v", name, err)
		}
		for k, v := range batch {
			got, err := s.Load(ctx, k)
			if err != nil || string(got) != string(v) || got == nil {
				t.Fatalf("%s: after SaveStates, load %q = %q (%v), want %q", name, k, got, err, v)
			}
		}
		if err := SaveStates(ctx, store, map[string][]byte{"batch/c": []byte("c"), "": []byte("x")}); err == nil {
			t.Fatalf("%s: SaveStates accepted an empty key", name)
		}
	}
}

// saveOnly hides a store's SaveAll.
type saveOnly struct{ StateStore }

func TestFileState(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "storage")
	testStateStore(t, FileState{Dir: dir})
	// No temp file is left behind, and keys stay inside Dir.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp-") {
			t.Fatalf("temp file left behind: %s", e.Name())
		}
	}
	if err := (FileState{Dir: dir}).Save(context.Background(), "../escape", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "..", "escape")); err == nil {
		t.Fatal("a key wrote outside the state directory")
	}
}

// TestSharedState runs the StateStore contract on the Kafka-mode store, a
// compacted topic through kafkabus.KV.
func TestSharedState(t *testing.T) {
	brokers := testenv.Kafka(t)
	kcfg := kafkabus.DefaultConfig()
	kcfg.Brokers = brokers
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	topic := testenv.Prefix(t) + ConsumerStateTopic
	kv, err := kafkabus.NewKV(ctx, kcfg, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer kv.Close()
	ts := NewSharedState(kv)
	testStateStore(t, ts.For("storage"))

	// Keys are scoped per plug-in, and a new SharedState (a restarted
	// process) reads what the old one saved.
	if err := ts.For("lake").Save(ctx, "window", []byte("lake-value")); err != nil {
		t.Fatal(err)
	}
	kv2, err := kafkabus.NewKV(ctx, kcfg, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer kv2.Close()
	ts2 := NewSharedState(kv2)
	for plugin, want := range map[string]string{"storage": "v2", "lake": "lake-value"} {
		got, err := ts2.For(plugin).Load(ctx, "window")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, []byte(want)) {
			t.Fatalf("%s/window = %q after restart, want %q", plugin, got, want)
		}
	}
}

// BenchmarkFileStateSave compares two keys saved one Save each with one
// SaveAll: the webhook journal's flush when two endpoints spill.
func BenchmarkFileStateSave(b *testing.B) {
	value := bytes.Repeat([]byte("x"), 6<<10)
	for _, mode := range []string{"Save x2", "SaveAll of 2"} {
		b.Run(mode, func(b *testing.B) {
			f := FileState{Dir: b.TempDir()}
			ctx := context.Background()
			for b.Loop() {
				var err error
				if mode == "Save x2" {
					err = errors.Join(f.Save(ctx, "a", value), f.Save(ctx, "b", value))
				} else {
					err = f.SaveAll(ctx, map[string][]byte{"a": value, "b": value})
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
