package testbed

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestStartCollectorOnUnixSocket(t *testing.T) {
	Require(t, Collector)
	sock := filepath.Join(t.TempDir(), "otel.sock")
	t.Run("the receiver listens on the socket and what arrives there reaches the files", func(t *testing.T) {
		c := StartCollector(t, WithUnixSocket(sock))
		if c.Endpoint() != "unix://"+sock {
			t.Fatalf("Endpoint() = %q, want unix://%s", c.Endpoint(), sock)
		}
		conn, err := grpc.NewClient(c.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		str := func(k, v string) *commonpb.KeyValue {
			return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
		}
		req := &colmetricspb.ExportMetricsServiceRequest{ResourceMetrics: []*metricspb.ResourceMetrics{{
			Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{str("container.id", "unix-socket-test")}},
			ScopeMetrics: []*metricspb.ScopeMetrics{{Metrics: []*metricspb.Metric{{
				Name: "container.pids.count", Unit: "{pid}",
				Data: &metricspb.Metric_Gauge{Gauge: &metricspb.Gauge{DataPoints: []*metricspb.NumberDataPoint{{
					TimeUnixNano: uint64(time.Now().UnixNano()), Value: &metricspb.NumberDataPoint_AsInt{AsInt: 3},
				}}}},
			}}}},
		}}}
		if _, err := colmetricspb.NewMetricsServiceClient(conn).Export(ctx, req); err != nil {
			t.Fatalf("export over %s: %v", c.Endpoint(), err)
		}
		c.WaitMetrics(t, 10*time.Second, func(m *Metrics) bool {
			return m.Metric(map[string]string{"container.id": "unix-socket-test"}, "container.pids.count") != nil
		})
		out := Run(t, CollectorBinary(), "validate", "--config=file:"+c.dir+"/config.yaml")
		if strings.Contains(strings.ToLower(out), "error") {
			t.Errorf("validate: %s", out)
		}
	})
	t.Run("cleanup stops the collector and removes the socket", func(t *testing.T) {
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("socket %s still there after cleanup: %v", sock, err)
		}
	})
	t.Run("a regular file at the socket path is refused, not removed", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "not-a-socket")
		if err := os.WriteFile(path, []byte("keep"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := removeStaleSocket(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("removeStaleSocket(regular file) = %v", err)
		}
		if _, err := os.Stat(path); err != nil {
			t.Errorf("the file was removed: %v", err)
		}
	})
}
