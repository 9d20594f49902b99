package telemetry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// dockerWorkload is a Workload built from `docker inspect` of the test's
// containers on the host Docker.
type dockerWorkload struct {
	mu         sync.Mutex
	engine     model.Engine
	containers []model.Container
}

func (w *dockerWorkload) Engines() []model.Engine { return []model.Engine{w.engine} }
func (w *dockerWorkload) Engine(id string) (model.Engine, bool) {
	return w.engine, id == w.engine.ID
}
func (w *dockerWorkload) Containers() []model.Container {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]model.Container(nil), w.containers...)
}
func (w *dockerWorkload) Container(k model.ContainerKey) (model.Container, bool) {
	for _, c := range w.Containers() {
		if c.Key() == k {
			return c, true
		}
	}
	return model.Container{}, false
}

// EngineRequests reports counters as agentd's wiring does from the
// engine's request budget and watcher (TestEngineRequestMetrics checks their
// values; here they only have to reach the collector).
func (w *dockerWorkload) EngineRequests(model.Engine) (RequestStats, bool) {
	since := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return RequestStats{Requests: 12, Waits: 2, WaitTime: time.Second, Since: since, Coalesced: 3, CoalescedSince: since}, true
}

func (w *dockerWorkload) set(cs []model.Container) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.containers = cs
}

type inspected struct {
	ID     string
	Name   string
	Image  string
	Config struct {
		Image  string
		Labels map[string]string
	}
	State struct {
		Running    bool
		Pid        int
		ExitCode   int
		OOMKilled  bool
		StartedAt  time.Time
		FinishedAt time.Time
	}
	NetworkSettings struct{ IPAddress string }
}

func dockerInspect(t *testing.T, ids ...string) ([]model.Container, []inspected) {
	t.Helper()
	out := testbed.Run(t, "docker", append([]string{"inspect"}, ids...)...)
	var ins []inspected
	if err := json.Unmarshal([]byte(out), &ins); err != nil {
		t.Fatal(err)
	}
	cs := make([]model.Container, len(ins))
	for i, in := range ins {
		st := model.StateExited
		if in.State.Running {
			st = model.StateRunning
		}
		name, tag, _ := strings.Cut(in.Config.Image, ":")
		cs[i] = model.Container{ID: in.ID, Name: strings.TrimPrefix(in.Name, "/"), EngineID: "docker-host",
			ImageName: name, ImageTags: []string{tag}, ImageID: in.Image, Labels: in.Config.Labels, State: st,
			PID: in.State.Pid, StartedAt: in.State.StartedAt, ExitCode: in.State.ExitCode, OOMKilled: in.State.OOMKilled}
	}
	return cs, ins
}

func runContainer(t *testing.T, label, name string, cmd ...string) string {
	t.Helper()
	args := append([]string{"run", "-d", "--label", "agentd.test=" + label, "--label", "secret.env=not-exported",
		"--env", "PASSWORD=hunter2", "--name", name, testbed.BusyboxImage}, cmd...)
	id := testbed.Run(t, "docker", args...)
	t.Cleanup(func() { _, _ = testOutput("docker", "rm", "-f", id) })
	return id
}

func testOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// TestPipelineExportsDockerContainersToCollector runs busybox containers on
// the host Docker and checks what reaches a real collector.
func TestPipelineExportsDockerContainersToCollector(t *testing.T) {
	testbed.Require(t, testbed.Docker, testbed.Collector)
	col := testbed.StartCollector(t)
	label := fmt.Sprintf("%s-%d", t.Name(), rand.IntN(1e9))
	sfx := strconv.Itoa(rand.IntN(1e9))

	idle := runContainer(t, label, "agentd-idle-"+sfx, "sleep", "600")
	busy := runContainer(t, label, "agentd-busy-"+sfx, "sh", "-c", "yes >/dev/null")
	mem := runContainer(t, label, "agentd-mem-"+sfx, "sh", "-c", "dd if=/dev/zero of=/dev/shm/x bs=1M count=20 2>/dev/null; sleep 600")
	server := runContainer(t, label, "agentd-srv-"+sfx, "sh", "-c", "sleep 600 | nc -l -p 9000 >/dev/null; sleep 600")
	client := runContainer(t, label, "agentd-cli-"+sfx, "sleep", "600")
	ids := []string{idle, busy, mem, server, client}

	dockerdPID, _ := strconv.Atoi(strings.Fields(testbed.Run(t, "pidof", "dockerd") + " 0")[0])
	w := &dockerWorkload{engine: model.Engine{ID: "docker-host", Type: model.Docker, Version: testbed.Run(t, "docker", "version", "-f", "{{.Server.Version}}"),
		Endpoint: testbed.DockerSocket, PID: dockerdPID}}
	cs, ins := dockerInspect(t, ids...)
	w.set(cs)

	cfg := DefaultConfig()
	cfg.LabelAllowlist = []string{"agentd.test"}
	events := make(chan model.Event, 16)
	runToCollector(t, col, cfg, Options{Workload: w, Events: events, Sampler: stats.NewSampler(stats.SamplerConfig{}, nil)})

	byID := func(id string) map[string]string { return map[string]string{"container.id": id} }
	// Wait for a CPU usage point of every container (the second round).
	m := col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool {
		for _, id := range ids {
			if m.Metric(byID(id), "container.cpu.usage") == nil {
				return false
			}
		}
		return true
	})

	t.Run("each container has one resource with its container attributes and no environment", func(t *testing.T) {
		for i, id := range ids {
			rs := m.ResourcesWith(byID(id))
			if len(rs) != 1 {
				t.Fatalf("%d resources for %s", len(rs), id)
			}
			a := rs[0].Attrs
			want := map[string]string{"container.name": cs[i].Name, "container.image.name": "local/busybox",
				"container.image.id": ins[i].Image, "container.runtime.name": "docker", "agentd.engine.id": "docker-host",
				"container.label.agentd.test": label, "os.type": "linux", "agentd.engine.prefix": ""}
			for k, v := range want {
				if a[k] != v {
					t.Errorf("%s: %s = %q, want %q", cs[i].Name, k, a[k], v)
				}
			}
			for k, v := range a {
				if strings.Contains(k, "secret") || strings.Contains(v, "hunter2") {
					t.Errorf("%s: exported %s=%s", cs[i].Name, k, v)
				}
			}
			if a["host.name"] == "" || a["container.runtime.version"] == "" {
				t.Errorf("%s: attributes %v", cs[i].Name, a)
			}
		}
	})
	t.Run("every metric of the table is present", func(t *testing.T) {
		for _, md := range Metrics {
			switch md.Resource {
			case "container":
				switch md.Name {
				case "container.memory.limit", "container.memory.available":
					continue // none of these containers has a limit
				case "agentd.container.cpu.periods", "agentd.container.cpu.throttled_periods", "agentd.container.cpu.throttled_time":
					continue // nor a CPU quota (agent's TestAgentExportsThrottlingOOMKillsHealthAndPressure)
				case "agentd.container.health":
					continue // nor a health check (same test)
				case "agentd.container.cpu.pressure.stall_time", "agentd.container.memory.pressure.stall_time", "agentd.container.io.pressure.stall_time":
					if !cgroupV2Host() {
						continue // PSI is read on cgroup v2 hosts only (same test)
					}
				}
				if m.Metric(byID(server), md.Name) == nil {
					t.Errorf("%s missing for the server container", md.Name)
				}
			case "engine":
				if m.Metric(map[string]string{"agentd.engine.id": "docker-host"}, md.Name) == nil {
					t.Errorf("%s missing for the engine", md.Name)
				}
			}
		}
	})
	t.Run("CPU usage is near 1 for a busy container and near 0 for an idle one", func(t *testing.T) {
		// The machine is shared: wait for a round where yes got its core.
		m := col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool {
			pb, _ := m.Metric(byID(busy), "container.cpu.usage").Last(nil)
			return pb.Value > 0.7
		})
		pi, _ := m.Metric(byID(idle), "container.cpu.usage").Last(nil)
		if pi.Value > 0.05 {
			t.Errorf("idle %v, want < 0.05", pi.Value)
		}
	})
	t.Run("memory working set is within 5% of docker stats", func(t *testing.T) {
		out := testbed.Run(t, "docker", "stats", "--no-stream", "--format", "{{.MemUsage}}", mem)
		want := parseDockerSize(t, strings.TrimSpace(strings.Split(out, "/")[0]))
		m := col.WaitMetrics(t, 10*time.Second, func(*testbed.Metrics) bool { return true })
		pt, ok := m.Metric(byID(mem), "container.memory.working_set").Last(nil)
		if !ok {
			t.Fatal("no working set")
		}
		// The container holds 20 MiB of shared memory plus about 1 MiB of busybox.
		if pt.Int < 20<<20 || pt.Int > 24<<20 {
			t.Errorf("working set %d, want the 20 MiB the container holds and at most 4 MiB more", pt.Int)
		}
		if want == 0 {
			// Docker 20.10 on this hybrid-cgroup testbed answers 0B / 0B.
			t.Logf("docker stats reports %q for the container: comparison against it skipped, known allocation checked", out)
		} else if float64(pt.Int) < want*0.95 || float64(pt.Int) > want*1.05 {
			t.Errorf("working set %d, docker stats %.0f", pt.Int, want)
		}
	})
	t.Run("network bytes rise by what a transfer sent", func(t *testing.T) {
		netOf := func(m *testbed.Metrics, id, dir string) int64 {
			met := m.Metric(byID(id), "container.network.io")
			if met == nil {
				return -1
			}
			p, ok := met.Last(map[string]string{"network.io.direction": dir, "network.interface.name": "eth0"})
			if !ok {
				return -1
			}
			return p.Int
		}
		m := col.WaitMetrics(t, 10*time.Second, func(m *testbed.Metrics) bool { return netOf(m, client, "transmit") >= 0 })
		tx0, rx0 := netOf(m, client, "transmit"), netOf(m, server, "receive")
		const n = 5 << 20
		testbed.Run(t, "docker", "exec", client, "sh", "-c", fmt.Sprintf("dd if=/dev/zero bs=1M count=5 2>/dev/null | nc -w 3 %s 9000", ins[3].NetworkSettings.IPAddress))
		col.WaitMetrics(t, 15*time.Second, func(m *testbed.Metrics) bool {
			tx, rx := netOf(m, client, "transmit")-tx0, netOf(m, server, "receive")-rx0
			return tx >= n && rx >= n && tx < n*11/10 && rx < n*11/10
		})
	})
	t.Run("lifecycle events arrive as log records with event names and exit codes", func(t *testing.T) {
		id := runContainer(t, label, "agentd-exit-"+sfx, "sh", "-c", "exit 3")
		testbed.Run(t, "docker", "wait", id)
		ecs, _ := dockerInspect(t, id)
		c := ecs[0]
		events <- model.Event{Type: model.EventStart, Time: c.StartedAt, EngineID: "docker-host", Container: &c}
		events <- model.Event{Type: model.EventDie, Time: time.Now(), EngineID: "docker-host", Container: &c, ExitCode: c.ExitCode}
		events <- model.Event{Type: model.EventEngineFound, Time: time.Now(), EngineID: "docker-host", Engine: &w.engine}
		sent := time.Now()
		l := col.WaitLogs(t, 10*time.Second, func(l *testbed.Logs) bool {
			return len(l.Filter(func(r testbed.LogRecord) bool { return r.Resource["container.id"] == id })) >= 2 && len(l.Events("agentd.engine.found")) > 0
		})
		t.Logf("events arrived %v after sending", time.Since(sent))
		for _, r := range l.Filter(func(r testbed.LogRecord) bool { return r.Resource["container.id"] == id }) {
			switch r.EventName {
			case "container.start":
				if r.Severity != 9 {
					t.Errorf("start severity %d", r.Severity)
				}
			case "container.die":
				if r.Attrs[AttrExitCode] != "3" || r.Severity != 13 || r.Resource["container.name"] != c.Name {
					t.Errorf("die record %+v", r)
				}
			default:
				t.Errorf("unexpected record %+v", r)
			}
		}
		if r := l.Events("agentd.engine.found")[0]; r.Resource["agentd.engine.id"] != "docker-host" || r.Resource["container.id"] != "" {
			t.Errorf("engine record %+v", r)
		}
	})
}

func parseDockerSize(t *testing.T, s string) float64 {
	t.Helper()
	units := []struct {
		suffix string
		mult   float64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	for _, u := range units {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("docker size %q: %v", s, err)
			}
			return f * u.mult
		}
	}
	t.Fatalf("docker size %q has no known unit", s)
	return 0
}

// TestExportReachesACollectorBackWithinSeconds: after a collector outage
// long enough for gRPC's own reconnect backoff to grow past 15 s, the
// first export after the collector is back succeeds within seconds.
func TestExportReachesACollectorBackWithinSeconds(t *testing.T) {
	testbed.Require(t, testbed.Collector)
	col := testbed.StartCollector(t)
	store := model.NewStore(slog.New(slog.DiscardHandler))
	store.PutEngine(model.Engine{ID: "e", Type: model.Docker})
	p := runToCollector(t, col, DefaultConfig(), Options{Workload: storeWorkload{store}, Sampler: noStats{}})
	exportedSince := func(since time.Time) bool {
		at, err := p.LastExport()
		return err == nil && at.After(since)
	}
	waitUntil(t, 20*time.Second, "a first export", func() bool { return exportedSince(time.Time{}) })

	up := col.Down(t)
	time.Sleep(60 * time.Second) // gRPC's default backoff: 1 s, growing 1.6x, past 15 s by now
	if _, err := p.LastExport(); err == nil {
		t.Fatal("exports still succeed with the collector down")
	}
	up()
	back := time.Now()
	waitUntil(t, 30*time.Second, "an export after the collector is back", func() bool { return exportedSince(back) })
	d := time.Since(back)
	t.Logf("first successful export %v after the collector was back", d.Round(100*time.Millisecond))
	if d > 8*time.Second {
		t.Errorf("first successful export %v after the collector was back, want within 5 s (plus one export interval)", d)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
	}
}

// runToCollector runs a pipeline of cfg and opts, exporting every second to
// col over OTLP/gRPC, until the test ends; Run must then return nil.
func runToCollector(t *testing.T, col *testbed.Otelcol, cfg Config, opts Options) *Pipeline {
	t.Helper()
	cfg.ExportInterval = time.Second
	cfg.Endpoint = col.Endpoint()
	insecure := true
	cfg.Insecure = &insecure
	ctx, cancel := context.WithCancel(context.Background())
	var err error
	if opts.Metrics, opts.Logs, err = NewOTLP(ctx, &cfg); err != nil {
		cancel()
		t.Fatal(err)
	}
	opts.Host, opts.Version = DetectHost(""), "test"
	p, err := NewPipeline(cfg, opts, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return p
}

// cgroupV2Host reports whether the host's /sys/fs/cgroup is the cgroup v2
// hierarchy (not v1, nor v1 with a hybrid cgroup2 mount beside it).
func cgroupV2Host() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}
