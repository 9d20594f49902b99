package enginetest

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// socketPath returns a path for a unix socket in a fresh directory short
// enough for sun_path (t.TempDir under a long fuzz test name is not), removed
// when the test ends.
func socketPath(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// HTTPAnswers is a fake Docker or libpod API: whatever the request's query
// or API version, every path of one kind gets the same answer bytes. /_ping
// answers OK with an API version header, so the Docker client negotiates.
type HTTPAnswers struct {
	// Version answers /info and /version.
	Version []byte
	// List answers /containers/json.
	List []byte
	// Inspect answers /containers/{id}/json.
	Inspect []byte
	// Events answers /events, then the stream ends.
	Events []byte
	// Status is the status of every answer but /_ping; 0 means 200.
	Status int
}

// ServeHTTP answers as HTTPAnswers describes.
func (a HTTPAnswers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	var body []byte
	switch {
	case strings.HasSuffix(p, "/_ping"):
		w.Header().Set("Api-Version", "1.45")
		_, _ = io.WriteString(w, "OK")
		return
	case strings.HasSuffix(p, "/info"), strings.HasSuffix(p, "/version"):
		body = a.Version
	case strings.HasSuffix(p, "/containers/json"):
		body = a.List
	case strings.Contains(p, "/containers/") && strings.HasSuffix(p, "/json"):
		body = a.Inspect
	case strings.HasSuffix(p, "/events"):
		body = a.Events
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if a.Status != 0 {
		w.WriteHeader(a.Status)
	}
	_, _ = w.Write(body)
}

// ServeHTTP serves h on a unix socket of the test's own and returns its
// path; the server stops when the test ends.
func ServeHTTP(t testing.TB, h http.Handler) string {
	t.Helper()
	sock := socketPath(t)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return sock
}

// ServeGRPC serves a gRPC server on a unix socket of the test's own that
// answers every call, whatever its service, with the wire bytes answer
// returns for the full method name ("/runtime.v1.RuntimeService/Version"):
// one message, then the call (unary or a server stream) ends. An answer of
// nil fails the call as Unimplemented. It returns the socket's path; the
// server stops when the test ends.
func ServeGRPC(t testing.TB, answer func(method string) []byte) string {
	t.Helper()
	sock := socketPath(t)
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.ForceServerCodecV2(rawCodec{}), grpc.UnknownServiceHandler(func(_ any, ss grpc.ServerStream) error {
		method, _ := grpc.MethodFromServerStream(ss)
		var req rawMessage
		if err := ss.RecvMsg(&req); err != nil {
			return err
		}
		b := answer(method)
		if b == nil {
			return status.Errorf(codes.Unimplemented, "fake server: no answer for %s", method)
		}
		m := rawMessage(b)
		return ss.SendMsg(&m)
	}))
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})
	return sock
}

// Exercise drives family f's probe and adapter against the socket at
// endpoint as discovery and the watcher do: probe, list, inspect a
// container, subscribe and read events until the stream fails, close. Each
// call is bounded by a deadline. It fails t when an answer is accepted that
// must not be (a container without an ID, a negative PID) or when an error
// does not name the engine's endpoint; a panic fails the fuzz target by
// itself.
func Exercise(t testing.TB, f engine.Family, endpoint string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	named := func(what string, err error) {
		t.Helper()
		if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
			errors.Is(err, engine.ErrIgnored) || errors.Is(err, engine.ErrMalformed) {
			return
		}
		if !strings.Contains(err.Error(), endpoint) {
			t.Errorf("%s %s: error does not name the endpoint %s: %v", f.Name, what, endpoint, err)
		}
	}
	checked := func(what string, cs ...model.Container) {
		t.Helper()
		for _, c := range cs {
			if err := engine.CheckContainer(c); err != nil {
				t.Errorf("%s %s accepted a bad container: %v", f.Name, what, err)
			}
		}
	}
	e := model.Engine{ID: "fuzz", Type: f.Types[0], Endpoint: endpoint}
	engines, err := f.Probe(ctx, endpoint)
	named("probe", err)
	if err == nil && len(engines) > 0 {
		e = engines[0]
		e.Endpoint = endpoint
	}
	a, err := f.NewAdapter(e, discardLogger())
	if err != nil {
		named("new adapter", err)
		return
	}
	if c, ok := a.(io.Closer); ok {
		defer c.Close()
	}
	cs, err := a.List(ctx)
	named("list", err)
	checked("list", cs...)
	for _, id := range []string{"fuzz", ""} {
		c, err := a.Inspect(ctx, id)
		named("inspect", err)
		if err == nil {
			checked("inspect", c)
		}
	}
	sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
	defer scancel()
	st, err := a.Subscribe(sctx)
	named("subscribe", err)
	if err != nil {
		return
	}
	defer st.Close()
	for range 64 {
		_, err := st.Next(sctx)
		named("next event", err)
		if err != nil && !errors.Is(err, engine.ErrIgnored) && !errors.Is(err, engine.ErrMalformed) {
			return
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// CheckAnswerBounds serves family f's adapter a container list past
// unixhttp.MaxAnswer and an event line past unixhttp.MaxLine (both JSON
// that would parse if read whole) and fails t unless List and the event
// stream fail with an error naming the endpoint and the bound.
func CheckAnswerBounds(t *testing.T, f engine.Family) {
	t.Helper()
	huge := `"` + strings.Repeat("x", 17<<20) + `"`
	sock := ServeHTTP(t, HTTPAnswers{
		List:   []byte(`[{"Id":` + huge + `}]`),
		Events: []byte(`{"Type":"container","Action":"start","Actor":{"ID":` + `"` + strings.Repeat("y", 2<<20) + `"}}` + "\n"),
	})
	a, err := f.NewAdapter(model.Engine{ID: "bounds", Type: f.Types[0], Endpoint: sock}, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := a.(io.Closer); ok {
		defer c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := func(what string, err error) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "longer than") {
			t.Errorf("%s %s past the bound: got %v, want an error naming %s and the bound", f.Name, what, err, sock)
		}
	}
	_, err = a.List(ctx)
	want("list", err)
	st, err := a.Subscribe(ctx)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	defer st.Close()
	_, err = st.Next(ctx)
	want("event", err)
}
