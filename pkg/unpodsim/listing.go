package unpodsim

import (
	"sync"
	"time"
)

// A page of call logs is a slice of one listing: every version that matches
// the query's filters, newest first. A client pages through the same
// listing a page at a time, so listing afresh for every page would make
// paging a window quadratic: each page of a 50,000-call window would visit
// all 50,000 calls. Since a listing is a pure function of the query and the
// clock, it can be kept for as long as the clock has not reached the next
// change walk reports, and it is then exact, not an approximation.

// maxListings bounds the listings kept (a listing is a pointer per match,
// 400 kB for 50,000); past it the cache starts over.
const maxListings = 16

// listings caches recent listings. The zero value is ready to use.
type listings struct {
	mu sync.Mutex
	m  map[listingKey]*listing
}

// listingKey is a query without its clock. Times are keyed by their
// instant, not by time.Time, whose location pointer differs between parses.
type listingKey struct {
	org                  string
	fromSec, toSec       int64
	fromNsec, toNsec     int
	callType, callStatus string
}

// listing is the result of a query for clock times in [since, until); a
// zero until means for every later time.
type listing struct {
	since, until time.Time
	versions     []*version
}

func keyOf(org string, f filter) listingKey {
	return listingKey{org, f.from.Unix(), f.to.Unix(), f.from.Nanosecond(), f.to.Nanosecond(), f.callType, f.callStatus}
}

// list returns the matching versions for f, newest first. The slice is
// shared with later callers and must not be changed.
func (s *Server) list(org string, f filter) []*version {
	k := keyOf(org, f)
	s.listings.mu.Lock()
	l := s.listings.m[k]
	s.listings.mu.Unlock()
	if l != nil && !f.now.Before(l.since) && (l.until.IsZero() || f.now.Before(l.until)) {
		return l.versions
	}
	l = &listing{since: f.now}
	s.walk(org, f, func(_ *call, v *version) bool {
		l.versions = append(l.versions, v)
		return true
	}, &l.until)
	s.listings.mu.Lock()
	if s.listings.m == nil || len(s.listings.m) >= maxListings {
		s.listings.m = map[listingKey]*listing{}
	}
	s.listings.m[k] = l
	s.listings.mu.Unlock()
	return l.versions
}
