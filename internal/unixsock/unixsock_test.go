package unixsock

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func listen(t *testing.T, path string) {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(path))
			c.Close()
		}
	}()
}

// answer dials and returns what the listener wrote: its own path.
func answer(t *testing.T, dial func() (net.Conn, error)) (string, error) {
	t.Helper()
	c, err := dial()
	if err != nil {
		return "", err
	}
	defer c.Close()
	b := make([]byte, 512)
	n, _ := c.Read(b)
	return string(b[:n]), nil
}

// TestDialStaysInsideTheRoot: a container that plants symlinks towards a
// host socket cannot make agentd connect to it; links inside the root work.
func TestDialStaysInsideTheRoot(t *testing.T) {
	base := t.TempDir()
	host := filepath.Join(base, "host.sock") // a socket of the host
	listen(t, host)
	root := filepath.Join(base, "ctr") // the container's root filesystem
	for _, d := range []string{"run/real", "var"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	inside := filepath.Join(root, "run/real/engine.sock")
	listen(t, inside)
	links := map[string]string{
		"run/abs.sock":  host,               // absolute: resolves as ctr/<host path>
		"run/up.sock":   "../../host.sock",  // climbs: stops at the root
		"var/run":       "/run",             // directory link, absolute, inside
		"run/good.sock": "real/engine.sock", // relative, inside
		"run/root.sock": "/run/real/engine.sock",
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, rel, want string
	}{
		{"an absolute link to a host socket does not leave the root", "run/abs.sock", ""},
		{"a relative link climbing out of the root does not leave it", "run/up.sock", ""},
		{"a relative link inside the root is followed", "run/good.sock", inside},
		{"an absolute link is resolved against the root", "run/root.sock", inside},
		{"a directory link is resolved against the root", "var/run/real/engine.sock", inside},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := answer(t, func() (net.Conn, error) { return DialIn(context.Background(), root, tt.rel) })
			if tt.want == "" {
				if err == nil {
					t.Fatalf("connected to %q, want an error", got)
				}
				if !strings.Contains(err.Error(), tt.rel) || !strings.Contains(err.Error(), root) {
					t.Errorf("error %q does not name %s in %s", err, tt.rel, root)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	t.Run("a regular file is not dialled", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(root, "run/file.sock"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := DialIn(context.Background(), root, "run/file.sock"); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("err %v, want not a socket", err)
		}
	})
}

// TestDialThroughProcRoot: a path under /proc/PID/root is resolved in that
// root; here the test's own process, whose root is the host's.
func TestDialThroughProcRoot(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	listen(t, sock)
	path := filepath.Join("/proc", strconv.Itoa(os.Getpid()), "root", sock)
	got, err := answer(t, func() (net.Conn, error) { return Dial(context.Background(), path) })
	if err != nil || got != sock {
		t.Fatalf("got %q, %v; want %q", got, err, sock)
	}
}
