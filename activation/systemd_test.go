package activation

import (
	"context"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// restoreSocketsListening makes sure podman.socket and docker.socket listen
// again (and are unmasked) when the test ends, whatever it did to them.
func restoreSocketsListening(t *testing.T) {
	t.Cleanup(func() {
		testbed.RunInSystemdHost(t, "systemctl", "unmask", "--runtime", "podman.socket", "docker.socket")
		testbed.RunInSystemdHost(t, "systemctl", "start", "podman.socket", "docker.socket")
	})
}

// nestedConfig follows only the systemd host container's systemd.
func nestedConfig(pid int) Config {
	cfg := testConfig()
	cfg.Host = false
	cfg.FindNested = false
	cfg.SystemdPIDs = []int{pid}
	return cfg
}

// listNames lists the containers of e through its family's adapter, the
// way a watcher does, and returns their names.
func listNames(t *testing.T, e model.Engine) []string {
	t.Helper()
	f, ok := testConfig().Families.ForType(e.Type)
	if !ok {
		t.Fatalf("no family for %s", e.Type)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, err := f.NewAdapter(e, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := a.(interface{ Close() error }); ok {
		defer c.Close()
	}
	cs, err := a.List(ctx)
	if err != nil {
		t.Fatalf("list containers of %s: %v", e.ID, err)
	}
	var names []string
	for _, c := range cs {
		names = append(names, strings.TrimPrefix(c.Name, "/"))
	}
	return names
}

func isUnit(pid int, unit string) func(SocketEngine) bool {
	return func(e SocketEngine) bool { return e.SystemdPID == pid && e.Unit == unit }
}

func TestActivatesSocketEnginesOfSystemdHost(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	pid := testbed.SystemdHostPID(t)
	restoreSocketsListening(t)

	for _, tc := range []struct {
		name    string
		engine  string
		socket  string
		service string
		typ     model.EngineType
		listen  string
	}{
		{
			name: "podman behind podman.socket is activated once and the engine that answered lists a container", engine: "podman",
			socket: "podman.socket", service: "podman.service", typ: model.Podman, listen: "/run/podman/podman.sock",
		},
		{
			name: "docker behind docker.socket is activated once and the engine that answered lists a container", engine: "docker",
			socket: "docker.socket", service: "docker.service", typ: model.Docker, listen: "/run/docker.sock",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cname := "agentd-act-" + randomSuffix(t)
			testbed.RunInSystemdHost(t, tc.engine, "run", "-d", "--name", cname, "--label", "agentd.test="+t.Name(),
				testbed.BusyboxImage, "sleep", "1000")
			t.Cleanup(func() {
				if tc.engine == "podman" {
					testbed.RunInSystemdHost(t, "podman", "rm", "-f", "-t", "0", cname)
				} else {
					testbed.RunInSystemdHost(t, "docker", "rm", "-f", cname)
				}
			})
			// The service must not run: only its socket listens.
			testbed.RunInSystemdHost(t, "systemctl", "stop", tc.service)
			if st := testbed.RunInSystemdHost(t, "systemctl", "show", "-p", "ActiveState", "--value", tc.socket); st != "active" {
				testbed.RunInSystemdHost(t, "systemctl", "start", tc.socket)
			}

			start := time.Now()
			_, ch, logs := runManager(t, nestedConfig(pid))
			e := waitFor(t, ch, 120*time.Second, tc.socket+" active with its engine", func(e SocketEngine) bool {
				return isUnit(pid, tc.socket)(e) && e.State == StateActive && len(e.Engines) > 0
			})
			t.Logf("%s reported active %v after start", e, time.Since(start).Round(time.Millisecond))
			want := SocketEngine{
				Type: tc.typ, Unit: tc.socket, Service: tc.service, ListenPath: tc.listen,
				Endpoint:   filepath.Join("/proc", strconv.Itoa(pid), "root", tc.listen),
				SystemdPID: pid, State: StateActive, Engines: e.Engines,
			}
			if !e.Equal(want) {
				t.Fatalf("got %+v, want %+v", e, want)
			}
			if len(e.Engines) != 1 || e.Engines[0].Type != tc.typ || e.Engines[0].Endpoint != want.Endpoint ||
				e.Engines[0].Unit != tc.socket || e.Engines[0].Version == "" {
				t.Fatalf("engines %+v, want one %s at %s of %s with its version", e.Engines, tc.typ, want.Endpoint, tc.socket)
			}
			// Anything more the Manager did would come within a few seconds.
			time.Sleep(2 * time.Second)
			if n := logs.Count("activated engine socket", "unit="+tc.socket); n != 1 {
				t.Errorf("%d log lines say %s was activated, want 1", n, tc.socket)
			}
			if n := logs.Count("activation failed", "unit="+tc.socket); n != 0 {
				t.Errorf("%d failed activations of %s", n, tc.socket)
			}
			if names := listNames(t, e.Engines[0]); !slices.Contains(names, cname) {
				t.Fatalf("container %s not listed through %s: %v", cname, e.Endpoint, names)
			}
		})
	}
}

// TestPodmanIdleExitIsNotActivatedAgain activates podman.socket, lets podman
// exit after its idle time, and checks that the Manager reports it inactive,
// still connectable and with its engine, and does not start it again: that
// is the watcher's reconnect, when there is work.
func TestPodmanIdleExitIsNotActivatedAgain(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	pid := testbed.SystemdHostPID(t)
	restoreSocketsListening(t)
	testbed.RunInSystemdHost(t, "systemctl", "stop", "podman.service")
	if st := testbed.RunInSystemdHost(t, "systemctl", "show", "-p", "ActiveState", "--value", "podman.socket"); st != "active" {
		testbed.RunInSystemdHost(t, "systemctl", "start", "podman.socket")
	}
	_, ch, logs := runManager(t, nestedConfig(pid))
	active := waitFor(t, ch, 120*time.Second, "podman.socket active with its engine", func(e SocketEngine) bool {
		return isUnit(pid, "podman.socket")(e) && e.State == StateActive && len(e.Engines) > 0
	})
	// podman system service exits after 5 s without a client.
	e := waitFor(t, ch, 60*time.Second, "podman.socket inactive after podman's idle exit", func(e SocketEngine) bool {
		return isUnit(pid, "podman.socket")(e) && e.State != StateActive
	})
	if e.State != StateInactive {
		t.Fatalf("after the idle exit got %s, want state %s", e, StateInactive)
	}
	if !e.MayConnect() {
		t.Fatalf("an inactive engine must stay connectable: %s", e)
	}
	if !slices.Equal(e.Engines, active.Engines) {
		t.Fatalf("the idle-exited engine lost its engines: %v, had %v", e.Engines, active.Engines)
	}
	time.Sleep(3 * time.Second)
	if st := testbed.RunInSystemdHost(t, "systemctl", "show", "-p", "ActiveState", "--value", "podman.service"); st == "active" {
		t.Errorf("podman.service was started again after its idle exit")
	}
	if n := logs.Count("activated engine socket", "unit=podman.socket"); n != 1 {
		t.Errorf("%d log lines say podman.socket was activated, want 1", n)
	}
	if n := logs.Count("confirmed engine socket", "unit=podman.socket"); n != 0 {
		t.Errorf("podman.socket was probed again: %d confirmations", n)
	}
}

func TestSocketUnitStopAndStartAreReportedBySignals(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	pid := testbed.SystemdHostPID(t)
	restoreSocketsListening(t)
	if st := testbed.RunInSystemdHost(t, "systemctl", "show", "-p", "ActiveState", "--value", "podman.socket"); st != "active" {
		testbed.RunInSystemdHost(t, "systemctl", "start", "podman.socket")
	}
	cfg := nestedConfig(pid)
	cfg.Activate = false // this test is about reporting, not activation
	_, ch, _ := runManager(t, cfg)
	waitFor(t, ch, 30*time.Second, "podman.socket found", func(e SocketEngine) bool {
		return isUnit(pid, "podman.socket")(e) && e.State != StateRetired
	})

	drain(ch)
	testbed.RunInSystemdHost(t, "systemctl", "stop", "podman.socket", "podman.service")
	stopped := time.Now()
	e := waitFor(t, ch, 2*time.Second, "podman.socket retired", func(e SocketEngine) bool {
		return isUnit(pid, "podman.socket")(e) && e.State == StateRetired
	})
	t.Logf("%s reported %v after systemctl stop returned", e, time.Since(stopped))

	drain(ch)
	testbed.RunInSystemdHost(t, "systemctl", "start", "podman.socket")
	started := time.Now()
	e = waitFor(t, ch, 2*time.Second, "podman.socket listening again", func(e SocketEngine) bool {
		return isUnit(pid, "podman.socket")(e) && e.State != StateRetired
	})
	t.Logf("%s reported %v after systemctl start returned", e, time.Since(started))
	if e.Endpoint != filepath.Join("/proc", strconv.Itoa(pid), "root/run/podman/podman.sock") {
		t.Fatalf("endpoint %q", e.Endpoint)
	}
}

func TestMaskedSocketIsNotActivated(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	pid := testbed.SystemdHostPID(t)
	restoreSocketsListening(t)
	// Masking a listening socket unit and reloading closes its file
	// descriptor ("no open socket file descriptor left"): only a restart
	// makes it functional again. Cleanups run last-in first-out, so this
	// runs before restoreSocketsListening's start.
	t.Cleanup(func() {
		testbed.RunInSystemdHost(t, "systemctl", "unmask", "--runtime", "podman.socket")
		testbed.RunInSystemdHost(t, "systemctl", "restart", "podman.socket")
	})
	testbed.RunInSystemdHost(t, "systemctl", "stop", "podman.service")
	testbed.RunInSystemdHost(t, "systemctl", "mask", "--runtime", "podman.socket")
	if st := testbed.RunInSystemdHost(t, "systemctl", "show", "-p", "ActiveState", "--value", "podman.socket"); st != "active" {
		t.Fatalf("masked podman.socket should still listen, ActiveState %q", st)
	}

	m, ch, logs := runManager(t, nestedConfig(pid))
	e := waitFor(t, ch, 30*time.Second, "podman.socket masked", func(e SocketEngine) bool {
		return isUnit(pid, "podman.socket")(e)
	})
	if !e.Masked || e.MayConnect() {
		t.Fatalf("got %s, want masked and not connectable", e)
	}
	// Give the Manager time to (wrongly) activate, and a second chance to
	// log through a daemon-reload resync.
	testbed.RunInSystemdHost(t, "systemctl", "daemon-reload")
	time.Sleep(2 * time.Second)
	for _, e := range m.Engines() {
		if isUnit(pid, "podman.socket")(e) && (!e.Masked || e.State == StateRetired) {
			t.Errorf("after daemon-reload: %s", e)
		}
	}
	if n := logs.Count("not activating engine socket: unit is masked", "unit=podman.socket"); n != 1 {
		t.Errorf("%d log lines say why podman.socket is not activated, want 1", n)
	}
	if n := logs.Count("activated engine socket", "unit=podman.socket"); n != 0 {
		t.Errorf("masked podman.socket was activated")
	}
	if n := logs.Count("activation failed", "unit=podman.socket"); n != 0 {
		t.Errorf("masked podman.socket: activation was tried")
	}
}

// drain drops the updates already queued, so that the next wait sees only
// what follows (other tests change agentd-th's units too).
func drain(ch <-chan SocketEngine) {
	for {
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}
