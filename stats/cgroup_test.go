package stats

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/model"
)

func tree(name string) *Reader {
	return NewReader(filepath.Join("testdata", name, "proc"), filepath.Join("testdata", name, "cgroup"))
}

// sysTree makes a sysfs tree naming block devices 8:0 sda and 259:0 nvme0n1
// (a temporary one: module file names may hold no colon).
func sysTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for dev, name := range map[string]string{"8:0": "sda", "259:0": "nvme0n1"} {
		d := filepath.Join(dir, "dev", "block", dev)
		must(t, os.MkdirAll(d, 0o755))
		must(t, os.WriteFile(filepath.Join(d, "uevent"), []byte("MAJOR=x\nDEVNAME="+name+"\nDEVTYPE=disk\n"), 0o644))
	}
	return dir
}

func TestReaderReadsTestdataTrees(t *testing.T) {
	eth := []Interface{{Name: "eth0", RxBytes: 5406, TxBytes: 1076}, {Name: "eth1", RxBytes: 1234567890123, TxBytes: 42}}
	tests := []struct {
		name    string
		tree    string
		pid     int
		version int
		want    Stats
	}{
		{
			// The pressure files of the controllerless cgroup2 mount of this
			// hybrid tree are not read (see Locate).
			name: "a cgroup v1 container on separate controller mounts reads every field but the hybrid mount's pressure", tree: "v1", pid: 4242, version: 1,
			want: Stats{
				Has: FieldCPUTotal | FieldCPUModes | FieldMemoryUsage | FieldMemoryRSS | FieldMemoryWorkingSet | FieldDisk | FieldPids | FieldNetwork |
					FieldMemoryFaults | FieldOOMKills | FieldCPUThrottling,
				CPUTotalNanos: 25289880, CPUUserNanos: 1500000000, CPUSystemNanos: 250000000,
				MemoryUsage: 2076672, MemoryRSS: 61440, MemoryWorkingSet: 2076672 - 1044480,
				MemoryMinorFaults: 990, MemoryMajorFaults: 10, OOMKills: 2,
				CPUPeriods: 120, CPUThrottledPeriods: 45, CPUThrottledNanos: 3500000000,
				DiskReadBytes: 4196, DiskWriteBytes: 8192, Pids: 3, Networks: eth,
				Disks: []Disk{{Major: 8, Minor: 0, Device: "sda", ReadBytes: 4096, WriteBytes: 8192}, {Major: 8, Minor: 16, Device: "8:16", ReadBytes: 100}},
			},
		},
		{
			name: "a cgroup v1 line naming co-mounted controllers falls back to the controller's own mount", tree: "v1", pid: 4243, version: 1,
			want: Stats{
				Has: FieldCPUTotal | FieldCPUModes | FieldMemoryUsage | FieldMemoryRSS | FieldMemoryWorkingSet | FieldNetwork |
					FieldMemoryFaults | FieldOOMKills | FieldCPUThrottling,
				CPUTotalNanos: 25289880, CPUUserNanos: 1500000000, CPUSystemNanos: 250000000,
				MemoryUsage: 2076672, MemoryRSS: 61440, MemoryWorkingSet: 2076672 - 1044480, Networks: eth,
				MemoryMinorFaults: 990, MemoryMajorFaults: 10, OOMKills: 2,
				CPUPeriods: 120, CPUThrottledPeriods: 45, CPUThrottledNanos: 3500000000,
			},
		},
		{
			name: "a cgroup v2 container reads every field including the memory limit", tree: "v2", pid: 777, version: 2,
			want: Stats{
				Has: FieldCPUTotal | FieldCPUModes | FieldMemoryUsage | FieldMemoryRSS | FieldMemoryWorkingSet | FieldMemoryLimit | FieldDisk | FieldPids | FieldNetwork |
					FieldMemoryFaults | FieldOOMKills | FieldCPUThrottling | FieldPressure,
				CPUTotalNanos: 2500000000, CPUUserNanos: 2000000000, CPUSystemNanos: 500000000,
				MemoryUsage: 10485760, MemoryRSS: 4194304, MemoryWorkingSet: 10485760 - 4194304, MemoryLimit: 268435456,
				MemoryMinorFaults: 4970, MemoryMajorFaults: 30, OOMKills: 1,
				CPUPeriods: 300, CPUThrottledPeriods: 12, CPUThrottledNanos: 250000000,
				Pressure: [numPressure]Pressure{
					PressureCPU:    {SomeNanos: 2000000000, HasSome: true},
					PressureMemory: {SomeNanos: 300000, FullNanos: 100000, HasSome: true, HasFull: true},
					PressureIO:     {SomeNanos: 40000, FullNanos: 20000, HasSome: true, HasFull: true},
				},
				DiskReadBytes: 1005, DiskWriteBytes: 2007, Pids: 2, Networks: eth,
				Disks: []Disk{{Major: 8, Minor: 0, Device: "sda", ReadBytes: 1000, WriteBytes: 2000}, {Major: 259, Minor: 0, Device: "nvme0n1", ReadBytes: 5, WriteBytes: 7}},
			},
		},
		{
			name: "a cgroup v2 container with memory.max max and missing files is a partial result", tree: "v2", pid: 778, version: 2,
			want: Stats{
				Has:           FieldCPUTotal | FieldCPUModes | FieldMemoryUsage,
				CPUTotalNanos: 10000, CPUUserNanos: 5000, CPUSystemNanos: 5000, MemoryUsage: 4096,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tree(tt.tree)
			r.SetSysRoot(sysTree(t))
			cg, err := r.Locate(tt.pid, "")
			if err != nil {
				t.Fatal(err)
			}
			if cg.Version != tt.version {
				t.Fatalf("version %d, want %d", cg.Version, tt.version)
			}
			var s Stats
			var buf []byte
			if err := r.Read(&cg, tt.pid, &s, &buf); err != nil {
				t.Fatal(err)
			}
			if !equalStats(s, tt.want) {
				t.Errorf("got  %+v\nwant %+v", s, tt.want)
			}
		})
	}
}

func equalStats(a, b Stats) bool {
	an, bn := a.Networks, b.Networks
	ad, bd := a.Disks, b.Disks
	a.Networks, b.Networks, a.Disks, b.Disks = nil, nil, nil, nil
	if !reflect.DeepEqual(a, b) || len(an) != len(bn) || len(ad) != len(bd) {
		return false
	}
	for i := range ad {
		if ad[i] != bd[i] {
			return false
		}
	}
	for i := range an {
		if an[i] != bn[i] {
			return false
		}
	}
	return true
}

func TestReaderErrors(t *testing.T) {
	t.Run("a malformed memory.stat is an error naming the file and the rest is still read", func(t *testing.T) {
		r := tree("bad")
		cg, err := r.Locate(10, "")
		if err != nil {
			t.Fatal(err)
		}
		var s Stats
		var buf []byte
		err = r.Read(&cg, 0, &s, &buf)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), filepath.Join("docker", "bad", "memory.stat")) {
			t.Fatalf("error %v does not name memory.stat as malformed", err)
		}
		if s.Has&FieldPids == 0 || s.Pids != 5 || s.MemoryUsage != 100 {
			t.Errorf("partial result lost: %+v", s)
		}
	})
	t.Run("a cgroup path outside the reader's namespace is ErrCgroupOutsideNamespace", func(t *testing.T) {
		_, err := tree("bad").Locate(11, "")
		if !errors.Is(err, ErrCgroupOutsideNamespace) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("a process that is gone is fs.ErrNotExist", func(t *testing.T) {
		_, err := tree("v1").Locate(99999, "")
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("got %v", err)
		}
	})
}

type fakeFallback struct {
	calls int
	s     Stats
	err   error
}

func (f *fakeFallback) Stats(ctx context.Context, c model.Container) (Stats, error) {
	f.calls++
	return f.s, f.err
}

func TestSampler(t *testing.T) {
	t.Run("containers with one ID in two containerd namespaces keep their own CPU history", func(t *testing.T) {
		s := NewSampler(SamplerConfig{ProcRoot: "testdata/v2/proc", CgroupRoot: "testdata/v2/cgroup", Workers: 2}, nil)
		cs := []model.Container{{EngineID: "e", Namespace: "a", ID: "web", PID: 777}, {EngineID: "e", Namespace: "b", ID: "web", PID: 778}}
		if _, err := s.Sample(context.Background(), cs, nil); err != nil {
			t.Fatal(err)
		}
		if len(s.state) != 2 || s.state[cs[0].Key()] == s.state[cs[1].Key()] {
			t.Fatalf("want two separate states, got %d", len(s.state))
		}
	})
	t.Run("CPU usage is the delta of CPU time over wall time and absent on the first sample", func(t *testing.T) {
		s := NewSampler(SamplerConfig{ProcRoot: "testdata/v2/proc", CgroupRoot: "testdata/v2/cgroup", Workers: 2}, nil)
		cs := []model.Container{{ID: "a", PID: 777}, {ID: "b", PID: 778}}
		out, err := s.Sample(context.Background(), cs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Has&FieldCPUUsage != 0 || out[0].Source != SourceCgroupV2 {
			t.Fatalf("first sample: %+v", out[0])
		}
		// Pretend the previous sample was one second earlier and 0.5 s of CPU less.
		st := s.state[cs[0].Key()]
		st.prevCPU -= 500_000_000
		st.prevTime = st.prevTime.Add(-time.Second)
		out, err = s.Sample(context.Background(), cs, out)
		if err != nil {
			t.Fatal(err)
		}
		if out[0].Has&FieldCPUUsage == 0 || out[0].CPUUsage < 0.4 || out[0].CPUUsage > 0.5 {
			t.Errorf("usage %v (has %b), want about 0.5", out[0].CPUUsage, out[0].Has)
		}
	})
	t.Run("a container whose cgroup cannot be read goes to the engine fallback", func(t *testing.T) {
		fb := &fakeFallback{s: Stats{Has: FieldMemoryUsage, MemoryUsage: 7}}
		s := NewSampler(SamplerConfig{ProcRoot: "testdata/v2/proc", CgroupRoot: "testdata/v2/cgroup",
			Fallback: func(string) Fallback { return fb }}, nil)
		out, err := s.Sample(context.Background(), []model.Container{{ID: "gone", PID: 12345}, {ID: "ok", PID: 777}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if fb.calls != 1 || out[0].Source != SourceEngineAPI || out[0].MemoryUsage != 7 || out[1].Source != SourceCgroupV2 {
			t.Errorf("calls %d, samples %+v", fb.calls, out)
		}
	})
	t.Run("a container whose cgroup cannot be read and has no fallback is an error naming it", func(t *testing.T) {
		// Process 999 is alive, its cgroup is not there.
		proc := t.TempDir()
		if err := os.MkdirAll(filepath.Join(proc, "999"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, "999", "cgroup"), []byte("0::/system.slice/missing.scope\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(mustAbs(t, "testdata/v2/proc"), "777"), filepath.Join(proc, "777")); err != nil {
			t.Fatal(err)
		}
		s := NewSampler(SamplerConfig{ProcRoot: proc, CgroupRoot: "testdata/v2/cgroup"}, nil)
		out, err := s.Sample(context.Background(), []model.Container{{ID: "unreadable", PID: 999}, {ID: "ok", PID: 777}}, nil)
		if err == nil || !strings.Contains(err.Error(), "unreadable") {
			t.Fatalf("got %v", err)
		}
		if out[0].Has != 0 || out[1].Has == 0 {
			t.Errorf("samples %+v", out)
		}
	})
	t.Run("a container its engine no longer has has no figures and no error; another engine error is one", func(t *testing.T) {
		for _, tt := range []struct {
			err     error
			wantErr bool
		}{
			{fmt.Errorf("docker stats of x: %w: No such container", ErrGone), false},
			{errors.New("docker stats of x: connection refused"), true},
		} {
			fb := &fakeFallback{err: tt.err}
			s := NewSampler(SamplerConfig{ProcRoot: "testdata/v2/proc", CgroupRoot: "testdata/v2/cgroup",
				Fallback: func(string) Fallback { return fb }}, nil)
			// No PID: the model has not learnt it yet, so only the engine can say.
			out, err := s.Sample(context.Background(), []model.Container{{ID: "x"}, {ID: "ok", PID: 777}}, nil)
			if (err != nil) != tt.wantErr || out[0].Has != 0 || out[1].Has == 0 {
				t.Errorf("fallback error %q: error %v, samples %+v", tt.err, err, out)
			}
		}
	})
	t.Run("an engine answering with no values is quiet once (a container ending) and an error the second round in a row", func(t *testing.T) {
		fb := &fakeFallback{}
		s := NewSampler(SamplerConfig{ProcRoot: "testdata/v2/proc", CgroupRoot: "testdata/v2/cgroup",
			Fallback: func(string) Fallback { return fb }}, nil)
		cs := []model.Container{{ID: "empty"}, {ID: "ok", PID: 777}}
		for round, want := range []bool{false, true, true} {
			out, err := s.Sample(context.Background(), cs, nil)
			if (err != nil) != want || err != nil && !strings.Contains(err.Error(), "empty: engine stats: the engine reported no values") || out[0].Has != 0 || out[1].Has == 0 {
				t.Fatalf("round %d: error %v (want one: %v), samples %+v", round+1, err, want, out)
			}
		}
		// Values again: the next empty answer is a first one.
		fb.s = Stats{Has: FieldMemoryUsage, MemoryUsage: 7}
		if _, err := s.Sample(context.Background(), cs, nil); err != nil {
			t.Fatal(err)
		}
		fb.s = Stats{}
		if _, err := s.Sample(context.Background(), cs, nil); err != nil {
			t.Fatalf("an empty answer after values: %v", err)
		}
	})
	t.Run("a container whose process exited before the read has no figures and no error", func(t *testing.T) {
		s := NewSampler(SamplerConfig{ProcRoot: "testdata/v2/proc", CgroupRoot: "testdata/v2/cgroup"}, nil)
		out, err := s.Sample(context.Background(), []model.Container{{ID: "gone", PID: 12345}, {ID: "ok", PID: 777}}, nil)
		if err != nil {
			t.Fatalf("an exited container is no error: %v", err)
		}
		if out[0].Has != 0 || out[1].Has == 0 {
			t.Errorf("samples %+v", out)
		}
	})
	t.Run("containers absent from a call are forgotten", func(t *testing.T) {
		s := NewSampler(SamplerConfig{ProcRoot: "testdata/v2/proc", CgroupRoot: "testdata/v2/cgroup"}, nil)
		_, _ = s.Sample(context.Background(), []model.Container{{ID: "a", PID: 777}}, nil)
		_, _ = s.Sample(context.Background(), []model.Container{{ID: "b", PID: 778}}, nil)
		if _, ok := s.state[model.ContainerKey{ID: "a"}]; ok || len(s.state) != 1 {
			t.Errorf("state %v", s.state)
		}
	})
}

func TestOwnCgroup(t *testing.T) {
	const id = "3f2a9c0d1e4b5a6978c0d1e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6"
	tests := []struct {
		name, path, id, want string
	}{
		{"systemd as PID 1 of a Docker container (cgroupfs driver) moved to init.scope",
			"/docker/" + id + "/init.scope", id, "/docker/" + id},
		{"systemd driver scope with a sub-cgroup",
			"/system.slice/docker-" + id + ".scope/init.scope", id, "/system.slice/docker-" + id + ".scope"},
		{"podman's payload cgroup below its scope",
			"/machine.slice/libpod-" + id + ".scope/container", id, "/machine.slice/libpod-" + id + ".scope"},
		{"a kubelet pod container", "/kubepods/burstable/pod1234/" + id + "/init.scope", id, "/kubepods/burstable/pod1234/" + id},
		{"a container already in its own cgroup is kept", "/docker/" + id, id, "/docker/" + id},
		{"a nested container's deeper part wins over its outer container's",
			"/docker/" + id + "/docker/abc123/init.scope", "abc123", "/docker/" + id + "/docker/abc123"},
		{"a named containerd container", "/agentd-ns/web/init.scope", "web", "/agentd-ns/web"},
		{"an id that is only part of a word is not a match", "/docker/xweb/sub", "web", "/docker/xweb/sub"},
		{"an exact part wins over a part holding the id", "/web/web-1.scope/init.scope", "web", "/web"},
		{"a path naming no part of the container is kept", "/system.slice/something.service", id, "/system.slice/something.service"},
		{"no id keeps the path", "/docker/" + id + "/init.scope", "", "/docker/" + id + "/init.scope"},
		{"the root", "/", id, "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownCgroup(tt.path, tt.id); got != tt.want {
				t.Errorf("ownCgroup(%q, %q) = %q, want %q", tt.path, tt.id, got, tt.want)
			}
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
