package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/status"
)

// TestReliabilityPlantedSymlinksDoNotLeadToTheHost: a process named dockerd
// in a real Docker container listens on /plant/docker.sock and then replaces
// /plant with a symlink to a host directory where the test listens on
// docker.sock. Followed from the host as /proc/PID/root/plant/docker.sock
// without care, that path reaches the test's host socket (the control
// below proves it does); agentd, which resolves it inside the container's
// root, must never connect to it, over several discovery scans and probe
// retries.
func TestReliabilityPlantedSymlinksDoNotLeadToTheHost(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker)
	bin := buildAgentd(t)
	planted := filepath.Join(t.TempDir(), "dockerd")
	build := exec.Command("go", "build", "-o", planted, "./testdata/planted")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static: the image has no libc
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build planted: %v\n%s", err, out)
	}
	if err := os.Chmod(planted, 0o755); err != nil {
		t.Fatal(err)
	}

	// The host socket the planted link points at.
	hostDir := fmt.Sprintf("/run/reload-planted-%d", os.Getpid())
	if err := os.MkdirAll(hostDir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(hostDir) })
	l, err := net.Listen("unix", filepath.Join(hostDir, "docker.sock"))
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); <-acceptDone })

	name := fmt.Sprintf("reload-planted-%d", os.Getpid())
	_ = exec.Command("docker", "rm", "-f", name).Run()
	testbed.Run(t, "docker", "run", "-d", "--name", name, "-v", planted+":/usr/local/bin/dockerd:ro",
		testbed.BusyboxImage, "/usr/local/bin/dockerd", hostDir)
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", name).Run() })
	waitFor(t, 30*time.Second, "the container to plant its link", func() bool {
		out, _ := exec.Command("docker", "logs", name).CombinedOutput()
		return strings.Contains(string(out), "planted")
	})
	pid := strings.TrimSpace(testbed.Run(t, "docker", "inspect", "-f", "{{.State.Pid}}", name))
	if comm, _ := os.ReadFile("/proc/" + pid + "/comm"); strings.TrimSpace(string(comm)) != "dockerd" {
		t.Fatalf("the planted process is named %q, want dockerd (discovery would not look at it)", comm)
	}
	bound := "/proc/" + pid + "/root/plant/docker.sock"

	// Control: the naive way (the kernel resolves the absolute link against
	// the caller's root) does lead to the host.
	c, err := net.Dial("unix", bound)
	if err != nil {
		t.Fatalf("control: dialling %s naively: %v; the plant does not work, the test proves nothing", bound, err)
	}
	_ = c.Close()
	waitFor(t, 10*time.Second, "the control connection to reach the host socket", func() bool { return accepted.Load() == 1 })
	accepted.Store(0)

	sock := filepath.Join(t.TempDir(), "agentd.sock")
	cfg := filepath.Join(t.TempDir(), "agentd.yaml")
	if err := os.WriteFile(cfg, []byte("export:\n  interval: 1s\ndiscovery:\n  interval: 1s\nlog:\n  level: debug\nstatus:\n  socket: "+sock+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	startAgentdEnv(t, bin, noOTLPEnv, "run", "--config", cfg)
	waitForEngine(t, sock, testbed.DockerSocket, 60*time.Second)
	// Hold the plant longer than discovery's probe retry backoff (10 s,
	// doubling): the planted process is probed at least twice.
	const hold = 25 * time.Second
	time.Sleep(hold)
	if n := accepted.Load(); n != 0 {
		t.Fatalf("agentd connected %d times to the host socket %s/docker.sock through the link planted in container %s", n, hostDir, name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rep, err := status.Fetch(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range rep.Engines {
		if strings.HasPrefix(e.Endpoint, "/proc/"+pid+"/") {
			t.Errorf("agentd reports an engine at %s, inside the planted container", e.Endpoint)
		}
	}
	// The one-shot `agentd engines` probes the same way.
	out, err := exec.Command(bin, "engines", "--json", "--units=false").CombinedOutput()
	if err != nil {
		t.Fatalf("agentd engines: %v\n%s", err, out)
	}
	if n := accepted.Load(); n != 0 {
		t.Fatalf("agentd engines connected %d times to the host socket through the planted link", n)
	}
	if strings.Contains(string(out), "/proc/"+pid+"/") {
		t.Errorf("agentd engines reports an engine inside the planted container:\n%s", out)
	}
	t.Logf("planted link %s -> %s held %v: the naive path reached the host, agentd never did", bound, hostDir, hold)
}

// TestReliabilityNoTCPListenerAndAPrivateStatusSocket: a running agentd with
// an exporting configuration listens on no TCP port (IPv4 or IPv6) and its
// status socket is a socket of root's, mode 0660.
func TestReliabilityNoTCPListenerAndAPrivateStatusSocket(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	bin := buildAgentd(t)
	col := testbed.StartCollector(t)
	sock := filepath.Join(t.TempDir(), "agentd.sock")
	cfg := filepath.Join(t.TempDir(), "agentd.yaml")
	if err := os.WriteFile(cfg, []byte("export:\n  interval: 1s\nstatus:\n  socket: "+sock+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := startAgentd(t, bin, "run", "--config", cfg, "--otlp-endpoint", col.Endpoint(), "--otlp-insecure").cmd
	waitForEngine(t, sock, testbed.DockerSocket, 60*time.Second)
	// Exporting: its connections to the collector exist, and are not listeners.
	col.WaitMetrics(t, 30*time.Second, func(m *testbed.Metrics) bool { return len(m.Resources) > 0 })

	pid := strconv.Itoa(cmd.Process.Pid)
	inodes := socketInodes(t, pid)
	if len(inodes) == 0 {
		t.Fatalf("agentd (pid %s) holds no socket; the test proves nothing", pid)
	}
	connected := 0
	for _, f := range []string{"tcp", "tcp6"} {
		for _, row := range tcpRows(t, "/proc/"+pid+"/net/"+f) {
			if !inodes[row.inode] {
				continue
			}
			if row.state == "0A" { // TCP_LISTEN
				t.Errorf("agentd listens on TCP %s (%s, inode %s)", row.local, f, row.inode)
			} else {
				connected++
			}
		}
	}
	if connected == 0 {
		t.Errorf("agentd has no TCP connection to the collector; the TCP tables were not matched to it")
	}

	var st syscall.Stat_t
	if err := syscall.Stat(sock, &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || st.Mode&0o777 != 0o660 || st.Uid != 0 {
		t.Errorf("status socket %s: mode %o uid %d, want a socket of mode 0660 owned by root", sock, st.Mode, st.Uid)
	}
	t.Logf("agentd holds %d sockets, %d TCP connections, no TCP listener; status socket mode %o uid %d", len(inodes), connected, st.Mode&0o777, st.Uid)
}

// socketInodes returns the inodes of the sockets process pid holds.
func socketInodes(t *testing.T, pid string) map[string]bool {
	t.Helper()
	dir := "/proc/" + pid + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			out[strings.TrimSuffix(ino, "]")] = true
		}
	}
	return out
}

type tcpRow struct{ local, state, inode string }

// tcpRows parses /proc/net/tcp or tcp6: sl local_address rem_address st ...
// inode is the tenth field.
func tcpRows(t *testing.T, path string) []tcpRow {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []tcpRow
	s := bufio.NewScanner(f)
	s.Scan() // header
	for s.Scan() {
		fs := strings.Fields(s.Text())
		if len(fs) < 10 {
			continue
		}
		rows = append(rows, tcpRow{local: fs[1], state: fs[3], inode: fs[9]})
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}
