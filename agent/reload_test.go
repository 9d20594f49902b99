package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/config"
)

func TestDiffSaysWhatAReloadRebuilds(t *testing.T) {
	base := config.Default()
	tests := []struct {
		name   string
		change func(*config.Config)
		want   Changes
	}{
		{"an unchanged file changes nothing", func(*config.Config) {}, Changes{}},
		{"a discovery interval only sets the interval", func(c *config.Config) { c.Discovery.Interval = config.Duration(time.Minute) },
			Changes{DiscoveryInterval: true}},
		{"an export endpoint rebuilds the telemetry", func(c *config.Config) { c.Export.Endpoint = "collector:4317" },
			Changes{Telemetry: true}},
		{"a label allowlist rebuilds the telemetry", func(c *config.Config) { c.Labels.Allowlist = []string{"app"} },
			Changes{Telemetry: true}},
		{"an engine filter reconciles the engines and rebuilds the telemetry", func(c *config.Config) { c.Filters.ExcludeEngines = []string{"podman"} },
			Changes{Telemetry: true, EngineFilters: true}},
		{"an image filter rebuilds only the telemetry", func(c *config.Config) { c.Filters.ExcludeImages = []string{"k8s.gcr.io/*"} },
			Changes{Telemetry: true}},
		{"a log level is the caller's", func(c *config.Config) { c.Log.Level = "debug" }, Changes{LogLevel: true}},
		{"a status socket waits for a restart", func(c *config.Config) { c.Status.Socket = "/run/x.sock" }, Changes{StatusSocket: true}},
		{"a proc root rebuilds everything", func(c *config.Config) { c.Discovery.ProcRoot = "/host/proc" },
			Changes{Rebuild: []string{"discovery.proc_root"}}},
		{"a host proc rebuilds everything", func(c *config.Config) { c.Host.Proc = "/host/proc" },
			Changes{Rebuild: []string{"host"}}},
		{"a host cgroup root rebuilds everything", func(c *config.Config) { c.Host.Cgroup = "/host/sys/fs/cgroup" },
			Changes{Rebuild: []string{"host"}}},
		{"a grace period rebuilds everything", func(c *config.Config) { c.Discovery.GracePeriod = config.Duration(time.Hour) },
			Changes{Rebuild: []string{"discovery.grace_period"}}},
		{"an endpoint filter rebuilds everything", func(c *config.Config) { c.Discovery.ExcludeEndpoints = []string{"/run/podman/podman.sock"} },
			Changes{Rebuild: []string{"discovery.include_endpoints/exclude_endpoints"}}},
		{"a request budget rebuilds everything", func(c *config.Config) { c.Engines.RequestBudget.Rate = 10 },
			Changes{Rebuild: []string{"engines.request_budget"}}},
		{"activation settings rebuild everything", func(c *config.Config) { c.Activation.ExcludeUnits = []string{"x.socket"} },
			Changes{Rebuild: []string{"activation"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next := config.Default()
			tt.change(&next)
			got := Diff(base, next)
			if !slices.Equal(got.Rebuild, tt.want.Rebuild) || got.Telemetry != tt.want.Telemetry ||
				got.DiscoveryInterval != tt.want.DiscoveryInterval || got.EngineFilters != tt.want.EngineFilters ||
				got.LogLevel != tt.want.LogLevel || got.StatusSocket != tt.want.StatusSocket {
				t.Errorf("Diff = %+v, want %+v", got, tt.want)
			}
		})
	}
}
