package activation

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/model"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "the defaults are valid", change: func(*Config) {}},
		{name: "an empty suffix is named", change: func(c *Config) { c.Sockets = []SocketSuffix{{Suffix: "/", Type: model.Podman}} }, wantErr: "activation.sockets[0].suffix"},
		{name: "a bad exclude pattern is named", change: func(c *Config) { c.ExcludeUnits = []string{"[x"} }, wantErr: "activation.exclude_units[0]"},
		{name: "a relative proc root is named", change: func(c *Config) { c.ProcRoot = "proc" }, wantErr: "activation.proc_root"},
		{name: "a tcp bus address is named", change: func(c *Config) { c.HostBusAddresses = []string{"tcp:host=x"} }, wantErr: "activation.host_bus_addresses[0]"},
		{name: "PID 1 is not a nested systemd", change: func(c *Config) { c.SystemdPIDs = []int{1} }, wantErr: "activation.systemd_pids[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
			}
		})
	}
}

func TestEngineTypeMatchesSuffixes(t *testing.T) {
	c := DefaultConfig()
	for path, want := range map[string]model.EngineType{
		"/run/podman/podman.sock":           model.Podman,
		"/run/user/1000/podman/podman.sock": model.Podman,
		"/run/docker.sock":                  model.Docker,
		"/var/run/docker.sock":              model.Docker,
		"/run/notdocker.sock":               "",
		"/run/containerd/containerd.sock":   "",
	} {
		got, _ := c.engineType(path)
		if got != want {
			t.Errorf("%s: got %q, want %q", path, got, want)
		}
	}
}

func TestSocketEngineMayConnect(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    SocketEngine
		want bool
	}{
		{name: "a listening engine may be connected", e: SocketEngine{State: StateListening}, want: true},
		{name: "a masked listening engine may not", e: SocketEngine{State: StateListening, Masked: true}},
		{name: "an excluded inactive engine may not", e: SocketEngine{State: StateInactive, Excluded: true}},
		{name: "an active masked engine may, it runs already", e: SocketEngine{State: StateActive, Masked: true}, want: true},
		{name: "a retired engine may not", e: SocketEngine{State: StateRetired}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.MayConnect(); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHostPath(t *testing.T) {
	if got := hostPath("/proc", 0, "/run/docker.sock"); got != "/run/docker.sock" {
		t.Errorf("host: %s", got)
	}
	if got := hostPath("/host/proc", 812, "/run/podman/podman.sock"); got != "/host/proc/812/root/run/podman/podman.sock" {
		t.Errorf("nested: %s", got)
	}
}

func TestUnreachableHostBusIsLoggedOnceAndRunCarriesOn(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.FindNested = false
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.HostBusAddresses = []string{
		unixAddress(filepath.Join(dir, "run/dbus/system_bus_socket")),
		unixAddress(filepath.Join(dir, "run/systemd/private")),
	}
	m, _, logs := runManager(t, cfg)
	time.Sleep(time.Second) // several retries
	if n := logs.count("systemd D-Bus not reachable", "system_bus_socket", "no such file or directory"); n != 1 {
		t.Fatalf("%d log lines about the unreachable bus, want 1", n)
	}
	if len(m.Engines()) != 0 {
		t.Fatalf("engines without a bus: %v", m.Engines())
	}
}

func TestSubscriberCoalescesAndNeverBlocksThePublisher(t *testing.T) {
	m, err := New(DefaultConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := m.Subscribe(ctx) // never read until all is published
	e := SocketEngine{Type: model.Podman, Unit: "podman.socket", ListenPath: "/run/podman/podman.sock"}
	other := SocketEngine{Type: model.Docker, Unit: "docker.socket", ListenPath: "/run/docker.sock", State: StateListening}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, s := range []State{StateListening, StateActive, StateInactive} {
			e.State = s
			m.publish(e)
		}
		m.publish(other)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("publish blocked on a subscriber that does not read")
	}
	first, second := <-ch, <-ch
	if first.State != StateInactive || first.Unit != "podman.socket" || second != other {
		t.Fatalf("got %s then %s, want the last podman state then docker", first, second)
	}
	late := m.Subscribe(ctx)
	if got := []SocketEngine{<-late, <-late}; got[0].Unit != "docker.socket" || got[1].State != StateInactive {
		t.Fatalf("a late subscriber got %v", got)
	}
	cancel()
	if _, open := <-ch; open {
		t.Fatal("channel open after the subscription's context ended")
	}
}
