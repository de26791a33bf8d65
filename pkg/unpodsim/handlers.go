package unpodsim

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The simulator reads its query parameters with its own code, not
// pkg/unpod's: were the client's time parsing or status mapping wrong, the
// simulator sharing it would agree with the client and hide the fault.

// defaultPageSize is the API's documented page size when none is asked.
const defaultPageSize = 20

// queryStatuses are the call_status filter values the API documents:
// completed, missed and failed, and no-answer (with its underscore
// spelling) for missed.
var queryStatuses = map[string]string{
	"completed": "completed", "missed": "missed", "failed": "failed",
	"no-answer": "missed", "no_answer": "missed",
}

// queryLayouts are the ISO 8601 forms accepted for start_date and
// end_date; a time without a zone is UTC.
var queryLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02"}

func parseQueryTime(v string) (time.Time, error) {
	var err error
	for _, layout := range queryLayouts {
		var t time.Time
		if t, err = time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, err
}

// serveCallLogs implements GET /api/v2/platform/call-logs/.
func (s *Server) serveCallLogs(w http.ResponseWriter, r *http.Request) {
	s.record(r, strings.TrimSpace(r.Header.Get("Org-Handle"))) // refused requests too
	org, ok := s.authorize(w, r, true)
	if !ok {
		return
	}
	q := r.URL.Query()
	page, ok1 := intParam(q.Get("page"), 1)
	size, ok2 := intParam(q.Get("page_size"), defaultPageSize)
	if !ok1 || !ok2 {
		writeError(w, http.StatusBadRequest, "Invalid page or page_size.")
		return
	}
	size = min(size, s.cfg.MaxPageSize)
	f := filter{now: s.Now()}
	var err error
	if v := q.Get("start_date"); v != "" {
		if f.from, err = parseQueryTime(v); err != nil {
			writeError(w, http.StatusBadRequest, "Invalid start_date: use ISO 8601.")
			return
		}
	}
	if v := q.Get("end_date"); v != "" {
		if f.to, err = parseQueryTime(v); err != nil {
			writeError(w, http.StatusBadRequest, "Invalid end_date: use ISO 8601.")
			return
		}
	}
	switch f.callType = q.Get("call_type"); f.callType {
	case "", "inbound", "outbound":
	default:
		writeError(w, http.StatusBadRequest, "Invalid call_type: use inbound or outbound.")
		return
	}
	if v := q.Get("call_status"); v != "" {
		st, ok := queryStatuses[v]
		if !ok {
			writeError(w, http.StatusBadRequest, "Invalid call_status: use completed, missed or failed.")
			return
		}
		f.callStatus = st
	}
	if s.injectFault(w, r) {
		return
	}

	buf, _ := s.bufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer s.bufs.Put(buf)
	buf.Reset()
	// The count is over all pages; only the page's slice is written. Pages
	// past the end are empty, not 404: records can leave a filtered view
	// while a client pages.
	vs := s.list(org, f)
	count := len(vs)
	lo, hi := min((page-1)*size, count), min(page*size, count)
	buf.WriteString(`{"count":0000000000,"status_code":200,"message":"Call logs fetched successfully","data":[`)
	for i, v := range vs[lo:hi] {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.Write(v.json)
	}
	buf.WriteString("]}")
	// Patch the count in place, right-aligned in its ten reserved digits.
	out := buf.Bytes()
	digits := strconv.Itoa(count)
	const at = len(`{"count":`)
	copy(out[at:at+10], "          ")
	copy(out[at+10-len(digits):at+10], digits)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
	s.served.WithLabelValues(org).Add(float64(hi - lo))
	if s.log.Enabled(r.Context(), slog.LevelDebug) {
		s.log.LogAttrs(r.Context(), slog.LevelDebug, "unpodsim call logs", slog.String("org", org),
			slog.Int("page", page), slog.Int("page_size", size), slog.Int("count", count), slog.Time("now", f.now))
	}
}

// serveOrganizations implements GET /api/v2/platform/organizations/.
func (s *Server) serveOrganizations(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.authorize(w, r, false); !ok {
		return
	}
	if s.injectFault(w, r) {
		return
	}
	allowed := s.tokens[token(r)]
	var b bytes.Buffer
	n := 0
	for _, org := range s.Orgs() {
		if !allowed["*"] && !allowed[org] {
			continue
		}
		if n > 0 {
			b.WriteByte(',')
		}
		n++
		b.WriteString(`{"id":` + strconv.FormatUint(orgHash(org)%100000, 10) +
			`,"name":` + strconv.Quote(strings.ToUpper(org[:1])+org[1:]) +
			`,"domain_handle":` + strconv.Quote(org) + `,"is_active":true}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(`{"count":` + strconv.Itoa(n) + `,"status_code":200,"message":"Organizations fetched successfully","data":[`))
	w.Write(b.Bytes())
	w.Write([]byte("]}"))
}

func token(r *http.Request) string {
	h := r.Header.Get("Authorization")
	t, ok := strings.CutPrefix(h, "Token ")
	if !ok {
		return ""
	}
	return strings.TrimSpace(t)
}

// authorize checks the token and, when needOrg, the Org-Handle: 401 for a
// bad token, 404 for an org that does not exist, 403 for one the token may
// not see.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, needOrg bool) (string, bool) {
	allowed, ok := s.tokens[token(r)]
	if !ok {
		msg := "Invalid token."
		if r.Header.Get("Authorization") == "" {
			msg = "Authentication credentials were not provided."
		}
		writeError(w, http.StatusUnauthorized, msg)
		return "", false
	}
	if !needOrg {
		return "", true
	}
	org := strings.TrimSpace(r.Header.Get("Org-Handle"))
	switch {
	case org == "":
		writeError(w, http.StatusForbidden, "Org-Handle header is required.")
		return "", false
	case !s.hasOrg(org):
		writeError(w, http.StatusNotFound, "Organization not found.")
		return "", false
	case !allowed["*"] && !allowed[org]:
		writeError(w, http.StatusForbidden, "You do not have access to this organization.")
		return "", false
	}
	return org, true
}

func intParam(v string, def int) (int, bool) {
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1<<30 {
		return 0, false
	}
	return n, true
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write([]byte(`{"status_code":` + strconv.Itoa(status) + `,"message":` + strconv.Quote(msg) + `}`))
}

// injectFault decides, from the seeded fault stream, whether this request
// fails, and if so answers it. It reports whether it did.
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request) bool {
	f := s.cfg.Faults
	s.faultMu.Lock()
	kind, slow, variant := s.faultRng.Float64(), s.faultRng.Float64(), s.faultRng.Float64()
	fault := ""
	switch {
	case kind < f.Error500:
		fault = "500"
	case kind < f.Error500+f.Throttle429:
		fault = "429"
	case kind < f.Error500+f.Throttle429+f.Malformed:
		fault = "malformed"
	case kind < f.Error500+f.Throttle429+f.Malformed+f.Reset:
		fault = "reset"
	}
	if fault != "" {
		s.faults[fault]++
		s.injected.WithLabelValues(fault).Inc()
	}
	if slow < f.Slow {
		s.faults["slow"]++
		s.injected.WithLabelValues("slow").Inc()
	}
	s.faultMu.Unlock()
	if fault != "" {
		s.log.Info("unpodsim fault", "fault", fault, "path", r.URL.Path)
	}

	if slow < f.Slow {
		if !sleep(r.Context(), f.SlowDelay) {
			return true
		}
	}
	switch fault {
	case "500":
		writeError(w, http.StatusInternalServerError, "Internal server error.")
	case "429":
		if variant < 0.5 {
			w.Header().Set("Retry-After", strconv.Itoa(int((f.RetryAfter+time.Second-1)/time.Second)))
		} else {
			// Wall time, not the simulator's clock: the client waits in real
			// time. HTTP dates have whole seconds, so round up.
			at := time.Now().Add(f.RetryAfter + time.Second).Truncate(time.Second)
			w.Header().Set("Retry-After", at.UTC().Format(http.TimeFormat))
		}
		writeError(w, http.StatusTooManyRequests, "Request was throttled.")
	case "malformed":
		body := []byte(`{"count":120,"status_code":200,"message":"Call logs fetched successfully","data":[{"source_number":"+9112`)
		switch {
		case variant < 1.0/3:
			// Truncated JSON with a consistent length.
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
		case variant < 2.0/3:
			// A proxy's error page with a 200.
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html><body><h1>502 Bad Gateway</h1></body></html>"))
		default:
			// The length promises more than arrives: the connection closes
			// mid-body.
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(body)*4))
			w.Write(body)
		}
	case "reset":
		resetConn(w)
	default:
		return false
	}
	return true
}

// resetConn closes the client's connection with a TCP RST.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	conn.Close()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
