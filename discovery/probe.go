package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	introspectionapi "github.com/containerd/containerd/api/services/introspection/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	versionapi "github.com/containerd/containerd/api/services/version/v1"
	"github.com/containerd/containerd/namespaces"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"
	dockerclient "github.com/docker/docker/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/internal/procfs"
	"github.com/agentd-dev/agentd/internal/unixhttp"
	"github.com/agentd-dev/agentd/model"
)

// ErrNotEngine is wrapped by probe errors for a socket that answered but not
// as the engine asked for (a Docker-compatible endpoint asked for libpod, a
// gRPC server without the CRI service). Discovery skips such sockets quietly.
var ErrNotEngine = errors.New("not an engine endpoint")

// probeFunc asks the socket at endpoint (a host path) whether an engine of the
// detector's family answers there, and returns what answered: one engine, or
// two for a containerd socket that also serves CRI. It honours ctx's deadline.
type probeFunc func(ctx context.Context, endpoint string) ([]model.Engine, error)

// detector recognises engine processes by comm (and, where comm is not enough,
// by cmdline) and names the probe that applies to their sockets.
type detector struct {
	name  string
	comm  string
	match func(cmdline []string) bool // nil: comm alone decides
	probe probeFunc
}

// detectors is the explicit list of engine families discovery knows.
func detectors() []detector {
	return []detector{
		{name: "dockerd", comm: "dockerd", probe: probeDocker},
		{name: "containerd", comm: "containerd", probe: probeContainerdAndCRI},
		{name: "crio", comm: "crio", probe: probeCRI},
		{name: "podman", comm: "podman", match: isPodmanService, probe: probePodman},
	}
}

// isPodmanService reports whether a podman command line runs the API service
// ("podman [global flags] system service [--time=N] [URI]"), long-running or
// socket-activated, as opposed to a one-off podman command.
func isPodmanService(cmdline []string) bool {
	for i := 1; i+1 < len(cmdline); i++ {
		if cmdline[i] == "system" && cmdline[i+1] == "service" {
			return true
		}
	}
	return false
}

// newDockerClient returns a Docker API client for a unix socket that negotiates
// the API version on its first request.
func newDockerClient(endpoint string) (*dockerclient.Client, error) {
	return dockerclient.NewClientWithOpts(
		dockerclient.WithHost("unix://"+endpoint),
		dockerclient.WithHTTPClient(unixhttp.NewClient(endpoint, 0)),
		dockerclient.WithAPIVersionNegotiation(),
	)
}

// probeDocker asks a Docker Engine API endpoint for its daemon ID and version.
func probeDocker(ctx context.Context, endpoint string) ([]model.Engine, error) {
	cli, err := newDockerClient(endpoint)
	if err != nil {
		return nil, fmt.Errorf("docker at %s: %w", endpoint, err)
	}
	defer cli.Close()
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

// dialGRPC returns a lazily connecting gRPC client connection to a unix socket.
func dialGRPC(endpoint string) (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// probeContainerdAndCRI asks a containerd socket for its version and server
// UUID, and the same socket's CRI runtime service (containerd's CRI plugin) for
// its runtime name; the CRI answer becomes a second engine with the same endpoint.
func probeContainerdAndCRI(ctx context.Context, endpoint string) ([]model.Engine, error) {
	conn, err := dialGRPC(endpoint)
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
	out := []model.Engine{{ID: id, Type: model.Containerd, Version: v.GetVersion(), Endpoint: endpoint}}
	if e, err := criVersion(ctx, conn, endpoint); err == nil {
		out = append(out, e)
	}
	return out, nil
}

// probeCRI asks a CRI runtime service (CRI-O) for its name and version.
func probeCRI(ctx context.Context, endpoint string) ([]model.Engine, error) {
	conn, err := dialGRPC(endpoint)
	if err != nil {
		return nil, fmt.Errorf("cri at %s: %w", endpoint, err)
	}
	defer conn.Close()
	e, err := criVersion(ctx, conn, endpoint)
	if err != nil {
		return nil, err
	}
	return []model.Engine{e}, nil
}

func criVersion(ctx context.Context, conn *grpc.ClientConn, endpoint string) (model.Engine, error) {
	v, err := runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		return model.Engine{}, fmt.Errorf("cri at %s: version: %w", endpoint, err)
	}
	typ := model.CRI
	if strings.EqualFold(v.RuntimeName, "cri-o") {
		typ = model.CRIO
	}
	return model.Engine{
		ID:         string(typ) + ":" + endpoint,
		Type:       typ,
		Version:    v.RuntimeVersion,
		APIVersion: v.RuntimeApiVersion,
		Endpoint:   endpoint,
	}, nil
}

// libpodVersionPath is the libpod version endpoint; podman 4 serves API 4.0.0
// and newer and answers the versioned path, a Docker-compatible endpoint 404s.
const libpodVersionPath = "/v4.0.0/libpod/version"

// probePodman asks the libpod REST API for podman's version. A socket that
// answers HTTP but not libpod (Docker, or podman's compat-only mode) yields an
// error wrapping ErrNotEngine.
func probePodman(ctx context.Context, endpoint string) ([]model.Engine, error) {
	var v struct {
		Version    string
		Components []struct {
			Name    string
			Version string
			Details map[string]string
		}
	}
	if err := libpodGet(ctx, endpoint, libpodVersionPath, &v); err != nil {
		return nil, err
	}
	if v.Version == "" {
		return nil, fmt.Errorf("podman at %s: version: empty answer: %w", endpoint, ErrNotEngine)
	}
	api := v.Version
	for _, c := range v.Components {
		if c.Name == "Podman Engine" && c.Details["APIVersion"] != "" {
			api = c.Details["APIVersion"]
		}
	}
	return []model.Engine{{
		ID:         string(model.Podman) + ":" + endpoint,
		Type:       model.Podman,
		Version:    v.Version,
		APIVersion: api,
		Endpoint:   endpoint,
	}}, nil
}

// libpodGet GETs a libpod API path from the podman socket at endpoint and
// decodes the JSON answer into out.
func libpodGet(ctx context.Context, endpoint, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://d"+path, nil)
	if err != nil {
		return fmt.Errorf("podman at %s: %w", endpoint, err)
	}
	resp, err := unixhttp.NewClient(endpoint, 0).Do(req)
	if err != nil {
		return fmt.Errorf("podman at %s: GET %s: %w", endpoint, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return fmt.Errorf("podman at %s: GET %s: %s: %w", endpoint, path, resp.Status, ErrNotEngine)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(out); err != nil {
		return fmt.Errorf("podman at %s: GET %s: decode: %w", endpoint, path, err)
	}
	return nil
}

// probeAny tries every family on an endpoint handed in from outside without a
// type hint: libpod first (podman also answers the Docker API), then Docker,
// then containerd with CRI, then CRI alone.
func probeAny(ctx context.Context, endpoint string) ([]model.Engine, error) {
	var errs []error
	for _, probe := range []probeFunc{probePodman, probeDocker, probeContainerdAndCRI, probeCRI} {
		es, err := probe(ctx, endpoint)
		if err == nil {
			return es, nil
		}
		if ctx.Err() != nil {
			return nil, errors.Join(append(errs, err)...)
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// probeFor returns the probe for an engine type hint; "" probes every family.
func probeFor(t model.EngineType) probeFunc {
	switch t {
	case model.Docker:
		return probeDocker
	case model.Containerd:
		return probeContainerdAndCRI
	case model.CRI, model.CRIO:
		return probeCRI
	case model.Podman:
		return probePodman
	}
	return probeAny
}

// EngineContainer is a running container as its engine lists it, with the PID
// of its init process in the engine's PID namespace.
type EngineContainer struct {
	// ID is the engine's container ID.
	ID string `json:"id"`
	// Name is the container name (Docker's without the leading "/"; containerd's
	// is its ID).
	Name string `json:"name"`
	// Namespace is the containerd namespace, "" for other engines.
	Namespace string `json:"namespace,omitempty"`
	// PID is the init process's PID as the engine sees it; 0 when not running.
	PID int `json:"pid,omitempty"`
}

// ListContainers lists the running containers of engine e with their init PIDs.
// CRI engines list nothing: their containers are containerd's (k8s.io
// namespace) or CRI-O's, whose PIDs the CRI API does not report. containerd's
// "moby" namespace is left out: those are Docker's containers, reported once
// under Docker.
func ListContainers(ctx context.Context, e model.Engine) ([]EngineContainer, error) {
	switch e.Type {
	case model.Docker:
		return listDocker(ctx, e.Endpoint)
	case model.Podman:
		return listPodman(ctx, e.Endpoint)
	case model.Containerd:
		return listContainerd(ctx, e.Endpoint)
	}
	return nil, nil
}

func listDocker(ctx context.Context, endpoint string) ([]EngineContainer, error) {
	cli, err := newDockerClient(endpoint)
	if err != nil {
		return nil, fmt.Errorf("docker at %s: %w", endpoint, err)
	}
	defer cli.Close()
	list, err := cli.ContainerList(ctx, container.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("docker at %s: list containers: %w", endpoint, err)
	}
	out := make([]EngineContainer, 0, len(list))
	var errs []error
	for _, c := range list {
		ins, err := cli.ContainerInspect(ctx, c.ID)
		if err != nil {
			if cerrdefs.IsNotFound(err) {
				continue // removed since the listing
			}
			errs = append(errs, fmt.Errorf("docker at %s: inspect container %s: %w", endpoint, c.ID, err))
			continue
		}
		ec := EngineContainer{ID: c.ID, Name: strings.TrimPrefix(ins.Name, "/")}
		if ins.State != nil {
			ec.PID = ins.State.Pid
		}
		out = append(out, ec)
	}
	return out, errors.Join(errs...)
}

func listPodman(ctx context.Context, endpoint string) ([]EngineContainer, error) {
	var list []struct {
		ID    string `json:"Id"`
		Names []string
		Pid   int
	}
	if err := libpodGet(ctx, endpoint, "/v4.0.0/libpod/containers/json", &list); err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := make([]EngineContainer, 0, len(list))
	for _, c := range list {
		ec := EngineContainer{ID: c.ID, Name: c.ID, PID: c.Pid}
		if len(c.Names) > 0 {
			ec.Name = c.Names[0]
		}
		out = append(out, ec)
	}
	return out, nil
}

func listContainerd(ctx context.Context, endpoint string) ([]EngineContainer, error) {
	conn, err := dialGRPC(endpoint)
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", endpoint, err)
	}
	defer conn.Close()
	nss, err := namespacesapi.NewNamespacesClient(conn).List(ctx, &namespacesapi.ListNamespacesRequest{})
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: list namespaces: %w", endpoint, err)
	}
	tasks := tasksapi.NewTasksClient(conn)
	var out []EngineContainer
	var errs []error
	for _, n := range nss.GetNamespaces() {
		ns := n.GetName()
		if ns == "moby" {
			continue
		}
		resp, err := tasks.List(namespaces.WithNamespace(ctx, ns), &tasksapi.ListTasksRequest{})
		if err != nil {
			errs = append(errs, fmt.Errorf("containerd at %s: namespace %s: list tasks: %w", endpoint, ns, err))
			continue
		}
		for _, t := range resp.Tasks {
			out = append(out, EngineContainer{ID: t.ID, Name: t.ID, Namespace: ns, PID: int(t.Pid)})
		}
	}
	return out, errors.Join(errs...)
}

// endpointAnchorPID returns N for an endpoint of the form ROOT/N/root/..., the
// process through whose root the endpoint is reached, or 0.
func endpointAnchorPID(procRoot, endpoint string) int {
	rest, ok := strings.CutPrefix(endpoint, strings.TrimSuffix(procRoot, "/")+"/")
	if !ok {
		return 0
	}
	num, rest, ok := strings.Cut(rest, "/")
	if !ok || !strings.HasPrefix(rest, "root/") {
		return 0
	}
	n, ok := procfs.ParsePID([]byte(num))
	if !ok {
		return 0
	}
	return n
}
