package watch

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/model"
)

// fakeProc writes a procfs tree: pid → (ppid, NSpid chain, pid namespace).
func fakeProc(t *testing.T, procs map[int]struct {
	ppid  int
	nspid []int
	ns    string
}) string {
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		line := "NSpid:"
		for _, n := range p.nspid {
			line += "\t" + strconv.Itoa(n)
		}
		status := "Name:\tx\nPid:\t" + strconv.Itoa(pid) + "\nPPid:\t" + strconv.Itoa(p.ppid) + "\n" + line + "\n"
		if err := os.WriteFile(filepath.Join(dir, "status"), []byte(status), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("pid:["+p.ns+"]", filepath.Join(dir, "ns", "pid")); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestHostPID(t *testing.T) {
	type proc = struct {
		ppid  int
		nspid []int
		ns    string
	}
	// Two systemd hosts (100, 200) with a nested engine each; both engines run
	// a container whose init is PID 57 in the engine's namespace.
	root := fakeProc(t, map[int]proc{
		1:   {0, []int{1}, "host"},
		101: {1, []int{101, 1}, "th1"},
		102: {101, []int{102, 40}, "th1"},         // podman in th1
		110: {102, []int{110, 56}, "th1"},         // conmon in th1
		111: {110, []int{111, 57, 1}, "c1"},       // container in th1: engine PID 57
		201: {1, []int{201, 1}, "th2"},            // second systemd host
		202: {201, []int{202, 30}, "th2"},         // conmon in th2
		211: {202, []int{211, 57, 1}, "c2"},       // container in th2, engine PID 57 too
		300: {1, []int{300, 90, 57, 1}, "deeper"}, // level-3 process, not a match (its level-2 PID is 90)
	})
	tests := []struct {
		name        string
		anchor, pid int
		want        int
		wantErr     bool
	}{
		{"an engine in the host namespace reports host PIDs", 1, 4242, 4242, false},
		{"no anchor means no translation", 0, 4242, 4242, false},
		{"a nested engine's PID maps to the process in its own namespace", 102, 57, 111, false},
		{"the sibling namespace's PID 57 maps to its own process", 202, 57, 211, false},
		{"a PID nobody has is an error", 102, 999, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hostPID(root, tt.anchor, tt.pid)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
		})
	}
}

func TestNSAnchor(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "812"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := nsAnchor(root, 812, "/run/docker.sock"); got != 812 {
		t.Errorf("a live engine PID anchors: got %d", got)
	}
	if got := nsAnchor(root, 999, "/proc/77/root/run/podman/podman.sock"); got != 77 {
		t.Errorf("a dead engine PID falls back to the endpoint's process: got %d", got)
	}
	if got := nsAnchor(root, 0, "/run/docker.sock"); got != 0 {
		t.Errorf("a host engine without PID has no anchor: got %d", got)
	}
}

func TestTransitions(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	base := model.Container{ID: "a", CreatedAt: t0}
	with := func(s model.ContainerState, started, finished time.Time, exit int) model.Container {
		c := base
		c.State, c.StartedAt, c.FinishedAt, c.ExitCode = s, started, finished, exit
		return c
	}
	zero := time.Time{}
	tests := []struct {
		name string
		old  model.Container
		had  bool
		cur  model.Container
		want []model.EventType
	}{
		{"a running container that died gets one die", with(model.StateRunning, t0, zero, 0), true, with(model.StateExited, t0, t0.Add(time.Second), 137), []model.EventType{model.EventDie}},
		{"a created container that started gets one start", with(model.StateCreated, zero, zero, 0), true, with(model.StateRunning, t0, zero, 0), []model.EventType{model.EventStart}},
		{"an unchanged container gets nothing", with(model.StateRunning, t0, zero, 0), true, with(model.StateRunning, t0, zero, 0), nil},
		{"an exited container that ran again gets start and die", with(model.StateExited, t0, t0.Add(time.Second), 0), true, with(model.StateExited, t0.Add(time.Minute), t0.Add(2*time.Minute), 1), []model.EventType{model.EventStart, model.EventDie}},
		{"a new running container gets create and start", model.Container{}, false, with(model.StateRunning, t0, zero, 0), []model.EventType{model.EventCreate, model.EventStart}},
		{"a running container that was paused gets pause", with(model.StateRunning, t0, zero, 0), true, with(model.StatePaused, t0, zero, 0), []model.EventType{model.EventPause}},
		{"a restarted container gets die and start", with(model.StateRunning, t0, zero, 0), true, with(model.StateRunning, t0.Add(time.Minute), zero, 0), []model.EventType{model.EventDie, model.EventStart}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := types(transitions(tt.old, tt.had, tt.cur))
			if len(got) != len(tt.want) || (len(got) > 0 && fmtTypes(got) != fmtTypes(tt.want)) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func fmtTypes(ts []model.EventType) string {
	s := ""
	for _, t := range ts {
		s += string(t) + ","
	}
	return s
}
