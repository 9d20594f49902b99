package telemetry

import (
	"context"
	"sync"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// maxEventBatch is how many records a flush hands to the exporter at most;
// a batch this full is flushed at once, not at the next tick.
const maxEventBatch = 512

// eventBatch is the events' log processor. It replaces the SDK's
// BatchProcessor, which drops a batch whose export fails or times out (a
// collector outage lost every event of it): with NewOTLP's exporter, an
// export puts the batch in the export queue at once, and the queue retries
// from there. Records are held from
// OnEmit to the flush, which comes within the interval; the queue, not this
// batch, is what bounds what waits for the collector. Start runs the
// flusher; Shutdown flushes, stops it and shuts the exporter down. Safe for
// concurrent use.
type eventBatch struct {
	exp      sdklog.Exporter
	interval time.Duration

	flushMu sync.Mutex // one flush at a time
	mu      sync.Mutex
	pending []sdklog.Record
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	report  func(err error, n int) // outcome of each export; may be nil
}

var _ sdklog.Processor = (*eventBatch)(nil)

func newEventBatch(exp sdklog.Exporter, interval time.Duration, report func(error, int)) *eventBatch {
	return &eventBatch{exp: exp, interval: interval, report: report,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs the flusher until Shutdown.
func (b *eventBatch) start(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	go func() {
		defer close(b.done)
		t := time.NewTicker(b.interval)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
			case <-b.kick:
			}
			b.flush(ctx)
		}
	}()
}

// Enabled reports true: every event is exported.
func (b *eventBatch) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }

// OnEmit keeps a copy of r for the next flush.
func (b *eventBatch) OnEmit(_ context.Context, r *sdklog.Record) error {
	b.mu.Lock()
	b.pending = append(b.pending, r.Clone())
	full := len(b.pending) >= maxEventBatch
	b.mu.Unlock()
	if full {
		select {
		case b.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// flush exports what is pending, maxEventBatch records at a time. A batch
// the exporter refuses is not kept: NewOTLP's exporter refuses only what
// does not fit in the export queue, which counts it as dropped.
func (b *eventBatch) flush(ctx context.Context) error {
	b.flushMu.Lock()
	defer b.flushMu.Unlock()
	for {
		b.mu.Lock()
		n := min(len(b.pending), maxEventBatch)
		if n == 0 {
			b.mu.Unlock()
			return nil
		}
		batch := b.pending[:n:n]
		b.mu.Unlock()
		err := b.exp.Export(ctx, batch)
		if b.report != nil && ctx.Err() == nil {
			b.report(err, n)
		}
		b.mu.Lock()
		rest := b.pending[n:]
		if len(rest) == 0 {
			b.pending = nil
		} else {
			b.pending = append(make([]sdklog.Record, 0, len(rest)), rest...)
		}
		b.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// ForceFlush exports what is pending.
func (b *eventBatch) ForceFlush(ctx context.Context) error { return b.flush(ctx) }

// Shutdown stops the flusher, flushes and shuts the exporter down.
func (b *eventBatch) Shutdown(ctx context.Context) error {
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	<-b.done
	err := b.flush(ctx)
	if serr := b.exp.Shutdown(ctx); err == nil {
		err = serr
	}
	return err
}
