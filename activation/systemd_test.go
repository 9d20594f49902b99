package activation

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/internal/unixhttp"
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
	cfg := DefaultConfig()
	cfg.Host = false
	cfg.FindNested = false
	cfg.SystemdPIDs = []int{pid}
	return cfg
}

// getJSON does a GET over the unix socket at endpoint and decodes the JSON
// answer into v.
func getJSON(t *testing.T, endpoint, path string, v any) {
	t.Helper()
	resp, err := unixhttp.NewClient(endpoint, 30*time.Second).Get("http://engine" + path)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, endpoint, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on %s: status %d, %v: %s", path, endpoint, resp.StatusCode, err, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s on %s: %v: %s", path, endpoint, err, body)
	}
}

func isUnit(pid int, unit string) func(SocketEngine) bool {
	return func(e SocketEngine) bool { return e.SystemdPID == pid && e.Unit == unit }
}

func TestActivatesSocketEnginesOfSystemdHost(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	pid := testbed.SystemdHostPID(t)
	restoreSocketsListening(t)

	for _, tc := range []struct {
		name      string
		engine    string
		socket    string
		service   string
		typ       model.EngineType
		listen    string
		listPath  string
		nameField func(map[string]any) []string
	}{
		{
			name: "podman behind podman.socket is activated and lists a container", engine: "podman",
			socket: "podman.socket", service: "podman.service", typ: model.Podman, listen: "/run/podman/podman.sock",
			listPath:  "/v4.0.0/libpod/containers/json?all=true",
			nameField: func(c map[string]any) []string { return anyStrings(c["Names"]) },
		},
		{
			name: "docker behind docker.socket is activated and lists a container", engine: "docker",
			socket: "docker.socket", service: "docker.service", typ: model.Docker, listen: "/run/docker.sock",
			listPath: "/containers/json?all=1",
			nameField: func(c map[string]any) []string {
				var out []string
				for _, n := range anyStrings(c["Names"]) {
					out = append(out, strings.TrimPrefix(n, "/"))
				}
				return out
			},
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
			e := waitFor(t, ch, 60*time.Second, tc.socket+" active", func(e SocketEngine) bool {
				return isUnit(pid, tc.socket)(e) && e.State == StateActive
			})
			t.Logf("%s reported active %v after start", e, time.Since(start).Round(time.Millisecond))
			want := SocketEngine{
				Type: tc.typ, Unit: tc.socket, Service: tc.service, ListenPath: tc.listen,
				Endpoint:   filepath.Join("/proc", strconv.Itoa(pid), "root", tc.listen),
				SystemdPID: pid, State: StateActive,
			}
			if e != want {
				t.Fatalf("got %+v, want %+v", e, want)
			}
			if n := logs.waitCount(10*time.Second, 1, "activated engine socket", "unit="+tc.socket); n != 1 {
				t.Errorf("%d log lines say %s was activated, want 1", n, tc.socket)
			}
			var list []map[string]any
			getJSON(t, e.Endpoint, tc.listPath, &list)
			found := false
			for _, c := range list {
				for _, n := range tc.nameField(c) {
					found = found || n == cname
				}
			}
			if !found {
				t.Fatalf("container %s not listed through %s (%d containers)", cname, e.Endpoint, len(list))
			}
		})
	}
}

func anyStrings(v any) []string {
	a, _ := v.([]any)
	var out []string
	for _, e := range a {
		if s, ok := e.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

func TestPodmanIdleExitIsReportedInactive(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	pid := testbed.SystemdHostPID(t)
	restoreSocketsListening(t)
	if st := testbed.RunInSystemdHost(t, "systemctl", "show", "-p", "ActiveState", "--value", "podman.socket"); st != "active" {
		testbed.RunInSystemdHost(t, "systemctl", "start", "podman.socket")
	}
	_, ch, _ := runManager(t, nestedConfig(pid))
	waitFor(t, ch, 60*time.Second, "podman.socket active", func(e SocketEngine) bool {
		return isUnit(pid, "podman.socket")(e) && e.State == StateActive
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
	if n := logs.count("not activating engine socket: unit is masked", "unit=podman.socket"); n != 1 {
		t.Errorf("%d log lines say why podman.socket is not activated, want 1", n)
	}
	if n := logs.count("activated engine socket", "unit=podman.socket"); n != 0 {
		t.Errorf("masked podman.socket was activated")
	}
	if n := logs.count("activation failed", "unit=podman.socket"); n != 0 {
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
