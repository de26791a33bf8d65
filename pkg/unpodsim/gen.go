package unpodsim

import (
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"
)

// The traffic is a pure function of (seed, org, minute): every minute of an
// org's timeline is generated from its own random stream, so any window can
// be served, re-served and checked against ground truth without storing
// anything but a cache. What a record looks like at time now (absent,
// preliminary, final) is a pure function of the call and now.

// bucket is the unit of generation.
const bucket = time.Minute

// maxCallSpan bounds the time from creation to the end of a call: at most
// 25 s of ringing and an hour of talk.
const maxCallSpan = 25*time.Second + time.Hour

// call is one simulated call with every version its record will have.
type call struct {
	created  time.Time // as rendered (seconds or milliseconds precision)
	typ      string
	versions []version // ascending by at; versions[0].at is when it appears
}

// version is what the API shows for a call from time at on.
type version struct {
	at     time.Time
	status string // normalised, for the call_status filter
	json   []byte
	broken bool        // rendered without creation_time: undecodable on purpose
	in     renderInput // the generator's values json was rendered from: the ground truth
}

// current returns the version visible at now, or nil, and when the next
// version appears (zero when v is the last).
func (c *call) current(now time.Time) (v *version, next time.Time) {
	for i := range c.versions {
		if c.versions[i].at.After(now) {
			return v, c.versions[i].at
		}
		v = &c.versions[i]
	}
	return v, time.Time{}
}

// generator holds what generation needs from the config.
type generator struct {
	cfg       Config
	startedAt time.Time // incidents with After are relative to this
}

func orgHash(org string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(org))
	return h.Sum64()
}

func (g *generator) rate(org string, at time.Time) float64 {
	r := g.cfg.CallsPerMinute
	if v, ok := g.cfg.OrgCallsPerMinute[org]; ok {
		r = v
	}
	if g.cfg.DailyShape {
		h := float64(at.UTC().Hour()) + float64(at.UTC().Minute())/60
		r *= 1 + 0.8*math.Sin(2*math.Pi*(h-8)/24)
	}
	for _, in := range g.activeIncidents(org, at) {
		if in.RateFactor > 0 {
			r *= in.RateFactor
		}
	}
	return r
}

// activeIncidents returns the incidents hitting org at t.
func (g *generator) activeIncidents(org string, t time.Time) []Incident {
	var out []Incident
	for _, in := range g.cfg.Incidents {
		if in.Org != "" && in.Org != org {
			continue
		}
		start := in.Start
		if start.IsZero() {
			start = g.startedAt.Add(in.After)
		}
		if t.Before(start) {
			continue
		}
		off := t.Sub(start)
		if in.Every > 0 {
			off %= in.Every
		}
		if off < in.Duration {
			out = append(out, in)
		}
	}
	return out
}

// generate returns the calls created in minute m (Unix minutes) for org,
// oldest first.
func (g *generator) generate(org string, m int64) []*call {
	rng := rand.New(rand.NewPCG(g.cfg.Seed, orgHash(org)^uint64(m)*0x9e3779b97f4a7c15))
	t0 := time.Unix(m*60, 0).UTC()
	n := poisson(rng, g.rate(org, t0.Add(bucket/2)))
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = rng.Int64N(int64(bucket / time.Millisecond))
	}
	slices.Sort(offs)
	calls := make([]*call, 0, n)
	for _, off := range offs {
		calls = append(calls, g.makeCall(rng, org, t0.Add(time.Duration(off)*time.Millisecond)))
	}
	// Truncating some times to whole seconds can reorder them; serving
	// walks this slice backwards as "newest first".
	slices.SortStableFunc(calls, func(a, b *call) int { return a.created.Compare(b.created) })
	return g.withoutOutages(org, calls)
}

// Outcomes and their end reasons.
var (
	completedReasons = []string{"caller_hangup", "callee_hangup", "customer-ended-call", "assistant-ended-call"}
	failedReasons    = []string{"network_error", "busy", "invalid_number", "carrier_failure"}
	missedReasons    = []string{"no_answer", "no-answer", "customer-did-not-answer"}
)

// makeCall draws one call. Every draw happens whatever the config, in a
// fixed order, so that turning one switch does not reshuffle the rest.
func (g *generator) makeCall(rng *rand.Rand, org string, created time.Time) *call {
	cfg := &g.cfg
	d := struct {
		millis, inbound, outcome, incident, spelling, id, format, fate, delay, extra, broken float64
		ring, dur, reason, customer, line                                                    int64
		idBits                                                                               uint64
	}{
		millis: rng.Float64(), inbound: rng.Float64(), outcome: rng.Float64(), incident: rng.Float64(),
		spelling: rng.Float64(), id: rng.Float64(), format: rng.Float64(), fate: rng.Float64(),
		delay: rng.Float64(), extra: rng.Float64(), broken: rng.Float64(),
		ring: 2 + rng.Int64N(24), dur: int64(math.Exp(math.Log(120) + 0.9*rng.NormFloat64())),
		reason: rng.Int64N(12), customer: 1_000_000_000 + rng.Int64N(8_999_999_999), line: rng.Int64N(5),
		idBits: rng.Uint64(),
	}
	millis := d.millis < cfg.MillisTimes
	if !millis {
		created = created.Truncate(time.Second)
	}
	c := &call{created: created, typ: "outbound"}
	if d.inbound < cfg.InboundShare {
		c.typ = "inbound"
	}

	status := "completed"
	switch {
	case d.outcome < cfg.MissedShare:
		status = "missed"
	case d.outcome < cfg.MissedShare+cfg.FailedShare:
		status = "failed"
	}
	for _, in := range g.activeIncidents(org, created) {
		if in.Kind != Outage && d.incident < in.Intensity { // an outage drops calls: withoutOutages
			status = "missed"
			if in.Kind == FailedBurst {
				status = "failed"
			}
		}
	}

	r := renderInput{created: created, millis: millis, typ: c.typ, status: status, rawStatus: status}
	if d.id < cfg.IDPresent {
		r.id = "call_" + strconv.FormatUint(d.idBits&0xffffffffffff, 16)
	}
	orgLine := "+1415555" + strconv.Itoa(1000+int(orgHash(org)%8000)+int(d.line))
	customer := "+91" + strconv.FormatInt(d.customer, 10)
	r.source, r.dest = orgLine, customer
	if c.typ == "inbound" {
		r.source, r.dest = customer, orgLine
	}
	r.hms = cfg.DurationFormats == "hms" || (cfg.DurationFormats == "mixed" && d.format < 0.5)
	r.extra = cfg.ExtraFields
	r.extraBits = int(d.reason)

	var callEnd time.Time
	switch status {
	case "completed":
		dur := min(max(d.dur, 3), 3600)
		start := created.Add(time.Duration(d.ring) * time.Second)
		end := start.Add(time.Duration(dur) * time.Second)
		r.start, r.end, r.duration = &start, &end, dur
		r.reason = completedReasons[d.reason%int64(len(completedReasons))]
		callEnd = end
	case "missed":
		if d.spelling < cfg.NoAnswer {
			r.rawStatus = "no-answer"
			if d.spelling < cfg.NoAnswer/2 {
				r.rawStatus = "no_answer"
			}
		}
		r.reason = missedReasons[d.reason%int64(len(missedReasons))]
		callEnd = created.Add(30 * time.Second)
	case "failed":
		end := created.Add(time.Duration(1+d.ring%9) * time.Second)
		r.end = &end
		r.reason = failedReasons[d.reason%int64(len(failedReasons))]
		callEnd = end
	}
	r.broken = d.broken < cfg.InvalidRecords

	final := version{status: status, json: r.render(), broken: r.broken, in: r}
	switch {
	case d.fate < cfg.LateRecords:
		final.at = callEnd.Add(5*time.Second + time.Duration(d.delay*float64(cfg.LateDelayMax)))
		c.versions = []version{final}
	case d.fate < cfg.LateRecords+cfg.Updates:
		final.at = callEnd.Add(5*time.Second + time.Duration(d.delay*float64(cfg.UpdateDelayMax)))
		c.versions = []version{preliminary(r, created), final}
	case d.fate < cfg.LateRecords+cfg.Updates+cfg.PageShifts:
		final.at = created.Add(time.Duration(d.delay * float64(cfg.ShiftSpread)))
		c.versions = []version{final}
	default:
		final.at = created
		c.versions = []version{final}
	}
	return c
}

// preliminary is what an updated call shows before its final version: a
// completed call still without end_time, a missed call first logged as
// failed, a failed call first logged as missed.
func preliminary(r renderInput, at time.Time) version {
	switch r.status {
	case "completed":
		r.end, r.duration, r.reason = nil, 0, ""
	case "missed":
		r.status, r.rawStatus, r.reason = "failed", "failed", ""
	case "failed":
		r.status, r.rawStatus, r.reason, r.end = "missed", "missed", "", nil
	}
	return version{at: at, status: r.status, json: r.render(), broken: r.broken, in: r}
}

// poisson draws a Poisson variate; a normal approximation above 30 keeps
// busy minutes cheap.
func poisson(rng *rand.Rand, lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		return max(0, int(math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
	}
	l, k, p := math.Exp(-lambda), 0, 1.0
	for {
		p *= rng.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
