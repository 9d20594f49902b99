package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// TestRunOTLPSettingsFromEveryLayer runs the real binary against a private
// collector that serves OTLP/HTTP with mutual TLS and requires a bearer
// token, with each setting coming from a different layer, some layers
// contradicting others: the command line's protocol and endpoint win over
// the file's and the environment's, the file's TLS files and temporality win
// over the environment's, and the token comes from the environment alone.
// The collector receiving the host Docker's containers, cumulative, proves
// the whole chain.
func TestRunOTLPSettingsFromEveryLayer(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Collector)
	certs := testbed.NewCerts(t)
	const token = "agentd-e2e-token"
	col := testbed.StartCollector(t, testbed.WithHTTPReceiver(), testbed.WithBearerToken(token),
		testbed.WithTLS(testbed.ReceiverTLS{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, ClientCAFile: certs.CAFile}))
	bin := buildAgentd(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agentd.yaml")
	body := "export:\n  interval: 1s\n  protocol: grpc\n  endpoint: https://127.0.0.1:1\n  temporality: cumulative\n  compression: gzip\n" +
		"  tls:\n    ca_file: " + certs.CAFile + "\n    cert_file: " + certs.ClientCert + "\n    key_file: " + certs.ClientKey + "\n" +
		"status:\n  socket: " + filepath.Join(dir, "agentd.sock") + "\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	startAgentdEnv(t, bin, []string{
		"OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:2",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=http://127.0.0.1:3",
		"OTEL_EXPORTER_OTLP_HEADERS=authorization=Bearer%20" + token,
		"OTEL_EXPORTER_OTLP_CERTIFICATE=" + certs.OtherCAFile,
		"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=delta",
		"OTEL_EXPORTER_OTLP_COMPRESSION=none",
	}, "run", "--config", cfg, "--otlp-protocol", "http/protobuf", "--otlp-endpoint", "https://"+col.HTTPEndpoint())
	m := col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool {
		for _, r := range m.ResourcesWith(map[string]string{"container.runtime.name": "docker"}) {
			if c := r.Metric("container.cpu.time"); c != nil && len(c.Points) > 0 {
				return true
			}
		}
		return false
	})
	for _, r := range m.ResourcesWith(map[string]string{"container.runtime.name": "docker"}) {
		if c := r.Metric("container.cpu.time"); c != nil && c.Temporality != "cumulative" {
			t.Errorf("container.cpu.time of %s is %s; the file's cumulative must win over the environment's delta", r.Attrs["container.name"], c.Temporality)
		}
	}
}
