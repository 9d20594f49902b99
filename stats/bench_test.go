package stats

import (
	"testing"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// BenchmarkReadContainerCgroup reads every file of the systemd host
// container's cgroup, one container round per op: the real files of a
// Docker container (cgroup v1 controllers here, and the cgroup2 pressure
// files of a hybrid host), kept open as the Sampler keeps them.
func BenchmarkReadContainerCgroup(b *testing.B) {
	testbed.Require(b, testbed.Root, testbed.Docker, testbed.SystemdHost)
	id := testbed.Run(b, "docker", "inspect", "-f", "{{.Id}}", testbed.SystemdHostName())
	pid := testbed.SystemdHostPID(b)
	r := NewReader("/proc", "/sys/fs/cgroup")
	cg, err := r.Locate(pid, id)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Release(&cg)
	benchReads(b, r, &cg, pid)
}

// BenchmarkReadNewFile measures each file the throttling, OOM kill and
// pressure metrics added to a container round, alone: one pread of the kept
// file and its parse per op, on the systemd host container's real cgroup.
func BenchmarkReadNewFile(b *testing.B) {
	testbed.Require(b, testbed.Root, testbed.Docker, testbed.SystemdHost)
	id := testbed.Run(b, "docker", "inspect", "-f", "{{.Id}}", testbed.SystemdHostName())
	pid := testbed.SystemdHostPID(b)
	r := NewReader("/proc", "/sys/fs/cgroup")
	cg, err := r.Locate(pid, id)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Release(&cg)
	var buf []byte
	var s Stats
	files := []struct {
		name string
		i    int
		read func([]byte) error
	}{
		{"cpu controller cpu.stat (v1 throttling)", fileCPUThrottle, func(d []byte) error { return throttling("f", d, "throttled_time", 1, &s) }},
		{"memory.oom_control (v1 OOM kills)", fileMemEvents, func(d []byte) error { return keyed("f", d, func([]byte, uint64) {}) }},
		{"cpu.pressure", filePressure + PressureCPU, func(d []byte) error { _, err := parsePressure("f", d); return err }},
		{"memory.pressure", filePressure + PressureMemory, func(d []byte) error { _, err := parsePressure("f", d); return err }},
		{"io.pressure", filePressure + PressureIO, func(d []byte) error { _, err := parsePressure("f", d); return err }},
	}
	for _, f := range files {
		b.Run(f.name, func(b *testing.B) {
			if !cg.has(f.i) {
				testbed.Unavailable(b, "%s: not found in this cgroup", f.name)
			}
			b.ReportAllocs()
			for b.Loop() {
				data, err := r.readOptional(&cg, f.i, &buf)
				if err != nil || data == nil {
					b.Fatalf("%s: %v", f.name, err)
				}
				if err := f.read(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
