package discovery

import (
	"context"
	"os/exec"
	"testing"

	"github.com/agentd-dev/agentd/internal/testbed"
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
