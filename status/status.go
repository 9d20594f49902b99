package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/coreos/go-systemd/v22/activation"

	"github.com/agentd-dev/agentd/internal/unixhttp"
)

// Report is the JSON document served at /v1/status.
type Report struct {
	// Healthy is false when a part of the agent is failing (see Problems).
	Healthy bool `json:"healthy"`
	// Problems lists what is failing, one line each.
	Problems []string `json:"problems,omitempty"`
	// Version is the agent's version.
	Version string `json:"version"`
	// Since is when the agent started.
	Since time.Time `json:"since"`
	// Engines is the engine tree: engines on the host, with nested engines under
	// the container that holds them.
	Engines []EngineNode `json:"engines"`
}

// EngineNode is one engine in the tree.
type EngineNode struct {
	ID         string `json:"id"`
	Type       string `json:"type"`
	Version    string `json:"version,omitempty"`
	Endpoint   string `json:"endpoint"`
	PID        int    `json:"pid,omitempty"`
	Prefix     string `json:"prefix"`
	Unit       string `json:"unit,omitempty"`
	State      string `json:"state,omitempty"`
	Containers int    `json:"containers"`
	// Nested are engines running inside containers of this engine, by container.
	Nested []NestedGroup `json:"nested,omitempty"`
}

// NestedGroup is the engines inside one container of the parent engine.
type NestedGroup struct {
	ContainerID   string       `json:"container_id"`
	ContainerName string       `json:"container_name"`
	Engines       []EngineNode `json:"engines"`
}

// Source produces the current report. It is called once per request and must be
// safe for concurrent use.
type Source interface {
	Status(ctx context.Context) Report
}

// Listen returns the status listener: the first unix socket systemd passed
// (socket activation through agentd.socket) or, without one, a new socket at
// path (its directory is created 0755, the socket made 0660). The boolean
// reports whether systemd passed it.
func Listen(path string) (net.Listener, bool, error) {
	ls, err := activation.Listeners()
	if err != nil {
		return nil, false, fmt.Errorf("status: sockets passed by systemd: %w", err)
	}
	for _, l := range ls {
		if l != nil {
			return l, true, nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, false, fmt.Errorf("status socket %s: %w", path, err)
	}
	if err := removeStale(path); err != nil {
		return nil, false, err
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, false, fmt.Errorf("status socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, false, fmt.Errorf("status socket %s: %w", path, err)
	}
	return l, false, nil
}

// removeStale removes a socket file nobody listens on (left by a crash); a live
// socket is an error: another agent runs.
func removeStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("status socket %s: %w", path, err)
	}
	if st.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("status socket %s: exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("status socket %s: another agentd is listening", path)
	}
	return os.Remove(path)
}

// Serve answers status requests on l until ctx ends, then shuts down (waiting
// up to 2 s for requests in flight) and returns nil.
func Serve(ctx context.Context, l net.Listener, src Source, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, src.Status(r.Context()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		rep := src.Status(r.Context())
		code := http.StatusOK
		if !rep.Healthy {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, struct {
			Healthy  bool     `json:"healthy"`
			Problems []string `json:"problems,omitempty"`
		}{rep.Healthy, rep.Problems})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	select {
	case err := <-done:
		return fmt.Errorf("status server on %s: %w", l.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("status server shutdown", "err", err)
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("status server on %s: %w", l.Addr(), err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// Fetch asks the agent listening on socket for its report.
func Fetch(ctx context.Context, socket string) (Report, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agentd/v1/status", nil)
	if err != nil {
		return Report{}, err
	}
	resp, err := unixhttp.NewClient(socket, 0).Do(req)
	if err != nil {
		return Report{}, fmt.Errorf("agentd status at %s: %w", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return Report{}, fmt.Errorf("agentd status at %s: %w", socket, err)
	}
	var rep Report
	if err := json.Unmarshal(body, &rep); err != nil {
		return Report{}, fmt.Errorf("agentd status at %s: bad answer: %w", socket, err)
	}
	return rep, nil
}
