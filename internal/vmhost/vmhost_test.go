package vmhost_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/cripod"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/internal/testbed"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	// exportInterval is agentd's export interval in the guest: short, so
	// the run is short, and the same every round.
	exportInterval = 5 * time.Second
	// bootTimeout bounds one whole guest run: boot, dockerd's start, three
	// engines' loads, agentd's rounds. A run takes 3-5 minutes under TCG on
	// 2 busy cores; the guest is emulated and has no short deadline anywhere.
	bootTimeout = 25 * time.Minute
	// blobSize is what each networked container downloads from the host.
	blobSize = 1 << 20
	// tolerance is how far agentd's figure may be from the engine's.
	tolerance = 0.05
)

// repoRoot is the checkout this package lives in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// requireVM makes t depend on qemu and a VM host image built from the
// current recipe (testbed/vm/build.sh): under CI=true a missing one fails t.
func requireVM(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		testbed.Unavailable(t, "VM host: qemu-system-x86_64 is not installed (Debian package qemu-system-x86; run `make testbed`)")
	}
	check := exec.Command("bash", filepath.Join(repoRoot(t), "testbed", "vm", "build.sh"), "--check")
	if out, err := check.CombinedOutput(); err != nil {
		testbed.Unavailable(t, "VM host: no image from the current testbed/vm/build.sh in %s (run `make testbed`): %v %s",
			filepath.Join(testbed.CacheDir(), "vm"), err, out)
	}
}

// buildDeb builds agentd's .deb with packaging/build.sh into dir.
func buildDeb(t *testing.T, version, dir string) string {
	t.Helper()
	testbed.BuildPackages(t, repoRoot(t), version, dir)
	return filepath.Join(dir, "agentd_"+version+"_amd64.deb")
}

// serveBlob serves blobSize bytes at /blob on the host's loopback, which
// the guest reaches as 10.0.2.2, and returns the guest's URL for it.
func serveBlob(t *testing.T) string {
	t.Helper()
	blob := bytes.Repeat([]byte("agentd-vm-"), blobSize/10+1)[:blobSize]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(blob)))
		_, _ = w.Write(blob)
	}))
	t.Cleanup(srv.Close)
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return "http://10.0.2.2:" + port + "/blob"
}

// guestEndpoint is a host loopback endpoint as the guest dials it.
func guestEndpoint(t *testing.T, hostEndpoint string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(hostEndpoint)
	if err != nil {
		t.Fatalf("collector endpoint %q: %v", hostEndpoint, err)
	}
	return "10.0.2.2:" + port
}

// boot runs testbed/vm/boot.sh on share until the guest powers off and
// fails t, with the ends of the guest's console and run log, when the run
// did not end with status 0.
func boot(ctx context.Context, t *testing.T, share string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot(t), "testbed", "vm", "boot.sh"), share)
	// boot.sh and its qemu are a process group of their own: a deadline
	// ends both.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	rc, _ := os.ReadFile(filepath.Join(share, "run.rc"))
	t.Logf("guest run: %v, exit %q", time.Since(start).Round(time.Second), strings.TrimSpace(string(rc)))
	if err == nil && strings.TrimSpace(string(rc)) == "0" {
		return
	}
	t.Fatalf("VM host run (testbed/vm/boot.sh %s): %v, guest exit %q\nqemu: %s\nrun.log:\n%s\nconsole (end):\n%s",
		share, err, strings.TrimSpace(string(rc)), out, tail(filepath.Join(share, "run.log"), 60), tail(filepath.Join(share, "console.log"), 40))
}

// tail returns the last n lines of a file, or why it cannot.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// readOut returns a file the guest wrote to /share/out, trimmed.
func readOut(t *testing.T, share, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(share, "out", name))
	if err != nil {
		t.Fatalf("guest output: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// decodeOut decodes a JSON file the guest wrote to /share/out into v.
func decodeOut(t *testing.T, share, name string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(readOut(t, share, name)), v); err != nil {
		t.Fatalf("guest output %s: %v", name, err)
	}
}

// journal decodes the guest's `journalctl -u agentd -o json`.
func journal(t *testing.T, share string) []map[string]any {
	t.Helper()
	entries, err := testbed.JournalEntries(readOut(t, share, "journal.json"))
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// field renders a journal field.
var field = testbed.JournalField

// figure is one of agentd's exported values next to the engine's own.
type figure struct {
	name   string            // what is compared, for the report
	metric string            // agentd's metric
	match  map[string]string // the data point attributes summed over
	engine float64           // the engine's figure, in agentd's unit
	// min is the least the engine's figure must be for the load to show:
	// a comparison of two zeros proves nothing.
	min float64
}

// agentdValue is agentd's value of metric on r, summed over the points
// matching match of the export round nearest at: the loads are steady, so
// one round is as good as another, and the nearest is the fairest.
func agentdValue(r *testbed.Resource, metric string, match map[string]string, at time.Time) (float64, time.Time, bool) {
	m := r.Metric(metric)
	if m == nil {
		return 0, time.Time{}, false
	}
	var best time.Time
	for _, p := range m.Points {
		if !hasAttrs(p.Attrs, match) {
			continue
		}
		if best.IsZero() || absDur(p.Time.Sub(at)) < absDur(best.Sub(at)) {
			best = p.Time
		}
	}
	if best.IsZero() {
		return 0, time.Time{}, false
	}
	var sum float64
	for _, p := range m.Points {
		if p.Time.Equal(best) && hasAttrs(p.Attrs, match) {
			sum += p.Value
		}
	}
	return sum, best, true
}

func hasAttrs(attrs, match map[string]string) bool {
	for k, v := range match {
		if attrs[k] != v {
			return false
		}
	}
	return true
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// compare checks every figure of one container of the engine runtime
// against agentd's export, and returns the container's resource.
func compare(t *testing.T, m *testbed.Metrics, runtime, container string, at time.Time, figures []figure) *testbed.Resource {
	t.Helper()
	// The container's figures at the moment are on one resource: the one
	// with a memory usage in the export round nearest it. (A container may
	// have had others before: its first export, before the engine was
	// asked about it, has fewer attributes and only its state; a podman
	// container is reported by its storage until podman's service answers,
	// then by the service.)
	var res []*testbed.Resource
	for _, r := range m.ResourcesWith(map[string]string{"container.name": container}) {
		if _, when, ok := agentdValue(r, "container.memory.usage", anyPoint, at); ok && absDur(when.Sub(at)) <= exportInterval {
			res = append(res, r)
		}
	}
	if len(res) != 1 {
		t.Fatalf("%d resources with figures for container %s within %v of the engine's figures, want 1; the collector holds %s",
			len(res), container, exportInterval, m.Summary())
	}
	if got := res[0].Attrs["container.runtime.name"]; got != runtime {
		t.Errorf("container %s: container.runtime.name %q, want %q", container, got, runtime)
	}
	for _, f := range figures {
		got, when, ok := agentdValue(res[0], f.metric, f.match, at)
		if !ok && f.engine == 0 && f.min == 0 {
			// Nothing to export: a cgroup without the controller (a
			// rootless user's has no io) has no file to read.
			t.Logf("%-28s agentd absent          engine %14.3f", f.name, f.engine)
			continue
		}
		if !ok {
			t.Errorf("%s: agentd exported no %s %v", f.name, f.metric, f.match)
			continue
		}
		diff := math.Abs(got-f.engine) / math.Max(math.Abs(f.engine), 1)
		t.Logf("%-28s agentd %14.3f  engine %14.3f  (%+.2f %%, agentd's round %+.1fs from the engine's)",
			f.name, got, f.engine, 100*(got-f.engine)/math.Max(math.Abs(f.engine), 1), when.Sub(at).Seconds())
		if f.engine < f.min {
			t.Errorf("%s: the engine reports %.0f, less than the load's %.0f: the load did not show", f.name, f.engine, f.min)
		}
		if diff > tolerance {
			t.Errorf("%s: agentd %.3f, engine %.3f: %.1f %% apart, more than %.0f %%", f.name, got, f.engine, 100*diff, 100*tolerance)
		}
	}
	return res[0]
}

// dockerStats is the part of Docker's stats API answer (GET
// /containers/ID/stats?stream=false, API 1.41 of Docker 20.10 and 1.44 of
// Docker 29, cgroup v2) the test reads.
type dockerStats struct {
	MemoryStats struct {
		Usage float64            `json:"usage"` // memory.current
		Stats map[string]float64 `json:"stats"` // memory.stat
	} `json:"memory_stats"`
	CPUStats struct {
		CPUUsage struct {
			Total  float64 `json:"total_usage"`         // ns, cpu.stat usage_usec
			User   float64 `json:"usage_in_usermode"`   // ns, user_usec
			Kernel float64 `json:"usage_in_kernelmode"` // ns, system_usec
		} `json:"cpu_usage"`
	} `json:"cpu_stats"`
	PidsStats struct {
		Current float64 `json:"current"` // pids.current
	} `json:"pids_stats"`
	Networks map[string]struct {
		RxBytes float64 `json:"rx_bytes"`
		TxBytes float64 `json:"tx_bytes"`
	} `json:"networks"`
	BlkioStats struct {
		IOServiceBytesRecursive []struct {
			Op    string  `json:"op"`
			Value float64 `json:"value"`
		} `json:"io_service_bytes_recursive"` // io.stat rbytes, wbytes
	} `json:"blkio_stats"`
}

func (s dockerStats) blkio(op string) float64 {
	var sum float64
	for _, e := range s.BlkioStats.IOServiceBytesRecursive {
		if strings.EqualFold(e.Op, op) {
			sum += e.Value
		}
	}
	return sum
}

func (s dockerStats) net() (rx, tx float64) {
	for _, n := range s.Networks {
		rx += n.RxBytes
		tx += n.TxBytes
	}
	return rx, tx
}

// podmanStats is podman's own stats API answer (GET
// /v4.0.0/libpod/containers/stats?stream=false, podman 4.3, cgroup v2), with
// podman 4.3's quirks on v2 measured against the cgroup files:
// CPUSystemNano is system_usec unconverted (microseconds, despite its
// name), MemUsage is memory.stat anon (`podman stats` prints the same), and
// NetInput and NetOutput are swapped (NetInput is what eth0 transmitted).
type podmanStats struct {
	Stats []struct {
		Name          string  `json:"Name"`
		CPUNano       float64 `json:"CPUNano"`       // ns, cpu.stat usage_usec
		CPUSystemNano float64 `json:"CPUSystemNano"` // µs, cpu.stat system_usec
		MemUsage      float64 `json:"MemUsage"`      // memory.stat anon
		NetInput      float64 `json:"NetInput"`      // eth0 transmitted
		NetOutput     float64 `json:"NetOutput"`     // eth0 received
		BlockInput    float64 `json:"BlockInput"`    // io.stat rbytes
		BlockOutput   float64 `json:"BlockOutput"`   // io.stat wbytes
		PIDs          float64 `json:"PIDs"`
	} `json:"Stats"`
}

// containerdMetrics is `ctr task metrics --format json` on cgroup v2: the
// cgroup v2 Metrics message of containerd's cgroups package.
type containerdMetrics struct {
	Pids struct {
		Current float64 `json:"current"`
	} `json:"pids"`
	CPU struct {
		UsageUsec  float64 `json:"usage_usec"`
		UserUsec   float64 `json:"user_usec"`
		SystemUsec float64 `json:"system_usec"`
	} `json:"cpu"`
	Memory struct {
		Usage        float64 `json:"usage"` // memory.current
		Anon         float64 `json:"anon"`
		InactiveFile float64 `json:"inactive_file"`
	} `json:"memory"`
	IO struct {
		Usage []struct {
			Rbytes float64 `json:"rbytes"`
			Wbytes float64 `json:"wbytes"`
		} `json:"usage"`
	} `json:"io"`
}

const (
	mib = 1 << 20
	// The loads of testdata/guest.sh.
	shmLoad   = 32 * mib // in /dev/shm
	diskLoad  = 16 * mib // written with an fsync
	procsLoad = 4        // sh and three sleeps
	cpuLoad   = 1        // s: 5 s of `yes` get at least one CPU second even on a busy emulated guest
)

var (
	read     = map[string]string{"disk.io.direction": "read"}
	write    = map[string]string{"disk.io.direction": "write"}
	rx       = map[string]string{"network.io.direction": "receive"}
	tx       = map[string]string{"network.io.direction": "transmit"}
	userCPU  = map[string]string{"cpu.mode": "user"}
	sysCPU   = map[string]string{"cpu.mode": "system"}
	anyPoint = map[string]string{}
)

// prepareShare fills a new share for one guest run of the test named test:
// the guest script (testdata/script as run.sh, testdata/lib.sh beside it),
// agentd's .deb, the testbed's busybox image, the run's settings and an
// agentd configuration that exports to a collector started for the test.
func prepareShare(t *testing.T, test, script string) (string, *testbed.Otelcol) {
	t.Helper()
	share := t.TempDir()
	deb := buildDeb(t, "0.0.1~vm1", filepath.Join(t.TempDir(), "dist"))
	if err := os.Rename(deb, filepath.Join(share, "agentd.deb")); err != nil {
		t.Fatal(err)
	}
	testbed.Run(t, "docker", "save", "-o", filepath.Join(share, "busybox.tar"), testbed.BusyboxImage)
	col := testbed.StartCollector(t)
	content := map[string]string{
		"env": fmt.Sprintf("INTERVAL=%d\nBLOB_URL=%s\n", int(exportInterval.Seconds()), serveBlob(t)),
		"agentd.yaml": fmt.Sprintf("# written by %s\nexport:\n  endpoint: %s\n  insecure: true\n  interval: %s\n",
			test, guestEndpoint(t, col.Endpoint()), exportInterval),
	}
	for name, src := range map[string]string{"run.sh": script, "lib.sh": "lib.sh"} {
		b, err := os.ReadFile(filepath.Join("testdata", src))
		if err != nil {
			t.Fatal(err)
		}
		content[name] = string(b)
	}
	for name, c := range content {
		if err := os.WriteFile(filepath.Join(share, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return share, col
}

// TestVMHostCgroupV2FiguresMatchTheEngines boots the VM host (testbed/vm:
// Debian 12, systemd as PID 1, cgroup v2), installs agentd there from its
// .deb under its hardened unit, runs one container each on Docker
// (docker.socket), containerd (ctr) and podman as root (podman.socket, which
// agentd activates) with a steady, known load, and checks that agentd found
// the three engines, reported the three containers, and that every container
// figure it exports is within 5 % of the engine's own at the same moment.
//
// Two more containers, each checked the same way against its podman's own
// figures: one of rootless podman (a user with lingering and podman.socket
// enabled in the user's systemd), and one of podman whose PID 1 is systemd,
// which moves itself into init.scope while the container's cgroup holds a
// service besides.
//
// It needs the collector, the host's Docker (for the testbed's busybox
// image), qemu and the VM image (`make testbed`).
func TestVMHostCgroupV2FiguresMatchTheEngines(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Collector, testbed.Docker)
	requireVM(t)
	share, col := prepareShare(t, "TestVMHostCgroupV2FiguresMatchTheEngines", "guest.sh")
	boot(t.Context(), t, share)

	t.Run("the guest is a cgroup v2 host with systemd as PID 1", func(t *testing.T) { checkHost(t, share) })

	t.Run("agentd found Docker, containerd and podman, each with an engine found journal entry", func(t *testing.T) {
		checkEnginesFound(t, share, "docker", "containerd", "podman")
	})

	t.Run("the hardened unit's sandbox is not taken for a container", func(t *testing.T) { checkOnTheHost(t, share) })

	m, at := exported(t, col, share)

	t.Run("the Docker container's figures are within 5 % of Docker's stats API", func(t *testing.T) {
		checkDockerFigures(t, m, share, at, "vmh-docker")
	})

	t.Run("the podman container's figures are within 5 % of podman's stats API", func(t *testing.T) {
		var s podmanStats
		decodeOut(t, share, "engine-podman.json", &s)
		if len(s.Stats) != 1 {
			t.Fatalf("podman's stats API answered %d containers, want 1", len(s.Stats))
		}
		p := s.Stats[0]
		// podman 4.3 has no figure with the page cache (MemUsage is anon):
		// agentd's usage and working set, read the same way for every
		// engine, are compared with Docker's and containerd's.
		compare(t, m, "podman", "vmh-podman", at, []figure{
			{"memory anon (rss)", "container.memory.rss", anyPoint, p.MemUsage, 0},
			{"cpu time", "container.cpu.time", anyPoint, p.CPUNano / 1e9, cpuLoad},
			{"cpu time user", "container.cpu.time", userCPU, p.CPUNano/1e9 - p.CPUSystemNano/1e6, 0},
			{"cpu time system", "container.cpu.time", sysCPU, p.CPUSystemNano / 1e6, 0},
			{"pids", "container.pids.count", anyPoint, p.PIDs, procsLoad},
			{"network received", "container.network.io", rx, p.NetOutput, blobSize},
			{"network transmitted", "container.network.io", tx, p.NetInput, 1},
			{"disk read", "container.disk.io", read, p.BlockInput, 0},
			{"disk written", "container.disk.io", write, p.BlockOutput, diskLoad},
		})
	})

	t.Run("the containerd container's figures are within 5 % of containerd's task metrics", func(t *testing.T) {
		checkContainerdFigures(t, m, share, at, "vmh-ctr")
	})

	t.Run("the rootless podman container's figures are within 5 % of the user's podman stats API", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(share, "out", "rootless-failed")); err == nil {
			t.Fatalf("rootless podman in the guest failed; run.log:\n%s", tail(filepath.Join(share, "run.log"), 40))
		}
		sock := "/run/user/" + readOut(t, share, "rootless-uid") + "/podman/podman.sock"
		var found bool
		for _, e := range journal(t, share) {
			if field(e, "MESSAGE") == "engine found" && field(e, "ENGINE_TYPE") == "podman" && strings.HasSuffix(field(e, "ENGINE_ID"), sock) {
				found = true
			}
		}
		if !found {
			t.Errorf("no engine found entry for the user's podman at %s", sock)
		}
		var s podmanStats
		decodeOut(t, share, "engine-rootless.json", &s)
		if len(s.Stats) != 1 {
			t.Fatalf("the user's podman stats API answered %d containers, want 1", len(s.Stats))
		}
		p := s.Stats[0]
		// A user's systemd delegates no io controller: no disk figures on
		// either side. The container has no download (slirp4netns).
		compare(t, m, "podman", "vmh-rootless", at, []figure{
			{"memory anon (rss)", "container.memory.rss", anyPoint, p.MemUsage, 0},
			{"cpu time", "container.cpu.time", anyPoint, p.CPUNano / 1e9, cpuLoad},
			{"cpu time user", "container.cpu.time", userCPU, p.CPUNano/1e9 - p.CPUSystemNano/1e6, 0},
			{"cpu time system", "container.cpu.time", sysCPU, p.CPUSystemNano / 1e6, 0},
			{"pids", "container.pids.count", anyPoint, p.PIDs, procsLoad},
			{"network received", "container.network.io", rx, p.NetOutput, 0},
			{"network transmitted", "container.network.io", tx, p.NetInput, 0},
			{"disk read", "container.disk.io", read, p.BlockInput, 0},
			{"disk written", "container.disk.io", write, p.BlockOutput, 0},
		})
	})

	t.Run("a systemd container's figures are its whole cgroup's, not its PID 1's init.scope", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(share, "out", "systemd-failed")); err == nil {
			t.Fatalf("systemd in a podman container failed in the guest; run.log:\n%s", tail(filepath.Join(share, "run.log"), 40))
		}
		// The case is real only when PID 1 moved into a sub-cgroup.
		if cg := readOut(t, share, "systemd-pid1-cgroup"); !strings.HasSuffix(cg, "/init.scope") {
			t.Fatalf("systemd in vmh-systemd is in %q, not in an init.scope of its own", cg)
		}
		var s podmanStats
		decodeOut(t, share, "engine-systemd.json", &s)
		if len(s.Stats) != 1 {
			t.Fatalf("podman's stats API answered %d containers, want 1", len(s.Stats))
		}
		p := s.Stats[0]
		// systemd, and hold.service's shell and two sleeps outside
		// init.scope: init.scope alone would count 1.
		const systemdProcs = 4
		compare(t, m, "podman", "vmh-systemd", at, []figure{
			{"memory anon (rss)", "container.memory.rss", anyPoint, p.MemUsage, 0},
			{"cpu time", "container.cpu.time", anyPoint, p.CPUNano / 1e9, 0},
			{"cpu time system", "container.cpu.time", sysCPU, p.CPUSystemNano / 1e6, 0},
			{"pids", "container.pids.count", anyPoint, p.PIDs, systemdProcs},
			{"disk written", "container.disk.io", write, p.BlockOutput, 0},
		})
	})
}

// checkHost checks the guest's facts: cgroup v2 with the controllers agentd
// reads, systemd as PID 1, agentd's service and socket active.
func checkHost(t *testing.T, share string) {
	t.Helper()
	if got := readOut(t, share, "cgroup-fstype"); got != "cgroup2fs" {
		t.Errorf("/sys/fs/cgroup in the guest is %q, want cgroup2fs", got)
	}
	if got := readOut(t, share, "pid1"); got != "systemd" {
		t.Errorf("PID 1 in the guest is %q, want systemd", got)
	}
	for _, c := range []string{"cpu", "memory", "io", "pids"} {
		if !strings.Contains(" "+readOut(t, share, "cgroup-controllers")+" ", " "+c+" ") {
			t.Errorf("the guest's cgroup2 root lacks the %s controller: %q", c, readOut(t, share, "cgroup-controllers"))
		}
	}
	if got := readOut(t, share, "agentd-active"); got != "active\nactive" {
		t.Errorf("agentd.service and agentd.socket: %q, want both active", got)
	}
	t.Logf("kernel %s; %s", readOut(t, share, "kernel"), strings.ReplaceAll(readOut(t, share, "agentd-unit.txt"), "\n", " "))
}

// checkEnginesFound checks that agentd's journal has an engine found entry
// for each of types, and logs what agentd found.
func checkEnginesFound(t *testing.T, share string, types ...string) {
	t.Helper()
	found := map[string]string{}
	for _, e := range journal(t, share) {
		if field(e, "MESSAGE") == "engine found" && field(e, "MESSAGE_ID") == logging.MessageIDEngineFound {
			found[field(e, "ENGINE_TYPE")] = field(e, "ENGINE_ID")
		}
	}
	for _, typ := range types {
		if found[typ] == "" {
			t.Errorf("no engine found entry with ENGINE_TYPE=%s; found %v", typ, found)
		}
	}
	if t.Failed() {
		t.Logf("agentd's journal:\n%s", tail(filepath.Join(share, "out", "journal.txt"), 80))
	}
	t.Logf("engines found: %v\nagentd engines:\n%s", found, readOut(t, share, "agentd-engines.txt"))
}

// checkOnTheHost checks that agentd did not take the hardened unit's sandbox
// for a container.
func checkOnTheHost(t *testing.T, share string) {
	t.Helper()
	// The unit's ProtectSystem= and friends give agentd a mount
	// namespace of its own over the host's root: agentd is on the host.
	for _, e := range journal(t, share) {
		if msg := field(e, "MESSAGE"); strings.Contains(msg, "runs in a container") || strings.Contains(msg, "running in a container") {
			t.Errorf("agentd on the VM host logged %q", msg)
		}
	}
}

// exported returns what agentd exported to col during the guest run and the
// moment the guest recorded the engines' own figures.
func exported(t *testing.T, col *testbed.Otelcol, share string) (*testbed.Metrics, time.Time) {
	t.Helper()
	m, err := col.Metrics()
	if err != nil {
		t.Fatalf("collector metrics: %v", err)
	}
	recorded, err := strconv.ParseFloat(readOut(t, share, "recorded_at"), 64)
	if err != nil {
		t.Fatalf("recorded_at: %v", err)
	}
	at := time.Unix(0, int64(recorded*1e9))
	return m, at
}

// checkDockerFigures compares the figures of Docker's container name with
// Docker's stats API answer the guest recorded in engine-docker.json.
func checkDockerFigures(t *testing.T, m *testbed.Metrics, share string, at time.Time, name string) {
	t.Helper()
	var s dockerStats
	decodeOut(t, share, "engine-docker.json", &s)
	netRx, netTx := s.net()
	compare(t, m, "docker", name, at, []figure{
		// memory_stats.usage is memory.current; the figure `docker
		// stats` prints on v2 is usage minus inactive_file, agentd's
		// working set.
		{"memory usage", "container.memory.usage", anyPoint, s.MemoryStats.Usage, shmLoad},
		{"memory working set", "container.memory.working_set", anyPoint, s.MemoryStats.Usage - s.MemoryStats.Stats["inactive_file"], shmLoad},
		{"memory anon (rss)", "container.memory.rss", anyPoint, s.MemoryStats.Stats["anon"], 0},
		{"cpu time", "container.cpu.time", anyPoint, s.CPUStats.CPUUsage.Total / 1e9, cpuLoad},
		{"cpu time user", "container.cpu.time", userCPU, s.CPUStats.CPUUsage.User / 1e9, 0},
		{"cpu time system", "container.cpu.time", sysCPU, s.CPUStats.CPUUsage.Kernel / 1e9, 0},
		{"pids", "container.pids.count", anyPoint, s.PidsStats.Current, procsLoad},
		{"network received", "container.network.io", rx, netRx, blobSize},
		{"network transmitted", "container.network.io", tx, netTx, 1},
		{"disk read", "container.disk.io", read, s.blkio("read"), 0},
		{"disk written", "container.disk.io", write, s.blkio("write"), diskLoad},
	})
}

// checkContainerdFigures compares the figures of containerd's container
// name with `ctr task metrics` the guest recorded in engine-containerd.json.
func checkContainerdFigures(t *testing.T, m *testbed.Metrics, share string, at time.Time, name string) {
	t.Helper()
	var c containerdMetrics
	decodeOut(t, share, "engine-containerd.json", &c)
	var rbytes, wbytes float64
	for _, u := range c.IO.Usage {
		rbytes += u.Rbytes
		wbytes += u.Wbytes
	}
	compare(t, m, "containerd", name, at, []figure{
		{"memory usage", "container.memory.usage", anyPoint, c.Memory.Usage, shmLoad},
		{"memory working set", "container.memory.working_set", anyPoint, c.Memory.Usage - c.Memory.InactiveFile, shmLoad},
		{"memory anon (rss)", "container.memory.rss", anyPoint, c.Memory.Anon, 0},
		{"cpu time", "container.cpu.time", anyPoint, c.CPU.UsageUsec / 1e6, cpuLoad},
		{"cpu time user", "container.cpu.time", userCPU, c.CPU.UserUsec / 1e6, 0},
		{"cpu time system", "container.cpu.time", sysCPU, c.CPU.SystemUsec / 1e6, 0},
		{"pids", "container.pids.count", anyPoint, c.Pids.Current, procsLoad},
		{"disk read", "container.disk.io", read, rbytes, 0},
		{"disk written", "container.disk.io", write, wbytes, diskLoad},
	})
}

// engines2Dir is where testbed/vm/engines.sh keeps the second engine set.
func engines2Dir() string { return filepath.Join(testbed.CacheDir(), "engines2") }

// requireEngines2 makes t depend on the second engine set built from the
// current testbed/vm/engines.sh: under CI=true a missing one fails t.
func requireEngines2(t *testing.T) {
	t.Helper()
	check := exec.Command("bash", filepath.Join(repoRoot(t), "testbed", "vm", "engines.sh"), "--check")
	if out, err := check.CombinedOutput(); err != nil {
		testbed.Unavailable(t, "VM host: no second engine set from the current testbed/vm/engines.sh in %s (run `make testbed`): %v %s",
			engines2Dir(), err, out)
	}
}

// shareEngines2 puts the second engine set in share/engines2 (hard links
// where the cache and the share are on one file system, copies otherwise)
// and returns what each engine reports as its version (engines.sh's
// versions file: containerd, runc, dockerd).
func shareEngines2(t *testing.T, share string) map[string]string {
	t.Helper()
	dst := filepath.Join(share, "engines2")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"containerd", "containerd-shim-runc-v2", "ctr", "runc", "dockerd", "versions"} {
		src := filepath.Join(engines2Dir(), f)
		if err := os.Link(src, filepath.Join(dst, f)); err == nil {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatalf("second engine set: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dst, f), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(filepath.Join(dst, "versions"))
	if err != nil {
		t.Fatalf("second engine set: %v", err)
	}
	versions := map[string]string{}
	for line := range strings.Lines(string(b)) {
		if name, v, ok := strings.Cut(strings.TrimSpace(line), " "); ok {
			versions[name] = v
		}
	}
	for _, name := range []string{"containerd", "runc", "dockerd"} {
		if versions[name] == "" {
			t.Fatalf("second engine set: %s has no version in %s: %q", name, filepath.Join(engines2Dir(), "versions"), b)
		}
	}
	return versions
}

// checkRuntimeVersion checks that agentd exported the engine version want
// as container.runtime.version of container name, and no other.
func checkRuntimeVersion(t *testing.T, m *testbed.Metrics, name, want string) {
	t.Helper()
	var seen []string
	for _, r := range m.ResourcesWith(map[string]string{"container.name": name}) {
		if v := r.Attrs["container.runtime.version"]; v != "" {
			seen = append(seen, v)
			if v != want {
				t.Errorf("container %s: container.runtime.version %q, want %q", name, v, want)
			}
		}
	}
	if len(seen) == 0 {
		t.Errorf("container %s: no resource with a container.runtime.version; the collector holds %s", name, m.Summary())
	}
}

// TestVMHostTodaysEnginesFiguresMatchTheEngines boots the VM host a second
// time with today's engines in place of Debian's (testbed/vm/engines.sh:
// containerd 2 with its runc shim and ctr, the Docker 29-era daemon, whose
// Engine API is 1.52 and newer; not yet runc 1.5, which starts no container
// on this guest, see testdata/engines2.sh), run by Debian's
// containerd.service and docker.socket at their usual sockets; installs
// agentd from its .deb; runs one container each on Docker (created over the
// API at 1.44: Debian's CLI speaks 1.41) and containerd (ctr), and a pod
// through containerd 2's CRI plugin (testbed/cripod, as the kubelet makes
// one), with the load of TestVMHostCgroupV2FiguresMatchTheEngines; and checks
// that agentd found the engines (the CRI plugin too) with their versions,
// that it reports the pod's container as containerd's with the pod's k8s.*
// attributes, and that every container figure it exports is within 5 % of
// the engine's own at the same moment (for the pod's container, of CRI
// ContainerStats).
//
// It needs the collector, the host's Docker (for the testbed's busybox
// image), the host containerd's CRI sandbox image, qemu, the VM image and the
// second engine set (`make testbed`).
func TestVMHostTodaysEnginesFiguresMatchTheEngines(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Collector, testbed.Docker, testbed.CRI)
	requireVM(t)
	requireEngines2(t)
	share, col := prepareShare(t, "TestVMHostTodaysEnginesFiguresMatchTheEngines", "engines2.sh")
	versions := shareEngines2(t, share)
	shareCRI(t, share)
	boot(t.Context(), t, share)

	t.Run("the guest is a cgroup v2 host with systemd as PID 1", func(t *testing.T) { checkHost(t, share) })

	t.Run("the guest's engines are the second set: containerd 2 and a Docker 29-era daemon", func(t *testing.T) {
		if got := readOut(t, share, "containerd-version.txt"); !strings.Contains(got, " "+versions["containerd"]+" ") || !strings.HasPrefix(versions["containerd"], "v2.") {
			t.Errorf("containerd in the guest says %q, want containerd 2 (%s)", got, versions["containerd"])
		}
		// runc 1.5 starts no container on this guest (engines2.sh says
		// why): Debian's runc runs them.
		t.Logf("runc in the guest: %q", readOut(t, share, "runc-version.txt"))
		var v struct {
			Version       string `json:"Version"`
			APIVersion    string `json:"ApiVersion"`
			MinAPIVersion string `json:"MinAPIVersion"`
		}
		decodeOut(t, share, "docker-version.json", &v)
		if v.Version != versions["dockerd"] {
			t.Errorf("Docker in the guest is %q, want the second set's %s", v.Version, versions["dockerd"])
		}
		// Docker 29.0 speaks Engine API 1.52; Debian's Docker 20.10, 1.41.
		if minor, err := strconv.Atoi(strings.TrimPrefix(v.APIVersion, "1.")); err != nil || minor < 52 {
			t.Errorf("Docker in the guest speaks API %q, want 1.52 (Docker 29) or newer", v.APIVersion)
		}
		t.Logf("containerd %s, runc %s, Docker %s (API %s, accepts %s and newer)", versions["containerd"], versions["runc"], v.Version, v.APIVersion, v.MinAPIVersion)
	})

	t.Run("agentd found Docker, containerd and containerd's CRI plugin, each with an engine found journal entry", func(t *testing.T) {
		checkEnginesFound(t, share, "docker", "containerd", "cri")
	})

	t.Run("the hardened unit's sandbox is not taken for a container", func(t *testing.T) { checkOnTheHost(t, share) })

	m, at := exported(t, col, share)

	t.Run("the Docker container's figures are within 5 % of Docker 29's stats API", func(t *testing.T) {
		checkRuntimeVersion(t, m, "vmh-docker2", versions["dockerd"])
		checkDockerFigures(t, m, share, at, "vmh-docker2")
	})

	t.Run("the containerd container's figures are within 5 % of containerd 2's task metrics", func(t *testing.T) {
		checkRuntimeVersion(t, m, "vmh-ctr2", versions["containerd"])
		checkContainerdFigures(t, m, share, at, "vmh-ctr2")
	})

	t.Run("the CRI pod's container is containerd's with its pod, and its figures are within 5 % of containerd 2's CRI ContainerStats", func(t *testing.T) {
		checkRuntimeVersion(t, m, criContainer, versions["containerd"])
		checkCRIPod(t, m, share, at)
	})
}

// The pod testdata/engines2.sh runs through containerd 2's CRI plugin with
// testbed/cripod, as the kubelet would: pod vmh-pod2 in namespace vmh, its
// container vmh-cri2.
const (
	criPod          = "vmh-pod2"
	criPodUID       = "vmh-pod2-uid"
	criPodNamespace = "vmh"
	criContainer    = "vmh-cri2"
)

// shareCRI puts in share what the guest's CRI pod needs: the testbed's
// sandbox image (pause.tar, from the host containerd's k8s.io namespace,
// where testbed/up.sh imports it) and the testbed's CRI client (cripod:
// testbed/cripod, static, as the guest has no Go and no cri-tools).
func shareCRI(t *testing.T, share string) {
	t.Helper()
	testbed.Run(t, "ctr", "-n", "k8s.io", "images", "export", filepath.Join(share, "pause.tar"), testbed.PauseImage)
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(share, "cripod"), "./testbed/cripod")
	build.Dir = repoRoot(t)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build testbed/cripod for the guest: %v\n%s", err, out)
	}
}

// checkCRIPod checks agentd's view of the guest's CRI pod: its container is
// reported once, as containerd's (the runtime the CRI plugin names, not
// "cri"), by agentd's CRI engine, with the pod's k8s.* attributes, and its
// memory and CPU figures are within 5 % of CRI ContainerStats, which the
// guest recorded in engine-cri.json (the memory's timestamp is the moment
// compared); the pod sandbox (pause) is no container of agentd's, neither
// the CRI engine's nor in containerd's view of its namespace k8s.io, which
// the CRI engine's view replaces.
func checkCRIPod(t *testing.T, m *testbed.Metrics, share string, recorded time.Time) {
	t.Helper()
	podID, ctrID, ok := strings.Cut(readOut(t, share, "cri-ids"), " ")
	if !ok {
		t.Fatalf("cri-ids: %q, want the pod sandbox's and the container's IDs", readOut(t, share, "cri-ids"))
	}
	var s cripod.Stats
	decodeOut(t, share, "engine-cri.json", &s)
	if s.ContainerID != ctrID || s.Name != criContainer {
		t.Fatalf("CRI ContainerStats answered for %s (%s), want %s (%s)", s.ContainerID, s.Name, ctrID, criContainer)
	}
	at := recorded
	if s.MemoryTimestamp > 0 {
		at = time.Unix(0, s.MemoryTimestamp)
	}
	t.Logf("CRI ContainerStats at %s (%+.1fs from the other engines' record): %+v", at.Format(time.RFC3339Nano), at.Sub(recorded).Seconds(), s)
	res := compare(t, m, "containerd", criContainer, at, []figure{
		// usage_bytes is memory.current; working_set_bytes usage minus
		// inactive_file; rss_bytes memory.stat anon (cgroup v2).
		{"memory usage", "container.memory.usage", anyPoint, float64(s.MemoryUsage), shmLoad},
		{"memory working set", "container.memory.working_set", anyPoint, float64(s.MemoryWorkingSet), shmLoad},
		{"memory anon (rss)", "container.memory.rss", anyPoint, float64(s.MemoryRSS), 0},
		{"cpu time", "container.cpu.time", anyPoint, float64(s.CPUUsageNanos) / 1e9, cpuLoad},
	})
	for k, want := range map[string]string{
		"container.id":       ctrID,
		"agentd.engine.type": "cri",
		"k8s.pod.name":       criPod,
		"k8s.pod.uid":        criPodUID,
		"k8s.namespace.name": criPodNamespace,
		"k8s.container.name": criContainer,
	} {
		if got := res.Attrs[k]; got != want {
			t.Errorf("container %s: %s %q, want %q", criContainer, k, got, want)
		}
	}
	for _, r := range m.ResourcesWith(map[string]string{"container.id": podID}) {
		t.Errorf("the pod sandbox %s is reported as a container: %v", podID, r.Attrs)
	}
	for _, r := range m.ResourcesWith(map[string]string{"containerd.namespace": "k8s.io"}) {
		t.Errorf("containerd's view of namespace k8s.io is reported beside the CRI engine's: %v", r.Attrs)
	}
	if t.Failed() {
		t.Logf("containerd's plugins:\n%s", readOut(t, share, "containerd-plugins.txt"))
	}
}
