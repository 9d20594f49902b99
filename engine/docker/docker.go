package docker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// Adapter speaks the Docker Engine API over the engine's unix socket.
type Adapter struct {
	endpoint    string
	cli         *client.Client
	tr          *http.Transport
	concurrency int
	log         *slog.Logger

	driverOnce sync.Mutex
	driver     string // cgroup driver, "" until known
}

var (
	_ engine.Adapter            = (*Adapter)(nil)
	_ engine.InspectConcurrency = (*Adapter)(nil)
	_ engine.ImageIDs           = (*Adapter)(nil)
	_ engine.Stream             = (*dockerStream)(nil)
)

// NewAdapter returns an adapter for the Docker engine e (e.Endpoint is
// the socket path as reached from the host). It does not connect yet. Close
// releases its connections. Its requests keep to no budget (Family's
// adapters keep to their endpoint's).
func NewAdapter(e model.Engine, log *slog.Logger) (engine.Adapter, error) {
	return newAdapter(e, log, nil)
}

func newAdapter(e model.Engine, log *slog.Logger, b *engine.Budget) (engine.Adapter, error) {
	cli, tr, err := newClient(e.Endpoint, b)
	if err != nil {
		return nil, fmt.Errorf("docker at %s: %w", e.Endpoint, err)
	}
	return &Adapter{endpoint: e.Endpoint, cli: cli, tr: tr, concurrency: 8, log: log}, nil
}

// SetInspectConcurrency bounds the inspects in flight during List (default
// 8; n below 1 counts as 1).
func (d *Adapter) SetInspectConcurrency(n int) { d.concurrency = max(n, 1) }

// Close releases the adapter's connections.
func (d *Adapter) Close() error {
	d.tr.CloseIdleConnections()
	return d.cli.Close()
}

// Subscribe opens the event stream, filtered to container events. It asks for
// the events since the moment Subscribe was called, so the daemon replays any
// event that happens while the request is on its way: the subscription is in
// place as of that moment.
func (d *Adapter) Subscribe(ctx context.Context) (engine.Stream, error) {
	since := time.Now()
	if _, err := d.cli.Ping(ctx); err != nil {
		return nil, fmt.Errorf("docker at %s: ping: %w", d.endpoint, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	msgs, errs := d.cli.Events(sctx, events.ListOptions{
		Since:   strconv.FormatInt(since.Unix(), 10) + "." + fmt.Sprintf("%09d", since.Nanosecond()),
		Filters: filters.NewArgs(filters.Arg("type", string(events.ContainerEventType))),
	})
	return &dockerStream{endpoint: d.endpoint, msgs: msgs, errs: errs, cancel: cancel}, nil
}

type dockerStream struct {
	endpoint string
	msgs     <-chan events.Message
	errs     <-chan error
	cancel   context.CancelFunc
	once     sync.Once
}

func (s *dockerStream) Next(ctx context.Context) (engine.Change, error) {
	select {
	case <-ctx.Done():
		return engine.Change{}, ctx.Err()
	case err, ok := <-s.errs:
		if !ok || err == nil {
			err = errors.New("event stream ended")
		}
		return engine.Change{}, fmt.Errorf("docker at %s: events: %w", s.endpoint, err)
	case m := <-s.msgs:
		return decodeDockerEvent(m)
	}
}

// Close cancels the request and waits for the client's reader goroutine.
func (s *dockerStream) Close() error {
	s.once.Do(func() {
		s.cancel()
		for range s.errs { //nolint:revive // drain until the reader exits and closes errs
		}
	})
	return nil
}

// decodeDockerEvent maps a Docker event to a engine.Change: create, start, pause,
// unpause, stop, die (with the exitCode attribute), oom, destroy and
// health_status (a change of the health check's status, re-read by
// inspecting). Other container actions (kill, attach, exec_*, ...) are
// engine.ErrIgnored.
func decodeDockerEvent(m events.Message) (engine.Change, error) {
	if m.Type != "" && m.Type != events.ContainerEventType {
		return engine.Change{}, fmt.Errorf("docker %s event: %w", m.Type, engine.ErrIgnored)
	}
	if m.Actor.ID == "" {
		return engine.Change{}, fmt.Errorf("docker %q event without a container ID: %w", m.Action, engine.ErrMalformed)
	}
	ch := engine.Change{ContainerID: m.Actor.ID, Time: engine.EventTime(m.Time, m.TimeNano)}
	switch m.Action {
	case events.ActionCreate:
		ch.Type = model.EventCreate
		ch.Container = createdContainer(m.Actor)
	case events.ActionStart:
		ch.Type = model.EventStart
	case events.ActionPause:
		ch.Type = model.EventPause
	case events.ActionUnPause:
		ch.Type = model.EventUnpause
	case events.ActionStop:
		ch.Type = model.EventStop
	case events.ActionOOM:
		ch.Type = model.EventOOM
	case events.ActionDestroy:
		ch.Type = model.EventDestroy
	case events.ActionDie:
		ch.Type = model.EventDie
		if v, ok := m.Actor.Attributes["exitCode"]; ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return engine.Change{}, fmt.Errorf("docker die event of %s: exitCode %q: %w", m.Actor.ID, v, engine.ErrMalformed)
			}
			ch.ExitCode = &n
		}
	default:
		// "health_status: healthy": Docker sends it when the status changes.
		if strings.HasPrefix(string(m.Action), string(events.ActionHealthStatus)) {
			ch.Type = model.EventHealth
			return ch, nil
		}
		return engine.Change{}, fmt.Errorf("docker %q event: %w", m.Action, engine.ErrIgnored)
	}
	return ch, nil
}

// createdContainer is what a create event says of its container: dockerd
// puts the container's labels in the attributes, then its name and the image
// reference it was created from (so a label named "name" or "image" is
// shadowed: the inspect that follows has them right).
func createdContainer(a events.Actor) *model.Container {
	c := &model.Container{ID: a.ID, Name: a.Attributes["name"], State: model.StateCreated}
	c.ImageName, c.ImageTags = engine.SplitImageRef(a.Attributes["image"])
	for k, v := range a.Attributes {
		if k == "name" || k == "image" {
			continue
		}
		if c.Labels == nil {
			c.Labels = make(map[string]string, len(a.Attributes))
		}
		c.Labels[k] = v
	}
	return c
}

// List returns every container, inspected for PIDs, times and exit codes.
func (d *Adapter) List(ctx context.Context) ([]model.Container, error) {
	sum, err := d.cli.ContainerList(ctx, container.ListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("docker at %s: list containers: %w", d.endpoint, err)
	}
	ids := make([]string, 0, len(sum))
	for _, s := range sum {
		ids = append(ids, s.ID)
	}
	cs, err := engine.InspectAll(ctx, d.concurrency, ids, d.Inspect)
	if err != nil {
		return nil, fmt.Errorf("docker at %s: list containers: %w", d.endpoint, err)
	}
	return cs, nil
}

// Inspect returns one container; the PID is in the engine's PID namespace.
func (d *Adapter) Inspect(ctx context.Context, id string) (model.Container, error) {
	if err := engine.CheckID(id); err != nil {
		return model.Container{}, fmt.Errorf("docker at %s: inspect container: %w", d.endpoint, err)
	}
	r, err := d.cli.ContainerInspect(ctx, id)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			err = fmt.Errorf("%w: %w", engine.ErrNotFound, err)
		}
		return model.Container{}, fmt.Errorf("docker at %s: inspect container %s: %w", d.endpoint, id, err)
	}
	if r.ContainerJSONBase == nil || r.State == nil {
		return model.Container{}, fmt.Errorf("docker at %s: inspect container %s: incomplete answer", d.endpoint, id)
	}
	c := dockerContainer(r)
	if err := engine.CheckContainer(c); err != nil {
		return model.Container{}, fmt.Errorf("docker at %s: inspect container %s: %w", d.endpoint, id, err)
	}
	c.CgroupPath = d.cgroupPath(ctx, r)
	return c, nil
}

// ImageID returns the ID of the image ref names (a reference as a create
// event gives it: "name:tag", a digest reference or an image ID), as a
// container inspect gives it ("sha256:...").
func (d *Adapter) ImageID(ctx context.Context, ref string) (string, error) {
	if ref == "" {
		return "", fmt.Errorf("docker at %s: inspect image: empty reference: %w", d.endpoint, engine.ErrBadAnswer)
	}
	r, err := d.cli.ImageInspect(ctx, ref)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			err = fmt.Errorf("%w: %w", engine.ErrNotFound, err)
		}
		return "", fmt.Errorf("docker at %s: inspect image %s: %w", d.endpoint, ref, err)
	}
	if r.ID == "" {
		return "", fmt.Errorf("docker at %s: inspect image %s: no ID in the answer: %w", d.endpoint, ref, engine.ErrBadAnswer)
	}
	return r.ID, nil
}

func dockerContainer(r container.InspectResponse) model.Container {
	c := model.Container{
		ID:           r.ID,
		Name:         strings.TrimPrefix(r.Name, "/"),
		ImageID:      r.Image,
		PID:          r.State.Pid,
		ExitCode:     r.State.ExitCode,
		OOMKilled:    r.State.OOMKilled,
		RestartCount: r.RestartCount,
		CreatedAt:    engine.ParseTime(r.Created),
		StartedAt:    engine.ParseTime(r.State.StartedAt),
		FinishedAt:   engine.ParseTime(r.State.FinishedAt),
		State:        dockerState(r.State),
	}
	if r.State.Health != nil {
		c.Health = healthStatus(r.State.Health.Status)
	}
	if r.Config != nil {
		c.Labels = r.Config.Labels
		c.ImageName, c.ImageTags = engine.SplitImageRef(r.Config.Image)
	}
	if !c.State.Running() {
		c.PID = 0
	}
	return c
}

// healthStatus keeps the health check statuses agentd knows; "none" and
// anything else is no health check.
func healthStatus(s string) string {
	switch s {
	case model.HealthStarting, model.HealthHealthy, model.HealthUnhealthy:
		return s
	}
	return ""
}

func dockerState(s *container.State) model.ContainerState {
	switch {
	case s.Paused:
		return model.StatePaused
	case s.Running || s.Restarting:
		return model.StateRunning
	}
	switch s.Status {
	case "created":
		return model.StateCreated
	case "exited", "dead", "removing":
		return model.StateExited
	}
	return model.StateUnknown
}

// cgroupPath derives the container's cgroup from the daemon's cgroup driver
// and the container's cgroup parent (the Docker API does not return it).
func (d *Adapter) cgroupPath(ctx context.Context, r container.InspectResponse) string {
	d.driverOnce.Lock()
	if d.driver == "" {
		if info, err := d.cli.Info(ctx); err == nil {
			d.driver = info.CgroupDriver
		} else {
			d.log.Debug("cgroup driver unknown, the container's cgroup is read from its process", logging.Err(err))
		}
	}
	driver := d.driver
	d.driverOnce.Unlock()
	parent := ""
	if r.HostConfig != nil {
		parent = r.HostConfig.CgroupParent
	}
	switch driver {
	case "systemd":
		if parent == "" {
			parent = "system.slice"
		}
		return path.Join("/", parent, "docker-"+r.ID+".scope")
	case "cgroupfs":
		if parent == "" {
			parent = "/docker"
		}
		return path.Join("/", parent, r.ID)
	}
	return ""
}

var _ stats.Fallback = (*Adapter)(nil)

// Stats reads one container's stats through the engine's one-shot stats
// endpoint: the stats fallback for a container whose cgroup cannot be read.
func (d *Adapter) Stats(ctx context.Context, c model.Container) (stats.Stats, error) {
	s, err := (&Fallback{Client: d.cli}).Stats(ctx, c)
	if err != nil {
		return stats.Stats{}, fmt.Errorf("docker at %s: %w", d.endpoint, err)
	}
	return s, nil
}
