package agent_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// TestAgentActivatesRootlessPodmanOfAUserInstance: a user of the systemd
// host with lingering and `systemctl --user enable podman.socket` (rootless
// podman as its documentation sets it up). agentd finds the user's systemd,
// reaches it over the user's own bus as that user, activates the user's
// podman.socket, watches the rootless podman one level down (inside the
// systemd host's container) and exports its container's life.
func TestAgentActivatesRootlessPodmanOfAUserInstance(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.SystemdHost, testbed.Collector)
	th := testbed.SystemdHostName()
	tag := fmt.Sprintf("%06x", rand.Uint32()>>8)
	label := "agentd.test"

	u := testbed.NewRootlessUser(t)
	thID := strings.TrimSpace(testbed.Run(t, "docker", "inspect", "-f", "{{.Id}}", th))

	col := testbed.StartCollector(t)
	startAgent(t, col, label)

	endpoint := u.PodmanSocket()
	found := col.WaitLogs(t, 2*time.Minute, func(l *testbed.Logs) bool {
		for _, r := range l.Events("agentd.engine.found") {
			if strings.HasSuffix(r.Resource["agentd.engine.endpoint"], endpoint) {
				return true
			}
		}
		return false
	})
	for _, r := range found.Events("agentd.engine.found") {
		if strings.HasSuffix(r.Resource["agentd.engine.endpoint"], endpoint) {
			if got := r.Resource["agentd.engine.parent.container.id"]; got != thID {
				t.Errorf("the rootless podman's parent container is %q, want the systemd host's %q", got, thID)
			}
			if got := r.Resource["agentd.engine.type"]; got != "podman" {
				t.Errorf("the rootless engine's type is %q, want podman", got)
			}
		}
	}

	// A rootless container (host network and PID namespace: this cgroup v1
	// host in a container gives a user no network or PID namespaces of its own).
	name := "agentd-rl-" + tag
	id := strings.TrimSpace(u.Run(t, "podman", "run", "-d", "--name", name, "--net=host", "--pid=host",
		"--label", label+"="+tag, testbed.BusyboxImage, "sh", "-c", "sleep 3; exit 3"))
	logs := col.WaitLogs(t, 2*time.Minute, func(l *testbed.Logs) bool {
		for _, r := range l.Events("container.die") {
			if r.Resource["container.id"] == id {
				return true
			}
		}
		return false
	})
	// The container's resource names its podman by the user's storage, the
	// same whichever view (the service behind the socket, or the daemonless
	// view once the service has idled out) reports it.
	storage := strings.TrimSpace(u.Run(t, "podman", "info", "--format", "{{.Store.GraphRoot}}"))
	var starts, dies int
	for _, r := range logs.Records {
		if r.Resource["container.id"] != id {
			continue
		}
		switch r.EventName {
		case "container.start":
			starts++
		case "container.die":
			dies++
			if got := r.Attrs["agentd.container.exit_code"]; got != "3" {
				t.Errorf("die exit code %s, want 3", got)
			}
		}
		if r.Resource["agentd.engine.endpoint"] != storage || r.Resource["agentd.engine.id"] != "podman:"+th+":"+storage ||
			r.Resource["container.name"] != name || r.Resource["agentd.engine.prefix"] != th {
			t.Errorf("%s of the rootless container came with resource %v", r.EventName, r.Resource)
		}
	}
	if starts != 1 || dies != 1 {
		t.Errorf("rootless container: %d starts and %d dies exported, want 1 and 1", starts, dies)
	}
}
