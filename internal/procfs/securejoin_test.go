package procfs

import (
	"errors"
	"io"
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

func TestOpenInRootNeverLeavesTheRoot(t *testing.T) {
	host := t.TempDir()
	must(t, os.WriteFile(filepath.Join(host, "secret"), []byte("host"), 0o600))
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, host), 0o755))
	must(t, os.WriteFile(filepath.Join(root, host, "secret"), []byte("root"), 0o600))
	must(t, os.Symlink(host, filepath.Join(root, "abs")))
	must(t, os.Symlink("../../../../../../.."+host, filepath.Join(root, "rel")))
	must(t, os.Symlink(filepath.Join(host, "nothing"), filepath.Join(root, "gone")))
	tests := []struct {
		name, in, want string
		err            error
	}{
		{name: "an absolute symlink to a host path resolves inside the root", in: "abs/secret", want: "root"},
		{name: "a relative symlink climbing out is clamped at the root", in: "rel/secret", want: "root"},
		{name: "dot-dot never climbs above the root", in: "../../.." + host + "/secret", want: "root"},
		{name: "a link to what exists only on the host is not found", in: "gone/secret", err: fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := OpenInRoot(root, tt.in, os.O_RDONLY)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("OpenInRoot(%q) = %v; want error %v", tt.in, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			got, err := io.ReadAll(f)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("OpenInRoot(%q) read %q, want %q (the file inside the root)", tt.in, got, tt.want)
			}
		})
	}
	if sock, err := IsSocketInRoot(root, "abs/secret"); err != nil || sock {
		t.Errorf("IsSocketInRoot(a regular file) = %v, %v; want false, nil", sock, err)
	}
}
