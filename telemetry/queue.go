package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd-dev/agentd/internal/logging"
)

// DefaultQueueSize is the default bound, in bytes of encoded OTLP requests,
// of the export queue (config export.queue_size): at 100 containers a round
// of metrics is about 100 KB, so 32 MiB hold several hours of metrics, or
// an hour at 1,000 containers, and events besides.
const DefaultQueueSize = 32 << 20

// Signals of the export queue: the signal attribute of agentd.export.dropped.
const (
	SignalMetrics = "metrics"
	SignalEvents  = "events"
)

// Reasons of agentd.export.dropped.
const (
	// DropQueueFull: the request did not fit in the queue.
	DropQueueFull = "queue_full"
	// DropRejected: the collector refused it for good (a non-retryable
	// status, or rejected points or records of a partial success).
	DropRejected = "rejected"
	// DropShutdown: it was still queued in memory when agentd stopped (no
	// disk queue).
	DropShutdown = "shutdown"
	// DropCorrupt: a file of the disk queue could not be read back.
	DropCorrupt = "corrupt"
)

// ErrQueueFull is returned by Queue.Put for a request that does not fit.
var ErrQueueFull = errors.New("export queue full")

// dropLogInterval is how often at most the queue logs what it dropped.
const dropLogInterval = time.Minute

// Queue holds encoded OTLP export requests (metrics and events) until a
// sender has delivered them. It is bounded by the bytes it holds, shared by
// the signals; each signal's requests go out in the order they were put.
// A request that does not fit is refused and counted, never one already
// queued. With a directory (NewQueue's dir) every request is also written
// there until it is delivered, so a restarted agentd sends what the last
// one could not. Safe for concurrent use.
type Queue struct {
	max  int64
	disk *diskQueue // nil: memory only
	log  *slog.Logger
	// onResult, when set, learns the outcome of every delivery attempt.
	onResult atomic.Pointer[func(signal string, bytes int, err error)]

	mu       sync.Mutex
	items    map[string][]*queued
	bytes    int64
	peak     int64
	wake     map[string]chan struct{} // closed when the signal gets an item
	dropped  map[dropKey]int64
	unlogged map[dropKey]int64 // dropped since the last log line
	loggedAt time.Time
	// spare holds the buffers of delivered metrics requests for the next
	// rounds' (lend): at 1,000 containers a round is about 4 MB.
	spare [][]byte
}

// maxSpareBuffers bounds Queue.spare: the requests of a round at 2,000
// containers (128 resources a request).
const maxSpareBuffers = 16

// queued is one encoded request.
type queued struct {
	signal string
	data   []byte
	file   string // its file in the disk queue, "" when none
}

type dropKey struct{ signal, reason string }

// QueueStats is a snapshot of a Queue.
type QueueStats struct {
	// Bytes queued now, and the most there were.
	Bytes, PeakBytes int64
	// Requests queued now, by signal.
	Requests map[string]int
	// Dropped counts the requests dropped, by signal and reason.
	Dropped map[[2]string]int64
}

// NewQueue returns a queue of at most max bytes (0: DefaultQueueSize). With
// dir not empty, requests are kept in files there too, and the files a
// previous run left are queued again first (see diskQueue); a file that
// cannot be read back is moved aside as NAME.corrupt, logged and counted.
func NewQueue(max int64, dir string, log *slog.Logger) (*Queue, error) {
	if max <= 0 {
		max = DefaultQueueSize
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &Queue{max: max, log: log, items: map[string][]*queued{}, wake: map[string]chan struct{}{},
		dropped: map[dropKey]int64{}, unlogged: map[dropKey]int64{}}
	if dir == "" {
		return q, nil
	}
	d, err := openDiskQueue(dir, log)
	if err != nil {
		return nil, err
	}
	q.disk = d
	replayed, corrupt := d.replay()
	for _, c := range corrupt {
		q.countDrop(c, DropCorrupt)
	}
	for _, it := range replayed {
		if q.bytes+int64(len(it.data)) > q.max {
			// The queue was made smaller since: the file stays for a
			// later run.
			log.Warn("export queue: a request of an earlier run does not fit in export.queue_size, left on disk", "file", it.file, "queue_size", q.max)
			continue
		}
		q.items[it.signal] = append(q.items[it.signal], it)
		q.bytes += int64(len(it.data))
	}
	q.peak = q.bytes
	if len(replayed) > 0 {
		log.Info("export queue: requests of an earlier run queued again", "dir", dir, "requests", len(replayed), "bytes", q.bytes)
	}
	return q, nil
}

// Put queues data, an encoded export request of signal. It returns
// ErrQueueFull, counted as dropped, when data does not fit; a failure to
// write the disk queue's file is logged and the request is kept in memory.
func (q *Queue) Put(signal string, data []byte) error {
	q.mu.Lock()
	if q.bytes+int64(len(data)) > q.max {
		q.countDropLocked(signal, DropQueueFull)
		q.mu.Unlock()
		return fmt.Errorf("%w: %s request of %d bytes, %d of %d bytes queued", ErrQueueFull, signal, len(data), q.bytes, q.max)
	}
	it := &queued{signal: signal, data: data}
	q.bytes += int64(len(data))
	q.peak = max(q.peak, q.bytes)
	q.mu.Unlock()
	if q.disk != nil {
		// Written outside the lock: senders go on meanwhile. The item is
		// queued only once its file exists, so the order of files is the
		// order of the queue.
		f, err := q.disk.write(signal, data)
		if err != nil {
			q.log.Warn("export queue: request kept in memory only", logging.Err(err))
		}
		it.file = f
	}
	q.mu.Lock()
	q.items[signal] = append(q.items[signal], it)
	if ch := q.wake[signal]; ch != nil {
		close(ch)
		delete(q.wake, signal)
	}
	q.mu.Unlock()
	return nil
}

// next returns the oldest request of signal, waiting for one until ctx
// ends. It stays queued until done or drop.
func (q *Queue) next(ctx context.Context, signal string) (*queued, error) {
	for {
		q.mu.Lock()
		if its := q.items[signal]; len(its) > 0 {
			q.mu.Unlock()
			return its[0], nil
		}
		ch := q.wake[signal]
		if ch == nil {
			ch = make(chan struct{})
			q.wake[signal] = ch
		}
		q.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// done removes the request next returned: delivered. A metrics request's
// buffer is kept for lend: nothing reads it once the collector answered.
func (q *Queue) done(it *queued) {
	q.remove(it)
	if it.signal == SignalMetrics {
		q.mu.Lock()
		if len(q.spare) < maxSpareBuffers {
			q.spare = append(q.spare, it.data[:0])
		}
		q.mu.Unlock()
	}
}

// lend returns an empty buffer of at least n bytes' capacity for a
// metrics request that will be Put: a delivered request's when the queue
// keeps one that large, a new one otherwise.
func (q *Queue) lend(n int) []byte {
	q.mu.Lock()
	for len(q.spare) > 0 {
		last := len(q.spare) - 1
		b := q.spare[last]
		q.spare[last] = nil
		q.spare = q.spare[:last]
		if cap(b) >= n {
			q.mu.Unlock()
			return b
		}
	}
	q.mu.Unlock()
	return make([]byte, 0, n)
}

// dropSpare lets go of the buffers lend did not hand out: called once a round
// has taken what it needs, so that the buffers of a burst of deliveries (a
// backlog after a collector outage) are not kept for rounds that never
// use them.
func (q *Queue) dropSpare() {
	q.mu.Lock()
	clear(q.spare)
	q.spare = q.spare[:0]
	q.mu.Unlock()
}

// drop removes the request next returned and counts it as dropped for
// reason.
func (q *Queue) drop(it *queued, reason string) {
	q.remove(it)
	q.countDrop(it.signal, reason)
}

func (q *Queue) remove(it *queued) {
	q.mu.Lock()
	its := q.items[it.signal]
	if len(its) > 0 && its[0] == it {
		its[0] = nil
		q.items[it.signal] = its[1:]
		q.bytes -= int64(len(it.data))
	}
	q.mu.Unlock()
	if it.file != "" && q.disk != nil {
		q.disk.remove(it.file)
	}
}

// closeSignal ends the queue's use by signal's sender at shutdown: with a
// disk queue its requests stay in their files for the next run; without,
// they are dropped and counted.
func (q *Queue) closeSignal(signal string) {
	q.mu.Lock()
	its := q.items[signal]
	delete(q.items, signal)
	for _, it := range its {
		q.bytes -= int64(len(it.data))
	}
	q.mu.Unlock()
	if len(its) == 0 {
		return
	}
	if q.disk != nil {
		kept := 0
		for _, it := range its {
			if it.file != "" {
				kept++
			} else {
				q.countDrop(signal, DropShutdown)
			}
		}
		q.log.Info("export queue: undelivered requests kept on disk for the next start", "signal", signal, "requests", kept, "dir", q.disk.dir)
		return
	}
	for range its {
		q.countDrop(signal, DropShutdown)
	}
	q.log.Warn("export queue: undelivered requests dropped at shutdown (no export.queue_dir)", "signal", signal, "requests", len(its))
}

func (q *Queue) countDrop(signal, reason string) {
	q.mu.Lock()
	q.countDropLocked(signal, reason)
	q.mu.Unlock()
}

// countDropLocked counts one drop and logs the drops since the last line,
// at most once per dropLogInterval.
func (q *Queue) countDropLocked(signal, reason string) {
	k := dropKey{signal, reason}
	q.dropped[k]++
	q.unlogged[k]++
	now := time.Now()
	if !q.loggedAt.IsZero() && now.Sub(q.loggedAt) < dropLogInterval {
		return
	}
	q.loggedAt = now
	keys := make([]dropKey, 0, len(q.unlogged))
	for k := range q.unlogged {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].signal != keys[j].signal {
			return keys[i].signal < keys[j].signal
		}
		return keys[i].reason < keys[j].reason
	})
	attrs := make([]any, 0, 2*len(keys)+4)
	for _, k := range keys {
		attrs = append(attrs, k.signal+"."+k.reason, q.unlogged[k])
	}
	attrs = append(attrs, "queued_bytes", q.bytes, "queue_size", q.max)
	clear(q.unlogged)
	q.log.Warn("export queue: requests dropped (counted in agentd.export.dropped)", attrs...)
}

// Stats returns a snapshot of the queue.
func (q *Queue) Stats() QueueStats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := QueueStats{Bytes: q.bytes, PeakBytes: q.peak, Requests: map[string]int{}, Dropped: map[[2]string]int64{}}
	for sig, its := range q.items {
		s.Requests[sig] = len(its)
	}
	for k, n := range q.dropped {
		s.Dropped[[2]string{k.signal, k.reason}] = n
	}
	return s
}

// Retry waits of the senders: exponential from retryMin to retryMax, with
// ±retryJitter of each.
const (
	retryMin    = 250 * time.Millisecond
	retryMax    = 4 * time.Second
	retryJitter = 0.2
)

// retryWait is the wait before attempt+1 (attempt counts from 0), or the
// collector's own when it asked for one (RetryInfo, Retry-After), capped at
// a minute.
func retryWait(attempt int, asked time.Duration) time.Duration {
	if asked > 0 {
		return min(asked, time.Minute)
	}
	d := retryMin
	for i := 0; i < attempt && d < retryMax; i++ {
		d *= 2
	}
	d = min(d, retryMax)
	return time.Duration(float64(d) * (1 - retryJitter + 2*retryJitter*rand.Float64()))
}

// deliverFunc sends one encoded request. It reports whether a failure is
// worth retrying and how long the collector asked to wait ("0": our
// backoff); rejected counts items the collector refused in a partial
// success (the request is then delivered).
type deliverFunc func(ctx context.Context, data []byte) (rejected int64, retry bool, wait time.Duration, err error)

// sender drains one signal of a queue through deliver: one request at a
// time, in order, retrying a retryable failure for as long as it takes.
type sender struct {
	q       *Queue
	signal  string
	deliver deliverFunc

	cancel  context.CancelFunc
	done    chan struct{}
	stopped chan struct{} // closed by stop: drain what is there and return
}

// startSender starts the sender's goroutine; stop ends it.
func startSender(ctx context.Context, q *Queue, signal string, deliver deliverFunc) *sender {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s := &sender{q: q, signal: signal, deliver: deliver, cancel: cancel,
		done: make(chan struct{}), stopped: make(chan struct{})}
	go func() {
		defer close(s.done)
		s.run(ctx)
	}()
	return s
}

func (s *sender) run(ctx context.Context) {
	for {
		nctx, ncancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-s.stopped:
				// Draining: once the queue is empty, return.
				for {
					s.q.mu.Lock()
					empty := len(s.q.items[s.signal]) == 0
					s.q.mu.Unlock()
					if empty {
						ncancel()
						return
					}
					select {
					case <-nctx.Done():
						return
					case <-time.After(20 * time.Millisecond):
					}
				}
			case <-nctx.Done():
			}
		}()
		it, err := s.q.next(nctx, s.signal)
		ncancel()
		if err != nil {
			return
		}
		if !s.send(ctx, it) {
			return
		}
	}
}

// send delivers it, retrying; false when ctx ended first.
func (s *sender) send(ctx context.Context, it *queued) bool {
	for attempt := 0; ; attempt++ {
		rejected, retry, asked, err := s.deliver(ctx, it.data)
		if err == nil {
			// Delivered, even if ctx ended meanwhile: never sent twice.
			s.q.done(it)
			if rejected > 0 {
				s.q.countDrop(s.signal, DropRejected)
			}
			s.reportResult(it, nil)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		s.reportResult(it, err)
		switch {
		case !retry:
			s.q.log.Warn("export queue: collector refused a request for good", "signal", s.signal, "bytes", len(it.data), logging.Err(err))
			s.q.drop(it, DropRejected)
			return true
		}
		t := time.NewTimer(retryWait(attempt, asked))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

func (s *sender) reportResult(it *queued, err error) {
	if f := s.q.onResult.Load(); f != nil {
		(*f)(s.signal, len(it.data), err)
	}
}

// stop drains the queue of the sender's signal until ctx ends, then stops
// the sender and waits for it; what is left stays on disk or is dropped
// (Queue.closeSignal).
func (s *sender) stop(ctx context.Context) {
	close(s.stopped)
	select {
	case <-s.done:
	case <-ctx.Done():
	}
	s.cancel()
	<-s.done
	s.q.closeSignal(s.signal)
}
