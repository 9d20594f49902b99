package docker

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/docker/docker/client"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/unixhttp"
	"github.com/agentd-dev/agentd/internal/unixsock"
	"github.com/agentd-dev/agentd/model"
)

// Family describes Docker: dockerd processes, docker.sock socket units, the
// Engine API probe and the watcher's Adapter. The probe and the adapter of
// an endpoint take their requests from its budget in budgets (nil:
// unlimited).
func Family(budgets *engine.Budgets) engine.Family {
	return engine.Family{
		Name:  "docker",
		Types: []model.EngineType{model.Docker},
		Comms: []string{"dockerd"},
		Probe: func(ctx context.Context, endpoint string) ([]model.Engine, error) {
			return probe(ctx, endpoint, budgets.For(endpoint))
		},
		NewAdapter: func(e model.Engine, log *slog.Logger) (engine.Adapter, error) {
			return newAdapter(e, log, budgets.For(e.Endpoint))
		},
		Sockets: []string{"docker.sock"},
	}
}

// newClient returns an Engine API client for the unix socket at endpoint that
// keeps its connections alive, dials through unixsock.Dial (an endpoint
// under /proc/PID/root is resolved inside that root at every dial) and
// negotiates the API version on its first request. Answers are bounded
// (unixhttp.Limit): an event line at 1 MiB, any other answer at 16 MiB. Close
// releases its connections; the returned transport's idle connections are
// released with CloseIdleConnections. Every request takes a token of b
// first (nil: unlimited).
func newClient(endpoint string, b *engine.Budget) (*client.Client, *http.Transport, error) {
	tr := unixhttp.NewTransport(endpoint)
	tr.MaxIdleConns = 6
	tr.IdleConnTimeout = 30 * time.Second
	cli, err := client.NewClientWithOpts(
		client.WithHTTPClient(&http.Client{Transport: tr, CheckRedirect: client.CheckRedirect}),
		client.WithHost("unix://"+endpoint), client.WithAPIVersionNegotiation(),
		client.WithDialContext(func(ctx context.Context, _, _ string) (net.Conn, error) { return unixsock.Dial(ctx, endpoint) }),
		// Last: the limit wraps the transport the options above configured.
		client.WithHTTPClient(&http.Client{Transport: engine.Transport(b, unixhttp.Limit(tr, "/events")), CheckRedirect: client.CheckRedirect}))
	if err != nil {
		return nil, nil, err
	}
	return cli, tr, nil
}

// Probe asks the Engine API at endpoint for the daemon's ID and version,
// outside any request budget (Family's probe keeps to one).
func Probe(ctx context.Context, endpoint string) ([]model.Engine, error) {
	return probe(ctx, endpoint, nil)
}

func probe(ctx context.Context, endpoint string, b *engine.Budget) ([]model.Engine, error) {
	cli, tr, err := newClient(endpoint, b)
	if err != nil {
		return nil, fmt.Errorf("docker at %s: %w", endpoint, err)
	}
	defer tr.CloseIdleConnections()
	info, err := cli.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("docker at %s: info: %w", endpoint, err)
	}
	id := info.ID
	if id == "" {
		id = "docker:" + endpoint
	}
	return []model.Engine{{
		ID:         id,
		Type:       model.Docker,
		Version:    info.ServerVersion,
		APIVersion: cli.ClientVersion(),
		Endpoint:   endpoint,
	}}, nil
}
