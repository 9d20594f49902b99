package discovery

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// writeStat rewrites the stat of pid in a fake tree (same directory, same inode).
func writeStat(t *testing.T, root string, pid, ppid int, comm string, start uint64) {
	t.Helper()
	stat := fmt.Sprintf("%d (%s) S %d %d %d 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 %d 1000000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n",
		pid, comm, ppid, pid, pid, start)
	must(t, os.WriteFile(filepath.Join(root, strconv.Itoa(pid), "stat"), []byte(stat), 0o644))
}

// age makes the processes of p's tree old (started long before now) and
// refreshes p once.
func age(t *testing.T, p *ProcFS) {
	t.Helper()
	p.uptime = func() uint64 { return 1_000_000 }
	must(t, p.Refresh(nil))
}

// oneProc makes a fake procfs with one process (parent 1, started at tick 4)
// and a ProcFS reading it, not yet refreshed.
func oneProc(t *testing.T, pid int, comm string) (string, *ProcFS) {
	t.Helper()
	root := t.TempDir()
	writeFakeProc(t, root, []fakeProc{{pid: pid, ppid: 1, comm: comm, start: 4, noDetail: true}})
	return root, NewProcFS(root)
}

func TestRefreshRereadsWhatCanChange(t *testing.T) {
	t.Run("a young process that execs is seen at the next refresh", func(t *testing.T) {
		root, p := oneProc(t, 40, "sh")
		p.uptime = func() uint64 { return 4 + 100 } // started a second ago
		must(t, p.Refresh(nil))
		writeStat(t, root, 40, 1, "dockerd", 4)
		must(t, p.Refresh(nil))
		if _, comm, _, _ := p.Lookup(40); comm != "dockerd" {
			t.Fatalf("comm %q after exec, want dockerd", comm)
		}
	})
	t.Run("an old process that execs is seen within fullEvery refreshes", func(t *testing.T) {
		root, p := oneProc(t, 41, "sh")
		age(t, p)
		writeStat(t, root, 41, 1, "dockerd", 4)
		for range fullEvery {
			must(t, p.Refresh(nil))
			if _, comm, _, _ := p.Lookup(41); comm == "dockerd" {
				return
			}
		}
		t.Fatalf("exec of an old process not seen within %d refreshes", fullEvery)
	})
	t.Run("an old process named like an engine is re-read at every refresh", func(t *testing.T) {
		root, p := oneProc(t, 42, "dockerd")
		p.AlwaysRead("dockerd")
		age(t, p)
		writeStat(t, root, 42, 7, "dockerd", 4) // reparented
		must(t, p.Refresh(nil))
		if ppid, _, _, _ := p.Lookup(42); ppid != 7 {
			t.Fatalf("ppid %d, want 7 at once", ppid)
		}
	})
	t.Run("a reused PID (a new /proc/PID inode) is re-read at once", func(t *testing.T) {
		root, p := oneProc(t, 43, "sleep")
		age(t, p)
		// The new process's directory exists before the old one goes, so its
		// inode cannot be the old one's.
		tmp := filepath.Join(root, "new43")
		must(t, os.MkdirAll(tmp, 0o755))
		must(t, os.RemoveAll(filepath.Join(root, "43")))
		must(t, os.Rename(tmp, filepath.Join(root, "43")))
		writeStat(t, root, 43, 1, "crio", 99)
		must(t, p.Refresh(nil))
		if _, comm, start, _ := p.Lookup(43); comm != "crio" || start != 99 {
			t.Fatalf("got %q start %d, want the new process crio start 99", comm, start)
		}
	})
	t.Run("a process that is not re-read is still visited with its comm", func(t *testing.T) {
		_, p := oneProc(t, 44, "containerd")
		age(t, p)
		for range fullEvery {
			var got []string
			must(t, p.Refresh(func(pid int, comm []byte) { got = append(got, fmt.Sprint(pid, string(comm))) }))
			if len(got) != 1 || got[0] != "44containerd" {
				t.Fatalf("visited %q", got)
			}
		}
	})
}

func TestRefreshWithoutNewPIDsSkipsTheListing(t *testing.T) {
	setup := func(t *testing.T) (string, *ProcFS, *uint64) {
		root := t.TempDir()
		writeFakeProc(t, root, []fakeProc{
			{pid: 50, ppid: 1, comm: "dockerd", start: 4, noDetail: true},
			{pid: 51, ppid: 1, comm: "sleep", start: 4, noDetail: true},
		})
		p := NewProcFS(root)
		p.AlwaysRead("dockerd")
		last := uint64(51)
		p.lastPID = func() (uint64, bool) { return last, true }
		age(t, p)
		return root, p, &last
	}
	t.Run("an engine that exits is dropped at once", func(t *testing.T) {
		root, p, _ := setup(t)
		must(t, os.RemoveAll(filepath.Join(root, "50")))
		must(t, p.Refresh(nil))
		if _, _, _, ok := p.Lookup(50); ok {
			t.Fatal("exited engine still in the table")
		}
		if _, _, _, ok := p.Lookup(51); !ok {
			t.Fatal("a steady process was dropped")
		}
	})
	t.Run("new PIDs are read without listing the processes", func(t *testing.T) {
		root, p, last := setup(t)
		listings := p.listings
		writeFakeProc(t, root, []fakeProc{{pid: 53, ppid: 1, comm: "crio", start: 9, noDetail: true}})
		*last = 53 // 52 came and went
		var visited []int
		must(t, p.Refresh(func(pid int, _ []byte) { visited = append(visited, pid) }))
		if _, comm, _, ok := p.Lookup(53); !ok || comm != "crio" {
			t.Fatalf("new process not seen: %q %v", comm, ok)
		}
		slices.Sort(visited)
		if !slices.Equal(visited, []int{50, 51, 53}) {
			t.Fatalf("visited %v, want 50 51 53", visited)
		}
		if p.listings != listings {
			t.Fatal("a refresh with a few new PIDs listed /proc")
		}
	})
	t.Run("a thread's ID is not a process", func(t *testing.T) {
		root, p, last := setup(t)
		// /proc opens /proc/TID of a thread it does not list; exit_signal is -1.
		must(t, os.MkdirAll(filepath.Join(root, "52"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "52", "stat"), []byte("52 (dockerd) S 1 50 50 0 -1 4194624 0 0 0 0 0 0 0 0 20 0 2 0 9 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 -1 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n"), 0o644))
		*last = 52
		must(t, p.Refresh(nil))
		if _, _, _, ok := p.Lookup(52); ok {
			t.Fatal("a thread became a process of the table")
		}
	})
	t.Run("a new PID whose process has not shown yet is read again at the next refresh", func(t *testing.T) {
		root, p, last := setup(t)
		*last = 52
		must(t, p.Refresh(nil))
		writeFakeProc(t, root, []fakeProc{{pid: 52, ppid: 1, comm: "podman", start: 9, noDetail: true}})
		must(t, p.Refresh(nil)) // no PID allocated meanwhile
		if _, comm, _, ok := p.Lookup(52); !ok || comm != "podman" {
			t.Fatalf("process that showed late not seen: %q %v", comm, ok)
		}
	})
	for _, tc := range []struct {
		name string
		last uint64
	}{
		{"PIDs that wrapped around make the refresh list the processes", 40},
		{"more new PIDs than are worth reading one by one make the refresh list the processes", 51 + minAllocatedRead + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, p, last := setup(t)
			writeFakeProc(t, root, []fakeProc{{pid: 30, ppid: 1, comm: "crio", start: 9, noDetail: true}})
			*last = tc.last
			listings := p.listings
			must(t, p.Refresh(nil))
			if p.listings != listings+1 {
				t.Fatal("did not list /proc")
			}
			if _, comm, _, ok := p.Lookup(30); !ok || comm != "crio" {
				t.Fatalf("new process not seen: %q %v", comm, ok)
			}
		})
	}
	t.Run("a refresh without a listing still visits every known process", func(t *testing.T) {
		_, p, _ := setup(t)
		for range fullEvery {
			n := 0
			must(t, p.Refresh(func(int, []byte) { n++ }))
			if n != 2 {
				t.Fatalf("visited %d processes, want 2", n)
			}
		}
	})
	t.Run("processes gone meanwhile leave the table at the next listing", func(t *testing.T) {
		root, p, _ := setup(t)
		must(t, os.RemoveAll(filepath.Join(root, "51")))
		for range fullEvery {
			must(t, p.Refresh(nil))
		}
		if _, _, _, ok := p.Lookup(51); ok {
			t.Fatalf("a process gone for %d refreshes is still in the table", fullEvery)
		}
	})
}
