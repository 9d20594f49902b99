package containerd_test

import (
	"strings"
	"testing"

	apievents "github.com/containerd/containerd/api/events"
	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	apitypes "github.com/containerd/containerd/api/types"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/internal/enginetest"
)

func marshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzContainerdAnswers serves fuzzed gRPC answers (version, namespaces,
// containers, tasks, images and content, events) from a fake socket to the
// real probe and adapter: no panic, no container without an ID, and every
// error names the engine's socket.
func FuzzContainerdAnswers(f *testing.F) {
	ev, err := anypb.New(&apievents.TaskExit{ContainerID: "c1", ID: "c1", Pid: 42, ExitStatus: 137})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(marshal(f, &versionapi.VersionResponse{Version: "1.6.20"}),
		marshal(f, &namespacesapi.ListNamespacesResponse{Namespaces: []*namespacesapi.Namespace{{Name: "default"}, {Name: ""}}}),
		marshal(f, &containersapi.ListContainerMessage{Container: &containersapi.Container{ID: "c1", Image: "docker.io/library/busybox:latest",
			Labels: map[string]string{"k": "v"}, Spec: &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec", Value: []byte(`{"linux":{"cgroupsPath":"/x"}}`)}}}),
		marshal(f, &tasksapi.ListTasksResponse{Tasks: []*tasktypes.Process{{ID: "c1", ContainerID: "c1", Pid: 42, Status: tasktypes.Status_RUNNING}}}),
		marshal(f, &imagesapi.GetImageResponse{Image: &imagesapi.Image{Name: "busybox", Target: &apitypes.Descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: "sha256:" + strings.Repeat("a", 64)}}}),
		marshal(f, &apitypes.Envelope{Namespace: "default", Topic: "/tasks/exit", Event: ev}))
	f.Add([]byte{}, []byte{}, []byte{}, []byte{}, []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, version, namespaces, containers, tasks, images, events []byte) {
		sock := enginetest.ServeGRPC(t, func(method string) []byte {
			switch {
			case strings.HasPrefix(method, "/containerd.services.version."), strings.HasPrefix(method, "/containerd.services.introspection."):
				return version
			case strings.HasPrefix(method, "/containerd.services.namespaces."):
				return namespaces
			case strings.HasPrefix(method, "/containerd.services.containers."):
				return containers
			case strings.HasPrefix(method, "/containerd.services.tasks."):
				return tasks
			case strings.HasPrefix(method, "/containerd.services.images."), strings.HasPrefix(method, "/containerd.services.content."):
				return images
			case method == "/containerd.services.events.v1.Events/Subscribe":
				return events
			case method == "/containerd.services.events.v1.Events/Publish":
				return marshal(t, &emptypb.Empty{})
			}
			return nil
		})
		enginetest.Exercise(t, containerd.Family(nil), sock)
	})
}
