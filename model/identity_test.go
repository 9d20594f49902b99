package model

import "testing"

func TestEngineIdentity(t *testing.T) {
	svc := Engine{ID: "podman:/run/podman/podman.sock", Type: Podman, Endpoint: "/run/podman/podman.sock",
		Storage: "/var/lib/containers/storage", Version: "4.3.1"}
	dl := Engine{ID: "podman:/var/lib/containers/storage", Type: Podman, Endpoint: "/var/lib/containers/storage",
		Storage: "/var/lib/containers/storage", Daemonless: true}
	nested := func(e Engine) Engine {
		e.Prefix = "th"
		e.Endpoint = "/proc/812/root" + e.Endpoint
		return e
	}
	tests := []struct {
		name string
		e    Engine
		want Identity
	}{
		{"a podman service is named by its storage", svc,
			Identity{ID: "podman:/var/lib/containers/storage", Endpoint: "/var/lib/containers/storage"}},
		{"the daemonless view of that storage is named the same", dl,
			Identity{ID: "podman:/var/lib/containers/storage", Endpoint: "/var/lib/containers/storage"}},
		{"a podman in a container is named by its place and its storage there, through either view", nested(svc),
			Identity{ID: "podman:th:/var/lib/containers/storage", Endpoint: "/var/lib/containers/storage"}},
		{"and its daemonless view the same", nested(dl),
			Identity{ID: "podman:th:/var/lib/containers/storage", Endpoint: "/var/lib/containers/storage"}},
		{"a podman service whose storage is unknown keeps its own", Engine{ID: "podman:/s.sock", Type: Podman, Endpoint: "/s.sock"},
			Identity{ID: "podman:/s.sock", Endpoint: "/s.sock", ContainerVersion: true}},
		{"other engines keep their own", Engine{ID: "docker:abc", Type: Docker, Endpoint: "/run/docker.sock", Storage: "/x"},
			Identity{ID: "docker:abc", Endpoint: "/run/docker.sock", ContainerVersion: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.Identity(); got != tt.want {
				t.Errorf("Identity() = %+v, want %+v", got, tt.want)
			}
		})
	}
}
