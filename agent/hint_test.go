package agent

import (
	"strings"
	"testing"

	"github.com/agentd-dev/agentd/activation"
)

func TestNoEngineHint(t *testing.T) {
	units := []activation.SocketEngine{
		{Unit: "podman.socket", State: activation.StateListening},
		{Unit: "docker.socket", State: activation.StateRetired},
	}
	tests := []struct {
		name        string
		units       []activation.SocketEngine
		unitsLooked bool
		want, not   []string
	}{
		{"no unit found says so", nil, true, []string{"socket units listening on a path ending in", "docker.sock", "none found."}, nil},
		{"units that gave no engine are named, retired ones not", units, true, []string{"podman.socket (listening), no engine answered."}, []string{"docker.socket ("}},
		{"activation off says why units were not looked for", nil, false, []string{"activation.enabled is false"}, []string{"none found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NoEngineHint(Families(nil, "/proc"), tt.units, tt.unitsLooked)
			for _, w := range append(tt.want, "no container engine found.", "dockerd", "podman system service", "systemctl start docker.socket") {
				if !strings.Contains(got, w) {
					t.Errorf("hint lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(got, w) {
					t.Errorf("hint has %q:\n%s", w, got)
				}
			}
		})
	}
}
