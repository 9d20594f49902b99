package stats

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// TestSamplerReadsTheCgroupOfAContainerRunningSystemd samples the testbed's
// systemd host, a Docker container whose PID 1 is systemd: systemd moves
// itself into init.scope below the container's cgroup, and the container's
// services run in sibling slices. The container's figures are those of its
// own cgroup, as Docker created it, not those of init.scope: its PIDs equal
// the threads of the processes `docker top` lists, its memory the kernel's account of the
// container's cgroup.
func TestSamplerReadsTheCgroupOfAContainerRunningSystemd(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.SystemdHost)
	th := testbed.SystemdHostName()
	id := testbed.Run(t, "docker", "inspect", "-f", "{{.Id}}", th)
	pid := testbed.SystemdHostPID(t)

	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), id+"/init.scope") {
		t.Fatalf("the systemd host's PID 1 is not in a cgroup below its container's: nothing to prove\n%s", data)
	}

	own := containerMemoryDir(t, id)
	s := NewSampler(SamplerConfig{}, nil)
	t.Cleanup(func() { _ = s.Close() })
	c := model.Container{EngineID: "docker", ID: id, Name: th, PID: pid, State: model.StateRunning}
	out, err := s.Sample(context.Background(), []model.Container{c}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := out[0]
	if got.Has&FieldPids == 0 || got.Has&FieldMemoryWorkingSet == 0 {
		t.Fatalf("no PIDs or working set read: %+v", got)
	}

	// PIDs: the tasks (threads, as the pids controller counts them) of
	// Docker's own list of the container's processes. init.scope alone has
	// one.
	top := testbed.Run(t, "docker", "top", th, "-eo", "pid,nlwp")
	procs, tasks := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(top), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) != 2 {
			t.Fatalf("docker top: unexpected line %q", line)
		}
		n, err := strconv.Atoi(f[1])
		if err != nil {
			t.Fatalf("docker top: NLWP of %q: %v", line, err)
		}
		procs++
		tasks += n
	}
	if d := int(got.Pids) - tasks; d < -3 || d > 3 {
		t.Errorf("pids %d, docker top lists %d processes with %d threads", got.Pids, procs, tasks)
	}

	// Memory: the working set of the container's own cgroup.
	usage := readUint(t, filepath.Join(own, "memory.usage_in_bytes"), filepath.Join(own, "memory.current"))
	inactive := statField(t, own, "total_inactive_file", "inactive_file")
	want := float64(Sub0(usage, inactive))
	if ws := float64(got.MemoryWorkingSet); ws < want*0.95 || ws > want*1.05 {
		t.Errorf("memory working set %.0f, the container's cgroup %s has %.0f", ws, own, want)
	}
	t.Logf("systemd host %s: %d PIDs (docker top: %d processes, %d threads), working set %.1f MiB (cgroup %.1f MiB)",
		th, got.Pids, procs, tasks, float64(got.MemoryWorkingSet)/(1<<20), want/(1<<20))
}

// containerMemoryDir is the memory cgroup Docker made for container id, from
// its cgroup parent and driver.
func containerMemoryDir(t *testing.T, id string) string {
	t.Helper()
	driver := testbed.Run(t, "docker", "info", "-f", "{{.CgroupDriver}}")
	parent := testbed.Run(t, "docker", "inspect", "-f", "{{.HostConfig.CgroupParent}}", id)
	var rel string
	switch driver {
	case "systemd":
		if parent == "" {
			parent = "system.slice"
		}
		rel = filepath.Join(parent, "docker-"+id+".scope")
	default:
		if parent == "" {
			parent = "/docker"
		}
		rel = filepath.Join(parent, id)
	}
	for _, root := range []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup"} {
		dir := filepath.Join(root, rel)
		if _, err := os.Stat(filepath.Join(dir, "memory.stat")); err == nil {
			return dir
		}
	}
	t.Fatalf("no memory cgroup for container %s (driver %s, parent %q)", id, driver, parent)
	return ""
}

// readUint reads the first of files that exists as one number.
func readUint(t *testing.T, files ...string) uint64 {
	t.Helper()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		return v
	}
	t.Fatalf("none of %v is readable", files)
	return 0
}

// statField reads the first of keys found in dir/memory.stat.
func statField(t *testing.T, dir string, keys ...string) uint64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string]uint64{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			n, _ := strconv.ParseUint(v, 10, 64)
			fields[k] = n
		}
	}
	for _, k := range keys {
		if v, ok := fields[k]; ok {
			return v
		}
	}
	t.Fatalf("%s/memory.stat has none of %v", dir, keys)
	return 0
}
