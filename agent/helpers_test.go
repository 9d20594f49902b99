package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/internal/testbed"
)

func execCommand(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return string(out), nil
}

// runCRIContainer starts a pod sandbox (host network, so no CNI is needed) and
// a busybox container in it through containerd's CRI plugin, and removes both
// when the test ends. It returns the container ID.
func runCRIContainer(t *testing.T, tag, label string) string {
	t.Helper()
	importToContainerd(t, "k8s.io")
	conn, err := grpc.NewClient("unix://"+testbed.ContainerdSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rt := cri.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	podCfg := &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: "agentd-" + tag, Namespace: "agentd-test", Uid: "uid-" + tag},
		LogDirectory: t.TempDir(),
		Labels:       map[string]string{label: tag},
		Linux: &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{
			NamespaceOptions: &cri.NamespaceOption{Network: cri.NamespaceMode_NODE},
		}},
	}
	pod, err := rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatalf("CRI RunPodSandbox: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = rt.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		_, _ = rt.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	})
	c, err := rt.CreateContainer(ctx, &cri.CreateContainerRequest{
		PodSandboxId: pod.PodSandboxId,
		Config: &cri.ContainerConfig{
			Metadata: &cri.ContainerMetadata{Name: "sleeper"},
			Image:    &cri.ImageSpec{Image: "docker.io/" + testbed.BusyboxImage},
			Command:  []string{"sleep", "3600"},
			Labels:   map[string]string{label: tag},
		},
		SandboxConfig: podCfg,
	})
	if err != nil {
		t.Fatalf("CRI CreateContainer: %v", err)
	}
	if _, err := rt.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatalf("CRI StartContainer: %v", err)
	}
	return c.ContainerId
}

// podmanMemUsage asks podman's libpod API on sock for a container's memory usage.
func podmanMemUsage(t *testing.T, sock, id string) uint64 {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}}
	defer client.CloseIdleConnections()
	resp, err := client.Get("http://podman/v4.0.0/libpod/containers/stats?stream=false&containers=" + id)
	if err != nil {
		t.Fatalf("podman stats: %v", err)
	}
	defer resp.Body.Close()
	var body struct {
		Stats []struct {
			ContainerID string
			MemUsage    uint64
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("podman stats: %v", err)
	}
	for _, s := range body.Stats {
		if s.ContainerID == id {
			return s.MemUsage
		}
	}
	t.Fatalf("podman stats has no container %s", id)
	return 0
}
