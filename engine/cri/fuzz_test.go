package cri_test

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/cri"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/model"
)

func marshal(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzCRIAnswers serves fuzzed CRI answers (Version, ListPodSandbox,
// ListContainers, ContainerStatus, GetContainerEvents) from a fake socket to
// the real probe and adapter: no panic, no container without an ID or with
// a negative PID, and every error names the runtime's socket.
func FuzzCRIAnswers(f *testing.F) {
	f.Add(marshal(f, &runtimeapi.VersionResponse{RuntimeName: "containerd", RuntimeVersion: "1.6.20", RuntimeApiVersion: "v1"}),
		marshal(f, &runtimeapi.ListPodSandboxResponse{Items: []*runtimeapi.PodSandbox{{Id: "p1", Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "u"}}}}),
		marshal(f, &runtimeapi.ListContainersResponse{Containers: []*runtimeapi.Container{{Id: "fuzz", PodSandboxId: "p1", Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
			Image: &runtimeapi.ImageSpec{Image: "busybox:latest"}, ImageRef: "sha256:ab", State: runtimeapi.ContainerState_CONTAINER_RUNNING, Labels: map[string]string{"k": "v"}}}}),
		marshal(f, &runtimeapi.ContainerStatusResponse{Status: &runtimeapi.ContainerStatus{Id: "fuzz", State: runtimeapi.ContainerState_CONTAINER_RUNNING},
			Info: map[string]string{"info": `{"pid":-7,"runtimeSpec":{"linux":{"cgroupsPath":"/k"}}}`}}),
		marshal(f, &runtimeapi.ContainerEventResponse{ContainerId: "fuzz", ContainerEventType: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, CreatedAt: 1,
			ContainersStatuses: []*runtimeapi.ContainerStatus{{Id: "fuzz", ExitCode: 1}}}))
	f.Add([]byte{}, []byte{}, []byte{}, []byte{}, []byte{})
	fam := cri.Family(nil)
	// Poll often: a runtime whose event stream ends is listed on a schedule.
	fam.NewAdapter = func(e model.Engine, log *slog.Logger) (engine.Adapter, error) {
		return cri.New(e, log, cri.WithPollInterval(10*time.Millisecond))
	}
	f.Fuzz(func(t *testing.T, version, sandboxes, containers, status, events []byte) {
		sock := enginetest.ServeGRPC(t, func(method string) []byte {
			switch strings.TrimPrefix(method, "/runtime.v1.RuntimeService/") {
			case "Version":
				return version
			case "ListPodSandbox":
				return sandboxes
			case "ListContainers":
				return containers
			case "ContainerStatus":
				return status
			case "GetContainerEvents":
				return events
			}
			return nil
		})
		enginetest.Exercise(t, fam, sock)
	})
}
