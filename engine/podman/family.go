package podman

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/unixhttp"
	"github.com/agentd-dev/agentd/model"
)

// Family describes podman: "podman system service" processes (long-running
// or socket-activated), podman.sock socket units, the libpod probe and the
// watcher's Adapter. The probe and the adapter of an endpoint take their
// requests from its budget in budgets (nil: unlimited).
func Family(budgets *engine.Budgets) engine.Family {
	return engine.Family{
		Name:  "podman",
		Types: []model.EngineType{model.Podman},
		Comms: []string{"podman"},
		Match: IsService,
		Probe: func(ctx context.Context, endpoint string) ([]model.Engine, error) {
			return probe(ctx, endpoint, budgets.For(endpoint))
		},
		NewAdapter: func(e model.Engine, log *slog.Logger) (engine.Adapter, error) {
			return newAdapter(e, log, budgets.For(e.Endpoint))
		},
		Sockets: []string{"podman.sock"},
	}
}

// IsService reports whether a podman command line runs the API service
// ("podman [global flags] system service [--time=N] [URI]"), long-running or
// socket-activated, as opposed to a one-off podman command.
func IsService(cmdline []string) bool {
	for i := 1; i+1 < len(cmdline); i++ {
		if cmdline[i] == "system" && cmdline[i+1] == "service" {
			return true
		}
	}
	return false
}

// Probe asks the libpod REST API at endpoint for podman's version and
// storage root (model.Engine.Storage; "" when /info does not answer). A socket
// that answers HTTP but not libpod (Docker, or podman's compat-only mode)
// gives an error wrapping engine.ErrNotEngine. It keeps to no request
// budget (Family's probe keeps to the endpoint's).
func Probe(ctx context.Context, endpoint string) ([]model.Engine, error) {
	return probe(ctx, endpoint, nil)
}

func probe(ctx context.Context, endpoint string, b *engine.Budget) ([]model.Engine, error) {
	var v struct {
		Version    string
		Components []struct {
			Name    string
			Version string
			Details map[string]string
		}
	}
	hc := unixhttp.NewClient(endpoint, 0)
	hc.Transport = engine.Transport(b, unixhttp.Limit(hc.Transport))
	a := &Adapter{endpoint: endpoint, http: hc}
	if err := a.getJSON(ctx, "/version", &v); err != nil {
		if errors.Is(err, engine.ErrNotFound) {
			// A Docker-compatible endpoint has no libpod paths.
			err = fmt.Errorf("%w: %w", engine.ErrNotEngine, err)
		}
		return nil, fmt.Errorf("podman at %s: version: %w", endpoint, err)
	}
	if v.Version == "" {
		return nil, fmt.Errorf("podman at %s: version: empty answer: %w", endpoint, engine.ErrNotEngine)
	}
	api := v.Version
	for _, c := range v.Components {
		if c.Name == "Podman Engine" && c.Details["APIVersion"] != "" {
			api = c.Details["APIVersion"]
		}
	}
	// The storage root tells which daemonless view is the same podman
	// (model.Engine.Storage); without it both are reported.
	var info struct {
		Store struct {
			GraphRoot string `json:"graphRoot"`
		} `json:"store"`
	}
	if err := a.getJSON(ctx, "/info", &info); err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("podman at %s: info: %w", endpoint, err)
	}
	return []model.Engine{{
		ID:         string(model.Podman) + ":" + endpoint,
		Type:       model.Podman,
		Version:    v.Version,
		APIVersion: api,
		Endpoint:   endpoint,
		Storage:    info.Store.GraphRoot,
	}}, nil
}
