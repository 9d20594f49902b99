// Package enginetest holds what the engine and watcher tests share: helpers
// that set up real containerd namespaces and CRI sandboxes on the testbed,
// read changes off a Stream, and check for leaked goroutines. Only tests
// import it.
package enginetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/cripod"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
	"go.uber.org/goleak"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func IntPtr(i int) *int { return &i }

// AssertChange compares two Changes field by field.
func AssertChange(t testing.TB, got, want engine.Change) {
	t.Helper()
	if got.Type != want.Type || got.ContainerID != want.ContainerID || got.Namespace != want.Namespace ||
		!got.Time.Equal(want.Time) || got.Signal != want.Signal ||
		(got.ExitCode == nil) != (want.ExitCode == nil) ||
		(got.ExitCode != nil && *got.ExitCode != *want.ExitCode) {
		t.Fatalf("got change %s, want %s", FmtChange(got), FmtChange(want))
	}
}

func FmtChange(c engine.Change) string {
	code := "nil"
	if c.ExitCode != nil {
		code = fmt.Sprint(*c.ExitCode)
	}
	return fmt.Sprintf("{%s %s ns=%q time=%s exit=%s signal=%q}", c.Type, c.ContainerID, c.Namespace, c.Time.Format(time.RFC3339Nano), code, c.Signal)
}

func Random(t testing.TB) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// NoLeaks fails t when goroutines started during the test outlive it
// (checked after every other cleanup).
func NoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// ImportBusybox imports local/busybox from the host Docker into namespace
// ns (creating the namespace) of the containerd at address.
func ImportBusybox(t *testing.T, address, ns string) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker", "save", testbed.BusyboxImage)
	cmd.Stdout = f
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker save %s: %v: %s", testbed.BusyboxImage, err, stderr.String())
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	testbed.Run(t, "ctr", "--address", address, "-n", ns, "images", "import", archive)
}

// ContainerdNamespace imports busybox into a new namespace of the test's
// own, removed with everything in it when the test ends.
func ContainerdNamespace(t *testing.T) string {
	t.Helper()
	ns := "agentd-test-" + Random(t)
	t.Cleanup(func() {
		out, _ := exec.Command("ctr", "-n", ns, "tasks", "ls", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("ctr", "-n", ns, "tasks", "kill", "-s", "SIGKILL", id).Run()
			_ = exec.Command("ctr", "-n", ns, "tasks", "delete", "-f", id).Run()
		}
		out, _ = exec.Command("ctr", "-n", ns, "containers", "ls", "-q").Output()
		for _, id := range strings.Fields(string(out)) {
			_ = exec.Command("ctr", "-n", ns, "containers", "delete", id).Run()
		}
		out, _ = exec.Command("ctr", "-n", ns, "images", "ls", "-q").Output()
		for _, ref := range strings.Fields(string(out)) {
			_ = exec.Command("ctr", "-n", ns, "images", "rm", "--sync", ref).Run()
		}
		if out, err := exec.Command("ctr", "namespaces", "rm", ns).CombinedOutput(); err != nil {
			t.Errorf("remove containerd namespace %s: %v: %s", ns, err, out)
		}
	})
	ImportBusybox(t, testbed.ContainerdSocket, ns)
	return ns
}

// NextChanges reads changes from st until it has n for namespace ns and
// container id (others, and ignored events, are skipped), or fails t after a
// timeout.
func NextChanges(t *testing.T, st engine.Stream, ns, id string, n int, timeout time.Duration) []engine.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var got []engine.Change
	for len(got) < n {
		ch, err := st.Next(ctx)
		switch {
		case errors.Is(err, engine.ErrIgnored):
			continue
		case err != nil:
			t.Fatalf("after %d of %d changes (%v): %v", len(got), n, got, err)
		}
		if ch.Namespace == ns && ch.ContainerID == id {
			got = append(got, ch)
		}
	}
	return got
}

// ExpectNoChange checks that nothing more arrives for the container for a while.
func ExpectNoChange(t *testing.T, st engine.Stream, ns, id string, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for {
		ch, err := st.Next(ctx)
		if errors.Is(err, engine.ErrIgnored) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			t.Fatal(err)
		}
		if ch.Namespace == ns && ch.ContainerID == id {
			t.Fatalf("unexpected change %s", FmtChange(ch))
		}
	}
}

func FindContainer(cs []model.Container, ns, id string) (model.Container, bool) {
	for _, c := range cs {
		if c.Namespace == ns && c.ID == id {
			return c, true
		}
	}
	return model.Container{}, false
}

// BusyboxRef is local/busybox's name once imported by ctr.
const BusyboxRef = "docker.io/local/busybox:latest"

// CRIClient connects the test's own CRI client.
func CRIClient(t *testing.T, endpoint string) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	conn, err := cripod.Dial(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// CRILifecycleEndpoint returns a CRI endpoint that can run pod sandboxes: the
// host containerd when it can, else a private containerd of the test's own.
//
// Why a fallback: containerd's CRI plugin gives every sandbox oom_score_adj
// -998 unless restrict_oom_score_adj is set, and lowering oom_score_adj needs
// CAP_SYS_RESOURCE, which this machine's bounding set lacks; runc then fails
// with "can't get final child's PID from pipe: EOF". The shared host
// containerd must not be reconfigured or restarted by tests, so the test
// starts the same containerd binary with its own root, state, socket and
// restrict_oom_score_adj = true.
func CRILifecycleEndpoint(t *testing.T) string {
	t.Helper()
	err := criProbeSandbox(t, testbed.ContainerdSocket)
	if err == nil {
		return testbed.ContainerdSocket
	}
	t.Logf("the host containerd's CRI plugin cannot run a pod sandbox here (%v); using a private containerd with restrict_oom_score_adj = true", err)
	return CRIPrivateContainerd(t)
}

// CRIPrivateContainerd starts a containerd of the test's own (stopped and
// removed in cleanup) with the pause image imported, and returns its socket.
func CRIPrivateContainerd(t *testing.T) string {
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

// criProbeSandbox runs and removes a host-network pod sandbox.
func criProbeSandbox(t *testing.T, endpoint string) error {
	t.Helper()
	conn, err := cripod.Dial(endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := Random(t)
	resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cripod.Sandbox(
		"agentd-probe-"+r, "agentd-test", "uid-"+r, "", map[string]string{"agentd.test": "criProbeSandbox-" + r})})
	if err != nil {
		return err
	}
	if err := cripod.Remove(ctx, rt, resp.GetPodSandboxId()); err != nil {
		t.Errorf("probe sandbox: %v", err)
	}
	return nil
}

// CheckChange fails t when a decoder returned an error that is neither
// ErrIgnored nor ErrMalformed, or accepted a change without ID or type.
func CheckChange(t *testing.T, ch engine.Change, err error) {
	if err != nil {
		if !errors.Is(err, engine.ErrIgnored) && !errors.Is(err, engine.ErrMalformed) {
			t.Fatalf("decode error that is neither ignored nor malformed: %v", err)
		}
		return
	}
	if ch.ContainerID == "" || ch.Type == "" {
		t.Fatalf("accepted change without ID or type: %+v", ch)
	}
	if ch.PID < 0 || (ch.PID > 0 && ch.Type != model.EventStart) {
		t.Fatalf("%s of %s with PID %d", ch.Type, ch.ContainerID, ch.PID)
	}
	if c := ch.Container; c != nil && (c.ID != ch.ContainerID || c.PID != 0) {
		t.Fatalf("change of %s carries container %s with PID %d", ch.ContainerID, c.ID, c.PID)
	}
}
