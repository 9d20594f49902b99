package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	"google.golang.org/protobuf/proto"

	"github.com/agentd-dev/agentd/internal/wait"
)

// captureTransport is the HTTP transport of the OTLP/HTTP metric exporter.
// Like captureInterceptor for gRPC, it takes the requests the SDK exporter
// makes under a capture context instead of sending them, and answers them
// as accepted; OTLPMetrics then sends the round in few requests to the same
// URL with the same headers (see httpLink). Every other request goes out
// through base.
type captureTransport struct {
	base    http.RoundTripper
	timeout time.Duration
}

var _ http.RoundTripper = (*captureTransport)(nil)

// RoundTrip implements http.RoundTripper.
func (t *captureTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c, _ := req.Context().Value(captureKey{}).(*capture)
	if c == nil || req.Method != http.MethodPost {
		return t.base.RoundTrip(req)
	}
	body, err := readBody(req)
	if err != nil {
		return nil, fmt.Errorf("OTLP/HTTP capture: %w", err)
	}
	var r colmetricpb.ExportMetricsServiceRequest
	if err := proto.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("OTLP/HTTP capture: decode request: %w", err)
	}
	c.mu.Lock()
	c.resources = append(c.resources, r.GetResourceMetrics()...)
	if c.http == nil {
		h := req.Header.Clone()
		h.Del("Content-Length")
		c.http = &httpLink{client: &http.Client{Transport: t.base}, url: req.URL.String(), header: h, gzip: h.Get("Content-Encoding") == "gzip"}
		c.timeout = t.timeout
	}
	c.mu.Unlock()
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/x-protobuf"}},
		Body:    http.NoBody,
		Request: req,
	}, nil
}

// readBody reads a request's body, gunzipped when it is gzip-encoded.
func readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil {
		return nil, nil
	}
	defer req.Body.Close()
	var r io.Reader = req.Body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(req.Body)
		if err != nil {
			return nil, fmt.Errorf("gunzip request: %w", err)
		}
		defer zr.Close()
		r = zr
	}
	return io.ReadAll(r)
}

// httpLink is where the OTLP/HTTP exporter sends its requests: the URL,
// the headers (the configured ones and the exporter's Content-Type,
// Content-Encoding and User-Agent) and whether bodies are gzipped.
type httpLink struct {
	client *http.Client
	url    string
	header http.Header
	gzip   bool
}

// retryableHTTP are the status codes the OTLP specification retries.
var retryableHTTP = map[int]bool{http.StatusTooManyRequests: true, http.StatusBadGateway: true,
	http.StatusServiceUnavailable: true, http.StatusGatewayTimeout: true}

// invokeHTTP POSTs one request of records over link, retrying retryable
// failures as invoke does over gRPC, and reports rejected data points.
func (c *capture) invokeHTTP(ctx context.Context, req *wireRequest) error {
	var body bytes.Buffer
	var w io.Writer = &body
	var zw *gzip.Writer
	if c.http.gzip {
		zw = gzip.NewWriter(&body)
		w = zw
	}
	for _, r := range req.recs {
		if _, err := w.Write(*r); err != nil {
			return fmt.Errorf("OTLP/HTTP request: %w", err)
		}
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			return fmt.Errorf("OTLP/HTTP request: gzip: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		retry, err := c.postOnce(ctx, body.Bytes())
		if err == nil {
			return nil
		}
		if attempt >= len(retryWaits) || !retry || ctx.Err() != nil {
			return err
		}
		if !wait.Sleep(ctx, retryWaits[attempt]) {
			return err
		}
	}
}

// postOnce sends body once; retry says whether a failure may be retried.
func (c *capture) postOnce(ctx context.Context, body []byte) (retry bool, err error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.http.url, bytes.NewReader(body))
	if err != nil {
		return false, fmt.Errorf("OTLP/HTTP request to %s: %w", c.http.url, err)
	}
	hreq.Header = c.http.header.Clone()
	hreq.ContentLength = int64(len(body))
	resp, err := c.http.client.Do(hreq)
	if err != nil {
		return true, fmt.Errorf("OTLP/HTTP POST %s: %w", c.http.url, err)
	}
	defer resp.Body.Close()
	rb, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		msg := string(bytes.TrimSpace(rb))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return retryableHTTP[resp.StatusCode], fmt.Errorf("OTLP/HTTP POST %s: %s: %s", c.http.url, resp.Status, strconv.QuoteToGraphic(msg))
	}
	if rerr != nil || len(rb) == 0 {
		return false, nil
	}
	var r colmetricpb.ExportMetricsServiceResponse
	if proto.Unmarshal(rb, &r) == nil {
		if ps := r.GetPartialSuccess(); ps.GetRejectedDataPoints() > 0 {
			return false, fmt.Errorf("collector rejected %d data points: %s", ps.GetRejectedDataPoints(), ps.GetErrorMessage())
		}
	}
	return false, nil
}
