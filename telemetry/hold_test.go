package telemetry

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// memLogs keeps exported log records as strings: render's, by default the
// event name and the OOM attribute.
type memLogs struct {
	render func(sdklog.Record) string
	mu     sync.Mutex
	recs   []string
}

func (m *memLogs) Export(_ context.Context, rs []sdklog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range rs {
		if m.render != nil {
			m.recs = append(m.recs, m.render(r))
			continue
		}
		oom := ""
		r.WalkAttributes(func(kv attribute.KeyValue) bool {
			if string(kv.Key) == AttrOOMKilled {
				oom = kv.Value.String()
			}
			return true
		})
		m.recs = append(m.recs, r.EventName()+" oom="+oom)
	}
	return nil
}
func (m *memLogs) Shutdown(context.Context) error   { return nil }
func (m *memLogs) ForceFlush(context.Context) error { return nil }
func (m *memLogs) got() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.recs...)
}

type noMetrics struct{}

func (noMetrics) ExportMetrics(context.Context, []*metricdata.ResourceMetrics) error { return nil }
func (noMetrics) Shutdown(context.Context) error                                     { return nil }

type noStats struct{}

func (noStats) Sample(_ context.Context, cs []model.Container, out []stats.Stats) ([]stats.Stats, error) {
	return append(out[:0], make([]stats.Stats, len(cs))...), nil
}

// lookupWorkload answers Container from a map the test changes.
type lookupWorkload struct {
	mu  sync.Mutex
	oom map[model.ContainerKey]bool
}

func (w *lookupWorkload) Engines() []model.Engine {
	return []model.Engine{{ID: "e", Type: model.Docker}}
}
func (w *lookupWorkload) Containers() []model.Container { return nil }
func (w *lookupWorkload) Engine(id string) (model.Engine, bool) {
	return model.Engine{ID: id, Type: model.Docker}, id == "e"
}
func (w *lookupWorkload) Container(k model.ContainerKey) (model.Container, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return model.Container{EngineID: k.EngineID, ID: k.ID, OOMKilled: w.oom[k]}, true
}
func (w *lookupWorkload) markOOM(k model.ContainerKey) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.oom[k] = true
}

func TestSIGKILLedDieWaitsForTheOOMFlag(t *testing.T) {
	run := func(t *testing.T, markAfter time.Duration, exitCode int, kernel func(*lookupWorkload) KernelLog) []string {
		w := &lookupWorkload{oom: map[model.ContainerKey]bool{}}
		var kl KernelLog
		if kernel != nil {
			kl = kernel(w)
		}
		events := make(chan model.Event, 8)
		logs := &memLogs{}
		cfg := DefaultConfig()
		cfg.EventFlushInterval = 20 * time.Millisecond
		p, err := NewPipeline(cfg, Options{Workload: w, Events: events, Sampler: noStats{}, Metrics: noMetrics{}, Logs: logs, KernelLog: kl}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx) }()
		c := &model.Container{EngineID: "e", ID: "c1", State: model.StateExited}
		events <- model.Event{Type: model.EventDie, EngineID: "e", Container: c, ExitCode: exitCode, Time: time.Now()}
		events <- model.Event{Type: model.EventDestroy, EngineID: "e", Container: c, Time: time.Now()}
		if markAfter >= 0 {
			time.Sleep(markAfter)
			w.markOOM(c.Key())
		}
		deadline := time.Now().Add(5 * time.Second)
		for len(logs.got()) < 2 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		return logs.got()
	}
	c1 := model.ContainerKey{EngineID: "e", ID: "c1"}
	tests := []struct {
		name      string
		markAfter time.Duration
		exitCode  int
		kernel    func(*lookupWorkload) KernelLog
		want      []string
	}{
		{"a kill the detector marks shortly after the die is flagged on the die, and order is kept", 50 * time.Millisecond, 137, nil,
			[]string{"container.die oom=true", "container.destroy oom="}},
		{"a kill nobody marks goes out unflagged after the hold", -1, 137, nil,
			[]string{"container.die oom=false", "container.destroy oom="}},
		{"a die that is not a SIGKILL is not held", 2 * dieHold, 1, nil,
			[]string{"container.die oom=false", "container.destroy oom="}},
		// A mark 150 ms later would flag a die held dieHold: a log read
		// through at once releases it before.
		{"a kernel log read through the die's arrival releases it at once", 150 * time.Millisecond, 137,
			func(*lookupWorkload) KernelLog { return kernelAt{} },
			[]string{"container.die oom=false", "container.destroy oom="}},
		{"a kill read on the way through is flagged on the die", -1, 137,
			func(w *lookupWorkload) KernelLog { return kernelAt{mark: func() { w.markOOM(c1) }} },
			[]string{"container.die oom=true", "container.destroy oom="}},
		{"a kernel log that cannot tell keeps the hold", 50 * time.Millisecond, 137,
			func(*lookupWorkload) KernelLog { return kernelAt{never: true} },
			[]string{"container.die oom=true", "container.destroy oom="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := run(t, tt.markAfter, tt.exitCode, tt.kernel)
			if len(got) != len(tt.want) {
				t.Fatalf("records %q, want %q", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("records %q, want %q", got, tt.want)
				}
			}
		})
	}
}

// kernelAt is a KernelLog read through every time at once (never: at no
// time); mark, if set, runs first, as the detector marks the kills it reads.
type kernelAt struct {
	never bool
	mark  func()
}

func (k kernelAt) ReadThrough(time.Time) bool {
	if k.never {
		return false
	}
	if k.mark != nil {
		k.mark()
	}
	return true
}
