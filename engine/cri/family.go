package cri

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// Family describes the CRI runtime service: CRI-O's crio processes and
// containerd's CRI plugin (which serves on containerd's own socket), the CRI
// version probe and the watcher's Adapter. The probe and the adapter of an
// endpoint take their requests from its budget in budgets (nil: unlimited),
// shared with containerd's own API on the same socket.
func Family(budgets *engine.Budgets) engine.Family {
	return engine.Family{
		Name:  "cri",
		Types: []model.EngineType{model.CRI, model.CRIO},
		Comms: []string{"containerd", "crio"},
		Probe: func(ctx context.Context, endpoint string) ([]model.Engine, error) {
			return probe(ctx, endpoint, budgets.For(endpoint))
		},
		NewAdapter: func(e model.Engine, log *slog.Logger) (engine.Adapter, error) {
			return New(e, log, WithBudget(budgets.For(e.Endpoint)))
		},
		Sockets: []string{"crio.sock"},
	}
}

// Probe asks the CRI runtime service at endpoint for its name and version:
// a runtime naming itself cri-o is CRI-O, any other is reported as CRI. It
// keeps to no request budget (Family's probe keeps to the endpoint's).
func Probe(ctx context.Context, endpoint string) ([]model.Engine, error) {
	return probe(ctx, endpoint, nil)
}

func probe(ctx context.Context, endpoint string, b *engine.Budget) ([]model.Engine, error) {
	conn, err := engine.DialGRPC(endpoint, engine.GRPCOptions(b)...)
	if err != nil {
		return nil, fmt.Errorf("cri at %s: %w", endpoint, err)
	}
	defer conn.Close()
	v, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return nil, fmt.Errorf("cri at %s: version: %w", endpoint, err)
	}
	typ := model.CRI
	if strings.EqualFold(v.RuntimeName, "cri-o") {
		typ = model.CRIO
	}
	return []model.Engine{{
		ID:         string(typ) + ":" + endpoint,
		Type:       typ,
		Runtime:    runtimeName(v.RuntimeName),
		Version:    v.RuntimeVersion,
		APIVersion: v.RuntimeApiVersion,
		Endpoint:   endpoint,
	}}, nil
}

// runtimeName is the container.runtime.name of a CRI runtime naming itself
// name in its Version answer: lower case, CRI-O spelt as the semantic
// conventions' examples spell it ("cri-o"), "" when it names nothing.
func runtimeName(name string) string {
	name = strings.ToLower(strings.TrimSpace(name))
	if name == "crio" {
		return "cri-o"
	}
	return name
}
