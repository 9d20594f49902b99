package discovery

import (
	"path/filepath"
	"strconv"
	"testing"
)

// TestHostRootAnchorsAtTheOldestProcessOfTheNamespace: a process that a
// `docker exec`'d command started is not a descendant of its container's
// init, yet its endpoint must be reached through the init, which outlives
// the exec'd command.
func TestHostRootAnchorsAtTheOldestProcessOfTheNamespace(t *testing.T) {
	root := t.TempDir()
	writeFakeProc(t, root, []fakeProc{
		{pid: 1, ppid: 0, comm: "init", start: 1},
		{pid: 100, ppid: 1, comm: "containerd-shim", start: 40},
		{pid: 101, ppid: 100, comm: "systemd", start: 50, mntns: 7}, // the container's init
		{pid: 150, ppid: 101, comm: "podman", start: 60, mntns: 7},  // a service under the init
		{pid: 200, ppid: 100, comm: "runuser", start: 90, mntns: 7}, // docker exec
		{pid: 201, ppid: 200, comm: "podman", start: 95, mntns: 7},  // podman run
		{pid: 202, ppid: 201, comm: "conmon", start: 96, mntns: 7},  // not yet reparented
		{pid: 300, ppid: 1, comm: "lonely", start: 99, mntns: 8},    // alone in its namespace
		{pid: 301, ppid: 300, comm: "child", start: 99, mntns: 9},   // alone, parent elsewhere
		{pid: 400, ppid: 1, comm: "twin", start: 120, mntns: 10},    // same start: lowest PID
		{pid: 399, ppid: 1, comm: "twin", start: 120, mntns: 10},
	})
	p := NewProcFS(root)
	if err := p.Refresh(func(int, []byte) {}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		pid, anchor int
	}{
		{202, 101}, {201, 101}, {150, 101}, {101, 101}, {300, 300}, {301, 301}, {400, 399},
	}
	for _, tt := range tests {
		got, err := p.HostRoot(tt.pid)
		if err != nil {
			t.Fatalf("HostRoot(%d): %v", tt.pid, err)
		}
		if want := filepath.Join(root, strconv.Itoa(tt.anchor), "root"); got != want {
			t.Errorf("HostRoot(%d) = %s, want %s", tt.pid, got, want)
		}
	}
	if _, ok := p.OldestIn(0); ok {
		t.Error("OldestIn(0): a process is in the unknown namespace")
	}
	if _, ok := p.OldestIn(42); ok {
		t.Error("OldestIn(42): a process is in a namespace no process has")
	}
}
