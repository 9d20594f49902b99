package testbed

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Part names one piece of the testbed a test depends on.
type Part string

// The testbed parts. Each is provisioned by `make testbed` (testbed/up.sh).
const (
	Docker      Part = "host dockerd (/run/docker.sock)"
	Containerd  Part = "host containerd (/run/containerd/containerd.sock)"
	CRI         Part = "containerd CRI plugin with the local pause image"
	SystemdHost Part = "systemd host container (systemd as PID 1 with podman.socket and docker.socket)"
	Collector   Part = "OpenTelemetry Collector binary built by testbed/collector.sh"
	Root        Part = "root privileges"
	Prometheus  Part = "Prometheus server (Debian package prometheus)"
	// Engines2 is today's engines, built from the module proxy by
	// testbed/vm/engines.sh for the VM host and run on the testbed host
	// too: containerd 2, runc 1.5 and the Docker 29 line's daemon.
	Engines2 Part = "second engine set (containerd 2, runc 1.5, Docker 29 line) built by testbed/vm/engines.sh"
)

// engines2Files are the binaries of the second engine set.
var engines2Files = []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "dockerd"}

// Engines2Dir is where testbed/vm/engines.sh keeps the second engine set.
func Engines2Dir() string { return filepath.Join(CacheDir(), "engines2") }

// Well-known names shared with testbed/lib.sh.
const (
	DockerSocket     = "/run/docker.sock"
	ContainerdSocket = "/run/containerd/containerd.sock"
	BusyboxImage     = "local/busybox:latest"
	PauseImage       = "registry.k8s.io/pause:3.6"
)

// Dir is the testbed state directory (AGENTD_TESTBED_DIR, default /var/lib/agentd-testbed).
func Dir() string {
	if d := os.Getenv("AGENTD_TESTBED_DIR"); d != "" {
		return d
	}
	return "/var/lib/agentd-testbed"
}

// CacheDir is the testbed cache directory (AGENTD_TESTBED_CACHE, default /var/cache/agentd-testbed).
func CacheDir() string {
	if d := os.Getenv("AGENTD_TESTBED_CACHE"); d != "" {
		return d
	}
	return "/var/cache/agentd-testbed"
}

// SystemdHostName is the Docker container name of the systemd host (AGENTD_SYSTEMD_HOST, default agentd-th).
func SystemdHostName() string {
	if n := os.Getenv("AGENTD_SYSTEMD_HOST"); n != "" {
		return n
	}
	return "agentd-th"
}

// CollectorBinary is the path of the collector built by testbed/collector.sh.
func CollectorBinary() string {
	return filepath.Join(CacheDir(), "otelcol", "otelcol-agentd")
}

// InCI reports whether the tests run under CI (CI=true), where missing parts fail.
func InCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Require makes t depend on parts: it returns when every part is present, and
// otherwise fails (CI=true) or skips the test with a message naming each missing
// part and why it was judged missing.
func Require(t testing.TB, parts ...Part) {
	t.Helper()
	var missing []string
	for _, p := range parts {
		if err := Check(p); err != nil {
			missing = append(missing, fmt.Sprintf("%s: %v", p, err))
		}
	}
	if len(missing) == 0 {
		if slices.Contains(parts, SystemdHost) {
			lockSystemdHost(t)
		}
		return
	}
	Unavailable(t, "testbed part missing (run `make testbed`): %s", strings.Join(missing, "; "))
}

// Unavailable ends t for want of something it needs, named by the message:
// a failure under CI=true, a skip otherwise.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// Check reports why part is not available, or nil when it is.
func Check(p Part) error {
	switch p {
	case Root:
		if os.Geteuid() != 0 {
			return fmt.Errorf("running as uid %d", os.Geteuid())
		}
		return nil
	case Docker:
		return dialUnix(DockerSocket)
	case Containerd:
		return dialUnix(ContainerdSocket)
	case CRI:
		if err := dialUnix(ContainerdSocket); err != nil {
			return err
		}
		return run("ctr", "-n", "k8s.io", "images", "check", "name=="+PauseImage)
	case SystemdHost:
		if err := dialUnix(DockerSocket); err != nil {
			return err
		}
		out, err := output("docker", "inspect", "-f", "{{.State.Running}} {{.State.Pid}}", SystemdHostName())
		if err != nil {
			return err
		}
		f := strings.Fields(out)
		if len(f) != 2 || f[0] != "true" {
			return fmt.Errorf("container %s is not running (%q)", SystemdHostName(), out)
		}
		bus := filepath.Join("/proc", f[1], "root/run/dbus/system_bus_socket")
		return dialUnix(bus)
	case Prometheus:
		_, err := exec.LookPath(PrometheusBinary)
		return err
	case Engines2:
		for _, f := range engines2Files {
			st, err := os.Stat(filepath.Join(Engines2Dir(), f))
			if err != nil {
				return err
			}
			if st.Mode()&0o111 == 0 {
				return fmt.Errorf("%s is not executable", filepath.Join(Engines2Dir(), f))
			}
		}
		return nil
	case Collector:
		st, err := os.Stat(CollectorBinary())
		if err != nil {
			return err
		}
		if st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", CollectorBinary())
		}
		return nil
	}
	return fmt.Errorf("unknown testbed part %q", p)
}

func dialUnix(path string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return err
	}
	return c.Close()
}

func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

func output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// Run runs a command for a test (docker, ctr, podman, ...) and fails t with its
// output when it does not succeed. It returns the trimmed combined output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := output(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// RunInSystemdHost runs a command inside the systemd host container (docker
// exec), failing t if it fails, and returns its trimmed output.
func RunInSystemdHost(t testing.TB, args ...string) string {
	t.Helper()
	return Run(t, "docker", append([]string{"exec", SystemdHostName()}, args...)...)
}

// SystemdHostPID is the host PID of the systemd host's PID 1.
func SystemdHostPID(t testing.TB) int {
	t.Helper()
	out := Run(t, "docker", "inspect", "-f", "{{.State.Pid}}", SystemdHostName())
	pid, err := strconv.Atoi(out)
	if err != nil || pid <= 0 {
		t.Fatalf("systemd host %s: bad pid %q", SystemdHostName(), out)
	}
	return pid
}
