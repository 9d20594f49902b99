package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// fakeProc builds a procfs-like tree: PID 2's comm, and ns links for "self"
// and "2" (kind -> target).
func fakeProc(t *testing.T, comm2 string, ns map[string]map[string]string) string {
	t.Helper()
	root := t.TempDir()
	if comm2 != "" {
		if err := os.MkdirAll(filepath.Join(root, "2"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "2", "comm"), []byte(comm2+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for pid, links := range ns {
		dir := filepath.Join(root, pid, "ns")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for kind, target := range links {
			if err := os.Symlink(target, filepath.Join(dir, kind)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestDetectHostView(t *testing.T) {
	host := map[string]string{"pid": "pid:[1]", "mnt": "mnt:[1]"}
	tests := []struct {
		name       string
		comm2      string
		self       map[string]string
		cgroup     string
		wantRoot   string // "" means / ; "proc" means PROC/2/root
		wantWarn   []string
		wantNoWarn bool
	}{
		{name: "on the host", comm2: "kthreadd", self: host, cgroup: "/sys/fs/cgroup", wantNoWarn: true},
		{name: "in a container with the host's mounts", comm2: "kthreadd", self: map[string]string{"pid": "pid:[1]", "mnt": "mnt:[2]"},
			cgroup: "/host/sys/fs/cgroup", wantRoot: "proc", wantNoWarn: true},
		{name: "in a container reading its own cgroup tree", comm2: "kthreadd", self: map[string]string{"pid": "pid:[1]", "mnt": "mnt:[2]"},
			cgroup: "/sys/fs/cgroup", wantRoot: "proc", wantWarn: []string{"host.cgroup", "/sys/fs/cgroup"}},
		{name: "in a PID namespace of its own", comm2: "kthreadd", self: map[string]string{"pid": "pid:[7]", "mnt": "mnt:[2]"},
			cgroup: "/host/sys/fs/cgroup", wantRoot: "proc", wantWarn: []string{"--pid=host", "pid:[7]"}},
		{name: "a container's procfs", comm2: "sleep", self: host, cgroup: "/sys/fs/cgroup", wantWarn: []string{"does not look like the host's procfs", `"sleep"`}},
		{name: "no procfs at all", comm2: "", self: host, cgroup: "/sys/fs/cgroup", wantWarn: []string{"does not look like the host's procfs", "no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			proc := fakeProc(t, tt.comm2, map[string]map[string]string{"2": host})
			self := fakeProc(t, "", map[string]map[string]string{"self": tt.self})
			v := detectHostView(self, proc, tt.cgroup, "/sys/fs/cgroup")
			want := "/"
			if tt.wantRoot == "proc" {
				want = filepath.Join(proc, "2", "root")
			}
			if v.root != want {
				t.Errorf("root = %q, want %q", v.root, want)
			}
			if tt.wantNoWarn && len(v.warnings) > 0 {
				t.Errorf("warnings %q, want none", v.warnings)
			}
			all := strings.Join(v.warnings, "\n")
			for _, w := range tt.wantWarn {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q do not mention %q", v.warnings, w)
				}
			}
		})
	}
	t.Run("in a sandboxed systemd unit", func(t *testing.T) {
		// ProtectSystem= and friends give the unit a mount namespace of its
		// own over the host's root and cgroup tree: that is the host.
		hostRoot := t.TempDir()
		cgroup := filepath.Join(hostRoot, "sys", "fs", "cgroup")
		if err := os.MkdirAll(cgroup, 0o755); err != nil {
			t.Fatal(err)
		}
		proc := fakeProc(t, "kthreadd", map[string]map[string]string{"2": host})
		self := fakeProc(t, "", map[string]map[string]string{"self": {"pid": "pid:[1]", "mnt": "mnt:[2]"}})
		for _, dir := range []string{filepath.Join(proc, "2"), filepath.Join(self, "self")} {
			if err := os.Symlink(hostRoot, filepath.Join(dir, "root")); err != nil {
				t.Fatal(err)
			}
		}
		v := detectHostView(self, proc, cgroup, cgroup)
		if v.root != "/" || len(v.warnings) > 0 {
			t.Errorf("in a sandboxed unit: root %q, warnings %q; want / and none", v.root, v.warnings)
		}
	})
	t.Run("this machine's /proc", func(t *testing.T) {
		if _, err := os.Readlink("/proc/2/ns/mnt"); err != nil {
			testbed.Unavailable(t, "PID 2's namespaces are out of reach: %v", err)
		}
		v := detectHostView("/proc", "/proc", "/sys/fs/cgroup", "/sys/fs/cgroup")
		if v.root != "/" || len(v.warnings) > 0 {
			t.Errorf("on the host: root %q, warnings %q", v.root, v.warnings)
		}
	})
}
