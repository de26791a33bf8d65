package producer

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/callstream/callstream/pkg/audit"
	"github.com/callstream/callstream/pkg/unpod"
)

// The periodic audit (Config.AuditInterval) compares, for each
// organization and each closed hour, the API's count with the number of
// distinct calls the producer published, and exports the shortfall as
// callstream_audit_missing_calls{org}.
//
// What was published is counted in a ledger of distinct calls per
// (organization, hour of creation_time): a call is counted when its key
// first enters the dedup memory, from an acknowledged batch or from the
// events topic read back at restore or resync. The memory forgets a call
// only once every rung has read past it, after which nothing can publish it
// again but a replay of a dead letter, which is a new call to the ledger
// too. So the ledger holds every call published since its floor: the
// organization's lowest frontier when the audit first saw it (after the
// restore, which brings back every event of a call created at or after that
// frontier). It costs one counter per organization and hour; it needs the
// events topic to be read back (Deps.EventLog), without which a restart
// would leave it short, so the audit is off without one.
//
// An hour is audited once it is closed, when every rung has read it (it
// ends at or before the lowest frontier), and at most AuditSpan back. Each
// run costs one request per organization and audited hour (page_size=1,
// only count is read): AuditSpan/1h requests per organization and run.

// auditLedger counts the distinct calls published per organization and
// hour of creation time.
type auditLedger struct {
	mu    sync.Mutex
	hours map[string]map[int64]int64 // org -> Unix hour -> calls
	floor map[string]time.Time       // org -> first hour start counted whole
	// onAudit, when set (tests), sees the rows of every audit of the loop.
	onAudit func(org string, rows []audit.Row)
}

// auditHour is the Unix hour of t.
func auditHour(t time.Time) int64 { return t.UTC().Truncate(time.Hour).Unix() / 3600 }

// auditPublished counts a call new to the memory. org may be a string or
// the bytes of an event read back.
func auditPublished[S ~string | ~[]byte](p *Producer, org S, created time.Time) {
	if p.cfg.AuditInterval <= 0 {
		return
	}
	l := &p.audit
	h := auditHour(created)
	l.mu.Lock()
	m, ok := l.hours[string(org)]
	if !ok {
		if l.hours == nil {
			l.hours = map[string]map[int64]int64{}
		}
		m = map[int64]int64{}
		l.hours[string(org)] = m
	}
	m[h]++
	l.mu.Unlock()
}

// setFloor records where org's ledger starts counting whole hours, once.
func (l *auditLedger) setFloor(org string, low time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.floor == nil {
		l.floor = map[string]time.Time{}
	}
	if _, ok := l.floor[org]; !ok {
		// The hour holding low is only partly counted.
		f := low.UTC().Truncate(time.Hour)
		if f.Before(low) {
			f = f.Add(time.Hour)
		}
		l.floor[org] = f
	}
}

// published returns the calls counted in the hour starting at start, and
// whether the ledger counts that hour whole.
func (l *auditLedger) published(org string, start time.Time) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f, ok := l.floor[org]
	if !ok || start.Before(f) {
		return 0, false
	}
	return l.hours[org][auditHour(start)], true
}

// prune forgets org's hours before t.
func (l *auditLedger) prune(org string, t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	limit := auditHour(t)
	for h := range l.hours[org] {
		if h < limit {
			delete(l.hours[org], h)
		}
	}
}

// auditMetrics are the audit's metrics.
type auditMetrics struct {
	missing *prometheus.GaugeVec
	runs    *prometheus.CounterVec
}

func newAuditMetrics(reg prometheus.Registerer) *auditMetrics {
	m := &auditMetrics{
		missing: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "callstream_audit_missing_calls",
			Help: "Calls the API counts in the closed hours of the last audit (producer.audit_span back) that the producer did not publish: dead-lettered records until replayed, and any call lost.",
		}, []string{"org"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "callstream_audit_runs_total", Help: "Periodic audits of an organization by result: ok, gap (calls missing) or error (the API did not answer).",
		}, []string{"org", "result"}),
	}
	if reg == nil {
		return m
	}
	register := func(c prometheus.Collector) prometheus.Collector {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return are.ExistingCollector
			}
		}
		return c
	}
	if g, ok := register(m.missing).(*prometheus.GaugeVec); ok {
		m.missing = g
	}
	if c, ok := register(m.runs).(*prometheus.CounterVec); ok {
		m.runs = c
	}
	return m
}

// auditLoop audits every organization each AuditInterval until ctx ends.
func (p *Producer) auditLoop(ctx context.Context, orgs []string) {
	if p.cfg.AuditInterval <= 0 {
		return
	}
	if p.deps.EventLog == nil {
		p.log.Info("periodic audit off: the bus keeps no event log to rebuild the count of published calls after a restart")
		return
	}
	m := newAuditMetrics(p.deps.Registerer)
	for _, org := range orgs {
		p.auditFloor(org)
	}
	t := time.NewTicker(p.clock.Wall(p.cfg.AuditInterval))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, org := range orgs {
			rows, err := p.auditOrg(ctx, org)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				m.runs.WithLabelValues(org, "error").Inc()
				p.log.Warn("audit: the API's counts could not be read; the next audit tries again", "org", org, "err", err.Error())
				continue
			}
			var missing int64
			for _, r := range rows {
				if n := r.Missing(); n > 0 {
					missing += n
					p.log.Warn("audit: the API counts calls the producer did not publish", "org", org,
						"hour", r.Window.Start, "api", r.API, "published", r.Published, "missing", n)
				}
			}
			m.missing.WithLabelValues(org).Set(float64(missing))
			result := "ok"
			if missing > 0 {
				result = "gap"
			}
			m.runs.WithLabelValues(org, result).Inc()
			if p.audit.onAudit != nil {
				p.audit.onAudit(org, rows)
			}
		}
	}
}

// auditFloor starts org's ledger at its lowest frontier, once its
// checkpoint exists; it reports whether it does.
func (p *Producer) auditFloor(org string) bool {
	p.mu.Lock()
	cp, ok := p.cps[org]
	var low time.Time
	if ok {
		low = cp.Low()
	}
	p.mu.Unlock()
	if ok {
		p.audit.setFloor(org, low)
	}
	return ok
}

// auditOrg compares the API's count of each closed hour of org within
// AuditSpan with the ledger: one request per hour.
func (p *Producer) auditOrg(ctx context.Context, org string) ([]audit.Row, error) {
	if !p.auditFloor(org) {
		return nil, nil // not polled yet
	}
	p.mu.Lock()
	low := p.cps[org].Low()
	p.mu.Unlock()
	from := low.Add(-p.cfg.AuditSpan)
	p.audit.prune(org, from.Add(-time.Hour))
	ws, _, err := audit.Windows(from, low, low, audit.Hour)
	if err != nil {
		return nil, nil // a span shorter than an hour: nothing closed to audit
	}
	var rows []audit.Row
	for _, w := range ws {
		pub, whole := p.audit.published(org, w.Start)
		if !whole {
			continue
		}
		pg, err := p.deps.Source.CallLogs(ctx, unpod.Query{Org: org, Page: 1, PageSize: 1, Start: w.Start, End: w.End})
		if err != nil {
			return rows, fmt.Errorf("producer: audit of org %s: count of [%s, %s): %w", org,
				w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339), err)
		}
		rows = append(rows, audit.Row{Org: org, Window: w, API: int64(pg.Count), Published: pub,
			Stored: audit.NotChecked, Lake: audit.NotChecked})
	}
	return rows, nil
}
