package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricpb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/agentd-dev/agentd/internal/wait"
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

// OTLPMetrics exports a round of ResourceMetrics as a few OTLP requests of
// up to perRequest resources each. The SDK's otlpmetricgrpc exporter sends
// one request per ResourceMetrics, which at 500 containers made export half
// of agentd's CPU. So the SDK exporter is kept for its dialled connection
// (endpoint, TLS, headers, compression and timeout of OTEL_EXPORTER_OTLP_*)
// and for transforming resources, but a gRPC client interceptor
// (captureInterceptor, installed by NewOTLP) takes its requests instead of
// sending them, and OTLPMetrics sends the round over the same connection
// with the same metadata and call options, in few requests:
//   - each resource goes through the SDK's transform once, the first round
//     it appears in (exported without metrics, and captured), and is
//     marshalled once; later rounds reuse it (the builder keeps a container's
//     resource while the container does not change);
//   - the metrics are written by wireRecords as protobuf records straight
//     into the buffer of their request, which the queue keeps and gRPC sends
//     as it is; what it does not encode goes through the SDK whole and is
//     marshalled into the same buffer.
//
// An exporter given to NewOTLPMetrics, without the interceptor, gets every
// ResourceMetrics through Export. Exports are serialized: safe for
// concurrent use.
type OTLPMetrics struct {
	exp        ResourceExporter
	perRequest int
	captured   bool // exp's requests pass captureInterceptor (NewOTLP)

	mu        sync.Mutex
	resources map[*resource.Resource]resourceWire // of the last round
	spare     map[*resource.Resource]resourceWire // the round before's, emptied for the next
	link      *capture                            // the connection the SDK's requests went to
	records   wireRecords
	reqSize   int // the largest request of the last round, to size the next's buffers

	// With a queue (NewOTLP), rounds are queued and sent by sender over
	// linkp, the connection link learned.
	queue  *Queue
	sender *sender
	linkp  link
}

// resourceWire is a resource as the SDK's transform made it, marshalled.
type resourceWire struct {
	enc    []byte
	schema string
}

var _ MetricSink = (*OTLPMetrics)(nil)

// DefaultResourcesPerRequest is how many resources one OTLP metrics request
// carries (about 2 KB each: far below the 4 MiB a collector accepts).
const DefaultResourcesPerRequest = 128

// NewOTLPMetrics returns a sink exporting every ResourceMetrics through exp
// (nil: every export fails), perRequest resources per OTLP request (0: the
// default).
func NewOTLPMetrics(exp ResourceExporter, perRequest int) *OTLPMetrics {
	if perRequest <= 0 {
		perRequest = DefaultResourcesPerRequest
	}
	return &OTLPMetrics{exp: exp, perRequest: perRequest}
}

// ExportMetrics sends every resource. A resource that cannot be sent does
// not stop the others; failures are joined.
func (o *OTLPMetrics) ExportMetrics(ctx context.Context, batch []*metricdata.ResourceMetrics) error {
	return o.exportRound(ctx, batchSource(batch))
}

// resourceSource is a round of ResourceMetrics as OTLPMetrics reads it:
// every entry's resource first, then each entry's metrics once, in order.
type resourceSource interface {
	// Len is the number of entries.
	Len() int
	// Resource is entry i's resource.
	Resource(i int) *resource.Resource
	// Metrics is entry i's ResourceMetrics, valid until the next call.
	Metrics(i int) *metricdata.ResourceMetrics
}

// batchSource is a batch made at once.
type batchSource []*metricdata.ResourceMetrics

func (b batchSource) Len() int                                  { return len(b) }
func (b batchSource) Resource(i int) *resource.Resource         { return b[i].Resource }
func (b batchSource) Metrics(i int) *metricdata.ResourceMetrics { return b[i] }

var _ roundSink = (*OTLPMetrics)(nil)

// exportRound sends every resource of src, each entry's metrics encoded
// before the next entry's are asked for.
func (o *OTLPMetrics) exportRound(ctx context.Context, src resourceSource) error {
	n := src.Len()
	if o.exp == nil {
		return fmt.Errorf("export metrics: %d resources: no exporter configured", n)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.captured {
		return o.exportEach(ctx, src)
	}
	if n == 0 {
		return nil
	}
	c := &capture{}
	cctx := context.WithValue(ctx, captureKey{}, c)
	var refused []error
	// export has the SDK transform rm and returns what it would have sent.
	export := func(rm *metricdata.ResourceMetrics) (*metricpb.ResourceMetrics, bool) {
		before := len(c.resources)
		if err := o.exp.Export(cctx, rm); err != nil {
			refused = append(refused, err)
		}
		if len(c.resources) != before+1 {
			return nil, false
		}
		return c.resources[before], true
	}
	seen := o.spare // empty
	if seen == nil {
		seen = make(map[*resource.Resource]resourceWire, n)
	}
	for i := range n {
		res := src.Resource(i)
		if r, ok := o.resources[res]; ok {
			seen[res] = r
		} else if got, ok := export(&metricdata.ResourceMetrics{Resource: res}); ok {
			enc, err := proto.Marshal(got.GetResource())
			if err != nil {
				refused = append(refused, fmt.Errorf("marshal resource: %w", err))
				continue
			}
			seen[res] = resourceWire{enc: enc, schema: got.GetSchemaUrl()}
		}
	}
	o.resources, o.spare = seen, o.resources
	clear(o.spare)
	if c.cc == nil && c.http == nil && o.link == nil {
		export(&metricdata.ResourceMetrics{}) // learn the connection
	}
	if c.cc != nil || c.http != nil {
		o.link = &capture{cc: c.cc, md: c.md, opts: c.opts, timeout: c.timeout, http: c.http}
		o.linkp.Store(o.link)
	}
	if o.link == nil {
		err := errors.Join(refused...)
		if err == nil {
			err = errors.New("no request reached its connection")
		}
		return fmt.Errorf("export metrics: %d resources: the OTLP exporter made no request: %w", n, err)
	}
	o.records.reset()
	var reqs []request
	var cur request
	largest := 0
	flush := func() {
		if cur.resources > 0 {
			largest = max(largest, len(cur.data))
			reqs = append(reqs, cur)
		}
		cur = request{}
	}
	for i := range n {
		res, ok := seen[src.Resource(i)]
		if !ok {
			continue // its resource was refused above
		}
		rm := src.Metrics(i)
		if cur.data == nil {
			cur.data = o.buffer(o.reqSize + o.reqSize/16)
		}
		if b, ok := o.records.appendRecord(cur.data, rm, res.enc, res.schema); ok {
			cur.data = b
		} else {
			got, ok := export(rm)
			if !ok {
				continue
			}
			b, err := appendMarshalled(cur.data, got)
			if err != nil {
				refused = append(refused, err)
				continue
			}
			cur.data = b
		}
		if cur.resources++; cur.resources == o.perRequest {
			flush()
		}
	}
	flush()
	o.reqSize = largest
	if o.queue != nil {
		o.queue.dropSpare() // this round's requests will leave theirs
	}
	var errs []error
	if len(refused) > 0 {
		errs = append(errs, fmt.Errorf("export metrics: the OTLP exporter refused %d resources, first: %w", len(refused), refused[0]))
	}
	if o.queue != nil {
		errs = append(errs, o.enqueue(reqs, n))
	} else {
		errs = append(errs, o.send(ctx, o.link, reqs, n))
	}
	return errors.Join(errs...)
}

// buffer returns an empty buffer of at least n bytes for a request: one a
// delivered request left in the queue, when there is a queue.
func (o *OTLPMetrics) buffer(n int) []byte {
	if o.queue != nil {
		return o.queue.lend(n)
	}
	return make([]byte, 0, n)
}

// request is an ExportMetricsServiceRequest as the records of its resources.
type request struct {
	data      []byte
	resources int
}

// appendMarshalled appends the record (see wireRecords) of a ResourceMetrics
// the SDK transformed to dst.
func appendMarshalled(dst []byte, rm *metricpb.ResourceMetrics) ([]byte, error) {
	n := proto.Size(rm)
	b := protowire.AppendVarint(protowire.AppendTag(dst, fieldRequestResourceMetrics, protowire.BytesType), uint64(n))
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, rm)
	if err != nil {
		return dst, fmt.Errorf("marshal resource metrics: %w", err)
	}
	return b, nil
}

// exportEach exports every resource through the exporter on its own.
func (o *OTLPMetrics) exportEach(ctx context.Context, src resourceSource) error {
	var errs []error
	for i := range src.Len() {
		if err := o.exp.Export(ctx, src.Metrics(i)); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("export metrics: %d of %d resources refused, first: %w", len(errs), src.Len(), errs[0])
	}
	return nil
}

// send sends the requests over link; of is the round's size.
func (o *OTLPMetrics) send(ctx context.Context, link *capture, reqs []request, of int) error {
	var errs []error
	sent := 0
	for _, r := range reqs {
		if err := link.invoke(ctx, rawRequest(r.data)); err != nil {
			errs = append(errs, err)
			continue
		}
		sent += r.resources
	}
	if len(errs) > 0 {
		return fmt.Errorf("export metrics: %d of %d resources not delivered, first: %w", of-sent, of, errs[0])
	}
	return nil
}

func (o *OTLPMetrics) Shutdown(ctx context.Context) error {
	if o.sender != nil {
		o.sender.stop(ctx)
	}
	if o.exp == nil {
		return nil
	}
	return o.exp.Shutdown(ctx)
}

// exportMethod is the gRPC method of OTLP metrics export.
const exportMethod = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"

type captureKey struct{}

// capture collects what the SDK exporter would have sent during one
// ExportMetrics: the resources, the connection, the outgoing metadata
// (headers) and the export timeout.
type capture struct {
	mu        sync.Mutex
	resources []*metricpb.ResourceMetrics
	cc        *grpc.ClientConn
	md        metadata.MD
	timeout   time.Duration
	opts      []grpc.CallOption
	http      *httpLink // the OTLP/HTTP exporter's, instead of cc (captureTransport)
}

// captureInterceptor takes the export requests made under a capture context
// instead of sending them, and answers them as accepted. Every other call,
// the batched sends among them, goes out as is.
func captureInterceptor(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c, _ := ctx.Value(captureKey{}).(*capture)
	r, ok := req.(*colmetricpb.ExportMetricsServiceRequest)
	if c == nil || !ok || method != exportMethod {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.resources = append(c.resources, r.GetResourceMetrics()...)
	if c.cc == nil {
		c.cc = cc
		c.md, _ = metadata.FromOutgoingContext(ctx)
		c.opts = opts
		if d, ok := ctx.Deadline(); ok {
			c.timeout = time.Until(d)
		}
	}
	return nil
}

// Retryable gRPC codes of the OTLP specification, and the waits between
// attempts (bounded by the caller's context).
var (
	retryable = map[codes.Code]bool{codes.Canceled: true, codes.DeadlineExceeded: true, codes.Aborted: true,
		codes.OutOfRange: true, codes.Unavailable: true, codes.DataLoss: true}
	retryWaits = []time.Duration{250 * time.Millisecond, time.Second}
)

// invoke sends one request over the captured connection, retrying
// retryable failures, and reports rejected data points as an error.
func (c *capture) invoke(ctx context.Context, req any) error {
	if r, ok := req.(rawRequest); ok && c.http != nil {
		return c.invokeHTTP(ctx, r)
	}
	if c.md != nil {
		ctx = metadata.NewOutgoingContext(ctx, c.md)
	}
	for attempt := 0; ; attempt++ {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if c.timeout > 0 {
			actx, cancel = context.WithTimeout(ctx, c.timeout)
		}
		resp := new(colmetricpb.ExportMetricsServiceResponse)
		err := c.cc.Invoke(actx, exportMethod, req, resp, append(c.opts, grpc.ForceCodecV2(exactCodec{}))...)
		cancel()
		if err == nil {
			if ps := resp.GetPartialSuccess(); ps.GetRejectedDataPoints() > 0 {
				return fmt.Errorf("collector rejected %d data points: %s", ps.GetRejectedDataPoints(), ps.GetErrorMessage())
			}
			return nil
		}
		if attempt >= len(retryWaits) || !retryable[status.Code(err)] || ctx.Err() != nil {
			return err
		}
		if !wait.Sleep(ctx, retryWaits[attempt]) {
			return err
		}
	}
}

// exactCodec is gRPC's protobuf codec, except that a rawRequest goes out as
// it is and a message is marshalled into a buffer of its own size.
// gRPC's codec takes buffers of 1 KiB and more from a pool whose size
// classes jump from 32 KiB to 1 MiB, and a round of metrics is a few requests
// of 100 KB and more: each processor's pool then kept a 1 MiB buffer alive
// between rounds, a third of agentd's live heap at 100 containers. A
// request's own buffer is garbage once it is written.
type exactCodec struct{}

func (exactCodec) Marshal(v any) (mem.BufferSlice, error) {
	if r, ok := v.(rawRequest); ok {
		return mem.BufferSlice{mem.SliceBuffer(r)}, nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("OTLP codec: marshal %T: not a protobuf message", v)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("OTLP codec: marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.SliceBuffer(b)}, nil
}

func (exactCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("OTLP codec: unmarshal into %T: not a protobuf message", v)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if err := proto.Unmarshal(buf.ReadOnlyData(), m); err != nil {
		return fmt.Errorf("OTLP codec: unmarshal %T: %w", v, err)
	}
	return nil
}

// Name is the content subtype: the same as gRPC's protobuf codec.
func (exactCodec) Name() string { return "proto" }
