package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// Workload is the view of the workload model the pipeline reads each round.
// Implementations return snapshots the pipeline may keep for the round; an
// engine's Connected gives its agentd.engine.up. Rounds and event forwarding
// call it from two goroutines: it must be safe for concurrent use.
type Workload interface {
	Engines() []model.Engine
	Containers() []model.Container
	// Container is the current state of one container, hidden ones
	// included: the die of a SIGKILLed container waits up to dieHold for
	// its OOM flag there (see forwardEvents).
	Container(k model.ContainerKey) (model.Container, bool)
	// Engine is the current record of one engine: an event's resource
	// carries the engine's place as it is when the event goes out (the
	// hierarchy of an engine can settle after it was found).
	Engine(id string) (model.Engine, bool)
}

// EngineRequests is implemented by a Workload that knows what agentd asked
// of each engine; the pipeline then exports agentd.engine.requests and the
// metrics that go with it on the engine's resource.
type EngineRequests interface {
	// EngineRequests returns engine e's counters; false when there are
	// none (yet).
	EngineRequests(e model.Engine) (RequestStats, bool)
}

// RequestStats are the counters of the requests agentd made to one engine.
// They only grow, each pair from its Since.
type RequestStats struct {
	// Requests and Waits count the requests to the engine's endpoint and
	// those that waited for its request budget; WaitTime is how long they
	// waited. Counted since Since.
	Requests, Waits uint64
	WaitTime        time.Duration
	Since           time.Time
	// Coalesced counts the inspects the engine's watcher saved, since
	// CoalescedSince.
	Coalesced      uint64
	CoalescedSince time.Time
}

// dieHold is how long, at most, the die of a container killed by SIGKILL
// (exit code 137) without an OOM flag waits for the OOM detector, which reads
// the kernel log, to mark it: the kernel logs the kill as it sends the signal,
// so the engine's die comes later, but the detector may not have read it yet.
// With a KernelLog the die waits only until the log is read through its
// arrival, usually a millisecond or two.
const dieHold = 200 * time.Millisecond

// KernelLog tells whether the kernel log has been read through a time;
// *oom.Detector satisfies it.
type KernelLog interface {
	// ReadThrough reports whether every record written before t has been
	// read and its OOM kill marked in the Workload's containers.
	ReadThrough(t time.Time) bool
}

// dieRecheck is how often a held die looks again at its container's flag and
// at the KernelLog.
const dieRecheck = 2 * time.Millisecond

// Sampler reads the stats of running containers; *stats.Sampler satisfies it.
type Sampler interface {
	Sample(ctx context.Context, cs []model.Container, out []stats.Stats) ([]stats.Stats, error)
}

// Options are the parts a Pipeline is wired from.
type Options struct {
	// Workload is read at every export interval. Required.
	Workload Workload
	// Events are forwarded as log records; nil means no events. The pipeline
	// never closes it; a closed channel ends event forwarding.
	Events <-chan model.Event
	// Sampler reads container stats. Required.
	Sampler Sampler
	// Metrics and Logs receive what is exported: NewOTLP's, or a Console for
	// both. Required. The pipeline shuts both down when Run returns.
	Metrics MetricSink
	Logs    sdklog.Exporter
	// KernelLog, when set, releases a held die as soon as the kernel log
	// has been read through its arrival; without it the die waits dieHold.
	KernelLog KernelLog
	// Host is carried by every resource (DetectHost).
	Host Host
	// Version is agentd's version, the instrumentation scope version.
	Version string
}

// Pipeline samples, exports metrics and forwards events until its context
// ends. Build it with NewPipeline and call Run once.
type Pipeline struct {
	cfg    Config
	opts   Options
	log    *slog.Logger
	health *exportHealth
}

// exportHealth follows the outcome of the exports, metrics and events alike:
// the journal says when they start failing, once a minute while they fail
// (with a count) and when they recover; LastExport reads the last outcome.
type exportHealth struct {
	problem *logging.Problem
	mu      sync.Mutex
	at      time.Time
	err     error
}

func (h *exportHealth) record(err error, attrs ...any) {
	h.mu.Lock()
	h.at, h.err = time.Now(), err
	h.mu.Unlock()
	if err != nil {
		h.problem.Fail(err, attrs...)
		return
	}
	h.problem.OK()
}

// LastExport returns when the last export (metrics or events) ended and its
// error; the zero time before the first. Safe for concurrent use with Run.
func (p *Pipeline) LastExport() (time.Time, error) {
	p.health.mu.Lock()
	defer p.health.mu.Unlock()
	return p.health.at, p.health.err
}

// NewPipeline validates cfg and checks opts; the pipeline logs to log (nil
// discards).
func NewPipeline(cfg Config, opts Options, log *slog.Logger) (*Pipeline, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Workload == nil || opts.Sampler == nil || opts.Metrics == nil || opts.Logs == nil {
		return nil, errors.New("telemetry pipeline: Workload, Sampler, Metrics and Logs are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	problem := logging.NewProblem(log.With(logging.MessageID(logging.MessageIDExportFailure)), "export to the collector failing", time.Minute)
	p := &Pipeline{cfg: cfg, opts: opts, log: log, health: &exportHealth{problem: problem}}
	if q := p.queue(); q != nil {
		// Exports only queue: the deliveries are the outcome.
		f := func(signal string, bytes int, err error) { p.health.record(err, "signal", signal, "bytes", bytes) }
		q.onResult.Store(&f)
	}
	return p, nil
}

// queue is the export queue of the sinks, nil when they have none.
func (p *Pipeline) queue() *Queue {
	if h, ok := p.opts.Metrics.(queueHolder); ok {
		return h.exportQueue()
	}
	if h, ok := p.opts.Logs.(queueHolder); ok {
		return h.exportQueue()
	}
	return nil
}

// Run exports one round at once and then every ExportInterval, and forwards
// events as they come (sent within EventFlushInterval). When ctx ends it
// forwards the events already queued on the channel, flushes and shuts the
// sinks down within ShutdownTimeout, and returns nil; it returns an error
// only when that final flush fails. Errors of single rounds are logged, not
// returned. Run starts one goroutine for events and waits for it.
func (p *Pipeline) Run(ctx context.Context) error {
	var report func(error, int)
	if _, queued := p.opts.Logs.(queueHolder); !queued {
		report = func(err error, n int) { p.health.record(err, "signal", "events", "records", n) }
	}
	proc := newEventBatch(p.opts.Logs, p.cfg.EventFlushInterval, report)
	proc.start(ctx)
	em := newEventEmitter(&p.cfg, p.opts.Host, p.opts.Version, proc)

	var wg sync.WaitGroup
	if p.opts.Events != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.forwardEvents(ctx, em)
		}()
	}

	b := newBuilder(&p.cfg, p.opts.Host, p.opts.Version)
	var scratch roundScratch
	tick := time.NewTicker(p.cfg.ExportInterval)
	for {
		p.round(ctx, b, &scratch)
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	tick.Stop()
	wg.Wait()

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cfg.ShutdownTimeout)
	defer cancel()
	err := errors.Join(proc.Shutdown(sctx), p.opts.Metrics.Shutdown(sctx))
	if err != nil {
		return fmt.Errorf("telemetry: final flush: %w", err)
	}
	return nil
}

// forwardEvents emits events until ctx ends, then drains what is queued.
func (p *Pipeline) forwardEvents(ctx context.Context, em *eventEmitter) {
	// engines keeps the last record seen of each engine, for the events
	// that go out after their engine left the model (a destroy after the
	// engine was lost).
	engines := map[string]model.Engine{}
	current := func(id string) (model.Engine, bool) {
		if e, ok := p.opts.Workload.Engine(id); ok {
			engines[id] = e
			return e, true
		}
		e, ok := engines[id]
		return e, ok
	}
	handle := func(ctx context.Context, ev *model.Event) {
		if ev.Engine != nil {
			if ev.Type == model.EventEngineFound {
				// Found: the record as it is now, placed since, maybe.
				if e, ok := p.opts.Workload.Engine(ev.Engine.ID); ok {
					ev.Engine = &e
				}
			}
			engines[ev.Engine.ID] = *ev.Engine
		}
		var eng *model.Engine
		if ev.Container != nil {
			e, ok := current(ev.EngineID)
			if !ok {
				e = model.Engine{ID: ev.EngineID}
			}
			if !p.cfg.keep(e.Type, ev.Container) {
				return
			}
			eng = &e
		}
		em.emit(ctx, ev, eng, time.Now())
	}
	// held keeps the events that wait behind a held die, in order; the
	// first is that die. A die is held from its arrival, so a burst of kills
	// waits dieHold once, not once per kill.
	lookup := p.opts.Workload
	type heldEvent struct {
		ev      model.Event
		arrived time.Time
		due     time.Time // zero: not a held die
	}
	kernel := p.opts.KernelLog
	var held []heldEvent
	mustHold := func(ev *model.Event) bool {
		return ev.Type == model.EventDie && ev.Container != nil &&
			ev.ExitCode == 137 && !ev.Container.OOMKilled && !ev.Resync
	}
	release := func(ctx context.Context, now time.Time, all bool) {
		for len(held) > 0 {
			h := &held[0]
			if !h.due.IsZero() {
				c, ok := lookup.Container(h.ev.Container.Key())
				flagged := ok && c.OOMKilled
				if !flagged && now.Before(h.due) && !all {
					if kernel == nil || !kernel.ReadThrough(h.arrived) {
						return
					}
					// Read through: a kill before the die would be
					// marked by now; look once more.
					c, ok = lookup.Container(h.ev.Container.Key())
					flagged = ok && c.OOMKilled
				}
				if flagged {
					cc := *h.ev.Container
					cc.OOMKilled = true
					h.ev.Container = &cc
				}
			}
			handle(ctx, &h.ev)
			held = held[1:]
		}
		held = nil
	}
	accept := func(ctx context.Context, ev model.Event) {
		now := time.Now()
		switch {
		case mustHold(&ev):
			held = append(held, heldEvent{ev: ev, arrived: now, due: now.Add(dieHold)})
		case len(held) > 0:
			held = append(held, heldEvent{ev: ev})
		default:
			handle(ctx, &ev)
		}
		release(ctx, now, false)
	}
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	defer recheck.Stop()
	for {
		if len(held) > 0 {
			if kernel != nil {
				recheck.Reset(dieRecheck)
			} else {
				recheck.Reset(dieHold / 8)
			}
		}
		select {
		case ev, ok := <-p.opts.Events:
			if !ok {
				release(ctx, time.Now(), true)
				return
			}
			accept(ctx, ev)
		case <-recheck.C:
			release(ctx, time.Now(), false)
		case <-ctx.Done():
			dctx := context.WithoutCancel(ctx)
			for {
				select {
				case ev, ok := <-p.opts.Events:
					if !ok {
						release(dctx, time.Now(), true)
						return
					}
					accept(dctx, ev)
				default:
					release(dctx, time.Now(), true)
					return
				}
			}
		}
	}
}

// roundScratch holds the slices of a round for the next one: at 1,000
// containers the copies of the running containers alone were 320 KB a round.
// Between rounds they hold no container (clear), so a removed one is not
// kept alive.
type roundScratch struct {
	samples       []stats.Stats
	running, idle []model.Container
	batch         []sampled
}

// reuse returns s emptied, dropped instead when it is over four times larger
// than the n elements the last round used (a host that had many more
// containers once).
func reuse[S ~[]E, E any](s S, n int) S {
	if cap(s) > 4*n && cap(s) > 64 {
		return nil
	}
	return s[:0]
}

// round samples the running containers and exports one batch.
func (p *Pipeline) round(ctx context.Context, b *builder, sc *roundScratch) {
	if ctx.Err() != nil {
		return
	}
	engines := p.opts.Workload.Engines()
	all := p.opts.Workload.Containers()
	byID := make(map[string]*model.Engine, len(engines))
	counts := make([]engineCount, len(engines))
	for i := range engines {
		byID[engines[i].ID] = &engines[i]
		counts[i] = engineCount{engine: &engines[i], counts: make(map[model.ContainerState]int64, len(engineStates))}
		if er, ok := p.opts.Workload.(EngineRequests); ok {
			if rs, ok := er.EngineRequests(engines[i]); ok {
				counts[i].requests = &rs
			}
		}
	}
	running := sc.running[:0]
	idle := sc.idle[:0] // kept, not running: state, restarts and health only
	batch := sc.batch[:0]
	defer func() {
		clear(running)
		clear(idle)
		clear(batch)
		sc.running, sc.idle, sc.batch = reuse(running, len(running)), reuse(idle, len(idle)), reuse(batch, len(batch))
	}()
	for i := range all {
		c := &all[i]
		e := byID[c.EngineID]
		if e == nil {
			continue
		}
		for j := range counts {
			if counts[j].engine == e {
				counts[j].counts[c.State]++
			}
		}
		if !p.cfg.keep(e.Type, c) {
			continue
		}
		if c.State == model.StateRunning {
			running = append(running, *c)
		} else {
			idle = append(idle, *c)
		}
	}
	samples, err := p.opts.Sampler.Sample(ctx, running, sc.samples)
	sc.samples = samples
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		p.log.Warn("container stats", logging.Err(err))
	}
	for i := range running {
		if samples[i].Has == 0 {
			continue
		}
		batch = append(batch, sampled{engine: byID[running[i].EngineID], container: &running[i], stats: &samples[i]})
	}
	for i := range idle {
		batch = append(batch, sampled{engine: byID[idle[i].EngineID], container: &idle[i]})
	}
	now := time.Now()
	r := b.prepare(now, batch, counts)
	q := p.queue()
	if q != nil {
		r.withQueue(q.Stats())
	}
	start := time.Now()
	if rs, ok := p.opts.Metrics.(roundSink); ok {
		err = rs.exportRound(ctx, r)
	} else {
		err = p.opts.Metrics.ExportMetrics(ctx, r.batch())
	}
	if ctx.Err() == nil && (q == nil || err != nil) {
		p.health.record(err, "signal", "metrics", "resources", r.Len())
	}
	p.log.Debug("exported metrics", "containers", len(batch), "resources", r.Len(), "duration", time.Since(start))
}

// roundSink is a MetricSink that takes a prepared round and has each entry's
// ResourceMetrics made only when it encodes it, so that no copy of the
// round's metrics is kept; *OTLPMetrics is one. The other sinks (the console,
// DeltaSink) keep the whole round and get it made at once.
type roundSink interface {
	exportRound(ctx context.Context, src resourceSource) error
}
