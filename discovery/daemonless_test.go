package discovery

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/podman"
)

// TestDaemonlessPodmanIsFoundThroughItsConmons: two conmon processes in a
// container (mount namespace 7 under a systemd, PID 50) name one storage:
// discovery reaches it through the container's root and finds one
// daemonless podman, served by one of them; when that conmon exits the
// other takes over, and only when none is left is the engine's process gone.
func TestDaemonlessPodmanIsFoundThroughItsConmons(t *testing.T) {
	root := t.TempDir()
	conmon := func(pid int, id string) fakeProc {
		return fakeProc{pid: pid, ppid: 50, comm: "conmon", start: uint64(pid), mntns: 7, cmdline: []string{
			"/usr/bin/conmon", "-c", id, "-n", "n" + id, "-b", "/var/lib/containers/storage/overlay-containers/" + id + "/userdata",
			"--exit-dir", "/run/libpod/exits", "--exit-command-arg", "--root", "--exit-command-arg", "/var/lib/containers/storage",
			"--exit-command-arg", "container", "--exit-command-arg", "cleanup"}}
	}
	writeFakeProc(t, root, []fakeProc{
		{pid: 50, ppid: 1, comm: "systemd", start: 2, mntns: 7, cmdline: []string{"/lib/systemd/systemd"}},
		conmon(100, "aaa"), conmon(101, "bbb"),
		{pid: 102, ppid: 50, comm: "conmon", start: 102, mntns: 7, cmdline: []string{"/usr/bin/conmon", "--version"}},
	})
	storage := filepath.Join(root, "50/root/var/lib/containers/storage")
	must(t, os.MkdirAll(filepath.Join(storage, "libpod"), 0o755))
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	d, err := New(Config{ProcRoot: root}, engine.Families{podman.Family(nil), podman.DaemonlessFamily(root)}, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	es, err := d.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Endpoint != storage || !es[0].Daemonless || es[0].Storage != "/var/lib/containers/storage" ||
		es[0].ID != "podman:"+storage || (es[0].PID != 100 && es[0].PID != 101) {
		t.Fatalf("engines %+v, want one daemonless podman at %s served by a conmon of it", es, storage)
	}
	first, other := es[0].PID, 201-es[0].PID
	steps := []struct {
		name string
		gone string
		pid  int
	}{
		{"the other conmon takes over when the first exits", strconv.Itoa(first), other},
		{"the engine's process is gone when no conmon is left", strconv.Itoa(other), 0},
		{"a new conmon serves it again", "", 103},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.gone != "" {
				must(t, os.RemoveAll(filepath.Join(root, s.gone)))
			} else {
				writeFakeProc(t, root, []fakeProc{conmon(s.pid, "ccc")})
			}
			es, err := d.Scan(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 1 || es[0].PID != s.pid {
				t.Fatalf("engines %+v, want the daemonless podman with PID %d", es, s.pid)
			}
		})
	}
	// Its conmons come and go with its containers (a line per `podman
	// run --rm` otherwise): not news at INFO.
	for _, line := range []string{"engine process gone", "engine back"} {
		if strings.Contains(logBuf.String(), line) {
			t.Errorf("%q logged at INFO for a daemonless podman:\n%s", line, logBuf.String())
		}
	}
}
