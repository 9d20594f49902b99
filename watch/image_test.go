package watch

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// imageEngine is a countingEngine that also looks images up
// (engine.ImageIDs), as Docker's adapter does, from a table the test sets.
type imageEngine struct {
	*countingEngine
	mu      sync.Mutex
	images  map[string]string // reference → ID; missing: not found
	lookups []string
}

var _ engine.ImageIDs = (*imageEngine)(nil)

func (e *imageEngine) ImageID(_ context.Context, ref string) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.lookups = append(e.lookups, ref)
	id, ok := e.images[ref]
	if !ok {
		return "", fmt.Errorf("inspect image %s: %w", ref, engine.ErrNotFound)
	}
	return id, nil
}

func (e *imageEngine) setImage(ref, id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.images[ref] = id
}

func (e *imageEngine) lookedUp() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.lookups...)
}

// TestWatcherReportsACreateWithItsImageIDFromTheStart: a create reported
// from its event, before the container's inspect (held here, as dockerd
// holds it while it starts the container) answers, carries the ID of the
// image its event names, looked up once per reference and batch, so that
// the container's resource is the same from its first export on.
func TestWatcherReportsACreateWithItsImageIDFromTheStart(t *testing.T) {
	var img *imageEngine
	f, _, sub := runCountedAs(t, nil, true, func(c *countingEngine) engine.Adapter {
		img = &imageEngine{countingEngine: c, images: map[string]string{"web": "sha256:web"}}
		return img
	})
	defer close(f.gate)
	created := func(what string, n int) []model.Event {
		t.Helper()
		eventually(t, 10*time.Second, what, func() bool { return len(sub.C()) >= n })
		evs := make([]model.Event, n)
		for i := range evs {
			evs[i] = <-sub.C()
		}
		return evs
	}

	t.Run("an image never seen before is looked up before the create goes out", func(t *testing.T) {
		f.do(createSaying("a", "web"), createSaying("b", "web"))
		for _, ev := range created("the creates, their inspects held", 2) {
			if ev.Type != model.EventCreate || ev.Container.ImageID != "sha256:web" {
				t.Errorf("%s of %s with image ID %q, want sha256:web", ev.Type, ev.Container.ID, ev.Container.ImageID)
			}
		}
		if got := img.lookedUp(); len(got) != 1 || got[0] != "web" {
			t.Errorf("image lookups %q, want one of web for the batch", got)
		}
		for range 2 {
			close(<-f.gate)
		}
	})
	t.Run("a tag moved to a new image is looked up again, not taken from before", func(t *testing.T) {
		img.setImage("web", "sha256:web2")
		f.do(createSaying("c", "web"))
		if ev := created("the create", 1)[0]; ev.Container.ImageID != "sha256:web2" {
			t.Errorf("create with image ID %q, want the tag's new sha256:web2", ev.Container.ImageID)
		}
		close(<-f.gate)
	})
	t.Run("an image that cannot be looked up leaves the create out without its ID, not held", func(t *testing.T) {
		f.do(createSaying("d", "gone"))
		if ev := created("the create", 1)[0]; ev.Type != model.EventCreate || ev.Container.ID != "d" || ev.Container.ImageID != "" {
			t.Errorf("%s %+v, want the create of d without an image ID", ev.Type, ev.Container)
		}
		close(<-f.gate)
	})
}
