package discovery

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/model"
)

// place is where an engine sits: Prefix, ParentContainerID, ParentEngineID.
type place struct{ prefix, container, engine string }

func TestResolveHierarchy(t *testing.T) {
	// The host's process table (PID -> PPID): a host dockerd (100) and
	// containerd (90); th's shim (200) and init (201), podman in th (250);
	// inner's conmon (500) and init (501), a dockerd in inner (502); and two
	// processes (600, 601) that are each other's parent.
	ppids := map[int]int{1: 0, 90: 1, 100: 1, 200: 1, 201: 200, 250: 201, 500: 201, 501: 500, 502: 501, 600: 601, 601: 600}
	hostDocker := model.Engine{ID: "h-docker", Type: model.Docker, PID: 100}
	hostContainerd := model.Engine{ID: "a-containerd", Type: model.Containerd, PID: 90}
	pm := model.Engine{ID: "podman", Type: model.Podman, PID: 250}
	innerDocker := model.Engine{ID: "inner-docker", Type: model.Docker, PID: 502}
	th := running("c-th", "th", 201)

	tests := []struct {
		name       string
		engines    []model.Engine
		containers map[string][]model.Container
		want       map[string]place // engines left out are on the host
	}{
		{
			name:       "engines whose ancestors are no container's init are on the host",
			engines:    []model.Engine{hostDocker, hostContainerd},
			containers: map[string][]model.Container{"h-docker": {th}},
		},
		{
			name:       "an engine below a container's init is in that container",
			engines:    []model.Engine{hostDocker, pm},
			containers: map[string][]model.Container{"h-docker": {running("c-other", "other", 300), th}},
			want:       map[string]place{"podman": {"th", "c-th", "h-docker"}},
		},
		{
			name:       "an engine that is a container's init is in that container",
			engines:    []model.Engine{hostDocker, {ID: "dind", Type: model.Docker, PID: 201}},
			containers: map[string][]model.Container{"h-docker": {th}},
			want:       map[string]place{"dind": {"th", "c-th", "h-docker"}},
		},
		{
			name:    "nested engines take the innermost container and join names from the host down",
			engines: []model.Engine{innerDocker, pm, hostDocker},
			containers: map[string][]model.Container{
				"h-docker": {th},
				"podman":   {running("c-inner", "inner", 501)},
			},
			want: map[string]place{
				"podman":       {"th", "c-th", "h-docker"},
				"inner-docker": {"th/inner", "c-inner", "podman"},
			},
		},
		{
			name:    "Docker wins a tie with containerd, which reports Docker's containers too",
			engines: []model.Engine{hostContainerd, pm, hostDocker},
			containers: map[string][]model.Container{
				"a-containerd": {{ID: "c-th", Name: "c-th", Namespace: "moby", PID: 201, State: model.StateRunning}},
				"h-docker":     {th},
			},
			want: map[string]place{"podman": {"th", "c-th", "h-docker"}},
		},
		{
			name:    "containerd places what no other engine reports",
			engines: []model.Engine{hostContainerd, pm, hostDocker},
			containers: map[string][]model.Container{
				"a-containerd": {{ID: "task", Name: "task", Namespace: "default", PID: 201, State: model.StateRunning}},
			},
			want: map[string]place{"podman": {"task", "task", "a-containerd"}},
		},
		{
			name:    "a stopped or paused container is told apart by its state",
			engines: []model.Engine{hostDocker, pm, innerDocker},
			containers: map[string][]model.Container{
				"h-docker": {{ID: "c-th", Name: "th", PID: 201, State: model.StateExited}},
				"podman":   {{ID: "c-inner", Name: "inner", PID: 501, State: model.StatePaused}},
			},
			want: map[string]place{"inner-docker": {"inner", "c-inner", "podman"}},
		},
		{
			name:    "an engine is never placed in a container of its own; the walk goes on outward",
			engines: []model.Engine{hostDocker, pm},
			containers: map[string][]model.Container{
				"podman":   {running("c-own", "own", 201)},
				"h-docker": {running("c-shim", "shim", 200)},
			},
			want: map[string]place{"podman": {"shim", "c-shim", "h-docker"}},
		},
		{
			name:       "an engine without a process is on the host",
			engines:    []model.Engine{hostDocker, {ID: "gone", Type: model.Podman}},
			containers: map[string][]model.Container{"h-docker": {running("c-init", "init", 1)}},
			want:       map[string]place{},
		},
		{
			name:       "a loop in the process table ends the walk",
			engines:    []model.Engine{hostDocker, {ID: "looped", Type: model.Podman, PID: 600}},
			containers: map[string][]model.Container{"h-docker": {th}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fm := &fakeModel{}
			for id, cs := range tt.containers {
				fm.set(id, cs...)
			}
			locate := func(e model.Engine) int { return e.PID }
			parent := func(pid int) (int, bool) {
				ppid, ok := ppids[pid]
				return ppid, ok
			}
			es := make(map[string]*model.Engine, len(tt.engines))
			for _, e := range tt.engines {
				// A stale placement must not survive.
				e.Prefix, e.ParentContainerID, e.ParentEngineID = "stale", "stale", "stale"
				es[e.ID] = &e
			}
			applyHierarchy(es, new(hierarchyScratch).resolve(tt.engines, locate, parent, fm))
			for id, e := range es {
				got := place{e.Prefix, e.ParentContainerID, e.ParentEngineID}
				if got != tt.want[id] {
					t.Errorf("engine %s placed at %+v, want %+v", id, got, tt.want[id])
				}
			}
		})
	}
}

func TestHierarchyFollowsTheModel(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	fm := &fakeModel{}
	fe := newFakeEngines()
	d, _, _ := newFakeDiscoverer(t, root, fe, fm)
	sub := d.Subscribe()
	defer sub.Close()
	ctx := context.Background()

	es, err := d.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("before the watchers list anything every engine is on the host", func(t *testing.T) {
		if len(es) != 3 {
			t.Fatalf("found %d engines, want 3: %+v", len(es), es)
		}
		for _, e := range es {
			if e.Prefix != "" || e.ParentContainerID != "" || e.ParentEngineID != "" {
				t.Errorf("engine %s placed at (%q, %q, %q) by an empty model", e.ID, e.Prefix, e.ParentContainerID, e.ParentEngineID)
			}
		}
	})
	for range es {
		nextChange(t, sub)
	}
	probes := fe.calls()
	t.Run("the next pass moves engines into the containers the model learnt, without probing", func(t *testing.T) {
		nested := nestedModel(root)
		for id, cs := range nested.byEngine {
			fm.set(id, cs...)
		}
		if _, err := d.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if fe.calls() != probes {
			t.Fatalf("probed %d times", fe.calls()-probes)
		}
		wantNestedPlaced(t, sub, root)
		if len(sub.C()) != 0 {
			t.Fatalf("%d more changes, want none (the host Docker did not move)", len(sub.C()))
		}
	})
	t.Run("a pass that changes nothing publishes nothing", func(t *testing.T) {
		if _, err := d.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if len(sub.C()) != 0 {
			t.Fatalf("%d changes, want none", len(sub.C()))
		}
	})
	hostDocker := "docker:" + filepath.Join(root, "1/root/run/docker.sock")
	t.Run("a parent whose containers the model lost (its watcher relists) keeps its nested engines in place", func(t *testing.T) {
		saved := fm.engineContainers(hostDocker)
		fm.set(hostDocker)
		if _, err := d.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if len(sub.C()) != 0 {
			t.Fatalf("%d changes (%+v), want none: the placements stand", len(sub.C()), nextChange(t, sub))
		}
		fm.set(hostDocker, saved...)
	})
	t.Run("a parent that lists without the enclosing container moves its nested engines out", func(t *testing.T) {
		fm.set(hostDocker, model.Container{ID: "other", Name: "other", PID: 999, State: model.StateRunning})
		if _, err := d.Scan(ctx); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for len(sub.C()) > 0 {
			c := nextChange(t, sub)
			got[c.Engine.ID] = c.Engine.Prefix
		}
		if p, ok := got["podman:"+filepath.Join(root, "201/root/run/podman/podman.sock")]; !ok || p != "" {
			t.Fatalf("changes %v: want podman moved to the host", got)
		}
	})
}

// TestDockerWinsATieWithContainerd runs the nested tree with a host
// containerd that, as the real one does, reports Docker's containers (its
// moby namespace) under their IDs: th must still be named as Docker names it.
func TestDockerWinsATieWithContainerd(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	writeFakeProc(t, root, []fakeProc{{pid: 150, ppid: 1, comm: "containerd", start: 15, cmdline: []string{"containerd"},
		fds: map[int]string{3: "socket:[41]"}, netUnix: unixRow(41, "/run/containerd/containerd.sock")}})
	ctrd := filepath.Join(root, "1/root/run/containerd/containerd.sock")
	must(t, os.MkdirAll(filepath.Dir(ctrd), 0o755))
	must(t, mknodSocket(ctrd))
	fm := nestedModel(root)
	// containerd's ID sorts before Docker's: only the family rank lets Docker win.
	fm.set("containerd:"+ctrd, model.Container{ID: "c-th", Name: "c-th", Namespace: "moby", PID: 201, State: model.StateRunning})
	fe := newFakeEngines()
	d, _, _ := newFakeDiscoverer(t, root, fe, fm)
	es, err := d.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]model.Engine{}
	for _, e := range es {
		byID[e.ID] = e
	}
	t.Run("containerd's socket is asked by the containerd and the cri family, and both answer", func(t *testing.T) {
		for _, id := range []string{"containerd:" + ctrd, "cri:" + ctrd} {
			e, ok := byID[id]
			if !ok {
				t.Fatalf("no engine %s in %+v", id, es)
			}
			if e.PID != 150 || e.Prefix != "" {
				t.Errorf("engine %s: PID %d, prefix %q; want 150 on the host", id, e.PID, e.Prefix)
			}
		}
		fe.mu.Lock()
		defer fe.mu.Unlock()
		if n := fe.probes[ctrd]; n != 2 {
			t.Errorf("containerd's socket probed %d times, want once per family", n)
		}
	})
	t.Run("the podman in th is placed by Docker", func(t *testing.T) {
		pm := byID["podman:"+filepath.Join(root, "201/root/run/podman/podman.sock")]
		hostDocker := "docker:" + filepath.Join(root, "1/root/run/docker.sock")
		if got, want := (place{pm.Prefix, pm.ParentContainerID, pm.ParentEngineID}), (place{"th", "c-th", hostDocker}); got != want {
			t.Fatalf("podman placed at %+v, want %+v", got, want)
		}
	})
}

// TestRelocatePlacesEnginesWhenTheModelLearns: an engine found before the
// watcher of the engine around it listed is on the host until Relocate, which
// a listing calls, places it without a scan (the next one may be minutes
// away) and without probing.
func TestRelocatePlacesEnginesWhenTheModelLearns(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	fm := &fakeModel{}
	fe := newFakeEngines()
	d, err := New(Config{ProcRoot: root, RetryBackoff: time.Minute, Interval: time.Hour}, fe.families(), fm, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sub := d.Subscribe()
	defer sub.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	for range 3 {
		if c := nextChange(t, sub); c.Kind != EngineFound || c.Engine.Prefix != "" {
			t.Fatalf("change %+v, want an engine found on the host", c)
		}
	}
	probes := fe.calls()

	for id, cs := range nestedModel(root).byEngine {
		fm.set(id, cs...)
	}
	d.Relocate()
	wantNestedPlaced(t, sub, root)
	if fe.calls() != probes {
		t.Errorf("Relocate probed %d times", fe.calls()-probes)
	}
	d.Relocate() // nothing moved since: nothing to say
	time.Sleep(50 * time.Millisecond)
	if n := len(sub.C()); n != 0 {
		t.Errorf("%d changes after a Relocate that moved nothing", n)
	}
}

// wantNestedPlaced expects the next two changes to place the nested tree's
// podman in th and its inner Docker in th/inner.
func wantNestedPlaced(t *testing.T, sub *Subscription, root string) {
	t.Helper()
	got := map[string]string{}
	for range 2 {
		c := nextChange(t, sub)
		if c.Kind != EngineUpdated {
			t.Fatalf("change %+v, want updated", c)
		}
		got[c.Engine.ID] = c.Engine.Prefix
	}
	want := map[string]string{
		"podman:" + filepath.Join(root, "201/root/run/podman/podman.sock"): "th",
		"docker:" + filepath.Join(root, "501/root/run/docker.sock"):        "th/inner",
	}
	for id, p := range want {
		if got[id] != p {
			t.Errorf("engine %s updated to prefix %q, want %q", id, got[id], p)
		}
	}
}
