package unixhttp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Bounds on what agentd reads from an engine's HTTP API.
const (
	// MaxAnswer bounds one answer's body (a list, an inspect, a version).
	MaxAnswer = 16 << 20
	// MaxLine bounds one line of a streamed answer (an event).
	MaxLine = 1 << 20
)

// ErrTooLarge is wrapped by a body read that went past MaxAnswer, or past
// MaxLine without a newline on a streamed answer.
var ErrTooLarge = errors.New("answer too large")

// Limit returns a transport that bounds the bodies of the answers rt
// returns: an answer to a request whose URL path ends with one of streams is
// read line by line and a line longer than MaxLine fails the read; any other
// answer longer than MaxAnswer fails the read. The failing read returns an
// error wrapping ErrTooLarge that names the path, never a silently cut body.
// It is safe for concurrent use when rt is.
func Limit(rt http.RoundTripper, streams ...string) http.RoundTripper {
	return &limitTransport{rt: rt, streams: streams}
}

type limitTransport struct {
	rt      http.RoundTripper
	streams []string
}

func (l *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := l.rt.RoundTrip(req)
	if err != nil || resp.Body == nil {
		return resp, err
	}
	lb := &limitBody{rc: resp.Body, path: req.URL.Path, max: MaxAnswer}
	for _, s := range l.streams {
		if strings.HasSuffix(req.URL.Path, s) {
			lb.max, lb.lines = MaxLine, true
		}
	}
	resp.Body = lb
	return resp, nil
}

// limitBody counts the bytes read (since the last newline when lines is
// set) and fails the read that passes max, and every read after it.
type limitBody struct {
	rc     io.ReadCloser
	path   string
	max    int64
	lines  bool
	n      int64
	failed bool
}

func (b *limitBody) Read(p []byte) (int, error) {
	if b.failed {
		return 0, b.tooLarge()
	}
	n, err := b.rc.Read(p)
	if !b.lines {
		b.n += int64(n)
	} else {
		for rest := p[:n]; ; {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				b.n += int64(len(rest))
				break
			}
			if b.n+int64(i) > b.max {
				b.n += int64(i)
				break
			}
			b.n, rest = 0, rest[i+1:]
		}
	}
	if b.n > b.max {
		// Fail this very read: a decoder that already holds a whole value
		// would not ask again.
		b.failed = true
		return 0, b.tooLarge()
	}
	return n, err
}

func (b *limitBody) tooLarge() error {
	if b.lines {
		return fmt.Errorf("%s: line longer than %d bytes: %w", b.path, b.max, ErrTooLarge)
	}
	return fmt.Errorf("%s: answer longer than %d bytes: %w", b.path, b.max, ErrTooLarge)
}

func (b *limitBody) Close() error { return b.rc.Close() }

// CloseIdleConnections closes the wrapped transport's idle connections.
func (l *limitTransport) CloseIdleConnections() {
	if c, ok := l.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
