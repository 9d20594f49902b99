package telemetry

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
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
		c.http = newHTTPLink(req, t.base)
		c.timeout = t.timeout
	}
	c.mu.Unlock()
	return accepted(req), nil
}

// logTransport is the HTTP transport of the OTLP/HTTP log exporter. Like
// logQueue.intercept over gRPC, it puts each request into the export queue
// instead of sending it and answers it as accepted; the first request's URL
// and headers become the link the events sender delivers over.
type logTransport struct {
	lq      *logQueue
	base    http.RoundTripper
	timeout time.Duration
}

var _ http.RoundTripper = (*logTransport)(nil)

// RoundTrip implements http.RoundTripper.
func (t *logTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost {
		return t.base.RoundTrip(req)
	}
	body, err := readBody(req)
	if err != nil {
		return nil, fmt.Errorf("OTLP/HTTP logs request: %w", err)
	}
	if t.lq.link.Load() == nil {
		t.lq.link.CompareAndSwap(nil, &capture{http: newHTTPLink(req, t.base), timeout: t.timeout})
	}
	if req.Context().Value(probeKey{}) == nil {
		if err := t.lq.q.Put(SignalEvents, body); err != nil {
			return nil, err
		}
	}
	return accepted(req), nil
}

// newHTTPLink is the link of an exporter's request: its URL and headers.
func newHTTPLink(req *http.Request, base http.RoundTripper) *httpLink {
	h := req.Header.Clone()
	h.Del("Content-Length")
	return &httpLink{client: &http.Client{Transport: base}, url: req.URL.String(), header: h, gzip: h.Get("Content-Encoding") == "gzip"}
}

// accepted is the answer of a request taken instead of sent.
func accepted(req *http.Request) *http.Response {
	return &http.Response{
		Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:  http.Header{"Content-Type": {"application/x-protobuf"}},
		Body:    http.NoBody,
		Request: req,
	}
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

// invokeHTTP POSTs one encoded request over link, retrying retryable
// failures as invoke does over gRPC, and reports rejected data points.
func (c *capture) invokeHTTP(ctx context.Context, data rawRequest) error {
	newResp := func() proto.Message { return new(colmetricpb.ExportMetricsServiceResponse) }
	for attempt := 0; ; attempt++ {
		rejected, retry, _, err := c.deliverHTTP(ctx, data, newResp)
		if err == nil {
			if rejected > 0 {
				return fmt.Errorf("collector rejected %d data points", rejected)
			}
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

// deliverHTTP POSTs one encoded request (uncompressed protobuf) to c's URL
// with its headers, gzipped when the exporter was configured so. A failure
// is retryable for the status codes the OTLP specification names and for
// errors of the connection; wait is the collector's Retry-After, or
// reconnectMaxDelay when the collector could not be reached.
func (c *capture) deliverHTTP(ctx context.Context, data []byte, newResp func() proto.Message) (rejected int64, retry bool, wait time.Duration, err error) {
	body := data
	if c.http.gzip {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		if _, err := zw.Write(data); err != nil {
			return 0, false, 0, fmt.Errorf("OTLP/HTTP request to %s: gzip: %w", c.http.url, err)
		}
		if err := zw.Close(); err != nil {
			return 0, false, 0, fmt.Errorf("OTLP/HTTP request to %s: gzip: %w", c.http.url, err)
		}
		body = b.Bytes()
	}
	timeout := c.timeout
	if timeout <= 0 {
		timeout = defaultAttemptTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.http.url, bytes.NewReader(body))
	if err != nil {
		return 0, false, 0, fmt.Errorf("OTLP/HTTP request to %s: %w", c.http.url, err)
	}
	hreq.Header = c.http.header.Clone()
	hreq.ContentLength = int64(len(body))
	resp, err := c.http.client.Do(hreq)
	if err != nil {
		// The collector is not there (refused, reset, timed out): try again
		// as often as gRPC reconnects, so a collector that is back gets the
		// queue within about a second, as over gRPC.
		return 0, true, reconnectMaxDelay, fmt.Errorf("OTLP/HTTP POST %s: %w", c.http.url, err)
	}
	defer resp.Body.Close()
	rb, rerr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode/100 != 2 {
		msg := string(bytes.TrimSpace(rb))
		if len(msg) > 200 {
			msg = msg[:200]
		}
		return 0, retryableHTTP[resp.StatusCode], retryAfter(resp.Header.Get("Retry-After"), time.Now()),
			fmt.Errorf("OTLP/HTTP POST %s: %s: %s", c.http.url, resp.Status, strconv.QuoteToGraphic(msg))
	}
	if rerr != nil || len(rb) == 0 {
		return 0, false, 0, nil
	}
	r := newResp()
	if proto.Unmarshal(rb, r) != nil {
		return 0, false, 0, nil
	}
	return rejectedOf(r), false, 0, nil
}

// retryAfter is the wait a Retry-After header asks for (seconds, or an HTTP
// date), 0 when there is none or it cannot be read.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		if s < 0 {
			return 0
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}
