package discovery

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/model"
)

// TestAForkedChildNeverTakesAnEngineOver: dockerd re-executes itself
// (/proc/self/exe set-ipv6 …) for every container it starts. Between the
// fork and the exec the child is named dockerd and holds a copy of dockerd's
// listening socket, so a scan that catches it there probes it, and the socket
// answers with dockerd's ID. The engine stays dockerd's: when the child has
// gone, the engine is neither without a process nor lost after the grace
// period, however long it is held. (The churn test lost its dockerd that way
// five minutes after a scan caught one of the thousand children.)
func TestAForkedChildNeverTakesAnEngineOver(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	hostDocker := filepath.Join(root, "1/root/run/docker.sock")
	d, now, _ := newFakeDiscoverer(t, root, newFakeEngines(), nestedModel(root))
	sub := d.Subscribe()
	defer sub.Close()
	ctx := context.Background()
	pidOf := func(es []model.Engine) int {
		t.Helper()
		pid, ok := enginePID(es, hostDocker)
		if !ok {
			t.Fatalf("the host's dockerd at %s is not among the engines %+v", hostDocker, es)
		}
		return pid
	}
	es, err := d.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pid := pidOf(es); pid != 100 {
		t.Fatalf("dockerd found with PID %d, want 100", pid)
	}
	for len(sub.C()) > 0 {
		<-sub.C()
	}

	child := fakeProc{pid: 150, ppid: 100, comm: "dockerd", start: 15, cmdline: []string{"dockerd"},
		fds:     map[int]string{3: "socket:[11]", 4: "socket:[12]"},
		netUnix: unixRow(11, "/var/run/docker.sock") + unixRow(12, "/var/run/docker/metrics.sock")}
	writeFakeProc(t, root, []fakeProc{child})
	if es, _ = d.Scan(ctx); pidOf(es) != 100 {
		t.Fatalf("while the forked child runs dockerd's engine has PID %d, want 100", pidOf(es))
	}
	must(t, os.RemoveAll(filepath.Join(root, "150")))
	if es, _ = d.Scan(ctx); pidOf(es) != 100 {
		t.Fatalf("after the forked child exited dockerd's engine has PID %d, want 100", pidOf(es))
	}
	*now = now.Add(2 * Config{}.withDefaults().GracePeriod)
	if es, _ = d.Scan(ctx); pidOf(es) != 100 {
		t.Fatalf("two grace periods later dockerd's engine has PID %d, want 100", pidOf(es))
	}
	for len(sub.C()) > 0 {
		if c := <-sub.C(); c.Engine.Endpoint == hostDocker {
			t.Errorf("change %s of dockerd's engine (PID %d): the child's fork and exit are not its", c.Kind, c.Engine.PID)
		}
	}
}

// TestAnEngineFirstSeenThroughAForkedChildStaysWithItsProcess: when the first
// scan probes dockerd and a forked child of it at once, whichever answered
// first names the engine's process; once the child has gone the engine is
// dockerd's, not lost.
func TestAnEngineFirstSeenThroughAForkedChildStaysWithItsProcess(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	writeFakeProc(t, root, []fakeProc{{pid: 150, ppid: 100, comm: "dockerd", start: 15, cmdline: []string{"dockerd"},
		fds:     map[int]string{3: "socket:[11]"},
		netUnix: unixRow(11, "/var/run/docker.sock")}})
	hostDocker := filepath.Join(root, "1/root/run/docker.sock")
	d, now, _ := newFakeDiscoverer(t, root, newFakeEngines(), nestedModel(root))
	ctx := context.Background()
	if _, err := d.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	must(t, os.RemoveAll(filepath.Join(root, "150")))
	for _, step := range []time.Duration{0, 2 * Config{}.withDefaults().GracePeriod} {
		*now = now.Add(step)
		es, _ := d.Scan(ctx)
		pid, ok := enginePID(es, hostDocker)
		if !ok {
			t.Fatalf("%s after the child exited dockerd's engine is lost: %+v", step, es)
		}
		if pid != 100 {
			t.Errorf("%s after the child exited dockerd's engine has PID %d, want 100", step, pid)
		}
	}
}

// enginePID returns the PID of the engine at endpoint among es.
func enginePID(es []model.Engine, endpoint string) (int, bool) {
	for _, e := range es {
		if e.Endpoint == endpoint {
			return e.PID, true
		}
	}
	return 0, false
}
