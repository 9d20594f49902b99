package procfs

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
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
	must(t, os.Symlink("loop2", filepath.Join(root, "loop1")))
	must(t, os.Symlink("loop1", filepath.Join(root, "loop2")))
	must(t, os.Symlink("abs/secret", filepath.Join(root, "chain")))
	tests := []struct {
		name, in, want string
		err            error
	}{
		{name: "an absolute symlink to a host path resolves inside the root", in: "abs/secret", want: "root"},
		{name: "a relative symlink climbing out is clamped at the root", in: "rel/secret", want: "root"},
		{name: "dot-dot never climbs above the root", in: "../../.." + host + "/secret", want: "root"},
		{name: "a link to what exists only on the host is not found", in: "gone/secret", err: fs.ErrNotExist},
		{name: "a chain of links resolves inside the root", in: "chain", want: "root"},
		{name: "a symlink loop ends", in: "loop1/x", err: unix.ELOOP},
		{name: "a file is no directory", in: "abs/secret/x", err: unix.ENOTDIR},
	}
	// The kernel's one-step resolution, and the walk used where openat2 is
	// missing or filtered, must agree.
	walk := func(root, rel string, flags int) (*os.File, error) {
		dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		defer unix.Close(dir)
		fd, err := walkInRoot(dir, rel, flags)
		if err != nil {
			return nil, err
		}
		return os.NewFile(uintptr(fd), rel), nil
	}
	for _, open := range []struct {
		name string
		f    func(root, rel string, flags int) (*os.File, error)
	}{{"openat2", OpenInRoot}, {"walk", walk}} {
		for _, tt := range tests {
			t.Run(open.name+"/"+tt.name, func(t *testing.T) {
				f, err := open.f(root, tt.in, os.O_RDONLY)
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
	}
	if sock, err := IsSocketInRoot(root, "abs/secret"); err != nil || sock {
		t.Errorf("IsSocketInRoot(a regular file) = %v, %v; want false, nil", sock, err)
	}
}
