package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"
)

// TestHTTPExportIsBatched checks the plumbing of OTLP/HTTP batching: a
// round goes out in few requests to the signal's URL, gzipped, with the
// configured headers, and a 503 is retried by the export queue's sender. (The real collector tests prove
// the data itself.)
func TestHTTPExportIsBatched(t *testing.T) {
	var mu sync.Mutex
	var paths []string
	var resources int
	fail := 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var req colmetricpb.ExportMetricsServiceRequest
		if err != nil || proto.Unmarshal(body, &req) != nil {
			t.Errorf("request does not decode: %v", err)
		}
		if r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("X-Agentd-Test") != "batched" || r.Header.Get("Content-Type") != "application/x-protobuf" {
			t.Errorf("request headers %v", r.Header)
		}
		paths = append(paths, r.URL.Path)
		resources += len(req.GetResourceMetrics())
	}))
	t.Cleanup(srv.Close)
	cfg := DefaultConfig()
	cfg.OTLP = OTLPSettings{Protocol: ProtocolHTTPProtobuf, Endpoint: srv.URL + "/otlp", Compression: "gzip", Headers: map[string]string{"x-agentd-test": "batched"}}
	cfg.Getenv = envOf(nil)
	ms, lx, err := NewOTLP(context.Background(), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = lx.Shutdown(context.Background()); _ = ms.Shutdown(context.Background()) })
	cs, es := fixedWorkload(300)
	batch := newBuilder(&cfg, Host{Name: "h"}, "test").build(time.Now(), cs, es)
	if err := ms.ExportMetrics(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	// The round was queued; its requests are sent (the first one after the
	// 503 again) by the queue's sender.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := resources
		mu.Unlock()
		if n >= len(batch) || time.Now().After(deadline) {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := (len(batch) + DefaultResourcesPerRequest - 1) / DefaultResourcesPerRequest
	if len(paths) != want || resources != len(batch) {
		t.Errorf("%d resources in %d requests, want %d in %d", resources, len(paths), len(batch), want)
	}
	for _, p := range paths {
		if p != "/otlp/v1/metrics" {
			t.Errorf("request to %s, want /otlp/v1/metrics", p)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 5, 8, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{" 120 ", 2 * time.Minute},
		{"-1", 0},
		{"soon", 0},
		{now.Add(30 * time.Second).Format(http.TimeFormat), 30 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.in, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
