package statuspage

import (
	"math"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// point is one series of a gathered metric family.
type point struct {
	labels  map[string]string
	value   float64  // counter, gauge or untyped value; a histogram's count
	buckets []bucket // a classic histogram's cumulative buckets, by upper bound
}

// bucket is a cumulative histogram bucket.
type bucket struct {
	le    float64
	count float64
}

// view is a gathered registry, by metric name.
type view map[string][]point

func newView(mfs []*dto.MetricFamily) view {
	v := view{}
	for _, mf := range mfs {
		pts := make([]point, 0, len(mf.Metric))
		for _, m := range mf.Metric {
			p := point{labels: make(map[string]string, len(m.Label))}
			for _, l := range m.Label {
				p.labels[l.GetName()] = l.GetValue()
			}
			switch {
			case m.Counter != nil:
				p.value = m.Counter.GetValue()
			case m.Gauge != nil:
				p.value = m.Gauge.GetValue()
			case m.Untyped != nil:
				p.value = m.Untyped.GetValue()
			case m.Histogram != nil:
				p.value = float64(m.Histogram.GetSampleCount())
				for _, b := range m.Histogram.Bucket {
					p.buckets = append(p.buckets, bucket{le: b.GetUpperBound(), count: float64(b.GetCumulativeCount())})
				}
				// The +Inf bucket is implicit in the exposition model.
				if n := len(p.buckets); n == 0 || !math.IsInf(p.buckets[n-1].le, 1) {
					p.buckets = append(p.buckets, bucket{le: math.Inf(1), count: p.value})
				}
			}
			pts = append(pts, p)
		}
		v[mf.GetName()] = pts
	}
	return v
}

// has reports whether the family exists with at least one series.
func (v view) has(name string) bool { return len(v[name]) > 0 }

// matches reports whether p has every label of match with its value.
func (p point) matches(match map[string]string) bool {
	for k, want := range match {
		if p.labels[k] != want {
			return false
		}
	}
	return true
}

// sum adds the values of the series of name that match.
func (v view) sum(name string, match map[string]string) float64 {
	var s float64
	for _, p := range v[name] {
		if p.matches(match) {
			s += p.value
		}
	}
	return s
}

// by adds the values of the series of name that match, grouped by the
// value of label.
func (v view) by(name, label string, match map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, p := range v[name] {
		if p.matches(match) {
			out[p.labels[label]] += p.value
		}
	}
	return out
}

// labelKey identifies a series by its labels, in name order.
func labelKey(labels map[string]string) string {
	names := make([]string, 0, len(labels))
	for n := range labels {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(labels[n])
	}
	return b.String()
}

// quantile estimates the q-quantile of the observations in cumulative
// buckets as Prometheus's histogram_quantile does: linear interpolation
// within the bucket holding the rank, the lowest bucket starting at 0 (or at
// its bound when that is negative), and the highest finite bound when the
// rank falls in the +Inf bucket. It returns NaN without observations.
func quantile(q float64, bs []bucket) float64 {
	if len(bs) == 0 || math.IsNaN(q) {
		return math.NaN()
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	for i, b := range bs {
		if b.count < rank {
			continue
		}
		if math.IsInf(b.le, 1) {
			if i == 0 {
				return math.NaN()
			}
			return bs[i-1].le
		}
		lower, below := 0.0, 0.0
		if i > 0 {
			lower, below = bs[i-1].le, bs[i-1].count
		} else if b.le < 0 {
			return b.le
		}
		in := b.count - below
		if in <= 0 {
			return b.le
		}
		return lower + (b.le-lower)*(rank-below)/in
	}
	return bs[len(bs)-1].le
}

// deltaBuckets subtracts base from cur bucket by bucket (same bounds);
// a counter reset (a smaller count) keeps cur whole.
func deltaBuckets(cur, base []bucket) []bucket {
	if len(base) != len(cur) {
		return cur
	}
	out := make([]bucket, len(cur))
	for i := range cur {
		if cur[i].le != base[i].le || cur[i].count < base[i].count {
			return cur
		}
		out[i] = bucket{le: cur[i].le, count: cur[i].count - base[i].count}
	}
	return out
}
