package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

// OwnerConfig configures a GroupOwner.
type OwnerConfig struct {
	Group      string // the consumer group every producer joins (required)
	Topic      string // the compacted topic whose partitions are owned (required)
	Partitions int    // partitions of Topic when it is created; it bounds the useful number of members
	// SessionTimeout is how long the coordinator waits for a silent member
	// before it gives its partitions to the others; HeartbeatInterval is a
	// third of it.
	SessionTimeout time.Duration
	// RebalanceTimeout is how long the coordinator waits for every member
	// to give up its partitions and rejoin.
	RebalanceTimeout time.Duration
	Logger           *slog.Logger
}

// GroupOwner shares the partitions of a topic between the members of a
// Kafka consumer group, one owner each: the producers use it to own
// organizations, each organization mapped to one partition by Partition.
// It consumes nothing; the group protocol's membership, assignment and
// generations are what it uses.
type GroupOwner struct {
	cfg    Config
	oc     OwnerConfig
	client *kafka.Client
	log    *slog.Logger
}

// NewGroupOwner creates the topic when missing and returns an owner that
// joins the group when Run is called.
func NewGroupOwner(ctx context.Context, cfg Config, oc OwnerConfig) (*GroupOwner, error) {
	switch {
	case oc.Group == "":
		return nil, errors.New("kafkabus: ownership: no consumer group")
	case oc.Topic == "":
		return nil, errors.New("kafkabus: ownership: no topic")
	case oc.SessionTimeout < 3*time.Second:
		return nil, fmt.Errorf("kafkabus: ownership: session timeout %s: want at least 3s", oc.SessionTimeout)
	case oc.RebalanceTimeout <= 0:
		return nil, fmt.Errorf("kafkabus: ownership: rebalance timeout %s: want a positive duration", oc.RebalanceTimeout)
	}
	err := EnsureTopic(ctx, cfg, TopicSpec{
		Name: oc.Topic, Partitions: oc.Partitions,
		Configs: map[string]string{"cleanup.policy": "compact"},
	})
	if err != nil {
		return nil, fmt.Errorf("kafkabus: ownership topic: %w", err)
	}
	client, err := cfg.Client()
	if err != nil {
		return nil, err
	}
	if oc.Logger == nil {
		oc.Logger = slog.New(slog.DiscardHandler)
	}
	return &GroupOwner{cfg: cfg, oc: oc, client: client, log: oc.Logger}, nil
}

// Partition returns the partition of key among n partitions: murmur2, as
// Kafka's Java client and kafka-go's Murmur2Balancer place a keyed record.
func Partition(key string, n int) int {
	ids := make([]int, n)
	for i := range ids {
		ids[i] = i
	}
	return kafka.Murmur2Balancer{Consistent: true}.Balance(kafka.Message{Key: []byte(key)}, ids...)
}

// Run joins the group and, for every generation, calls hold with a Lease
// on the partitions assigned to this member and a context that ends when
// the generation does (a rebalance, a lost coordinator, a failed Check).
// The member rejoins only after hold returned, so what hold does on the
// way out happens before any other member gets the partitions, as long as
// it takes less than RebalanceTimeout. Run returns when ctx ends, after
// leaving the group.
func (o *GroupOwner) Run(ctx context.Context, hold func(context.Context, *Lease)) error {
	dialer, err := o.cfg.Dialer()
	if err != nil {
		return err
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: o.oc.Group, Brokers: o.cfg.Brokers, Dialer: dialer, Topics: []string{o.oc.Topic},
		HeartbeatInterval: o.oc.SessionTimeout / 3, SessionTimeout: o.oc.SessionTimeout,
		RebalanceTimeout: o.oc.RebalanceTimeout, JoinGroupBackoff: time.Second,
		WatchPartitionChanges: true, PartitionWatchInterval: 30 * time.Second,
		Timeout: 10 * time.Second,
	})
	if err != nil {
		return fmt.Errorf("kafkabus: ownership group %s: %w", o.oc.Group, err)
	}
	defer cg.Close()
	for {
		gen, err := cg.Next(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			// Joining failed (a broker restart, a coordinator moving): the
			// group retries by itself after JoinGroupBackoff.
			o.log.Warn("joining the ownership group failed; retrying", "group", o.oc.Group, "err", err.Error())
			continue
		}
		n, err := o.partitionCount(ctx)
		if err != nil {
			o.log.Warn("reading the partition count of the ownership topic failed; rejoining", "topic", o.oc.Topic, "err", err.Error())
			gen.Start(func(context.Context) {}) // ends the generation
			continue
		}
		l := &Lease{owner: o, gen: gen, n: n}
		for _, a := range gen.Assignments[o.oc.Topic] {
			l.parts = append(l.parts, a.ID)
		}
		slices.Sort(l.parts)
		done := make(chan struct{})
		gen.Start(func(gctx context.Context) {
			defer close(done)
			lctx, cancel := context.WithCancel(ctx)
			defer cancel()
			l.cancel, l.ctx = cancel, lctx
			stop := context.AfterFunc(gctx, cancel)
			defer stop()
			hold(lctx, l)
		})
		// Next blocks until the next generation, which starts only after
		// hold returned; waiting here keeps a single hold at a time even
		// when ctx ends.
		select {
		case <-done:
		case <-ctx.Done():
			<-done
			return nil
		}
	}
}

func (o *GroupOwner) partitionCount(ctx context.Context) (int, error) {
	ids, err := PartitionIDs(ctx, o.cfg, o.oc.Topic)
	if err != nil {
		return 0, err
	}
	return len(ids), nil
}

// Close releases the owner's connections.
func (o *GroupOwner) Close() error {
	closeIdle(o.client)
	return nil
}

// Lease is one generation's assignment to this member.
type Lease struct {
	owner  *GroupOwner
	gen    *kafka.Generation
	parts  []int
	n      int
	cancel context.CancelFunc
	ctx    context.Context // ends with the generation

	mu    sync.Mutex
	coord net.Addr
	err   error // set once the generation is known to be over
}

// Generation returns the generation id the coordinator gave this
// assignment; a later generation has a higher one.
func (l *Lease) Generation() int64 { return int64(l.gen.ID) }

// Partitions returns the assigned partitions, in order.
func (l *Lease) Partitions() []int { return slices.Clone(l.parts) }

// Owns reports whether key's partition is assigned to this member.
func (l *Lease) Owns(key string) bool {
	if l.n == 0 {
		return false
	}
	_, ok := slices.BinarySearch(l.parts, Partition(key, l.n))
	return ok
}

// String describes the lease for logs.
func (l *Lease) String() string {
	ps := make([]string, len(l.parts))
	for i, p := range l.parts {
		ps[i] = strconv.Itoa(p)
	}
	return fmt.Sprintf("generation %d, member %s, partitions [%s] of %d", l.gen.ID, l.gen.MemberID, strings.Join(ps, ","), l.n)
}

// ErrLeaseLost is returned by Check once this member no longer holds its
// generation.
var ErrLeaseLost = errors.New("kafkabus: the ownership lease was lost")

// Check asks the coordinator, with a heartbeat of this generation, whether
// this member still holds it, and returns the moment the heartbeat was
// sent: the earliest the coordinator could have renewed the session, so the
// generation holds at least until that moment plus the session timeout. A
// refusal ends the lease (its context is cancelled, so the member rejoins)
// and is returned. Every call asks: a confirmation remembered from before a
// pause of the process (GC, SIGSTOP) would vouch for a generation that
// ended during it, and a cache of a third of the session timeout let a
// resumed owner publish in TestProducerGroupChaos.
func (l *Lease) Check(ctx context.Context) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return time.Time{}, l.err
	}
	if l.ctx != nil && l.ctx.Err() != nil {
		return time.Time{}, fmt.Errorf("%w: generation %d of group %s ended", ErrLeaseLost, l.gen.ID, l.gen.GroupID)
	}
	asked := time.Now()
	err := l.heartbeat(ctx)
	if err == nil {
		return asked, nil
	}
	if ctx.Err() != nil {
		return time.Time{}, fmt.Errorf("%w: %v", ErrLeaseLost, ctx.Err())
	}
	if generationOver(err) {
		// The coordinator answered: the generation is over.
		l.err = fmt.Errorf("%w: generation %d of group %s: %v", ErrLeaseLost, l.gen.ID, l.gen.GroupID, err)
		if l.cancel != nil {
			l.cancel()
		}
		return time.Time{}, l.err
	}
	// Unreachable coordinator: the generation cannot be confirmed, so it is
	// not used, but it may still hold; the next Check asks again.
	l.coord = nil
	return time.Time{}, fmt.Errorf("%w: generation %d of group %s not confirmed: %v", ErrLeaseLost, l.gen.ID, l.gen.GroupID, err)
}

func (l *Lease) heartbeat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c := l.owner.client
	if l.coord == nil {
		res, err := c.FindCoordinator(ctx, &kafka.FindCoordinatorRequest{Key: l.gen.GroupID, KeyType: kafka.CoordinatorKeyTypeConsumer})
		if err == nil && res.Error != nil {
			err = res.Error
		}
		if err != nil {
			return fmt.Errorf("find the coordinator: %w", err)
		}
		l.coord = kafka.TCP(net.JoinHostPort(res.Coordinator.Host, strconv.Itoa(res.Coordinator.Port)))
	}
	res, err := c.Heartbeat(ctx, &kafka.HeartbeatRequest{Addr: l.coord, GroupID: l.gen.GroupID, GenerationID: l.gen.ID, MemberID: l.gen.MemberID})
	if err != nil {
		return err
	}
	return res.Error
}

// generationOver reports whether a heartbeat's error says this member's
// generation ended, as opposed to a coordinator that could not answer.
func generationOver(err error) bool {
	return errors.Is(err, kafka.RebalanceInProgress) || errors.Is(err, kafka.IllegalGeneration) ||
		errors.Is(err, kafka.UnknownMemberId) || errors.Is(err, kafka.FencedInstanceID)
}
