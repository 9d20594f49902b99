package agent_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, agenttest.LeakOptions()...) }

// startAgent runs a real agent against this host's engines (only those
// listening on socks when any are named: agenttest.Scope), exporting to col
// the labels named label, and stops it when the test ends. Its log goes to
// the test log and is kept for counting.
func startAgent(t *testing.T, col *testbed.Otelcol, label string, socks ...string) (*agent.Agent, *testbed.LogBuffer) {
	t.Helper()
	cfg := agenttest.Config(col)
	cfg.Labels.Allowlist = []string{label}
	agenttest.Scope(&cfg, socks...)
	return agenttest.Run(t, cfg, slog.LevelInfo)
}

// conditionalMetrics are the container metrics that need something these
// containers do not have: a CPU quota, a health check, PSI in the kernel.
var conditionalMetrics = map[string]bool{
	"agentd.container.cpu.periods":                true,
	"agentd.container.cpu.throttled_periods":      true,
	"agentd.container.cpu.throttled_time":         true,
	"agentd.container.health":                     true,
	"agentd.container.cpu.pressure.stall_time":    true,
	"agentd.container.memory.pressure.stall_time": true,
	"agentd.container.io.pressure.stall_time":     true,
}

// TestAgentExportsEveryEngineOfTheTestbed runs agentd against the whole
// testbed: host Docker, a host containerd namespace, the CRI plugin, and podman
// and Docker inside the systemd host (socket-activated, one level down). Every
// running container must arrive at the collector as its own resource with the
// right attributes and hierarchy prefix, carrying every container metric of the
// table, and the engines as resources with their container counts.
func TestAgentExportsEveryEngineOfTheTestbed(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Containerd, testbed.CRI, testbed.SystemdHost, testbed.Collector)
	th := testbed.SystemdHostName()
	tag := fmt.Sprintf("e2e-%08x", rand.Uint32())
	label := "agentd.test"

	type want struct {
		runtime, engineType, prefix, namespace string
		id                                     string
		extra                                  map[string]string // more attributes
		// noNetwork: the container has no interface of its own besides lo
		// (ctr's default), or shares the host's network (a host-network pod).
		noNetwork bool
	}
	var wants []want

	// Host Docker, with a memory limit so container.memory.limit is set.
	dockerID := testbed.Run(t, "docker", "run", "-d", "--name", "agentd-"+tag, "--label", label+"="+tag,
		"--memory", "64m", testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", dockerID) })
	wants = append(wants, want{runtime: "docker", id: dockerID})

	// containerd, in a namespace of the test's own.
	ns := "agentd-" + tag
	ctrdID := "agentd-" + tag
	importToContainerd(t, ns)
	testbed.Run(t, "ctr", "-n", ns, "run", "-d", "--label", label+"="+tag, "docker.io/"+testbed.BusyboxImage, ctrdID, "sleep", "3600")
	t.Cleanup(func() {
		_, _ = runQuiet("ctr", "-n", ns, "task", "kill", "-s", "KILL", ctrdID)
		time.Sleep(300 * time.Millisecond)
		_, _ = runQuiet("ctr", "-n", ns, "task", "rm", "-f", ctrdID)
		_, _ = runQuiet("ctr", "-n", ns, "containers", "rm", ctrdID)
		_, _ = runQuiet("sh", "-c", fmt.Sprintf("ctr -n %s images rm $(ctr -n %s images ls -q)", ns, ns))
		_, _ = runQuiet("ctr", "namespaces", "rm", ns)
	})
	wants = append(wants, want{runtime: "containerd", namespace: ns, id: ctrdID, noNetwork: true})

	// CRI: a pod sandbox and a container through containerd's CRI plugin.
	criID := runCRIContainer(t, tag, label)
	// A CRI service is no runtime: its containers name containerd, and carry
	// their pod's k8s.* attributes.
	wants = append(wants, want{runtime: "containerd", engineType: "cri", id: criID, noNetwork: true, extra: map[string]string{
		"k8s.pod.name": "agentd-" + tag, "k8s.pod.uid": "uid-" + tag, "k8s.namespace.name": "agentd-test", "k8s.container.name": "sleeper",
	}})

	// podman and Docker inside the systemd host: one level down.
	podmanID := testbed.Run(t, "docker", "exec", th, "podman", "run", "-d", "--name", "agentd-"+tag,
		"--label", label+"="+tag, testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() { _, _ = runQuiet("docker", "exec", th, "podman", "rm", "-f", "-t", "0", podmanID) })
	wants = append(wants, want{runtime: "podman", prefix: th, id: podmanID})
	innerDockerID := testbed.Run(t, "docker", "exec", th, "docker", "run", "-d", "--name", "agentd-"+tag,
		"--label", label+"="+tag, testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() { _, _ = runQuiet("docker", "exec", th, "docker", "rm", "-f", innerDockerID) })
	wants = append(wants, want{runtime: "docker", prefix: th, id: innerDockerID})

	col := testbed.StartCollector(t)
	startAgent(t, col, label)

	containerMetrics := []string{}
	for _, m := range telemetry.Metrics {
		if m.Resource == "container" {
			containerMetrics = append(containerMetrics, m.Name)
		}
	}
	missing := func(m *testbed.Metrics) []string {
		var out []string
		for _, w := range wants {
			rs := m.ResourcesWith(map[string]string{"container.id": w.id})
			if len(rs) == 0 {
				out = append(out, fmt.Sprintf("%s container %s: no resource", w.runtime, w.id))
				continue
			}
			for _, name := range containerMetrics {
				if (name == "container.memory.limit" || name == "container.memory.available") && w.id != dockerID {
					continue // only the Docker container has a limit
				}
				if conditionalMetrics[name] {
					continue // see TestAgentExportsThrottlingOOMKillsHealthAndPressure
				}
				if name == "agentd.container.restarts" && w.runtime != "docker" && w.runtime != "podman" {
					continue // containerd and CRI count no restarts
				}
				if name == "container.network.io" && w.noNetwork {
					continue
				}
				if name == "container.cpu.usage" || rs[0].Metric(name) != nil {
					continue // cpu.usage needs two samples: checked below
				}
				out = append(out, fmt.Sprintf("%s container %s: no %s", w.runtime, w.id, name))
			}
		}
		return out
	}
	var m *testbed.Metrics
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		var err error
		if m, err = col.Metrics(); err != nil {
			t.Fatal(err)
		}
		miss := missing(m)
		if len(miss) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 60 s the collector still lacks:\n%s\n%s", strings.Join(miss, "\n"), m.Summary())
		}
	}
	m = col.WaitMetrics(t, 20*time.Second, func(m *testbed.Metrics) bool {
		for _, w := range wants {
			if m.Metric(map[string]string{"container.id": w.id}, "container.cpu.usage") == nil {
				return false
			}
		}
		return true
	})

	for _, w := range wants {
		t.Run(fmt.Sprintf("the %s container at prefix %q has its attributes", w.runtime, w.prefix), func(t *testing.T) {
			rs := m.ResourcesWith(map[string]string{"container.id": w.id})
			if len(rs) != 1 {
				var attrs []string
				for _, r := range rs {
					attrs = append(attrs, fmt.Sprint(r.Attrs))
				}
				t.Fatalf("want exactly one resource for container %s, got %d:\n%s", w.id, len(rs), strings.Join(attrs, "\n"))
			}
			a := rs[0].Attrs
			checks := map[string]string{
				"container.runtime.name":   w.runtime,
				"agentd.engine.prefix":     w.prefix,
				"container.label." + label: tag,
				"os.type":                  "linux",
			}
			if w.namespace != "" {
				checks["containerd.namespace"] = w.namespace
			}
			checks["agentd.engine.type"] = w.runtime
			if w.engineType != "" {
				checks["agentd.engine.type"] = w.engineType
			}
			for k, v := range w.extra {
				checks[k] = v
			}
			for k, v := range checks {
				if a[k] != v {
					t.Errorf("%s = %q, want %q", k, a[k], v)
				}
			}
			for _, k := range []string{"container.name", "container.image.name", "container.runtime.version",
				"agentd.engine.id", "agentd.engine.endpoint", "host.name"} {
				if k == "container.runtime.version" && w.runtime == "podman" {
					// A podman's containers are one resource whichever view
					// reports them, and the daemonless one cannot tell the
					// version (model.Engine.Identity).
					continue
				}
				if a[k] == "" {
					t.Errorf("%s is empty (attributes %v)", k, a)
				}
			}
			if w.prefix != "" && a["agentd.engine.parent.container.id"] == "" {
				t.Errorf("a nested engine's container has no agentd.engine.parent.container.id")
			}
			for k := range a {
				if strings.HasPrefix(strings.ToLower(k), "container.env") || strings.Contains(strings.ToLower(k), "environment") {
					t.Errorf("exported an environment attribute %s", k)
				}
			}
		})
	}

	t.Run("the Docker container's memory limit is the one it was given", func(t *testing.T) {
		p, ok := m.Metric(map[string]string{"container.id": dockerID}, "container.memory.limit").Last(nil)
		if !ok || p.Value != 64<<20 {
			t.Errorf("container.memory.limit = %v (found %v), want %d", p.Value, ok, 64<<20)
		}
	})

	t.Run("memory usage agrees with podman's own stats within 5%", func(t *testing.T) {
		sock := fmt.Sprintf("/proc/%d/root/run/podman/podman.sock", testbed.SystemdHostPID(t))
		engine := podmanMemUsage(t, sock, podmanID)
		m := col.WaitMetrics(t, 10*time.Second, func(m *testbed.Metrics) bool {
			return m.Metric(map[string]string{"container.id": podmanID}, "container.memory.usage") != nil
		})
		p, _ := m.Metric(map[string]string{"container.id": podmanID}, "container.memory.usage").Last(nil)
		if diff := p.Value - float64(engine); diff > 0.05*float64(engine) || -diff > 0.05*float64(engine) {
			t.Errorf("container.memory.usage = %.0f, podman says %d: more than 5%% apart", p.Value, engine)
		}
	})

	t.Run("every engine is a resource with its container counts", func(t *testing.T) {
		for _, typ := range []string{"docker", "containerd", "cri", "podman"} {
			rs := m.ResourcesWith(map[string]string{"agentd.engine.type": typ})
			found := false
			for _, r := range rs {
				if r.Attrs["container.id"] == "" && r.Metric("agentd.engine.containers") != nil && r.Metric("agentd.engine.up") != nil {
					found = true
				}
			}
			if !found {
				t.Errorf("no engine resource for %s with agentd.engine.containers and agentd.engine.up", typ)
			}
		}
	})

	t.Run("a container started now reaches the collector as an event within 2 s", func(t *testing.T) {
		id := testbed.Run(t, "docker", "create", "--label", label+"="+tag, testbed.BusyboxImage, "sleep", "3600")
		t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", id) })
		testbed.Run(t, "docker", "start", id)
		start := time.Now()
		col.WaitLogs(t, 5*time.Second, func(l *testbed.Logs) bool {
			for _, r := range l.Events("container.start") {
				if r.HasResource(map[string]string{"container.id": id}) {
					return true
				}
			}
			return false
		})
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("container.start arrived after %v, want within 2 s", d)
		}
	})

	t.Run("a container that exits reports its exit code", func(t *testing.T) {
		id := testbed.Run(t, "docker", "run", "-d", "--label", label+"="+tag, testbed.BusyboxImage, "sh", "-c", "exit 7")
		t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", id) })
		col.WaitLogs(t, 10*time.Second, func(l *testbed.Logs) bool {
			for _, r := range l.Events("container.die") {
				if r.HasResource(map[string]string{"container.id": id}) && r.Attrs["agentd.container.exit_code"] == "7" {
					return true
				}
			}
			return false
		})
	})
}

func runQuiet(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := execCommand(ctx, name, args...)
	return strings.TrimSpace(out), err
}

// importToContainerd imports local/busybox from host Docker into containerd namespace ns.
func importToContainerd(t *testing.T, ns string) {
	t.Helper()
	tar := t.TempDir() + "/busybox.tar"
	testbed.Run(t, "docker", "save", "-o", tar, testbed.BusyboxImage)
	testbed.Run(t, "ctr", "-n", ns, "images", "import", tar)
}
