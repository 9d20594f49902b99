package watch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/internal/procfs"
	"github.com/agentd-dev/agentd/model"
)

// Options tune a Watcher. The zero value is usable.
type Options struct {
	// ProcRoot is the procfs used to translate PIDs of nested engines (default /proc).
	ProcRoot string
	// MinBackoff and MaxBackoff bound the reconnect delay (defaults 250ms and 30s).
	MinBackoff, MaxBackoff time.Duration
	// InspectConcurrency bounds concurrent Inspect calls during a list
	// (through engine.InspectConcurrency, for adapters whose List inspects)
	// and while the inspects of a batch of events are made (default 8).
	InspectConcurrency int
	// CoalesceWindow is how long the watcher gathers events after the first
	// one before it applies them together: the events of one container in
	// a batch cost one inspect, and those queued while an inspect waited
	// for the engine's request budget join the next batch (default 10 ms;
	// negative: no wait, only the events already queued are gathered).
	// Events keep their order; none is dropped.
	CoalesceWindow time.Duration
	// CallTimeout bounds every call a watcher makes to its engine (subscribe,
	// list, inspect; not the wait for the next event, which may rightly be
	// long) so that an engine that accepts and never answers cannot wedge the
	// watcher: the call fails and the watcher reconnects (default 60 s).
	CallTimeout time.Duration
	// Listed, when set, is called with the engine's ID each time a list of
	// its containers is in the model (an engine found inside one of them
	// can be placed then). It must not block.
	Listed func(engineID string)
}

func (o Options) withDefaults() Options {
	if o.ProcRoot == "" {
		o.ProcRoot = "/proc"
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 250 * time.Millisecond
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(30*time.Second, o.MinBackoff)
	}
	if o.InspectConcurrency <= 0 {
		o.InspectConcurrency = 8
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 60 * time.Second
	}
	if o.CoalesceWindow == 0 {
		o.CoalesceWindow = 10 * time.Millisecond
	}
	return o
}

// Stats counts what a Watcher has seen. All counters only grow.
type Stats struct {
	// Events is the number of changes received from the engine's stream.
	Events uint64
	// Malformed is the number of events that could not be decoded.
	Malformed uint64
	// Ignored is the number of well-formed events of no interest.
	Ignored uint64
	// Reconnects is the number of times the stream or a list failed and the
	// watcher started over.
	Reconnects uint64
	// Syncs is the number of completed list reconciliations (1 after the
	// initial list, +1 per resync).
	Syncs uint64
	// Coalesced is the number of events that needed a look at their
	// container and got it without an inspect of their own, from the
	// batch they came in (see Options.CoalesceWindow).
	Coalesced uint64
	// Since is when the watcher was made and its counters started.
	Since time.Time
}

// Watcher keeps one engine's containers in the Store and emits their lifecycle
// events. Create it with NewWatcher and call Run once.
type Watcher struct {
	engine  model.Engine
	adapter engine.Adapter
	store   *model.Store
	opts    Options
	log     *slog.Logger
	// mu guards enginePID, the engine's current PID (it changes when the
	// engine restarts; ID and endpoint do not).
	mu        sync.Mutex
	enginePID int
	// wake cuts a reconnect wait short (see Update).
	wake chan struct{}
	// down is the engine being unreachable, as the journal tells it: once
	// when it starts, once a minute while it lasts, once when it ends.
	down *logging.Problem
	// created is when the counters started.
	created time.Time
	// imu guards images: image reference → the image ID last seen behind
	// it (see imageID).
	imu    sync.Mutex
	images map[string]string

	events, malformed, ignored, reconnects, syncs, coalesced atomic.Uint64
	// pending counts the stream's results read but not yet handled (tests
	// wait for it to be 0).
	pending atomic.Int64
}

// NewWatcher returns a Watcher of engine e that talks to it through a,
// writes to store and logs to log (nil discards).
func NewWatcher(e model.Engine, a engine.Adapter, store *model.Store, opts Options, log *slog.Logger) *Watcher {
	opts = opts.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if ic, ok := a.(engine.InspectConcurrency); ok {
		ic.SetInspectConcurrency(opts.InspectConcurrency)
	}
	return &Watcher{
		engine:    e,
		adapter:   a,
		store:     store,
		opts:      opts,
		log:       log.With(e.LogAttrs()...),
		enginePID: e.PID,
		wake:      make(chan struct{}, 1),
		created:   time.Now(),
		images:    map[string]string{},
	}
}

// Update tells the watcher that its engine's record changed, typically a new
// PID after the engine restarted: container PIDs are translated through the
// new one, and a watcher waiting to reconnect tries at once. Safe to call
// concurrently with Run.
func (w *Watcher) Update(e model.Engine) {
	w.mu.Lock()
	changed := w.enginePID != e.PID
	w.enginePID = e.PID
	w.mu.Unlock()
	if changed {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// Stats returns the watcher's counters. Safe to call concurrently with Run.
func (w *Watcher) Stats() Stats {
	return Stats{
		Events:     w.events.Load(),
		Malformed:  w.malformed.Load(),
		Ignored:    w.ignored.Load(),
		Reconnects: w.reconnects.Load(),
		Syncs:      w.syncs.Load(),
		Coalesced:  w.coalesced.Load(),
		Since:      w.created,
	}
}

// Run watches the engine until ctx ends, then returns nil. It never gives up
// on the engine: every failure (engine down, socket gone, stream broken) is
// logged and followed by a reconnect after a backoff that doubles from
// MinBackoff up to MaxBackoff and resets after the first event received on a
// new stream.
//
// Run records the connection in the Store (Store.SetConnected, read as
// model.Engine.Connected): true once a session has subscribed and listed,
// false as soon as it ends, so false while it reconnects and after Run
// returns. Put the engine in the Store before Run; Run does not add it.
func (w *Watcher) Run(ctx context.Context) error {
	backoff := w.opts.MinBackoff
	w.down = logging.NewProblem(w.log, "engine unreachable, reconnecting", time.Minute)
	for {
		err := w.session(ctx, func() { backoff = w.opts.MinBackoff })
		w.store.SetConnected(w.engine.ID, false)
		if ctx.Err() != nil {
			return nil
		}
		w.reconnects.Add(1)
		w.down.Fail(err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-w.wake:
			t.Stop()
			backoff = w.opts.MinBackoff
			continue
		case <-t.C:
		}
		backoff = min(2*backoff, w.opts.MaxBackoff)
	}
}

// session subscribes, lists, reconciles and then applies events until the
// stream fails or ctx ends. good is called after each event received.
func (w *Watcher) session(ctx context.Context, good func()) error {
	// The stream lives as long as the session, so Subscribe cannot take a
	// context with a deadline: a timer cancels the session instead when the
	// engine does not answer in time.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := time.AfterFunc(w.opts.CallTimeout, func() { cancel(errCallTimeout) })
	st, err := w.adapter.Subscribe(ctx)
	if !t.Stop() {
		if err == nil {
			_ = st.Close()
		}
		return fmt.Errorf("subscribe: %w after %s", errCallTimeout, w.opts.CallTimeout)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := st.Close(); err != nil {
			w.log.Debug("closing event stream", logging.Err(err))
		}
	}()
	lctx, lcancel := context.WithTimeoutCause(ctx, w.opts.CallTimeout, errCallTimeout)
	list, err := w.adapter.List(lctx)
	lcancel()
	if err != nil {
		if errors.Is(context.Cause(lctx), errCallTimeout) && ctx.Err() == nil {
			return fmt.Errorf("list: %w after %s: %w", errCallTimeout, w.opts.CallTimeout, err)
		}
		return err
	}
	w.reconcile(list, w.syncs.Load() > 0)
	w.store.SetConnected(w.engine.ID, true)
	if w.opts.Listed != nil {
		w.opts.Listed(w.engine.ID)
	}
	w.down.OK()
	w.syncs.Add(1)

	// A reader goroutine, owned by the session, feeds the stream's events
	// to batches. It ends with the session: cancelling the session's
	// context also ends the stream's call (it was opened with it), so a
	// Next blocked on the engine returns.
	nexts := make(chan next, maxBatch)
	var wg sync.WaitGroup
	refresh := newRefresher(w)
	defer func() {
		cancel(nil)
		wg.Wait()
		refresh.wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			ch, err := st.Next(ctx)
			w.pending.Add(1)
			select {
			case nexts <- next{ch, err}:
			case <-ctx.Done():
				w.pending.Add(-1)
				return
			}
			if err != nil && !errors.Is(err, engine.ErrIgnored) && !errors.Is(err, engine.ErrMalformed) {
				return
			}
		}
	}()
	var batch []engine.Change
	for {
		var end error
		var n int
		batch, n, end = w.gather(ctx, nexts, refresh, batch[:0], good)
		w.applyBatch(ctx, batch, refresh)
		w.pending.Add(-int64(n))
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if end != nil {
			return end
		}
	}
}

// next is one result of Stream.Next.
type next struct {
	ch  engine.Change
	err error
}

// maxBatch bounds the events applied together.
const maxBatch = 256

// gather receives the stream's results into batch: it blocks for the first
// event, then takes what arrives within Options.CoalesceWindow (what is
// already queued when the window is negative), at most maxBatch events.
// Ignored and malformed events are counted, not batched. end is the error
// that ended the stream (or ctx's); the events before it are in batch. n is
// the number of results received. The answers of refreshes that arrive
// meanwhile are merged into the model.
func (w *Watcher) gather(ctx context.Context, nexts <-chan next, refresh *refresher, batch []engine.Change, good func()) (_ []engine.Change, n int, end error) {
	var window <-chan time.Time
	for len(batch) < maxBatch {
		var nx next
		switch {
		case len(batch) == 0:
			select {
			case nx = <-nexts:
			case a := <-refresh.done:
				refresh.answered(ctx, a)
				continue
			case <-ctx.Done():
				return batch, n, ctx.Err()
			}
		case window == nil:
			select {
			case nx = <-nexts:
			default:
				return batch, n, nil
			}
		default:
			select {
			case nx = <-nexts:
			case a := <-refresh.done:
				refresh.answered(ctx, a)
				continue
			case <-window:
				return batch, n, nil
			case <-ctx.Done():
				return batch, n, ctx.Err()
			}
		}
		n++
		switch {
		case nx.err == nil:
		case errors.Is(nx.err, engine.ErrIgnored):
			w.ignored.Add(1)
			good()
			continue
		case errors.Is(nx.err, engine.ErrMalformed):
			w.malformed.Add(1)
			w.log.Warn("skipping malformed engine event", logging.Err(nx.err))
			continue
		default:
			return batch, n, nx.err
		}
		w.events.Add(1)
		good()
		batch = append(batch, nx.ch)
		if len(batch) == 1 && w.opts.CoalesceWindow > 0 {
			t := time.NewTimer(w.opts.CoalesceWindow)
			defer t.Stop()
			window = t.C
		}
	}
	return batch, n, nil
}

// looked is a container as an inspect saw it, shared by the events of one
// batch.
type looked struct {
	c    model.Container
	err  error
	used bool
}

// applyBatch applies a batch of changes in their order. Each container
// concerned is inspected once for the whole batch, the inspects of
// different containers in parallel (at most Options.InspectConcurrency):
// the inspection serves the container's last event of the batch (and its
// first if the model does not know it yet), while its earlier events build
// on the model's state, as the event alone says what changed. So a burst of
// events costs one inspect per container, and every event is applied: an
// inspect that fails falls back on the model's state, as applyWith does.
func (w *Watcher) applyBatch(ctx context.Context, batch []engine.Change, refresh *refresher) {
	if len(batch) == 0 {
		return
	}
	refresh.batch++
	last := make(map[model.ContainerKey]int, len(batch))
	for i, ch := range batch {
		if ch.Type != model.EventDestroy {
			last[w.key(ch.Namespace, ch.ContainerID)] = i
		}
	}
	w.lookUpImages(ctx, batch)
	seen := make(map[model.ContainerKey]*looked, len(last))
	if len(batch) > 1 {
		w.prefetch(ctx, batch, last, seen)
	}
	for i, ch := range batch {
		k := w.key(ch.Namespace, ch.ContainerID)
		look := func(ctx context.Context, ch engine.Change) (model.Container, error) {
			if cur, known := w.store.Container(k); known && last[k] != i {
				w.coalesced.Add(1)
				return cur, nil
			}
			if l, ok := seen[k]; ok {
				if l.used {
					w.coalesced.Add(1)
				}
				l.used = true
				return l.c, l.err
			}
			c, err := w.inspect(ctx, ch)
			seen[k] = &looked{c: c, err: err, used: true}
			return c, err
		}
		l, fresh := seen[k]
		fresh = fresh && (l.err == nil || errors.Is(l.err, engine.ErrNotFound))
		if err := w.applyWith(ctx, ch, look, fresh, refresh); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.malformed.Add(1)
			w.log.Warn("skipping engine event", "event", string(ch.Type), logging.KeyContainerID, ch.ContainerID, logging.Err(err))
		}
	}
}

// prefetch inspects, in parallel, every container of the batch that one of
// its events will look at as the model stands now (applyWith skips events the
// model already reflects), and records the results in seen.
func (w *Watcher) prefetch(ctx context.Context, batch []engine.Change, last map[model.ContainerKey]int, seen map[model.ContainerKey]*looked) {
	type job struct {
		k  model.ContainerKey
		ch engine.Change
		l  *looked
	}
	var jobs []job
	decided := make(map[model.ContainerKey]bool, len(last))
	for _, ch := range batch {
		if ch.ContainerID == "" || ch.Type == model.EventDestroy {
			continue
		}
		k := w.key(ch.Namespace, ch.ContainerID)
		if decided[k] {
			continue
		}
		decided[k] = true
		cur, known := w.store.Container(k)
		if selfSufficient(ch, known) && selfSufficient(batch[last[k]], true) {
			// Every event of it in the batch is reported from the events
			// and the model (the container is known once its first is
			// applied).
			continue
		}
		if known && (ch.Type == model.EventCreate || stale(ch, cur)) {
			continue
		}
		l := &looked{}
		seen[k] = l
		jobs = append(jobs, job{k: k, ch: batch[last[k]], l: l})
	}
	if many, ok := w.adapter.(engine.InspectMany); ok && len(jobs) > 1 {
		ids := make([]string, len(jobs))
		for i, j := range jobs {
			ids[i] = inspectID(j.ch)
		}
		ictx, cancel := context.WithTimeoutCause(ctx, w.opts.CallTimeout, errCallTimeout)
		got, err := many.InspectMany(ictx, ids)
		cancel()
		for i, j := range jobs {
			c, found := got[ids[i]]
			switch {
			case found:
				w.adopt(&c, j.ch.Namespace)
				j.l.c = c
			case err != nil:
				j.l.err = fmt.Errorf("inspect %s: %w", ids[i], err)
			default:
				j.l.err = fmt.Errorf("inspect %s: %w", ids[i], engine.ErrNotFound)
			}
		}
		return
	}
	sem := make(chan struct{}, w.opts.InspectConcurrency)
	var wg sync.WaitGroup
	for _, j := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			j.l.err = ctx.Err()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			j.l.c, j.l.err = w.inspect(ctx, j.ch)
		}()
	}
	wg.Wait()
}

// selfSufficient reports whether ch is applied without looking at its
// container (known: the model has it): a destroy, a die that carries its
// exit code, a start of a known container and a create that says what it
// created. The last two are refreshed afterwards (see refresher).
func selfSufficient(ch engine.Change, known bool) bool {
	switch ch.Type {
	case model.EventDestroy:
		return true
	case model.EventStart:
		return known
	case model.EventCreate:
		return known || ch.Container != nil
	}
	return dieSaysAll(ch, known)
}

// dieSaysAll reports whether ch is a die that carries all it changes (the
// exit code, the time) for a container the model knows: it needs no inspect,
// one request less per lifecycle on a busy engine.
func dieSaysAll(ch engine.Change, known bool) bool {
	return known && ch.Type == model.EventDie && ch.ExitCode != nil
}

// errCallTimeout is the cause of a call to the engine that took longer than
// Options.CallTimeout.
var errCallTimeout = errors.New("engine did not answer")

func (w *Watcher) key(ns, id string) model.ContainerKey {
	return model.ContainerKey{EngineID: w.engine.ID, Namespace: ns, ID: id}
}

// normalise fills in what the adapter leaves to the watcher: the engine ID and
// the PID in the host namespace.
func (w *Watcher) normalise(c *model.Container) {
	c.EngineID = w.engine.ID
	if c.PID <= 0 {
		c.PID = 0
		return
	}
	w.mu.Lock()
	pid := w.enginePID
	w.mu.Unlock()
	anchor := nsAnchor(w.opts.ProcRoot, pid, w.engine.Endpoint)
	p, err := hostPID(w.opts.ProcRoot, anchor, c.PID)
	if err != nil {
		w.log.Debug("translating container pid", logging.KeyContainerID, c.ID, "pid", c.PID, logging.Err(err))
		p = 0
	}
	c.PID = p
	if c.StartedAt.IsZero() && p > 0 && c.State != model.StateCreated {
		// containerd's task API has no start time: the init process's does.
		if t, err := procfs.StartTime(w.opts.ProcRoot, p); err == nil {
			c.StartedAt = t
		}
	}
}

// reconcile makes the Store's view of the engine equal to list. With resync it
// emits the transitions that happened while the watcher was not connected.
func (w *Watcher) reconcile(list []model.Container, resync bool) {
	old := map[model.ContainerKey]model.Container{}
	for _, c := range w.store.EngineContainers(w.engine.ID) {
		old[c.Key()] = c
	}
	seen := make(map[model.ContainerKey]bool, len(list))
	var emitted int
	for i := range list {
		c := list[i]
		w.normalise(&c)
		k := c.Key()
		if seen[k] {
			continue
		}
		seen[k] = true
		o, had := old[k]
		w.learnImage(c)
		w.store.Upsert(c)
		if resync {
			for _, ev := range transitions(o, had, c) {
				ev.EngineID = w.engine.ID
				w.store.Emit(ev)
				emitted++
			}
		}
	}
	for k, o := range old {
		if seen[k] {
			continue
		}
		w.store.Delete(k)
		if !resync {
			continue
		}
		now := time.Now()
		gone := o
		if o.State.Running() {
			gone.State = model.StateExited
			gone.PID = 0
			w.store.Emit(model.Event{Type: model.EventDie, Time: now, EngineID: w.engine.ID, Container: &gone, Resync: true, ExitUnknown: true})
			emitted++
		}
		w.store.Emit(model.Event{Type: model.EventDestroy, Time: now, EngineID: w.engine.ID, Container: &gone, Resync: true})
		emitted++
	}
	// The first listing is routine (the engine was found, at INFO); a
	// resync after a reconnect is worth telling.
	level := slog.LevelDebug
	if resync {
		level = slog.LevelInfo
	}
	w.log.Log(context.Background(), level, "engine containers listed", "containers", len(list), "resync", resync, "events", emitted)
}

// transitions returns the events that lead from old (had: known at all) to
// cur, as far as the engine's state tells: a container that is new gets a
// create; one that ran since old gets a start, and one that stopped running a
// die (with an oom before it when the engine says so).
func transitions(old model.Container, had bool, cur model.Container) []model.Event {
	var evs []model.Event
	add := func(t model.EventType, at time.Time) {
		if at.IsZero() {
			at = time.Now()
		}
		c := cur
		evs = append(evs, model.Event{Type: t, Time: at, Container: &c, Resync: true})
	}
	from := model.StateCreated
	if had {
		from = old.State
	} else {
		add(model.EventCreate, cur.CreatedAt)
	}
	// ran: started (again) since the watcher last saw it.
	ran := !cur.StartedAt.IsZero() && (!had || cur.StartedAt.After(old.StartedAt))
	die := func() {
		if cur.OOMKilled && (ran || !old.OOMKilled) {
			add(model.EventOOM, cur.FinishedAt)
		}
		n := len(evs)
		add(model.EventDie, cur.FinishedAt)
		evs[n].ExitCode = cur.ExitCode
		evs[n].Signal = exitSignal(cur.ExitCode)
	}
	switch cur.State {
	case model.StateRunning, model.StatePaused:
		restarted := from.Running() && ran
		if restarted {
			// It stopped and started again: the die time is unknown.
			prev := old
			prev.State = model.StateExited
			evs = append(evs, model.Event{Type: model.EventDie, Time: cur.StartedAt, Container: &prev, Resync: true, ExitUnknown: true})
		}
		if !from.Running() || restarted {
			add(model.EventStart, cur.StartedAt)
		}
		switch {
		case cur.State == model.StatePaused && (from != model.StatePaused || restarted):
			add(model.EventPause, time.Time{})
		case cur.State == model.StateRunning && from == model.StatePaused && !restarted:
			add(model.EventUnpause, time.Time{})
		}
	case model.StateExited:
		if ran && !from.Running() {
			add(model.EventStart, cur.StartedAt)
		}
		if from.Running() || ran {
			die()
		}
	case model.StateCreated:
		if had && from.Running() {
			// The engine has the container but no run of it any more:
			// containerd 2 deletes the task of a container whose shim it
			// finds dead when it starts, and with it how the task ended.
			// It died, its exit code unknown.
			prev := cur
			prev.State = model.StateExited
			evs = append(evs, model.Event{Type: model.EventDie, Time: time.Now(), Container: &prev, Resync: true, ExitUnknown: true})
		}
	}
	return evs
}

// exitSignal names the signal behind an exit code of 128+n, the shell
// convention engines follow for containers killed by a signal ("" otherwise).
// It is derived, not reported: a process may also exit(137) by itself.
func exitSignal(code int) string {
	if code <= 128 || code > 128+64 {
		return ""
	}
	return unix.SignalName(syscall.Signal(code - 128))
}

// foreign reports whether a's stream may carry other engines' containers.
func foreign(a engine.Adapter) bool {
	f, ok := a.(engine.ForeignEvents)
	return ok && f.ForeignEvents()
}

// inspectID is the ID the adapter's Inspect takes for ch's container:
// "namespace/id" for containerd, whose IDs are unique only within a
// namespace.
func inspectID(ch engine.Change) string {
	if ch.Namespace != "" {
		return ch.Namespace + "/" + ch.ContainerID
	}
	return ch.ContainerID
}

// inspect asks the adapter for a container and normalises it.
func (w *Watcher) inspect(ctx context.Context, ch engine.Change) (model.Container, error) {
	id := inspectID(ch)
	ictx, cancel := context.WithTimeoutCause(ctx, w.opts.CallTimeout, errCallTimeout)
	defer cancel()
	c, err := w.adapter.Inspect(ictx, id)
	if err != nil {
		if errors.Is(context.Cause(ictx), errCallTimeout) && ctx.Err() == nil {
			return model.Container{}, fmt.Errorf("inspect %s: %w after %s: %w", id, errCallTimeout, w.opts.CallTimeout, err)
		}
		return model.Container{}, err
	}
	w.adopt(&c, ch.Namespace)
	return c, nil
}

// adopt makes an inspected container the watcher's: its namespace, its
// engine and host PID (normalise), and its image ID remembered.
func (w *Watcher) adopt(c *model.Container, ns string) {
	c.Namespace = ns
	w.normalise(c)
	w.learnImage(*c)
}

// applyWith applies one change from the stream. Changes that the model already
// reflects (because the list that followed the subscription saw them) are
// skipped, which is what makes subscribe-then-list free of duplicates:
//   - create: the container is known;
//   - start: it is running, or it finished after the event;
//   - pause / unpause: it is not running / not paused;
//   - die, oom: it is not running, or it started after the event;
//   - destroy: it is not known.
//
// The model's state follows the event, not the inspection (which may be ahead
// of the stream), so every later event still finds its transition.
//
// It looks at the container through look: an inspect, or what the batch
// already knows of it (applyBatch).
//
// A create that says what it created and a start of a known container are
// applied from the event and the model, and then refreshed (see refresher),
// unless fresh: the batch has an inspect of the container made after its
// events, which look gives without asking the engine again.
func (w *Watcher) applyWith(ctx context.Context, ch engine.Change, look func(context.Context, engine.Change) (model.Container, error), fresh bool, refresh *refresher) error {
	if ch.ContainerID == "" {
		return errors.New("change without a container ID")
	}
	if ch.Time.IsZero() {
		ch.Time = time.Now()
	}
	k := w.key(ch.Namespace, ch.ContainerID)
	cur, known := w.store.Container(k)
	if ch.Type == model.EventDestroy {
		if !known {
			return nil
		}
		w.store.Delete(k)
		cur.PID = 0
		if cur.State.Running() {
			cur.State = model.StateExited
		}
		w.emit(ch, cur, false)
		return nil
	}
	if ch.Type == model.EventCreate && known {
		return nil
	}
	if known && stale(ch, cur) {
		return nil
	}
	var c model.Container
	var err error
	looked := false // c is the engine's answer to look
	switch {
	case dieSaysAll(ch, known):
		c = cur
	case fresh:
		c, err = look(ctx, ch)
		looked = true
	case ch.Type == model.EventStart && known:
		// A new run: what the last one left (PID, exit code, OOM flag)
		// is not this one's; the event or the refresh brings the PID.
		c = cur
		c.PID, c.ExitCode, c.OOMKilled = 0, 0, false
		if ch.PID > 0 {
			// normalise takes the start time from the process, as a
			// list does for an engine that records none.
			c.PID, c.State, c.StartedAt = ch.PID, model.StateRunning, time.Time{}
			w.normalise(&c)
		}
		if c.PID == 0 || c.CgroupPath == "" {
			defer refresh.ask(ctx, k, ch)
		}
	case ch.Type == model.EventCreate && ch.Container != nil:
		c = *ch.Container
		c.EngineID, c.Namespace, c.PID = w.engine.ID, ch.Namespace, 0
		c.ImageID = w.imageID(c)
		if c.ImageID == "" {
			w.log.Warn("container reported without its image ID until its inspect answers: the image it was created from could not be looked up",
				logging.KeyContainerID, c.ID, "container", c.Name, "image", imageLookupRef(c))
		}
		defer refresh.ask(ctx, k, ch)
	default:
		c, err = look(ctx, ch)
		looked = true
	}
	switch {
	case err == nil:
	case errors.Is(err, engine.ErrNotFound) || errors.Is(err, context.Canceled):
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !known && ch.Type != model.EventCreate {
			// Gone before we could look: it was never in the model and its
			// destroy will be skipped as well.
			return nil
		}
		if !known && foreign(w.adapter) {
			// Possibly another engine's (podman's journal carries every
			// user's events): the engine that owns it reports it.
			w.log.Debug("event of a container the engine does not know, skipped", logging.KeyContainerID, ch.ContainerID, "event", string(ch.Type))
			return nil
		}
		c = cur
		if !known {
			c = model.Container{ID: ch.ContainerID, Namespace: ch.Namespace, EngineID: w.engine.ID}
		}
	default:
		if !known {
			return fmt.Errorf("inspect: %w", err)
		}
		w.log.Debug("inspect after event failed, using the model's state", logging.KeyContainerID, ch.ContainerID, logging.Err(err))
		c = cur
	}
	// The engine's record tells how the run of a die without an exit code
	// ended when it answered and holds that run, ended.
	exitTold := ch.ExitCode != nil || looked && err == nil && !c.State.Running() && !(known && ahead(c, ch.Time))
	if known && ahead(c, ch.Time) {
		// The inspection came after later events of the container (it
		// waited for the request budget, or served a batch): its run
		// belongs to them, the model's to this event.
		c.StartedAt, c.FinishedAt, c.ExitCode, c.OOMKilled = cur.StartedAt, cur.FinishedAt, cur.ExitCode, cur.OOMKilled
	}
	switch ch.Type {
	case model.EventCreate:
		c.State = model.StateCreated
		c.PID = 0
		if c.CreatedAt.IsZero() {
			c.CreatedAt = ch.Time
		}
	case model.EventStart, model.EventUnpause:
		c.State = model.StateRunning
		if c.StartedAt.IsZero() || (known && !c.StartedAt.After(cur.StartedAt) && ch.Type == model.EventStart) {
			c.StartedAt = ch.Time
		}
	case model.EventPause:
		c.State = model.StatePaused
	case model.EventOOM:
		c.State = cur.State
		if !known {
			c.State = model.StateRunning
		}
		c.OOMKilled = true
	case model.EventDie:
		c.State = model.StateExited
		c.PID = 0
		if ch.ExitCode != nil {
			c.ExitCode = *ch.ExitCode
		}
		if c.FinishedAt.IsZero() || c.FinishedAt.Before(ch.Time.Add(-time.Minute)) || c.FinishedAt.Before(c.StartedAt) {
			c.FinishedAt = ch.Time
		}
		c.OOMKilled = c.OOMKilled || (known && cur.OOMKilled)
	case model.EventStop:
		if known {
			c.State = cur.State
		}
	case model.EventHealth:
		// The inspection gave the new status; the state follows the
		// lifecycle events.
		if known {
			c.State = cur.State
		}
	default:
		return fmt.Errorf("unknown event type %q", ch.Type)
	}
	if !known && ch.Type != model.EventCreate {
		// The engine has the container but its create never reached the
		// watcher (dockerd drops events for a subscriber that is far
		// behind): tell it as a resync would, so that every container the
		// watcher reports has its create.
		created := c
		created.State, created.PID = model.StateCreated, 0
		w.store.Emit(model.Event{Type: model.EventCreate, Time: cmp.Or(c.CreatedAt, ch.Time), EngineID: w.engine.ID, Container: &created, Resync: true})
	}
	c = w.store.Upsert(c)
	w.emit(ch, c, !exitTold)
	return nil
}

// aheadSlack absorbs the difference between an engine's event time and the
// state time it records for the same transition.
const aheadSlack = 50 * time.Millisecond

// ahead reports whether inspection c saw the container start or finish
// after an event at t: it describes a later run than the event's.
func ahead(c model.Container, t time.Time) bool {
	limit := t.Add(aheadSlack)
	return c.StartedAt.After(limit) || c.FinishedAt.After(limit)
}

// stale reports whether a change is already reflected in the model's cur.
func stale(ch engine.Change, cur model.Container) bool {
	switch ch.Type {
	case model.EventStart:
		return cur.State.Running() || (cur.State == model.StateExited && !cur.FinishedAt.Before(ch.Time))
	case model.EventPause:
		return cur.State != model.StateRunning
	case model.EventUnpause:
		return cur.State != model.StatePaused
	case model.EventDie, model.EventOOM:
		return !cur.State.Running() || cur.StartedAt.After(ch.Time)
	}
	return false
}

// emit tells ch's event of c; exitUnknown: for a die, neither the event
// nor the engine's record told its exit code.
func (w *Watcher) emit(ch engine.Change, c model.Container, exitUnknown bool) {
	ev := model.Event{Type: ch.Type, Time: ch.Time, EngineID: w.engine.ID, Container: &c, Signal: ch.Signal}
	switch ch.Type {
	case model.EventDie:
		ev.ExitCode, ev.ExitUnknown = c.ExitCode, exitUnknown
		if ev.Signal == "" && !exitUnknown {
			ev.Signal = exitSignal(c.ExitCode)
		}
	case model.EventStop:
		// Docker 20.10 sends a stop after its die, the Docker 29 line
		// before it: the exit code is known only in the first case.
		if c.State.Running() {
			ev.ExitUnknown = true
		} else {
			ev.ExitCode = c.ExitCode
		}
	}
	w.store.Emit(ev)
}
