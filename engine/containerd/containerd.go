package containerd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	containersapi "github.com/containerd/containerd/api/services/containers/v1"
	contentapi "github.com/containerd/containerd/api/services/content/v1"
	imagesapi "github.com/containerd/containerd/api/services/images/v1"
	namespacesapi "github.com/containerd/containerd/api/services/namespaces/v1"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/containerd/namespaces"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// containerdMaxMsgSize is the largest gRPC message exchanged with containerd,
// as containerd's own client sets it (a list of containers carries their OCI
// specs).
const containerdMaxMsgSize = 16 << 20

// dialOptions make a connection that comes up in the background (the
// containerd client's own dial blocks and fails when the engine is down at that
// moment): a call made while the engine is down fails with Unavailable, which
// the Watcher retries with backoff.
func dialOptions() []grpc.DialOption {
	bo := backoff.DefaultConfig
	bo.MaxDelay = 3 * time.Second
	return []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: 5 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(containerdMaxMsgSize), grpc.MaxCallSendMsgSize(containerdMaxMsgSize)),
	}
}

// Labels that orchestrators put on containerd containers to name them, in the
// order Adapter consults them: nerdctl's name, the CRI plugin's
// container name, the CRI plugin's pod name (on sandbox containers).
var containerdNameLabels = []string{
	"nerdctl/name",
	"io.kubernetes.container.name",
	"io.kubernetes.pod.name",
}

// Adapter is the engine.Adapter for containerd's native API. It covers every
// containerd namespace (including moby, Docker's, and k8s.io, the CRI plugin's;
// deduplication against the Docker and CRI views happens in the Watcher, keyed
// on model.Container.Namespace, which is set on every container and engine.Change).
//
// Container IDs are unique only within a namespace: Inspect accepts
// "NAMESPACE/ID" (containerd IDs cannot contain "/") and otherwise searches the
// namespaces in name order.
//
// PIDs are reported for created, running and paused tasks (a created task's
// init process exists, waiting to be started), as containerd reports them,
// i.e. in containerd's own PID namespace:
// for the host containerd that is the host PID, for a containerd nested in a
// container they need translating (NSpid), which the caller does.
//
// containerd keeps no record of a task once it is deleted, so a container whose
// task exited and was deleted would look like one never started. The adapter
// remembers exits it saw (in List, Inspect or on the event stream) for as long
// as the container exists and reports such containers as exited with that
// exit status; containers without a task and without a remembered exit are
// reported as created.
//
// A Adapter is safe for concurrent use. Close releases its connection.
type Adapter struct {
	engine     model.Engine
	log        *slog.Logger
	conn       *grpc.ClientConn
	namespaces namespacesapi.NamespacesClient
	containers containersapi.ContainersClient
	tasks      tasksapi.TasksClient
	images     *ctrdImageResolver
	endpoint   string

	mu    sync.Mutex
	exits map[string]containerdExit // key: namespace + "/" + id
}

// containerdExit is a remembered task exit.
type containerdExit struct {
	code int
	at   time.Time
}

var _ engine.Adapter = (*Adapter)(nil)

// New connects to the containerd at e.Endpoint (a host path such
// as /run/containerd/containerd.sock or /proc/PID/root/run/containerd/containerd.sock).
// It does not wait for the engine: an engine that is down now is reached when
// it answers again (the Watcher retries). Its calls keep to no request
// budget (Family's adapters keep to their endpoint's).
func New(e model.Engine, log *slog.Logger) (*Adapter, error) {
	return newAdapter(e, log, nil)
}

func newAdapter(e model.Engine, log *slog.Logger, b *engine.Budget) (*Adapter, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	conn, err := engine.DialGRPC(e.Endpoint, append(dialOptions(), engine.GRPCOptions(b)...)...)
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: connect: %w", e.Endpoint, err)
	}
	return &Adapter{
		engine:     e,
		log:        log,
		conn:       conn,
		namespaces: namespacesapi.NewNamespacesClient(conn),
		containers: containersapi.NewContainersClient(conn),
		tasks:      tasksapi.NewTasksClient(conn),
		images:     newCtrdImageResolver(imagesapi.NewImagesClient(conn), contentapi.NewContentClient(conn)),
		endpoint:   e.Endpoint,
		exits:      make(map[string]containerdExit),
	}, nil
}

// Close closes the connection to containerd; open Streams fail afterwards.
func (a *Adapter) Close() error {
	if err := a.conn.Close(); err != nil {
		return fmt.Errorf("containerd at %s: close: %w", a.endpoint, err)
	}
	return nil
}

// List returns the containers of every namespace. A namespace that fails to
// list does not hide the others: their containers are returned together with
// the joined errors.
func (a *Adapter) List(ctx context.Context) ([]model.Container, error) {
	nss, err := a.listNamespaces(ctx)
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: list namespaces: %w", a.endpoint, err)
	}
	var (
		out  []model.Container
		errs []error
		seen = make(map[string]bool)
	)
	for _, ns := range nss {
		cs, err := a.listNamespace(ctx, ns, nil)
		if err != nil {
			// The containers that did answer are kept.
			errs = append(errs, err)
		}
		for _, c := range cs {
			seen[ns+"/"+c.ID] = true
		}
		out = append(out, cs...)
	}
	if len(errs) == 0 {
		a.forgetExitsExcept(seen)
	}
	return out, errors.Join(errs...)
}

// Inspect returns one container. id is "NAMESPACE/ID" or a bare ID, which is
// looked up in every namespace (the first namespace in name order that has it
// wins).
func (a *Adapter) Inspect(ctx context.Context, id string) (model.Container, error) {
	if err := engine.CheckID(id); err != nil {
		return model.Container{}, fmt.Errorf("containerd at %s: inspect container: %w", a.endpoint, err)
	}
	if ns, cid, ok := strings.Cut(id, "/"); ok {
		return a.InspectNamespaced(ctx, ns, cid)
	}
	nss, err := a.listNamespaces(ctx)
	if err != nil {
		return model.Container{}, fmt.Errorf("containerd at %s: container %s: list namespaces: %w", a.endpoint, id, err)
	}
	for _, ns := range nss {
		c, err := a.InspectNamespaced(ctx, ns, id)
		if errors.Is(err, engine.ErrNotFound) {
			continue
		}
		return c, err
	}
	return model.Container{}, fmt.Errorf("containerd at %s: container %s: %w", a.endpoint, id, engine.ErrNotFound)
}

// InspectMany inspects containers "namespace/id" with two requests per
// namespace (see engine.InspectMany); IDs without a namespace are inspected
// one by one. The answer is keyed by the ID as given.
func (a *Adapter) InspectMany(ctx context.Context, ids []string) (map[string]model.Container, error) {
	byNS := map[string][]string{}
	out := make(map[string]model.Container, len(ids))
	var errs []error
	for _, id := range ids {
		ns, cid, ok := strings.Cut(id, "/")
		if err := engine.CheckID(cid); !ok || err != nil {
			c, err := a.Inspect(ctx, id)
			switch {
			case err == nil:
				out[id] = c
			case !errors.Is(err, engine.ErrNotFound):
				errs = append(errs, err)
			}
			continue
		}
		byNS[ns] = append(byNS[ns], cid)
	}
	for ns, cids := range byNS {
		filters := make([]string, len(cids))
		for i, cid := range cids {
			filters[i] = "id==" + cid // any of them
		}
		cs, err := a.listNamespace(ctx, ns, filters)
		if err != nil {
			errs = append(errs, err)
		}
		for _, c := range cs {
			out[ns+"/"+c.ID] = c
		}
	}
	return out, errors.Join(errs...)
}

// InspectNamespaced returns container id of namespace ns, or an error wrapping
// engine.ErrNotFound.
func (a *Adapter) InspectNamespaced(ctx context.Context, ns, id string) (model.Container, error) {
	if err := engine.CheckID(id); err != nil {
		return model.Container{}, fmt.Errorf("containerd at %s: inspect container in namespace %s: %w", a.endpoint, ns, err)
	}
	cs, err := a.listNamespace(ctx, ns, []string{"id==" + id})
	if err != nil && len(cs) == 0 {
		return model.Container{}, err
	}
	if len(cs) == 0 {
		return model.Container{}, fmt.Errorf("containerd at %s: container %s/%s: %w", a.endpoint, ns, id, engine.ErrNotFound)
	}
	return cs[0], nil
}

// listNamespaces returns the names of containerd's namespaces, sorted.
func (a *Adapter) listNamespaces(ctx context.Context) ([]string, error) {
	resp, err := a.namespaces.List(ctx, &namespacesapi.ListNamespacesRequest{})
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(resp.GetNamespaces()))
	for _, ns := range resp.GetNamespaces() {
		out = append(out, ns.GetName())
	}
	sort.Strings(out)
	return out, nil
}

// listContainers lists the container records of the namespace of ctx matching
// filters, streamed one message a container (as containerd's client does: a
// single List answer with hundreds of OCI specs can pass the message size
// limit), falling back to List on a containerd without ListStream.
func (a *Adapter) listContainers(ctx context.Context, filters []string) ([]*containersapi.Container, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req := &containersapi.ListContainersRequest{Filters: filters}
	stream, err := a.containers.ListStream(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []*containersapi.Container
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if status.Code(err) == codes.Unimplemented {
			resp, err := a.containers.List(ctx, req)
			if err != nil {
				return nil, err
			}
			return resp.GetContainers(), nil
		}
		if err != nil {
			return nil, err
		}
		if m.GetContainer() != nil {
			out = append(out, m.GetContainer())
		}
	}
}

// listNamespace lists the containers of ns matching filters (all when none),
// with their tasks and images: three or four RPCs for the whole namespace.
func (a *Adapter) listNamespace(ctx context.Context, ns string, filters []string) ([]model.Container, error) {
	nctx := namespaces.WithNamespace(ctx, ns)
	recs, err := a.listContainers(nctx, filters)
	if err != nil {
		if engine.IsGRPCNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("containerd at %s: namespace %s: list containers: %w", a.endpoint, ns, err)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	tl, err := a.tasks.List(nctx, &tasksapi.ListTasksRequest{})
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: namespace %s: list tasks: %w", a.endpoint, ns, err)
	}
	tasks := make(map[string]*tasktypes.Process, len(tl.GetTasks()))
	for _, p := range tl.GetTasks() {
		id := p.GetContainerID()
		if id == "" {
			id = p.GetID()
		}
		tasks[id] = p
	}
	imageIDs := a.imageDigests(nctx, ns, recs)
	out := make([]model.Container, 0, len(recs))
	var errs []error
	for _, r := range recs {
		c := containerdContainer(a.engine.ID, ns, r, tasks[r.GetID()], imageIDs[r.GetImage()])
		if err := engine.CheckContainer(c); err != nil {
			errs = append(errs, fmt.Errorf("containerd at %s: namespace %s: %w", a.endpoint, ns, err))
			continue
		}
		a.applyExitMemory(&c, tasks[r.GetID()] != nil)
		out = append(out, c)
	}
	return out, errors.Join(errs...)
}

// imageDigests looks up the image ID of every image the containers use: the
// digest of the image's config, which is what Docker and CRI call the image
// ID, falling back to the manifest digest when the config cannot be read. An
// image that is gone (containers outlive their images) leaves no digest.
func (a *Adapter) imageDigests(ctx context.Context, ns string, recs []*containersapi.Container) map[string]string {
	out := make(map[string]string)
	for _, r := range recs {
		ref := r.GetImage()
		if ref == "" {
			continue
		}
		if _, done := out[ref]; done {
			continue
		}
		id, err := a.images.imageID(ctx, ref)
		out[ref] = id
		switch {
		case err == nil:
		case id != "":
			a.log.Debug("image config lookup failed, using the manifest digest", "namespace", ns, "image", ref, "err", err)
		case !engine.IsGRPCNotFound(err):
			a.log.Debug("image lookup failed", "namespace", ns, "image", ref, "err", err)
		}
	}
	return out
}

// applyExitMemory records a stopped task's exit, or, for a container that has
// no task any more, restores the exit seen earlier.
func (a *Adapter) applyExitMemory(c *model.Container, hasTask bool) {
	key := c.Namespace + "/" + c.ID
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case hasTask && c.State == model.StateExited:
		a.exits[key] = containerdExit{code: c.ExitCode, at: c.FinishedAt}
	case hasTask:
		delete(a.exits, key) // restarted: a new task
	default:
		if e, ok := a.exits[key]; ok {
			c.State = model.StateExited
			c.ExitCode = e.code
			c.FinishedAt = e.at
		}
	}
}

// rememberExit records an exit seen on the event stream.
func (a *Adapter) rememberExit(ns, id string, code int, at time.Time) {
	a.mu.Lock()
	a.exits[ns+"/"+id] = containerdExit{code: code, at: at}
	a.mu.Unlock()
}

// forgetExit drops what is remembered about a deleted container.
func (a *Adapter) forgetExit(ns, id string) {
	a.mu.Lock()
	delete(a.exits, ns+"/"+id)
	a.mu.Unlock()
}

// forgetExitsExcept drops remembered exits of containers a full List did not see.
func (a *Adapter) forgetExitsExcept(seen map[string]bool) {
	a.mu.Lock()
	for k := range a.exits {
		if !seen[k] {
			delete(a.exits, k)
		}
	}
	a.mu.Unlock()
}

// containerdContainer builds the model of one containerd container from its
// record and its task (nil when it has none).
func containerdContainer(engineID, ns string, r *containersapi.Container, task *tasktypes.Process, imageID string) model.Container {
	c := model.Container{
		ID:         r.GetID(),
		Name:       containerdName(r.GetID(), r.GetLabels()),
		EngineID:   engineID,
		Namespace:  ns,
		ImageID:    imageID,
		Labels:     r.GetLabels(),
		State:      model.StateCreated,
		CgroupPath: containerdCgroupPath(r.GetSpec()),
	}
	if t := r.GetCreatedAt(); t != nil && t.IsValid() {
		c.CreatedAt = t.AsTime()
	}
	c.ImageName, c.ImageTags = SplitImageRef(r.GetImage())
	if task == nil {
		return c
	}
	c.State = containerdTaskState(task.GetStatus())
	switch c.State {
	case model.StateCreated, model.StateRunning, model.StatePaused:
		c.PID = int(task.GetPid())
	case model.StateExited:
		c.ExitCode = int(task.GetExitStatus())
		if t := task.GetExitedAt(); t != nil && t.IsValid() {
			c.FinishedAt = t.AsTime()
		}
	}
	return c
}

// containerdName is the name an orchestrator gave the container, else its ID.
func containerdName(id string, labels map[string]string) string {
	for _, k := range containerdNameLabels {
		if v := labels[k]; v != "" {
			return v
		}
	}
	return id
}

// containerdTaskState maps a containerd task status to the model's state.
func containerdTaskState(s tasktypes.Status) model.ContainerState {
	switch s {
	case tasktypes.Status_CREATED:
		return model.StateCreated
	case tasktypes.Status_RUNNING:
		return model.StateRunning
	case tasktypes.Status_PAUSED, tasktypes.Status_PAUSING:
		return model.StatePaused
	case tasktypes.Status_STOPPED:
		return model.StateExited
	}
	return model.StateUnknown
}

// containerdCgroupPath extracts linux.cgroupsPath from a container's OCI spec
// (stored as JSON in an Any) and normalises it with ctrdCgroupPath. An absent
// or undecodable spec gives "".
func containerdCgroupPath(spec *anypb.Any) string {
	if spec == nil || len(spec.GetValue()) == 0 {
		return ""
	}
	return SpecCgroupPath(spec.GetValue())
}

// SpecCgroupPath reads linux.cgroupsPath from an OCI runtime spec in JSON.
func SpecCgroupPath(specJSON []byte) string {
	var s struct {
		Linux *struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(specJSON, &s); err != nil || s.Linux == nil {
		return ""
	}
	return ctrdCgroupPath(s.Linux.CgroupsPath)
}

// ctrdCgroupPath turns an OCI linux.cgroupsPath into a path relative to the
// cgroup mount. cgroupfs-style paths ("/default/abc") are returned as they are;
// systemd-style ones ("system.slice:cri-containerd:abc", as runc's systemd
// cgroup driver reads them) become "/system.slice/cri-containerd-abc.scope",
// with nested slices expanded the way systemd does ("a-b.slice" lives in
// "a.slice/a-b.slice").
func ctrdCgroupPath(p string) string {
	if p == "" || strings.HasPrefix(p, "/") {
		return p
	}
	parts := strings.Split(p, ":")
	if len(parts) != 3 {
		return p
	}
	slice, prefix, name := parts[0], parts[1], parts[2]
	var b strings.Builder
	if slice == "" || slice == "-.slice" {
		slice = "system.slice"
	}
	if !strings.HasSuffix(slice, ".slice") {
		return p
	}
	base := strings.TrimSuffix(slice, ".slice")
	var acc string
	for i, comp := range strings.Split(base, "-") {
		if comp == "" {
			return p
		}
		if i == 0 {
			acc = comp
		} else {
			acc += "-" + comp
		}
		b.WriteString("/" + acc + ".slice")
	}
	unit := name
	if prefix != "" {
		unit = prefix + "-" + name
	}
	if !strings.HasSuffix(unit, ".slice") {
		unit += ".scope"
	}
	b.WriteString("/" + unit)
	return b.String()
}

// SplitImageRef splits an image reference into the name and its tags:
// "docker.io/library/busybox:1.36" gives "docker.io/library/busybox" and
// ["1.36"]; a digest reference ("name@sha256:...") gives the name and no tags;
// an image ID ("sha256:...") is returned as the name.
func SplitImageRef(ref string) (string, []string) {
	if ref == "" {
		return "", nil
	}
	if strings.HasPrefix(ref, "sha256:") {
		return ref, nil
	}
	if name, _, ok := strings.Cut(ref, "@"); ok {
		ref = name
		// a tag may precede the digest: name:tag@digest
	}
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash && colon < len(ref)-1 {
		return ref[:colon], []string{ref[colon+1:]}
	}
	return ref, nil
}
