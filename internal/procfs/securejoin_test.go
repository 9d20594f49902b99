package procfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "run", "podman"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "var"), 0o755))
	must(t, os.Symlink("/run", filepath.Join(root, "var", "run")))
	must(t, os.Symlink("../../../../../../run/podman", filepath.Join(root, "escape")))
	must(t, os.Symlink("loop", filepath.Join(root, "loop")))
	must(t, os.Symlink("/run/podman/podman.sock", filepath.Join(root, "run", "link.sock")))
	must(t, os.WriteFile(filepath.Join(root, "run", "podman", "podman.sock"), nil, 0o600))
	tests := []struct {
		name, in, want string
		err            error
	}{
		{name: "an absolute symlink resolves inside the root", in: "/var/run/podman/podman.sock", want: "/run/podman/podman.sock"},
		{name: "dot-dot never climbs above the root", in: "/../../run/./podman/podman.sock", want: "/run/podman/podman.sock"},
		{name: "a relative symlink climbing out is clamped at the root", in: "/escape/podman.sock", want: "/run/podman/podman.sock"},
		{name: "a symlinked socket file resolves to its target inside the root", in: "/run/link.sock", want: "/run/podman/podman.sock"},
		{name: "a missing (deleted) socket is reported as not existing", in: "/run/podman/gone.sock", err: fs.ErrNotExist},
		{name: "a symlink loop is an error", in: "/loop/x", err: ErrTooManyLinks},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SecureJoin(root, tt.in)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("SecureJoin(%q) = %q, %v; want error %v", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != filepath.Join(root, tt.want) {
				t.Fatalf("SecureJoin(%q) = %q, want %q", tt.in, got, filepath.Join(root, tt.want))
			}
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
