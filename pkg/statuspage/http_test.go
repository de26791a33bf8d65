package statuspage

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// serve runs p on a real loopback listener until the test ends.
func serve(t *testing.T, p *Page) string {
	t.Helper()
	mux := http.NewServeMux()
	p.Register(mux)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := &http.Server{Handler: mux, BaseContext: func(net.Listener) context.Context { return ctx }}
	go srv.Serve(ln)
	t.Cleanup(func() { cancel(); srv.Close() })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestRoutes(t *testing.T) {
	f := newFixture(t)
	f.read.WithLabelValues("acme").Add(7)
	p := newPage(t, f, &fakeClock{now: t0}, Config{})
	base := serve(t, p)
	for _, tt := range []struct {
		path, ctype, body string
		code              int
	}{
		{"/", "text/html", `src="/status/assets/app.js"`, 200},
		{"/status/assets/app.js", "javascript", "EventSource", 200},
		{"/status/assets/app.css", "text/css", "--completed", 200},
		{"/status.json", "application/json", `"process":"callstream run"`, 200},
		{"/other", "", "", 404}, // the page is at / alone, not a catch-all
	} {
		resp, body := get(t, base+tt.path)
		if resp.StatusCode != tt.code || !strings.Contains(resp.Header.Get("Content-Type"), tt.ctype) || !strings.Contains(body, tt.body) {
			t.Errorf("GET %s = %d %q %.100q; want %d, %q, containing %q", tt.path, resp.StatusCode,
				resp.Header.Get("Content-Type"), body, tt.code, tt.ctype, tt.body)
		}
		if tt.code == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: no same-origin Content-Security-Policy", tt.path)
		}
	}
	_, body := get(t, base+"/status.json")
	var s Snapshot
	if err := json.Unmarshal([]byte(body), &s); err != nil {
		t.Fatalf("/status.json: %v", err)
	}
	if s.Stages[0].Total != 7 {
		t.Errorf("/status.json read total %v, want 7", s.Stages[0].Total)
	}
}

// TestAssetsAreSmallAndSelfContained: the page works offline, so nothing
// in it may point outside the process, and it stays small.
func TestAssetsAreSmallAndSelfContained(t *testing.T) {
	total := 0
	external := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}|@import|url\(`)
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, path)
		if err != nil {
			return err
		}
		total += len(b)
		// The SVG namespace is an identifier, never fetched.
		text := strings.ReplaceAll(string(b), `"http://www.w3.org/2000/svg"`, "")
		if m := external.FindString(text); m != "" {
			t.Errorf("%s refers to something outside the process: %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	const limit = 32 << 10
	if total > limit {
		t.Errorf("the page's assets are %d bytes, over the %d-byte budget", total, limit)
	}
	t.Logf("page assets: %d bytes", total)
}

// events decodes the server-sent events of a stream onto a channel, closed
// when the stream ends.
func events(t *testing.T, body io.Reader) <-chan Snapshot {
	ch := make(chan Snapshot, 16)
	go func() {
		defer close(ch)
		r := bufio.NewReader(body)
		var event, data string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "" && data != "":
				var s Snapshot
				if event != "snapshot" || json.Unmarshal([]byte(data), &s) != nil {
					t.Errorf("event %q with data %.100q: want a snapshot", event, data)
					return
				}
				ch <- s
				event, data = "", ""
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

// next waits for the next event, at most 10 s.
func next(t *testing.T, ch <-chan Snapshot) Snapshot {
	t.Helper()
	select {
	case s, ok := <-ch:
		if !ok {
			t.Fatal("the event stream ended")
		}
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return Snapshot{}
}

// TestEventsStreamEverySample: a stream starts with the current snapshot
// and gets every later sample, until the server stops; streams beyond the
// limit are refused.
func TestEventsStreamEverySample(t *testing.T) {
	f := newFixture(t)
	clock := &fakeClock{now: t0}
	p := newPage(t, f, clock, Config{MaxStreams: 1})
	p.Sample()
	base := serve(t, p)
	resp, err := http.Get(base + "/status/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	stream := events(t, resp.Body)
	first := next(t, stream)
	if first.Seq != 1 {
		t.Fatalf("first event seq %d, want the current snapshot (1)", first.Seq)
	}
	if over, _ := get(t, base+"/status/events"); over.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a second stream over MaxStreams 1: %d, want 503", over.StatusCode)
	}
	for i := 2; i <= 4; i++ {
		f.read.WithLabelValues("acme").Add(10)
		clock.Add(2 * time.Second)
		p.Sample()
		s := next(t, stream)
		if s.Seq != uint64(i) || s.Stages[0].Total != float64(10*(i-1)) || s.SampledAtMS != clock.Now().UnixMilli() {
			t.Fatalf("event %d: seq %d, read total %v, sampled at %d; want seq %d, total %d, %d",
				i, s.Seq, s.Stages[0].Total, s.SampledAtMS, i, 10*(i-1), clock.Now().UnixMilli())
		}
	}
}

// TestRunSamplesEveryInterval drives Run on the real clock.
func TestRunSamplesEveryInterval(t *testing.T) {
	f := newFixture(t)
	p, err := New(Config{Interval: 20 * time.Millisecond}, Deps{Gatherer: f.reg, Producer: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var s Snapshot
		if err := json.Unmarshal(p.current(), &s); err != nil {
			t.Fatal(err)
		}
		if s.Seq >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("seq %d after 5 s of 20 ms samples", s.Seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
