package telemetry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/model"
)

// storeWorkload reads a Store the way agentd's wiring does.
type storeWorkload struct{ s *model.Store }

func (w storeWorkload) Engines() []model.Engine       { return w.s.Snapshot().Engines }
func (w storeWorkload) Containers() []model.Container { return w.s.Snapshot().Containers }
func (w storeWorkload) Container(k model.ContainerKey) (model.Container, bool) {
	return w.s.Container(k)
}
func (w storeWorkload) Engine(id string) (model.Engine, bool) { return w.s.Engine(id) }

// upSink keeps the agentd.engine.up point of the last export.
type upSink struct {
	noMetrics
	up []int64
}

func (s *upSink) ExportMetrics(_ context.Context, rms []*metricdata.ResourceMetrics) error {
	s.up = s.up[:0]
	for _, rm := range rms {
		for _, m := range rm.ScopeMetrics[0].Metrics {
			if m.Name == Metrics[mEngineUp].Name {
				s.up = append(s.up, m.Data.(metricdata.Gauge[int64]).DataPoints[0].Value)
			}
		}
	}
	return nil
}

func TestEngineUpFollowsTheModelsConnectedState(t *testing.T) {
	store := model.NewStore(slog.New(slog.DiscardHandler))
	store.PutEngine(model.Engine{ID: "e", Type: model.Docker})
	sink := &upSink{}
	p, err := NewPipeline(DefaultConfig(), Options{Workload: storeWorkload{store}, Sampler: noStats{}, Metrics: sink, Logs: &memLogs{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder(&p.cfg, Host{}, "test")
	for _, step := range []struct {
		name string
		set  func()
		want int64
	}{
		{"an engine not listed yet is down", func() {}, 0},
		{"an engine whose watcher is connected is up", func() { store.SetConnected("e", true) }, 1},
		{"an engine whose watcher reconnects is down", func() { store.SetConnected("e", false) }, 0},
		{"a rediscovered engine keeps its state", func() {
			store.SetConnected("e", true)
			store.PutEngine(model.Engine{ID: "e", Type: model.Docker, Version: "2"})
		}, 1},
	} {
		t.Run(step.name, func(t *testing.T) {
			step.set()
			p.round(context.Background(), b, &roundScratch{})
			if len(sink.up) != 1 || sink.up[0] != step.want {
				t.Fatalf("agentd.engine.up points %v, want [%d]", sink.up, step.want)
			}
		})
	}
}

// failingSink fails its exports while down is set.
type failingSink struct {
	noMetrics
	down bool
}

func (s *failingSink) ExportMetrics(context.Context, []*metricdata.ResourceMetrics) error {
	if s.down {
		return errors.New("connection refused")
	}
	return nil
}

// TestExportFailuresAreOneProblem: a collector that is down for many rounds
// is one journal line when it starts and one when it ends (the repeats in
// between are once a minute), and LastExport says how the last one went.
func TestExportFailuresAreOneProblem(t *testing.T) {
	var logs bytes.Buffer
	store := model.NewStore(slog.New(slog.DiscardHandler))
	store.PutEngine(model.Engine{ID: "e", Type: model.Docker})
	sink := &failingSink{down: true}
	p, err := NewPipeline(DefaultConfig(), Options{Workload: storeWorkload{store}, Sampler: noStats{}, Metrics: sink, Logs: &memLogs{}}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder(&p.cfg, Host{}, "test")
	for range 20 {
		p.round(context.Background(), b, &roundScratch{})
	}
	if at, err := p.LastExport(); at.IsZero() || err == nil {
		t.Fatalf("LastExport() = %v, %v during the outage", at, err)
	}
	sink.down = false
	p.round(context.Background(), b, &roundScratch{})
	if _, err := p.LastExport(); err != nil {
		t.Fatalf("LastExport() error %v after recovery", err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "connection refused") ||
		!strings.Contains(lines[0], "message_id="+logging.MessageIDExportFailure) || !strings.Contains(lines[1], "resolved") || !strings.Contains(lines[1], "failures=20") {
		t.Fatalf("log lines:\n%s", logs.String())
	}
}

// TestRoundScratchKeepsNoContainer: the slices a round keeps for the next
// hold no container in between (a removed container is not kept alive by
// them), are reused while the host keeps its size, and are let go when a
// round needs a quarter of them.
func TestRoundScratchKeepsNoContainer(t *testing.T) {
	store := model.NewStore(slog.New(slog.DiscardHandler))
	store.PutEngine(model.Engine{ID: "e", Type: model.Docker})
	store.SetConnected("e", true)
	put := func(n int) {
		for i := range n {
			store.Upsert(model.Container{EngineID: "e", ID: fmt.Sprintf("c%03d", i), Name: fmt.Sprintf("n%d", i), State: model.StateRunning, PID: 1000 + i})
		}
		store.Upsert(model.Container{EngineID: "e", ID: "gone", State: model.StateExited})
	}
	put(100)
	p, err := NewPipeline(DefaultConfig(), Options{Workload: storeWorkload{store}, Sampler: noStats{}, Metrics: &upSink{}, Logs: &memLogs{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder(&p.cfg, Host{}, "test")
	var sc roundScratch
	empty := func(what string) {
		t.Helper()
		for _, c := range sc.running[:cap(sc.running)] {
			if c.ID != "" {
				t.Fatalf("%s: the scratch keeps running container %q", what, c.ID)
			}
		}
		for _, c := range sc.idle[:cap(sc.idle)] {
			if c.ID != "" {
				t.Fatalf("%s: the scratch keeps idle container %q", what, c.ID)
			}
		}
		for _, s := range sc.batch[:cap(sc.batch)] {
			if s.container != nil || s.engine != nil {
				t.Fatalf("%s: the batch keeps a container", what)
			}
		}
	}
	p.round(context.Background(), b, &sc)
	empty("after the first round")
	if cap(sc.running) < 100 {
		t.Fatalf("running scratch of capacity %d after a round of 100", cap(sc.running))
	}
	first := &sc.running[:1][0]
	p.round(context.Background(), b, &sc)
	empty("after the second round")
	if &sc.running[:1][0] != first {
		t.Error("the second round of the same host did not reuse the scratch")
	}
	for i := 10; i < 100; i++ {
		store.Delete(model.ContainerKey{EngineID: "e", ID: fmt.Sprintf("c%03d", i)})
	}
	p.round(context.Background(), b, &sc)
	empty("after the host shrank")
	if cap(sc.running) != 0 {
		t.Errorf("running scratch of capacity %d kept after a round of 10", cap(sc.running))
	}
}
