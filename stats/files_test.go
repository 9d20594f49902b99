package stats

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

func TestReaderKeepsFilesOpen(t *testing.T) {
	t.Run("a kept file is re-read from the start and sees new content", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "pids.current")
		must(t, os.WriteFile(path, []byte("3\n"), 0o644))
		r := NewReader(dir, dir)
		var cg Cgroup
		var buf []byte
		if b, err := r.read(&cg, filePids, path, &buf); err != nil || string(b) != "3\n" {
			t.Fatalf("first read %q, %v", b, err)
		}
		if r.OpenFiles() != 1 {
			t.Fatalf("%d files open, want 1", r.OpenFiles())
		}
		must(t, os.WriteFile(path, []byte("12\n"), 0o644)) // in place: same inode
		if b, err := r.read(&cg, filePids, path, &buf); err != nil || string(b) != "12\n" {
			t.Fatalf("second read %q, %v", b, err)
		}
		r.Release(&cg)
		if r.OpenFiles() != 0 || cg.fds[filePids] != 0 {
			t.Fatalf("after Release: %d open, fd %d", r.OpenFiles(), cg.fds[filePids])
		}
	})
	t.Run("past the budget files are opened and closed at every read", func(t *testing.T) {
		dir := t.TempDir()
		r := NewReader(dir, dir)
		r.SetMaxOpenFiles(1)
		var a, b Cgroup
		var buf []byte
		for _, cg := range []*Cgroup{&a, &b} {
			path := filepath.Join(dir, "f")
			must(t, os.WriteFile(path, []byte("1\n"), 0o644))
			if _, err := r.read(cg, filePids, path, &buf); err != nil {
				t.Fatal(err)
			}
		}
		if r.OpenFiles() != 1 || a.fds[filePids] == 0 || b.fds[filePids] != 0 {
			t.Fatalf("open %d, a %d, b %d: want only a's file kept", r.OpenFiles(), a.fds[filePids], b.fds[filePids])
		}
		r.Release(&a)
	})
	t.Run("the budget is at most half the limit of open files", func(t *testing.T) {
		var lim unix.Rlimit
		must(t, unix.Getrlimit(unix.RLIMIT_NOFILE, &lim))
		low := lim
		low.Cur = 1000
		must(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &low))
		defer func() { must(t, unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)) }()
		dir := t.TempDir()
		r := NewReader(dir, dir)
		if got := r.MaxOpenFiles(); got != 500 {
			t.Errorf("default budget under a limit of 1000 open files: %d, want 500", got)
		}
		r.SetMaxOpenFiles(100)
		if got := r.MaxOpenFiles(); got != 100 {
			t.Errorf("budget 100 under a limit of 1000: %d, want 100", got)
		}
		r.SetMaxOpenFiles(DefaultMaxOpenFiles)
		if got := r.MaxOpenFiles(); got != 500 {
			t.Errorf("budget %d under a limit of 1000: %d, want 500", DefaultMaxOpenFiles, got)
		}
	})
	t.Run("a missing file is an error naming it and keeps nothing open", func(t *testing.T) {
		dir := t.TempDir()
		r := NewReader(dir, dir)
		var cg Cgroup
		var buf []byte
		_, err := r.read(&cg, filePids, filepath.Join(dir, "gone"), &buf)
		if err == nil || !strings.Contains(err.Error(), "gone") || r.OpenFiles() != 0 {
			t.Fatalf("err %v, %d open", err, r.OpenFiles())
		}
	})
	t.Run("the sampler releases the files of containers it forgets and on Close", func(t *testing.T) {
		s := NewSampler(SamplerConfig{ProcRoot: "testdata/v2/proc", CgroupRoot: "testdata/v2/cgroup"}, nil)
		a, b := model.Container{ID: "a", PID: 777}, model.Container{ID: "b", PID: 778}
		if _, err := s.Sample(t.Context(), []model.Container{a, b}, nil); err != nil && !strings.Contains(err.Error(), "b") {
			t.Fatal(err)
		}
		both := s.OpenFiles()
		if _, err := s.Sample(t.Context(), []model.Container{a}, nil); err != nil {
			t.Fatal(err)
		}
		one := s.OpenFiles()
		must(t, s.Close())
		if !(both > one && one > 0) || s.OpenFiles() != 0 {
			t.Fatalf("open files: %d with two containers, %d with one, %d after Close", both, one, s.OpenFiles())
		}
	})
}

// TestKeptCgroupFileOfARemovedCgroup proves the kept-open path on the real
// cgroupfs: once the cgroup is removed the kept file fails, is closed, and
// the read reports the cgroup gone.
func TestKeptCgroupFileOfARemovedCgroup(t *testing.T) {
	testbed.Require(t, testbed.Root)
	parent := "/sys/fs/cgroup/pids"
	if _, err := os.Stat(filepath.Join(parent, "pids.max")); err != nil {
		parent = "/sys/fs/cgroup/unified" // hybrid: v2 mounted below
		if _, err := os.Stat(filepath.Join(parent, "cgroup.procs")); err != nil {
			parent = "/sys/fs/cgroup"
		}
	}
	dir, err := os.MkdirTemp(parent, "agentd-test-")
	if err != nil {
		t.Fatalf("create a cgroup under %s: %v", parent, err)
	}
	t.Cleanup(func() { _ = syscall.Rmdir(dir) })
	path := filepath.Join(dir, "cgroup.procs")
	r := NewReader("/proc", "/sys/fs/cgroup")
	var cg Cgroup
	var buf []byte
	if _, err := r.read(&cg, filePids, path, &buf); err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if cg.fds[filePids] == 0 {
		t.Fatal("file not kept open")
	}
	if err := syscall.Rmdir(dir); err != nil {
		t.Fatalf("remove cgroup %s: %v", dir, err)
	}
	if _, err := r.read(&cg, filePids, path, &buf); err == nil {
		t.Fatal("read of a removed cgroup succeeded")
	}
	if cg.fds[filePids] != 0 || r.OpenFiles() != 0 {
		t.Fatalf("the failed file stayed open: fd %d, %d open", cg.fds[filePids], r.OpenFiles())
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
