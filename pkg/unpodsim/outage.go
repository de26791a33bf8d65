package unpodsim

import (
	"encoding/binary"
	"hash/fnv"
	"math"
	"slices"
	"time"
)

// Outage is the incident kind for the outage no ratio or count rule can
// see: the telephony side is down, so the org has no calls and the API no
// records. Intensity is the share of the org's calls lost (1: none at all;
// 0.8: a partial outage, a volume drop).
const Outage = "outage"

// incidentKinds are the incident kinds the simulator knows.
var incidentKinds = []string{MissedSpike, FailedBurst, Outage}

// knownIncidentKind reports whether kind is one of incidentKinds.
func knownIncidentKind(kind string) bool { return slices.Contains(incidentKinds, kind) }

// withoutOutages drops the calls an outage took from one generated minute.
// The calls are generated first and dropped after, so every random draw
// happens as without the outage: the traffic around it is the same call
// for call.
func (g *generator) withoutOutages(org string, calls []*call) []*call {
	return slices.DeleteFunc(calls, func(c *call) bool {
		for _, in := range g.activeIncidents(org, c.created) {
			if in.Kind == Outage && lostShare(org, c.created) < in.Intensity {
				return true
			}
		}
		return false
	})
}

// lostShare is a fixed draw in [0, 1) per call (org and creation time),
// so a partial outage always loses the same calls.
func lostShare(org string, created time.Time) float64 {
	h := fnv.New64a()
	h.Write([]byte(org))
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(created.UnixNano()))
	h.Write(b[:])
	return float64(h.Sum64()>>11) / math.Exp2(53)
}
