package discovery

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/engine/cri"
	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/engine/podman"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/internal/unixhttp"
	"github.com/agentd-dev/agentd/internal/wait"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/watch"
)

// realFamilies is agentd's list of engine families, in its order (package
// agent's Families, which imports this package).
func realFamilies() engine.Families {
	return engine.Families{podman.Family(nil), docker.Family(nil), containerd.Family(nil), cri.Family(nil)}
}

// watchUntilListed gives discovery the model it places nested engines by, as
// the agent does: a watcher per engine (the families' real adapters) writing
// to store, until each has listed its engine's containers once. The watchers
// stop at cleanup.
func watchUntilListed(ctx context.Context, t *testing.T, store *model.Store, fams engine.Families, engines []model.Engine, log *slog.Logger) {
	t.Helper()
	sup := watch.NewSupervisor(store, fams, watch.Options{}, log)
	t.Cleanup(func() { _ = sup.Close() })
	for _, e := range engines {
		if err := sup.Add(ctx, e); err != nil {
			t.Fatalf("watch engine %s: %v", e.ID, err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		var unlisted []string
		for _, id := range sup.EngineIDs() {
			if w, ok := sup.Watcher(id); ok && w.Stats().Syncs == 0 {
				unlisted = append(unlisted, id)
			}
		}
		if len(unlisted) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("engines %q did not list their containers within 30 s", unlisted)
		}
		if !wait.Sleep(ctx, 50*time.Millisecond) {
			t.Fatal(ctx.Err())
		}
	}
}

// keepPodmanAlive activates the podman.service of the systemd host through its
// socket and holds a libpod event stream open so that podman (--time=5) does not
// exit during the test. The stream ends at cleanup.
func keepPodmanAlive(t *testing.T, socket string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://d/v4.0.0/libpod/events?stream=true", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := unixhttp.NewClient(socket, 0).Do(req)
	if err != nil {
		cancel()
		t.Fatalf("activate podman through %s: %v", socket, err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		wg.Wait()
	})
}

func TestDiscoversTestbedEngines(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Containerd, testbed.CRI, testbed.SystemdHost)
	th := testbed.SystemdHostName()
	thPID := testbed.SystemdHostPID(t)
	thID := testbed.Run(t, "docker", "inspect", "-f", "{{.Id}}", th)
	hostDockerID := testbed.Run(t, "docker", "info", "-f", "{{.ID}}")
	// The systemd host's Docker is socket-activated: start it (left running;
	// this test is not about activation).
	testbed.Run(t, "docker", "exec", th, "systemctl", "start", "docker.service")
	innerDockerID := testbed.Run(t, "docker", "exec", th, "docker", "info", "-f", "{{.ID}}")
	podmanSock := filepath.Join("/proc", fmt.Sprint(thPID), "root/run/podman/podman.sock")
	keepPodmanAlive(t, podmanSock)

	var logBuf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&syncWriter{w: &logBuf, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := model.NewStore(log)
	fams := realFamilies()
	d, err := New(Config{Interval: 200 * time.Millisecond}, fams, store, log)
	if err != nil {
		t.Fatal(err)
	}
	sub := d.Subscribe()
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// podman may take a moment to listen after activation: scan until it shows.
	var engines []model.Engine
	deadline := time.Now().Add(30 * time.Second)
	for {
		engines, err = d.Scan(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if find(engines, model.Podman, podmanSock) != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// The first pass knows no containers: the nested engines are placed by
	// the next pass, once the watchers have listed the containers.
	watchUntilListed(ctx, t, store, fams, engines, log)
	if engines, err = d.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("engines: %+v", engines)

	tests := []struct {
		name     string
		typ      model.EngineType
		endpoint string
		id       string
		prefix   string
		parentC  string
		parentE  string
	}{
		{"the host dockerd is found on the host", model.Docker, "/run/docker.sock", hostDockerID, "", "", ""},
		{"the host containerd is found on the host", model.Containerd, testbed.ContainerdSocket, "", "", "", ""},
		{"the host containerd's CRI plugin is a CRI engine on the same socket", model.CRI, testbed.ContainerdSocket, "cri:" + testbed.ContainerdSocket, "", "", ""},
		{"the podman of the systemd host is inside its container", model.Podman, podmanSock, "podman:" + podmanSock, th, thID, hostDockerID},
		{"the dockerd of the systemd host is inside its container", model.Docker, filepath.Join("/proc", fmt.Sprint(thPID), "root/run/docker.sock"), innerDockerID, th, thID, hostDockerID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := find(engines, tt.typ, tt.endpoint)
			if e == nil {
				t.Fatalf("no %s engine at %s; log:\n%s", tt.typ, tt.endpoint, logBuf.String())
			}
			if tt.id != "" && e.ID != tt.id {
				t.Errorf("ID = %q, want %q", e.ID, tt.id)
			}
			if e.Prefix != tt.prefix || e.ParentContainerID != tt.parentC || e.ParentEngineID != tt.parentE {
				t.Errorf("hierarchy = (%q, %q, %q), want (%q, %q, %q)", e.Prefix, e.ParentContainerID, e.ParentEngineID, tt.prefix, tt.parentC, tt.parentE)
			}
			if e.PID <= 0 || e.Version == "" {
				t.Errorf("PID %d, version %q: want both", e.PID, e.Version)
			}
			if tt.typ == model.Docker && e.APIVersion == "" {
				t.Errorf("no negotiated API version")
			}
		})
	}

	t.Run("Run publishes nothing new and probes nothing again in steady state", func(t *testing.T) {
		for len(sub.C()) > 0 {
			<-sub.C()
		}
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- d.Run(rctx) }()
		time.Sleep(700 * time.Millisecond)
		rcancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		for len(sub.C()) > 0 {
			c := <-sub.C()
			// Another test may start or stop an engine meanwhile; ours must stay.
			if c.Kind == EngineLost && (c.Engine.ID == hostDockerID || c.Engine.Endpoint == podmanSock) {
				t.Errorf("unexpected change %+v", c)
			}
		}
	})
}

func find(es []model.Engine, typ model.EngineType, endpoint string) *model.Engine {
	for i := range es {
		if es[i].Type == typ && es[i].Endpoint == endpoint {
			return &es[i]
		}
	}
	return nil
}

type syncWriter struct {
	w  *strings.Builder
	mu *sync.Mutex
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func TestAddProbesAnEndpointFromOutside(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.SystemdHost)
	thPID := testbed.SystemdHostPID(t)
	podmanSock := filepath.Join("/proc", fmt.Sprint(thPID), "root/run/podman/podman.sock")
	log := slog.New(slog.DiscardHandler)
	store := model.NewStore(log)
	fams := realFamilies()
	d, err := New(Config{ProbeTimeout: 10 * time.Second}, fams, store, log)
	if err != nil {
		t.Fatal(err)
	}
	// The hierarchy of an added engine comes from the engines a scan found
	// and the containers their watchers listed.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	engines, err := d.Scan(ctx)
	if err != nil {
		t.Fatal(err)
	}
	watchUntilListed(ctx, t, store, fams, engines, log)
	if _, err := d.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		hint model.EngineType
	}{
		{"a podman socket with a type hint is probed as podman", model.Podman},
		{"a podman socket without a hint is told from a Docker endpoint", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			es, err := d.Add(ctx, podmanSock, tt.hint, "podman.socket")
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 1 || es[0].Type != model.Podman || es[0].Unit != "podman.socket" || es[0].Prefix != testbed.SystemdHostName() {
				t.Fatalf("Add = %+v, want one podman engine of unit podman.socket under %s", es, testbed.SystemdHostName())
			}
		})
	}
	t.Run("a Docker socket without a hint is Docker, not podman", func(t *testing.T) {
		es, err := d.Add(ctx, testbed.DockerSocket, "", "")
		if err != nil {
			t.Fatal(err)
		}
		if len(es) != 1 || es[0].Type != model.Docker {
			t.Fatalf("Add = %+v, want one Docker engine", es)
		}
	})
	t.Run("a socket that is no engine is an error", func(t *testing.T) {
		bus := filepath.Join("/proc", fmt.Sprint(thPID), "root/run/dbus/system_bus_socket")
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if _, err := d.Add(ctx, bus, model.Docker, ""); err == nil {
			t.Fatal("D-Bus socket accepted as Docker")
		}
	})
}
