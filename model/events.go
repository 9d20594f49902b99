package model

import (
	"math/bits"
	"slices"
	"sync/atomic"

	"github.com/agentd-dev/agentd/internal/logging"
)

// DefaultSubscriptionBuffer is the buffer Subscribe uses for a size of 0 or less.
const DefaultSubscriptionBuffer = 1024

// Subscription receives the Store's events through a bounded buffer. When the
// buffer is full an event is dropped for this subscriber only, counted in
// Dropped and logged; other subscribers and the Store are not affected.
type Subscription struct {
	store   *Store
	ch      chan Event
	dropped atomic.Uint64
	closed  atomic.Bool
}

// Subscribe registers a subscriber with a buffer of size events (0 or less:
// DefaultSubscriptionBuffer). Read events from C; call Close when done.
func (s *Store) Subscribe(size int) *Subscription {
	if size <= 0 {
		size = DefaultSubscriptionBuffer
	}
	sub := &Subscription{store: s, ch: make(chan Event, size)}
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	next := append(slices.Clone(*s.subs.Load()), sub)
	s.subs.Store(&next)
	return sub
}

// C is the channel of events, in the order each watcher emitted them. It is
// never closed (so that a late Emit cannot panic); stop reading after Close.
func (sub *Subscription) C() <-chan Event { return sub.ch }

// Dropped is how many events this subscriber lost because its buffer was full.
func (sub *Subscription) Dropped() uint64 { return sub.dropped.Load() }

// Close unregisters the subscriber. Events emitted afterwards are not delivered.
// Close is idempotent.
func (sub *Subscription) Close() {
	if sub.closed.Swap(true) {
		return
	}
	s := sub.store
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	next := slices.DeleteFunc(slices.Clone(*s.subs.Load()), func(o *Subscription) bool { return o == sub })
	s.subs.Store(&next)
}

// Dropped is how many events all subscribers together lost.
func (s *Store) Dropped() uint64 { return s.dropped.Load() }

// Emit publishes ev to every subscriber, unless ev concerns a container that
// the deduplication rule hides (see Store). Apply the change to the Store
// (Upsert, Delete, ...) before emitting its event, so that a subscriber that
// reads a Snapshot after an event sees at least that state.
//
// Emit never blocks: it takes no lock while sending, and a subscriber whose
// buffer is full loses the event (counted and logged, the log thinned out to
// the 1st, 2nd, 4th, 8th, ... drop per subscriber).
func (s *Store) Emit(ev Event) {
	if ev.Container != nil && (!s.Visible(ev.Container) || ev.Resync && s.toldByDaemonless(ev.EngineID)) {
		return
	}
	if ev.Container != nil {
		c := *ev.Container // subscribers share it read-only
		ev.Container = &c
	}
	for _, sub := range *s.subs.Load() {
		if sub.closed.Load() {
			continue
		}
		select {
		case sub.ch <- ev:
		default:
			n := sub.dropped.Add(1)
			s.dropped.Add(1)
			if bits.OnesCount64(n) == 1 {
				s.log.Warn("event subscriber too slow, dropping events", logging.MessageID(logging.MessageIDQueueDrop),
					"event", string(ev.Type), logging.KeyEngineID, ev.EngineID, "dropped", n)
			}
		}
	}
}

// toldByDaemonless reports whether engine id is a podman service with a
// connected daemonless view of its storage, which has reported what the
// service's resync would tell again (see Store).
func (s *Store) toldByDaemonless(id string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.engines[id]
	if !ok || e.Type != Podman || e.Daemonless || e.Storage == "" {
		return false
	}
	for _, o := range s.engines {
		if o.Type == Podman && o.Daemonless && o.Connected && o.Storage == e.Storage && o.Prefix == e.Prefix {
			return true
		}
	}
	return false
}
