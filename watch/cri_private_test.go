package watch

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// criLifecycleEndpoint returns a CRI endpoint that can run pod sandboxes: the
// host containerd when it can, else a private containerd of the test's own.
//
// Why a fallback: containerd's CRI plugin gives every sandbox oom_score_adj
// -998 unless restrict_oom_score_adj is set, and lowering oom_score_adj needs
// CAP_SYS_RESOURCE, which this machine's bounding set lacks; runc then fails
// with "can't get final child's PID from pipe: EOF". The shared host
// containerd must not be reconfigured or restarted by tests, so the test
// starts the same containerd binary with its own root, state, socket and
// restrict_oom_score_adj = true.
func criLifecycleEndpoint(t *testing.T) string {
	t.Helper()
	err := criProbeSandbox(t, testbed.ContainerdSocket)
	if err == nil {
		return testbed.ContainerdSocket
	}
	t.Logf("the host containerd's CRI plugin cannot run a pod sandbox here (%v); using a private containerd with restrict_oom_score_adj = true", err)
	return criPrivateContainerd(t)
}

// criProbeSandbox runs and removes a host-network pod sandbox.
func criProbeSandbox(t *testing.T, endpoint string) error {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := ctrdRandom(t)
	resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata: &runtimeapi.PodSandboxMetadata{Name: "agentd-probe-" + r, Uid: "uid-" + r, Namespace: "agentd-test"},
		Labels:   map[string]string{"agentd.test": "criProbeSandbox-" + r},
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}})
	if err != nil {
		return err
	}
	id := resp.GetPodSandboxId()
	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("stop probe sandbox %s: %v", id, err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Errorf("remove probe sandbox %s: %v", id, err)
	}
	return nil
}

// criPrivateContainerd starts a containerd of the test's own (stopped and
// removed in cleanup) with the pause image imported, and returns its socket.
func criPrivateContainerd(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "agentd-cri-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    restrict_oom_score_adj = true
    sandbox_image = %[5]q
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = %[6]q
  [plugins."io.containerd.internal.v1.opt"]
    path = %[7]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", testbed.PauseImage,
		filepath.Join(dir, "cni"), filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = logf.Close()
		// Shims of this containerd (their sockets live under /run/containerd/s)
		// are gone with their sandboxes; unmount whatever is left under dir.
		if out, err := exec.Command("sh", "-c", "grep -o ' "+dir+"[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l").CombinedOutput(); err != nil {
			t.Logf("unmount under %s: %v: %s", dir, err, out)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove private containerd dir: %v", err)
		}
	})

	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := exec.Command("ctr", "--address", sock, "version").Run(); err == nil {
			break
		}
		select {
		case err := <-exited:
			exited <- err
			log, _ := os.ReadFile(filepath.Join(dir, "containerd.log"))
			t.Fatalf("private containerd exited: %v: %s", err, log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("private containerd did not answer within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The pause image, from the host containerd's k8s.io namespace.
	archive := filepath.Join(t.TempDir(), "pause.tar")
	testbed.Run(t, "ctr", "-n", "k8s.io", "images", "export", archive, testbed.PauseImage)
	testbed.Run(t, "ctr", "--address", sock, "-n", "k8s.io", "images", "import", archive)
	if out := testbed.Run(t, "ctr", "--address", sock, "-n", "k8s.io", "images", "ls", "-q"); !strings.Contains(out, testbed.PauseImage) {
		t.Fatalf("pause image not imported into the private containerd: %s", out)
	}
	return sock
}
