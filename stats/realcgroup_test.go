package stats

import (
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// TestReaderReadsTheRealCgroup2FilesOfAContainer reads the cgroup v2
// hierarchy of the systemd host container as a cgroup v2 host would (only
// the "0::" line of /proc/PID/cgroup): on this hybrid host the cgroup2 mount
// has no controllers, but its cpu.stat and the pressure files are the
// kernel's v2 files, which must parse and agree with a direct read.
func TestReaderReadsTheRealCgroup2FilesOfAContainer(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.SystemdHost)
	id := testbed.Run(t, "docker", "inspect", "-f", "{{.Id}}", testbed.SystemdHostName())
	pid := testbed.SystemdHostPID(t)
	root := "/sys/fs/cgroup"
	if _, err := os.Stat(filepath.Join(root, "unified", "cgroup.controllers")); err == nil {
		root = filepath.Join(root, "unified")
	}
	// A procfs whose cgroup file of pid has only the cgroup2 line, as on a
	// pure cgroup v2 host; the files read are the kernel's.
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	var v2line string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "0::") {
			v2line = l
		}
	}
	if v2line == "" {
		t.Fatalf("the systemd host's PID 1 has no cgroup2 line:\n%s", data)
	}
	proc := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(proc, strconv.Itoa(pid)), 0o755))
	must(t, os.WriteFile(filepath.Join(proc, strconv.Itoa(pid), "cgroup"), []byte(v2line+"\n"), 0o644))
	r := NewReader(proc, root)
	cg, err := r.Locate(pid, id)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Release(&cg)
	if cg.Version != 2 {
		t.Fatalf("cgroup version %d under %s, want 2", cg.Version, root)
	}
	before := v2Field(t, filepath.Join(cg.CPU, "cpu.stat"), "usage_usec") * 1000
	var s Stats
	var buf []byte
	if err := r.Read(&cg, 0, &s, &buf); err != nil {
		t.Fatal(err)
	}
	after := v2Field(t, filepath.Join(cg.CPU, "cpu.stat"), "usage_usec") * 1000
	if s.Has&FieldCPUTotal == 0 || s.CPUTotalNanos < before || s.CPUTotalNanos > after {
		t.Errorf("CPU %d ns, cpu.stat said %d before and %d after", s.CPUTotalNanos, before, after)
	}
	if s.Has&FieldPressure == 0 {
		t.Fatalf("no pressure read from %s", cg.CPU)
	}
	for i, f := range []string{"cpu.pressure", "memory.pressure", "io.pressure"} {
		p := s.Pressure[i]
		total := v2Field(t, filepath.Join(cg.CPU, f), "some") * 1000
		if !p.HasSome || p.SomeNanos > total {
			t.Errorf("%s: read %+v, the file says some total=%d µs after", f, p, total/1000)
		}
		if f != "cpu.pressure" && !p.HasFull {
			t.Errorf("%s: no full line read", f)
		}
	}
	t.Logf("systemd host %s: CPU %.2f s, pressure %+v", testbed.SystemdHostName(), float64(s.CPUTotalNanos)/1e9, s.Pressure)
}

// TestSamplerReadsTheThrottlingOfACPULimitedContainer spins a Docker
// container under --cpus 0.1: its CFS periods and throttled periods come
// from the cpu controller's cpu.stat (v1) or cpu.stat (v2), and its memory
// limit gives its OOM kill counter a file to be read from.
func TestSamplerReadsTheThrottlingOfACPULimitedContainer(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker)
	id := testbed.Run(t, "docker", "run", "-d", "--label", "agentd.test=stats-throttle", "--cpus", "0.1", "--memory", "64m",
		testbed.BusyboxImage, "sh", "-c", "while :; do :; done")
	t.Cleanup(func() { _ = osexec.Command("docker", "rm", "-f", id).Run() })
	pid, err := strconv.Atoi(testbed.Run(t, "docker", "inspect", "-f", "{{.State.Pid}}", id))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSampler(SamplerConfig{}, nil)
	t.Cleanup(func() { _ = s.Close() })
	c := model.Container{EngineID: "docker", ID: id, PID: pid, State: model.StateRunning}
	var out []Stats
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(500 * time.Millisecond) {
		if out, err = s.Sample(context.Background(), []model.Container{c}, out); err != nil {
			t.Fatal(err)
		}
		// The kernel counts a throttled period when it begins and adds its
		// time when it ends: wait for both.
		if out[0].Has&FieldCPUThrottling != 0 && out[0].CPUThrottledPeriods > 0 && out[0].CPUThrottledNanos > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no throttled period after 20 s: %+v", out[0])
		}
	}
	got := out[0]
	if got.CPUThrottledPeriods > got.CPUPeriods || got.CPUThrottledNanos == 0 {
		t.Errorf("throttled %d of %d periods, %d ns", got.CPUThrottledPeriods, got.CPUPeriods, got.CPUThrottledNanos)
	}
	if got.Has&FieldOOMKills == 0 || got.OOMKills != 0 {
		t.Errorf("OOM kills %d (read: %v), want 0 read", got.OOMKills, got.Has&FieldOOMKills != 0)
	}
	if got.Has&FieldMemoryFaults == 0 || got.MemoryMinorFaults == 0 {
		t.Errorf("no page faults read: %+v", got)
	}
	t.Logf("throttled %d of %d periods (%.2f s), usage %.2f CPUs", got.CPUThrottledPeriods, got.CPUPeriods, float64(got.CPUThrottledNanos)/1e9, got.CPUUsage)
}

// v2Field reads key's number of a cgroup v2 file: "key value" lines, or
// pressure lines whose first word is key, giving their total.
func v2Field(t *testing.T, file, key string) uint64 {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != key {
			continue
		}
		v := f[len(f)-1]
		v = strings.TrimPrefix(v, "total=")
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s: %q: %v", file, line, err)
		}
		return n
	}
	t.Fatalf("%s has no %s", file, key)
	return 0
}

// TestDeviceNamesOfTheRealSysfs names every block device of this host's
// sysfs as the kernel does: the name of its /sys/class/block entry, which
// /sys/dev/block/MAJ:MIN links to.
func TestDeviceNamesOfTheRealSysfs(t *testing.T) {
	devs, err := os.ReadDir("/sys/dev/block")
	if err != nil || len(devs) == 0 {
		testbed.Unavailable(t, "no block devices in /sys/dev/block: %v", err)
	}
	r := NewReader("/proc", "/sys/fs/cgroup")
	for _, d := range devs {
		ma, mi, ok := strings.Cut(d.Name(), ":")
		a, err1 := strconv.ParseUint(ma, 10, 32)
		b, err2 := strconv.ParseUint(mi, 10, 32)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("unexpected entry %q", d.Name())
		}
		link, err := os.Readlink(filepath.Join("/sys/dev/block", d.Name()))
		if err != nil {
			t.Fatal(err)
		}
		// A partition's DEVNAME is its own name too (sda1), as is the link's base.
		if got, want := r.deviceName(uint32(a), uint32(b)), filepath.Base(link); got != want {
			t.Errorf("%s: named %q, sysfs says %q", d.Name(), got, want)
		}
	}
}
