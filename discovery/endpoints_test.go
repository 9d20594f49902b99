package discovery

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/agentd-dev/agentd/model"
)

func TestEndpointFilterAllows(t *testing.T) {
	const nested = "/proc/812/root/run/podman/podman.sock"
	tests := []struct {
		name             string
		f                EndpointFilter
		endpoint, inRoot string
		want             bool
	}{
		{name: "an empty filter lets everything through", endpoint: "/run/docker.sock", inRoot: "/run/docker.sock", want: true},
		{name: "an include of the reported path lets it through",
			f: EndpointFilter{Include: []string{"/run/docker.sock"}}, endpoint: "/run/docker.sock", inRoot: "/run/docker.sock", want: true},
		{name: "an include leaves out what it does not name",
			f: EndpointFilter{Include: []string{"/run/docker.sock"}}, endpoint: "/run/containerd/containerd.sock", inRoot: "/run/containerd/containerd.sock"},
		{name: "a star matches one path component",
			f: EndpointFilter{Include: []string{"/var/tmp/agentd-*/*.sock"}}, endpoint: "/var/tmp/agentd-podman-1/podman.sock", inRoot: "/var/tmp/agentd-podman-1/podman.sock", want: true},
		{name: "a star does not cross a slash",
			f: EndpointFilter{Include: []string{"/var/tmp/*.sock"}}, endpoint: "/var/tmp/agentd-podman-1/podman.sock", inRoot: "/var/tmp/agentd-podman-1/podman.sock"},
		{name: "the path inside the engine's root matches an engine in a container",
			f: EndpointFilter{Include: []string{"/run/podman/podman.sock"}}, endpoint: nested, inRoot: "/run/podman/podman.sock", want: true},
		{name: "the reported path of an engine in a container matches with a star for the PID",
			f: EndpointFilter{Include: []string{"/proc/*/root/run/podman/podman.sock"}}, endpoint: nested, inRoot: "/run/podman/podman.sock", want: true},
		{name: "an exclude leaves out what it names",
			f: EndpointFilter{Exclude: []string{"/run/podman/podman.sock"}}, endpoint: nested, inRoot: "/run/podman/podman.sock"},
		{name: "an exclude lets through what it does not name",
			f: EndpointFilter{Exclude: []string{"/run/podman/podman.sock"}}, endpoint: "/run/docker.sock", inRoot: "/run/docker.sock", want: true},
		{name: "an exclude wins over an include",
			f: EndpointFilter{Include: []string{"/run/*.sock"}, Exclude: []string{"/run/docker.sock"}}, endpoint: "/run/docker.sock", inRoot: "/run/docker.sock"},
		{name: "an unknown inside path matches on the reported one only",
			f: EndpointFilter{Include: []string{"/run/podman/podman.sock"}}, endpoint: nested},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.f.Allows(tt.endpoint, tt.inRoot); got != tt.want {
				t.Errorf("%+v.Allows(%q, %q) = %v, want %v", tt.f, tt.endpoint, tt.inRoot, got, tt.want)
			}
		})
	}
}

func TestInRoot(t *testing.T) {
	tests := []struct{ procRoot, endpoint, want string }{
		{"/proc", "/proc/812/root/run/podman/podman.sock", "/run/podman/podman.sock"},
		{"/host/proc", "/host/proc/1/root/run/docker.sock", "/run/docker.sock"},
		{"/proc", "/run/docker.sock", "/run/docker.sock"},
		{"/proc", "/proc/self/root/run/docker.sock", "/proc/self/root/run/docker.sock"},
		{"/proc", "/proc/812/cwd/docker.sock", "/proc/812/cwd/docker.sock"},
		{"/proc", "/procx/812/root/docker.sock", "/procx/812/root/docker.sock"},
	}
	for _, tt := range tests {
		if got := InRoot(tt.procRoot, tt.endpoint); got != tt.want {
			t.Errorf("InRoot(%q, %q) = %q, want %q", tt.procRoot, tt.endpoint, got, tt.want)
		}
	}
}

func TestEndpointFilterValidateNamesABadPattern(t *testing.T) {
	tests := []struct {
		name string
		f    EndpointFilter
		want string // "" for no error
	}{
		{name: "absolute patterns are fine", f: EndpointFilter{Include: []string{"/run/*.sock"}, Exclude: []string{"/proc/*/root/run/docker.sock"}}},
		{name: "a bad glob is named", f: EndpointFilter{Include: []string{"/run/[docker.sock"}}, want: `include[0] "/run/[docker.sock": bad glob pattern`},
		{name: "a relative pattern is named", f: EndpointFilter{Exclude: []string{"/ok", "docker.sock"}}, want: `exclude[1] "docker.sock": must be an absolute path pattern`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.f.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := New(Config{Endpoints: EndpointFilter{Include: []string{"x"}}}, newFakeEngines().families(), nil, nil); err == nil {
		t.Error("New took a relative endpoint pattern")
	}
}

// TestEndpointFilterLeavesSocketsUndialled scans the nested fake tree with
// filters: a socket left out is never probed, and no engine is reported at
// it; Add refuses it without probing.
func TestEndpointFilterLeavesSocketsUndialled(t *testing.T) {
	root := t.TempDir()
	writeNestedTree(t, root)
	host := filepath.Join(root, "1/root/run/docker.sock")
	podman := filepath.Join(root, "201/root/run/podman/podman.sock")
	inner := filepath.Join(root, "501/root/run/docker.sock")
	tests := []struct {
		name string
		f    EndpointFilter
		want []string // endpoints probed and found
	}{
		{name: "no filter probes every engine socket", want: []string{host, podman, inner}},
		{name: "a path inside the roots names the host's and the nested dockerd", f: EndpointFilter{Include: []string{"/run/docker.sock"}}, want: []string{host, inner}},
		{name: "a reported path names one engine", f: EndpointFilter{Include: []string{podman}}, want: []string{podman}},
		{name: "an exclude of the inner path leaves out both dockerds", f: EndpointFilter{Exclude: []string{"/run/docker.sock"}}, want: []string{podman}},
		{name: "an exclude of one reported path leaves out only that one", f: EndpointFilter{Exclude: []string{filepath.Join(root, "501/root/run/*.sock")}}, want: []string{host, podman}},
		{name: "an include nothing matches leaves out everything", f: EndpointFilter{Include: []string{"/nowhere/*.sock"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := newFakeEngines()
			d, err := New(Config{ProcRoot: root, Endpoints: tt.f}, fe.families(), nestedModel(root), nil)
			if err != nil {
				t.Fatal(err)
			}
			es, err := d.Scan(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			var found []string
			for _, e := range es {
				found = append(found, e.Endpoint)
			}
			slices.Sort(found)
			slices.Sort(tt.want)
			if !slices.Equal(found, slices.Compact(found)) || !slices.Equal(found, tt.want) {
				t.Errorf("engines at %v, want %v", found, tt.want)
			}
			fe.mu.Lock()
			for ep := range fe.probes {
				if !slices.Contains(tt.want, ep) {
					t.Errorf("%s was probed", ep)
				}
			}
			fe.mu.Unlock()
			// A process left out entirely is not retried as one that failed.
			for _, k := range []candKey{{100, 10}, {250, 25}, {502, 52}} {
				c := d.cands[k]
				if c == nil || c.failures != 0 {
					t.Errorf("candidate %v: %+v, want no failure counted", k, c)
				}
			}
			for _, ep := range []string{host, podman, inner} {
				if slices.Contains(tt.want, ep) {
					continue
				}
				before := fe.calls()
				if _, err := d.Add(context.Background(), ep, model.Docker, "x.socket"); !errors.Is(err, ErrFiltered) {
					t.Errorf("Add(%s) = %v, want ErrFiltered", ep, err)
				}
				if added := d.AddEngines("x.socket", []model.Engine{{ID: "x:" + ep, Type: model.Docker, Endpoint: ep}}); len(added) != 0 {
					t.Errorf("AddEngines took %v", added)
				}
				if fe.calls() != before {
					t.Errorf("Add probed %s", ep)
				}
			}
		})
	}
}
