package watch

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/model"
)

// countingEngine counts the Inspects of a fakeEngine per container.
type countingEngine struct {
	*fakeEngine
	mu       sync.Mutex
	inspects map[string]int
}

func (c *countingEngine) Inspect(ctx context.Context, id string) (model.Container, error) {
	c.mu.Lock()
	c.inspects[id]++
	c.mu.Unlock()
	return c.fakeEngine.Inspect(ctx, id)
}

// TestADieOfAKnownContainerCostsNoInspect: a die carries its exit code and
// time, all it changes; only a die the model cannot place (an unknown
// container, or one without an exit code) is inspected.
func TestADieOfAKnownContainerCostsNoInspect(t *testing.T) {
	log := testLogger(t)
	store := model.NewStore(log)
	e := model.Engine{ID: "fake", Type: model.Docker, Endpoint: "/run/fake.sock"}
	store.PutEngine(e)
	sub := store.Subscribe(100)
	defer sub.Close()
	f := &countingEngine{fakeEngine: newFakeEngine(store, e.ID), inspects: map[string]int{}}
	w := NewWatcher(e, f, store, Options{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	defer func() { cancel(); <-done }()
	eventually(t, 10*time.Second, "the watcher lists", func() bool { return f.idle(w, 1) })

	f.do(create("a"), start("a"), die("a", 137), start("a"), die("a", 0), destroy("a"))
	eventually(t, 10*time.Second, "the watcher handles the events", func() bool { return f.idle(w, 1) })
	var got []string
	for len(sub.C()) > 0 {
		got = append(got, fakeEvent(<-sub.C()))
	}
	want := []string{"create a", "start a", "die a exit=137 SIGKILL", "start a", "die a exit=0", "destroy a"}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %q\nwant %q", got, want)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// create and the two starts; neither die, nor the destroy.
	if n := f.inspects["a"]; n != 3 {
		t.Errorf("%d inspects, want 3 (create, start, start)", n)
	}
}
