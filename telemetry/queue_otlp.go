package telemetry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	sdklog "go.opentelemetry.io/otel/sdk/log"
	collogpb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// logsExportMethod is the gRPC method of OTLP logs export.
const logsExportMethod = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"

// defaultAttemptTimeout bounds one delivery attempt when the exporter had
// no timeout of its own. An attempt waits for the connection to be ready
// (gRPC's WaitForReady), so during an outage it is also the wait between
// two attempts, and the first request after the collector is back goes out
// as soon as the connection is.
const defaultAttemptTimeout = 10 * time.Second

// rawRequest is an encoded export request, which exactCodec sends as it is.
type rawRequest []byte

// queueHolder is implemented by the sinks whose exports go through an
// export queue: the pipeline then reports the queue's deliveries as the
// export outcome, and the queue's own metrics.
type queueHolder interface {
	exportQueue() *Queue
}

// link is where a signal's requests go: the connection, metadata and call
// options the SDK exporter would have used, captured from its first call.
type link = atomic.Pointer[capture]

// deliverOver returns the deliverFunc that sends a queued request of
// method over the captured connection of l.
func deliverOver(l *link, method string, newResp func() proto.Message) deliverFunc {
	return func(ctx context.Context, data []byte) (int64, bool, time.Duration, error) {
		c := l.Load()
		if c == nil {
			// Nothing captured yet (NewOTLP probes at once): look again soon.
			return 0, true, time.Second, errors.New("no connection to the collector yet")
		}
		if c.http != nil {
			return c.deliverHTTP(ctx, data, newResp)
		}
		if c.md != nil {
			ctx = metadata.NewOutgoingContext(ctx, c.md)
		}
		timeout := c.timeout
		if timeout <= 0 {
			timeout = defaultAttemptTimeout
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		resp := newResp()
		opts := append(slices.Clip(c.opts), grpc.ForceCodecV2(exactCodec{}), grpc.WaitForReady(true))
		err := c.cc.Invoke(actx, method, rawRequest(data), resp, opts...)
		if err == nil {
			return rejectedOf(resp), false, 0, nil
		}
		st := status.Convert(err)
		wait := retryInfoDelay(st)
		code := st.Code()
		retry := retryable[code] || (code == codes.ResourceExhausted && wait > 0)
		if code == codes.DeadlineExceeded && ctx.Err() == nil && c.cc.GetState() != connectivity.Ready {
			// The attempt waited for the connection all along: that was
			// the wait, try again at once.
			wait = time.Millisecond
		}
		return 0, retry, wait, fmt.Errorf("export to %s: %w", c.cc.Target(), err)
	}
}

// rejectedOf counts what the collector rejected in a partial success.
func rejectedOf(resp proto.Message) int64 {
	switch r := resp.(type) {
	case *colmetricpb.ExportMetricsServiceResponse:
		return r.GetPartialSuccess().GetRejectedDataPoints()
	case *collogpb.ExportLogsServiceResponse:
		return r.GetPartialSuccess().GetRejectedLogRecords()
	}
	return 0
}

// retryInfoDelay is the delay a collector asked for in a RetryInfo detail of
// its status (the OTLP specification's throttling), 0 when none.
func retryInfoDelay(st *status.Status) time.Duration {
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

type probeKey struct{}

// logQueue takes the log exporter's requests (logIntercept, a gRPC client
// interceptor) into the export queue and sends them from there.
type logQueue struct {
	q    *Queue
	link link
}

func (l *logQueue) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	r, ok := req.(*collogpb.ExportLogsServiceRequest)
	if !ok || method != logsExportMethod {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	if l.link.Load() == nil {
		c := &capture{cc: cc, opts: opts}
		c.md, _ = metadata.FromOutgoingContext(ctx)
		if d, ok := ctx.Deadline(); ok {
			c.timeout = time.Until(d)
		}
		l.link.CompareAndSwap(nil, c)
	}
	if ctx.Value(probeKey{}) != nil {
		return nil
	}
	b, err := proto.Marshal(r)
	if err != nil {
		return fmt.Errorf("marshal logs request: %w", err)
	}
	return l.q.Put(SignalEvents, b)
}

// probe has the exporter make one request, which intercept keeps for its
// connection and does not send: a queue replayed from disk can then be
// sent before the first event of this run.
func (l *logQueue) probe(ctx context.Context, exp sdklog.Exporter) {
	_ = exp.Export(context.WithValue(ctx, probeKey{}, true), []sdklog.Record{{}})
}

// queuedLogs is the log exporter whose exports go to the export queue; its
// Shutdown drains the queue until the context ends.
type queuedLogs struct {
	sdklog.Exporter
	q      *Queue
	sender *sender
}

var _ queueHolder = queuedLogs{}

func (l queuedLogs) exportQueue() *Queue { return l.q }

func (l queuedLogs) Shutdown(ctx context.Context) error {
	l.sender.stop(ctx)
	return l.Exporter.Shutdown(ctx)
}

// enqueue puts each request into the queue, which keeps its buffer.
func (o *OTLPMetrics) enqueue(reqs []request, of int) error {
	var errs []error
	sent := 0
	for _, r := range reqs {
		if err := o.queue.Put(SignalMetrics, r.data); err != nil {
			errs = append(errs, err)
			continue
		}
		sent += r.resources
	}
	if len(errs) > 0 {
		return fmt.Errorf("export metrics: %d of %d resources not queued, first: %w", of-sent, of, errs[0])
	}
	return nil
}

func (o *OTLPMetrics) exportQueue() *Queue { return o.queue }
