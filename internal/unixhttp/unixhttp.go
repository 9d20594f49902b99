package unixhttp

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/agentd-dev/agentd/internal/unixsock"
)

// NewTransport returns an HTTP transport whose connections all go to the unix
// socket at socket, whatever the request URL's host, dialled through
// unixsock.Dial. Keep-alives are on with
// net/http's defaults: a caller that keeps the transport for many requests may
// tune its pool (MaxIdleConnsPerHost, IdleConnTimeout) and must call
// CloseIdleConnections when done with it. It is safe for concurrent use.
func NewTransport(socket string) *http.Transport {
	return &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return unixsock.Dial(ctx, socket)
		},
	}
}

// NewClient returns an HTTP client for one-off requests to the unix socket at
// socket: keep-alives are off, so every request dials a new connection that
// is closed with the response body and the client needs no cleanup. timeout
// bounds each request as http.Client.Timeout does (0: no limit beyond the
// request's context). It is safe for concurrent use.
func NewClient(socket string, timeout time.Duration) *http.Client {
	tr := NewTransport(socket)
	tr.DisableKeepAlives = true
	return &http.Client{Transport: tr, Timeout: timeout}
}
