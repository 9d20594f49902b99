package testbed

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// StartGateway starts a collector for t (it Requires the Collector part) that
// runs the configuration file at configPath as it is — a gateway configuration
// such as packaging/examples/gateway.yaml — with env added to its environment
// for the file's ${env:NAME} references. A second configuration, merged after
// the file, changes only what a private test instance needs: the OTLP/gRPC
// receiver moves to a free loopback port, the collector's own metrics are off
// (so it binds no other port), and the file's metrics and logs pipelines each
// gain a file exporter, so that Metrics and Logs read exactly what the gateway
// received from its clients while its own exporters forward it. It stops like
// StartCollector's in t's cleanup, and the returned value is used the same way.
func StartGateway(t testing.TB, configPath string, env map[string]string) *Otelcol {
	t.Helper()
	Require(t, Collector)
	abs, err := filepath.Abs(configPath)
	if err != nil {
		t.Fatalf("gateway: %v", err)
	}
	dir := t.TempDir()
	c := &Otelcol{
		dir:         dir,
		metricsFile: filepath.Join(dir, "metrics.jsonl"),
		logsFile:    filepath.Join(dir, "logs.jsonl"),
		outputFile:  filepath.Join(dir, "collector.log"),
		base:        abs,
	}
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c.env = append(c.env, k+"="+env[k])
	}
	if _, err := c.gatewayOverrides(); err != nil {
		t.Fatalf("gateway: %v", err)
	}
	const attempts = 5
	var lastErr error
	for i := 0; i < attempts; i++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("gateway: pick a free port: %v", err)
		}
		c.endpoint = "127.0.0.1:" + port
		err = c.start()
		if err == nil {
			t.Cleanup(func() { c.stop(t) })
			return c
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("gateway collector %s with %s: %v\ncollector output:\n%s", CollectorBinary(), abs, lastErr, c.output())
	return nil
}

// gatewayConfig is the part of a collector configuration gatewayOverrides reads.
type gatewayConfig struct {
	Receivers map[string]any `yaml:"receivers"`
	Service   struct {
		Pipelines map[string]struct {
			Receivers []string `yaml:"receivers"`
			Exporters []string `yaml:"exporters"`
		} `yaml:"pipelines"`
	} `yaml:"service"`
}

// gatewayOverrides is the configuration merged after c.base: see StartGateway.
// The base must have an otlp receiver and a metrics pipeline fed by it.
func (c *Otelcol) gatewayOverrides() (string, error) {
	b, err := os.ReadFile(c.base)
	if err != nil {
		return "", fmt.Errorf("gateway configuration: %w", err)
	}
	var base gatewayConfig
	if err := yaml.Unmarshal(b, &base); err != nil {
		return "", fmt.Errorf("gateway configuration %s: %w", c.base, err)
	}
	if _, ok := base.Receivers["otlp"]; !ok {
		return "", fmt.Errorf("gateway configuration %s: no otlp receiver", c.base)
	}
	metrics, ok := base.Service.Pipelines["metrics"]
	if !ok || !slices.Contains(metrics.Receivers, "otlp") {
		return "", fmt.Errorf("gateway configuration %s: no metrics pipeline fed by the otlp receiver", c.base)
	}
	q := func(s string) string {
		b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar and a flow sequence item
		return string(b)
	}
	list := func(names []string, extra string) string {
		out := make([]string, 0, len(names)+1)
		for _, n := range names {
			out = append(out, q(n))
		}
		return "[" + strings.Join(append(out, q(extra)), ", ") + "]"
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s
exporters:
  file/metrics:
    path: %s
    flush_interval: 100ms
  file/logs:
    path: %s
    flush_interval: 100ms
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      exporters: %s
`, q(c.endpoint), q(c.metricsFile), q(c.logsFile), list(metrics.Exporters, "file/metrics"))
	if logs, ok := base.Service.Pipelines["logs"]; ok {
		fmt.Fprintf(&sb, "    logs:\n      exporters: %s\n", list(logs.Exporters, "file/logs"))
	}
	return sb.String(), nil
}
