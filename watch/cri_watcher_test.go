package watch

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/engine/cri"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// criTestPod is a host-network pod sandbox of the test's own with one busybox
// container config; both are removed when the test ends.
type criTestPod struct {
	t      *testing.T
	rt     runtimeapi.RuntimeServiceClient
	label  string
	cfg    *runtimeapi.PodSandboxConfig
	podID  string
	ctrIDs []string
}

// runCRITestPod runs the pod sandbox, labelled agentd.test=label.
func runCRITestPod(ctx context.Context, t *testing.T, rt runtimeapi.RuntimeServiceClient, label string) *criTestPod {
	t.Helper()
	r := enginetest.Random(t)
	p := &criTestPod{t: t, rt: rt, label: label, cfg: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "agentd-test-" + r, Uid: "uid-" + r, Namespace: "agentd-test"},
		LogDirectory: t.TempDir(),
		Labels:       map[string]string{"agentd.test": label},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, id := range p.ctrIDs {
			_, _ = rt.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
		}
		if p.podID == "" {
			return
		}
		_, _ = rt.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.podID})
		if _, err := rt.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.podID}); err != nil && status.Code(err) != codes.NotFound {
			t.Errorf("remove pod sandbox %s: %v", p.podID, err)
		}
	})
	resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: p.cfg})
	if err != nil {
		t.Fatal(err)
	}
	p.podID = resp.GetPodSandboxId()
	return p
}

// create creates a busybox container named name running sleep in the pod.
func (p *criTestPod) create(ctx context.Context, t *testing.T, name string) string {
	t.Helper()
	resp, err := p.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
		PodSandboxId: p.podID,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: testbed.BusyboxImage},
			Command:  []string{"/bin/sleep", "1000"},
			Labels:   map[string]string{"agentd.test": p.label},
			LogPath:  name + ".log",
		},
		SandboxConfig: p.cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	p.ctrIDs = append(p.ctrIDs, resp.GetContainerId())
	return resp.GetContainerId()
}

// remove stops and removes the pod sandbox.
func (p *criTestPod) remove(ctx context.Context, t *testing.T) {
	t.Helper()
	if _, err := p.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := p.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.podID}); err != nil {
		t.Fatal(err)
	}
}

// criEndpointWithBusybox returns the CRI endpoint the lifecycle tests use
// (the host containerd when its CRI plugin can run pod sandboxes) with
// local/busybox imported into k8s.io, and a client of it.
func criEndpointWithBusybox(t *testing.T) (string, runtimeapi.RuntimeServiceClient) {
	t.Helper()
	endpoint := enginetest.CRILifecycleEndpoint(t)
	t.Logf("CRI endpoint: %s", endpoint)
	rt, _ := enginetest.CRIClient(t, endpoint)
	enginetest.ImportBusybox(t, endpoint, "k8s.io")
	return endpoint, rt
}

// criWatcherTest is the set-up of a CRI watcher test: a context of three
// minutes, the runtime's client, the test's label and an engine whose ID
// starts with prefix.
func criWatcherTest(t *testing.T, prefix string) (context.Context, runtimeapi.RuntimeServiceClient, string, model.Engine) {
	t.Helper()
	testbed.Require(t, testbed.CRI, testbed.Docker)
	enginetest.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	endpoint, rt := criEndpointWithBusybox(t)
	return ctx, rt, testLabel(t), model.Engine{ID: prefix + enginetest.Random(t), Type: model.CRI, Endpoint: endpoint}
}

func newCRIAdapter(t *testing.T, e model.Engine) *cri.Adapter {
	t.Helper()
	a, err := cri.New(e, testLogger(t), cri.WithPollInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestCRIWatcherLifecycle drives a CRI container through its life in a
// host-network pod sandbox and checks the exact events the Watcher emits and
// the Store's state after every step; the pod sandbox (labelled like the
// container) never shows as a container.
func TestCRIWatcherLifecycle(t *testing.T) {
	ctx, rt, label, e := criWatcherTest(t, "cri-watcher-")
	a := newCRIAdapter(t, e)
	h := startWatcher(t, e, a, label, Options{})
	t.Logf("event source: %s", a.EventSource())

	pod := runCRITestPod(ctx, t, rt, label)
	var ctrID string
	type want struct {
		gone  bool
		state model.ContainerState
		pid   bool
		exit  int
	}
	steps := []struct {
		name   string
		do     func(t *testing.T)
		events []model.EventType
		want   want
	}{
		{"the running pod sandbox emits nothing", func(*testing.T) {}, nil, want{gone: true}},
		{"creating the container emits create", func(t *testing.T) { ctrID = pod.create(ctx, t, "app") },
			[]model.EventType{model.EventCreate}, want{state: model.StateCreated}},
		{"starting emits start with the container's PID", func(t *testing.T) {
			if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
				t.Fatal(err)
			}
		}, []model.EventType{model.EventStart}, want{state: model.StateRunning, pid: true}},
		{"stopping emits die with exit code 137", func(t *testing.T) {
			if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 0}); err != nil {
				t.Fatal(err)
			}
		}, []model.EventType{model.EventDie}, want{state: model.StateExited, exit: 137}},
		{"removing emits destroy", func(t *testing.T) {
			if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
				t.Fatal(err)
			}
		}, []model.EventType{model.EventDestroy}, want{gone: true}},
		{"stopping and removing the pod sandbox emits nothing", func(t *testing.T) { pod.remove(ctx, t) },
			nil, want{gone: true}},
	}
	var startPID int
	for _, step := range steps {
		ok := t.Run(step.name, func(t *testing.T) {
			step.do(t)
			h.t = t
			evs := h.expect(step.events...)
			if len(step.events) == 0 {
				h.quiet(time.Second) // ten polls
			}
			for _, ev := range evs {
				c := ev.Container
				if ev.Resync || ev.EngineID != e.ID || c.EngineID != e.ID || c.Namespace != "" || c.ID != ctrID {
					t.Errorf("%s: resync %v engine %q container %s/%q/%s", ev.Type, ev.Resync, ev.EngineID, c.EngineID, c.Namespace, c.ID)
				}
				if ev.Time.IsZero() || time.Since(ev.Time) > time.Minute {
					t.Errorf("%s: time %s", ev.Type, ev.Time)
				}
				switch ev.Type {
				case model.EventStart:
					// Reported from the event; the PID follows.
					startPID = h.startedIn("", ctrID).PID
				case model.EventDie:
					if ev.ExitCode != 137 || ev.Signal != "SIGKILL" || c.ExitCode != 137 || c.State != model.StateExited || c.PID != 0 {
						t.Errorf("die: exit %d signal %q, container exit %d state %s pid %d; want 137 SIGKILL exited 0",
							ev.ExitCode, ev.Signal, c.ExitCode, c.State, c.PID)
					}
				}
			}
			// The pod sandbox is never a container, in the Store or the Snapshot.
			for _, c := range h.store.EngineContainers(e.ID) {
				if c.ID == pod.podID {
					t.Fatalf("pod sandbox %s stored as a container: %+v", pod.podID, c)
				}
			}
			wantIDs := []string{ctrID}
			if step.want.gone {
				wantIDs = nil
			}
			if got := h.labelled(); !slices.Equal(got, wantIDs) {
				t.Fatalf("the Store's containers with the test's label: %v, want %v", got, wantIDs)
			}
			key := model.ContainerKey{EngineID: e.ID, ID: ctrID}
			c, inStore := h.store.Container(key)
			sc, inSnap := snapshotContainer(h.store, key)
			if step.want.gone {
				if inStore || inSnap {
					t.Fatalf("container in the Store (%v) or the Snapshot (%v): %+v", inStore, inSnap, c)
				}
				return
			}
			if !inStore || !inSnap || fmt.Sprint(c) != fmt.Sprint(sc) {
				t.Fatalf("Store %v %+v, Snapshot %v %+v; want the same container in both", inStore, c, inSnap, sc)
			}
			if c.State != step.want.state || c.ExitCode != step.want.exit {
				t.Fatalf("state %s exit %d, want %s exit %d", c.State, c.ExitCode, step.want.state, step.want.exit)
			}
			if c.Name != "app" || c.Labels["io.kubernetes.pod.name"] != pod.cfg.GetMetadata().GetName() || c.ImageName != "docker.io/local/busybox" {
				t.Fatalf("identity: %+v", c)
			}
			if step.want.pid {
				if c.PID <= 0 || c.PID != startPID {
					t.Fatalf("pid %d, start event said %d", c.PID, startPID)
				}
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.PID)); err != nil {
					t.Fatalf("pid %d is not a host process: %v", c.PID, err)
				}
			} else if c.PID != 0 {
				t.Fatalf("pid %d for a %s container", c.PID, c.State)
			}
			if c.State == model.StateExited && c.FinishedAt.IsZero() {
				t.Fatal("exited container without exit time")
			}
		})
		if !ok {
			return
		}
	}
	h.t = t
	h.quiet(500 * time.Millisecond)
	if st := h.w.Stats(); st.Malformed != 0 || st.Reconnects != 0 {
		t.Errorf("stats %+v: want no malformed event and no reconnect", st)
	}
}

// TestDedupCRIAndContainerd watches one containerd both natively and through
// its CRI plugin into one Store (engines with the same Prefix ""): a CRI
// container, which containerd lists in namespace k8s.io, must appear once,
// under the CRI engine, and the pod sandbox not at all.
func TestDedupCRIAndContainerd(t *testing.T) {
	testbed.Require(t, testbed.CRI, testbed.Docker)
	enginetest.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	endpoint, rt := criEndpointWithBusybox(t)
	label := testLabel(t)
	r := enginetest.Random(t)
	ce := model.Engine{ID: "containerd-dedup-" + r, Type: model.Containerd, Endpoint: endpoint}
	cre := model.Engine{ID: "cri-dedup-" + r, Type: model.CRI, Endpoint: endpoint}
	h, _ := startSharedWatchers(t, label, func(ev model.Event) bool { return ev.Container.Labels["agentd.test"] == label }, Options{},
		watchedEngine{ce, newContainerdAdapter(t, ce)}, watchedEngine{cre, newCRIAdapter(t, cre)})

	pod := runCRITestPod(ctx, t, rt, label)
	ctrID := pod.create(ctx, t, "app")
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}
	criKey := model.ContainerKey{EngineID: cre.ID, ID: ctrID}
	ctrdKey := model.ContainerKey{EngineID: ce.ID, Namespace: model.NamespaceK8s, ID: ctrID}
	sandboxKey := model.ContainerKey{EngineID: ce.ID, Namespace: model.NamespaceK8s, ID: pod.podID}
	eventually(t, 30*time.Second, "both watchers have the running container and containerd the sandbox", func() bool {
		a, okA := h.store.Container(criKey)
		b, okB := h.store.Container(ctrdKey)
		_, okS := h.store.Container(sandboxKey)
		// A start is reported from its event; the PID follows.
		return okA && okB && okS && a.State == model.StateRunning && b.State == model.StateRunning && a.PID > 0 && b.PID > 0
	})
	t.Run("a running CRI container is in the Snapshot once, under CRI, and its sandbox not at all", func(t *testing.T) {
		got := snapshotCopies(h.store, ctrID)
		if len(got) != 1 || got[0].EngineID != cre.ID || got[0].Namespace != "" {
			t.Fatalf("Snapshot entries for the container: %+v; want one from %s", got, cre.ID)
		}
		if got := snapshotCopies(h.store, pod.podID); len(got) != 0 {
			t.Fatalf("Snapshot shows the pod sandbox: %+v", got)
		}
		a, _ := h.store.Container(criKey)
		b, _ := h.store.Container(ctrdKey)
		if a.PID != b.PID || a.PID <= 0 {
			t.Fatalf("pid: CRI %d, containerd %d; want the same host PID", a.PID, b.PID)
		}
	})

	if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}
	pod.remove(ctx, t)
	eventually(t, 30*time.Second, "both watchers forget the container and the sandbox", func() bool {
		_, okA := h.store.Container(criKey)
		_, okB := h.store.Container(ctrdKey)
		_, okS := h.store.Container(sandboxKey)
		return !okA && !okB && !okS
	})
	time.Sleep(time.Second) // late events, if any
	t.Run("only the CRI engine's events are emitted", func(t *testing.T) {
		if got := snapshotCopies(h.store, ctrID); len(got) != 0 {
			t.Fatalf("removed container still in the Snapshot: %+v", got)
		}
		if evs := h.recorded(pod.podID); len(evs) != 0 {
			t.Errorf("events for the pod sandbox: %v", describe(evs))
		}
		var fromCRI []model.EventType
		for _, ev := range h.recorded(ctrID) {
			if ev.EngineID != cre.ID || ev.Container.EngineID != cre.ID {
				t.Errorf("event %s from engine %s (container %s/%s)", ev.Type, ev.EngineID, ev.Container.EngineID, ev.Container.Namespace)
				continue
			}
			fromCRI = append(fromCRI, ev.Type)
		}
		want := []model.EventType{model.EventCreate, model.EventStart, model.EventDie, model.EventDestroy}
		if !slices.Equal(fromCRI, want) {
			t.Errorf("CRI events %v, want %v", fromCRI, want)
		}
	})
}

// TestCRIPollingFollowsContainerdEvents: a polling CRI stream (forced here,
// whatever the runtime implements) on containerd lists when containerd
// publishes an event, so a container's whole life shows within a second or
// two although the poll interval is an hour.
func TestCRIPollingFollowsContainerdEvents(t *testing.T) {
	ctx, rt, label, e := criWatcherTest(t, "cri-trigger-")
	a, err := cri.New(e, testLogger(t), cri.WithPollInterval(time.Hour), cri.WithPolling())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	h := startWatcher(t, e, a, label, Options{})
	pod := runCRITestPod(ctx, t, rt, label)
	var ctrID string
	steps := []struct {
		name string
		do   func(t *testing.T)
		want model.EventType
	}{
		{"create", func(t *testing.T) { ctrID = pod.create(ctx, t, "app") }, model.EventCreate},
		{"start", func(t *testing.T) {
			if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
				t.Fatal(err)
			}
		}, model.EventStart},
		{"die", func(t *testing.T) {
			if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 0}); err != nil {
				t.Fatal(err)
			}
		}, model.EventDie},
		{"destroy", func(t *testing.T) {
			if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
				t.Fatal(err)
			}
		}, model.EventDestroy},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			h.t = t
			start := time.Now()
			step.do(t)
			h.expect(step.want)
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("%s arrived after %s, want it within seconds of containerd's event", step.want, d)
			} else {
				t.Logf("%s after %s", step.want, d.Round(time.Millisecond))
			}
		})
	}
	pod.remove(ctx, t)
	h.t = t
	if st := h.w.Stats(); st.Reconnects != 0 {
		t.Errorf("stats %+v: want no reconnect", st)
	}
}
