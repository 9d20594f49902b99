package watch

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/podman"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// nestedPodman is the socket-activated podman in the systemd host; connecting
// to its socket activates it.
func nestedPodman(t *testing.T) (model.Engine, engine.Adapter) {
	t.Helper()
	th := testbed.SystemdHostPID(t)
	e := model.Engine{
		ID: "podman-th-test", Type: model.Podman, PID: th, Prefix: testbed.SystemdHostName(),
		Endpoint: filepath.Join("/proc", strconv.Itoa(th), "root/run/podman/podman.sock"),
	}
	a, err := podman.NewAdapter(e, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return e, a
}

func podmanCLI(t *testing.T, args ...string) string {
	t.Helper()
	return testbed.Run(t, "docker", append([]string{"exec", testbed.SystemdHostName(), "podman"}, args...)...)
}

func TestPodmanLifecycle(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	label := testLabel(t)
	e, a := nestedPodman(t)
	h := startWatcher(t, e, a, label, Options{})
	// Podman 4 sends a stop before its died, after it or not at all,
	// depending on which of its processes (the stop, conmon's cleanup) sees
	// the exit first; the die is what it always sends.
	h.ignore(model.EventStop)
	id := podmanCLI(t, "create", "--network", "none", "--label", "agentd.test="+label, testbed.BusyboxImage, "sleep", "1000")
	t.Cleanup(func() {
		_ = exec.Command("docker", "exec", testbed.SystemdHostName(), "podman", "rm", "-f", "-t", "0", id).Run()
	})

	steps := []struct {
		name  string
		run   []string
		want  []model.EventType
		state model.ContainerState
	}{
		{"create reports create", nil, []model.EventType{model.EventCreate}, model.StateCreated},
		{"start reports start", []string{"start", id}, []model.EventType{model.EventStart}, model.StateRunning},
		{"pause reports pause", []string{"pause", id}, []model.EventType{model.EventPause}, model.StatePaused},
		{"unpause reports unpause", []string{"unpause", id}, []model.EventType{model.EventUnpause}, model.StateRunning},
		{"stop reports die", []string{"stop", "-t", "1", id}, []model.EventType{model.EventDie}, model.StateExited},
		{"start again reports start", []string{"start", id}, []model.EventType{model.EventStart}, model.StateRunning},
		{"kill reports die", []string{"kill", id}, []model.EventType{model.EventDie}, model.StateExited},
		{"rm reports destroy", []string{"rm", id}, []model.EventType{model.EventDestroy}, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			if s.run != nil {
				podmanCLI(t, s.run...)
			}
			evs := h.expect(s.want...)
			if got := h.state("", id); got != s.state {
				t.Errorf("model state %q, want %q", got, s.state)
			}
			for _, ev := range evs {
				switch ev.Type {
				case model.EventStart:
					assertHostPID(t, h.started(id).PID, podmanCLI(t, "inspect", "-f", "{{.State.Pid}}", id))
				case model.EventDie:
					if ev.ExitCode != 137 {
						t.Errorf("die: exit code %d, want 137", ev.ExitCode)
					}
				}
			}
		})
	}
	h.quiet(500 * time.Millisecond)
}

// assertHostPID checks that hostPID is the host view of the process podman
// reports as nsPID in its own namespace.
func assertHostPID(t *testing.T, hostPID int, nsPID string) {
	t.Helper()
	if hostPID <= 0 {
		t.Fatalf("no host pid (podman says %s)", nsPID)
	}
	st, err := readProcStatus("/proc", hostPID)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.NSpid) < 2 || strconv.Itoa(st.NSpid[1]) != nsPID {
		t.Errorf("host pid %d has NSpid %v, podman reports %s", hostPID, st.NSpid, nsPID)
	}
}

func TestPodmanIdleExitAndReactivation(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	label := testLabel(t)
	e, a := nestedPodman(t)
	// A long first backoff leaves time to change containers while podman is down.
	h := startWatcher(t, e, a, label, Options{MinBackoff: 10 * time.Second, MaxBackoff: 10 * time.Second})
	run := func(name string) string {
		return podmanCLI(t, "run", "-d", "--network", "none", "--name", name, "--label", "agentd.test="+label, testbed.BusyboxImage, "sleep", "1000")
	}
	suffix := label[len(label)-8:]
	dies := run("dies-" + suffix)
	removed := run("removed-" + suffix)
	t.Cleanup(func() {
		for _, n := range []string{"dies-", "removed-", "born-"} {
			_ = exec.Command("docker", "exec", testbed.SystemdHostName(), "podman", "rm", "-f", "-t", "0", n+suffix).Run()
		}
	})
	h.expect(model.EventCreate, model.EventStart, model.EventCreate, model.EventStart)

	testbed.Run(t, "docker", "exec", testbed.SystemdHostName(), "systemctl", "stop", "podman.service")
	eventually(t, 30*time.Second, "the watcher notices podman is gone", func() bool { return h.w.Stats().Reconnects >= 1 })
	syncs := h.w.Stats().Syncs
	podmanCLI(t, "kill", dies)
	podmanCLI(t, "rm", "-f", "-t", "0", removed)
	born := run("born-" + suffix)

	h.waitSyncs(syncs + 1)
	// Containers are reconciled in no particular order; per container the order is fixed.
	evs := h.expectN(5)
	byID := map[string][]model.EventType{}
	for _, ev := range evs {
		if !ev.Resync {
			t.Errorf("%s of %s not marked as resync", ev.Type, ev.Container.Name)
		}
		byID[ev.Container.ID] = append(byID[ev.Container.ID], ev.Type)
		if ev.Type != model.EventDie {
			continue
		}
		// The killed container's code is in podman's record; the
		// removed one's is gone with it: unknown, not 0.
		switch id := ev.Container.ID; {
		case id == dies && (ev.ExitUnknown || ev.ExitCode != 137):
			t.Errorf("die of the killed container: exit code %d, unknown %v; want 137", ev.ExitCode, ev.ExitUnknown)
		case id == removed && !ev.ExitUnknown:
			t.Errorf("die of the container removed while podman was down: exit code %d, want unknown", ev.ExitCode)
		}
	}
	want := map[string][]model.EventType{
		dies:    {model.EventDie},
		born:    {model.EventCreate, model.EventStart},
		removed: {model.EventDie, model.EventDestroy},
	}
	if fmt.Sprint(byID) != fmt.Sprint(want) {
		t.Errorf("resync events by container: got %v, want %v", byID, want)
	}
	h.quiet(time.Second)
	if s := h.state("", dies); s != model.StateExited {
		t.Errorf("killed container: model state %q", s)
	}
	if s := h.state("", removed); s != "" {
		t.Errorf("removed container: model state %q", s)
	}
	assertHostPID(t, h.container(born).PID, podmanCLI(t, "inspect", "-f", "{{.State.Pid}}", born))
	if out := testbed.Run(t, "docker", "exec", testbed.SystemdHostName(), "systemctl", "is-active", "podman.service"); out != "active" {
		t.Errorf("podman.service is %q after the watcher reconnected, want active (reactivated)", out)
	}
}
