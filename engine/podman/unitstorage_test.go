package podman

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServiceStorage(t *testing.T) {
	proc := t.TempDir()
	proc1 := func(pid, cmdline, environ string) {
		dir := filepath.Join(proc, pid)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, s := range map[string]string{"cmdline": cmdline, "environ": environ} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(strings.ReplaceAll(s, " ", "\x00")+"\x00"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	proc1("40", "/lib/systemd/systemd", "container=docker")
	proc1("44", "/lib/systemd/systemd --user", "HOME=/home/u XDG_RUNTIME_DIR=/run/user/1001")
	proc1("45", "/lib/systemd/systemd --user", "HOME=/home/v XDG_DATA_HOME=/data/v")
	proc1("46", "/lib/systemd/systemd --user", "LANG=C")
	tests := []struct {
		name string
		pid  int
		want string
		bad  bool
	}{
		{"the host's systemd starts root's podman", 0, "/var/lib/containers/storage", false},
		{"a nested system instance starts root's podman in its root", 40, proc + "/40/root/var/lib/containers/storage", false},
		{"a user instance starts the user's, under HOME", 44, proc + "/44/root/home/u/.local/share/containers/storage", false},
		{"XDG_DATA_HOME moves it", 45, proc + "/45/root/data/v/containers/storage", false},
		{"a user instance without HOME names none", 46, "", true},
		{"a systemd gone names none", 47, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ServiceStorage(proc, tt.pid)
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("ServiceStorage = %q, %v; want %q (error: %v)", got, err, tt.want, tt.bad)
			}
		})
	}
}
