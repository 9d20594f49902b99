package activation

import (
	"fmt"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

const (
	podmanListen = "/run/podman/podman.sock"
	dockerListen = "/run/docker.sock"
)

// fakeStep is one thing that happens to the fake systemd, and the update
// the Manager must publish after it.
type fakeStep struct {
	what  string
	do    func(b *fakeBus)
	until func(SocketEngine) bool
}

func unitIn(unit string, st State) func(SocketEngine) bool {
	return func(e SocketEngine) bool { return e.Unit == unit && e.State == st }
}

func answered(unit string) func(SocketEngine) bool {
	return func(e SocketEngine) bool { return e.Unit == unit && e.State == StateActive && len(e.Engines) == 1 }
}

// allOf holds once each of preds has held for an update, in any order.
func allOf(preds ...func(SocketEngine) bool) func(SocketEngine) bool {
	seen := make([]bool, len(preds))
	return func(e SocketEngine) bool {
		all := true
		for i, p := range preds {
			seen[i] = seen[i] || p(e)
			all = all && seen[i]
		}
		return all
	}
}

// TestUnitStateMachineOnAFakeBus drives the Manager's unit state machine
// through a fake systemd and counts what it does to it: StartUnit calls, and
// probes of each family (none while the service is not active: such a
// connect would start it behind the Manager's back).
func TestUnitStateMachineOnAFakeBus(t *testing.T) {
	activePodman := answered("podman.socket")
	for _, tc := range []struct {
		name   string
		setup  func(b *fakeBus)
		config func(c *Config)
		steps  []fakeStep
		// wantStarts counts StartUnit calls by unit, wantProbes all probes.
		wantStarts map[string]int
		wantProbes int
		wantLast   func(SocketEngine) bool // of the last update of podman.socket, if set
		// podmanUnseen: podman.socket is never reported.
		podmanUnseen bool
	}{
		{
			name:       "a listening socket unit is activated once and reports the engine that answered",
			setup:      func(b *fakeBus) { b.socket("podman.socket", podmanListen, "podman.service", "inactive") },
			steps:      []fakeStep{{what: "podman active with its engine", until: activePodman}},
			wantStarts: map[string]int{"podman.service": 1}, wantProbes: 1,
			wantLast: func(e SocketEngine) bool {
				return e.Type == model.Podman && e.Service == "podman.service" && e.Endpoint == podmanListen &&
					e.Engines[0].ID == "podman:"+podmanListen && e.Engines[0].Unit == "podman.socket"
			},
		},
		{
			name:  "repeated signals and a daemon-reload do not activate it again",
			setup: func(b *fakeBus) { b.socket("podman.socket", podmanListen, "podman.service", "inactive") },
			steps: []fakeStep{
				{what: "podman active with its engine", until: activePodman},
				{what: "the same signals again, a reload and a resync", do: func(b *fakeBus) {
					b.emit(propertiesChanged("podman.service", "active"))
					b.emit(propertiesChanged("podman.socket", "active"))
					b.emit(managerSignal("JobRemoved", uint32(7), unitPath("podman.service"), "podman.service", "done"))
					b.emit(managerSignal("UnitNew", "podman.socket", unitPath("podman.socket")))
					b.emit(managerSignal("Reloading", true))
					b.emit(managerSignal("Reloading", false))
					b.emit(managerSignal("UnitFilesChanged"))
				}},
			},
			wantStarts: map[string]int{"podman.service": 1}, wantProbes: 1, wantLast: activePodman,
		},
		{
			name:  "an idle-exited service is reported inactive and not started again; its watcher's reconnect brings it back",
			setup: func(b *fakeBus) { b.socket("podman.socket", podmanListen, "podman.service", "inactive") },
			steps: []fakeStep{
				{what: "podman active with its engine", until: activePodman},
				{what: "podman inactive after its idle exit, with its engine", do: func(b *fakeBus) {
					b.setActive("podman.service", "deactivating")
					b.setActive("podman.service", "inactive")
				}, until: func(e SocketEngine) bool { return unitIn("podman.socket", StateInactive)(e) && len(e.Engines) == 1 }},
				{what: "podman active again, started by a watcher's connect", do: func(b *fakeBus) {
					b.setActive("podman.service", "activating")
					b.setActive("podman.service", "active")
				}, until: activePodman},
			},
			wantStarts: map[string]int{"podman.service": 1}, wantProbes: 1, wantLast: activePodman,
		},
		{
			name:       "a service that runs already is confirmed with a probe and not started",
			setup:      func(b *fakeBus) { b.socket("podman.socket", podmanListen, "podman.service", "active") },
			steps:      []fakeStep{{what: "podman active with its engine", until: activePodman}},
			wantStarts: map[string]int{}, wantProbes: 1, wantLast: activePodman,
		},
		{
			name: "a masked socket unit is reported but neither started nor probed",
			setup: func(b *fakeBus) {
				b.socket("podman.socket", podmanListen, "podman.service", "inactive")
				b.edit("podman.socket", func(u *fakeUnit) { u.load, u.file = "masked", "masked-runtime" })
			},
			steps: []fakeStep{{what: "podman listening, masked", until: func(e SocketEngine) bool {
				return unitIn("podman.socket", StateListening)(e) && e.Masked && !e.MayConnect()
			}}},
			wantStarts: map[string]int{}, wantProbes: 0,
		},
		{
			name:   "an excluded socket unit is reported but neither started nor probed",
			setup:  func(b *fakeBus) { b.socket("podman.socket", podmanListen, "podman.service", "inactive") },
			config: func(c *Config) { c.ExcludeUnits = []string{"podman*.socket"} },
			steps: []fakeStep{{what: "podman listening, excluded", until: func(e SocketEngine) bool {
				return unitIn("podman.socket", StateListening)(e) && e.Excluded
			}}},
			wantStarts: map[string]int{}, wantProbes: 0,
		},
		{
			name:   "without Activate socket units are only reported",
			setup:  func(b *fakeBus) { b.socket("podman.socket", podmanListen, "podman.service", "active") },
			config: func(c *Config) { c.Activate = false },
			steps: []fakeStep{{what: "podman active, without engines", until: func(e SocketEngine) bool {
				return unitIn("podman.socket", StateActive)(e) && e.Engines == nil
			}}},
			wantStarts: map[string]int{}, wantProbes: 0,
		},
		{
			name:  "a socket stopped and started again is activated once per listening period",
			setup: func(b *fakeBus) { b.socket("podman.socket", podmanListen, "podman.service", "inactive") },
			steps: []fakeStep{
				{what: "podman active with its engine", until: activePodman},
				{what: "podman retired without engines", do: func(b *fakeBus) {
					b.setActive("podman.socket", "inactive")
					b.setActive("podman.service", "inactive")
				}, until: func(e SocketEngine) bool { return unitIn("podman.socket", StateRetired)(e) && e.Engines == nil }},
				{what: "podman activated again", do: func(b *fakeBus) { b.setActive("podman.socket", "active") }, until: activePodman},
			},
			wantStarts: map[string]int{"podman.service": 2}, wantProbes: 2, wantLast: activePodman,
		},
		{
			name: "a failed start is retried after the retry interval, not at once",
			setup: func(b *fakeBus) {
				b.socket("podman.socket", podmanListen, "podman.service", "inactive")
				b.jobs = []fakeJob{{result: "failed"}}
			},
			config:     func(c *Config) { c.RetryInterval = 400 * time.Millisecond },
			steps:      []fakeStep{{what: "podman active with its engine after a retry", until: activePodman}},
			wantStarts: map[string]int{"podman.service": 2}, wantProbes: 1, wantLast: activePodman,
		},
		{
			name: "a slow service is followed until active and its socket asked until it answers",
			setup: func(b *fakeBus) {
				b.socket("podman.socket", podmanListen, "podman.service", "inactive")
				b.jobs = []fakeJob{{result: "done", delay: 700 * time.Millisecond}}
				b.probeErrs = []error{errRefused, errRefused, errRefused}
			},
			steps:      []fakeStep{{what: "podman active with its engine", until: activePodman}},
			wantStarts: map[string]int{"podman.service": 1}, wantProbes: 4, wantLast: activePodman,
		},
		{
			name: "a socket that answers as something else is not asked again before the retry interval",
			setup: func(b *fakeBus) {
				b.socket("podman.socket", podmanListen, "podman.service", "inactive")
				b.probeErrs = []error{engine.ErrNotEngine}
			},
			steps: []fakeStep{{what: "podman active without engines", until: func(e SocketEngine) bool {
				return unitIn("podman.socket", StateActive)(e) && e.Engines == nil
			}}},
			wantStarts: map[string]int{"podman.service": 1}, wantProbes: 1,
			wantLast: func(e SocketEngine) bool { return e.Engines == nil },
		},
		{
			name: "the engine type comes from the families' sockets and the extra sockets, each socket unit activated once",
			setup: func(b *fakeBus) {
				b.socket("podman.socket", podmanListen, "podman.service", "inactive")
				b.socket("docker.socket", dockerListen, "docker.service", "inactive")
				b.socket("custom.socket", "/run/custom/engine.sock", "custom.service", "inactive")
				b.socket("other.socket", "/run/other.sock", "other.service", "inactive")
			},
			config: func(c *Config) {
				c.ExtraSockets = []SocketSuffix{{Suffix: "custom/engine.sock", Type: model.Docker}}
			},
			steps: []fakeStep{{what: "podman, docker and the custom socket as docker active", until: allOf(
				activePodman,
				answered("docker.socket"),
				func(e SocketEngine) bool {
					return answered("custom.socket")(e) && e.Type == model.Docker && e.Engines[0].Type == model.Docker
				},
			)}},
			wantStarts: map[string]int{"podman.service": 1, "docker.service": 1, "custom.service": 1, "other.service": 0},
			wantProbes: 3,
		},
		{
			name: "a socket the endpoint filter leaves out is neither reported, started nor probed",
			setup: func(b *fakeBus) {
				b.socket("podman.socket", podmanListen, "podman.service", "active")
				b.socket("docker.socket", dockerListen, "docker.service", "inactive")
			},
			config: func(c *Config) {
				c.Watched = func(endpoint, listen string) bool { return endpoint == listen && listen != podmanListen }
			},
			steps:      []fakeStep{{what: "docker active with its engine", until: answered("docker.socket")}},
			wantStarts: map[string]int{"podman.service": 0, "docker.service": 1}, wantProbes: 1,
			podmanUnseen: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newFakeBus(t)
			tc.setup(b)
			cfg := DefaultConfig()
			cfg.Families = engine.Families{b.family(model.Podman, "podman.sock"), b.family(model.Docker, "docker.sock")}
			cfg.FindNested = false
			cfg.HostBusAddresses = []string{"unix:path=/fake/bus"}
			cfg.RetryInterval = time.Minute
			cfg.StartTimeout = 10 * time.Second
			cfg.AnswerTimeout = 10 * time.Second
			if tc.config != nil {
				tc.config(&cfg)
			}
			m, ch, _ := runManagerOn(t, cfg, b.dial)
			for _, st := range tc.steps {
				if st.do != nil {
					st.do(b)
				}
				if st.until != nil {
					waitFor(t, ch, 10*time.Second, st.what, st.until)
				}
			}
			// Whatever else the Manager would do comes within this.
			time.Sleep(600 * time.Millisecond)
			for unit, want := range tc.wantStarts {
				if got := b.startCount(unit); got != want {
					t.Errorf("StartUnit %s: %d calls, want %d", unit, got, want)
				}
			}
			all, cold := b.probeCount()
			if all != tc.wantProbes {
				t.Errorf("%d probes, want %d", all, tc.wantProbes)
			}
			if cold != 0 {
				t.Errorf("%d probes of a socket whose service was not active", cold)
			}
			if tc.podmanUnseen {
				for _, e := range m.Engines() {
					if e.Unit == "podman.socket" {
						t.Errorf("podman.socket reported: %v", e)
					}
				}
			}
			if tc.wantLast != nil {
				var last *SocketEngine
				for _, e := range m.Engines() {
					if e.Unit == "podman.socket" {
						last = &e
					}
				}
				if last == nil || !tc.wantLast(*last) {
					t.Errorf("last update of podman.socket: %v", last)
				}
			}
		})
	}
}

// TestFailedActivationWaitsTheRetryInterval checks the pause between a failed
// StartUnit and the next, and that it grows with each further failure.
func TestFailedActivationWaitsTheRetryInterval(t *testing.T) {
	b := newFakeBus(t)
	b.socket("podman.socket", podmanListen, "podman.service", "inactive")
	b.jobs = []fakeJob{{result: "failed"}, {result: "timeout"}}
	cfg := DefaultConfig()
	cfg.Families = engine.Families{b.family(model.Podman, "podman.sock")}
	cfg.FindNested = false
	cfg.HostBusAddresses = []string{"unix:path=/fake/bus"}
	cfg.RetryInterval = 300 * time.Millisecond
	_, ch, logs := runManagerOn(t, cfg, b.dial)
	waitFor(t, ch, 10*time.Second, "podman active with its engine", answered("podman.socket"))
	times := b.startTimes("podman.service")
	if len(times) != 3 {
		t.Fatalf("%d StartUnit calls, want 3", len(times))
	}
	for i, want := range []time.Duration{cfg.RetryInterval, 2 * cfg.RetryInterval} {
		if d := times[i+1].Sub(times[i]); d < want {
			t.Errorf("retry %d after %v, want at least %v", i+1, d, want)
		}
	}
	if n := logs.Count("activation failed", "unit=podman.socket", "start job"); n != 2 {
		t.Errorf("%d log lines about failed activations, want 2", n)
	}
	if n := logs.Count("activated engine socket", "unit=podman.socket"); n != 1 {
		t.Errorf("%d log lines about the activation, want 1", n)
	}
}

// TestSocketStoppedDuringActivationDropsItsResult stops the socket while its
// service is still starting: the late result must not confirm the engine of
// the next listening period, which is activated on its own.
func TestSocketStoppedDuringActivationDropsItsResult(t *testing.T) {
	b := newFakeBus(t)
	b.socket("podman.socket", podmanListen, "podman.service", "inactive")
	b.jobs = []fakeJob{{result: "done", delay: 500 * time.Millisecond}}
	cfg := DefaultConfig()
	cfg.Families = engine.Families{b.family(model.Podman, "podman.sock")}
	cfg.FindNested = false
	cfg.HostBusAddresses = []string{"unix:path=/fake/bus"}
	_, ch, _ := runManagerOn(t, cfg, b.dial)
	waitFor(t, ch, 10*time.Second, "podman listening", unitIn("podman.socket", StateListening))
	eventually(t, 10*time.Second, "podman.service being started", func() bool { return b.startCount("podman.service") == 1 })
	b.setActive("podman.socket", "inactive")
	waitFor(t, ch, 10*time.Second, "podman retired", unitIn("podman.socket", StateRetired))
	time.Sleep(time.Second) // the first start job ends meanwhile
	b.setActive("podman.service", "inactive")
	b.setActive("podman.socket", "active")
	e := waitFor(t, ch, 10*time.Second, "podman active with its engine", answered("podman.socket"))
	if got := b.startCount("podman.service"); got != 2 {
		t.Errorf("%d StartUnit calls, want 2: %s", got, e)
	}
	if _, cold := b.probeCount(); cold != 0 {
		t.Errorf("%d probes of a socket whose service was not active", cold)
	}
}

// eventually waits until cond holds, and fails the test after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func ExampleSocketEngine_MayConnect() {
	for _, e := range []SocketEngine{
		{Unit: "podman.socket", State: StateInactive},
		{Unit: "docker.socket", State: StateListening, Masked: true},
	} {
		fmt.Println(e.Unit, e.MayConnect())
	}
	// Output:
	// podman.socket true
	// docker.socket false
}
