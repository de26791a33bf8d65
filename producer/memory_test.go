package producer

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestMemoryGate(t *testing.T) {
	m := NewMemory()
	created := time.Date(2026, 2, 7, 5, 57, 0, 0, time.UTC)
	// Content hashes that differ only past the 8 bytes remembered are the
	// same content to the gate; these differ in the first byte.
	v1, v2 := "11aa11aa11aa11aa0000000000000000", "22bb22bb22bb22bb0000000000000000"
	steps := []struct {
		org, key string
		id       string
		commit   bool
		want     Decision
	}{
		{"acme", "k", v1, false, Decision{Publish: true, Revision: 1}},
		{"acme", "k", v1, true, Decision{Publish: true, Revision: 1}}, // not committed before: still new
		{"acme", "k", v1, false, Decision{Publish: false, Revision: 1}},
		{"globex", "k", v1, false, Decision{Publish: true, Revision: 1}}, // keys are per org
		{"acme", "k", v2, true, Decision{Publish: true, Revision: 2}},
		{"acme", "k", v2, false, Decision{Publish: false, Revision: 2}},
		{"acme", "k", v1, false, Decision{Publish: true, Revision: 3}}, // back to old content is a change
	}
	for i, s := range steps {
		got := m.Check(s.org, s.key, s.id)
		if got != s.want {
			t.Fatalf("step %d: Check = %+v, want %+v", i, got, s.want)
		}
		if s.commit {
			m.Commit(s.org, s.key, s.id, got.Revision, created)
		}
	}
	// A replay of an older revision must not roll the memory back.
	m.Commit("acme", "k", v1, 1, created)
	if got := m.Check("acme", "k", v2); got.Publish || got.Revision != 2 {
		t.Fatalf("after replaying revision 1: %+v, want revision 2 remembered", got)
	}
}

func TestMemoryEvictAndEncode(t *testing.T) {
	m := NewMemory()
	t0 := time.Date(2026, 2, 7, 0, 0, 0, 0, time.UTC)
	for i := range 10 {
		m.Commit("acme", fmt.Sprint(i), fmt.Sprintf("%032x", i), i+1, t0.Add(time.Duration(i)*time.Minute))
	}
	data, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if n := m.Evict(t0.Add(4 * time.Minute)); n != 4 || m.Len() != 6 {
		t.Fatalf("evicted %d, left %d; want 4 and 6", n, m.Len())
	}
	back := NewMemory()
	if err := back.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	if back.Len() != 10 {
		t.Fatalf("decoded %d calls, want 10", back.Len())
	}
	if d := back.Check("acme", "7", fmt.Sprintf("%032x", 7)); d.Publish || d.Revision != 8 {
		t.Fatalf("decoded memory forgot call 7: %+v", d)
	}
	if err := back.UnmarshalBinary(data[:len(data)-1]); err == nil {
		t.Fatal("truncated encoding accepted")
	}
}

// BenchmarkMemoryBytesPerCall reports the heap a remembered call costs, for
// 1M calls.
func BenchmarkMemoryBytesPerCall(b *testing.B) {
	for range b.N {
		perCall := measureMemory(1_000_000)
		b.ReportMetric(perCall, "bytes/call")
	}
}

// measureMemory fills a Memory with n calls and returns heap bytes per call.
func measureMemory(n int) float64 {
	_, perCall := fillMemory(n)
	return perCall
}

// fillMemory returns a Memory holding n calls and the heap bytes per call.
func fillMemory(n int) (*Memory, float64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	m := NewMemory()
	created := time.Now()
	for i := range n {
		key := fmt.Sprintf("k_%032x", i)
		m.Commit("acme", key, "0123456789abcdef0123456789abcdef", 1, created)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	return m, float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

// TestUnixMinute: the memory stamps entries with whole Unix minutes, and
// a time before 1970 (a bogus creation_time) with 0 rather than a wrap.
func TestUnixMinute(t *testing.T) {
	for _, tc := range []struct {
		t    time.Time
		want uint32
	}{
		{time.Unix(0, 0), 0}, {time.Unix(59, 0), 0}, {time.Unix(60, 0), 1}, {time.Unix(7259, 0), 120},
		{time.Date(2026, 2, 7, 6, 0, 0, 0, time.UTC), 29507400},
		{time.Unix(-3600, 0), 0},
	} {
		if got := unixMinute(tc.t); got != tc.want {
			t.Errorf("unixMinute(%s) = %d, want %d", tc.t.UTC(), got, tc.want)
		}
	}
}
