package telemetry

import (
	"errors"
	"regexp"
	"testing"

	"github.com/agentd-dev/agentd/model"
)

func TestParseResourceAttributes(t *testing.T) {
	tests := []struct {
		name, in string
		want     map[string]string
		bad      string // part of the error when the value is rejected
	}{
		{"empty", "", map[string]string{}, ""},
		{"blanks only", "  ", map[string]string{}, ""},
		{"two pairs", "a=1,b=2", map[string]string{"a": "1", "b": "2"}, ""},
		{"blanks around keys and values", " a = 1 , b=2 ", map[string]string{"a": "1", "b": "2"}, ""},
		{"percent-decoded comma, equals and space", "deployment.environment.name=prod%2Ceu,x=a%3Db%20c",
			map[string]string{"deployment.environment.name": "prod,eu", "x": "a=b c"}, ""},
		{"an equals sign in a value stays", "k=a=b", map[string]string{"k": "a=b"}, ""},
		{"empty value", "k=", map[string]string{"k": ""}, ""},
		{"empty entries are skipped", "a=1,,b=2,", map[string]string{"a": "1", "b": "2"}, ""},
		{"unicode", "team=équipe%E2%9C%93", map[string]string{"team": "équipe✓"}, ""},
		{"the last of a repeated key wins", "a=1,a=2", map[string]string{"a": "2"}, ""},
		{"no equals sign rejects the whole value", "a=1,oops,b=2", nil, `entry 2 "oops" has no '='`},
		{"empty key", "=1", nil, "empty key"},
		{"bad escape in a value", "a=%zz", nil, `value of "a"`},
		{"bad escape in a key", "%g=1", nil, `key "%g"`},
		{"a container's attribute is agentd's", "a=1,container.id=x", nil, "entry 2: container.id is agentd's"},
		{"an engine's attribute is agentd's", "agentd.engine.id=x", nil, "agentd.engine.id is agentd's"},
		{"a pod's attribute is agentd's", "k8s.pod.name=x", nil, "k8s.pod.name is agentd's"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kv, err := ParseResourceAttributes(tt.in)
			if tt.bad != "" {
				if err == nil || !errors.Is(err, ErrResourceAttributes) || !regexp.MustCompile(regexp.QuoteMeta(tt.bad)).MatchString(err.Error()) {
					t.Fatalf("err = %v, want one naming %q", err, tt.bad)
				}
				if kv != nil {
					t.Fatalf("a rejected value gave attributes %v", kv)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, a := range kv {
				got[string(a.Key)] = a.Value.AsString()
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, got[k], v, got)
				}
			}
		})
	}
}

func TestInstanceID(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	a := InstanceID("0123456789abcdef0123456789abcdef", "h1")
	if !uuid.MatchString(a) {
		t.Fatalf("%q is not a version 5 UUID", a)
	}
	if b := InstanceID("0123456789abcdef0123456789abcdef", "renamed"); b != a {
		t.Errorf("a host renamed changed its instance ID: %s -> %s", a, b)
	}
	if b := InstanceID("fedcba9876543210fedcba9876543210", "h1"); b == a {
		t.Errorf("two machine-ids share the instance ID %s", a)
	}
	if b, c := InstanceID("", "h1"), InstanceID("", "h2"); b == c || !uuid.MatchString(b) {
		t.Errorf("without a machine-id the host name must tell hosts apart: %s, %s", b, c)
	}
}

func TestResourceIdentityFromTheEnvironment(t *testing.T) {
	host := Host{Name: "h1", ID: "0123456789abcdef0123456789abcdef", Version: "1.2.3"}
	engine := model.Engine{ID: "e1", Type: model.Docker}
	ctr := model.Container{ID: "c1", Name: "web"}
	tests := []struct {
		name string
		env  map[string]string
		want map[string]string
	}{
		{"defaults", nil, map[string]string{
			"service.name": "agentd", "service.version": "1.2.3",
			"service.instance.id": InstanceID(host.ID, host.Name), "host.name": "h1", "container.id": "c1"}},
		{"OTEL_RESOURCE_ATTRIBUTES adds and may rename the host and service", map[string]string{
			EnvResourceAttributes: "deployment.environment.name=prod,host.name=edge-1,service.name=fleet"},
			map[string]string{"deployment.environment.name": "prod", "host.name": "edge-1", "service.name": "fleet"}},
		{"OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES", map[string]string{
			EnvResourceAttributes: "service.name=fleet", EnvServiceName: "edge-agentd"},
			map[string]string{"service.name": "edge-agentd"}},
		{"host-wide Kubernetes attributes are the environment's to set", map[string]string{
			EnvResourceAttributes: "k8s.cluster.name=eu-1,k8s.node.name=n1"},
			map[string]string{"k8s.cluster.name": "eu-1", "k8s.node.name": "n1", "container.id": "c1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := host.WithEnvironment(func(k string) string { return tt.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, kv := range ContainerResource(h, &engine, &ctr, nil).Attributes() {
				got[string(kv.Key)] = kv.Value.AsString()
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
	if _, err := host.WithEnvironment(func(k string) string {
		return map[string]string{EnvResourceAttributes: "a=1,broken"}[k]
	}); !errors.Is(err, ErrResourceAttributes) {
		t.Errorf("a bad OTEL_RESOURCE_ATTRIBUTES gave %v, want ErrResourceAttributes", err)
	}
}

// TestAPodmanContainerIsOneResourceThroughEitherView: a podman service and
// the daemonless view of its storage give a container the same resource,
// and the engines' resources share its ID (each with the endpoint of its
// view, the service's with its version).
func TestAPodmanContainerIsOneResourceThroughEitherView(t *testing.T) {
	h := Host{Name: "h", ID: "m"}
	svc := model.Engine{ID: "podman:/proc/9/root/run/podman/podman.sock", Type: model.Podman, Version: "4.3.1",
		Endpoint: "/proc/9/root/run/podman/podman.sock", Storage: "/var/lib/containers/storage", Prefix: "th",
		ParentContainerID: "p", PID: 40, Connected: true}
	dl := model.Engine{ID: "podman:/proc/7/root/var/lib/containers/storage", Type: model.Podman,
		Endpoint: "/proc/7/root/var/lib/containers/storage", Storage: "/var/lib/containers/storage", Prefix: "th",
		ParentContainerID: "p", Daemonless: true, PID: 77, Connected: true}
	c := model.Container{ID: "c1", Name: "web", ImageName: "localhost/web", ImageTags: []string{"latest"}, ImageID: "abc"}
	a := ContainerResource(h, &svc, &c, nil)
	b := ContainerResource(h, &dl, &c, nil)
	if !a.Equal(b) {
		t.Errorf("the service's resource\n  %v\nand the daemonless view's\n  %v\ndiffer", a.Attributes(), b.Attributes())
	}
	if v, ok := a.Set().Value(AttrEngineID); !ok || v.AsString() != "podman:th:/var/lib/containers/storage" {
		t.Errorf("%s = %v, want the storage's identity", AttrEngineID, v)
	}
	se, de := EngineResource(h, &svc), EngineResource(h, &dl)
	x, _ := se.Set().Value(AttrEngineID)
	y, _ := de.Set().Value(AttrEngineID)
	if x != y {
		t.Errorf("engine resources: %s %q and %q", AttrEngineID, x.String(), y.String())
	}
	if v, _ := se.Set().Value(AttrEngineEndpoint); v.AsString() != svc.Endpoint {
		t.Errorf("the service's engine resource has endpoint %q, want its socket %s", v.AsString(), svc.Endpoint)
	}
	if v, ok := se.Set().Value("container.runtime.version"); !ok || v.AsString() != "4.3.1" {
		t.Errorf("the service's engine resource without its version: %v", se.Set())
	}
}
