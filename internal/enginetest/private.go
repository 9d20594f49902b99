package enginetest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// Private is an engine of a test's own: a containerd, a dockerd or a podman
// system service started from the host's binaries with its own socket and
// its own root and state directories under a directory of the test, so that
// the test may SIGKILL it and start it again on the same socket without
// touching the host's engines. The test's cleanup removes its containers,
// stops it, unmounts what it left mounted and removes the directory.
//
// Kill and Start must not be called concurrently on one Private; different
// Privates are independent.
type Private struct {
	t testing.TB
	// Kind is "containerd", "dockerd" or "podman".
	Kind string
	// Dir holds the engine's socket, root, state and log.
	Dir string
	// Sock is the engine's API socket (the path agentd discovers).
	Sock string

	argv []string
	env  []string // added to the environment of the engine process
	// bin holds the engine's binaries and its ctr ("": the host's, on
	// PATH).
	bin   string
	netns bool // a network namespace of its own (dockerd)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	// ended is set by Kill and stop: the engine's end was the test's.
	ended bool
}

// privateDir makes the engine's directory under /var/tmp: the engines need
// a file system that takes overlay mounts, and socket paths stay short.
func privateDir(t testing.TB, kind string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "agentd-"+kind+"-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// StartPrivateContainerd starts a containerd of the test's own and returns it
// once it answers.
func StartPrivateContainerd(t testing.TB) *Private {
	t.Helper()
	return StartPrivateContainerdFrom(t, "")
}

// StartPrivateContainerdFrom is StartPrivateContainerd with the containerd,
// its shim, runc and ctr of directory bin (testbed.Engines2Dir(): today's
// engines) instead of the host's; "" is the host's.
func StartPrivateContainerdFrom(t testing.TB, bin string) *Private {
	t.Helper()
	dir := privateDir(t, "containerd")
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[debug]
  address = ""
[metrics]
  address = ""
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[5]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Private{t: t, Kind: "containerd", Dir: dir, Sock: sock, argv: []string{"containerd", "--config", cfgPath}}
	p.useBin(bin)
	t.Cleanup(p.cleanup)
	p.Start()
	return p
}

// StartPrivateDockerd starts a dockerd of the test's own on the containerd
// at containerdSock, in containerd's default Docker namespace "moby" (so
// give it a private containerd: the host's moby namespace is the host
// Docker's), in a network namespace of its own without a bridge. It
// imports the testbed's busybox image and returns once it answers.
func StartPrivateDockerd(t testing.TB, containerdSock string) *Private {
	t.Helper()
	return StartPrivateDockerdFrom(t, "", containerdSock)
}

// StartPrivateDockerdFrom is StartPrivateDockerd with the dockerd of
// directory bin (testbed.Engines2Dir(): the Docker 29 line) instead of the
// host's; "" is the host's. The host's docker CLI (API 1.41) drives it: the
// daemon is told to accept that API version (DOCKER_MIN_API_VERSION), while
// agentd negotiates the daemon's own.
func StartPrivateDockerdFrom(t testing.TB, bin, containerdSock string) *Private {
	t.Helper()
	dir := privateDir(t, "dockerd")
	sock := filepath.Join(dir, "docker.sock")
	// Docker 20.10's daemon ID is derived from the trust key, by default
	// /etc/docker/key.json, shared by every dockerd of the host: a key of
	// its own gives this one an identity of its own (and keeps the host's
	// daemon.json out). Later daemons keep their ID in their data root, and
	// refuse the option.
	daemonJSON := fmt.Sprintf(`{"deprecated-key-path": %q}`, filepath.Join(dir, "key.json"))
	if bin != "" {
		daemonJSON = `{}`
	}
	conf := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(conf, []byte(daemonJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &Private{t: t, Kind: "dockerd", Dir: dir, Sock: sock, netns: true, argv: []string{"dockerd",
		"--config-file", conf,
		"--host", "unix://" + sock,
		"--data-root", filepath.Join(dir, "data"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "dockerd.pid"),
		"--bridge=none", "--iptables=false", "--ip-masq=false",
		"--containerd", containerdSock,
	}}
	p.useBin(bin)
	if bin != "" {
		p.env = append(p.env, "DOCKER_MIN_API_VERSION=1.24")
	}
	t.Cleanup(p.cleanup)
	p.Start()
	p.CLI("import", filepath.Join(testbed.CacheDir(), "busybox.tar"), testbed.BusyboxImage)
	return p
}

// StartPrivatePodman starts a `podman system service` of the test's own (vfs
// storage, cgroupfs, events in a file) with the testbed's busybox image, and
// returns once it answers.
func StartPrivatePodman(t testing.TB) *Private {
	t.Helper()
	p := NewPrivatePodmanStorage(t)
	p.Start()
	return p
}

// NewPrivatePodmanStorage makes the storage of a podman of the test's own
// (StartPrivatePodman's) with the testbed's busybox image, and starts no
// service on it: the containers CLI starts there are daemonless podman's
// until Start starts the service.
func NewPrivatePodmanStorage(t testing.TB) *Private {
	t.Helper()
	dir := privateDir(t, "podman")
	sock := filepath.Join(dir, "podman.sock")
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Fatal(err)
	}
	// podman's version endpoint (what discovery probes) runs dpkg-query
	// for conmon, the OCI runtime and slirp4netns on every call, which
	// takes seconds on a loaded host; on a PATH without it the answer is
	// immediate. podman finds conmon and runc by absolute paths.
	empty := filepath.Join(dir, "empty-path")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &Private{t: t, Kind: "podman", Dir: dir, Sock: sock, env: []string{"PATH=" + empty}}
	p.argv = append(p.podmanFlags(), "system", "service", "--time=0", "unix://"+sock)
	p.argv[0] = bin
	t.Cleanup(p.cleanup)
	p.CLI("import", filepath.Join(testbed.CacheDir(), "busybox.tar"), testbed.BusyboxImage)
	return p
}

// useBin makes the engine run from directory bin, with bin first on its PATH
// (where containerd finds its shim and the shim runc); "" leaves the host's.
func (p *Private) useBin(bin string) {
	if bin == "" {
		return
	}
	p.bin = bin
	p.argv[0] = filepath.Join(bin, p.argv[0])
	p.env = append(p.env, "PATH="+bin+":"+os.Getenv("PATH"))
}

// Root is a private podman's storage root (its --root).
func (p *Private) Root() string { return filepath.Join(p.Dir, "root") }

func (p *Private) podmanFlags() []string {
	return []string{"podman", "--root", p.Root(), "--runroot", filepath.Join(p.Dir, "runroot"),
		"--tmpdir", filepath.Join(p.Dir, "tmp"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
		"--events-backend", "file"}
}

// cliArgv is the engine's own command line tool aimed at this engine.
func (p *Private) cliArgv(args ...string) []string {
	switch p.Kind {
	case "containerd":
		ctr := "ctr"
		if p.bin != "" {
			ctr = filepath.Join(p.bin, "ctr")
		}
		return append([]string{ctr, "--address", p.Sock}, args...)
	case "dockerd":
		return append([]string{"docker", "-H", "unix://" + p.Sock}, args...)
	default:
		// podman's local mode on the same storage: it works while the
		// service is down too.
		return append(p.podmanFlags(), args...)
	}
}

// CLI runs the engine's command line tool (ctr, docker, podman) against this
// engine and returns its trimmed standard output (podman warns on stderr
// about cgroups it cannot use here); it fails the test when the tool fails.
func (p *Private) CLI(args ...string) string {
	p.t.Helper()
	argv := p.cliArgv(args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		p.t.Fatalf("%s: %v: %s%s", strings.Join(argv, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// Start starts the engine (again, after Kill) on its socket and returns when
// it answers; it fails the test when it does not within 2 minutes.
func (p *Private) Start() {
	p.t.Helper()
	logf, err := os.OpenFile(filepath.Join(p.Dir, p.Kind+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(p.argv[0], p.argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if p.env != nil {
		cmd.Env = append(os.Environ(), p.env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if p.netns {
		// A dockerd started with --bridge=none deletes docker0 in its
		// network namespace, which must not be the host's.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWNET
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start private %s: %v", p.Kind, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	p.mu.Lock()
	p.cmd, p.done, p.ended = cmd, done, false
	p.mu.Unlock()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := p.ping()
		if err == nil {
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(p.Dir, p.Kind+".log"))
			p.t.Fatalf("private %s exited: %s", p.Kind, tail(string(log), 2000))
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("private %s did not answer on %s within 2 minutes: %v", p.Kind, p.Sock, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PID is the engine's process ID (0 when it is not running).
func (p *Private) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	select {
	case <-p.done:
		return 0
	default:
		return p.cmd.Process.Pid
	}
}

// Kill sends the engine SIGKILL and returns when its process is gone. Its
// containers live on (their shims and conmon do not depend on it).
func (p *Private) Kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.ended = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop ends the engine with SIGTERM (SIGKILL after 30 s).
func (p *Private) stop() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.ended = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.Kill()
	}
}

// ping asks the engine whether it answers.
func (p *Private) ping() error {
	if p.Kind == "containerd" {
		argv := p.cliArgv("version")
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr version: %w: %s", err, out)
		}
		return nil
	}
	c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", p.Sock)
		},
	}}
	resp, err := c.Get("http://engine/_ping")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("_ping: %s", resp.Status)
	}
	return nil
}

// cleanup removes the engine's containers, stops it and removes its directory.
func (p *Private) cleanup() {
	p.mu.Lock()
	cmd, ended := p.cmd, p.ended
	p.mu.Unlock()
	if cmd != nil && !ended && p.PID() == 0 {
		// The engine ended on its own during the test: say how, so a
		// failure that follows from it is not blamed on agentd.
		log, _ := os.ReadFile(filepath.Join(p.Dir, p.Kind+".log"))
		p.t.Logf("private %s (PID %d) exited during the test: %v; the end of its log:\n%s",
			p.Kind, cmd.Process.Pid, cmd.ProcessState, tail(string(log), 3000))
	}
	if p.PID() != 0 {
		run := func(argv ...string) string {
			out, _ := exec.Command(argv[0], argv[1:]...).Output()
			return string(out)
		}
		switch p.Kind {
		case "containerd":
			for _, ns := range strings.Fields(run(p.cliArgv("namespaces", "ls", "-q")...)) {
				for _, id := range strings.Fields(run(p.cliArgv("-n", ns, "tasks", "ls", "-q")...)) {
					run(p.cliArgv("-n", ns, "tasks", "kill", "-s", "SIGKILL", id)...)
					time.Sleep(100 * time.Millisecond)
					run(p.cliArgv("-n", ns, "tasks", "delete", "-f", id)...)
				}
				for _, id := range strings.Fields(run(p.cliArgv("-n", ns, "containers", "ls", "-q")...)) {
					run(p.cliArgv("-n", ns, "containers", "delete", id)...)
				}
			}
		case "dockerd":
			for _, id := range strings.Fields(run(p.cliArgv("ps", "-aq")...)) {
				run(p.cliArgv("rm", "-f", id)...)
			}
		}
		p.stop()
	}
	if p.Kind == "podman" {
		// Local mode: works without the service.
		_ = exec.Command(p.cliArgv("rm", "-a", "-f", "-t", "0")[0], p.cliArgv("rm", "-a", "-f", "-t", "0")[1:]...).Run()
	}
	if out, err := exec.Command("sh", "-c", "awk '{print $5}' /proc/self/mountinfo | grep '^"+p.Dir+"/' | sort -r | xargs -r umount -l").CombinedOutput(); err != nil {
		p.t.Logf("unmount under %s: %v: %s", p.Dir, err, out)
	}
	// podman's conmon runs `podman container cleanup` as a container
	// ends, which may still be writing under the root for a moment.
	var err error
	for range 50 {
		if err = os.RemoveAll(p.Dir); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Logf("remove private %s dir: %v", p.Kind, err)
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
