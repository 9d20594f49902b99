package agent_test

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// slowStart is how long the drop-in of TestReliabilitySlowPodmanIsActivated
// holds podman.service in "activating": ten times the 2 s that activation
// used to allow.
const slowStart = 20 * time.Second

// TestReliabilitySlowPodmanIsActivated makes the systemd host's podman
// slow to start (a drop-in ExecStartPre=/bin/sleep 20, as on a loaded VM)
// while only podman.socket listens, then starts agentd: the activation must
// follow the start job and the unit until it is active, wait for the socket
// to answer, succeed at the first attempt (no "activation failed") and the
// agent must then watch podman and export its container.
func TestReliabilitySlowPodmanIsActivated(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.Root, testbed.SystemdHost, testbed.Collector)
	th := testbed.SystemdHostName()
	const dropIn = "/run/systemd/system/podman.service.d/hung-slow-start.conf"
	t.Cleanup(func() {
		_, _ = runQuiet("docker", "exec", th, "rm", "-f", dropIn)
		_, _ = runQuiet("docker", "exec", th, "systemctl", "daemon-reload")
		_, _ = runQuiet("docker", "exec", th, "systemctl", "start", "podman.socket")
	})
	tag := fmt.Sprintf("hung-slow-%08x", rand.Uint32())
	id := testbed.RunInSystemdHost(t, "podman", "run", "-d", "--name", tag, "--label", "agentd.test="+tag, testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() { _, _ = runQuiet("docker", "exec", th, "podman", "rm", "-f", "-t", "0", id) })

	testbed.RunInSystemdHost(t, "mkdir", "-p", "/run/systemd/system/podman.service.d")
	testbed.RunInSystemdHost(t, "sh", "-c", fmt.Sprintf("printf '[Service]\\nExecStartPre=/bin/sleep %d\\n' > %s", int(slowStart.Seconds()), dropIn))
	testbed.RunInSystemdHost(t, "systemctl", "daemon-reload")
	testbed.RunInSystemdHost(t, "systemctl", "stop", "podman.service")
	testbed.RunInSystemdHost(t, "systemctl", "start", "podman.socket")
	if out, _ := runQuiet("docker", "exec", th, "systemctl", "is-active", "podman.service"); out == "active" {
		t.Fatal("podman.service is still active")
	}

	col := testbed.StartCollector(t)
	start := time.Now()
	// The systemd host's podman by its path inside the host (and the
	// host's Docker, which places it in the container th).
	_, logs := startAgent(t, col, "agentd.test", testbed.DockerSocket, "/run/podman/podman.sock")
	col.WaitMetrics(t, 3*slowStart+30*time.Second, func(m *testbed.Metrics) bool {
		return len(m.ResourcesWith(map[string]string{"container.id": id, "agentd.engine.prefix": th})) == 1
	})
	took := time.Since(start)
	t.Logf("podman's container exported %v after agentd started (podman.service held %v in ExecStartPre)", took.Round(time.Millisecond), slowStart)
	if took < slowStart {
		t.Errorf("container exported after %v, before podman.service could have started (%v): was the drop-in applied?", took, slowStart)
	}
	if n := logs.Count("activation failed", "unit=podman.socket"); n != 0 {
		t.Errorf("%d failed activations of podman.socket, want 0:\n%s", n, grepLines(logs, "activation failed"))
	}
	activated, _, taken := activations(logs, "podman.socket", "/run/podman/podman.sock")
	if activated != 1 || taken != 1 {
		t.Errorf("podman.socket: %d activations, %d engines taken in; want 1, 1", activated, taken)
	}
	// The activation itself waited for the slow start: its elapsed time is
	// at least the ExecStartPre sleep.
	line := grepLines(logs, `msg="activated engine socket"`, "unit=podman.socket")
	m := regexp.MustCompile(`elapsed=([0-9.a-zµ]+)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("no elapsed time in the activation line of podman.socket:\n%s", line)
	}
	if d, err := time.ParseDuration(m[1]); err != nil || d < slowStart {
		t.Errorf("activation took %s, want at least %v (the start job followed to its end)", m[1], slowStart)
	} else {
		t.Logf("activation of podman.socket took %v", d)
	}
	if out := testbed.RunInSystemdHost(t, "systemctl", "is-active", "podman.service"); strings.TrimSpace(out) != "active" {
		t.Errorf("podman.service is %q", out)
	}
}

// grepLines returns the lines of l's log that contain every one of subs.
func grepLines(l *testbed.LogBuffer, subs ...string) string {
	var out []string
next:
	for _, line := range strings.Split(l.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
