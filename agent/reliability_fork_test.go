package agent_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/agenttest"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/procfs"
	"github.com/agentd-dev/agentd/internal/testbed"
)

// TestReliabilityForkedEngineChild: dockerd re-executes itself for every
// container it starts (/proc/self/exe set-ipv6 …). Between the fork and the
// exec the child is named dockerd and holds a copy of the daemon's listening
// socket, and a discovery scan that catches it there probes it: the socket
// answers with the daemon's ID. The test makes that moment last: a process
// named dockerd, in the daemon's network namespace, holding a duplicate of
// its listening socket, runs over several scans and then exits. The engine
// stays the daemon's, connected, with its container, for three grace
// periods after: it is not lost while it runs. (The churn test lost its
// dockerd, and every container with it, five minutes after one scan in a
// thousand containers caught such a child.)
func TestReliabilityForkedEngineChild(t *testing.T) {
	t.Parallel()
	testbed.Require(t, testbed.Docker, testbed.Root)
	col := testbed.StartCollector(t)
	ctrd := enginetest.StartPrivateContainerd(t)
	docker := enginetest.StartPrivateDockerd(t, ctrd.Sock)
	const grace = 5 * time.Second
	a, logs := startAgentWith(t, col, func(c *config.Config) { c.Discovery.GracePeriod = config.Duration(grace) }, docker.Sock)
	eng := agenttest.WaitEngine(t, a, docker.Sock, true, 2*time.Minute)
	id := docker.CLI("run", "-d", "--network", "none", testbed.BusyboxImage, "sleep", "100000")
	waitForContainer(t, a, id)

	child := startSocketHolder(t, docker.PID(), docker.Sock)
	time.Sleep(5 * time.Second) // five scans with the child there
	probed := logs.Count("another process answered on the engine's socket") > 0
	_ = child.Process.Kill()
	_ = child.Wait()

	time.Sleep(3 * grace)
	e, ok := a.Store().Engine(eng.ID)
	if !ok {
		t.Fatalf("the engine %s was lost %s after the child exited while dockerd runs", eng.ID, 3*grace)
	}
	if e.PID != docker.PID() || !e.Connected {
		t.Errorf("engine PID %d connected %v, want dockerd's %d, connected", e.PID, e.Connected, docker.PID())
	}
	found := false
	for _, c := range a.Store().EngineContainers(eng.ID) {
		found = found || c.ID == id
	}
	if !found {
		t.Errorf("container %.12s missing from the model", id)
	}
	if !probed {
		t.Errorf("no scan probed the process holding dockerd's socket (PID %d): the test proved nothing", child.Process.Pid)
	}
}

// startSocketHolder starts a process named dockerd, in the network namespace
// of process pid, holding a duplicate of pid's listening unix socket bound
// at sock (pidfd_getfd): what a forked child of dockerd is before its exec.
// It is killed when the test ends.
func startSocketHolder(t *testing.T, pid int, sock string) *exec.Cmd {
	t.Helper()
	fd, err := listeningFD(pid, sock)
	if err != nil {
		t.Fatal(err)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		t.Fatalf("pidfd_getfd %d of process %d: %v", fd, pid, err)
	}
	f := os.NewFile(uintptr(dup), sock)
	defer f.Close()
	bin := filepath.Join(t.TempDir(), "dockerd")
	copyFile(t, "/bin/sleep", bin)
	cmd := exec.Command("nsenter", "--net=/proc/"+strconv.Itoa(pid)+"/ns/net", "--", bin, "100000")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd
}

// listeningFD returns the number of the descriptor of process pid that is
// the listening unix socket bound at path.
func listeningFD(pid int, path string) (int, error) {
	nu, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/unix", pid))
	if err != nil {
		return 0, err
	}
	var ino uint64
	procfs.ParseNetUnix(nu, procfs.UnixSocket.Listening, func(s procfs.UnixSocket) {
		if s.Path == path {
			ino = s.Inode
		}
	})
	if ino == 0 {
		return 0, fmt.Errorf("process %d: no listening socket at %s in its net/unix", pid, path)
	}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if n, ok := procfs.ParseSocketLink(link); err == nil && ok && n == ino {
			return strconv.Atoi(e.Name())
		}
	}
	return 0, fmt.Errorf("process %d: socket inode %d of %s is none of its descriptors", pid, ino, path)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
