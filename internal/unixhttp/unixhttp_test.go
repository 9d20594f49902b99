package unixhttp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve starts an HTTP server on a unix socket in a temporary directory and
// returns the socket's path; it is shut down at cleanup.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

func TestClients(t *testing.T) {
	sock := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-time.After(5 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		if r.Close {
			io.WriteString(w, "close "+r.URL.Path)
			return
		}
		io.WriteString(w, "keep "+r.URL.Path)
	}))
	get := func(t *testing.T, c *http.Client, url string) string {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	t.Run("a one-off client reaches the socket whatever the host and asks to close", func(t *testing.T) {
		if got := get(t, NewClient(sock, 0), "http://any-host.example/_ping"); got != "close /_ping" {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("a client's timeout bounds a request", func(t *testing.T) {
		_, err := NewClient(sock, 50*time.Millisecond).Get("http://d/slow")
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("err = %v, want a timeout", err)
		}
	})
	t.Run("a transport keeps its connection alive until its idle connections are closed", func(t *testing.T) {
		tr := NewTransport(sock)
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr}
		for range 2 {
			if got := get(t, c, "http://podman/v4.0.0/libpod/version"); got != "keep /v4.0.0/libpod/version" {
				t.Fatalf("got %q", got)
			}
		}
	})
	t.Run("a missing socket is a dial error", func(t *testing.T) {
		if _, err := NewClient(filepath.Join(t.TempDir(), "none.sock"), time.Second).Get("http://d/"); err == nil {
			t.Fatal("no error for a missing socket")
		}
	})
}
