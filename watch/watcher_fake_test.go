package watch

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// fakeEngine is an engine.Adapter over a container table the test changes
// with fakeOps. A change reaches the open stream, if any, as the engine's
// event; while the engine is down there is no stream and the change is only
// in the table, to be found by the next List.
type fakeEngine struct {
	store *model.Store
	id    string

	mu         sync.Mutex
	now        time.Time // the engine's clock, one second per op
	containers map[string]model.Container
	stream     *fakeStream
	down       bool
	// failSubscribe, failList and failInspect make that many calls fail.
	failSubscribe, failList, failInspect int
	// inspects counts the Inspect calls.
	inspects int
	// downFailures counts the Subscribes refused while down.
	downFailures int
	// atList are applied by the next List that succeeds, with the stream
	// open: the list reflects them and the stream carries their events.
	atList []fakeOp
	// seen records the engine's Connected state in the Store at each call.
	seen map[string][]bool
}

type fakeOp func(f *fakeEngine)

var _ engine.Adapter = (*fakeEngine)(nil)

func newFakeEngine(store *model.Store, id string) *fakeEngine {
	return &fakeEngine{store: store, id: id, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		containers: map[string]model.Container{}, seen: map[string][]bool{}}
}

// observe records the connected state at a call; f.mu is held.
func (f *fakeEngine) observe(call string) {
	e, _ := f.store.Engine(f.id)
	f.seen[call] = append(f.seen[call], e.Connected)
}

func (f *fakeEngine) Subscribe(context.Context) (engine.Stream, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observe("Subscribe")
	switch {
	case f.down:
		f.downFailures++
		return nil, fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	case f.failSubscribe > 0:
		f.failSubscribe--
		return nil, fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	}
	f.stream = &fakeStream{f: f, wake: make(chan struct{}, 1)}
	return f.stream, nil
}

func (f *fakeEngine) List(context.Context) ([]model.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observe("List")
	if f.failList > 0 {
		f.failList--
		return nil, errors.New("list: 500 Internal Server Error")
	}
	for _, op := range f.atList {
		op(f)
	}
	f.atList = nil
	return slices.SortedFunc(maps.Values(f.containers), func(a, b model.Container) int { return strings.Compare(a.ID, b.ID) }), nil
}

func (f *fakeEngine) Inspect(_ context.Context, id string) (model.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.inspects++
	if f.failInspect > 0 {
		f.failInspect--
		return model.Container{}, fmt.Errorf("inspect %s: context deadline exceeded", id)
	}
	c, ok := f.containers[id]
	if !ok {
		return model.Container{}, fmt.Errorf("inspect %s: %w", id, engine.ErrNotFound)
	}
	return c, nil
}

// do applies ops one by one, as the engine would.
func (f *fakeEngine) do(ops ...fakeOp) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, op := range ops {
		op(f)
	}
}

// idle reports whether the watcher has handled everything its stream carried
// (it waits in Next again) after at least syncs lists.
func (f *fakeEngine) idle(w *Watcher, syncs uint64) bool {
	f.mu.Lock()
	s := f.stream
	f.mu.Unlock()
	if s == nil || w.Stats().Syncs < syncs {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting && len(s.queue) == 0 && w.pending.Load() == 0
}

// send queues an event, or an error, on the open stream; f.mu is held.
func (f *fakeEngine) send(ch engine.Change, err error) {
	if f.stream != nil {
		f.stream.push(fakeItem{ch, err})
	}
}

// change moves container id to a new state at the engine's next tick and
// sends the event typ.
func change(typ model.EventType, id string, exit *int, set func(c *model.Container, at time.Time)) fakeOp {
	return func(f *fakeEngine) {
		f.now = f.now.Add(time.Second)
		c := f.containers[id]
		c.ID, c.Name = id, id
		set(&c, f.now)
		if typ == model.EventDestroy {
			delete(f.containers, id)
		} else {
			f.containers[id] = c
		}
		f.send(engine.Change{Type: typ, ContainerID: id, Time: f.now, ExitCode: exit}, nil)
	}
}

func create(id string) fakeOp {
	return change(model.EventCreate, id, nil, func(c *model.Container, at time.Time) { c.State, c.CreatedAt = model.StateCreated, at })
}

func start(id string) fakeOp {
	return change(model.EventStart, id, nil, func(c *model.Container, at time.Time) { c.State, c.StartedAt = model.StateRunning, at })
}

func die(id string, code int) fakeOp {
	return change(model.EventDie, id, &code, func(c *model.Container, at time.Time) {
		c.State, c.FinishedAt, c.ExitCode = model.StateExited, at, code
	})
}

// dieUntold is a die whose event does not carry the exit code the engine
// records (a CRI runtime's, podman's daemonless view's).
func dieUntold(id string, code int) fakeOp {
	return change(model.EventDie, id, nil, func(c *model.Container, at time.Time) {
		c.State, c.FinishedAt, c.ExitCode = model.StateExited, at, code
	})
}

// forgetRun makes the engine drop the run of container id without an event:
// containerd 2 deletes the task of a container whose shim it finds dead when
// it starts, and the container is left as created.
func forgetRun(id string) fakeOp {
	return func(f *fakeEngine) {
		c := f.containers[id]
		c.State, c.PID, c.StartedAt, c.FinishedAt, c.ExitCode = model.StateCreated, 0, time.Time{}, time.Time{}, 0
		f.containers[id] = c
	}
}

func destroy(id string) fakeOp {
	return change(model.EventDestroy, id, nil, func(*model.Container, time.Time) {})
}

// lost applies op at the engine without its event reaching the watcher: an
// engine that drops events for a subscriber far behind (dockerd does).
func lost(op fakeOp) fakeOp {
	return func(f *fakeEngine) {
		s := f.stream
		f.stream = nil
		op(f)
		f.stream = s
	}
}

// event sends a change that does not touch the table: a junk event.
func event(ch engine.Change) fakeOp { return func(f *fakeEngine) { f.send(ch, nil) } }

// streamErr sends a per-event error (ErrMalformed, ErrIgnored).
func streamErr(err error) fakeOp { return func(f *fakeEngine) { f.send(engine.Change{}, err) } }

// fail breaks the stream and keeps the engine down until recover.
func fail(f *fakeEngine) {
	f.send(engine.Change{}, fmt.Errorf("read: %w", syscall.ECONNRESET))
	f.stream, f.down = nil, true
}

// heal lets the engine answer again after fail.
func heal(f *fakeEngine) { f.down = false }

type fakeItem struct {
	ch  engine.Change
	err error
}

type fakeStream struct {
	f    *fakeEngine
	wake chan struct{} // capacity 1

	mu      sync.Mutex
	queue   []fakeItem
	waiting bool // Next waits on an empty queue
}

func (s *fakeStream) push(it fakeItem) {
	s.mu.Lock()
	s.queue = append(s.queue, it)
	s.waiting = false
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *fakeStream) Next(ctx context.Context) (engine.Change, error) {
	s.f.mu.Lock()
	s.f.observe("Next")
	s.f.mu.Unlock()
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			it := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			return it.ch, it.err
		}
		s.waiting = true
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return engine.Change{}, ctx.Err()
		}
	}
}

func (s *fakeStream) Close() error { return nil }

// fakeEvent renders an event as "die a exit=137 SIGKILL resync".
func fakeEvent(ev model.Event) string {
	s := strings.TrimPrefix(string(ev.Type), "container.") + " " + ev.Container.ID
	switch {
	case ev.Type == model.EventDie && ev.ExitUnknown:
		s += " exit=?"
	case ev.Type == model.EventDie:
		s += fmt.Sprintf(" exit=%d", ev.ExitCode)
	}
	if ev.Signal != "" {
		s += " " + ev.Signal
	}
	if ev.Resync {
		s += " resync"
	}
	return s
}

// runWatcher runs w until the test ends (its cleanups registered before run
// after w has stopped).
func runWatcher(t *testing.T, w *Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-done })
}

func TestWatcherAgainstAFakeEngine(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before changes the engine before the watcher starts; atList at the
		// last session's list (the resync's when there is an outage); after
		// once the first list is done.
		before, atList, after []fakeOp
		// outage, when set, breaks the stream after after, changes the engine
		// while it is down, then lets the watcher resync; resumed follows.
		outage, resumed []fakeOp
		// failSubscribe and failList make the first connection attempts fail.
		failSubscribe, failList int
		want                    []string
		malformed, ignored      uint64
	}{
		{
			name:  "a container's lifecycle is emitted in order, with the exit code and its signal",
			after: []fakeOp{create("a"), start("a"), die("a", 137), destroy("a")},
			want:  []string{"create a", "start a", "die a exit=137 SIGKILL", "destroy a"},
		},
		{
			name:  "a container whose create the engine never sent gets one, from the inspect its start needs",
			after: []fakeOp{lost(create("a")), start("a"), die("a", 1)},
			want:  []string{"create a resync", "start a", "die a exit=1"},
		},
		{
			name:  "a die told without its exit code has the code of the engine's record",
			after: []fakeOp{create("a"), start("a"), dieUntold("a", 3)},
			want:  []string{"create a", "start a", "die a exit=3"},
		},
		{
			name: "a die told without its exit code, of a container the engine no longer has, has none",
			after: []fakeOp{create("a"), start("a"), lost(destroy("a")),
				event(engine.Change{Type: model.EventDie, ContainerID: "a"})},
			want: []string{"create a", "start a", "die a exit=?"},
		},
		{
			name:   "a restart of a listed container is a die then a start",
			before: []fakeOp{create("a"), start("a")},
			after:  []fakeOp{die("a", 0), start("a")},
			want:   []string{"die a exit=0", "start a"},
		},
		{
			name:   "the events the first list already reflects are skipped, the later ones emitted",
			atList: []fakeOp{create("a"), start("a")},
			after:  []fakeOp{die("a", 3)},
			want:   []string{"die a exit=3"},
		},
		{
			name:    "the events a resync's list already reflects are emitted once, by the resync",
			outage:  []fakeOp{},
			atList:  []fakeOp{create("c"), start("c")},
			resumed: []fakeOp{die("c", 2)},
			want:    []string{"create c resync", "start c resync", "die c exit=2"},
		},
		{
			name:   "a container that died while the engine was down gets its die with the exit code, and no second start",
			before: []fakeOp{create("a"), start("a")},
			outage: []fakeOp{die("a", 137)},
			want:   []string{"die a exit=137 SIGKILL resync"},
		},
		{
			name:   "a container whose run the engine forgot while it was down gets a die with an unknown exit code",
			before: []fakeOp{create("a"), start("a")},
			outage: []fakeOp{forgetRun("a")},
			want:   []string{"die a exit=? resync"},
		},
		{
			name:   "a container restarted while the engine was down gets a die and a start",
			before: []fakeOp{create("a"), start("a")},
			outage: []fakeOp{die("a", 1), start("a")},
			want:   []string{"die a exit=? resync", "start a resync"},
		},
		{
			name:   "a container that ran and was removed while the engine was down gets a die and a destroy",
			before: []fakeOp{create("a"), start("a")},
			after:  []fakeOp{create("b")},
			outage: []fakeOp{die("a", 1), destroy("a"), start("b")},
			want:   []string{"create b", "start b resync", "die a exit=? resync", "destroy a resync"},
		},
		{
			name:   "an outage without changes resyncs without events",
			before: []fakeOp{create("a"), start("a"), create("b")},
			outage: []fakeOp{},
		},
		{
			name: "malformed, ignored and unusable events are counted and skipped, the stream goes on",
			after: []fakeOp{create("a"),
				streamErr(fmt.Errorf("decode: %w", engine.ErrMalformed)),
				streamErr(fmt.Errorf("image pull: %w", engine.ErrIgnored)),
				event(engine.Change{Type: model.EventStart}),
				event(engine.Change{Type: "container.exec", ContainerID: "a"}),
				start("a")},
			want:      []string{"create a", "start a"},
			malformed: 3, ignored: 1,
		},
		{
			name:          "an engine whose subscribe and list fail at first is watched once they answer",
			failSubscribe: 3, failList: 2,
			before: []fakeOp{create("a")},
			after:  []fakeOp{start("a")},
			want:   []string{"start a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := testLogger(t)
			store := model.NewStore(log)
			e := model.Engine{ID: "fake", Type: model.Docker, Endpoint: "/run/fake.sock"}
			store.PutEngine(e)
			sub := store.Subscribe(1000)
			t.Cleanup(sub.Close)
			f := newFakeEngine(store, e.ID)
			f.failSubscribe, f.failList = tc.failSubscribe, tc.failList
			f.do(tc.before...)
			if tc.outage == nil {
				f.atList = tc.atList
			}
			w := NewWatcher(e, f, store, Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, log)
			runWatcher(t, w)
			connected := func() bool { e, _ := store.Engine(e.ID); return e.Connected }

			eventually(t, 10*time.Second, "the watcher lists", func() bool { return f.idle(w, 1) })
			f.do(tc.after...)
			eventually(t, 10*time.Second, "the watcher handles the events", func() bool { return f.idle(w, 1) })
			if tc.outage != nil {
				f.do(fail)
				eventually(t, 10*time.Second, "the watcher retries the engine that is down", func() bool {
					f.mu.Lock()
					defer f.mu.Unlock()
					return f.downFailures >= 2
				})
				if connected() {
					t.Error("the engine is connected while it is down")
				}
				f.do(tc.outage...)
				f.do(func(f *fakeEngine) { f.atList = tc.atList }, heal)
				eventually(t, 10*time.Second, "the watcher resyncs", func() bool { return f.idle(w, 2) })
				f.do(tc.resumed...)
				eventually(t, 10*time.Second, "the watcher handles the events", func() bool { return f.idle(w, 2) })
			}

			var got []string
			for len(sub.C()) > 0 {
				got = append(got, fakeEvent(<-sub.C()))
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("events:\n got %q\nwant %q", got, tc.want)
			}
			if st := w.Stats(); st.Malformed != tc.malformed || st.Ignored != tc.ignored {
				t.Errorf("malformed %d, ignored %d; want %d, %d", st.Malformed, st.Ignored, tc.malformed, tc.ignored)
			}
			if !connected() {
				t.Error("the engine is not connected after the watcher listed it")
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			for call, want := range map[string]bool{"Subscribe": false, "List": false, "Next": true} {
				if i := slices.Index(f.seen[call], !want); i >= 0 {
					t.Errorf("connected %v during %s call %d of %d, want %v", !want, call, i+1, len(f.seen[call]), want)
				}
			}
			if n := len(f.seen["Subscribe"]); n < tc.failSubscribe+tc.failList+1 {
				t.Errorf("%d subscribes, want at least %d", n, tc.failSubscribe+tc.failList+1)
			}
		})
	}
}

// TestRefreshRetriesAFailedInspect proves that a container whose inspects
// fail (the engine busy, for longer than several retry delays) is inspected
// again until one answers, and that the retries end with the container.
func TestRefreshRetriesAFailedInspect(t *testing.T) {
	// Docker's create says what it created: the container is in the model
	// before any inspect answers.
	described := func(id string) fakeOp {
		return func(f *fakeEngine) {
			f.now = f.now.Add(time.Second)
			c := model.Container{ID: id, Name: id, State: model.StateCreated, CreatedAt: f.now}
			f.containers[id] = c
			f.send(engine.Change{Type: model.EventCreate, ContainerID: id, Time: f.now, Container: &c}, nil)
		}
	}
	withPID := func(id string, pid int) fakeOp {
		return change(model.EventStart, id, nil, func(c *model.Container, at time.Time) {
			c.State, c.StartedAt, c.PID = model.StateRunning, at, pid
		})
	}
	for _, tc := range []struct {
		name string
		// failFor is how long the engine's inspects fail.
		failFor time.Duration
		after   []fakeOp
		// wantPID is the PID the model ends with for container a.
		wantPID int
	}{
		{"a running container gets its PID once an inspect answers", 300 * time.Millisecond,
			[]fakeOp{described("a"), withPID("a", 4242)}, 4242},
		{"the retries of a container destroyed meanwhile end", time.Hour,
			[]fakeOp{described("a"), withPID("a", 4242), die("a", 1), destroy("a")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := testLogger(t)
			store := model.NewStore(log)
			e := model.Engine{ID: "fake", Type: model.Docker, Endpoint: "/run/fake.sock"}
			store.PutEngine(e)
			f := newFakeEngine(store, e.ID)
			// Backoff from 10 ms to 40 ms: the failures last several times the longest.
			w := NewWatcher(e, f, store, Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}, log)
			runWatcher(t, w)
			eventually(t, 10*time.Second, "the watcher lists", func() bool { return f.idle(w, 1) })
			f.do(func(f *fakeEngine) { f.failInspect = 1 << 30 })
			f.do(tc.after...)
			time.Sleep(tc.failFor % time.Minute)
			f.do(func(f *fakeEngine) {
				if tc.failFor < time.Minute {
					f.failInspect = 0
				}
			})
			eventually(t, 10*time.Second, "the watcher settles", func() bool { return f.idle(w, 1) })
			c, ok := store.Container(model.ContainerKey{EngineID: e.ID, ID: "a"})
			if tc.wantPID == 0 {
				f.mu.Lock()
				n := f.inspects
				f.mu.Unlock()
				time.Sleep(200 * time.Millisecond)
				f.mu.Lock()
				defer f.mu.Unlock()
				if ok || f.inspects != n {
					t.Errorf("container in the model: %v; inspects %d, then %d: want no more once it is destroyed", ok, n, f.inspects)
				}
				return
			}
			f.mu.Lock()
			n := f.inspects
			f.mu.Unlock()
			if !ok || c.PID != tc.wantPID {
				t.Errorf("container %+v (in the model: %v), want PID %d", c, ok, tc.wantPID)
			}
			// 300 ms of failures with delays up to 40 ms: more than a few tries.
			if n < 5 {
				t.Errorf("%d inspects, want a retry after each failure", n)
			}
		})
	}
}
