package agent_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// TestAgentdInAContainerMeasuresTheHost runs agentd the way a DaemonSet does:
// a static binary (CGO_ENABLED=0) in an image built FROM scratch, in a Docker
// container sharing the host's PID namespace, with the host's /proc and
// cgroup tree mounted read-only under /host and named by AGENTD_HOST_PROC and
// AGENTD_HOST_CGROUP. It must find the host's Docker, read the host's identity,
// and measure a container's memory as agentd on the host does (within 5 %).
func TestAgentdInAContainerMeasuresTheHost(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	tag := fmt.Sprintf("%08x", rand.Uint32())
	label := "agentd.test"

	// The image: agentd alone, FROM scratch.
	dir := t.TempDir()
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "agentd"), "../cmd/agentd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("static build of cmd/agentd: %v\n%s", err, out)
	}
	cfg := fmt.Sprintf("export:\n  interval: 1s\nevents:\n  flush_interval: 200ms\ndiscovery:\n  interval: 1s\nlabels:\n  allowlist: [%s]\nstatus:\n  socket: \"\"\n", label)
	for name, body := range map[string]string{
		"Dockerfile":  "FROM scratch\nCOPY agentd /agentd\nCOPY agentd.yaml /etc/agentd/agentd.yaml\nENTRYPOINT [\"/agentd\"]\n",
		"agentd.yaml": cfg,
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	image := "fleet-agentd:" + tag
	testbed.Run(t, "docker", "build", "-q", "-t", image, dir)
	t.Cleanup(func() { _, _ = runQuiet("docker", "rmi", "-f", image) })

	// The same capabilities as packaging/examples/daemonset.yaml: SYS_PTRACE and DAC_READ_SEARCH.

	// The measured container: 8 MiB in its tmpfs, and a memory limit.
	id := testbed.Run(t, "docker", "run", "-d", "--name", "fleet-mem-"+tag, "--label", label+"="+tag,
		"--memory", "64m", "--tmpfs", "/scratch", testbed.BusyboxImage, "sh", "-c",
		"dd if=/dev/zero of=/scratch/f bs=1M count=8 2>/dev/null; exec sleep 3600")
	t.Cleanup(func() { _, _ = runQuiet("docker", "rm", "-f", id) })

	inside := testbed.StartCollector(t)
	onHost := testbed.StartCollector(t)
	startAgent(t, onHost, label)

	name := "fleet-agentd-" + tag
	testbed.Run(t, "docker", "run", "-d", "--name", name,
		"--pid=host", "--network=host", "--cgroupns=host",
		"--cap-drop=ALL", "--cap-add=SYS_PTRACE", "--cap-add=DAC_READ_SEARCH",
		"--security-opt", "no-new-privileges", "--read-only",
		"-v", "/proc:/host/proc:ro",
		"-v", "/sys/fs/cgroup:/host/sys/fs/cgroup:ro",
		"-v", testbed.DockerSocket+":"+testbed.DockerSocket+":ro",
		"-e", "AGENTD_HOST_PROC=/host/proc",
		"-e", "AGENTD_HOST_CGROUP=/host/sys/fs/cgroup",
		image, "run", "--otlp-endpoint", inside.Endpoint(), "--otlp-insecure")
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := runQuiet("docker", "logs", "--tail", "100", name)
			t.Logf("agentd in %s, its last log lines:\n%s", name, out)
		}
		_, _ = runQuiet("docker", "rm", "-f", name)
	})

	res := map[string]string{"container.id": id}
	enough := func(m *testbed.Metrics) bool {
		mt := m.Metric(res, "container.memory.usage")
		return mt != nil && len(mt.Points) >= 3
	}
	in := inside.WaitMetrics(t, 90*time.Second, enough)
	host := onHost.WaitMetrics(t, 60*time.Second, enough)

	// agentd saw it runs in a container and found nothing wrong with its view.
	logs := testbed.Run(t, "docker", "logs", name)
	if !strings.Contains(logs, "running in a container; the host is read through its mounts") || !strings.Contains(logs, "host_root=/host/proc/2/root") {
		t.Errorf("agentd in the container did not say it reads the host through /host/proc/2/root")
	}
	for _, bad := range []string{"does not look like the host's procfs", "set host.cgroup", "PID namespace", "cannot read the host's namespaces"} {
		if strings.Contains(logs, bad) {
			t.Errorf("agentd in the container warned %q", bad)
		}
	}

	// The container's resource: the host's Docker, the host's identity.
	rIn, rHost := in.ResourcesWith(res), host.ResourcesWith(res)
	for _, k := range []string{"container.runtime.name", "agentd.engine.id", "agentd.engine.type", "host.id", "host.name", "service.instance.id", "container.name"} {
		if rIn[0].Attrs[k] != rHost[0].Attrs[k] {
			t.Errorf("resource attribute %s: %q from the container, %q from the host", k, rIn[0].Attrs[k], rHost[0].Attrs[k])
		}
	}
	machineID, err := os.ReadFile("/etc/machine-id")
	if err == nil && rIn[0].Attrs["host.id"] != string(trimNL(machineID)) {
		t.Errorf("host.id from the container = %q, want the host's machine-id %q", rIn[0].Attrs["host.id"], trimNL(machineID))
	}

	for _, metric := range []string{"container.memory.usage", "container.memory.limit"} {
		pin, ok1 := in.Metric(res, metric).Last(nil)
		ph, ok2 := host.Metric(res, metric).Last(nil)
		if !ok1 || !ok2 {
			t.Errorf("%s: from the container %v, from the host %v", metric, ok1, ok2)
			continue
		}
		diff := math.Abs(pin.Value-ph.Value) / ph.Value
		t.Logf("%s: %v from the container, %v from the host (%.2f %%)", metric, pin.Value, ph.Value, 100*diff)
		if diff > 0.05 {
			t.Errorf("%s: %v from the container, %v from the host: more than 5 %% apart", metric, pin.Value, ph.Value)
		}
	}
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}
