package watch

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// countingEngine is a fakeEngine that counts its inspects and, with gate
// set, holds each one until the test lets it go (an inspect waiting for the
// request budget).
type countingEngine struct {
	*fakeEngine
	inspects atomic.Int64
	gate     chan chan struct{}
}

func (c *countingEngine) Inspect(ctx context.Context, id string) (model.Container, error) {
	c.inspects.Add(1)
	if c.gate != nil {
		release := make(chan struct{})
		select {
		case c.gate <- release:
		case <-ctx.Done():
			return model.Container{}, ctx.Err()
		}
		select {
		case <-release:
		case <-ctx.Done():
			return model.Container{}, ctx.Err()
		}
	}
	return c.fakeEngine.Inspect(ctx, id)
}

// runCounted runs a watcher of a countingEngine until the test ends and
// returns it with the store's event subscription, after the first list.
func runCounted(t *testing.T, before []fakeOp, gated bool) (*countingEngine, *Watcher, *model.Subscription) {
	t.Helper()
	return runCountedAs(t, before, gated, nil)
}

// runCountedAs is runCounted with the watcher's adapter made by as from the
// countingEngine (nil: the countingEngine itself).
func runCountedAs(t *testing.T, before []fakeOp, gated bool, as func(*countingEngine) engine.Adapter) (*countingEngine, *Watcher, *model.Subscription) {
	t.Helper()
	log := testLogger(t)
	store := model.NewStore(log)
	e := model.Engine{ID: "fake", Type: model.Docker, Endpoint: "/run/fake.sock"}
	store.PutEngine(e)
	sub := store.Subscribe(1000)
	t.Cleanup(sub.Close)
	f := &countingEngine{fakeEngine: newFakeEngine(store, e.ID)}
	if gated {
		f.gate = make(chan chan struct{})
	}
	f.do(before...)
	// A long window: everything one f.do sends is one batch.
	var a engine.Adapter = f
	if as != nil {
		a = as(f)
	}
	w := NewWatcher(e, a, store, Options{MinBackoff: time.Millisecond, CoalesceWindow: 100 * time.Millisecond}, log)
	runWatcher(t, w)
	eventually(t, 10*time.Second, "the watcher lists", func() bool { return f.idle(w, 1) })
	return f, w, sub
}

func drained(sub *model.Subscription) []string {
	var got []string
	for len(sub.C()) > 0 {
		got = append(got, fakeEvent(<-sub.C()))
	}
	return got
}

func TestWatcherCoalescesInspects(t *testing.T) {
	tests := []struct {
		name          string
		before, burst []fakeOp
		want          []string
		// inspects and coalesced are the inspects made and the events
		// served without one.
		inspects, coalesced int64
	}{
		{
			name:  "a burst of one container's lifecycle costs one inspect",
			burst: []fakeOp{create("a"), start("a"), die("a", 137)},
			want:  []string{"create a", "start a", "die a exit=137 SIGKILL"},
			// The die needs no inspect at all (dieSaysAll).
			inspects: 1, coalesced: 1,
		},
		{
			name:     "a restart loop keeps every die and start in order",
			before:   []fakeOp{create("a"), start("a")},
			burst:    []fakeOp{die("a", 1), start("a"), die("a", 2), start("a")},
			want:     []string{"die a exit=1", "start a", "die a exit=2", "start a"},
			inspects: 1, coalesced: 1,
		},
		{
			name:     "two containers are inspected once each",
			burst:    []fakeOp{create("a"), create("b"), start("a"), start("b")},
			want:     []string{"create a", "create b", "start a", "start b"},
			inspects: 2, coalesced: 2,
		},
		{
			name:     "a container created and removed within the window is still reported",
			burst:    []fakeOp{create("a"), start("a"), die("a", 0), destroy("a")},
			want:     []string{"create a", "start a", "die a exit=0", "destroy a"},
			inspects: 1, coalesced: 1,
		},
		{
			name:     "events the list already reflects cost nothing",
			before:   []fakeOp{create("a"), start("a")},
			burst:    []fakeOp{destroy("b")},
			want:     nil,
			inspects: 0, coalesced: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, w, sub := runCounted(t, tt.before, false)
			f.do(tt.burst...)
			eventually(t, 10*time.Second, "the watcher handles the burst", func() bool { return f.idle(w, 1) })
			if got := drained(sub); !slices.Equal(got, tt.want) {
				t.Errorf("events:\n got %q\nwant %q", got, tt.want)
			}
			if n, c := f.inspects.Load(), int64(w.Stats().Coalesced); n != tt.inspects || c != tt.coalesced {
				t.Errorf("%d inspects, %d coalesced; want %d, %d", n, c, tt.inspects, tt.coalesced)
			}
		})
	}
}

func TestWatcherLosesNoEventWhileAnInspectWaits(t *testing.T) {
	f, w, sub := runCounted(t, []fakeOp{create("a"), start("a"), die("a", 0)}, true)
	f.do(start("a"))
	release := <-f.gate // the start's inspect waits for its token
	f.do(die("a", 1), start("a"), die("a", 2), start("a"))
	close(release)
	go func() {
		// Later inspects go at once.
		for r := range f.gate {
			close(r)
		}
	}()
	defer close(f.gate)
	eventually(t, 10*time.Second, "the watcher handles the events", func() bool { return f.idle(w, 1) })
	want := []string{"start a", "die a exit=1", "start a", "die a exit=2", "start a"}
	if got := drained(sub); !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
	// One inspect for the first start, one for the four events queued
	// behind it, whose first start builds on the model and whose dies need
	// none.
	if n := f.inspects.Load(); n != 2 {
		t.Errorf("%d inspects, want 2", n)
	}
	if c := w.Stats().Coalesced; c != 1 {
		t.Errorf("%d coalesced, want 1", c)
	}
}

// createSaying is create, with the event saying what was created (name,
// image, a label), as Docker's create events do.
func createSaying(id, image string) fakeOp {
	return func(f *fakeEngine) {
		f.now = f.now.Add(time.Second)
		c := model.Container{ID: id, Name: id, ImageName: image, ImageID: "sha256:" + image, State: model.StateCreated,
			CreatedAt: f.now, Labels: map[string]string{"tier": "front"}, CgroupPath: "/system.slice/" + id}
		f.containers[id] = c
		said := model.Container{ID: id, Name: id, ImageName: image, State: model.StateCreated, Labels: map[string]string{"tier": "front"}}
		f.send(engine.Change{Type: model.EventCreate, ContainerID: id, Time: f.now, Container: &said}, nil)
	}
}

func TestWatcherReportsCreateAndStartWithoutWaitingForTheEngine(t *testing.T) {
	f, w, sub := runCounted(t, nil, true)
	f.do(createSaying("a", "web"), start("a"))
	// The refresh's inspect is held (the engine is busy starting the
	// container): both events are out all the same.
	release := <-f.gate
	eventually(t, 10*time.Second, "both events without an answer from the engine", func() bool { return len(sub.C()) == 2 })
	created := <-sub.C()
	if c := created.Container; created.Type != model.EventCreate || c.Name != "a" || c.ImageName != "web" || c.Labels["tier"] != "front" || c.ImageID != "" {
		t.Errorf("the create as its event said it: %+v", c)
	}
	if ev := <-sub.C(); ev.Type != model.EventStart || ev.Container.State != model.StateRunning {
		t.Errorf("then the start: %s %+v", ev.Type, ev.Container)
	}
	close(release)
	eventually(t, 10*time.Second, "the refresh brings what only the engine knows", func() bool {
		c, ok := w.store.Container(model.ContainerKey{EngineID: "fake", ID: "a"})
		return ok && c.ImageID == "sha256:web" && c.CgroupPath == "/system.slice/a" && c.State == model.StateRunning
	})
	if n := f.inspects.Load(); n != 1 {
		t.Errorf("%d inspects, want 1 for both events", n)
	}
	if got := drained(sub); len(got) != 0 {
		t.Errorf("the refresh emitted %q", got)
	}

	// The next create of a container of the same image says its image ID
	// at once.
	go func() {
		for r := range f.gate {
			close(r)
		}
	}()
	defer close(f.gate)
	f.do(createSaying("b", "web"))
	eventually(t, 10*time.Second, "the second create", func() bool { return len(sub.C()) == 1 })
	if c := (<-sub.C()).Container; c.ImageID != "sha256:web" {
		t.Errorf("a create of a known image without its ID: %+v", c)
	}
	eventually(t, 10*time.Second, "the second refresh", func() bool { return f.idle(w, 1) })
}

func TestSameRun(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	running := func(started time.Time) model.Container {
		return model.Container{State: model.StateRunning, StartedAt: started}
	}
	exited := model.Container{State: model.StateExited, StartedAt: t0, FinishedAt: t0.Add(time.Second)}
	tests := []struct {
		name    string
		cur, in model.Container
		want    bool
	}{
		{"the engine recorded the start a little before its event", running(t0), running(t0.Add(-20 * time.Millisecond)), true},
		{"the inspect saw the container dead: the model's run is not over", running(t0), exited, false},
		{"the inspect saw a later run", running(t0), running(t0.Add(3 * time.Second)), false},
		{"the inspect saw a run long before", running(t0), running(t0.Add(-time.Minute)), false},
		{"both see it created", model.Container{State: model.StateCreated}, model.Container{State: model.StateCreated}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sameRun(tt.cur, tt.in); got != tt.want {
				t.Errorf("sameRun = %v, want %v", got, tt.want)
			}
		})
	}
}
