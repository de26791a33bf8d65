package producer

import (
	"time"
)

// Rung is one step of the rescan ladder: every slice of time is read once
// when it reaches Age (after the settle lag), and Frontier is how far that
// has happened: creation times before it have been read at Age or older.
type Rung struct {
	Age      time.Duration `json:"age"`
	Frontier time.Time     `json:"frontier"`
}

// Sample pairs a frontier of rung 0 with the events topic's end offsets
// taken while rung 0 stood there. Every event of a record created at or
// after Frontier was published after the sample, so at an offset at or past
// Offsets: reading from there restores what the gate must know about them.
type Sample struct {
	Frontier time.Time     `json:"frontier"`
	Offsets  map[int]int64 `json:"offsets"`
}

// Checkpoint is the progress of one organization.
type Checkpoint struct {
	Org     string   `json:"org"`
	Rungs   []Rung   `json:"rungs"`
	Samples []Sample `json:"samples,omitempty"`
	// DeadLetters are the org's dead-letter marks (see Dead letters in
	// the package documentation), 12 bytes each; set only in a saved or
	// loaded checkpoint.
	DeadLetters []byte `json:"dead_letters,omitempty"`
	// Owner is the ownership generation of the producer that saved it (0
	// for a sole owner).
	Owner int64 `json:"owner_generation,omitempty"`
}

// Window is one time range read as a unit, for one rung.
type Window struct {
	Rung       int
	Start, End time.Time // creation times [Start, End)
}

// newCheckpoint starts an organization at start, with every rung there.
func newCheckpoint(org string, ages []time.Duration, start time.Time) *Checkpoint {
	c := &Checkpoint{Org: org}
	c.align(ages, start)
	return c
}

// align makes the rungs match ages, keeping the frontiers of the ages that
// remain; a new rung starts where the rung 0 frontier minus its age is.
func (c *Checkpoint) align(ages []time.Duration, start time.Time) {
	old := map[time.Duration]time.Time{}
	for _, r := range c.Rungs {
		old[r.Age] = r.Frontier
	}
	base, ok := old[0]
	if !ok {
		base = start
	}
	// A new rung never starts below the old lowest frontier: below it the
	// gate may no longer remember what was published.
	floor := start
	if len(c.Rungs) > 0 {
		floor = c.Low()
	}
	c.Rungs = c.Rungs[:0]
	for _, a := range ages {
		f, ok := old[a]
		if !ok {
			f = base.Add(-a)
			if f.Before(floor) {
				f = floor
			}
		}
		c.Rungs = append(c.Rungs, Rung{Age: a, Frontier: f})
	}
}

// Low returns the lowest frontier: no future read goes below it.
func (c *Checkpoint) Low() time.Time {
	low := c.Rungs[0].Frontier
	for _, r := range c.Rungs[1:] {
		if r.Frontier.Before(low) {
			low = r.Frontier
		}
	}
	return low
}

// Next returns the first window due at now, lowest rung first, or false.
// Rung i is due once it lags its target (now - settle - age) by a step of
// max(poll, age/4): older slices change rarely, so rescanning them in
// larger windows saves requests while every slice is still re-read between
// its age and 1.25 times it.
func (c *Checkpoint) Next(now time.Time, settle, poll, maxWindow time.Duration) (Window, bool) {
	for i, r := range c.Rungs {
		target := now.Add(-settle - r.Age).Truncate(time.Millisecond)
		step := max(poll, r.Age/4)
		if i == 0 {
			step = time.Nanosecond // rung 0 reads whatever has closed
		}
		if target.Sub(r.Frontier) < step {
			continue
		}
		end := target
		if end.Sub(r.Frontier) > maxWindow {
			end = r.Frontier.Add(maxWindow)
		}
		// No rung reads past rung 0: the restore samples rely on it.
		if i > 0 && end.After(c.Rungs[0].Frontier) {
			end = c.Rungs[0].Frontier
			if !end.After(r.Frontier) {
				continue
			}
		}
		return Window{Rung: i, Start: r.Frontier, End: end}, true
	}
	return Window{}, false
}

// Done records that w was read completely with reading starting at readAt.
// Every rung whose frontier lies inside w moves as far as the read counts
// for it: a slice read at age a also serves every rung of age <= a, so
// after a downtime the top rungs do not re-read what rung 0 just read.
func (c *Checkpoint) Done(w Window, readAt time.Time, settle time.Duration) {
	for i := range c.Rungs {
		r := &c.Rungs[i]
		if r.Frontier.Before(w.Start) || !r.Frontier.Before(w.End) {
			continue
		}
		reach := readAt.Add(-settle - r.Age)
		if w.End.Before(reach) {
			reach = w.End
		}
		if reach.After(r.Frontier) {
			r.Frontier = reach
		}
	}
}

// addSample records the end offsets taken while rung 0 stood at its
// current frontier, and drops samples no restore can need: all but the
// newest one at or below the lowest frontier.
func (c *Checkpoint) addSample(offsets map[int]int64) {
	c.Samples = append(c.Samples, Sample{Frontier: c.Rungs[0].Frontier, Offsets: offsets})
	low := c.Low()
	keep := 0
	for i, s := range c.Samples {
		if !s.Frontier.After(low) {
			keep = i
		}
	}
	c.Samples = c.Samples[keep:]
}

// restoreFrom returns the offsets a restart must read the events topic
// from for this organization: the newest sample at or below the lowest
// frontier. It is nil when there is no sample at all: nothing of the
// organization can be in the topic then, since its first sample is saved
// before its first event is published.
func (c *Checkpoint) restoreFrom() map[int]int64 {
	low := c.Low()
	var best map[int]int64
	for _, s := range c.Samples {
		if !s.Frontier.After(low) {
			best = s.Offsets
		}
	}
	if best == nil && len(c.Samples) > 0 {
		// A rung added below every sample: the oldest sample is the best
		// there is.
		best = c.Samples[0].Offsets
	}
	return best
}

// lastSampleAt returns the rung 0 frontier of the newest sample.
func (c *Checkpoint) lastSampleAt() (time.Time, bool) {
	if len(c.Samples) == 0 {
		return time.Time{}, false
	}
	return c.Samples[len(c.Samples)-1].Frontier, true
}

func (c *Checkpoint) clone() *Checkpoint {
	out := &Checkpoint{Org: c.Org, Rungs: append([]Rung(nil), c.Rungs...), Owner: c.Owner}
	out.Samples = append(out.Samples, c.Samples...) // offsets maps are never mutated after creation
	return out
}
