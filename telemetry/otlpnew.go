package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploggrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// reconnectMaxDelay caps the wait between two attempts to reach the
// collector; with gRPC's 20 % jitter a collector that is back is reached
// within 1.2 s, and the queued requests waiting for the connection go out
// then.
const reconnectMaxDelay = time.Second

// otlpLayer is the configuration's layer of OTLP settings: cfg.OTLP, with
// the fields Endpoint, Insecure, Headers and Compression of cfg filling
// what cfg.OTLP leaves unset.
func (c *Config) otlpLayer() OTLPSettings {
	l := c.OTLP
	if l.Endpoint == "" {
		l.Endpoint = c.Endpoint
	}
	if l.Insecure == nil {
		l.Insecure = c.Insecure
	}
	if len(l.Headers) == 0 {
		l.Headers = c.Headers
	}
	if l.Compression == "" {
		l.Compression = c.Compression
	}
	return l
}

// ResolveOTLP resolves the OTLP settings of cfg over the environment
// (cfg.Getenv, os.Getenv when nil); see the function ResolveOTLP.
func (c *Config) ResolveOTLP() (OTLPResolved, error) {
	getenv := c.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	return ResolveOTLP(getenv, c.otlpLayer())
}

// NewOTLP builds the OTLP metric sink and log exporter of cfg's resolved
// settings (see Config.ResolveOTLP), each over gRPC or HTTP/protobuf as its
// protocol says. Every setting is passed to the exporters explicitly, so the
// SDK's own reading of OTEL_EXPORTER_OTLP_* cannot override agentd's
// precedence. The metric exporter's requests are batched by OTLPMetrics
// (over gRPC and HTTP); with the delta temporality preference the sink sends
// monotonic sums as deltas.
//
// Neither sends itself: both put their requests in one export queue
// (cfg.QueueSize bytes, on disk under cfg.QueueDir when set), from which a
// sender per signal delivers them over the exporter's connection (gRPC) or
// to its URL with its headers (HTTP), retrying for as long as it takes;
// their Shutdown drains it until its context ends.
func NewOTLP(ctx context.Context, cfg *Config) (MetricSink, sdklog.Exporter, error) {
	res, err := cfg.ResolveOTLP()
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP settings: %w", err)
	}
	q, err := NewQueue(cfg.QueueSize, cfg.QueueDir, cfg.Log)
	if err != nil {
		return nil, nil, err
	}
	ms, err := newMetricSink(ctx, &res.Metrics, cfg.ResourcesPerRequest)
	if err != nil {
		return nil, nil, fmt.Errorf("OTLP metric exporter (%s to %s): %w", res.Metrics.Protocol, res.Metrics.Endpoint, err)
	}
	lq := &logQueue{q: q}
	lex, err := newLogExporter(ctx, &res.Logs, lq)
	if err != nil {
		_ = ms.Shutdown(ctx)
		return nil, nil, fmt.Errorf("OTLP log exporter (%s to %s): %w", res.Logs.Protocol, res.Logs.Endpoint, err)
	}
	ms.queue = q
	// Learn both links now: requests replayed from disk go out before the
	// first round and the first event.
	c := &capture{}
	_ = ms.exp.Export(context.WithValue(ctx, captureKey{}, c), &metricdata.ResourceMetrics{})
	if c.cc != nil || c.http != nil {
		ms.link = &capture{cc: c.cc, md: c.md, opts: c.opts, timeout: c.timeout, http: c.http}
		ms.linkp.Store(ms.link)
	}
	lq.probe(ctx, lex)
	ms.sender = startSender(ctx, q, SignalMetrics,
		deliverOver(&ms.linkp, exportMethod, func() proto.Message { return new(colmetricpb.ExportMetricsServiceResponse) }))
	ls := startSender(ctx, q, SignalEvents,
		deliverOver(&lq.link, logsExportMethod, func() proto.Message { return new(collogpb.ExportLogsServiceResponse) }))
	var sink MetricSink = ms
	if res.Temporality == TemporalityDelta {
		sink = NewDeltaSink(ms)
	}
	return sink, queuedLogs{Exporter: lex, q: q, sender: ls}, nil
}

// reconnectOption makes a collector that comes back reached within
// seconds: gRPC's own reconnect backoff grows to two minutes, so after a
// long outage exports kept failing long after the collector was up again.
func reconnectOption() grpc.DialOption {
	bo := backoff.DefaultConfig
	bo.MaxDelay = reconnectMaxDelay
	return grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 5 * time.Second})
}

// grpcCredentials are the transport credentials of s: plaintext, or TLS.
func grpcCredentials(s *OTLPSignal) (credentials.TransportCredentials, error) {
	if s.Insecure {
		return insecure.NewCredentials(), nil
	}
	tc, err := s.TLSConfig()
	if err != nil {
		return nil, err
	}
	return credentials.NewTLS(tc), nil
}

func grpcCompressor(s *OTLPSignal) string {
	if s.Gzip {
		return "gzip"
	}
	return "none"
}

func newMetricSink(ctx context.Context, s *OTLPSignal, perRequest int) (*OTLPMetrics, error) {
	if s.Protocol == ProtocolHTTPProtobuf {
		opts := []otlpmetrichttp.Option{
			otlpmetrichttp.WithEndpointURL(s.Endpoint),
			otlpmetrichttp.WithTimeout(s.Timeout),
			otlpmetrichttp.WithHeaders(s.Headers),
			otlpmetrichttp.WithCompression(otlpmetrichttp.NoCompression),
			// The queue's sender retries, for as long as it takes.
			otlpmetrichttp.WithRetry(otlpmetrichttp.RetryConfig{Enabled: false}),
		}
		if s.Gzip {
			opts = append(opts, otlpmetrichttp.WithCompression(otlpmetrichttp.GzipCompression))
		}
		// The exporter's requests go through captureTransport, which
		// OTLPMetrics batches as it does over gRPC; the client's transport
		// carries the TLS settings.
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if !s.Insecure {
			tc, err := s.TLSConfig()
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = tc
		}
		client := &http.Client{Transport: &captureTransport{base: tr, timeout: s.Timeout}, Timeout: s.Timeout}
		opts = append(opts, otlpmetrichttp.WithHTTPClient(client))
		exp, err := otlpmetrichttp.New(ctx, opts...)
		if err != nil {
			return nil, err
		}
		ms := NewOTLPMetrics(exp, perRequest)
		ms.captured = true
		return ms, nil
	}
	creds, err := grpcCredentials(s)
	if err != nil {
		return nil, err
	}
	opts := []otlpmetricgrpc.Option{
		otlpmetricgrpc.WithEndpoint(s.Endpoint),
		otlpmetricgrpc.WithTLSCredentials(creds),
		otlpmetricgrpc.WithTimeout(s.Timeout),
		otlpmetricgrpc.WithHeaders(s.Headers),
		otlpmetricgrpc.WithDialOption(grpc.WithChainUnaryInterceptor(captureInterceptor), reconnectOption()),
		// The queue's sender retries, for as long as it takes.
		otlpmetricgrpc.WithRetry(otlpmetricgrpc.RetryConfig{Enabled: false}),
	}
	// otlpmetricgrpc knows no "none" (it reports it to the global error
	// handler, and compresses nothing): say it only when a variable the
	// SDK reads would otherwise turn gzip on.
	if s.Gzip || os.Getenv("OTEL_EXPORTER_OTLP_COMPRESSION") != "" || os.Getenv("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION") != "" {
		opts = append(opts, otlpmetricgrpc.WithCompressor(grpcCompressor(s)))
	}
	exp, err := otlpmetricgrpc.New(ctx, opts...)
	if err != nil {
		return nil, err
	}
	ms := NewOTLPMetrics(exp, perRequest)
	ms.captured = true
	return ms, nil
}

// newLogExporter builds the log exporter of s, whose requests lq takes
// into the export queue: over gRPC by its interceptor, over HTTP by its
// transport.
func newLogExporter(ctx context.Context, s *OTLPSignal, lq *logQueue) (sdklog.Exporter, error) {
	if s.Protocol == ProtocolHTTPProtobuf {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		opts := []otlploghttp.Option{
			otlploghttp.WithEndpointURL(s.Endpoint),
			otlploghttp.WithTimeout(s.Timeout),
			otlploghttp.WithHeaders(s.Headers),
			otlploghttp.WithCompression(otlploghttp.NoCompression),
			otlploghttp.WithRetry(otlploghttp.RetryConfig{Enabled: false}),
		}
		if s.Gzip {
			opts = append(opts, otlploghttp.WithCompression(otlploghttp.GzipCompression))
		}
		if !s.Insecure {
			tc, err := s.TLSConfig()
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = tc
		}
		lt := &logTransport{lq: lq, base: tr, timeout: s.Timeout}
		opts = append(opts, otlploghttp.WithHTTPClient(&http.Client{Transport: lt, Timeout: s.Timeout}))
		return otlploghttp.New(ctx, opts...)
	}
	creds, err := grpcCredentials(s)
	if err != nil {
		return nil, err
	}
	return otlploggrpc.New(ctx,
		otlploggrpc.WithEndpoint(s.Endpoint),
		otlploggrpc.WithTLSCredentials(creds),
		otlploggrpc.WithTimeout(s.Timeout),
		otlploggrpc.WithHeaders(s.Headers),
		otlploggrpc.WithCompressor(grpcCompressor(s)),
		otlploggrpc.WithDialOption(grpc.WithChainUnaryInterceptor(lq.intercept), reconnectOption()),
		otlploggrpc.WithRetry(otlploggrpc.RetryConfig{Enabled: false}),
	)
}

// String describes the signal's settings for a log line (header values
// left out: they hold credentials).
func (s *OTLPSignal) String() string {
	names := make([]string, 0, len(s.Headers))
	for k := range s.Headers {
		names = append(names, k)
	}
	slices.Sort(names)
	return fmt.Sprintf("%s %s insecure=%t gzip=%t timeout=%v headers=[%s] ca=%q cert=%q", s.Protocol, s.Endpoint, s.Insecure, s.Gzip, s.Timeout, strings.Join(names, ","), s.CAFile, s.CertFile)
}
