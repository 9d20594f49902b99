package telemetry

import (
	"context"
	"testing"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/agentd-dev/agentd/model"
)

// prefixOf renders a record as its event name and its engine prefix.
func prefixOf(r sdklog.Record) string {
	res := r.Resource()
	v, _ := res.Set().Value(AttrEnginePrefix)
	return r.EventName() + " prefix=" + v.AsString()
}

// TestEventsCarryTheEnginesPlaceAsItIsNow: an engine found inside a
// container before the engine around it listed is placed a moment later
// (discovery's Relocate); its found record and its containers' records carry
// the place the model has when they go out, not the one it had when found.
func TestEventsCarryTheEnginesPlaceAsItIsNow(t *testing.T) {
	store := model.NewStore(nil)
	sub := store.Subscribe(64)
	defer sub.Close()
	e := model.Engine{ID: "nested", Type: model.Podman, Endpoint: "/proc/7/root/run/podman/podman.sock"}
	store.PutEngine(e)
	found := e
	store.Emit(model.Event{Type: model.EventEngineFound, Time: time.Now(), EngineID: e.ID, Engine: &found})
	// Placed before the pipeline handles the found event.
	e.Prefix, e.ParentContainerID, e.ParentEngineID = "th", "abc", "host-docker"
	store.PutEngine(e)
	c := model.Container{EngineID: e.ID, ID: "c1", Name: "web", State: model.StateRunning}
	store.Upsert(c)
	store.Emit(model.Event{Type: model.EventStart, Time: time.Now(), EngineID: e.ID, Container: &c})

	logs := &memLogs{render: prefixOf}
	cfg := DefaultConfig()
	cfg.EventFlushInterval = 10 * time.Millisecond
	p, err := NewPipeline(cfg, Options{Workload: storeWorkload{store}, Events: sub.C(), Sampler: noStats{}, Metrics: noMetrics{}, Logs: logs}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	for deadline := time.Now().Add(5 * time.Second); len(logs.got()) < 2 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []string{"agentd.engine.found prefix=th", "container.start prefix=th"}
	got := logs.got()
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("records %q, want %q", got, want)
	}
}
