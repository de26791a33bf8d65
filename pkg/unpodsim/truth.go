package unpodsim

import (
	"time"

	"github.com/callstream/callstream/pkg/unpod"
)

// GroundTruth returns every call of org visible through the API at asOf,
// each in the version visible then, newest first: what a perfect client
// polling up to asOf would have stored. Records are decoded from the very
// bytes the API serves, so they cannot disagree with a page. Records served
// undecodable on purpose (Config.InvalidRecords) are left out; see
// InvalidCount.
func (s *Server) GroundTruth(org string, asOf time.Time) []unpod.Record {
	return s.GroundTruthWindow(org, time.Time{}, time.Time{}, asOf)
}

// GroundTruthWindow is GroundTruth restricted to calls created in
// [from, to), with the API's semantics: start inclusive, end exclusive;
// a zero bound is open.
func (s *Server) GroundTruthWindow(org string, from, to, asOf time.Time) []unpod.Record {
	var out []unpod.Record
	s.each(org, filter{from: from, to: to, now: asOf.UTC()}, func(_ *call, v *version) bool {
		if v.broken {
			return true
		}
		rec, err := unpod.DecodeRecord(v.json)
		if err != nil {
			// Cannot happen for a record the generator meant to be good;
			// leaving it out makes a comparison fail loudly.
			return true
		}
		out = append(out, rec)
		return true
	})
	return out
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
