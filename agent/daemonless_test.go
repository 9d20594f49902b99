package agent_test

import (
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// daemonlessPodman is a podman storage of the test's own with no service
// running, and a random tag for the test's container names.
func daemonlessPodman(t *testing.T) (*enginetest.Private, string) {
	t.Helper()
	testbed.Require(t, testbed.Root, testbed.Collector)
	if _, err := exec.LookPath("podman"); err != nil {
		testbed.Unavailable(t, "podman is not installed: %v", err)
	}
	return enginetest.NewPrivatePodmanStorage(t), enginetest.Random(t)
}

// waitDaemonless waits until the agent watches the daemonless podman of
// storage root, connected.
func waitDaemonless(t *testing.T, a *agent.Agent, root string, timeout time.Duration) model.Engine {
	t.Helper()
	e := agenttest.WaitEngine(t, a, root, true, timeout)
	if !e.Daemonless || e.Type != model.Podman || e.Storage != root {
		t.Fatalf("engine at %s: %+v, want a daemonless podman of that storage", root, e)
	}
	return e
}

// waitEvent waits for the collector to receive event name of container id
// and returns it.
func waitEvent(t *testing.T, col *testbed.Otelcol, name, id string) testbed.LogRecord {
	t.Helper()
	var rec testbed.LogRecord
	col.WaitLogs(t, time.Minute, func(l *testbed.Logs) bool {
		for _, r := range l.Events(name) {
			if r.Resource["container.id"] == id {
				rec = r
				return true
			}
		}
		return false
	})
	return rec
}

// TestAgentReportsDaemonlessPodman: podman with no service running (a
// storage of the test's own, `podman run -d` only). A container that runs
// before agentd starts is found through its conmon and listed; its stats
// come from its cgroup; a container that exits 7 gives a die with 7, a
// `podman stop` a die with 137, a removal a destroy, all exported with the
// podman runtime and the storage as the engine's endpoint; and no podman
// service is ever started.
func TestAgentReportsDaemonlessPodman(t *testing.T) {
	p, tag := daemonlessPodman(t)
	early := p.CLI("run", "-d", "--network", "none", "--name", "dl-early-"+tag, testbed.BusyboxImage, "sh", "-c",
		"mkdir /dev/shm/x && dd if=/dev/zero of=/dev/shm/x/f bs=1M count=8 2>/dev/null; exec sleep 1000")

	col := testbed.StartCollector(t)
	start := time.Now()
	a, _ := startAgentWith(t, col, func(c *config.Config) { c.Discovery.Interval = config.Duration(time.Second) })
	e := waitDaemonless(t, a, p.Root(), time.Minute)
	t.Logf("daemonless podman found and listed %s after agentd started", time.Since(start).Round(time.Millisecond))

	t.Run("a container that ran before agentd started is listed with name, image and PID", func(t *testing.T) {
		var c model.Container
		for _, x := range a.Store().Snapshot().Containers {
			if x.ID == early {
				c = x
			}
		}
		pid := p.CLI("inspect", "-f", "{{.State.Pid}}", early)
		if c.Name != "dl-early-"+tag || c.ImageName != "localhost/local/busybox" || c.State != model.StateRunning ||
			strconv.Itoa(c.PID) != pid || c.EngineID != e.ID {
			t.Errorf("model has %+v; podman says PID %s", c, pid)
		}
	})
	t.Run("its memory and CPU come from its cgroup", func(t *testing.T) {
		res := map[string]string{"container.id": early}
		m := col.WaitMetrics(t, time.Minute, func(m *testbed.Metrics) bool {
			mt := m.Metric(res, "container.memory.usage")
			return mt != nil && len(mt.Points) >= 2 && m.Metric(res, "container.cpu.time") != nil
		})
		r := m.ResourcesWith(res)[0]
		for k, want := range map[string]string{"container.runtime.name": "podman", "container.name": "dl-early-" + tag,
			"agentd.engine.endpoint": p.Root(), "container.image.name": "localhost/local/busybox"} {
			if r.Attrs[k] != want {
				t.Errorf("resource attribute %s = %q, want %q", k, r.Attrs[k], want)
			}
		}
		got, _ := m.Metric(res, "container.memory.usage").Last(nil)
		want, err := cgroupMemoryUsage(p.CLI("inspect", "--format", "{{.State.Pid}}", early))
		if err != nil {
			testbed.Unavailable(t, "the container's memory cgroup: %v", err)
		}
		t.Logf("memory usage: agentd %.0f, cgroup %.0f", got.Value, want)
		if got.Value < 8<<20 || math.Abs(got.Value-want)/want > 0.05 {
			t.Errorf("memory usage %.0f, the cgroup says %.0f (and 8 MiB are in its tmpfs)", got.Value, want)
		}
	})
	t.Run("a container that exits 7 gives start and die with 7", func(t *testing.T) {
		id := p.CLI("run", "-d", "--network", "none", "--name", "dl-exits-"+tag, testbed.BusyboxImage, "sh", "-c", "sleep 1; exit 7")
		waitEvent(t, col, "container.start", id)
		die := waitEvent(t, col, "container.die", id)
		if got := die.Attrs["agentd.container.exit_code"]; got != "7" {
			t.Errorf("die exit code %s, want 7", got)
		}
		if die.Resource["container.name"] != "dl-exits-"+tag || die.Resource["agentd.engine.endpoint"] != p.Root() {
			t.Errorf("die resource %v", die.Resource)
		}
		p.CLI("rm", id)
		waitEvent(t, col, "container.destroy", id)
	})
	t.Run("podman stop gives die with 137 and rm a destroy", func(t *testing.T) {
		p.CLI("stop", "-t", "1", early)
		die := waitEvent(t, col, "container.die", early)
		if got := die.Attrs["agentd.container.exit_code"]; got != "137" {
			t.Errorf("die exit code %s, want 137", got)
		}
		p.CLI("rm", early)
		waitEvent(t, col, "container.destroy", early)
		for _, c := range a.Store().Snapshot().Containers {
			if c.ID == early {
				t.Errorf("removed container still in the model: %+v", c)
			}
		}
	})
	if _, err := os.Stat(p.Sock); err == nil {
		t.Errorf("a podman service socket appeared at %s", p.Sock)
	}
}

// visibleCopies returns the engines whose copy of container id the model
// reports.
func visibleCopies(a *agent.Agent, id string) []string {
	var out []string
	for _, c := range a.Store().Snapshot().Containers {
		if c.ID == id {
			out = append(out, c.EngineID)
		}
	}
	return out
}

// waitCopies waits until container id is reported once, by engine want.
func waitCopies(t *testing.T, a *agent.Agent, id, want string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		got := visibleCopies(a, id)
		if len(got) == 1 && got[0] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %.12s reported by %v, want once by %s", id, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAgentReportsAPodmanOnceWithAndWithoutItsService: one podman storage,
// first daemonless, then with `podman system service` started on it, then
// with the service killed. Its container is reported once throughout: by
// the daemonless view, by the service while it answers, by the daemonless
// view again when it is gone.
func TestAgentReportsAPodmanOnceWithAndWithoutItsService(t *testing.T) {
	p, tag := daemonlessPodman(t)
	id := p.CLI("run", "-d", "--network", "none", "--name", "dl-twice-"+tag, testbed.BusyboxImage, "sleep", "1000")
	col := testbed.StartCollector(t)
	a, _ := startAgentWith(t, col, nil)
	dl := waitDaemonless(t, a, p.Root(), time.Minute)
	waitCopies(t, a, id, dl.ID)

	p.Start()
	svc := agenttest.WaitEngine(t, a, p.Sock, true, 2*time.Minute)
	if svc.Storage != p.Root() {
		t.Fatalf("the service's storage is %q, want %q", svc.Storage, p.Root())
	}
	waitCopies(t, a, id, svc.ID)

	p.Kill()
	agenttest.WaitEngine(t, a, p.Sock, false, time.Minute)
	waitCopies(t, a, id, dl.ID)
	p.CLI("stop", "-t", "1", id)
	die := waitEvent(t, col, "container.die", id)
	if got := die.Attrs["agentd.container.exit_code"]; got != "137" || die.Resource["agentd.engine.id"] != dl.ID {
		t.Errorf("die with exit code %s from engine %s, want 137 from the daemonless view", got, die.Resource["agentd.engine.id"])
	}
}

// TestAgentReportsRootlessDaemonlessPodman: a user of the systemd host runs
// `podman run -d` (rootless, no service: the user's podman.socket is
// disabled, so nothing starts a service). agentd finds the user's storage through
// the container's conmon, one level down in the systemd host, reached
// through the systemd host's root (not the conmon's, which goes away),
// lists the running container and reports its die with its exit code.
func TestAgentReportsRootlessDaemonlessPodman(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.SystemdHost, testbed.Collector)
	th := testbed.SystemdHostName()
	u := testbed.NewRootlessUser(t)
	// No podman.socket: nothing (another agentd on this testbed, with
	// activation on) can start the user's podman service.
	u.Run(t, "systemctl", "--user", "disable", "--now", "podman.socket")
	tag := enginetest.Random(t)
	col := testbed.StartCollector(t)
	a, _ := startAgentWith(t, col, nil)
	// The first scan done (the systemd host's engines placed), so that the
	// container's conmon is found by a later one.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		placed := false
		for _, e := range a.Store().Snapshot().Engines {
			placed = placed || e.Prefix == th
		}
		if placed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the systemd host's engines were not found within 2 minutes")
		}
	}

	name := "dl-rl-" + tag
	id := strings.TrimSpace(u.Run(t, "podman", "run", "-d", "--name", name, "--net=host", "--pid=host",
		testbed.BusyboxImage, "sh", "-c", "sleep 15; exit 3"))
	// Found while it runs: listed (a listing reports no start).
	storage := "/home/" + u.Name + "/.local/share/containers/storage"
	var c model.Container
	for deadline := time.Now().Add(time.Minute); c.State != model.StateRunning; time.Sleep(100 * time.Millisecond) {
		for _, x := range a.Store().Snapshot().Containers {
			if x.ID == id {
				c = x
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the rootless container is not listed running within a minute: %+v", c)
		}
	}
	e, _ := a.Store().Engine(c.EngineID)
	if !e.Daemonless || e.Storage != storage || e.Prefix != th || !strings.HasSuffix(e.Endpoint, "/root"+storage) || c.Name != name || c.PID <= 0 {
		t.Errorf("rootless container %+v of engine %+v", c, e)
	}
	die := waitEvent(t, col, "container.die", id)
	if got := die.Attrs["agentd.container.exit_code"]; got != "3" {
		t.Errorf("die exit code %s, want 3", got)
	}
	if r := die.Resource; r["container.name"] != name || r["agentd.engine.prefix"] != th || r["container.runtime.name"] != "podman" {
		t.Errorf("die of the rootless container came with resource %v", r)
	}
	if out := testbed.RunInSystemdHost(t, "sh", "-c", "pgrep -u "+u.Name+" -f 'system service' || true"); out != "" {
		t.Errorf("a podman service of the user runs: %s", out)
	}
}

// cgroupMemoryUsage reads the memory usage of the cgroup process pid is in,
// from the host's tree: memory.usage_in_bytes of the v1 memory hierarchy,
// or memory.current where the memory controller is on the v2 hierarchy.
func cgroupMemoryUsage(pid string) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "cgroup"))
	if err != nil {
		return 0, err
	}
	var file string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case slices.Contains(strings.Split(parts[1], ","), "memory"):
			file = filepath.Join("/sys/fs/cgroup/memory", parts[2], "memory.usage_in_bytes")
		case parts[0] == "0" && file == "":
			file = filepath.Join("/sys/fs/cgroup", parts[2], "memory.current")
		}
	}
	if file == "" {
		return 0, fmt.Errorf("/proc/%s/cgroup names no cgroup", pid)
	}
	v, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(strings.TrimSpace(string(v)), 64)
}
