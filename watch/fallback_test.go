package watch

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// TestStatsFallbackThroughEngineAPI proves the stats fallback against the real
// engines: a Sampler whose cgroup root holds nothing (as for a container
// whose cgroup agentd cannot reach) reads the container through its engine's
// one-shot stats API instead.
func TestStatsFallbackThroughEngineAPI(t *testing.T) {
	engines := []struct {
		name string
		part testbed.Part
		get  func(t *testing.T) (model.Engine, engine.Adapter)
		run  func(t *testing.T, args ...string) string
		rm   func(id string)
	}{
		{"Docker answers through its one-shot stats endpoint", testbed.Docker, hostDocker,
			func(t *testing.T, args ...string) string { return testbed.Run(t, "docker", args...) },
			func(id string) { _ = exec.Command("docker", "rm", "-f", id).Run() }},
		{"podman answers through its Docker-compatible stats endpoint", testbed.SystemdHost, nestedPodman, podmanCLI,
			func(id string) {
				_ = exec.Command("docker", "exec", testbed.SystemdHostName(), "podman", "rm", "-f", "-t", "0", id).Run()
			}},
	}
	for _, eng := range engines {
		t.Run(eng.name, func(t *testing.T) {
			testbed.Require(t, eng.part)
			e, a := eng.get(t)
			t.Cleanup(func() { closeAdapter(a, testLogger(t)) })
			id := eng.run(t, "run", "-d", "--network", "none", "--label", "agentd.test="+testLabel(t), testbed.BusyboxImage, "sleep", "1000")
			t.Cleanup(func() { eng.rm(id) })
			pid, err := strconv.Atoi(eng.run(t, "inspect", "-f", "{{.State.Pid}}", id))
			if err != nil {
				t.Fatal(err)
			}
			fb, ok := a.(stats.Fallback)
			if !ok {
				t.Fatalf("%T has no stats fallback", a)
			}
			s := stats.NewSampler(stats.SamplerConfig{
				CgroupRoot: t.TempDir(), // nothing to read: the fallback must answer
				Fallback:   func(string) stats.Fallback { return fb },
			}, nil)
			c := model.Container{EngineID: e.ID, ID: id, PID: pid, State: model.StateRunning}
			// The engine's own view decides what to expect: Docker reports
			// empty stats where its shim cannot read the cgroup either (this
			// testbed's split cpu and cpuacct v1 hierarchies).
			// The first empty answer is taken for a container ending; the
			// second in a row is an error.
			if mem := eng.run(t, "stats", "--no-stream", "--format", "{{.MemUsage}}", id); strings.HasPrefix(mem, "0B") {
				if out, err := s.Sample(context.Background(), []model.Container{c}, nil); err != nil || out[0].Has&^(stats.FieldNetwork|stats.FieldPressure) != 0 {
					t.Fatalf("the first empty answer: want no figures and no error, got %+v, %v", out[0], err)
				}
				_, err := s.Sample(context.Background(), []model.Container{c}, nil)
				if err == nil || !strings.Contains(err.Error(), "engine reported no values") || !strings.Contains(err.Error(), id) {
					t.Fatalf("the engine reports no stats (%q): want an error naming the container, got %v", mem, err)
				}
				return
			}
			out, err := s.Sample(context.Background(), []model.Container{c}, nil)
			if err != nil {
				t.Fatalf("sample: %v", err)
			}
			got := out[0]
			if got.Source != stats.SourceEngineAPI {
				t.Fatalf("source %q, want %q", got.Source, stats.SourceEngineAPI)
			}
			if got.Has&stats.FieldMemoryUsage == 0 || got.MemoryUsage == 0 {
				t.Errorf("no memory usage from the engine: %+v", got)
			}
			if got.Has&stats.FieldCPUTotal == 0 {
				t.Errorf("no CPU time from the engine: %+v", got)
			}
		})
	}
}
