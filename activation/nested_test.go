package activation

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
)

// writeProc writes a fake /proc/PID with comm and status.
func writeProc(t *testing.T, root string, pid int, comm, nspid string) {
	t.Helper()
	dir := filepath.Join(root, strconv.Itoa(pid))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	status := "Name:\t" + comm + "\nUmask:\t0022\nState:\tS (sleeping)\n"
	if nspid != "" {
		status += "NSpid:\t" + nspid + "\n"
	}
	for name, data := range map[string]string{"comm": comm + "\n", "status": status} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindNestedSystemd(t *testing.T) {
	root := t.TempDir()
	writeProc(t, root, 1, "systemd", "1")                 // the host's own systemd
	writeProc(t, root, 812, "systemd", "812\t1")          // PID 1 of a container
	writeProc(t, root, 900, "systemd", "900\t37")         // systemd --user in a container
	writeProc(t, root, 950, "dockerd", "950\t1")          // not systemd
	writeProc(t, root, 1200, "systemd", "1200\t55\t1")    // two levels down
	writeProc(t, root, 1300, "systemd", "")               // kernel without NSpid
	writeProc(t, root, 1400, "systemd", "1400 garbage 1") // unreadable NSpid
	if err := os.MkdirAll(filepath.Join(root, "self"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := FindNestedSystemd(root)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{812, 1200}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestFindNestedSystemdOfAMissingRootIsAnError(t *testing.T) {
	if _, err := FindNestedSystemd(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("no error for a missing proc root")
	}
}

func TestParseSocketUnitListens(t *testing.T) {
	for _, tc := range []struct {
		name string
		file string
		want []Listen
	}{
		{name: "podman's unit with %t is expanded to /run", file: "[Unit]\nDescription=Podman API Socket\n\n[Socket]\nListenStream=%t/podman/podman.sock\nSocketMode=0660\n\n[Install]\nWantedBy=sockets.target\n",
			want: []Listen{{"Stream", "/run/podman/podman.sock"}}},
		{name: "docker's plain path is read", file: "[Socket]\nListenStream=/run/docker.sock\nSocketGroup=docker\n", want: []Listen{{"Stream", "/run/docker.sock"}}},
		{name: "an empty assignment resets the list", file: "[Socket]\nListenStream=/a.sock\nListenStream=\nListenStream=/b.sock\n", want: []Listen{{"Stream", "/b.sock"}}},
		{name: "other sections, comments and unknown specifiers are skipped", file: "[Service]\nListenStream=/x\n[Socket]\n# ListenStream=/c\nListenStream=%h/y.sock\nListenDatagram=/d\nListenStream=100%%.sock\n",
			want: []Listen{{"Stream", "100%.sock"}}},
		{name: "an empty file has nothing", file: "", want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseSocketUnitListens([]byte(tc.file)); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, want %#v", got, tc.want)
			}
		})
	}
}

func FuzzParseSocketUnitListens(f *testing.F) {
	f.Add([]byte("[Socket]\nListenStream=%t/podman/podman.sock\n"))
	f.Add([]byte("[Socket]\nListenStream=%\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, l := range parseSocketUnitListens(b) {
			if l.Type != "Stream" || l.Address == "" {
				t.Fatalf("bad entry %#v", l)
			}
		}
	})
}

func TestMaskedListensSkipsTheMask(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"run/systemd/system", "lib/systemd/system"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("/dev/null", filepath.Join(root, "run/systemd/system/podman.socket")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "lib/systemd/system/podman.socket"), []byte("[Socket]\nListenStream=%t/podman/podman.sock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, want := maskedListens(root, "podman.socket"), []Listen{{"Stream", "/run/podman/podman.sock"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
	if got := maskedListens(root, "docker.socket"); got != nil {
		t.Fatalf("got %#v for a unit without a file", got)
	}
}

func TestMaskedListensResolvesSymlinksInsideTheRoot(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"etc/systemd/system", "opt/units"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// An absolute link as `systemctl link` makes it: it must reach the
	// container's /opt/units, not the host's.
	if err := os.WriteFile(filepath.Join(root, "opt/units/engine.socket"), []byte("[Socket]\nListenStream=/run/engine.sock\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/opt/units/engine.socket", filepath.Join(root, "etc/systemd/system/engine.socket")); err != nil {
		t.Fatal(err)
	}
	if got, want := maskedListens(root, "engine.socket"), []Listen{{"Stream", "/run/engine.sock"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}
