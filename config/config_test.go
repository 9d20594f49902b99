package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/stats"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings; empty means valid
		check   func(t *testing.T, c Config)
	}{
		{name: "an empty file gives the defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c.Export.Interval.Std() != 10*time.Second || c.Events.FlushInterval.Std() != 100*time.Millisecond {
				t.Errorf("defaults not applied: %+v", c)
			}
		}},
		{name: "values override the defaults", yaml: "export:\n  endpoint: 127.0.0.1:4317\n  insecure: true\n  interval: 30s\nlabels:\n  allowlist: [app]\n", check: func(t *testing.T, c Config) {
			if c.Export.Endpoint != "127.0.0.1:4317" || !c.Export.Insecure || c.Export.Interval.Std() != 30*time.Second {
				t.Errorf("export = %+v", c.Export)
			}
			if len(c.Labels.Allowlist) != 1 || c.Labels.Allowlist[0] != "app" {
				t.Errorf("allowlist = %v", c.Labels.Allowlist)
			}
			if c.Discovery.Interval.Std() != 5*time.Second {
				t.Errorf("untouched default changed: %v", c.Discovery.Interval)
			}
		}},
		{name: "a bad duration names the line and value", yaml: "export:\n  interval: often\n", wantErr: []string{"agentd.yaml", "line 2", `"often"`}},
		{name: "an unknown key names the line and key", yaml: "export:\n  endpiont: x:1\n", wantErr: []string{"line 2", "endpiont"}},
		{name: "a too short interval names file, line, key and value", yaml: "\nexport:\n  interval: 10ms\n", wantErr: []string{"agentd.yaml:3", "export.interval", "10ms"}},
		{name: "an unknown engine type in a filter is refused", yaml: "filters:\n  exclude_engines: [lxc]\n", wantErr: []string{"filters.exclude_engines", "lxc", "unknown engine type"}},
		{name: "several problems are reported together", yaml: "log:\n  level: loud\nexport:\n  compression: zstd\n", wantErr: []string{"log.level", "loud", "export.compression", "zstd"}},
		{name: "malformed YAML is an error, not a panic", yaml: "export: [\n", wantErr: []string{"agentd.yaml"}},
		{name: "a unix socket endpoint is accepted", yaml: "export:\n  endpoint: unix:///run/otel.sock\n"},
		{name: "a unix socket endpoint must be absolute", yaml: "export:\n  endpoint: unix://run/otel.sock\n", wantErr: []string{"export.endpoint", "unix:///absolute/path"}},
		{name: "an unknown endpoint scheme is refused", yaml: "export:\n  endpoint: grpc://x:4317\n", wantErr: []string{"export.endpoint", "grpc://x:4317"}},
		{name: "a grace period no longer than the scan interval is refused", yaml: "discovery:\n  interval: 5s\n  grace_period: 5s\n", wantErr: []string{"discovery.grace_period", "5s"}},
		{name: "host.open_files is read, 0 keeps none", yaml: "host:\n  open_files: 0\n", check: func(t *testing.T, c Config) {
			if c.Host.OpenFiles != 0 || !c.IsSet("host.open_files") {
				t.Fatalf("host.open_files %d (set %t), want 0 as written", c.Host.OpenFiles, c.IsSet("host.open_files"))
			}
		}},
		{name: "a negative host.open_files is refused", yaml: "host:\n  open_files: -1\n", wantErr: []string{"agentd.yaml:2", "host.open_files", "-1", "between 0"}},
		{name: "a grace period is read", yaml: "discovery:\n  grace_period: 10m\n", check: func(t *testing.T, c Config) {
			if c.Discovery.GracePeriod.Std() != 10*time.Minute {
				t.Fatalf("grace period %s, want 10m", c.Discovery.GracePeriod.Std())
			}
		}},
		{name: "every OTLP key is read", yaml: "export:\n  protocol: http/protobuf\n  endpoint: https://c:4318\n  metrics_endpoint: https://m:4318/v1/metrics\n  logs_endpoint: https://l:4318/v1/logs\n  insecure: false\n  timeout: 5s\n  headers:\n    authorization: Bearer x\n  compression: none\n  tls:\n    ca_file: /etc/agentd/ca.pem\n    cert_file: /etc/agentd/c.pem\n    key_file: /etc/agentd/k.pem\n  temporality: delta\n", check: func(t *testing.T, c Config) {
			e := c.Export
			if e.Protocol != "http/protobuf" || e.Endpoint != "https://c:4318" || e.MetricsEndpoint != "https://m:4318/v1/metrics" || e.LogsEndpoint != "https://l:4318/v1/logs" ||
				e.Timeout.Std() != 5*time.Second || e.Headers["authorization"] != "Bearer x" || e.Compression != "none" ||
				e.TLS != (TLS{CAFile: "/etc/agentd/ca.pem", CertFile: "/etc/agentd/c.pem", KeyFile: "/etc/agentd/k.pem"}) || e.Temporality != "delta" {
				t.Errorf("export = %+v", e)
			}
			if !c.IsSet("export.insecure") || c.IsSet("discovery.interval") {
				t.Errorf("IsSet: export.insecure %t (written false), discovery.interval %t (not written)", c.IsSet("export.insecure"), c.IsSet("discovery.interval"))
			}
		}},
		{name: "bad OTLP values name their keys and values", yaml: "export:\n  protocol: http/json\n  temporality: sometimes\n  timeout: -1s\n  logs_endpoint: ftp://x:1\n  tls:\n    ca_file: ca.pem\n    cert_file: /c.pem\n",
			wantErr: []string{"export.protocol: http/json", "export.temporality: sometimes", "export.timeout: -1s", "export.logs_endpoint: ftp://x:1", "export.tls.ca_file: ca.pem", "export.tls.cert_file: /c.pem: needs export.tls.key_file"}},
		{name: "the export queue defaults to 32 MiB in memory", yaml: "", check: func(t *testing.T, c Config) {
			if c.Export.QueueSize != 32<<20 || c.Export.QueueDir != "" {
				t.Errorf("export = %+v", c.Export)
			}
		}},
		{name: "the export queue size takes units and a directory", yaml: "export:\n  queue_size: 64MiB\n  queue_dir: /var/lib/agentd/queue\n", check: func(t *testing.T, c Config) {
			if c.Export.QueueSize != 64<<20 || c.Export.QueueDir != "/var/lib/agentd/queue" {
				t.Errorf("export = %+v", c.Export)
			}
		}},
		{name: "the export queue size takes a number of bytes", yaml: "export:\n  queue_size: 2097152\n", check: func(t *testing.T, c Config) {
			if c.Export.QueueSize != 2<<20 {
				t.Errorf("queue_size = %d", c.Export.QueueSize)
			}
		}},
		{name: "a size that is no size names the line and value", yaml: "export:\n  queue_size: lots\n", wantErr: []string{"line 2", `"lots"`}},
		{name: "a too small export queue names the key", yaml: "export:\n  queue_size: 10KiB\n", wantErr: []string{"export.queue_size", "10240", "at least 1MiB"}},
		{name: "a relative export queue directory is refused", yaml: "export:\n  queue_dir: queue\n", wantErr: []string{"export.queue_dir", "absolute"}},
		{name: "a relative proc root is refused", yaml: "discovery:\n  proc_root: proc\n", wantErr: []string{"discovery.proc_root"}},
		{name: "a relative host proc is refused", yaml: "host:\n  proc: host/proc\n", wantErr: []string{"host.proc", "host/proc"}},
		{name: "the request budget defaults to 50 per second with bursts of 100", yaml: "", check: func(t *testing.T, c Config) {
			if c.Engines.RequestBudget != (RequestBudget{Rate: 50, Burst: 100}) {
				t.Errorf("request budget = %+v", c.Engines.RequestBudget)
			}
		}},
		{name: "the request budget is read", yaml: "engines:\n  request_budget:\n    rate: 2.5\n    burst: 5\n", check: func(t *testing.T, c Config) {
			if c.Engines.RequestBudget != (RequestBudget{Rate: 2.5, Burst: 5}) {
				t.Errorf("request budget = %+v", c.Engines.RequestBudget)
			}
		}},
		{name: "a request rate of 0 is unlimited and needs no burst", yaml: "engines:\n  request_budget:\n    rate: 0\n    burst: 0\n", check: func(t *testing.T, c Config) {
			if c.Engines.RequestBudget != (RequestBudget{}) {
				t.Errorf("request budget = %+v", c.Engines.RequestBudget)
			}
		}},
		{name: "endpoint patterns are read", yaml: "discovery:\n  include_endpoints: [/run/docker.sock, /var/tmp/engines-*/*.sock]\n  exclude_endpoints: [/run/podman/podman.sock]\n",
			check: func(t *testing.T, c Config) {
				if len(c.Discovery.IncludeEndpoints) != 2 || len(c.Discovery.ExcludeEndpoints) != 1 {
					t.Fatalf("discovery %+v", c.Discovery)
				}
			}},
		{name: "a bad endpoint glob names file, line, key and pattern", yaml: "discovery:\n  interval: 5s\n  include_endpoints: [/run/docker.sock, \"/run/[x\"]\n",
			wantErr: []string{"agentd.yaml:3", "discovery.include_endpoints", `item 2, "/run/[x"`, "bad glob pattern"}},
		{name: "a relative endpoint pattern is refused", yaml: "discovery:\n  exclude_endpoints: [docker.sock]\n",
			wantErr: []string{"agentd.yaml:2", "discovery.exclude_endpoints", `"docker.sock"`, "absolute path pattern"}},
		{name: "a negative request rate names file, line, key and value", yaml: "engines:\n  request_budget:\n    rate: -1\n", wantErr: []string{"agentd.yaml:3", "engines.request_budget.rate", "-1"}},
		{name: "a request rate that is not a number names the line", yaml: "engines:\n  request_budget:\n    rate: fast\n", wantErr: []string{"line 3", "fast"}},
		{name: "a request rate without a burst is refused", yaml: "engines:\n  request_budget:\n    rate: 10\n    burst: 0\n", wantErr: []string{"agentd.yaml:4", "engines.request_budget.burst", "0", "between 1 and"}},
		{name: "a too large burst is refused", yaml: "engines:\n  request_budget:\n    burst: 2000000\n", wantErr: []string{"engines.request_budget.burst", "2000000"}},
		{name: "an unknown key under engines names it", yaml: "engines:\n  request_budgit: {}\n", wantErr: []string{"line 2", "request_budgit"}},
		{name: "a relative host cgroup root is refused", yaml: "host:\n  cgroup: sys/fs/cgroup\n", wantErr: []string{"host.cgroup", "sys/fs/cgroup"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("/etc/agentd/agentd.yaml", []byte(tt.yaml))
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got none", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoad(t *testing.T) {
	t.Run("a missing file at the default path gives the defaults", func(t *testing.T) {
		c, err := Load(filepath.Join(t.TempDir(), "none.yaml"), false)
		if err != nil || c.Export.Interval.Std() != 10*time.Second {
			t.Fatalf("Load = %+v, %v", c, err)
		}
	})
	t.Run("a missing file named explicitly is an error", func(t *testing.T) {
		if _, err := Load(filepath.Join(t.TempDir(), "none.yaml"), true); !errors.Is(err, ErrInvalid) {
			t.Fatalf("want ErrInvalid, got %v", err)
		}
	})
	t.Run("a file is read and remembered", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "a.yaml")
		if err := os.WriteFile(p, []byte("log:\n  level: debug\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(p, true)
		if err != nil || c.Log.Level != "debug" || c.File() != p {
			t.Fatalf("Load = %+v, %v", c, err)
		}
	})
}

// The packaging test compares the whole shipped file with the defaults; this
// one checks the request budget's entry from here, where the tests are quick.
func TestShippedFileDocumentsTheRequestBudget(t *testing.T) {
	data, err := os.ReadFile("../packaging/agentd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, body, _ := strings.Cut(string(data), "\n\n") // the header is prose
	var b strings.Builder
	for _, line := range strings.Split(body, "\n") {
		b.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "# "), "#") + "\n")
	}
	cfg, err := Parse("uncommented.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.IsSet("engines.request_budget.rate") || !cfg.IsSet("engines.request_budget.burst") {
		t.Fatal("the shipped file does not show engines.request_budget")
	}
	if cfg.Engines != Default().Engines {
		t.Fatalf("shipped engines = %+v, defaults %+v", cfg.Engines, Default().Engines)
	}
}

// The default budget of kept files is the stats reader's own default.
func TestDefaultOpenFilesIsTheReadersDefault(t *testing.T) {
	if DefaultOpenFiles != stats.DefaultMaxOpenFiles {
		t.Fatalf("config.DefaultOpenFiles %d, stats.DefaultMaxOpenFiles %d: one default, written twice, has drifted", DefaultOpenFiles, stats.DefaultMaxOpenFiles)
	}
}
