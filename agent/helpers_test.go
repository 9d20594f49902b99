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

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/internal/cripod"
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
	conn, err := cripod.Dial(testbed.ContainerdSocket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rt := cri.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	podCfg := cripod.Sandbox("agentd-"+tag, "agentd-test", "uid-"+tag, t.TempDir(), map[string]string{label: tag})
	podID, ctrID, err := cripod.Run(ctx, rt, podCfg,
		cripod.Container(podCfg, "sleeper", "docker.io/"+testbed.BusyboxImage, []string{"sleep", "3600"}, nil, map[string]string{label: tag}))
	if podID != "" {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = cripod.Remove(ctx, rt, podID)
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return ctrID
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
