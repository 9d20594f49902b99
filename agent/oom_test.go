package agent_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/telemetry"
)

// oomScript fills a memory-limited container's memory until the kernel's OOM
// killer kills its shell, the container's init: exit code 137.
const oomScript = "x=a; while true; do x=$x$x; done"

// TestAgentReportsOOMKillsFromTheKernelLog proves the OOM detector against
// host Docker 20.10 on this cgroup v1 host, which reports an OOM-killed
// container only as a die with exit code 137: no "oom" event, OOMKilled=false.
// agentd must export a container.oom record (WARN) for the container and mark
// its die with agentd.container.oom_killed=true.
func TestAgentReportsOOMKillsFromTheKernelLog(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	tag := fmt.Sprintf("oom-%08x", rand.Uint32())
	label := "agentd.test"

	col := testbed.StartCollector(t)
	a, _ := startAgent(t, col, label)

	id := testbed.Run(t, "docker", "create", "--name", "agentd-"+tag, "--label", label+"="+tag,
		"--memory", "8m", "--memory-swap", "8m", testbed.BusyboxImage, "sh", "-c", oomScript)
	t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", id) })
	// The OOM detector starts with the agent; the kill is matched to a
	// container the model knows, so wait until the watcher has it.
	waitForContainer(t, a, id)
	testbed.Run(t, "docker", "start", id)
	if code := testbed.Run(t, "docker", "wait", id); code != "137" {
		t.Fatalf("docker wait %s = %s, want 137 (OOM kill)", id, code)
	}
	if oomKilled := testbed.Run(t, "docker", "inspect", "-f", "{{.State.OOMKilled}}", id); oomKilled != "false" {
		t.Logf("Docker itself says OOMKilled=%s: this host's engine reports OOM kills, the detector must not duplicate them", oomKilled)
	}

	l := col.WaitLogs(t, 15*time.Second, func(l *testbed.Logs) bool {
		var oom, die bool
		for _, r := range l.Events("container.oom") {
			oom = oom || r.HasResource(map[string]string{"container.id": id})
		}
		for _, r := range l.Events("container.die") {
			die = die || (r.HasResource(map[string]string{"container.id": id}) && r.Attrs[telemetry.AttrOOMKilled] == "true")
		}
		return oom && die
	})

	t.Run("the container.oom record is a WARN for the container, flagged, once", func(t *testing.T) {
		var n int
		for _, r := range l.Events("container.oom") {
			if !r.HasResource(map[string]string{"container.id": id}) {
				continue
			}
			n++
			if r.Severity != 13 || r.Attrs[telemetry.AttrOOMKilled] != "true" {
				t.Errorf("container.oom severity %d (%s), attributes %v; want WARN with %s=true", r.Severity, r.SeverityText, r.Attrs, telemetry.AttrOOMKilled)
			}
			if r.Resource["container.name"] != "agentd-"+tag || r.Resource["container.runtime.name"] != "docker" {
				t.Errorf("container.oom resource %v", r.Resource)
			}
		}
		if n != 1 {
			t.Errorf("%d container.oom records for the container, want 1", n)
		}
	})
	t.Run("the die carries exit code 137, SIGKILL and the OOM flag", func(t *testing.T) {
		var found []string
		for _, r := range l.Events("container.die") {
			if !r.HasResource(map[string]string{"container.id": id}) {
				continue
			}
			found = append(found, fmt.Sprint(r.Attrs))
			if r.Attrs[telemetry.AttrExitCode] == "137" && r.Attrs[telemetry.AttrOOMKilled] == "true" &&
				r.Attrs[telemetry.AttrSignal] == "SIGKILL" && r.Severity == 13 {
				return
			}
		}
		t.Errorf("no die with exit code 137, SIGKILL, oom_killed=true and WARN; dies: %s", strings.Join(found, "; "))
	})
	t.Run("the container.oom is timed at the kill, before the die's observation", func(t *testing.T) {
		var oomAt, dieAt time.Time
		for _, r := range l.Events("container.oom") {
			if r.HasResource(map[string]string{"container.id": id}) {
				oomAt = r.Time
			}
		}
		for _, r := range l.Events("container.die") {
			if r.HasResource(map[string]string{"container.id": id}) {
				dieAt = r.ObservedTime
			}
		}
		if oomAt.IsZero() || oomAt.After(dieAt) || time.Since(oomAt) > time.Minute {
			t.Errorf("container.oom at %v, die observed at %v", oomAt, dieAt)
		}
	})
}

// TestAgentDoesNotDuplicateAnOOMTheEngineReports runs the OOM in the Docker
// inside the systemd host, which does report it ("oom" event, OOMKilled=true):
// the kernel log sees the same kill, and exactly one container.oom must reach
// the collector.
func TestAgentDoesNotDuplicateAnOOMTheEngineReports(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.SystemdHost, testbed.Collector)
	th := testbed.SystemdHostName()
	tag := fmt.Sprintf("oomdup-%08x", rand.Uint32())
	label := "agentd.test"

	col := testbed.StartCollector(t)
	a, _ := startAgent(t, col, label)

	id := testbed.Run(t, "docker", "exec", th, "docker", "create", "--name", "agentd-"+tag, "--label", label+"="+tag,
		"--memory", "8m", "--memory-swap", "8m", testbed.BusyboxImage, "sh", "-c", oomScript)
	t.Cleanup(func() { _, _ = runQuiet("docker", "exec", th, "docker", "rm", "-f", id) })
	waitForContainer(t, a, id)
	since := testbed.Run(t, "docker", "exec", th, "date", "+%s")
	testbed.Run(t, "docker", "exec", th, "docker", "start", id)
	if code := testbed.Run(t, "docker", "exec", th, "docker", "wait", id); code != "137" {
		t.Fatalf("docker wait = %s, want 137", code)
	}
	// Without the engine's own report this test would prove nothing.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		ev := testbed.Run(t, "docker", "exec", th, "docker", "events", "--since", since, "--until", "0s", "--filter", "container="+id)
		if strings.Contains(ev, " oom ") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Docker in the systemd host did not report the OOM itself (events: %q): deduplication is not exercised", ev)
		}
	}
	count := func(l *testbed.Logs) (oom int, die bool) {
		for _, r := range l.Events("container.oom") {
			if r.HasResource(map[string]string{"container.id": id}) {
				oom++
			}
		}
		for _, r := range l.Events("container.die") {
			die = die || (r.HasResource(map[string]string{"container.id": id}) && r.Attrs[telemetry.AttrOOMKilled] == "true")
		}
		return oom, die
	}
	col.WaitLogs(t, 15*time.Second, func(l *testbed.Logs) bool {
		n, die := count(l)
		return n >= 1 && die
	})
	// Give a duplicate time to arrive: the detector's grace is 1 s, the event flush 200 ms.
	time.Sleep(3 * time.Second)
	l, err := col.Logs()
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := count(l); n != 1 {
		t.Errorf("%d container.oom records for the container, want exactly 1", n)
	}
}

// waitForContainer waits until the agent's model holds the container id.
func waitForContainer(t *testing.T, a *agent.Agent, id string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		for _, c := range a.Store().Snapshot().Containers {
			if c.ID == id {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s not in the agent's model after 60 s", id)
		}
	}
}
