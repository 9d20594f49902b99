package discovery

import (
	"context"
	"fmt"
	"os/exec"
	"testing"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// BenchmarkRescan measures a steady-state rescan of a 2,000-process fake procfs
// with three engines already probed and placed by a model that knows their
// containers: one stat read per process, no probes, the hierarchy recomputed
// from the table without I/O.
func BenchmarkRescan(b *testing.B) {
	root := b.TempDir()
	writeNestedTree(b, root)
	var procs []fakeProc
	for pid := 1000; len(procs) < 2000-len(nestedTree())+1; pid++ {
		procs = append(procs, fakeProc{pid: pid, ppid: 1, comm: "worker proc", start: uint64(pid), noDetail: true})
	}
	writeFakeProc(b, root, procs)
	fe := newFakeEngines()
	d, _, _ := newFakeDiscoverer(b, root, fe, nestedModel(root))
	ctx := context.Background()
	if _, err := d.Scan(ctx); err != nil {
		b.Fatal(err)
	}
	if n := d.procs.Len(); n < 2000 {
		b.Fatalf("table holds %d processes, want 2000", n)
	}
	if es := d.Engines(); len(es) != 3 || es[2].Prefix != "th/inner" {
		b.Fatalf("engines %+v, want three, the last under th/inner", es)
	}
	calls := fe.calls()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := d.Scan(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if fe.calls() != calls {
		b.Fatalf("steady-state rescans probed %d times", fe.calls()-calls)
	}
}

// BenchmarkFirstScan measures a full first scan of the same tree, probes faked.
func BenchmarkFirstScan(b *testing.B) {
	root := b.TempDir()
	writeNestedTree(b, root)
	var procs []fakeProc
	for pid := 1000; len(procs) < 2000-len(nestedTree())+1; pid++ {
		procs = append(procs, fakeProc{pid: pid, ppid: 1, comm: "worker proc", start: uint64(pid), noDetail: true})
	}
	writeFakeProc(b, root, procs)
	b.ReportAllocs()
	for b.Loop() {
		d, _, _ := newFakeDiscoverer(b, root, newFakeEngines(), nestedModel(root))
		if _, err := d.Scan(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRefreshHostProc measures a steady-state refresh of this machine's
// real /proc (kernel-generated stat files, not a fake tree), reporting the
// processes per refresh: back to back, and with a process started and gone
// before each refresh (not timed), as on a host where something forks
// between two rescans (most hosts, most rescans).
func BenchmarkRefreshHostProc(b *testing.B) {
	for _, fork := range []bool{false, true} {
		name := "steady"
		if fork {
			name = "after-fork"
		}
		b.Run(name, func(b *testing.B) {
			p := NewProcFS("/proc")
			for range fullEvery {
				if err := p.Refresh(nil); err != nil {
					testbed.Unavailable(b, "no procfs at /proc: %v", err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if fork {
					b.StopTimer()
					if err := exec.Command("true").Run(); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if err := p.Refresh(nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(p.Len()), "procs")
		})
	}
}

// BenchmarkResolveHierarchy1000 measures placing three engines, one of them
// inside a container of the host Docker, against a real model.Store holding
// 1,000 running Docker containers with labels, as a discovery pass does every
// few seconds on a host that busy.
func BenchmarkResolveHierarchy1000(b *testing.B) {
	store := model.NewStore(nil)
	engines := []model.Engine{
		{ID: "docker", Type: model.Docker, PID: 100},
		{ID: "containerd", Type: model.Containerd, PID: 50},
		{ID: "inner", Type: model.Podman, PID: 4500},
	}
	for _, e := range engines {
		store.PutEngine(e)
	}
	for i := range 1000 {
		store.Upsert(model.Container{
			ID: fmt.Sprintf("%064d", i), EngineID: "docker", Name: fmt.Sprintf("c%d", i),
			State: model.StateRunning, PID: 4000 + i, ImageName: "local/busybox:latest", ImageTags: []string{"local/busybox:latest"},
			CgroupPath: fmt.Sprintf("/docker/%064d", i),
			Labels:     map[string]string{"com.example.app": "bench", "seq": fmt.Sprint(i)},
		})
	}
	locate := func(e model.Engine) int { return e.PID }
	parent := func(pid int) (int, bool) { return 1, pid != 1 }
	var h hierarchyScratch // kept from pass to pass, as the Discoverer keeps it
	b.ReportAllocs()
	for b.Loop() {
		places := h.resolve(engines, locate, parent, store)
		if len(places) != 1 {
			b.Fatalf("%d placements, want the inner engine's alone", len(places))
		}
	}
}
