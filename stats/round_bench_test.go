package stats

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/agentd-dev/agentd/internal/procfs"
	"github.com/agentd-dev/agentd/internal/testbed"
)

// BenchmarkRound1000 reads 1,000 real cgroups once per op, as one stats
// round of a host with 1,000 containers reads them: the kernel's files of
// empty cgroups made for the benchmark under every controller this process
// is in (cgroup v1 or v2, whichever the host runs), and a net/dev each. It
// compares the file budgets: the old default of 4,096 kept files (past it,
// files are opened and closed at every read), the default, and none kept.
// It also reports the kernel memory the kept files hold (Slab, from
// /proc/meminfo; noisy on a busy machine).
func BenchmarkRound1000(b *testing.B) {
	testbed.Require(b, testbed.Root)
	const n = 1000
	proc, dirs := makeBenchCgroups(b, n)
	for _, bc := range []struct {
		name    string
		maxOpen int
	}{{"budget=4096", 4096}, {fmt.Sprintf("budget=default(%d)", DefaultMaxOpenFiles), DefaultMaxOpenFiles}, {"budget=0", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			r := NewReader(proc, "/sys/fs/cgroup")
			r.SetMaxOpenFiles(bc.maxOpen)
			r.hostNetNS = "net:[host]" // the fake PIDs' net/dev is read, as a container's
			cgs := make([]Cgroup, n)
			for i := range cgs {
				cg, err := r.Locate(1_000_000+i, "")
				if err != nil {
					b.Fatalf("cgroup %s: %v", dirs[i], err)
				}
				cgs[i] = cg
			}
			defer func() {
				for i := range cgs {
					r.Release(&cgs[i])
				}
			}()
			stats := make([]Stats, n)
			var buf []byte
			round := func() {
				for i := range cgs {
					reuse(&stats[i])
					if err := r.Read(&cgs[i], 1_000_000+i, &stats[i], &buf); err != nil {
						b.Fatal(err)
					}
				}
			}
			slab := meminfoKB(b, "Slab")
			round() // the first round opens what the budget keeps
			slab = meminfoKB(b, "Slab") - slab
			b.ResetTimer()
			for b.Loop() {
				round()
			}
			b.ReportMetric(float64(slab)/1024, "slab-MB")
			b.ReportMetric(float64(r.OpenFiles()), "kept-files")
		})
	}
}

// makeBenchCgroups makes n empty cgroups, one directory per v1 hierarchy or
// one in the v2 tree as this process's own cgroups are, and a fake procfs
// with a PID per cgroup (1,000,000 + i): its cgroup file names the cgroup,
// its net/dev is this process's and its ns/net is not the host's. It returns
// the procfs and a name per cgroup; the cgroups are removed at the end.
func makeBenchCgroups(b *testing.B, n int) (proc string, names []string) {
	b.Helper()
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		b.Fatal(err)
	}
	lines, err := procfs.ParseCgroup(self)
	if err != nil {
		b.Fatal(err)
	}
	r := NewReader("/proc", "/sys/fs/cgroup")
	parent := fmt.Sprintf("/agentd-bench-round-%d", os.Getpid())
	var mounts []string // one per hierarchy
	var cgroupLines []string
	for _, l := range lines {
		var mount string
		for _, c := range strings.Split(l.Controllers, ",") {
			switch c {
			case ctrlCPU, ctrlCFS, ctrlMemory, ctrlIO, ctrlPids:
				if m := r.v1Dir(l.Controllers, c, "/"); m != "" && mount == "" {
					mount = m
				}
			}
		}
		if mount == "" {
			continue
		}
		mounts = append(mounts, mount)
		cgroupLines = append(cgroupLines, fmt.Sprintf("%d:%s:%s", l.ID, l.Controllers, parent))
	}
	if len(mounts) == 0 { // a cgroup v2 host
		mounts = append(mounts, r.unified)
		cgroupLines = append(cgroupLines, "0::"+parent)
	}
	b.Cleanup(func() {
		for _, m := range mounts {
			for i := range n {
				_ = syscall.Rmdir(filepath.Join(m, parent, strconv.Itoa(i)))
			}
			_ = syscall.Rmdir(filepath.Join(m, parent))
		}
	})
	proc = b.TempDir()
	for i := range n {
		name := strconv.Itoa(i)
		names = append(names, parent+"/"+name)
		var cg strings.Builder
		for j, m := range mounts {
			if err := os.MkdirAll(filepath.Join(m, parent, name), 0o755); err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(&cg, "%s/%s\n", cgroupLines[j], name)
		}
		dir := filepath.Join(proc, strconv.Itoa(1_000_000+i))
		must(b, os.MkdirAll(filepath.Join(dir, "ns"), 0o755))
		must(b, os.MkdirAll(filepath.Join(dir, "net"), 0o755))
		must(b, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cg.String()), 0o644))
		must(b, os.Symlink("/proc/self/net/dev", filepath.Join(dir, "net", "dev")))
		must(b, os.Symlink("net:[bench]", filepath.Join(dir, "ns", "net")))
	}
	return proc, names
}

// meminfoKB returns a field of /proc/meminfo in kB.
func meminfoKB(b *testing.B, field string) int64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("/proc/meminfo %s: %v", field, err)
			}
			return v
		}
	}
	b.Fatalf("/proc/meminfo has no %s", field)
	return 0
}
