package activation

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

func TestFindUserSystemd(t *testing.T) {
	root := t.TempDir()
	procs := []struct {
		pid           int
		comm, cmdline string
		environ       string
	}{
		{1, "systemd", "/sbin/init\x00", ""},
		{200, "systemd", "/lib/systemd/systemd\x00--user\x00", "HOME=/home/a\x00XDG_RUNTIME_DIR=/run/user/1000\x00"},
		{300, "systemd", "/usr/lib/systemd/systemd\x00--user\x00--deserialize\x0010\x00", ""},
		{400, "(sd-pam)", "(sd-pam)\x00", ""},
		{500, "bash", "bash\x00--user\x00", ""},                   // not a systemd
		{600, "systemd", "/lib/systemd/systemd\x00--usr\x00", ""}, // no --user
		{700, "systemd", "/lib/systemd/systemd\x00--user\x00", "XDG_RUNTIME_DIR=relative\x00"},
	}
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"comm": p.comm + "\n", "cmdline": p.cmdline, "environ": p.environ} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	pids, err := FindUserSystemd(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{200, 300, 700}; !slices.Equal(pids, want) {
		t.Fatalf("FindUserSystemd = %v, want %v", pids, want)
	}

	uid := os.Getuid() // the fake tree's owner stands for the instance's
	tests := []struct {
		pid  int
		want string
	}{
		{200, "/run/user/1000"},                 // XDG_RUNTIME_DIR from its environment
		{300, "/run/user/" + strconv.Itoa(uid)}, // none: /run/user/UID
		{700, "/run/user/" + strconv.Itoa(uid)}, // not absolute: ignored
	}
	for _, tt := range tests {
		u, err := readUserSystemd(root, tt.pid)
		if err != nil {
			t.Fatal(err)
		}
		if u.runtimeDir != tt.want || u.uid != uid {
			t.Errorf("pid %d: runtime dir %q uid %d, want %q uid %d", tt.pid, u.runtimeDir, u.uid, tt.want, uid)
		}
		addrs := userBusAddrs(root, u)
		if len(addrs) != 2 || !addrs[0].direct || addrs[1].direct || addrs[0].as == nil || addrs[0].as.uid != uid ||
			addrs[1].address != unixAddress(filepath.Join(root, strconv.Itoa(tt.pid), "root", tt.want, "bus")) {
			t.Errorf("pid %d: bus addresses %+v", tt.pid, addrs)
		}
	}
	if _, err := readUserSystemd(root, 999); err == nil {
		t.Error("a user instance that is gone read without error")
	}
	if _, err := FindUserSystemd(filepath.Join(root, "missing")); err == nil {
		t.Error("a missing proc root gave no error")
	}
}
