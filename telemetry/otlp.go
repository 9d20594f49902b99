package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// MetricSink receives one round of metrics: a ResourceMetrics per container
// and per engine. The batch is only valid during the call.
type MetricSink interface {
	ExportMetrics(ctx context.Context, batch []*metricdata.ResourceMetrics) error
	Shutdown(ctx context.Context) error
}

// ResourceExporter is what OTLPMetrics needs of an exporter;
// *otlpmetricgrpc.Exporter satisfies it.
type ResourceExporter interface {
	Export(ctx context.Context, rm *metricdata.ResourceMetrics) error
	Shutdown(ctx context.Context) error
}

// OTLPMetrics exports a round through a pool of exporters: each Export is one
// OTLP request carrying one resource (the SDK exporter takes one
// ResourceMetrics and serialises its uploads under a mutex), so each pool
// member has its own gRPC connection and the pool sends that many requests at
// once. See doc.go for the measured cost. Safe for concurrent use.
type OTLPMetrics struct {
	pool []ResourceExporter
}

var _ MetricSink = (*OTLPMetrics)(nil)

// NewOTLPMetrics returns a sink exporting through the given exporters (at
// least one), used concurrently one request each.
func NewOTLPMetrics(pool ...ResourceExporter) *OTLPMetrics { return &OTLPMetrics{pool: pool} }

// ExportMetrics sends every resource; failures are joined and the rest of the
// batch still goes out.
func (o *OTLPMetrics) ExportMetrics(ctx context.Context, batch []*metricdata.ResourceMetrics) error {
	if len(o.pool) == 0 {
		return fmt.Errorf("export metrics: %d resources: no exporter configured", len(batch))
	}
	errs := make([]error, len(batch))
	var wg sync.WaitGroup
	work := make(chan int)
	for _, ex := range o.pool {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				errs[i] = ex.Export(ctx, batch[i])
			}
		}()
	}
	for i := range batch {
		work <- i
	}
	close(work)
	wg.Wait()
	var failed int
	var first error
	for _, err := range errs {
		if err != nil {
			if failed == 0 {
				first = err
			}
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("export metrics: %d of %d resources failed, first: %w", failed, len(batch), first)
	}
	return nil
}

// Shutdown shuts every exporter down.
func (o *OTLPMetrics) Shutdown(ctx context.Context) error {
	var errs []error
	for _, ex := range o.pool {
		errs = append(errs, ex.Shutdown(ctx))
	}
	return errors.Join(errs...)
}

// NewOTLP builds the OTLP/gRPC metric sink (cfg.ExportConcurrency exporters)
// and log exporter. Settings left empty in cfg fall to the standard
// OTEL_EXPORTER_OTLP_* environment variables, which the exporters read.
func NewOTLP(ctx context.Context, cfg *Config) (MetricSink, sdklog.Exporter, error) {
	var mopts []otlpmetricgrpc.Option
	var lopts []otlploggrpc.Option
	if cfg.Endpoint != "" {
		if strings.HasPrefix(cfg.Endpoint, "unix:") {
			// A gRPC target (unix:///path): WithEndpointURL would keep only
			// the URL's empty host, WithEndpoint hands it to grpc.NewClient.
			mopts = append(mopts, otlpmetricgrpc.WithEndpoint(cfg.Endpoint))
			lopts = append(lopts, otlploggrpc.WithEndpoint(cfg.Endpoint))
		} else if strings.Contains(cfg.Endpoint, "://") {
			mopts = append(mopts, otlpmetricgrpc.WithEndpointURL(cfg.Endpoint))
			lopts = append(lopts, otlploggrpc.WithEndpointURL(cfg.Endpoint))
		} else {
			mopts = append(mopts, otlpmetricgrpc.WithEndpoint(cfg.Endpoint))
			lopts = append(lopts, otlploggrpc.WithEndpoint(cfg.Endpoint))
		}
	}
	if cfg.Insecure != nil && *cfg.Insecure {
		mopts = append(mopts, otlpmetricgrpc.WithInsecure())
		lopts = append(lopts, otlploggrpc.WithInsecure())
	}
	if len(cfg.Headers) > 0 {
		mopts = append(mopts, otlpmetricgrpc.WithHeaders(cfg.Headers))
		lopts = append(lopts, otlploggrpc.WithHeaders(cfg.Headers))
	}
	if cfg.Compression == "gzip" {
		mopts = append(mopts, otlpmetricgrpc.WithCompressor(cfg.Compression))
		lopts = append(lopts, otlploggrpc.WithCompressor(cfg.Compression))
	}
	n := max(cfg.ExportConcurrency, 1)
	pool := make([]ResourceExporter, 0, n)
	for range n {
		ex, err := otlpmetricgrpc.New(ctx, mopts...)
		if err != nil {
			for _, p := range pool {
				_ = p.Shutdown(ctx)
			}
			return nil, nil, fmt.Errorf("OTLP metric exporter: %w", err)
		}
		pool = append(pool, ex)
	}
	lex, err := otlploggrpc.New(ctx, lopts...)
	if err != nil {
		_ = NewOTLPMetrics(pool...).Shutdown(ctx)
		return nil, nil, fmt.Errorf("OTLP log exporter: %w", err)
	}
	return NewOTLPMetrics(pool...), lex, nil
}
