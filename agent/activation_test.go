package agent_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// activations counts the agent's activations of unit, and the engines it
// took in at the unit's socket, which ends in sock (discovery's "engine
// found": said once per engine, whether the socket unit or the process
// table showed it first).
func activations(l *testbed.LogBuffer, unit, sock string) (activated, confirmed, taken int) {
	u := "unit=" + unit
	return l.Count(`msg="activated engine socket"`, u), l.Count(`msg="confirmed engine socket"`, u),
		l.Count(`msg="engine found"`, "root"+sock+" ")
}

// TestAgentFollowsSocketUnitsOfTheSystemdHost runs agentd while the systemd
// host's podman exists only as a listening podman.socket: agentd must find it
// through D-Bus, activate it once (one StartUnit, one probe, the engine that
// answered taken in as it is) and export its containers with the systemd
// host's name as prefix; then follow `systemctl stop` (engine lost) and
// `systemctl start` (activated once more, engine watched again within 2 s) of
// the socket unit.
func TestAgentFollowsSocketUnitsOfTheSystemdHost(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.SystemdHost, testbed.Collector)
	th := testbed.SystemdHostName()
	t.Cleanup(func() {
		_, _ = runQuiet("docker", "exec", th, "systemctl", "start", "podman.socket")
	})
	tag := fmt.Sprintf("act-%08x", rand.Uint32())
	id := testbed.RunInSystemdHost(t, "podman", "run", "-d", "--label", "agentd.test="+tag, testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() { _, _ = runQuiet("docker", "exec", th, "podman", "rm", "-f", "-t", "0", id) })
	// Only the socket listens when the agent starts.
	testbed.RunInSystemdHost(t, "systemctl", "stop", "podman.service")
	if out, _ := runQuiet("docker", "exec", th, "systemctl", "is-active", "podman.service"); out == "active" {
		t.Fatal("podman.service is still active")
	}

	col := testbed.StartCollector(t)
	_, logs := startAgent(t, col, "agentd.test")
	podmanEngine := map[string]string{"container.runtime.name": "podman", "agentd.engine.prefix": th}
	// The service behind podman.socket, not the daemonless view of the same
	// storage, which agentd finds from the container's conmon at once.
	isService := func(r testbed.LogRecord) bool {
		return r.HasResource(podmanEngine) && strings.HasSuffix(r.Resource["agentd.engine.endpoint"], "/run/podman/podman.sock")
	}
	wantActivations := func(t *testing.T, want int) {
		t.Helper()
		activated, confirmed, taken := activations(logs, "podman.socket", "/run/podman/podman.sock")
		if activated != want || confirmed != 0 || taken != want {
			t.Errorf("podman.socket: %d activations, %d confirmations, %d engines taken in; want %d, 0, %d",
				activated, confirmed, taken, want, want)
		}
		if n := logs.Count("activation failed", "unit=podman.socket"); n != 0 {
			t.Errorf("%d failed activations of podman.socket", n)
		}
	}

	t.Run("podman behind podman.socket is activated and its container exported with the prefix", func(t *testing.T) {
		col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool {
			return len(m.ResourcesWith(map[string]string{"container.id": id, "agentd.engine.prefix": th})) == 1
		})
		col.WaitLogs(t, 30*time.Second, func(l *testbed.Logs) bool {
			return len(l.Filter(func(r testbed.LogRecord) bool {
				return r.EventName == "agentd.engine.found" && isService(r)
			})) > 0
		})
		wantActivations(t, 1)
	})

	t.Run("stopping podman.socket and podman.service retires the engine", func(t *testing.T) {
		testbed.RunInSystemdHost(t, "systemctl", "stop", "podman.socket", "podman.service")
		col.WaitLogs(t, 15*time.Second, func(l *testbed.Logs) bool {
			return len(l.Filter(func(r testbed.LogRecord) bool {
				return r.EventName == "agentd.engine.lost" && isService(r)
			})) > 0
		})
	})

	t.Run("starting podman.socket again is followed by its D-Bus signals", func(t *testing.T) {
		found := func(l *testbed.Logs) int {
			return len(l.Filter(func(r testbed.LogRecord) bool {
				return r.EventName == "agentd.engine.found" && isService(r)
			}))
		}
		l, err := col.Logs()
		if err != nil {
			t.Fatal(err)
		}
		before := found(l)
		testbed.RunInSystemdHost(t, "systemctl", "start", "podman.socket")
		start := time.Now()
		col.WaitLogs(t, 30*time.Second, func(l *testbed.Logs) bool { return found(l) > before })
		// The record is flushed every 200 ms here; the rest is agentd's:
		// about 1 s on a quiet machine. The bound leaves room for a loaded
		// one; the latency itself is measured by make bench.
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("engine found again %v after systemctl start, want within 15 s", d)
		} else {
			t.Logf("engine found again %v after systemctl start", d)
		}
		wantActivations(t, 2)
	})

	t.Run("the engine's containers are exported again", func(t *testing.T) {
		l, _ := col.Metrics()
		n := 0
		if l != nil {
			n = len(l.Requests)
		}
		col.WaitMetrics(t, 15*time.Second, func(m *testbed.Metrics) bool {
			return len(m.Requests) > n+5 && m.Metric(map[string]string{"container.id": id}, "container.memory.usage") != nil
		})
		out := testbed.RunInSystemdHost(t, "systemctl", "is-active", "podman.socket")
		if strings.TrimSpace(out) != "active" {
			t.Errorf("podman.socket is %q", out)
		}
	})
}

// TestAgentActivatesDockerSocketOfTheSystemdHost runs agentd while the
// systemd host's Docker exists only as a listening docker.socket (its
// services stopped, its container down with them): agentd must activate it
// through the socket unit, and the container Docker restarts on coming up
// must be exported with the systemd host's name as prefix and the systemd
// host's container as parent: Docker in a container of the host's Docker.
func TestAgentActivatesDockerSocketOfTheSystemdHost(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.SystemdHost, testbed.Collector)
	th := testbed.SystemdHostName()
	tag := fmt.Sprintf("actd-%08x", rand.Uint32())
	id := testbed.RunInSystemdHost(t, "docker", "run", "-d", "--restart=always", "--network", "none", "--label", "agentd.test="+tag, testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() {
		_, _ = runQuiet("docker", "exec", th, "docker", "rm", "-f", id)
		_, _ = runQuiet("docker", "exec", th, "systemctl", "stop", "docker.service", "containerd.service")
		_, _ = runQuiet("docker", "exec", th, "systemctl", "start", "docker.socket")
	})
	// Only the socket listens when the agent starts.
	testbed.RunInSystemdHost(t, "systemctl", "stop", "docker.service", "containerd.service")
	testbed.RunInSystemdHost(t, "systemctl", "start", "docker.socket")
	if out, _ := runQuiet("docker", "exec", th, "systemctl", "is-active", "docker.service"); out == "active" {
		t.Fatal("docker.service is still active")
	}
	thID := testbed.Run(t, "docker", "inspect", "-f", "{{.Id}}", th)

	col := testbed.StartCollector(t)
	_, logs := startAgent(t, col, "agentd.test")
	want := map[string]string{"container.id": id, "container.runtime.name": "docker",
		"agentd.engine.prefix": th, "agentd.engine.parent.container.id": thID}
	col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool {
		return len(m.ResourcesWith(want)) == 1 && m.Metric(want, "container.memory.usage") != nil
	})
	if out := testbed.RunInSystemdHost(t, "systemctl", "is-active", "docker.service"); strings.TrimSpace(out) != "active" {
		t.Errorf("docker.service is %q after agentd started", out)
	}
	if activated, confirmed, taken := activations(logs, "docker.socket", "/run/docker.sock"); activated != 1 || confirmed != 0 || taken != 1 {
		t.Errorf("docker.socket: %d activations, %d confirmations, %d engines taken in; want 1, 0, 1", activated, confirmed, taken)
	}
}
