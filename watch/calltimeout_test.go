package watch

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/model"
)

// hungEngine accepts calls and, for the calls named in hang, never answers
// until the caller's context ends; the others answer as a fakeEngine does.
type hungEngine struct {
	*fakeEngine
	hangSubscribe, hangList atomic.Int32 // calls left that hang
	hung                    atomic.Int32 // calls that hung and were cut off
}

func (h *hungEngine) Subscribe(ctx context.Context) (engine.Stream, error) {
	if h.hangSubscribe.Add(-1) >= 0 {
		<-ctx.Done()
		h.hung.Add(1)
		return nil, ctx.Err()
	}
	return h.fakeEngine.Subscribe(ctx)
}

func (h *hungEngine) List(ctx context.Context) ([]model.Container, error) {
	if h.hangList.Add(-1) >= 0 {
		<-ctx.Done()
		h.hung.Add(1)
		return nil, ctx.Err()
	}
	return h.fakeEngine.List(ctx)
}

func TestWatcherCallTimeout(t *testing.T) {
	for _, tc := range []struct {
		name            string
		subscribe, list int32
	}{
		{"a subscribe that never answers is cut off and retried", 2, 0},
		{"a list that never answers is cut off and retried", 0, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			enginetest.NoLeaks(t)
			store := model.NewStore(nil)
			e := model.Engine{ID: "e", Type: model.Docker, Endpoint: "/fake.sock"}
			store.PutEngine(e)
			h := &hungEngine{fakeEngine: newFakeEngine(store, e.ID)}
			h.do(create("a"), start("a"))
			h.hangSubscribe.Store(tc.subscribe)
			h.hangList.Store(tc.list)
			w := NewWatcher(e, h, store, Options{CallTimeout: 100 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}, enginetest.Logger(t))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); _ = w.Run(ctx) }()
			defer func() { cancel(); <-done }()
			deadline := time.Now().Add(30 * time.Second)
			for w.Stats().Syncs == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no list within 30 s; stats %+v", w.Stats())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if got := h.hung.Load(); got != 2 {
				t.Errorf("%d calls were cut off, want 2", got)
			}
			if got := w.Stats().Reconnects; got != 2 {
				t.Errorf("%d reconnects, want 2", got)
			}
			if _, ok := store.Container(model.ContainerKey{EngineID: e.ID, ID: "a"}); !ok {
				t.Error("the container is not in the store after the list")
			}
		})
	}
}
