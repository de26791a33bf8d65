// Package unpod is a client for the Unpod call-logs API: the call-logs and
// organizations endpoints, with typed errors, retries with exponential
// backoff and jitter, Retry-After, a client-side rate limit and decoding that
// accepts every published variant of a call log.
//
// The token is sent only in the Authorization header, and only to the
// configured origin: the client follows no redirect (a 3xx answer is an
// error wrapping ErrRedirect that names the Location's scheme and host), so
// neither an https-to-http redirect nor one to another host can carry the
// token away, and a redirected page is never taken for an empty one. The
// token never appears in a log line, an error string or a metric label, and
// neither do credentials (user:pass@) or a query string in the base URL:
// they are never sent either (the Authorization header is the API's only
// credential).
package unpod

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/callstream/callstream/pkg/retryafter"
	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"
)

// API paths, relative to the base URL.
const (
	CallLogsPath      = "/api/v2/platform/call-logs/"
	OrganizationsPath = "/api/v2/platform/organizations/"
)

// Client talks to one Unpod API with one token. It is safe for concurrent use.
type Client struct {
	cfg      Config
	base     *url.URL
	http     *http.Client
	log      *slog.Logger
	limiter  *rate.Limiter
	metrics  *metrics
	statuses *statusTable
}

// Validate reports what New would refuse in the configuration, the token
// aside (the embedded mode runs the simulator without one): the base URL
// and the status map.
func (c Config) Validate() error {
	base, err := url.Parse(strings.TrimSpace(c.BaseURL))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return fmt.Errorf("unpod: base URL %q: want http(s)://host[/path]", RedactURL(c.BaseURL))
	}
	if _, err := c.StatusMap.compile(); err != nil {
		return err
	}
	return nil
}

// New returns a Client for cfg; zero fields take DefaultConfig values.
func New(cfg Config) (*Client, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	base, _ := url.Parse(strings.TrimSpace(cfg.BaseURL))
	base.Path = strings.TrimRight(base.Path, "/")
	// Credentials in the URL would only ever be logged: the Authorization
	// header carries the token, and net/http sends no userinfo beside it.
	base.User, base.RawQuery, base.Fragment = nil, "", ""
	if strings.TrimSpace(cfg.Token) == "" {
		return nil, errors.New("unpod: no API token (set UNPOD_API_TOKEN)")
	}
	statuses, err := cfg.StatusMap.compile()
	if err != nil {
		return nil, err
	}
	var hc http.Client
	if cfg.HTTPClient != nil {
		hc = *cfg.HTTPClient
	} else {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 16
		hc.Transport = tr
	}
	// No redirect is followed, whatever client was given: the 3xx answer
	// itself comes back and is refused in attempt.
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Client{
		cfg:      cfg,
		base:     base,
		http:     &hc,
		log:      log,
		limiter:  newLimiter(cfg.RateLimit, cfg.Burst),
		metrics:  m,
		statuses: statuses,
	}, nil
}

// Query is one call-logs request. Zero fields are not sent.
type Query struct {
	Org        string    // Org-Handle (required)
	Page       int       // 1-based page; 0 sends nothing (the API's default is 1)
	PageSize   int       // 0 sends nothing (the API's default is 20)
	Start, End time.Time // creation_time window [Start, End); zero = unset
	CallType   string    // "inbound" / "outbound" / ""
	CallStatus string    // "completed" / "missed" / "failed" / "no-answer" / ""
}

func (q Query) values(statuses *statusTable) (url.Values, error) {
	if strings.TrimSpace(q.Org) == "" {
		return nil, errors.New("unpod: call logs query without an Org-Handle")
	}
	v := url.Values{}
	if q.Page < 0 || q.PageSize < 0 {
		return nil, fmt.Errorf("unpod: negative page %d or page size %d", q.Page, q.PageSize)
	}
	if q.Page > 0 {
		v.Set("page", strconv.Itoa(q.Page))
	}
	if q.PageSize > 0 {
		v.Set("page_size", strconv.Itoa(q.PageSize))
	}
	if !q.Start.IsZero() {
		v.Set("start_date", FormatTime(q.Start))
	}
	if !q.End.IsZero() {
		v.Set("end_date", FormatTime(q.End))
	}
	switch q.CallType {
	case "", "inbound", "outbound":
	default:
		return nil, fmt.Errorf("unpod: call type %q: want inbound or outbound", q.CallType)
	}
	if q.CallType != "" {
		v.Set("call_type", q.CallType)
	}
	if q.CallStatus != "" {
		if _, ok := statuses.normalize(q.CallStatus); !ok {
			return nil, fmt.Errorf("unpod: call status %q: want completed, missed or failed", q.CallStatus)
		}
		v.Set("call_status", q.CallStatus)
	}
	return v, nil
}

// FormatTime renders t as the API's ISO 8601 in UTC, keeping sub-second
// precision only when t has any.
func FormatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// CallLogs fetches one page of call logs. Retryable failures (network,
// timeouts, 5xx, 429, a truncated body) are retried within MaxRetryTime;
// other errors are returned at once: an *APIError for an answer other than
// 2xx, an error wrapping ErrBodyTooLarge for a body over MaxBodyBytes (ask
// for a smaller page). A 404 for a page after the first that does not name
// the organization (Django REST Framework's {"detail": "Invalid page."})
// is an *APIError wrapping ErrPastLastPage: the data ended before the page
// count of an earlier page said, so the count shrank.
func (c *Client) CallLogs(ctx context.Context, q Query) (*Page, error) {
	v, err := q.values(c.statuses)
	if err != nil {
		return nil, err
	}
	pageNo := q.Page
	if pageNo == 0 {
		pageNo = 1
	}
	var page *Page
	err = c.do(ctx, "call_logs", CallLogsPath, v, q.Org, func(body []byte) error {
		p, err := decodePage(body, pageNo, c.statuses)
		page = p
		return err
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

// do sends GET path?query, retrying as the API's status table says, and
// hands a 200 body to parse. A parse error wrapping ErrMalformed is retried
// too: a body cut short is transport trouble, not the API's answer.
func (c *Client) do(ctx context.Context, endpoint, path string, query url.Values, org string, parse func([]byte) error) error {
	u := *c.base
	u.Path = c.base.Path + path
	u.RawQuery = query.Encode()
	target := u.String()

	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = c.cfg.InitialBackoff
	bo.MaxInterval = c.cfg.MaxBackoff
	bo.MaxElapsedTime = c.cfg.MaxRetryTime
	bo.RandomizationFactor = 0.5
	bo.Reset()

	for attempt := 1; ; attempt++ {
		err := c.attempt(ctx, endpoint, target, org, parse)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("unpod: GET %s: %w (last error: %v)", target, ctx.Err(), err)
		}
		if !IsRetryable(err) {
			return err
		}
		wait := bo.NextBackOff()
		var ae *APIError
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			wait = ae.RetryAfter
			if bo.GetElapsedTime()+wait > c.cfg.MaxRetryTime {
				wait = backoff.Stop
			}
		}
		if wait == backoff.Stop {
			return fmt.Errorf("unpod: giving up after %d attempts in %s: %w",
				attempt, bo.GetElapsedTime().Round(time.Millisecond), err)
		}
		c.metrics.retries.WithLabelValues(endpoint, retryReason(err)).Inc()
		c.log.LogAttrs(ctx, slog.LevelWarn, "unpod request failed, retrying",
			slog.String("url", target), slog.String("org", org), slog.Int("attempt", attempt),
			slog.Duration("wait", wait), slog.String("err", err.Error()))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("unpod: GET %s: %w (last error: %v)", target, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// attempt sends one request, bounded by Config.Timeout.
func (c *Client) attempt(ctx context.Context, endpoint, target, org string, parse func([]byte) error) error {
	if err := c.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("unpod: GET %s: rate limit wait: %w", target, err)
	}
	actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("unpod: build request for %s: %w", target, err)
	}
	req.Header.Set("Authorization", "Token "+c.cfg.Token)
	if org != "" {
		req.Header.Set("Org-Handle", org)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if c.cfg.ClientID != "" {
		req.Header.Set(HeaderClientID, c.cfg.ClientID)
	}

	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		c.observe(endpoint, "error", start)
		return fmt.Errorf("unpod: GET %s: %w", target, err)
	}
	body, rerr := readBody(resp, c.cfg.MaxBodyBytes)
	resp.Body.Close()
	c.observe(endpoint, strconv.Itoa(resp.StatusCode), start)
	c.log.LogAttrs(ctx, slog.LevelDebug, "unpod request",
		slog.String("url", target), slog.String("org", org), slog.Int("status", resp.StatusCode),
		slog.Int("bytes", len(body)), slog.Duration("took", time.Since(start)))

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		ae := &APIError{
			Status:  resp.StatusCode,
			Message: errorMessage(c.redact(body)),
			Method:  http.MethodGet,
			URL:     target,
			Org:     org,
		}
		ae.RetryAfter, _ = retryafter.Parse(resp.Header.Get("Retry-After"), time.Now())
		switch {
		case resp.StatusCode >= 300 && resp.StatusCode <= 399:
			ae.Message = "redirect to " + redirectTarget(req.URL, resp.Header.Get("Location")) +
				" refused: the client follows no redirect, so the token goes only to " + c.base.Scheme + "://" + c.base.Host +
				"; set base_url to the API's own address"
		case resp.StatusCode == http.StatusNotFound && pageOf(req.URL) > 1 && !namesOrganization(ae.Message):
			ae.PastLastPage = true
		}
		return ae
	}
	if rerr != nil {
		return fmt.Errorf("unpod: GET %s: read body: %w", target, rerr)
	}
	if err := parse(body); err != nil {
		var ae *APIError
		if errors.As(err, &ae) {
			// An error envelope in a 200: complete it like any other.
			ae.Method, ae.URL, ae.Org = http.MethodGet, target, org
			ae.Message = string(c.redact([]byte(ae.Message)))
			return ae
		}
		return fmt.Errorf("unpod: GET %s: %w", target, err)
	}
	return nil
}

// readBody reads resp's body into a buffer sized from Content-Length when
// there is one (io.ReadAll would regrow and copy a 1,000-record page a
// dozen times). A body over limit bytes is an error wrapping
// ErrBodyTooLarge, found from Content-Length before reading when the
// server sends one.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	tooLarge := func(what string) error {
		return fmt.Errorf("%w: %s, over the limit of %d bytes (unpod.max_body_bytes)", ErrBodyTooLarge, what, limit)
	}
	if n := resp.ContentLength; n > limit {
		return nil, tooLarge(fmt.Sprintf("Content-Length %d", n))
	}
	r := io.LimitReader(resp.Body, limit+1)
	var body []byte
	var err error
	if n := resp.ContentLength; n > 0 {
		buf := bytes.NewBuffer(make([]byte, 0, n+bytes.MinRead))
		_, err = buf.ReadFrom(r)
		body = buf.Bytes()
	} else {
		body, err = io.ReadAll(r)
	}
	if int64(len(body)) > limit {
		return nil, tooLarge("the body")
	}
	return body, err
}

// redirectTarget names where a redirect pointed, scheme and host only:
// never its userinfo, path or query.
func redirectTarget(from *url.URL, location string) string {
	if location == "" {
		return "no Location"
	}
	u, err := from.Parse(location)
	if err != nil || u.Host == "" {
		return "an unusable Location"
	}
	return u.Scheme + "://" + u.Host
}

// pageOf returns the page number a URL asks for (1 by default).
func pageOf(u *url.URL) int {
	n, err := strconv.Atoi(u.Query().Get("page"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// namesOrganization reports whether a 404's message is about the
// organization ("Organization not found.") rather than the page.
func namesOrganization(msg string) bool {
	m := strings.ToLower(msg)
	return strings.Contains(m, "organi") || strings.Contains(m, "org-handle") || strings.Contains(m, "org handle")
}

// RedactURL returns u with any userinfo and query values masked, for logs
// and errors; a text that does not parse as a URL is masked from its
// scheme on.
func RedactURL(u string) string {
	p, err := url.Parse(strings.TrimSpace(u))
	if err != nil {
		scheme, _, ok := strings.Cut(u, "://")
		if !ok {
			return "***"
		}
		return scheme + "://***"
	}
	if p.User != nil {
		p.User = url.User("***")
	}
	if p.RawQuery != "" {
		q := p.Query()
		for k := range q {
			q[k] = []string{"***"}
		}
		p.RawQuery = q.Encode()
	}
	p.Fragment, p.RawFragment = "", ""
	return p.String()
}

func (c *Client) observe(endpoint, code string, start time.Time) {
	c.metrics.requests.WithLabelValues(endpoint, code).Inc()
	c.metrics.duration.WithLabelValues(endpoint).Observe(time.Since(start).Seconds())
}

// redact removes the token from text that came from the server, in case an
// API ever echoes it back.
// It works on the whole body, before any truncation could cut the token
// in two.
func (c *Client) redact(body []byte) []byte {
	return bytes.ReplaceAll(body, []byte(c.cfg.Token), []byte("***"))
}

// errorMessage pulls the human message out of an error body: the API's
// {"message": ...}, Django REST's {"detail": ...}, or the start of the text.
func errorMessage(body []byte) string {
	var e struct {
		Message string `json:"message"`
		Detail  string `json:"detail"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Message != "" {
			return e.Message
		}
		if e.Detail != "" {
			return e.Detail
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func retryReason(err error) string {
	var ae *APIError
	var ne net.Error
	switch {
	case errors.As(err, &ae):
		if ae.Status == http.StatusTooManyRequests {
			return "429"
		}
		return "5xx"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "network"
}

// HeaderClientID is the request header that carries Config.ClientID.
const HeaderClientID = "X-Callstream-Producer"
