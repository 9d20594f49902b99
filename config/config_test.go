package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr []string // substrings; empty means valid
		check   func(t *testing.T, c Config)
	}{
		{name: "an empty file gives the defaults", yaml: "", check: func(t *testing.T, c Config) {
			if c.Export.Interval.Std() != 10*time.Second || c.Events.FlushInterval.Std() != time.Second {
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
		{name: "a relative proc root is refused", yaml: "discovery:\n  proc_root: proc\n", wantErr: []string{"discovery.proc_root"}},
		{name: "a relative host proc is refused", yaml: "host:\n  proc: host/proc\n", wantErr: []string{"host.proc", "host/proc"}},
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

func FuzzParse(f *testing.F) {
	f.Add([]byte("export:\n  interval: 10s\n"))
	f.Add([]byte("filters: {exclude_images: ['[']}"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse("fuzz.yaml", data)
	})
}
