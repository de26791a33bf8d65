package lake

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go/compress"

	"github.com/callstream/callstream/consumers"
	"github.com/callstream/callstream/schemas"
)

// Name is the plug-in's name: its consumer group is callstream-lake.
const Name = "lake"

// Factory returns the lake plug-in's factory for the consumer runtime.
func Factory(cfg Config) consumers.Factory {
	return consumers.Factory{Name: Name, New: func(deps consumers.Deps) (consumers.Plugin, error) {
		return New(cfg, deps)
	}}
}

var errClosed = errors.New("lake: closed")

// errNoPosition refuses a delivery without a bus position: files are named
// by partition and offset, which is what makes a rewrite after a crash
// replace the same file instead of duplicating rows.
var errNoPosition = errors.New("lake: the message has no bus position (partition and offset); the lake needs one")

var (
	_ consumers.BatchHandler = (*Lake)(nil)
	_ consumers.Runner       = (*Lake)(nil)
	_ consumers.Closer       = (*Lake)(nil)
	_ consumers.Tuner        = (*Lake)(nil)
	_ consumers.Flusher      = (*Lake)(nil)
)

// Lake writes call events to Parquet files. It implements
// consumers.BatchHandler, Runner, Closer, Tuner and Flusher. It is safe for
// concurrent use: the runtime hands it several batches at once, each
// waiting until its rows are in renamed files.
type Lake struct {
	cfg     Config
	codec   compress.Codec
	log     *slog.Logger
	metrics *metrics
	now     func() time.Time
	sem     chan struct{} // bounds concurrent file writes
	retry   string        // the lake's retry topic: its files are tagged retryTag

	// noIndex turns off the skip of offsets already in renamed files. Only
	// tests set it, to show that the crash tests catch the duplicates the
	// index prevents.
	noIndex bool

	mu       sync.Mutex
	parts    map[partKey]*partState
	writing  map[*openFile]struct{} // handed to a writer, not yet renamed or failed
	openRows int                    // rows in files still open
	closed   bool
}

// partKey names a partition of one of the lake's sources: the calls topic
// (tag "") or its retry topic (retryTag), whose offsets are their own.
type partKey struct {
	tag       string
	partition int32
}

func (k partKey) String() string { return k.tag + strconv.Itoa(int(k.partition)) }

// partState is what the lake knows about one partition.
type partState struct {
	key   partKey
	topic string
	open  map[dirKey]*openFile
	// pending holds the offsets in files not yet renamed, so a redelivery
	// of one waits for that file instead of writing the event twice.
	pending map[int64]*openFile
	// covered holds the offsets in renamed files, complete for offsets at
	// or above floor. An offset there is acknowledged without being written.
	covered map[int64]struct{}
	floor   int64
	pruneAt int // covered size that triggers the next prune
	files   []*fileRef
	// forgotFiles says prune dropped files below floor from files.
	forgotFiles bool
}

// fileRef is a renamed file of a partition.
type fileRef struct {
	path    string
	first   int64
	last    int64 // -1 until its footer was read
	indexed bool  // its offsets are in covered
}

// openFile collects the rows of one partition bound for one directory.
type openFile struct {
	part               *partState
	key                dirKey
	rows               []Row
	bytes              int64
	minT, maxT         time.Time
	opened, lastAppend time.Time
	done               chan struct{} // closed once the file is renamed or failed
	err                error         // set before done is closed
}

// New builds the lake plug-in and lists the files already in its directory.
func New(cfg Config, deps consumers.Deps) (*Lake, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c, err := codec(cfg.Compression)
	if err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m, err := newMetrics(deps.Registerer)
	if err != nil {
		return nil, err
	}
	l := &Lake{
		cfg: cfg, codec: c, log: log.With("plugin", Name), metrics: m, now: time.Now,
		sem: make(chan struct{}, cfg.FlushWorkers), retry: deps.Topics.Retry(Name),
		parts: make(map[partKey]*partState), writing: make(map[*openFile]struct{}),
	}
	if err := l.scan(); err != nil {
		return nil, err
	}
	return l, nil
}

// Name implements consumers.Plugin.
func (l *Lake) Name() string { return Name }

// Tuning asks for twice as many unacknowledged messages as the open files
// may hold, in batches handled concurrently: HandleBatch returns only once
// its rows are in renamed files, so while files fill, and while full ones
// are written, later batches must be handed over too. With only the open
// files' worth, the bus stalled while files were written: make bench
// measured 41k events/s through the runtime, against 105-115k with twice.
func (l *Lake) Tuning() consumers.Tuning {
	size := min(1000, l.cfg.MaxBufferedRows)
	return consumers.Tuning{
		MaxInFlight: 2 * l.cfg.MaxBufferedRows, BatchSize: size,
		Concurrency: max(1, 2*l.cfg.MaxBufferedRows/size-1),
	}
}

// part returns the state of a partition, creating it; l.mu is held.
func (l *Lake) part(k partKey) *partState {
	p := l.parts[k]
	if p == nil {
		p = &partState{
			key: k, open: make(map[dirKey]*openFile), pending: make(map[int64]*openFile),
			covered: make(map[int64]struct{}), floor: math.MaxInt64,
		}
		l.parts[k] = p
	}
	return p
}

// keyOf tells the lake's two sources apart.
func (l *Lake) keyOf(pos schemas.Position) partKey {
	if pos.Topic == l.retry {
		return partKey{tag: retryTag, partition: pos.Partition}
	}
	return partKey{partition: pos.Partition}
}

// HandleBatch appends each event to its partition's open file for its
// directory and returns once those files are renamed into place, so the
// runtime acknowledges a message (and the bus commits its offset) only when
// the event is durable. An event whose offset is already in a renamed file
// is acknowledged at once: it is a redelivery after a crash. A file that
// cannot be written fails its events as transient (the disk, not the
// events, is at fault): they are handed over again.
func (l *Lake) HandleBatch(ctx context.Context, batch []consumers.Delivery) error {
	var errs consumers.ItemErrors
	fail := func(i int, err error) {
		if errs == nil {
			errs = consumers.ItemErrors{}
		}
		errs[i] = err
	}
	files := make([]*openFile, len(batch))
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errClosed
	}
	for i := range batch {
		d := &batch[i]
		if !d.HasPosition {
			fail(i, consumers.Permanent(errNoPosition))
			continue
		}
		p := l.part(l.keyOf(d.Position))
		if p.topic == "" {
			p.topic = d.Position.Topic
		}
		off := d.Position.Offset
		if !l.noIndex {
			l.ensureIndexed(p, off)
			if _, ok := p.covered[off]; ok {
				l.metrics.skipped.Inc()
				continue
			}
		}
		f, ok := p.pending[off]
		if !ok {
			f = l.append(p, d.Event.Org, rowOf(&d.Event, d.Position.Partition, off))
		}
		files[i] = f
	}
	l.mu.Unlock()
	for i, f := range files {
		if f == nil {
			continue
		}
		select {
		case <-f.done:
			if f.err != nil {
				fail(i, consumers.Transient(f.err))
			}
		case <-ctx.Done():
			// The rows stay in their files; a redelivery finds them
			// pending or covered.
			return ctx.Err()
		}
	}
	if errs != nil {
		return &errs
	}
	return nil
}

// Handle is HandleBatch for one event.
func (l *Lake) Handle(ctx context.Context, d consumers.Delivery) error {
	err := l.HandleBatch(ctx, []consumers.Delivery{d})
	var items *consumers.ItemErrors
	if errors.As(err, &items) {
		return (*items)[0]
	}
	return err
}

// append adds a row to its open file, rotating on event-time span, rows and
// bytes; l.mu is held.
func (l *Lake) append(p *partState, org string, row Row) *openFile {
	key := keyOf(org, row.CreationTime, l.cfg.HourPartition)
	f := p.open[key]
	if f != nil && f.span(row.CreationTime) > l.cfg.MaxFileSpan {
		l.startFlush(f)
		f = nil
	}
	now := l.now()
	if f == nil {
		f = &openFile{part: p, key: key, opened: now, minT: row.CreationTime, maxT: row.CreationTime, done: make(chan struct{})}
		p.open[key] = f
	}
	f.rows = append(f.rows, row)
	f.bytes += row.size()
	f.lastAppend = now
	f.minT = minTime(f.minT, row.CreationTime)
	f.maxT = maxTime(f.maxT, row.CreationTime)
	p.pending[row.KafkaOffset] = f
	l.openRows++
	switch {
	case len(f.rows) >= l.cfg.MaxFileRows || f.bytes >= l.cfg.MaxFileBytes:
		l.startFlush(f)
	case l.openRows >= l.cfg.MaxBufferedRows/2:
		// Half the in-flight budget sits in open files: write the biggest
		// so the bus never stalls waiting for acknowledgements, and leave
		// small ones to grow (or to age out).
		l.relievePressure()
	}
	return f
}

// relievePressure writes the biggest open files until at most a quarter of
// the in-flight budget remains in open files; l.mu is held.
func (l *Lake) relievePressure() {
	var open []*openFile
	for _, p := range l.parts {
		for _, f := range p.open {
			open = append(open, f)
		}
	}
	slices.SortFunc(open, func(a, b *openFile) int { return len(b.rows) - len(a.rows) })
	for _, f := range open {
		if l.openRows <= l.cfg.MaxBufferedRows/4 {
			return
		}
		l.startFlush(f)
	}
}

func (f *openFile) span(t time.Time) time.Duration {
	return maxTime(f.maxT, t).Sub(minTime(f.minT, t))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// startFlush hands an open file to a writer goroutine; l.mu is held.
func (l *Lake) startFlush(f *openFile) {
	delete(f.part.open, f.key)
	l.openRows -= len(f.rows)
	l.writing[f] = struct{}{}
	go l.flush(f)
}

// flushAll starts writing every open file; l.mu is held.
func (l *Lake) flushAll() {
	for _, p := range l.parts {
		for _, f := range p.open {
			l.startFlush(f)
		}
	}
}

// flush writes one file and wakes the handlers waiting for it.
func (l *Lake) flush(f *openFile) {
	l.sem <- struct{}{}
	defer func() { <-l.sem }()

	start := time.Now()
	p := f.part
	slices.SortFunc(f.rows, func(a, b Row) int { return cmpInt64(a.KafkaOffset, b.KafkaOffset) })
	spec := fileSpec{
		root: l.cfg.Dir, dir: f.key.path(), name: fileName(p.key, f.rows[0].KafkaOffset),
		topic: p.topic, partition: p.key.partition, codec: l.codec, rowGroupRows: l.cfg.RowGroupRows,
	}
	size, replaced, err := writeFile(spec, f.rows)
	if replaced {
		// Only possible when the index is wrong or the topic was recreated
		// into the same root: say so loudly.
		l.log.Warn("lake: replaced an existing file of the same name", "dir", spec.dir, "file", spec.name)
	}

	l.mu.Lock()
	delete(l.writing, f)
	for i := range f.rows {
		delete(p.pending, f.rows[i].KafkaOffset)
	}
	if err == nil {
		for i := range f.rows {
			p.covered[f.rows[i].KafkaOffset] = struct{}{}
		}
		p.files = append(p.files, &fileRef{
			path: filepath.Join(spec.root, spec.dir, spec.name), first: f.rows[0].KafkaOffset,
			last: f.rows[len(f.rows)-1].KafkaOffset, indexed: true,
		})
		l.prune(p)
	}
	l.mu.Unlock()

	if err != nil {
		l.metrics.flushErrors.Inc()
		l.log.Error("lake: write file failed; its events will be redelivered", "dir", spec.dir, "file", spec.name, "rows", len(f.rows), "err", err)
	} else {
		l.metrics.files.Inc()
		l.metrics.rows.Add(float64(len(f.rows)))
		l.metrics.bytes.Add(float64(size))
		l.metrics.flushSeconds.Observe(time.Since(start).Seconds())
	}
	f.err = err
	close(f.done)
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Run closes files that stayed open too long: idle ones after IdleClose,
// busy ones after MaxFileAge, so every event is acknowledged in bounded time.
func (l *Lake) Run(ctx context.Context) error {
	t := time.NewTicker(expiryTick(l.cfg.IdleClose, l.cfg.MaxFileAge))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			l.closeExpired()
		}
	}
}

// expiryTick is how often Run looks for expired files: a quarter of the
// shorter timeout, so a file closes at most a quarter late, but no more
// often than every 10 ms (a busy loop for tiny settings) and at least every
// second.
func expiryTick(idle, age time.Duration) time.Duration {
	return min(max(min(idle, age)/4, 10*time.Millisecond), time.Second)
}

func (l *Lake) closeExpired() {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.parts {
		for _, f := range p.open {
			if now.Sub(f.lastAppend) >= l.cfg.IdleClose || now.Sub(f.opened) >= l.cfg.MaxFileAge {
				l.startFlush(f)
			}
		}
	}
}

// Flush writes every open file and waits until all files are renamed. The
// runtime calls it when shutdown begins, so the batches waiting on open
// files return (and their messages are acknowledged) at once.
func (l *Lake) Flush() {
	l.mu.Lock()
	l.flushAll()
	l.mu.Unlock()
	l.waitWriting()
}

// Close writes the open files and waits for every write to finish. Rows of
// messages never acknowledged are written too; their redelivery finds them
// covered and writes nothing.
func (l *Lake) Close() error {
	l.mu.Lock()
	l.closed = true
	l.flushAll()
	l.mu.Unlock()
	l.waitWriting()
	return nil
}

// waitWriting waits for the files being written when it is called.
func (l *Lake) waitWriting() {
	l.mu.Lock()
	done := make([]chan struct{}, 0, len(l.writing))
	for f := range l.writing {
		done = append(done, f.done)
	}
	l.mu.Unlock()
	for _, ch := range done {
		<-ch
	}
}
