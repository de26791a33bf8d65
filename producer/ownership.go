package producer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Ownership decides which organizations this producer polls, so that
// several producers share them with one owner each; kafkabus.GroupOwner
// does it with a Kafka consumer group. Without one (Deps.Ownership nil)
// the producer owns every organization, as in embedded mode.
type Ownership interface {
	// Run takes part until ctx ends. For each assignment it calls hold with
	// the Lease describing it and a context that ends when the assignment
	// is revoked; the next assignment waits for hold to return, so the
	// producer stops and saves the organizations it loses before another
	// producer gets them.
	Run(ctx context.Context, hold func(ctx context.Context, l Lease)) error
}

// Lease is one assignment of organizations to this producer.
type Lease interface {
	// Generation identifies the assignment; a later one has a higher number.
	Generation() int64
	// Owns reports whether org belongs to this assignment.
	Owns(org string) bool
	// Check returns an error once the assignment may no longer hold: the
	// fence checked before each batch is published. While it holds, Check
	// returns the moment it was confirmed (the assignment holds at least
	// until then plus the session timeout); the batch's records carry it
	// (schemas.FencedAtMetadata), so that a bus which refuses late records
	// refuses the batch of an owner paused past its assignment.
	Check(ctx context.Context) (time.Time, error)
	// String describes the assignment for logs.
	String() string
}

// everything is the lease of a producer without Ownership.
type everything struct{}

func (everything) Generation() int64                        { return 0 }
func (everything) Owns(string) bool                         { return true }
func (everything) Check(context.Context) (time.Time, error) { return time.Time{}, nil }
func (everything) String() string                           { return "every organization" }

type soleOwner struct{}

func (soleOwner) Run(ctx context.Context, hold func(context.Context, Lease)) error {
	hold(ctx, everything{})
	return nil
}

// ownState is what the producer knows of its assignment.
type ownState struct {
	mu     sync.Mutex
	leases map[string]Lease // owned organizations and the lease they are held under
	held   bool             // a lease was received at least once
	gen    int64
}

func (o *ownState) set(org string, l Lease) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.leases == nil {
		o.leases = map[string]Lease{}
	}
	if l == nil {
		delete(o.leases, org)
		return
	}
	o.leases[org] = l
}

func (o *ownState) lease(org string) Lease {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.leases[org]
}

// Owned returns the organizations this producer polls now, in order.
func (p *Producer) Owned() []string {
	p.own.mu.Lock()
	defer p.own.mu.Unlock()
	out := make([]string, 0, len(p.own.leases))
	for org := range p.own.leases {
		out = append(out, org)
	}
	slices.Sort(out)
	return out
}

// Ownership reports the current assignment for the operator: its
// generation and the organizations owned.
func (p *Producer) Ownership() map[string]any {
	p.own.mu.Lock()
	gen, held := p.own.gen, p.own.held
	p.own.mu.Unlock()
	return map[string]any{"generation": gen, "assigned": held, "owned_orgs": p.Owned(), "shared": p.deps.Ownership != nil}
}

// standby reports whether this producer shares the organizations and owns
// none right now: it is ready, waiting to take some over.
func (p *Producer) standby() bool {
	// held is only ever set by the ownership loop, so a producer without
	// an Ownership is never a standby.
	p.own.mu.Lock()
	defer p.own.mu.Unlock()
	return p.own.held && len(p.own.leases) == 0
}

// Run polls the organizations it owns until ctx ends, then finishes the
// batch in flight, saves the checkpoint and returns. It returns early only
// when no organization can be polled at all.
func (p *Producer) Run(ctx context.Context) error {
	own := p.deps.Ownership
	if own == nil {
		// The sole owner restores everything at once; a shared producer
		// restores each organization when it is assigned (claim).
		if err := p.restore(ctx); err != nil {
			return err
		}
		own = soleOwner{}
	}
	orgs, err := p.orgs(ctx)
	if err != nil {
		return err
	}
	p.known.set(orgs)
	p.log.Info("producer started", "orgs", orgs, "topic", p.deps.Topic, "remembered_calls", p.mem.Len(), "shared", p.deps.Ownership != nil,
		"rescan_ages", fmt.Sprint(p.cfg.RescanAges), "settle_lag", p.cfg.SettleLag.String(), "sim_clock", p.clock.String())
	bgCtx, stopBg := context.WithCancel(ctx)
	var bg sync.WaitGroup
	bg.Add(2)
	go func() { defer bg.Done(); p.discover(bgCtx) }()
	go func() { defer bg.Done(); p.saveLoop(bgCtx) }()
	if p.deps.Ownership == nil {
		// The periodic audit covers a fixed list of organizations whose
		// checkpoints this producer holds: only a sole owner runs it.
		bg.Add(1)
		go func() { defer bg.Done(); p.auditLoop(bgCtx, orgs) }()
	} else if p.cfg.AuditInterval > 0 {
		p.log.Info("periodic audit off: the organizations are shared with other producers")
	}
	runErr := own.Run(ctx, p.hold)
	stopBg()
	bg.Wait()
	// The organizations stopped between batches; the final save must
	// happen even though ctx is done.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := p.save(sctx); err != nil {
		return fmt.Errorf("producer: final state save: %w", err)
	}
	p.log.Info("producer stopped, state saved", "published", p.published.Load(), "remembered_calls", p.mem.Len())
	if runErr != nil && ctx.Err() == nil {
		return fmt.Errorf("producer: ownership: %w", runErr)
	}
	return nil
}

func (p *Producer) saveLoop(ctx context.Context) {
	save := time.NewTicker(p.cfg.SaveInterval)
	defer save.Stop()
	lastEvict := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-save.C:
			if err := p.save(ctx); err != nil && ctx.Err() == nil {
				p.log.Error("saving producer state failed; will retry", "err", err.Error())
			}
			if time.Since(lastEvict) > time.Minute {
				p.evict()
				lastEvict = time.Now()
			}
		}
	}
}

// orgRun is one running organization loop.
type orgRun struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// hold polls the known organizations that l owns until ctx ends, following
// the organization list as discovery changes it; on the way out every loop
// has stopped and, when shared, every organization is saved and dropped.
func (p *Producer) hold(ctx context.Context, l Lease) {
	shared := p.deps.Ownership != nil
	p.own.mu.Lock()
	p.own.held, p.own.gen = true, l.Generation()
	p.own.mu.Unlock()
	if shared {
		p.om.rebalances.Inc()
		p.log.Info("organizations assigned", "lease", l.String())
	}
	running := map[string]*orgRun{}
	stop := func(orgs []string) {
		for _, org := range orgs {
			running[org].cancel()
		}
		for _, org := range orgs {
			<-running[org].done
			delete(running, org)
			p.own.set(org, nil)
		}
		if shared && len(orgs) > 0 {
			p.release(orgs)
		} else if ctx.Err() == nil {
			for _, org := range orgs { // vanished from the list: no longer reported
				p.sources.forget(org)
				p.m.forget(org)
			}
		}
		p.om.owned.Set(float64(len(running)))
	}
	retry := time.NewTimer(0)
	<-retry.C
	for {
		known, changed := p.known.get()
		var add, drop []string
		for _, org := range known {
			if _, ok := running[org]; !ok && l.Owns(org) {
				add = append(add, org)
			}
		}
		for org := range running {
			if !slices.Contains(known, org) {
				drop = append(drop, org)
			}
		}
		stop(drop)
		if len(add) > 0 {
			err := error(nil)
			if shared {
				err = p.claim(ctx, add, l)
			}
			switch {
			case ctx.Err() != nil:
			case err != nil:
				p.log.Error("restoring assigned organizations failed; retrying", "orgs", add, "err", err.Error())
				retry.Reset(p.clock.Wall(p.cfg.OrgBackoff))
			default:
				for _, org := range add {
					octx, cancel := context.WithCancel(ctx)
					r := &orgRun{cancel: cancel, done: make(chan struct{})}
					running[org] = r
					p.own.set(org, l)
					go func() {
						defer close(r.done)
						p.orgLoop(octx, org)
					}()
				}
			}
		}
		p.om.owned.Set(float64(len(running)))
		select {
		case <-ctx.Done():
			retry.Stop()
			all := make([]string, 0, len(running))
			for org := range running {
				all = append(all, org)
			}
			stop(all)
			if shared {
				p.log.Info("organizations revoked, state saved", "lease", l.String(), "orgs", len(all))
			}
			return
		case <-changed:
		case <-retry.C:
		}
	}
}

// claim prepares organizations just assigned: their checkpoints from the
// store (what the previous owner saved last), then the events topic read
// back from their samples, so the memory holds whatever the previous
// owner published, saved or not.
func (p *Producer) claim(ctx context.Context, orgs []string, l Lease) error {
	st, err := p.deps.Store.Load(ctx)
	if err != nil {
		return err
	}
	var from map[int]int64
	only := make(map[string]bool, len(orgs))
	p.mu.Lock()
	for _, org := range orgs {
		only[org] = true
		delete(p.resync, org)
		p.dead.evict(org, ^uint32(0))
		cp := st.Orgs[org]
		if cp == nil {
			// A new organization starts at the lookback (as in checkpoint).
			cp = newCheckpoint(org, p.cfg.RescanAges, p.now().Add(-p.cfg.SettleLag-p.cfg.Lookback).Truncate(time.Second))
		}
		cp.align(p.cfg.RescanAges, cp.Low())
		if err := p.dead.decode(org, cp.DeadLetters); err != nil {
			p.mu.Unlock()
			return err
		}
		if cp.Owner > l.Generation() {
			p.log.Warn("the saved state of an organization was written under a later generation than this producer's",
				"org", org, "saved_generation", cp.Owner, "lease", l.String())
		}
		cp.DeadLetters, cp.Owner = nil, l.Generation()
		p.cps[org] = cp
		p.dirty = true
		if r := cp.restoreFrom(); r != nil {
			from = minOffsets(from, minOffsets(r, st.Offsets))
		}
	}
	p.mu.Unlock()
	if from == nil || p.deps.EventLog == nil {
		return nil
	}
	start := time.Now()
	n, err := p.readBackOrgs(ctx, from, only)
	if err != nil {
		return fmt.Errorf("producer: read back %s for assigned organizations: %w", p.deps.Topic, err)
	}
	p.log.Info("assigned organizations restored from the events topic", "orgs", orgs, "events", n,
		"took", time.Since(start).Round(time.Millisecond).String())
	return nil
}

// readBackOrgs is readBack for a set of organizations.
func (p *Producer) readBackOrgs(ctx context.Context, from map[int]int64, only map[string]bool) (int, error) {
	n := 0
	var e topicEntry
	err := p.deps.EventLog.ReadFrom(ctx, from, func(value []byte) error {
		if !scanEvent(value, &e) && decodeEntry(value, &e) != nil {
			return nil // not a call event: the sole owner's restore reports those
		}
		c := &e.content
		if len(c.callKey) == 0 || e.revision < 1 || !only[string(c.org)] {
			return nil
		}
		p.mem.commit(keyOf(c.org, c.callKey), memEntry{hash: c.hash(), revision: uint32(e.revision), minute: unixMinute(c.creation)})
		n++
		return nil
	})
	p.m.restoredCalls.Add(float64(n))
	p.m.remembered.Set(float64(p.mem.Len()))
	return n, err
}

// release saves organizations this producer stopped polling and forgets
// them, in one step with respect to other saves, so that no later save of
// this producer overwrites what their next owner saves. A save that fails
// is retried for a while: giving up leaves the older checkpoint, from which
// the next owner reads more back, which is safe.
func (p *Producer) release(orgs []string) {
	p.saveMu.Lock()
	defer p.saveMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		p.mu.Lock()
		p.dirty = true
		p.mu.Unlock()
		err := p.saveLocked(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			p.log.Error("saving the state of revoked organizations failed; their next owner starts from the previous save",
				"orgs", orgs, "err", err.Error())
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.mu.Lock()
	for _, org := range orgs {
		delete(p.cps, org)
		delete(p.resync, org)
	}
	p.mu.Unlock()
	for _, org := range orgs {
		p.dead.evict(org, ^uint32(0))
		p.sources.forget(org)
		p.m.forget(org)
	}
}

func (s *sources) forget(org string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.last, org)
}

// errFenced marks a batch not published because this producer may no
// longer own its organization.
var errFenced = errors.New("producer: organization no longer owned")

// fence is checked before each batch: the organization's loop must still
// run under a lease the coordinator confirms (see One owner per
// organization in the package documentation). It returns the moment of that
// confirmation; zero without Ownership.
func (p *Producer) fence(ctx context.Context, org string) (time.Time, error) {
	if p.deps.Ownership == nil {
		return time.Time{}, nil
	}
	if err := ctx.Err(); err != nil {
		return time.Time{}, fmt.Errorf("%w: org %s: %v", errFenced, org, err)
	}
	l := p.own.lease(org)
	if l == nil {
		return time.Time{}, fmt.Errorf("%w: org %s has no lease", errFenced, org)
	}
	at, err := l.Check(ctx)
	if err != nil {
		p.om.fenced.Inc()
		return time.Time{}, fmt.Errorf("%w: org %s: %v", errFenced, org, err)
	}
	return at, nil
}
