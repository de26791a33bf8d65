package statuspage

import (
	"embed"
	"io/fs"
	"net/http"
	"strconv"
	"time"
)

//go:embed assets
var assets embed.FS

// Mux is where Register mounts the page's routes; *http.ServeMux and
// *telemetry.Server are ones.
type Mux interface {
	Handle(pattern string, h http.Handler)
}

// Register mounts the page on m: / (the page alone, not a catch-all),
// /status.json, /status/events and /status/assets/.
func (p *Page) Register(m Mux) {
	static, _ := fs.Sub(assets, "assets") // a constant path into the embedded tree
	files := http.StripPrefix("/status/assets/", http.FileServerFS(static))
	m.Handle("GET /{$}", secure(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})))
	m.Handle("GET /status/assets/", secure(files))
	m.Handle("GET /status.json", secure(http.HandlerFunc(p.serveJSON)))
	m.Handle("GET /status/events", secure(http.HandlerFunc(p.serveEvents)))
}

// secure keeps the page to its own origin: no external resource can load,
// and no other site may frame it.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

func (p *Page) serveJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(p.current())
}

// heartbeat keeps idle proxies from closing a stream between samples.
const heartbeat = 15 * time.Second

// serveEvents streams every snapshot as a server-sent event named
// "snapshot", starting with the current one, until the client goes or the
// server stops.
func (p *Page) serveEvents(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "statuspage: streaming is not supported by this connection", http.StatusInternalServerError)
		return
	}
	ch := make(chan []byte, 1)
	p.mu.Lock()
	if len(p.streams) >= p.cfg.MaxStreams {
		p.mu.Unlock()
		http.Error(w, "statuspage: too many open status streams ("+strconv.Itoa(p.cfg.MaxStreams)+"); close some tabs", http.StatusServiceUnavailable)
		return
	}
	p.streams[ch] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.streams, ch)
		p.mu.Unlock()
	}()

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	// A reconnecting EventSource waits this long (milliseconds).
	if _, err := w.Write([]byte("retry: 2000\n\n")); err != nil {
		return
	}
	send := func(data []byte) bool {
		if len(data) == 0 {
			return true
		}
		_, err := w.Write(append(append([]byte("event: snapshot\ndata: "), data...), '\n', '\n'))
		flusher.Flush()
		return err == nil
	}
	if !send(p.current()) {
		return
	}
	tick := time.NewTicker(heartbeat)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case data := <-ch:
			if !send(data) {
				return
			}
		case <-tick.C:
			if _, err := w.Write([]byte(": keep-alive\n\n")); err != nil {
				return
			}
			flusher.Flush()
		}
	}
}
