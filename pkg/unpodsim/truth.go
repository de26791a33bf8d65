package unpodsim

import (
	"time"

	"github.com/callstream/callstream/pkg/unpod"
)

// The ground truth is built from the generator's own values (the
// renderInput each record's JSON was rendered from), never by decoding the
// served bytes or with any of pkg/unpod's parsing or normalising code: a
// normalisation bug in the client (a spelling mapped to the wrong status, a
// time losing its milliseconds, a duration misread) then shows as a
// difference instead of being copied into the truth. Only pkg/unpod's
// Record type is shared, as the shape of the answer.

// GroundTruth returns every call of org visible through the API at asOf,
// each in the version visible then, newest first: what a perfect client
// polling up to asOf would have stored. Each Record holds the values the
// generator chose (Raw is the exact bytes served), normalised as the API's
// documentation says: the status as completed, missed or failed with the
// spelling sent in RawStatus, times in UTC at the precision rendered,
// call_duration in seconds whatever its format. Records served undecodable
// on purpose (Config.InvalidRecords) are left out; see InvalidCount.
func (s *Server) GroundTruth(org string, asOf time.Time) []unpod.Record {
	return s.GroundTruthWindow(org, time.Time{}, time.Time{}, asOf)
}

// GroundTruthWindow is GroundTruth restricted to calls created in
// [from, to), with the API's semantics: start inclusive, end exclusive;
// a zero bound is open.
func (s *Server) GroundTruthWindow(org string, from, to, asOf time.Time) []unpod.Record {
	var out []unpod.Record
	s.each(org, filter{from: from, to: to, now: asOf.UTC()}, func(_ *call, v *version) bool {
		if !v.broken {
			out = append(out, v.in.truth(v.json))
		}
		return true
	})
	return out
}

// truth is the record r stands for, as a perfect client would decode the
// JSON r renders.
func (r renderInput) truth(raw []byte) unpod.Record {
	return unpod.Record{
		ID:                r.id,
		SourceNumber:      r.source,
		DestinationNumber: r.dest,
		CallType:          r.typ,
		CallStatus:        r.status,
		RawStatus:         r.rawStatus,
		CreationTime:      r.rendered(r.created),
		StartTime:         r.renderedPtr(r.start),
		EndTime:           r.renderedPtr(r.end),
		DurationSeconds:   r.duration,
		EndReason:         r.reason,
		Raw:               raw,
	}
}

// rendered is t at the precision formatTime writes it, in UTC.
func (r renderInput) rendered(t time.Time) time.Time {
	if r.millis {
		return t.UTC().Truncate(time.Millisecond)
	}
	return t.UTC().Truncate(time.Second)
}

func (r renderInput) renderedPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := r.rendered(*t)
	return &v
}

// InvalidCount returns how many records of org created in [from, to) are
// served undecodable at asOf (see Config.InvalidRecords).
func (s *Server) InvalidCount(org string, from, to, asOf time.Time) int {
	n := 0
	s.each(org, filter{from: from, to: to, now: asOf.UTC()}, func(_ *call, v *version) bool {
		if v.broken {
			n++
		}
		return true
	})
	return n
}

// Appearance is one version of a call's record and when the API began to
// show it, for measuring freshness against the simulator's own clock.
type Appearance struct {
	Raw       []byte    // the bytes served for this version
	Created   time.Time // the call's creation_time, as rendered
	VisibleAt time.Time // when the API began to show this version
	Version   int       // 1 for the call's first version, 2 for the next
}

// Appearances returns every version of org's calls created in [from, to)
// that the API had shown by asOf, the superseded ones included; records
// served undecodable on purpose are left out.
func (s *Server) Appearances(org string, from, to, asOf time.Time) []Appearance {
	var out []Appearance
	asOf = asOf.UTC()
	s.each(org, filter{from: from, to: to, now: asOf}, func(c *call, _ *version) bool {
		for i, v := range c.versions {
			if v.at.After(asOf) {
				break
			}
			if !v.broken {
				out = append(out, Appearance{Raw: v.json, Created: c.created, VisibleAt: v.at, Version: i + 1})
			}
		}
		return true
	})
	return out
}
