package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// ErrUnsupported is wrapped by Supervisor.Add for an engine type without a constructor.
var ErrUnsupported = errors.New("unsupported engine type")

// ErrClosed is returned by Supervisor.Add after Close.
var ErrClosed = errors.New("supervisor closed")

// Supervisor owns one Watcher per engine: discovery tells it which engines
// exist (Add on found, Remove on lost) and it keeps exactly those watched.
// All methods are safe for concurrent use.
type Supervisor struct {
	store *model.Store
	fams  engine.Families
	opts  Options
	log   *slog.Logger

	mu       sync.Mutex
	closed   bool
	watchers map[string]*supervised
}

type supervised struct {
	engine  model.Engine
	watcher *Watcher
	adapter engine.Adapter
	cancel  context.CancelFunc
	done    chan struct{}
}

// NewSupervisor returns a Supervisor that writes to store and builds each
// engine's adapter with the family of its type in fams; opts is passed to
// every Watcher, and every watcher and adapter logs to log (nil discards).
func NewSupervisor(store *model.Store, fams engine.Families, opts Options, log *slog.Logger) *Supervisor {
	opts = opts.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{store: store, fams: fams, opts: opts, log: log, watchers: map[string]*supervised{}}
}

// Add starts watching e, records it in the Store and emits agentd.engine.found.
// Adding an engine that is already watched at the same endpoint only updates
// its record (version, PID, hierarchy) and tells its watcher (an engine back
// under a new PID is reconnected to at once, and resynced); at another
// endpoint the old watcher is replaced. The watcher runs until Remove or Close, not until ctx ends: ctx
// only bounds the adapter's construction.
func (s *Supervisor) Add(ctx context.Context, e model.Engine) error {
	fam, ok := s.fams.ForEngine(e)
	if !ok || fam.NewAdapter == nil {
		return fmt.Errorf("%s engine %s at %s: %w", e.Type, e.ID, e.Endpoint, ErrUnsupported)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if r, ok := s.watchers[e.ID]; ok && r.engine.Endpoint == e.Endpoint && r.engine.Type == e.Type {
		r.engine = e
		s.mu.Unlock()
		s.store.PutEngine(e)
		r.watcher.Update(e)
		return nil
	}
	s.mu.Unlock()
	s.Remove(e.ID)

	log := s.log.With(e.LogAttrs()...)
	a, err := fam.NewAdapter(e, log)
	if err != nil {
		return fmt.Errorf("%s engine %s at %s: %w", e.Type, e.ID, e.Endpoint, err)
	}
	w := NewWatcher(e, a, s.store, s.opts, s.log)
	wctx, cancel := context.WithCancel(context.Background())
	r := &supervised{engine: e, watcher: w, adapter: a, cancel: cancel, done: make(chan struct{})}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancel()
		closeAdapter(a, log)
		return ErrClosed
	}
	if _, ok := s.watchers[e.ID]; ok {
		// A concurrent Add of the same engine won.
		s.mu.Unlock()
		cancel()
		closeAdapter(a, log)
		return nil
	}
	s.watchers[e.ID] = r
	s.mu.Unlock()

	s.store.PutEngine(e)
	eng := e
	s.store.Emit(model.Event{Type: model.EventEngineFound, Time: time.Now(), EngineID: e.ID, Engine: &eng})
	log.Debug("watcher started")
	go func() {
		defer close(r.done)
		defer closeAdapter(a, log)
		_ = w.Run(wctx) // Run returns only when wctx ends
	}()
	return nil
}

func closeAdapter(a engine.Adapter, log *slog.Logger) {
	if c, ok := a.(io.Closer); ok {
		if err := c.Close(); err != nil {
			log.Debug("closing engine adapter", logging.Err(err))
		}
	}
}

// Remove stops watching the engine with id, waits for its watcher, prunes its
// containers from the Store and emits agentd.engine.lost. Removing an unknown
// engine does nothing.
func (s *Supervisor) Remove(id string) {
	s.mu.Lock()
	r, ok := s.watchers[id]
	delete(s.watchers, id)
	s.mu.Unlock()
	if !ok {
		return
	}
	s.stop(r)
}

func (s *Supervisor) stop(r *supervised) {
	r.cancel()
	<-r.done
	e, pruned, ok := s.store.DeleteEngine(r.engine.ID)
	if !ok {
		e = r.engine
	}
	s.store.Emit(model.Event{Type: model.EventEngineLost, Time: time.Now(), EngineID: e.ID, Engine: &e})
	s.log.Debug("watcher stopped", append(e.LogAttrs(), "pruned_containers", pruned)...)
}

// Watcher returns the watcher of the engine with id, for its Stats.
func (s *Supervisor) Watcher(id string) (*Watcher, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.watchers[id]
	if !ok {
		return nil, false
	}
	return r.watcher, true
}

// EngineIDs returns the IDs of the engines watched now, in no order.
func (s *Supervisor) EngineIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.watchers))
	for id := range s.watchers {
		ids = append(ids, id)
	}
	return ids
}

// Fallback returns the stats fallback of the engine with id (its adapter,
// when the adapter can read one container's stats through the engine's API),
// or nil. It suits stats.SamplerConfig.Fallback.
func (s *Supervisor) Fallback(id string) stats.Fallback {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.watchers[id]
	if !ok {
		return nil
	}
	if fb, ok := r.adapter.(stats.Fallback); ok {
		return fb
	}
	return nil
}

// Close stops every watcher and returns when all are gone. Their engines are
// pruned from the Store as by Remove. Add fails with ErrClosed afterwards.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	s.closed = true
	all := s.watchers
	s.watchers = map[string]*supervised{}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.stop(r)
		}()
	}
	wg.Wait()
	return nil
}
