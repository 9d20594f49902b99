package agent_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/telemetry"
)

// TestAgentExportsThrottlingOOMKillsHealthAndPressure runs Docker containers
// on the host (cgroup v1 with the cgroup2 hierarchy beside it): one spinning
// under --cpus 0.1, one whose dd the OOM killer kills while its shell lives
// on, two with a health check (one turning unhealthy) and one restarted by
// its policy until it stays exited; agentd must export their throttling, the
// OOM kill, health, restarts and state, and the pressure stall times read
// from the real cgroup files, with the instruments of the table.
func TestAgentExportsThrottlingOOMKillsHealthAndPressure(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	tag := fmt.Sprintf("metrics-%08x", rand.Uint32())
	label := "agentd.test"
	run := func(name string, args ...string) string {
		args = append([]string{"run", "-d", "--name", "agentd-" + tag + "-" + name, "--label", label + "=" + tag}, args...)
		id := testbed.Run(t, "docker", args...)
		t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", id) })
		return id
	}
	spin := run("spin", "--cpus", "0.1", testbed.BusyboxImage, "sh", "-c", "while :; do :; done")
	oom := run("oom", "--memory", "32m", "--memory-swap", "32m", testbed.BusyboxImage,
		"sh", "-c", "dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 3600")
	healthy := run("healthy", "--health-cmd", "true", "--health-interval", "1s", testbed.BusyboxImage, "sleep", "3600")
	// Healthy for 15 s, then unhealthy: the change reaches agentd as
	// Docker's health_status event, after agentd listed it healthy.
	flap := run("flap", "--health-cmd", "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "1", testbed.BusyboxImage,
		"sh", "-c", "touch /tmp/ok; sleep 15; rm /tmp/ok; sleep 3600")

	// Fails at once, restarted twice by its policy, then exited for good.
	crash := run("crash", "--restart", "on-failure:2", testbed.BusyboxImage, "sh", "-c", "exit 3")

	// The health status is read when agentd lists the container: wait for
	// the first passing check, the OOM kill and the last restart before it
	// starts.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		h := testbed.Run(t, "docker", "inspect", "-f", "{{.State.Health.Status}}", healthy)
		hf := testbed.Run(t, "docker", "inspect", "-f", "{{.State.Health.Status}}", flap)
		cr := testbed.Run(t, "docker", "inspect", "-f", "{{.RestartCount}} {{.State.Status}}", crash)
		logs := testbed.Run(t, "docker", "logs", oom)
		if h == "healthy" && hf == "healthy" && cr == "2 exited" && strings.Contains(logs, "Killed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %q and %q, restarts and state %q, dd output %q: not there within 30 s", h, hf, cr, logs)
		}
	}

	col := testbed.StartCollector(t)
	startAgent(t, col, label)

	value := func(m *testbed.Metrics, id, metric string, attrs map[string]string) (float64, bool) {
		p, ok := m.Metric(map[string]string{"container.id": id}, metric).Last(attrs)
		return p.Value, ok
	}
	m := col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool {
		thr, ok1 := value(m, spin, "agentd.container.cpu.throttled_periods", nil)
		kills, ok2 := value(m, oom, "agentd.container.oom_kills", nil)
		h, ok3 := value(m, healthy, "agentd.container.health", map[string]string{telemetry.AttrHealth: "healthy"})
		return ok1 && thr > 0 && ok2 && kills >= 1 && ok3 && h == 1
	})

	t.Run("the container under --cpus 0.1 counts periods, throttled periods and throttled time", func(t *testing.T) {
		periods, _ := value(m, spin, "agentd.container.cpu.periods", nil)
		throttled, _ := value(m, spin, "agentd.container.cpu.throttled_periods", nil)
		secs, _ := value(m, spin, "agentd.container.cpu.throttled_time", nil)
		if periods <= 0 || throttled <= 0 || throttled > periods || secs <= 0 {
			t.Errorf("periods %v, throttled %v, throttled time %v s", periods, throttled, secs)
		}
		t.Logf("throttled %v of %v periods, %.2f s", throttled, periods, secs)
	})
	t.Run("the OOM kill of a process that did not end the container is counted", func(t *testing.T) {
		kills, _ := value(m, oom, "agentd.container.oom_kills", nil)
		if kills != 1 {
			t.Errorf("oom_kills %v, want 1", kills)
		}
		if st, ok := value(m, oom, "agentd.container.state", map[string]string{telemetry.AttrState: "running"}); !ok || st != 1 {
			t.Errorf("the container whose dd was killed is not exported as running")
		}
	})
	t.Run("an OOM kill while agentd runs is counted: the kernel log tells the sampler to read the counter again", func(t *testing.T) {
		// Another dd in the same container, killed like the first one; the
		// container keeps running. (stats' TestReaderReadsRareFilesWhenTheyMayHaveChanged
		// shows the counter is read only after a kill or once a minute.)
		_, _ = runQuiet("docker", "exec", oom, "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
		col.WaitMetrics(t, 15*time.Second, func(m *testbed.Metrics) bool {
			kills, ok := value(m, oom, "agentd.container.oom_kills", nil)
			return ok && kills == 2
		})
	})
	t.Run("the container with a passing health check is healthy, the others have no health", func(t *testing.T) {
		if _, ok := value(m, spin, "agentd.container.health", nil); ok {
			t.Errorf("a container without a health check has agentd.container.health")
		}
	})
	t.Run("an exited container that was restarted twice exports its state and restarts only", func(t *testing.T) {
		if v, ok := value(m, crash, "agentd.container.state", map[string]string{telemetry.AttrState: "exited"}); !ok || v != 1 {
			t.Errorf("agentd.container.state{exited} = %v (%v), want 1", v, ok)
		}
		if v, ok := value(m, crash, "agentd.container.restarts", nil); !ok || v != 2 {
			t.Errorf("agentd.container.restarts = %v (%v), want 2", v, ok)
		}
		if mt := m.Metric(map[string]string{"container.id": crash}, "container.memory.usage"); mt != nil {
			t.Errorf("the exited container has container.memory.usage")
		}
	})
	t.Run("a health check that starts failing turns the metric unhealthy and emits a WARN health_status", func(t *testing.T) {
		m := col.WaitMetrics(t, 40*time.Second, func(m *testbed.Metrics) bool {
			v, ok := value(m, flap, "agentd.container.health", map[string]string{telemetry.AttrHealth: "unhealthy"})
			return ok && v == 1
		})
		if _, ok := value(m, flap, "agentd.container.health", map[string]string{telemetry.AttrHealth: "healthy"}); !ok {
			t.Errorf("the container was never exported healthy before")
		}
		l := col.WaitLogs(t, 10*time.Second, func(l *testbed.Logs) bool {
			for _, r := range l.Events("container.health_status") {
				if r.HasResource(map[string]string{"container.id": flap}) && r.Attrs[telemetry.AttrHealth] == "unhealthy" {
					return true
				}
			}
			return false
		})
		for _, r := range l.Events("container.health_status") {
			if r.HasResource(map[string]string{"container.id": flap}) && r.Attrs[telemetry.AttrHealth] == "unhealthy" && r.Severity != 13 {
				t.Errorf("unhealthy health_status severity %d, want WARN (13)", r.Severity)
			}
		}
	})
	// PSI is read on cgroup v2 hosts only: a hybrid host's controllerless
	// cgroup2 mount has the files too, but three files more per container
	// and round were 13 % of agentd's CPU at 1,000 containers.
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	v2 := err == nil
	t.Run(fmt.Sprintf("the pressure stall times are exported on cgroup v2 hosts only (v2: %v)", v2), func(t *testing.T) {
		for _, metric := range []string{"agentd.container.cpu.pressure.stall_time", "agentd.container.memory.pressure.stall_time", "agentd.container.io.pressure.stall_time"} {
			if _, ok := value(m, spin, metric, map[string]string{telemetry.AttrStallType: "some"}); ok != v2 {
				t.Errorf("%s{some} of the spinning container exported: %v, want %v", metric, ok, v2)
			}
		}
	})
	t.Run("memory metrics are up-down counters and the limit gives memory available", func(t *testing.T) {
		for _, metric := range []string{"container.memory.usage", "container.memory.rss", "container.memory.working_set", "container.memory.available", "container.pids.count"} {
			mt := m.Metric(map[string]string{"container.id": oom}, metric)
			if mt == nil || mt.Type != "sum" || mt.Monotonic || mt.Temporality != "cumulative" {
				t.Errorf("%s: %+v, want a non-monotonic cumulative sum", metric, mt)
			}
		}
		avail, _ := value(m, oom, "container.memory.available", nil)
		ws, _ := value(m, oom, "container.memory.working_set", nil)
		if avail <= 0 || avail+ws != 32<<20 {
			t.Errorf("memory available %v + working set %v, want the 32 MiB limit", avail, ws)
		}
		if _, ok := value(m, oom, "container.paging.faults", map[string]string{"system.paging.fault.type": "minor"}); !ok {
			t.Errorf("no container.paging.faults{minor}")
		}
	})
}
