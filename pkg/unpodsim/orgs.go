package unpodsim

import (
	"net/http"
	"slices"
	"strings"
	"time"
)

// AddOrg starts serving an organization while the simulator runs, with the
// history every organization has: an operator creating one on the
// platform.
func (s *Server) AddOrg(org string) {
	org = strings.TrimSpace(org)
	if org == "" {
		return
	}
	s.orgsMu.Lock()
	defer s.orgsMu.Unlock()
	s.orgs[org] = true
}

// RemoveOrg stops serving an organization: it is no longer listed and its
// call logs answer 404.
func (s *Server) RemoveOrg(org string) {
	s.orgsMu.Lock()
	defer s.orgsMu.Unlock()
	delete(s.orgs, org)
}

func (s *Server) hasOrg(org string) bool {
	s.orgsMu.RLock()
	defer s.orgsMu.RUnlock()
	return s.orgs[org]
}

// Request is one call-logs request served, as Requests reports it.
type Request struct {
	At     time.Time // wall time at which it arrived
	Org    string
	Client string // the X-Callstream-Producer header, else the remote address
}

// maxRequests bounds the request log; older entries are dropped.
const maxRequests = 1 << 20

// record logs a request when Config.RecordRequests is set.
func (s *Server) record(r *http.Request, org string) {
	if !s.cfg.RecordRequests {
		return
	}
	client := r.Header.Get("X-Callstream-Producer")
	if client == "" {
		client = r.RemoteAddr
	}
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	if len(s.reqs) >= maxRequests {
		s.reqs = slices.Delete(s.reqs, 0, len(s.reqs)/2)
	}
	s.reqs = append(s.reqs, Request{At: time.Now(), Org: org, Client: client})
}

// Requests returns the call-logs requests served so far, oldest first
// (with Config.RecordRequests; nil without).
func (s *Server) Requests() []Request {
	s.reqMu.Lock()
	defer s.reqMu.Unlock()
	return slices.Clone(s.reqs)
}
