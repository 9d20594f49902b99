package cri

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

func TestDecodeCRIEvent(t *testing.T) {
	created := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	finished := created.Add(time.Second)
	tests := []struct {
		name    string
		ev      *runtimeapi.ContainerEventResponse
		want    engine.Change
		wantErr error
	}{
		{name: "a created event becomes create",
			ev:   &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, CreatedAt: created.UnixNano()},
			want: engine.Change{Type: model.EventCreate, ContainerID: "c1", Time: created}},
		{name: "a started event becomes start",
			ev:   &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, CreatedAt: created.UnixNano()},
			want: engine.Change{Type: model.EventStart, ContainerID: "c1", Time: created}},
		{name: "a stopped event becomes die with the exit code and time of the status",
			ev: &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, CreatedAt: created.UnixNano(),
				ContainersStatuses: []*runtimeapi.ContainerStatus{
					{Id: "other", State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 1},
					{Id: "c1", State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 137, FinishedAt: finished.UnixNano()},
				}},
			want: engine.Change{Type: model.EventDie, ContainerID: "c1", Time: finished, ExitCode: enginetest.IntPtr(137)}},
		{name: "a stopped event without status becomes die without exit code",
			ev:   &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, CreatedAt: created.UnixNano()},
			want: engine.Change{Type: model.EventDie, ContainerID: "c1", Time: created}},
		{name: "a deleted event becomes destroy",
			ev:   &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT, CreatedAt: created.UnixNano()},
			want: engine.Change{Type: model.EventDestroy, ContainerID: "c1", Time: created}},
		{name: "a pod sandbox event is ignored",
			ev: &runtimeapi.ContainerEventResponse{ContainerId: "sb", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
				PodSandboxStatus: &runtimeapi.PodSandboxStatus{Id: "sb"}},
			wantErr: engine.ErrIgnored},
		{name: "a container event with its pod's status is kept",
			ev: &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT, CreatedAt: created.UnixNano(),
				PodSandboxStatus: &runtimeapi.PodSandboxStatus{Id: "sb"}},
			want: engine.Change{Type: model.EventStart, ContainerID: "c1", Time: created}},
		{name: "a missing container ID is malformed",
			ev: &runtimeapi.ContainerEventResponse{ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT}, wantErr: engine.ErrMalformed},
		{name: "an unknown event type is malformed",
			ev: &runtimeapi.ContainerEventResponse{ContainerId: "c1", ContainerEventType: 42}, wantErr: engine.ErrMalformed},
		{name: "a nil event is malformed", ev: nil, wantErr: engine.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeCRIEvent(tt.ev)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %s, %v; want error %v", enginetest.FmtChange(got), err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			enginetest.AssertChange(t, got, tt.want)
		})
	}
}

func FuzzDecodeCRIEvent(f *testing.F) {
	for _, ev := range []*runtimeapi.ContainerEventResponse{
		{ContainerId: "c1", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, CreatedAt: 1,
			ContainersStatuses: []*runtimeapi.ContainerStatus{{Id: "c1", State: runtimeapi.ContainerState_CONTAINER_EXITED, ExitCode: 2}}},
		{ContainerId: "sb", PodSandboxStatus: &runtimeapi.PodSandboxStatus{Id: "sb"}},
	} {
		b, err := proto.Marshal(ev)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev runtimeapi.ContainerEventResponse
		if err := proto.Unmarshal(b, &ev); err != nil {
			return // gRPC would have refused the message
		}
		ch, err := decodeCRIEvent(&ev)
		if err != nil {
			if !errors.Is(err, engine.ErrMalformed) && !errors.Is(err, engine.ErrIgnored) {
				t.Fatalf("error %v is neither malformed nor ignored", err)
			}
			return
		}
		if ch.ContainerID == "" || ch.Type == "" {
			t.Fatalf("decoded an incomplete change %s", enginetest.FmtChange(ch))
		}
	})
}

func FuzzCRIVerboseInfo(f *testing.F) {
	f.Add(`{"pid":42,"runtimeSpec":{"linux":{"cgroupsPath":"kubepods.slice:cri-containerd:abc"}}}`)
	f.Add(`{"pid":-1}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, info string) {
		pid, _ := criVerboseInfo(map[string]string{"info": info})
		if pid < 0 {
			t.Fatalf("negative pid %d", pid)
		}
	})
}

func TestCRIVerboseInfo(t *testing.T) {
	tests := []struct {
		name       string
		info       map[string]string
		wantPID    int
		wantCgroup string
	}{
		{"no info gives nothing", nil, 0, ""},
		{"containerd's info gives pid and cgroup",
			map[string]string{"info": `{"sandboxID":"s","pid":4242,"runtimeSpec":{"linux":{"cgroupsPath":"/k8s.io/abc"}}}`}, 4242, "/k8s.io/abc"},
		{"a systemd cgroup path is expanded",
			map[string]string{"info": `{"pid":1,"runtimeSpec":{"linux":{"cgroupsPath":"kubepods-besteffort.slice:cri-containerd:abc"}}}`}, 1,
			"/kubepods.slice/kubepods-besteffort.slice/cri-containerd-abc.scope"},
		{"undecodable info gives nothing", map[string]string{"info": `{"pid":"x"`}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid, cg := criVerboseInfo(tt.info)
			if pid != tt.wantPID || cg != tt.wantCgroup {
				t.Fatalf("got %d %q, want %d %q", pid, cg, tt.wantPID, tt.wantCgroup)
			}
		})
	}
}

func TestCRIImage(t *testing.T) {
	tests := []struct {
		name, image, ref, id string
		wantName             string
		wantTags             []string
		wantID               string
	}{
		{"a tagged image with an image ID ref", "docker.io/local/busybox:latest", "sha256:abc", "", "docker.io/local/busybox", []string{"latest"}, "sha256:abc"},
		{"an image ID with a repo digest ref", "sha256:abc", "registry.k8s.io/pause@sha256:def", "", "registry.k8s.io/pause", nil, "sha256:def"},
		{"an explicit image ID wins", "busybox:1", "busybox@sha256:def", "sha256:abc", "busybox", []string{"1"}, "sha256:abc"},
		{"nothing but an image ID", "sha256:abc", "", "", "sha256:abc", nil, "sha256:abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, tags, id := criImage(tt.image, tt.ref, tt.id)
			if n != tt.wantName || fmt.Sprint(tags) != fmt.Sprint(tt.wantTags) || id != tt.wantID {
				t.Fatalf("got %q %q %q, want %q %q %q", n, tags, id, tt.wantName, tt.wantTags, tt.wantID)
			}
		})
	}
}

func TestCRIDiff(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	ns := func(d time.Duration) int64 { return now.Add(d).UnixNano() }
	created, running, exited := runtimeapi.ContainerState_CONTAINER_CREATED, runtimeapi.ContainerState_CONTAINER_RUNNING, runtimeapi.ContainerState_CONTAINER_EXITED
	exitedStatus := &runtimeapi.ContainerStatus{State: exited, CreatedAt: ns(-3 * time.Second), StartedAt: ns(-2 * time.Second), FinishedAt: ns(-time.Second), ExitCode: 3}
	tests := []struct {
		name string
		prev criSeen
		had  bool
		cur  criSeen
		st   *runtimeapi.ContainerStatus
		want []model.EventType
	}{
		{"a new created container gives create", criSeen{}, false, criSeen{created}, &runtimeapi.ContainerStatus{State: created}, []model.EventType{model.EventCreate}},
		{"a new running container gives create and start", criSeen{}, false, criSeen{running}, &runtimeapi.ContainerStatus{State: running, StartedAt: 1}, []model.EventType{model.EventCreate, model.EventStart}},
		{"a new exited container that ran gives create, start and die", criSeen{}, false, criSeen{exited}, exitedStatus, []model.EventType{model.EventCreate, model.EventStart, model.EventDie}},
		{"a new exited container that never started gives create and die", criSeen{}, false, criSeen{exited}, &runtimeapi.ContainerStatus{State: exited, ExitCode: 128}, []model.EventType{model.EventCreate, model.EventDie}},
		{"created to running gives start", criSeen{created}, true, criSeen{running}, &runtimeapi.ContainerStatus{State: running}, []model.EventType{model.EventStart}},
		{"created to exited gives start and die", criSeen{created}, true, criSeen{exited}, exitedStatus, []model.EventType{model.EventStart, model.EventDie}},
		{"running to exited gives die", criSeen{running}, true, criSeen{exited}, exitedStatus, []model.EventType{model.EventDie}},
		{"no state change gives nothing", criSeen{running}, true, criSeen{running}, nil, nil},
		{"an unknown state gives nothing", criSeen{running}, true, criSeen{runtimeapi.ContainerState_CONTAINER_UNKNOWN}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := criDiff("c1", tt.prev, tt.had, tt.cur, tt.st, now)
			var types []model.EventType
			for _, ch := range got {
				types = append(types, ch.Type)
				if ch.ContainerID != "c1" || ch.Time.IsZero() {
					t.Fatalf("bad change %s", enginetest.FmtChange(ch))
				}
				if ch.Type == model.EventDie && tt.st.GetState() == exited && (ch.ExitCode == nil || *ch.ExitCode != int(tt.st.GetExitCode())) {
					t.Fatalf("die %s without the exit code %d", enginetest.FmtChange(ch), tt.st.GetExitCode())
				}
			}
			if fmt.Sprint(types) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", types, tt.want)
			}
		})
	}
}

// --- integration tests against containerd's CRI plugin ---

// criImplementsEvents asks the runtime directly whether GetContainerEvents is
// implemented: an unimplemented RPC fails at once, an implemented one stays
// silent.
func criImplementsEvents(t *testing.T, rt runtimeapi.RuntimeServiceClient) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sub, err := rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err == nil {
		_, err = sub.Recv()
	}
	switch {
	case status.Code(err) == codes.Unimplemented:
		return false
	case err == nil, ctx.Err() != nil:
		return true
	}
	t.Fatalf("GetContainerEvents: %v", err)
	return false
}

func TestCRILifecycle(t *testing.T) {
	testbed.Require(t, testbed.CRI, testbed.Docker)
	enginetest.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	endpoint := enginetest.CRILifecycleEndpoint(t)
	rt, images := enginetest.CRIClient(t, endpoint)

	// local/busybox in CRI's namespace. It stays imported (other tests may use
	// it concurrently; importing again is idempotent).
	enginetest.ImportBusybox(t, endpoint, "k8s.io")
	imgs, err := images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, img := range imgs.GetImages() {
		for _, tag := range img.GetRepoTags() {
			found = found || tag == enginetest.BusyboxRef
		}
	}
	if !found {
		t.Fatalf("CRI ListImages does not show %s", enginetest.BusyboxRef)
	}

	a, err := New(model.Engine{ID: "cri-test", Type: model.CRI, Endpoint: endpoint}, enginetest.Logger(t), WithPollInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	st, err := a.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	wantSource := "polling"
	if criImplementsEvents(t, rt) {
		wantSource = "GetContainerEvents"
	}
	if got := a.EventSource(); got != wantSource {
		t.Fatalf("event source %q, want %q", got, wantSource)
	}
	t.Logf("event source: %s", a.EventSource())

	r := enginetest.Random(t)
	label := "TestCRILifecycle-" + r
	sbCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "agentd-test-" + r, Uid: "uid-" + r, Namespace: "agentd-test"},
		LogDirectory: t.TempDir(),
		Labels:       map[string]string{"agentd.test": label},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}
	var podID, ctrID string
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), time.Minute)
		defer ccancel()
		if ctrID != "" {
			_, _ = rt.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID})
		}
		if podID != "" {
			_, _ = rt.StopPodSandbox(cctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
			if _, err := rt.RemovePodSandbox(cctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil && status.Code(err) != codes.NotFound {
				t.Errorf("remove pod sandbox %s: %v", podID, err)
			}
		}
	})

	type expect struct {
		gone  bool
		state model.ContainerState
		exit  int
		pid   bool
	}
	steps := []struct {
		name   string
		do     func(t *testing.T)
		events []model.EventType
		expect expect
	}{
		{"running the pod sandbox gives nothing", func(t *testing.T) {
			resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sbCfg})
			if err != nil {
				t.Fatal(err)
			}
			podID = resp.GetPodSandboxId()
		}, nil, expect{gone: true}},
		{"creating the container gives create", func(t *testing.T) {
			resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{
				PodSandboxId: podID,
				Config: &runtimeapi.ContainerConfig{
					Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
					Image:    &runtimeapi.ImageSpec{Image: testbed.BusyboxImage},
					Command:  []string{"/bin/sleep", "1000"},
					Labels:   map[string]string{"agentd.test": label},
					LogPath:  "app.log",
				},
				SandboxConfig: sbCfg,
			})
			if err != nil {
				t.Fatal(err)
			}
			ctrID = resp.GetContainerId()
		}, []model.EventType{model.EventCreate}, expect{state: model.StateCreated}},
		{"starting gives start", func(t *testing.T) {
			if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
				t.Fatal(err)
			}
		}, []model.EventType{model.EventStart}, expect{state: model.StateRunning, pid: true}},
		{"stopping gives die with status 137", func(t *testing.T) {
			if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 0}); err != nil {
				t.Fatal(err)
			}
		}, []model.EventType{model.EventDie}, expect{state: model.StateExited, exit: 137}},
		{"removing gives destroy", func(t *testing.T) {
			if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
				t.Fatal(err)
			}
		}, []model.EventType{model.EventDestroy}, expect{gone: true}},
		{"stopping and removing the pod sandbox gives nothing", func(t *testing.T) {
			if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatal(err)
			}
			if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
				t.Fatal(err)
			}
		}, nil, expect{gone: true}},
	}
	for _, step := range steps {
		ok := t.Run(step.name, func(t *testing.T) {
			step.do(t)
			if len(step.events) == 0 {
				// Nothing may show for the pod sandbox or the container.
				for _, id := range []string{podID, ctrID} {
					if id != "" {
						enginetest.ExpectNoChange(t, st, "", id, 500*time.Millisecond)
					}
				}
			}
			got := enginetest.NextChanges(t, st, "", ctrID, len(step.events), 10*time.Second)
			for j, ch := range got {
				if ch.Type != step.events[j] {
					t.Fatalf("change %d is %s, want %s", j, enginetest.FmtChange(ch), step.events[j])
				}
				if ch.Time.IsZero() || time.Since(ch.Time) > time.Minute {
					t.Errorf("change %s has a bad time", enginetest.FmtChange(ch))
				}
				if ch.Type == model.EventDie && (ch.ExitCode == nil || *ch.ExitCode != 137) {
					t.Errorf("die change %s: want exit code 137", enginetest.FmtChange(ch))
				}
			}
			list, err := a.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range list {
				if c.ID == podID {
					t.Fatalf("List reports the pod sandbox %s as a container", podID)
				}
			}
			c, inList := enginetest.FindContainer(list, "", ctrID)
			if step.expect.gone {
				if inList {
					t.Fatalf("List still has %+v", c)
				}
				if ctrID != "" {
					if _, err := a.Inspect(ctx, ctrID); !errors.Is(err, engine.ErrNotFound) {
						t.Fatalf("Inspect of a removed container: %v, want engine.ErrNotFound", err)
					}
				}
				return
			}
			if !inList {
				t.Fatalf("List has no container %s", ctrID)
			}
			ic, err := a.Inspect(ctx, ctrID)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(ic) != fmt.Sprint(c) {
				t.Fatalf("Inspect %+v differs from List's %+v", ic, c)
			}
			if c.State != step.expect.state || c.ExitCode != step.expect.exit {
				t.Fatalf("state %s exit %d, want %s exit %d", c.State, c.ExitCode, step.expect.state, step.expect.exit)
			}
			if step.expect.pid {
				if c.PID <= 0 {
					t.Fatalf("no PID for a %s container", c.State)
				}
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.PID)); err != nil {
					t.Fatalf("PID %d is not a host process: %v", c.PID, err)
				}
				if c.StartedAt.IsZero() {
					t.Fatal("running container without start time")
				}
			} else if c.PID != 0 {
				t.Fatalf("PID %d for a %s container", c.PID, c.State)
			}
			if c.State == model.StateExited && c.FinishedAt.IsZero() {
				t.Fatal("exited container without exit time")
			}
			if c.Name != "app" || c.Namespace != "" || c.EngineID != "cri-test" {
				t.Fatalf("identity: %+v", c)
			}
			if c.Labels["agentd.test"] != label || c.Labels[criLabelPodName] != "agentd-test-"+r ||
				c.Labels[criLabelPodNamespace] != "agentd-test" || c.Labels[criLabelPodUID] != "uid-"+r {
				t.Fatalf("labels: %v", c.Labels)
			}
			if c.ImageName != "docker.io/local/busybox" || fmt.Sprint(c.ImageTags) != "[latest]" || !strings.HasPrefix(c.ImageID, "sha256:") {
				t.Fatalf("image: name %q tags %q id %q", c.ImageName, c.ImageTags, c.ImageID)
			}
			if c.CgroupPath == "" {
				t.Fatal("no cgroup path")
			}
			if c.CreatedAt.IsZero() || time.Since(c.CreatedAt) > time.Minute {
				t.Fatalf("created at %s", c.CreatedAt)
			}
			t.Logf("container: %+v", c)
		})
		if !ok {
			return
		}
	}
}

func TestCRIHostRuntime(t *testing.T) {
	testbed.Require(t, testbed.CRI)
	enginetest.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rt, _ := enginetest.CRIClient(t, testbed.ContainerdSocket)
	a, err := New(model.Engine{ID: "cri-host", Type: model.CRI, Endpoint: testbed.ContainerdSocket}, enginetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })

	t.Run("the first Subscribe picks the event source the runtime supports", func(t *testing.T) {
		st, err := a.Subscribe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := "polling"
		if criImplementsEvents(t, rt) {
			want = "GetContainerEvents"
		}
		if got := a.EventSource(); got != want {
			t.Fatalf("event source %q, want %q", got, want)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		nctx, ncancel := context.WithTimeout(ctx, 5*time.Second)
		defer ncancel()
		if _, err := st.Next(nctx); err == nil || errors.Is(err, engine.ErrIgnored) || errors.Is(err, engine.ErrMalformed) || nctx.Err() != nil {
			t.Fatalf("Next after Close: %v, want the stream to end at once", err)
		}
	})
	t.Run("List reports containers and no pod sandboxes", func(t *testing.T) {
		list, err := a.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sbs, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			if c.ID == "" || c.Name == "" || c.EngineID != "cri-host" || c.State == "" {
				t.Fatalf("incomplete container %+v", c)
			}
			for _, sb := range sbs.GetItems() {
				if sb.GetId() == c.ID {
					t.Fatalf("pod sandbox %s listed as a container", c.ID)
				}
			}
		}
	})
	t.Run("Inspect of an unknown container wraps engine.ErrNotFound", func(t *testing.T) {
		if _, err := a.Inspect(ctx, "agentd-no-such-container-"+enginetest.Random(t)); !errors.Is(err, engine.ErrNotFound) {
			t.Fatalf("got %v, want engine.ErrNotFound", err)
		}
	})
}
