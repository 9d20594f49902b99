package testbed

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestSystemdHost checks the testbed's systemd host is what every activation,
// hierarchy and packaging test assumes: a booted systemd with a reachable bus,
// engine sockets listening with their services not running, and podman able to
// run a container inside (podman-in-Docker).
func TestSystemdHost(t *testing.T) {
	Require(t, Root, SystemdHost)
	th := SystemdHostName()
	exec := func(args ...string) string {
		t.Helper()
		return Run(t, "docker", append([]string{"exec", th}, args...)...)
	}

	t.Run("systemd is running or degraded with no failed engine unit", func(t *testing.T) {
		out, _ := output("docker", "exec", th, "systemctl", "is-system-running")
		// is-system-running exits non-zero for degraded; read what it printed.
		if out == "" {
			out = strings.TrimSpace(Run(t, "docker", "exec", th, "sh", "-c", "systemctl is-system-running || true"))
		}
		if out != "running" && out != "degraded" {
			t.Fatalf("systemctl is-system-running = %q", out)
		}
		failed := exec("systemctl", "--failed", "--plain", "--no-legend")
		for _, u := range []string{"podman", "docker", "containerd"} {
			if strings.Contains(failed, u) {
				t.Errorf("failed units include %s:\n%s", u, failed)
			}
		}
	})

	t.Run("the system bus reaches org.freedesktop.systemd1", func(t *testing.T) {
		exec("busctl", "--system", "--no-pager", "status", "org.freedesktop.systemd1")
		pid := SystemdHostPID(t)
		bus := fmt.Sprintf("unix:path=/proc/%d/root/run/dbus/system_bus_socket", pid)
		out := Run(t, "busctl", "--address="+bus, "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
			"org.freedesktop.systemd1.Manager", "ListUnitsByPatterns", "asas", "0", "1", "*.socket")
		for _, u := range []string{"podman.socket", "docker.socket"} {
			if !strings.Contains(out, u) {
				t.Errorf("the host's busctl over %s does not list %s", bus, u)
			}
		}
	})

	t.Run("podman.socket listens while podman.service is inactive", func(t *testing.T) {
		// Earlier tests may have activated podman; it is back to idle once stopped.
		exec("systemctl", "stop", "podman.service")
		exec("systemctl", "start", "podman.socket", "docker.socket")
		if got := exec("systemctl", "is-active", "podman.socket"); got != "active" {
			t.Errorf("podman.socket is %q", got)
		}
		out, _ := output("docker", "exec", th, "systemctl", "is-active", "podman.service")
		if out == "active" {
			t.Errorf("podman.service is active before anything connected")
		}
		exec("test", "-S", "/run/podman/podman.sock")
	})

	t.Run("podman runs a container inside the systemd host", func(t *testing.T) {
		name := fmt.Sprintf("agentd-testbed-%d", rand.Uint32())
		out := exec("podman", "run", "--rm", "--name", name, "--label", "agentd.test="+name, BusyboxImage, "echo", "hello from "+name)
		if !strings.Contains(out, "hello from "+name) {
			t.Fatalf("podman run printed %q", out)
		}
	})
}
