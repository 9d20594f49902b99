package telemetry

import (
	"context"
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMetricsDoc keeps METRICS.md in step with the tables.
func TestMetricsDoc(t *testing.T) {
	got := MetricsDoc()
	if *update {
		if err := os.WriteFile("METRICS.md", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("METRICS.md")
	if err != nil || string(want) != got {
		t.Fatalf("METRICS.md is stale (err %v); run go test ./telemetry -run TestMetricsDoc -update", err)
	}
}

func fixedWorkload(n int) ([]sampled, []engineCount) {
	e := &model.Engine{ID: "e1", Type: model.Docker, Version: "20.10.24", Endpoint: "/run/docker.sock", PID: 100, Connected: true}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cs := make([]sampled, n)
	for i := range cs {
		c := &model.Container{ID: fmt.Sprintf("%064d", i), Name: fmt.Sprintf("c%d", i), EngineID: "e1", ImageName: "local/busybox",
			ImageTags: []string{"latest"}, ImageID: "sha256:abc", Labels: map[string]string{"app": "x", "secret": "y"},
			State: model.StateRunning, PID: 1000 + i, StartedAt: start}
		c.CreatedAt, c.RestartCount, c.Health = start.Add(-time.Hour), 1, model.HealthHealthy
		s := &stats.Stats{Time: start.Add(time.Minute), Has: ^stats.Field(0), CPUUserNanos: 1e9, CPUSystemNanos: 2e9, CPUUsage: 0.5,
			MemoryUsage: 1 << 20, MemoryRSS: 1 << 19, MemoryWorkingSet: 1 << 19, MemoryLimit: 1 << 30, DiskReadBytes: 1, DiskWriteBytes: 2,
			MemoryMinorFaults: 100, MemoryMajorFaults: 2, OOMKills: 1, CPUPeriods: 50, CPUThrottledPeriods: 5, CPUThrottledNanos: 25e7,
			Pressure: [3]stats.Pressure{
				stats.PressureCPU:    {SomeNanos: 15e8, HasSome: true},
				stats.PressureMemory: {SomeNanos: 2e6, FullNanos: 1e6, HasSome: true, HasFull: true},
				stats.PressureIO:     {SomeNanos: 4e6, FullNanos: 3e6, HasSome: true, HasFull: true},
			},
			Disks: []stats.Disk{{Major: 8, Minor: 0, Device: "sda", ReadBytes: 1, WriteBytes: 2}},
			Pids:  3, Networks: []stats.Interface{{Name: "eth0", RxBytes: 10, TxBytes: 20}}}
		cs[i] = sampled{engine: e, container: c, stats: s}
	}
	return cs, []engineCount{{engine: e, counts: map[model.ContainerState]int64{model.StateRunning: int64(n)}}}
}

// BenchmarkBuild500 builds the export batch of 500 containers and an engine
// made at once, as the console and DeltaSink get it (the OTLP sink's round is
// streamed: BenchmarkBuildStream1000).
func BenchmarkBuild500(b *testing.B) {
	cfg := DefaultConfig()
	cfg.LabelAllowlist = []string{"app"}
	bl := newBuilder(&cfg, Host{Name: "h", ID: "id"}, "test")
	cs, es := fixedWorkload(500)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		_ = bl.build(now, cs, es)
	}
}

// TestExportCost500 exports one round of 500 containers and an engine to a
// real collector, batched (the default: 128 resources a request) and one
// resource a request (what the SDK exporter alone does), and checks that
// every resource arrives in as many requests as it should.
func TestExportCost500(t *testing.T) {
	testbed.Require(t, testbed.Collector)
	cs, es := fixedWorkload(500)
	for _, perRequest := range []int{DefaultResourcesPerRequest, 1} {
		t.Run(fmt.Sprintf("%d resources a request", perRequest), func(t *testing.T) {
			col := testbed.StartCollector(t)
			ms := insecureOTLP(t, col.Endpoint(), perRequest)
			ctx := context.Background()
			cfg := DefaultConfig()
			batch := newBuilder(&cfg, Host{Name: "h"}, "test").build(time.Now(), cs, es)
			if err := ms.ExportMetrics(ctx, batch); err != nil { // warm the connection
				t.Fatal(err)
			}
			start := time.Now()
			const rounds = 3
			for range rounds {
				if err := ms.ExportMetrics(ctx, batch); err != nil {
					t.Fatal(err)
				}
				settled(t, ms)
			}
			took := time.Since(start) / rounds
			wantRequests := (len(batch) + perRequest - 1) / perRequest
			m := col.WaitMetrics(t, 10*time.Second, func(m *testbed.Metrics) bool { return len(m.Requests) >= (rounds+1)*wantRequests })
			if len(m.Resources) != len(batch) || len(m.Requests) != (rounds+1)*wantRequests {
				t.Fatalf("collector got %d resources in %d requests, want %d in %d", len(m.Resources), len(m.Requests), len(batch), (rounds+1)*wantRequests)
			}
			t.Logf("%d resources, %d a request: %d requests, %v per round", len(batch), perRequest, wantRequests, took)
		})
	}
}
