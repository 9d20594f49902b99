package podman_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/podman"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// daemonlessStorage is a podman storage of the test's own with no service
// running, and the daemonless engine that names it.
func daemonlessStorage(t *testing.T) (*enginetest.Private, model.Engine) {
	t.Helper()
	testbed.Require(t, testbed.Root)
	if _, err := exec.LookPath("podman"); err != nil {
		testbed.Unavailable(t, "podman is not installed: %v", err)
	}
	p := enginetest.NewPrivatePodmanStorage(t)
	es, err := podman.ProbeStorage(context.Background(), p.Root())
	if err != nil {
		t.Fatalf("probe of a podman storage with an image: %v", err)
	}
	if len(es) != 1 || !es[0].Daemonless || es[0].Storage != p.Root() || es[0].Type != model.Podman {
		t.Fatalf("probe: %+v", es)
	}
	return p, es[0]
}

// conmonPID is the PID of the conmon of container id of p.
func conmonPID(t *testing.T, p *enginetest.Private, id string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, "runroot", "vfs-containers", id, "userdata", "conmon.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// changes runs a stream's Next in a goroutine until the test ends.
func changes(t *testing.T, st engine.Stream) <-chan engine.Change {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan engine.Change, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := st.Next(ctx)
			if err != nil {
				if ctx.Err() == nil {
					t.Errorf("stream: %v", err)
				}
				return
			}
			select {
			case ch <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = st.Close()
	})
	return ch
}

// expectChanges waits for the changes of container id, in order.
func expectChanges(t *testing.T, ch <-chan engine.Change, id string, want ...model.EventType) []engine.Change {
	t.Helper()
	var got []engine.Change
	timeout := time.After(30 * time.Second)
	for len(got) < len(want) {
		select {
		case c := <-ch:
			if c.ContainerID != id {
				continue
			}
			if c.Type != want[len(got)] {
				t.Fatalf("change %d of %.12s: %s, want %s (so far %v)", len(got), id, c.Type, want[len(got)], got)
			}
			got = append(got, c)
		case <-timeout:
			t.Fatalf("changes of %.12s: got %v, want %v", id, got, want)
		}
	}
	return got
}

// TestDaemonlessPodmanLifecycle: containers of podman with no service
// running, read from its storage, conmon processes and exit files: one
// that ran before the adapter is listed; `podman run -d` gives create and
// start with the container's PID, its exit (code 7) a die with that code,
// `podman stop` a die with 137 (sleep as PID 1 ignores SIGTERM), `podman
// rm` a destroy; no podman service is started.
func TestDaemonlessPodmanLifecycle(t *testing.T) {
	p, e := daemonlessStorage(t)
	tag := enginetest.Random(t)
	early := p.CLI("run", "-d", "--network", "none", "--name", "early-"+tag, testbed.BusyboxImage, "sleep", "1000")
	e.PID = conmonPID(t, p, early)
	a, err := podman.NewDaemonlessAdapter(e, "/proc", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := a.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ch := changes(t, st)

	t.Run("a container that ran before is listed with its name, image and PID", func(t *testing.T) {
		list, err := a.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 {
			t.Fatalf("listed %d containers, want 1: %+v", len(list), list)
		}
		c := list[0]
		pid := p.CLI("inspect", "-f", "{{.State.Pid}}", early)
		if c.ID != early || c.Name != "early-"+tag || c.State != model.StateRunning || strconv.Itoa(c.PID) != pid ||
			c.ImageName != "localhost/local/busybox" || len(c.ImageTags) != 1 || c.ImageTags[0] != "latest" || c.ImageID == "" ||
			c.CreatedAt.IsZero() || c.StartedAt.IsZero() || !strings.Contains(c.CgroupPath, early) {
			t.Errorf("listed %+v; podman says PID %s", c, pid)
		}
	})

	var exits string
	t.Run("podman run -d of a container that exits 7 gives create, start and die with 7", func(t *testing.T) {
		exits = p.CLI("run", "-d", "--network", "none", "--name", "exits-"+tag, testbed.BusyboxImage, "sh", "-c", "sleep 1; exit 7")
		got := expectChanges(t, ch, exits, model.EventCreate, model.EventStart, model.EventDie)
		if got[1].PID <= 0 {
			t.Errorf("start without the container's PID: %+v", got[1])
		}
		if got[2].ExitCode == nil || *got[2].ExitCode != 7 {
			t.Errorf("die: exit code %v, want 7", got[2].ExitCode)
		}
		c, err := a.Inspect(ctx, exits)
		if err != nil || c.State != model.StateExited || c.ExitCode != 7 || c.FinishedAt.Before(c.StartedAt) {
			t.Errorf("inspect after the exit: %+v, %v", c, err)
		}
	})
	t.Run("podman stop gives die with 137", func(t *testing.T) {
		p.CLI("stop", "-t", "1", early)
		got := expectChanges(t, ch, early, model.EventDie)
		if got[0].ExitCode == nil || *got[0].ExitCode != 137 {
			t.Errorf("die: exit code %v, want 137", got[0].ExitCode)
		}
	})
	t.Run("podman start again gives start with a new PID", func(t *testing.T) {
		p.CLI("start", early)
		got := expectChanges(t, ch, early, model.EventStart)
		if pid := p.CLI("inspect", "-f", "{{.State.Pid}}", early); strconv.Itoa(got[0].PID) != pid {
			t.Errorf("start PID %d, podman says %s", got[0].PID, pid)
		}
	})
	t.Run("podman rm -f gives die and destroy", func(t *testing.T) {
		p.CLI("rm", "-f", "-t", "0", early)
		expectChanges(t, ch, early, model.EventDie, model.EventDestroy)
		p.CLI("rm", exits)
		expectChanges(t, ch, exits, model.EventDestroy)
		if _, err := a.Inspect(ctx, early); !errors.Is(err, engine.ErrNotFound) {
			t.Errorf("inspect of a removed container: %v, want ErrNotFound", err)
		}
	})
	if _, err := os.Stat(p.Sock); err == nil {
		t.Errorf("a podman service socket appeared at %s", p.Sock)
	}
}
