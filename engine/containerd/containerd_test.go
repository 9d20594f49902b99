package containerd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	apievents "github.com/containerd/containerd/api/events"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// containerdAny packs an event the way containerd's exchange does.
func containerdAny(t testing.TB, m proto.Message) (string, []byte) {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a.GetTypeUrl(), a.GetValue()
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeContainerdEvent(t *testing.T) {
	ts := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	exited := ts.Add(time.Second)
	tests := []struct {
		name    string
		ns      string
		topic   string
		msg     proto.Message
		rawURL  string
		raw     []byte
		want    engine.Change
		wantErr error
	}{
		{name: "container create becomes create", ns: "default", topic: "/containers/create",
			msg:  &apievents.ContainerCreate{ID: "c1", Image: "docker.io/library/busybox:latest"},
			want: engine.Change{Type: model.EventCreate, ContainerID: "c1", Namespace: "default", Time: ts}},
		{name: "task start becomes start", ns: "default", topic: "/tasks/start",
			msg:  &apievents.TaskStart{ContainerID: "c1", Pid: 42},
			want: engine.Change{Type: model.EventStart, ContainerID: "c1", Namespace: "default", Time: ts, PID: 42}},
		{name: "task paused becomes pause", ns: "n", topic: "/tasks/paused",
			msg:  &apievents.TaskPaused{ContainerID: "c1"},
			want: engine.Change{Type: model.EventPause, ContainerID: "c1", Namespace: "n", Time: ts}},
		{name: "task resumed becomes unpause", ns: "n", topic: "/tasks/resumed",
			msg:  &apievents.TaskResumed{ContainerID: "c1"},
			want: engine.Change{Type: model.EventUnpause, ContainerID: "c1", Namespace: "n", Time: ts}},
		{name: "oom becomes oom", ns: "k8s.io", topic: "/tasks/oom",
			msg:  &apievents.TaskOOM{ContainerID: "c1"},
			want: engine.Change{Type: model.EventOOM, ContainerID: "c1", Namespace: "k8s.io", Time: ts}},
		{name: "exit of the init process becomes die with its status and time", ns: "moby", topic: "/tasks/exit",
			msg:  &apievents.TaskExit{ContainerID: "c1", ID: "c1", Pid: 42, ExitStatus: 137, ExitedAt: timestamppb.New(exited)},
			want: engine.Change{Type: model.EventDie, ContainerID: "c1", Namespace: "moby", Time: exited, ExitCode: enginetest.IntPtr(137)}},
		{name: "exit with an empty process ID is the init process", ns: "n", topic: "/tasks/exit",
			msg:  &apievents.TaskExit{ContainerID: "c1", ExitStatus: 0},
			want: engine.Change{Type: model.EventDie, ContainerID: "c1", Namespace: "n", Time: ts, ExitCode: enginetest.IntPtr(0)}},
		{name: "exit of an exec process is ignored", ns: "n", topic: "/tasks/exit",
			msg: &apievents.TaskExit{ContainerID: "c1", ID: "exec-1", ExitStatus: 1}, wantErr: engine.ErrIgnored},
		{name: "container delete becomes destroy", ns: "n", topic: "/containers/delete",
			msg:  &apievents.ContainerDelete{ID: "c1"},
			want: engine.Change{Type: model.EventDestroy, ContainerID: "c1", Namespace: "n", Time: ts}},
		{name: "task create is ignored", ns: "n", topic: "/tasks/create",
			msg: &apievents.TaskCreate{ContainerID: "c1"}, wantErr: engine.ErrIgnored},
		{name: "task delete is ignored", ns: "n", topic: "/tasks/delete",
			msg: &apievents.TaskDelete{ContainerID: "c1"}, wantErr: engine.ErrIgnored},
		{name: "an unknown topic is ignored", ns: "n", topic: "/images/create",
			msg: &apievents.ImageCreate{Name: "x"}, wantErr: engine.ErrIgnored},
		{name: "a payload that does not match the topic is malformed", ns: "n", topic: "/tasks/start",
			msg: &apievents.TaskPaused{ContainerID: "c1"}, wantErr: engine.ErrMalformed},
		{name: "a missing container ID is malformed", ns: "n", topic: "/tasks/start",
			msg: &apievents.TaskStart{}, wantErr: engine.ErrMalformed},
		{name: "a missing namespace is malformed", ns: "", topic: "/tasks/start",
			msg: &apievents.TaskStart{ContainerID: "c1"}, wantErr: engine.ErrMalformed},
		{name: "an unknown payload type is malformed", ns: "n", topic: "/tasks/start",
			rawURL: "example.com/no.such.Type", raw: []byte{1, 2, 3}, wantErr: engine.ErrMalformed},
		{name: "a type URL without a host, as containerd sends it, decodes", ns: "n", topic: "/tasks/start",
			rawURL: "containerd.events.TaskStart", raw: mustMarshal(t, &apievents.TaskStart{ContainerID: "c1"}),
			want: engine.Change{Type: model.EventStart, ContainerID: "c1", Namespace: "n", Time: ts}},
		{name: "garbage bytes are malformed", ns: "n", topic: "/tasks/exit",
			rawURL: "containerd.events.TaskExit", raw: []byte{0xff, 0xff, 0xff}, wantErr: engine.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, val := tt.rawURL, tt.raw
			if tt.msg != nil {
				url, val = containerdAny(t, tt.msg)
			}
			got, err := decodeContainerdEvent(tt.ns, tt.topic, ts, url, val)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %+v, %v; want error %v", got, err, tt.wantErr)
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

func FuzzDecodeContainerdEvent(f *testing.F) {
	for _, m := range []proto.Message{
		&apievents.TaskExit{ContainerID: "c", ID: "c", ExitStatus: 1, ExitedAt: timestamppb.Now()},
		&apievents.ContainerCreate{ID: "c"},
		&apievents.TaskStart{ContainerID: "c", Pid: 1},
	} {
		url, val := containerdAny(f, m)
		for _, topic := range containerdTopics {
			f.Add("default", topic, url, val)
		}
	}
	f.Add("", "", "", []byte(nil))
	f.Add("n", "/tasks/exit", "containerd.events.TaskExit", []byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, ns, topic, url string, val []byte) {
		ch, err := decodeContainerdEvent(ns, topic, time.Time{}, url, val)
		if err != nil {
			if !errors.Is(err, engine.ErrMalformed) && !errors.Is(err, engine.ErrIgnored) {
				t.Fatalf("error %v is neither malformed nor ignored", err)
			}
			return
		}
		if ch.ContainerID == "" || ch.Namespace == "" || ch.Type == "" {
			t.Fatalf("decoded an incomplete change %s", enginetest.FmtChange(ch))
		}
	})
}

func TestCtrdCgroupPath(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"an empty path stays empty", "", ""},
		{"a cgroupfs path is kept", "/agentd-test/c1", "/agentd-test/c1"},
		{"a systemd path becomes a scope in its slice", "system.slice:cri-containerd:abc", "/system.slice/cri-containerd-abc.scope"},
		{"nested slices are expanded", "kubepods-burstable-pod1.slice:cri-containerd:abc",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope"},
		{"an empty slice means system.slice", ":docker:abc", "/system.slice/docker-abc.scope"},
		{"a path that is neither is kept", "weird", "weird"},
		{"a slice without the suffix is kept", "system:x:abc", "system:x:abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ctrdCgroupPath(tt.in); got != tt.want {
				t.Fatalf("ctrdCgroupPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCtrdSplitImageRef(t *testing.T) {
	tests := []struct {
		name, in, wantName string
		wantTags           []string
	}{
		{"an empty reference gives nothing", "", "", nil},
		{"a tagged reference splits off the tag", "docker.io/local/busybox:latest", "docker.io/local/busybox", []string{"latest"}},
		{"a registry port is not a tag", "localhost:5000/busybox", "localhost:5000/busybox", nil},
		{"a registry port and a tag", "localhost:5000/busybox:1.36", "localhost:5000/busybox", []string{"1.36"}},
		{"a digest reference has no tag", "registry.k8s.io/pause@sha256:3d380ca8", "registry.k8s.io/pause", nil},
		{"a tag before a digest is kept", "busybox:1@sha256:3d380ca8", "busybox", []string{"1"}},
		{"an image ID is the name", "sha256:3d380ca8", "sha256:3d380ca8", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, tags := SplitImageRef(tt.in)
			if n != tt.wantName || !slices.Equal(tags, tt.wantTags) {
				t.Fatalf("SplitImageRef(%q) = %q, %q; want %q, %q", tt.in, n, tags, tt.wantName, tt.wantTags)
			}
		})
	}
}

func TestContainerdName(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   string
	}{
		{"no labels give the ID", nil, "id1"},
		{"nerdctl's name wins", map[string]string{"nerdctl/name": "web", "io.kubernetes.container.name": "k"}, "web"},
		{"a CRI container gives its container name", map[string]string{"io.kubernetes.container.name": "app", "io.kubernetes.pod.name": "pod"}, "app"},
		{"a CRI sandbox gives its pod name", map[string]string{"io.kubernetes.pod.name": "pod"}, "pod"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := containerdName("id1", tt.labels); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// --- integration tests against the host containerd ---

func newTestContainerd(t *testing.T) *Adapter {
	t.Helper()
	a, err := New(model.Engine{ID: "containerd-test", Type: model.Containerd, Endpoint: testbed.ContainerdSocket}, enginetest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

func TestContainerdLifecycle(t *testing.T) {
	testbed.Require(t, testbed.Containerd, testbed.Docker)
	enginetest.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	a := newTestContainerd(t)
	// Subscribe before the namespace exists: namespaces that appear later are covered.
	st, err := a.Subscribe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	ns := enginetest.ContainerdNamespace(t)
	id := "lifecycle-" + enginetest.Random(t)
	label := "agentd.test=TestContainerdLifecycle-" + id

	type expect struct {
		state model.ContainerState
		exit  int
		pid   bool
	}
	steps := []struct {
		name   string
		cmd    []string
		events []model.EventType
		expect expect
	}{
		{"creating the container gives create", []string{"containers", "create", "--label", label, enginetest.BusyboxRef, id, "/bin/sleep", "1000"},
			[]model.EventType{model.EventCreate}, expect{state: model.StateCreated}},
		{"starting the task gives start", []string{"tasks", "start", "-d", id},
			[]model.EventType{model.EventStart}, expect{state: model.StateRunning, pid: true}},
		{"pausing gives pause", []string{"tasks", "pause", id},
			[]model.EventType{model.EventPause}, expect{state: model.StatePaused, pid: true}},
		{"resuming gives unpause", []string{"tasks", "resume", id},
			[]model.EventType{model.EventUnpause}, expect{state: model.StateRunning, pid: true}},
		{"killing gives die with status 137", []string{"tasks", "kill", "-s", "SIGKILL", id},
			[]model.EventType{model.EventDie}, expect{state: model.StateExited, exit: 137}},
		{"deleting the task gives nothing and keeps the exit", []string{"tasks", "delete", id},
			nil, expect{state: model.StateExited, exit: 137}},
		{"deleting the container gives destroy", []string{"containers", "delete", id},
			[]model.EventType{model.EventDestroy}, expect{}},
	}
	for i, step := range steps {
		ok := t.Run(step.name, func(t *testing.T) {
			testbed.Run(t, "ctr", append([]string{"-n", ns}, step.cmd...)...)
			got := enginetest.NextChanges(t, st, ns, id, len(step.events), 10*time.Second)
			for j, ch := range got {
				if ch.Type != step.events[j] {
					t.Fatalf("change %d is %s, want %s", j, enginetest.FmtChange(ch), step.events[j])
				}
				if ch.Time.IsZero() {
					t.Errorf("change %s has no time", enginetest.FmtChange(ch))
				}
				if ch.Type == model.EventDie && (ch.ExitCode == nil || *ch.ExitCode != 137) {
					t.Errorf("die change %s: want exit code 137", enginetest.FmtChange(ch))
				}
			}
			if i == len(steps)-1 {
				if _, err := a.Inspect(ctx, ns+"/"+id); !errors.Is(err, engine.ErrNotFound) {
					t.Fatalf("Inspect after delete: %v, want engine.ErrNotFound", err)
				}
				list, err := a.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if c, found := enginetest.FindContainer(list, ns, id); found {
					t.Fatalf("List after delete still has %+v", c)
				}
				return
			}
			list, err := a.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c, found := enginetest.FindContainer(list, ns, id)
			if !found {
				t.Fatalf("List has no container %s/%s", ns, id)
			}
			for _, inspectID := range []string{ns + "/" + id, id} {
				ic, err := a.Inspect(ctx, inspectID)
				if err != nil {
					t.Fatalf("Inspect(%s): %v", inspectID, err)
				}
				if ic.State != c.State || ic.PID != c.PID || ic.ExitCode != c.ExitCode {
					t.Fatalf("Inspect(%s) = %+v differs from List's %+v", inspectID, ic, c)
				}
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
			} else if c.PID != 0 {
				t.Fatalf("PID %d for a %s container", c.PID, c.State)
			}
			if c.State == model.StateExited && c.FinishedAt.IsZero() {
				t.Fatal("exited container without exit time")
			}
			if c.Namespace != ns || c.Name != id || c.EngineID != "containerd-test" {
				t.Fatalf("identity: %+v", c)
			}
			if c.ImageName != "docker.io/local/busybox" || !slices.Equal(c.ImageTags, []string{"latest"}) || !strings.HasPrefix(c.ImageID, "sha256:") {
				t.Fatalf("image: name %q tags %q id %q", c.ImageName, c.ImageTags, c.ImageID)
			}
			if c.Labels["agentd.test"] != strings.TrimPrefix(label, "agentd.test=") {
				t.Fatalf("labels %v lack %s", c.Labels, label)
			}
			if c.CgroupPath != "/"+ns+"/"+id {
				t.Fatalf("cgroup path %q, want /%s/%s", c.CgroupPath, ns, id)
			}
			if c.CreatedAt.IsZero() || time.Since(c.CreatedAt) > time.Minute {
				t.Fatalf("created at %s", c.CreatedAt)
			}
		})
		if !ok {
			return
		}
	}
	enginetest.ExpectNoChange(t, st, ns, id, 500*time.Millisecond)
}

func TestContainerdListReflectsExitWhileDisconnected(t *testing.T) {
	testbed.Require(t, testbed.Containerd, testbed.Docker)
	enginetest.NoLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := enginetest.ContainerdNamespace(t)

	t.Run("Inspect of an unknown container wraps engine.ErrNotFound", func(t *testing.T) {
		a := newTestContainerd(t)
		for _, id := range []string{ns + "/no-such-container", "agentd-no-such-container-" + enginetest.Random(t), "agentd-no-such-ns-" + enginetest.Random(t) + "/x"} {
			if _, err := a.Inspect(ctx, id); !errors.Is(err, engine.ErrNotFound) {
				t.Fatalf("Inspect(%s): %v, want engine.ErrNotFound", id, err)
			}
		}
	})

	for _, mode := range []string{"the stream is closed", "the client is closed"} {
		t.Run("the list after re-subscribing shows the exit when "+mode, func(t *testing.T) {
			id := "reconnect-" + enginetest.Random(t)
			testbed.Run(t, "ctr", "-n", ns, "containers", "create", enginetest.BusyboxRef, id, "/bin/sleep", "1000")
			testbed.Run(t, "ctr", "-n", ns, "tasks", "start", "-d", id)

			a, err := New(model.Engine{ID: "containerd-test", Type: model.Containerd, Endpoint: testbed.ContainerdSocket}, enginetest.Logger(t))
			if err != nil {
				t.Fatal(err)
			}
			st, err := a.Subscribe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			list, err := a.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if c, ok := enginetest.FindContainer(list, ns, id); !ok || c.State != model.StateRunning {
				t.Fatalf("before: %+v (found %v), want running", c, ok)
			}

			if mode == "the client is closed" {
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				nctx, ncancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := st.Next(nctx)
				ncancel()
				if err == nil || errors.Is(err, engine.ErrIgnored) || errors.Is(err, engine.ErrMalformed) {
					t.Fatalf("Next after closing the client: %v, want the stream to end", err)
				}
				_ = st.Close()
				a, err = New(model.Engine{ID: "containerd-test", Type: model.Containerd, Endpoint: testbed.ContainerdSocket}, enginetest.Logger(t))
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
				nctx, ncancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := st.Next(nctx)
				timedOut := nctx.Err() != nil
				ncancel()
				if err == nil || errors.Is(err, engine.ErrIgnored) || errors.Is(err, engine.ErrMalformed) || timedOut {
					t.Fatalf("Next after Close: %v, want the stream to end at once", err)
				}
			}
			t.Cleanup(func() { _ = a.Close() })

			// The container exits while nobody listens.
			testbed.Run(t, "ctr", "-n", ns, "tasks", "kill", "-s", "SIGKILL", id)
			deadline := time.Now().Add(10 * time.Second)
			for !strings.Contains(testbed.Run(t, "ctr", "-n", ns, "tasks", "ls"), "STOPPED") {
				if time.Now().After(deadline) {
					t.Fatal("task did not stop")
				}
				time.Sleep(50 * time.Millisecond)
			}

			st2, err := a.Subscribe(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer st2.Close()
			list, err = a.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			c, ok := enginetest.FindContainer(list, ns, id)
			if !ok || c.State != model.StateExited || c.ExitCode != 137 || c.FinishedAt.IsZero() || c.PID != 0 {
				t.Fatalf("after: %+v (found %v), want exited with 137 and an exit time", c, ok)
			}
			ic, err := a.Inspect(ctx, ns+"/"+id)
			if err != nil || ic.State != model.StateExited || ic.ExitCode != 137 || !ic.FinishedAt.Equal(c.FinishedAt) {
				t.Fatalf("Inspect: %+v, %v", ic, err)
			}
			testbed.Run(t, "ctr", "-n", ns, "tasks", "delete", id)
			testbed.Run(t, "ctr", "-n", ns, "containers", "delete", id)
		})
	}
}
