package statuspage

import (
	"maps"
	"sort"
	"strings"
	"time"
)

// chartState keeps, per bucket of ChartStep, the newest value of every
// callstream_producer_calls_total series at the bucket's end; a bar is the
// difference between a bucket's values and the previous bucket's. A new
// bucket starts from a copy of the previous one, so a series that is not
// sampled in a bucket counts as unchanged.
type chartState struct {
	base    map[string]float64 // values at the end of the last bucket dropped (zero at first)
	buckets []chartBucket      // oldest first
}

type chartBucket struct {
	start time.Time
	end   map[string]float64 // by org + "\x00" + status
}

func callKey(org, status string) string { return org + "\x00" + status }

func (c *chartState) add(v view, now time.Time, step, span time.Duration) {
	start := now.Truncate(step)
	if n := len(c.buckets); n == 0 || c.buckets[n-1].start.Before(start) {
		prev := c.base
		if n > 0 {
			prev = c.buckets[n-1].end
		}
		c.buckets = append(c.buckets, chartBucket{start: start, end: maps.Clone(prev)})
	}
	cur := c.buckets[len(c.buckets)-1].end
	for _, pt := range v[mCalls] {
		cur[callKey(pt.labels["org"], pt.labels["status"])] = pt.value
	}
	// Buckets that started before the span are dropped into the base.
	for len(c.buckets) > 0 && !c.buckets[0].start.After(now.Add(-span)) {
		c.base = c.buckets[0].end
		c.buckets = c.buckets[1:]
	}
}

// statusOrder puts the normalised statuses first, in this order.
var statusOrder = []string{"completed", "missed", "failed"}

func (c *chartState) snapshot(now time.Time, step, span time.Duration) Chart {
	out := Chart{StepSeconds: step.Seconds(), SpanSeconds: span.Seconds(), EndMS: now.UnixMilli(), Statuses: []string{}, Orgs: []OrgChart{}}
	orgs, statuses := map[string]bool{}, map[string]bool{}
	for _, b := range c.buckets {
		for k := range b.end {
			org, status := splitKey(k)
			orgs[org], statuses[status] = true, true
		}
	}
	for _, s := range statusOrder {
		if statuses[s] {
			out.Statuses = append(out.Statuses, s)
			delete(statuses, s)
		}
	}
	rest := make([]string, 0, len(statuses))
	for s := range statuses {
		rest = append(rest, s)
	}
	sort.Strings(rest)
	out.Statuses = append(out.Statuses, rest...)
	names := make([]string, 0, len(orgs))
	for o := range orgs {
		names = append(names, o)
	}
	sort.Strings(names)
	for _, org := range names {
		oc := OrgChart{Org: org, StartsMS: []int64{}, Buckets: [][]float64{}, Totals: map[string]float64{}}
		prev := c.base
		for _, b := range c.buckets {
			row := make([]float64, len(out.Statuses))
			for j, s := range out.Statuses {
				k := callKey(org, s)
				d := b.end[k] - prev[k]
				if d < 0 { // a counter reset: count from zero
					d = b.end[k]
				}
				row[j] = d
				oc.Totals[s] += d
			}
			oc.StartsMS = append(oc.StartsMS, b.start.UnixMilli())
			oc.Buckets = append(oc.Buckets, row)
			prev = b.end
		}
		out.Orgs = append(out.Orgs, oc)
	}
	return out
}

func splitKey(k string) (string, string) {
	org, status, _ := strings.Cut(k, "\x00")
	return org, status
}
