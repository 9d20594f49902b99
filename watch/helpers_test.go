package watch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/engine/cri"
	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/engine/podman"
	"github.com/agentd-dev/agentd/model"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testLabel returns a label value unique to this test run.
func testLabel(t *testing.T) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return strings.ReplaceAll(t.Name(), "/", "-") + "-" + hex.EncodeToString(b)
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// harness runs one Watcher against a real engine and records the events of
// the containers that carry the test's label.
type harness struct {
	t     *testing.T
	store *model.Store
	w     *Watcher
	label string

	mu     sync.Mutex
	events []model.Event
	next   int // first event not yet consumed by expect
	// ignored holds event types the engine may or may not send (see
	// ignore): they are not recorded.
	ignored []model.EventType
}

// ignore stops recording events of the given types from now on: for an
// engine that sends them or not depending on timing, such as podman's stop,
// which comes before or after the die, or not at all.
func (h *harness) ignore(types ...model.EventType) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ignored = append(h.ignored, types...)
}

func startWatcher(t *testing.T, e model.Engine, a engine.Adapter, label string, opts Options) *harness {
	t.Helper()
	log := testLogger(t)
	h := &harness{t: t, store: model.NewStore(log), label: label}
	h.store.PutEngine(e)
	sub := h.store.Subscribe(100000)
	h.w = NewWatcher(e, a, h.store, opts, log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = h.w.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case ev := <-sub.C():
				if ev.Container != nil && ev.Container.Labels["agentd.test"] == label {
					h.mu.Lock()
					if !slices.Contains(h.ignored, ev.Type) {
						h.events = append(h.events, ev)
					}
					h.mu.Unlock()
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		sub.Close()
		if c, ok := a.(interface{ Close() error }); ok {
			_ = c.Close()
		}
		if d := sub.Dropped(); d != 0 {
			t.Errorf("test subscriber dropped %d events", d)
		}
	})
	h.waitSyncs(1)
	return h
}

func (h *harness) waitSyncs(n uint64) {
	h.t.Helper()
	eventually(h.t, 60*time.Second, fmt.Sprintf("watcher completes %d list(s)", n), func() bool { return h.w.Stats().Syncs >= n })
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting until %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expect waits for the next len(want) events of the test's containers and
// checks their types, in order.
func (h *harness) expect(want ...model.EventType) []model.Event {
	h.t.Helper()
	var got []model.Event
	deadline := time.Now().Add(60 * time.Second)
	for {
		h.mu.Lock()
		got = slices.Clone(h.events[h.next:])
		h.mu.Unlock()
		if len(got) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(got) > len(want) {
		got = got[:len(want)]
	}
	h.mu.Lock()
	h.next += len(got)
	h.mu.Unlock()
	if !slices.Equal(types(got), want) {
		h.t.Fatalf("events: got %v, want %v", types(got), want)
	}
	return got
}

// expectUnordered is expect for events an engine sends in an order of its
// own (Docker 20.10 tells a stop after its die, the Docker 29 line before).
func (h *harness) expectUnordered(want ...model.EventType) []model.Event {
	h.t.Helper()
	h.mu.Lock()
	deadline := time.Now().Add(60 * time.Second)
	for len(h.events)-h.next < len(want) && time.Now().Before(deadline) {
		h.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		h.mu.Lock()
	}
	got := slices.Clone(h.events[h.next:min(len(h.events), h.next+len(want))])
	h.next += len(got)
	h.mu.Unlock()
	g, w := types(got), slices.Clone(want)
	slices.Sort(g)
	slices.Sort(w)
	if !slices.Equal(g, w) {
		h.t.Fatalf("events: got %v, want %v in any order", types(got), want)
	}
	return got
}

// expectN waits for the next n events of the test's containers, of any type.
func (h *harness) expectN(n int) []model.Event {
	h.t.Helper()
	eventually(h.t, 60*time.Second, fmt.Sprintf("%d events arrive", n), func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return len(h.events)-h.next >= n
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	evs := slices.Clone(h.events[h.next : h.next+n])
	h.next += n
	return evs
}

// quiet asserts that no further event of the test's containers arrives for d.
func (h *harness) quiet(d time.Duration) {
	h.t.Helper()
	time.Sleep(d)
	h.mu.Lock()
	extra := slices.Clone(h.events[h.next:])
	h.mu.Unlock()
	if len(extra) > 0 {
		h.t.Fatalf("unexpected events: %v", describe(extra))
	}
}

func types(evs []model.Event) []model.EventType {
	out := make([]model.EventType, len(evs))
	for i, e := range evs {
		out[i] = e.Type
	}
	return out
}

func describe(evs []model.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		id := ""
		if e.Container != nil {
			id = e.Container.Name
		}
		out[i] = fmt.Sprintf("%s(%s exit=%d resync=%v)", e.Type, id, e.ExitCode, e.Resync)
	}
	return out
}

// state returns the model's state of container id, or "" when absent.
func (h *harness) state(ns, id string) model.ContainerState {
	c, ok := h.store.Container(model.ContainerKey{EngineID: h.w.engine.ID, Namespace: ns, ID: id})
	if !ok {
		return ""
	}
	return c.State
}

func (h *harness) container(id string) model.Container {
	h.t.Helper()
	c, ok := h.store.Container(model.ContainerKey{EngineID: h.w.engine.ID, ID: id})
	if !ok {
		h.t.Fatalf("container %s not in the model", id)
	}
	return c
}

// started waits until the model has the PID of running container id: a
// start is reported from the event, its PID follows from the refresh.
func (h *harness) started(id string) model.Container {
	h.t.Helper()
	return h.startedIn("", id)
}

// startedIn is started for a container of containerd namespace ns.
func (h *harness) startedIn(ns, id string) model.Container {
	h.t.Helper()
	var c model.Container
	eventually(h.t, 10*time.Second, "the started container's PID in the model", func() bool {
		var ok bool
		c, ok = h.store.Container(model.ContainerKey{EngineID: h.w.engine.ID, Namespace: ns, ID: id})
		return ok && c.State == model.StateRunning && c.PID > 0
	})
	return c
}

// labelled returns the IDs of the model's containers with the test's label.
func (h *harness) labelled() []string {
	var ids []string
	for _, c := range h.store.EngineContainers(h.w.engine.ID) {
		if c.Labels["agentd.test"] == h.label {
			ids = append(ids, c.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// testFamilies is agentd's list of engine families (agent.Families, which
// watch's tests cannot import).
func testFamilies() engine.Families {
	return engine.Families{podman.Family(nil), docker.Family(nil), containerd.Family(nil), cri.Family(nil)}
}
