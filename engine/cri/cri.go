package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/model"
)

const (
	// DefaultPollInterval is how often a Adapter lists containers to
	// synthesise events when the runtime has no GetContainerEvents and no
	// containerd event API either (with one, ten times as seldom).
	DefaultPollInterval = time.Second
	// criStatusWorkers bounds the concurrent ContainerStatus calls of a List.
	criStatusWorkers = 4
	// criMaxMsgSize is the largest response accepted (lists of many containers).
	criMaxMsgSize = 16 << 20
)

// The labels that carry a container's pod, as kubelet sets them; Adapter
// adds them from the pod sandbox's metadata when the container lacks them.
const (
	criLabelPodName      = "io.kubernetes.pod.name"
	criLabelPodNamespace = "io.kubernetes.pod.namespace"
	criLabelPodUID       = "io.kubernetes.pod.uid"
)

// criEventMode is how a Adapter learns about changes.
type criEventMode int

const (
	criModeUnknown criEventMode = iota
	criModeStreaming
	criModePolling
)

func (m criEventMode) String() string {
	switch m {
	case criModeStreaming:
		return "GetContainerEvents"
	case criModePolling:
		return "polling"
	}
	return "unknown"
}

// Adapter is the engine.Adapter for a CRI runtime service (containerd's CRI
// plugin, CRI-O) over gRPC, k8s.io/cri-api runtime v1.
//
// It reports containers, not pod sandboxes: a container's pod shows in its
// labels io.kubernetes.pod.name, io.kubernetes.pod.namespace and
// io.kubernetes.pod.uid (taken from the sandbox's metadata when the container
// does not carry them itself). model.Container.Namespace is left empty: CRI
// has no containerd namespace of its own (containerd's CRI plugin keeps its
// containers in namespace k8s.io, which the Watcher deduplicates against the
// containerd view).
//
// Events come from the streaming GetContainerEvents RPC when the runtime
// implements it; containerd before 1.7 (1.6.20 here) answers Unimplemented,
// and then the adapter polls: its engine.Stream lists the containers and synthesises
// create, start, die and destroy Changes from the differences, listing when
// containerd's own event API (on the same socket) publishes a container or
// task event and every ten poll intervals besides, or every poll interval
// where there is no such API (see criPollStream). The first Subscribe
// decides which path is taken and logs it once; EventSource reports it.
//
// PIDs come from the verbose ContainerStatus ("pid" in its "info" JSON, which
// containerd and CRI-O both provide) and are in the runtime's PID namespace.
//
// A Adapter is safe for concurrent use. Close releases its connection.
type Adapter struct {
	engine       model.Engine
	log          *slog.Logger
	endpoint     string
	conn         *grpc.ClientConn
	rt           runtimeapi.RuntimeServiceClient
	pollInterval time.Duration
	probeWindow  time.Duration
	budget       *engine.Budget

	mu   sync.Mutex
	mode criEventMode
}

var _ engine.Adapter = (*Adapter)(nil)

// Option configures a Adapter.
type Option func(*Adapter)

// WithPollInterval sets how often the adapter lists containers when the
// runtime has no GetContainerEvents (default DefaultPollInterval). Values
// below 10 ms are raised to 10 ms.
func WithPollInterval(d time.Duration) Option {
	return func(a *Adapter) { a.pollInterval = max(d, 10*time.Millisecond) }
}

// WithPolling makes the adapter list on a schedule (and on containerd's
// events where the runtime is containerd) from the start, as it does for a
// runtime without GetContainerEvents.
func WithPolling() Option {
	return func(a *Adapter) { a.mode = criModePolling }
}

// WithBudget makes every call of the adapter take a token of b first (nil:
// unlimited); a stream takes one when it is opened.
func WithBudget(b *engine.Budget) Option {
	return func(a *Adapter) { a.budget = b }
}

// New returns an adapter for the CRI runtime service at e.Endpoint (a
// host path such as /run/containerd/containerd.sock). It does not wait for
// the runtime: the connection comes up in the background, and a runtime that
// is down now is reached when it answers again (the Watcher retries).
func New(e model.Engine, log *slog.Logger, opts ...Option) (*Adapter, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Adapter{
		engine:       e,
		log:          log,
		endpoint:     e.Endpoint,
		pollInterval: DefaultPollInterval,
		probeWindow:  500 * time.Millisecond,
	}
	for _, o := range opts {
		o(a)
	}
	conn, err := engine.DialGRPC(e.Endpoint, append([]grpc.DialOption{
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(criMaxMsgSize))}, engine.GRPCOptions(a.budget)...)...)
	if err != nil {
		return nil, fmt.Errorf("cri at %s: connect: %w", e.Endpoint, err)
	}
	a.conn = conn
	a.rt = runtimeapi.NewRuntimeServiceClient(conn)
	return a, nil
}

// Close closes the connection; open Streams fail afterwards.
func (a *Adapter) Close() error {
	if err := a.conn.Close(); err != nil {
		return fmt.Errorf("cri at %s: close: %w", a.endpoint, err)
	}
	return nil
}

// EventSource says how the adapter gets events: "GetContainerEvents",
// "polling", or "unknown" before the first Subscribe.
func (a *Adapter) EventSource() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mode.String()
}

// List returns every container with its verbose status. Containers removed
// while listing are left out; other ContainerStatus failures are joined into
// the error and the container is returned with what the list said.
func (a *Adapter) List(ctx context.Context) ([]model.Container, error) {
	sbs, err := a.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("cri at %s: list pod sandboxes: %w", a.endpoint, err)
	}
	pods := make(map[string]*runtimeapi.PodSandbox, len(sbs.GetItems()))
	for _, sb := range sbs.GetItems() {
		pods[sb.GetId()] = sb
	}
	cl, err := a.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("cri at %s: list containers: %w", a.endpoint, err)
	}
	items := cl.GetContainers()
	out := make([]model.Container, len(items))
	keep := make([]bool, len(items))
	errs := make([]error, len(items))
	sem := make(chan struct{}, criStatusWorkers)
	var wg sync.WaitGroup
	for i, c := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, fmt.Errorf("cri at %s: list containers: %w", a.endpoint, ctx.Err())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st, err := a.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.GetId(), Verbose: true})
			if engine.IsGRPCNotFound(err) {
				return
			}
			if err != nil {
				errs[i] = fmt.Errorf("cri at %s: container %s: status: %w", a.endpoint, c.GetId(), err)
				st = nil
			}
			m := criContainer(a.engine.ID, c, st, pods[c.GetPodSandboxId()])
			if err := engine.CheckContainer(m); err != nil {
				errs[i] = errors.Join(errs[i], fmt.Errorf("cri at %s: list containers: %w", a.endpoint, err))
				return
			}
			out[i] = m
			keep[i] = true
		}()
	}
	wg.Wait()
	res := make([]model.Container, 0, len(items))
	for i := range out {
		if keep[i] {
			res = append(res, out[i])
		}
	}
	return res, errors.Join(errs...)
}

// Inspect returns one container, or an error wrapping engine.ErrNotFound.
func (a *Adapter) Inspect(ctx context.Context, id string) (model.Container, error) {
	if err := engine.CheckID(id); err != nil {
		return model.Container{}, fmt.Errorf("cri at %s: inspect container: %w", a.endpoint, err)
	}
	notFound := fmt.Errorf("cri at %s: container %s: %w", a.endpoint, id, engine.ErrNotFound)
	cl, err := a.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id}})
	if err != nil {
		return model.Container{}, fmt.Errorf("cri at %s: container %s: list: %w", a.endpoint, id, err)
	}
	var c *runtimeapi.Container
	for _, it := range cl.GetContainers() {
		if it.GetId() == id {
			c = it
		}
	}
	if c == nil {
		return model.Container{}, notFound
	}
	st, err := a.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if engine.IsGRPCNotFound(err) {
		return model.Container{}, notFound
	}
	if err != nil {
		return model.Container{}, fmt.Errorf("cri at %s: container %s: status: %w", a.endpoint, id, err)
	}
	var pod *runtimeapi.PodSandbox
	if sid := c.GetPodSandboxId(); sid != "" {
		sbs, err := a.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: sid}})
		if err != nil {
			return model.Container{}, fmt.Errorf("cri at %s: container %s: pod sandbox %s: %w", a.endpoint, id, sid, err)
		}
		for _, sb := range sbs.GetItems() {
			if sb.GetId() == sid {
				pod = sb
			}
		}
	}
	m := criContainer(a.engine.ID, c, st, pod)
	if err := engine.CheckContainer(m); err != nil {
		return model.Container{}, fmt.Errorf("cri at %s: container %s: %w", a.endpoint, id, err)
	}
	return m, nil
}

// criContainer builds the model of one CRI container from its list entry, its
// status (nil when unavailable) and its pod sandbox (nil when unknown).
func criContainer(engineID string, c *runtimeapi.Container, st *runtimeapi.ContainerStatusResponse, pod *runtimeapi.PodSandbox) model.Container {
	m := model.Container{
		ID:        c.GetId(),
		Name:      c.GetMetadata().GetName(),
		EngineID:  engineID,
		State:     criState(c.GetState()),
		CreatedAt: criTime(c.GetCreatedAt()),
		Labels:    maps.Clone(c.GetLabels()),
	}
	if m.Name == "" {
		m.Name = m.ID
	}
	m.RestartCount = int(c.GetMetadata().GetAttempt())
	if pm := pod.GetMetadata(); pm != nil {
		if m.Labels == nil {
			m.Labels = make(map[string]string)
		}
		for k, v := range map[string]string{criLabelPodName: pm.GetName(), criLabelPodNamespace: pm.GetNamespace(), criLabelPodUID: pm.GetUid()} {
			if _, ok := m.Labels[k]; !ok && v != "" {
				m.Labels[k] = v
			}
		}
	}
	image, imageRef, imageID := c.GetImage().GetImage(), c.GetImageRef(), c.GetImageId()
	if s := st.GetStatus(); s != nil {
		m.State = criState(s.GetState())
		m.StartedAt = criTime(s.GetStartedAt())
		m.FinishedAt = criTime(s.GetFinishedAt())
		if m.State == model.StateExited {
			m.ExitCode = int(s.GetExitCode())
			m.OOMKilled = s.GetReason() == "OOMKilled"
		}
		if v := s.GetImage().GetImage(); v != "" {
			image = v
		}
		if v := s.GetImageRef(); v != "" {
			imageRef = v
		}
		if v := s.GetImageId(); v != "" {
			imageID = v
		}
	}
	m.ImageName, m.ImageTags, m.ImageID = criImage(image, imageRef, imageID)
	pid, cgroup := criVerboseInfo(st.GetInfo())
	if m.State == model.StateRunning || m.State == model.StatePaused {
		m.PID = pid
	}
	m.CgroupPath = cgroup
	return m
}

// criImage derives the image name, tags and ID from what CRI reports: the
// image the container was created from (a name, or an image ID when the
// runtime resolved it), the image reference (a repo digest or an image ID)
// and, from CRI v1.31 on, the image ID.
func criImage(image, ref, id string) (string, []string, string) {
	if id == "" && strings.HasPrefix(ref, "sha256:") {
		id = ref
	}
	if id == "" {
		if _, d, ok := strings.Cut(ref, "@"); ok {
			id = d
		}
	}
	if image == "" || strings.HasPrefix(image, "sha256:") {
		if n, _, ok := strings.Cut(ref, "@"); ok {
			return n, nil, id
		}
		if id == "" {
			id = image
		}
		return image, nil, id
	}
	name, tags := containerd.SplitImageRef(image)
	return name, tags, id
}

// criVerboseInfo reads the PID and the cgroup path from the "info" entry of a
// verbose ContainerStatus (JSON with "pid" and "runtimeSpec", in containerd's
// and CRI-O's shape). Missing or undecodable info gives zero values.
func criVerboseInfo(info map[string]string) (int, string) {
	raw, ok := info["info"]
	if !ok {
		return 0, ""
	}
	var v struct {
		PID         int             `json:"pid"`
		RuntimeSpec json.RawMessage `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(raw), &v); err != nil {
		return 0, ""
	}
	var cgroup string
	if len(v.RuntimeSpec) > 0 {
		cgroup = containerd.SpecCgroupPath(v.RuntimeSpec)
	}
	return max(v.PID, 0), cgroup
}

// criState maps a CRI container state to the model's.
func criState(s runtimeapi.ContainerState) model.ContainerState {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return model.StateCreated
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return model.StateRunning
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return model.StateExited
	}
	return model.StateUnknown
}

// criTime converts CRI's nanoseconds since the epoch; 0 is the zero time.
func criTime(ns int64) time.Time {
	if ns <= 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
