package containerd

import (
	"context"
	"fmt"
	"log/slog"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// Family describes containerd: containerd processes, the version and
// introspection probe and the watcher's Adapter. Its CRI plugin, on the same
// socket, is the cri family's. The probe and the adapter of an endpoint
// take their requests from its budget in budgets (nil: unlimited), which the
// cri family's on the same socket share.
func Family(budgets *engine.Budgets) engine.Family {
	return engine.Family{
		Name:  "containerd",
		Types: []model.EngineType{model.Containerd},
		Comms: []string{"containerd"},
		Probe: func(ctx context.Context, endpoint string) ([]model.Engine, error) {
			return probe(ctx, endpoint, budgets.For(endpoint))
		},
		NewAdapter: func(e model.Engine, log *slog.Logger) (engine.Adapter, error) {
			return newAdapter(e, log, budgets.For(e.Endpoint))
		},
	}
}

// Probe asks the containerd at endpoint for its version and server UUID (the
// engine's ID; "containerd:"+endpoint when it has none). It keeps to no
// request budget (Family's probe keeps to the endpoint's).
func Probe(ctx context.Context, endpoint string) ([]model.Engine, error) {
	return probe(ctx, endpoint, nil)
}

func probe(ctx context.Context, endpoint string, b *engine.Budget) ([]model.Engine, error) {
	conn, err := engine.DialGRPC(endpoint, append(dialOptions(), engine.GRPCOptions(b)...)...)
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", endpoint, err)
	}
	defer conn.Close()
	v, err := versionapi.NewVersionClient(conn).Version(ctx, &emptypb.Empty{})
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: version: %w", endpoint, err)
	}
	id := "containerd:" + endpoint
	if s, err := introspectionapi.NewIntrospectionClient(conn).Server(ctx, &emptypb.Empty{}); err == nil && s.GetUUID() != "" {
		id = s.GetUUID()
	}
	return []model.Engine{{ID: id, Type: model.Containerd, Version: v.GetVersion(), Endpoint: endpoint}}, nil
}
