package activation

import (
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/engine/cri"
	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/engine/podman"
	"github.com/agentd-dev/agentd/model"
)

// testConfig is DefaultConfig with agentd's engine families.
func testConfig() Config {
	c := DefaultConfig()
	c.Families = engine.Families{podman.Family(nil), docker.Family(nil), containerd.Family(nil), cri.Family(nil)}
	return c
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		wantErr string
	}{
		{name: "the defaults with the families are valid", change: func(*Config) {}},
		{name: "no families is named", change: func(c *Config) { c.Families = nil }, wantErr: "activation.Config.Families: empty"},
		{name: "an empty extra suffix is named", change: func(c *Config) { c.ExtraSockets = []SocketSuffix{{Suffix: "/", Type: model.Podman}} }, wantErr: "activation.Config.ExtraSockets[0].Suffix"},
		{name: "an extra suffix of a type no family watches is named", change: func(c *Config) { c.ExtraSockets = []SocketSuffix{{Suffix: "x.sock", Type: "rkt"}} }, wantErr: `activation.Config.ExtraSockets[0].Type: no engine family watches type "rkt"`},
		{name: "a bad exclude pattern is named", change: func(c *Config) { c.ExcludeUnits = []string{"[x"} }, wantErr: "activation.Config.ExcludeUnits[0]"},
		{name: "a relative proc root is named", change: func(c *Config) { c.ProcRoot = "proc" }, wantErr: "activation.Config.ProcRoot"},
		{name: "a tcp bus address is named", change: func(c *Config) { c.HostBusAddresses = []string{"tcp:host=x"} }, wantErr: "activation.Config.HostBusAddresses[0]"},
		{name: "PID 1 is not a nested systemd", change: func(c *Config) { c.SystemdPIDs = []int{1} }, wantErr: "activation.Config.SystemdPIDs[0]"},
		{name: "a zero backoff is named by its field", change: func(c *Config) { c.MaxBackoff = 0 }, wantErr: "activation.Config.MaxBackoff: 0s is below 1ms"},
		{name: "a zero answer timeout is named by its field", change: func(c *Config) { c.AnswerTimeout = 0 }, wantErr: "activation.Config.AnswerTimeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
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

func TestConfigHasNoFileKeys(t *testing.T) {
	// The configuration file's schema is config.Config alone.
	typ := reflect.TypeFor[Config]()
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag; tag != "" {
			t.Errorf("Config.%s has the tag %s", typ.Field(i).Name, tag)
		}
	}
}

func TestSocketTypeComesFromTheFamiliesAndExtraSockets(t *testing.T) {
	c := testConfig()
	c.ExtraSockets = []SocketSuffix{{Suffix: "custom/engine.sock", Type: model.Docker}, {Suffix: "podman/docker.sock", Type: model.Podman}}
	for path, want := range map[string]struct {
		typ    model.EngineType
		family string
	}{
		"/run/podman/podman.sock":           {model.Podman, "podman"},
		"/run/user/1000/podman/podman.sock": {model.Podman, "podman"},
		"/run/docker.sock":                  {model.Docker, "docker"},
		"/var/run/docker.sock":              {model.Docker, "docker"},
		"/run/crio/crio.sock":               {model.CRI, "cri"},
		"/run/custom/engine.sock":           {model.Docker, "docker"},
		"/run/podman/docker.sock":           {model.Podman, "podman"},
		"/run/notdocker.sock":               {},
		"/run/engine.sock":                  {},
		"/run/containerd/containerd.sock":   {},
	} {
		typ, f, ok := c.socketFamily(path)
		if typ != want.typ || f.Name != want.family || ok != (want.typ != "") {
			t.Errorf("%s: got %q of family %q (%v), want %q of %q", path, typ, f.Name, ok, want.typ, want.family)
		}
	}
}

func TestSocketEngineEqualComparesEveryField(t *testing.T) {
	base := SocketEngine{Engines: []model.Engine{{ID: "a"}}}
	v := reflect.ValueOf(&base).Elem()
	for i := range v.NumField() {
		other := base
		other.Engines = slices.Clone(base.Engines)
		f := reflect.ValueOf(&other).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Int:
			f.SetInt(7)
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Slice:
			other.Engines[0].ID = "b"
		default:
			t.Fatalf("field %s of kind %s: teach this test", v.Type().Field(i).Name, f.Kind())
		}
		if base.Equal(other) {
			t.Errorf("Equal ignores %s", v.Type().Field(i).Name)
		}
	}
	if !base.Equal(SocketEngine{Engines: []model.Engine{{ID: "a"}}}) {
		t.Error("equal values are not Equal")
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
	cfg := testConfig()
	cfg.FindNested = false
	cfg.MaxBackoff = 50 * time.Millisecond
	cfg.HostBusAddresses = []string{
		unixAddress(filepath.Join(dir, "run/dbus/system_bus_socket")),
		unixAddress(filepath.Join(dir, "run/systemd/private")),
	}
	m, _, logs := runManager(t, cfg)
	time.Sleep(time.Second) // several retries
	if n := logs.Count("systemd D-Bus not reachable", "system_bus_socket", "no such file or directory"); n != 1 {
		t.Fatalf("%d log lines about the unreachable bus, want 1", n)
	}
	if len(m.Engines()) != 0 {
		t.Fatalf("engines without a bus: %v", m.Engines())
	}
}

func TestSubscriberCoalescesAndNeverBlocksThePublisher(t *testing.T) {
	m, err := New(testConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := m.Subscribe(ctx).C() // never read until all is published
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
	// The subscription's pump may have taken the first update before the
	// others came: that one is in flight, and the rest coalesce behind it.
	var got []SocketEngine
	for len(got) < 2 || !got[len(got)-1].Equal(other) {
		select {
		case u := <-ch:
			got = append(got, u)
		case <-time.After(5 * time.Second):
			t.Fatalf("got %v, then nothing", got)
		}
	}
	podmanStates := []State{}
	for _, u := range got[:len(got)-1] {
		podmanStates = append(podmanStates, u.State)
	}
	if n := len(podmanStates); n == 0 || n > 2 || podmanStates[n-1] != StateInactive {
		t.Fatalf("podman went %v before docker, want inactive (after at most one update in flight)", podmanStates)
	}
	late := m.Subscribe(ctx).C()
	if got := []SocketEngine{<-late, <-late}; got[0].Unit != "docker.socket" || got[1].State != StateInactive {
		t.Fatalf("a late subscriber got %v", got)
	}
	cancel()
	if _, open := <-ch; open {
		t.Fatal("channel open after the subscription's context ended")
	}
}
