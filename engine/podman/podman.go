package podman

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/internal/unixhttp"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// apiPrefix is the libpod API version prefix: podman 4 and newer serve
// API 4.0.0 and answer the versioned paths.
const apiPrefix = "/v4.0.0/libpod"

// Adapter speaks podman's libpod REST API over its unix socket with a
// small HTTP client of its own. Connecting to a socket-activated podman starts
// it (systemd hands the connection to podman.service); the open event stream
// keeps it from exiting on idle.
type Adapter struct {
	endpoint    string
	http        *http.Client
	concurrency int
	log         *slog.Logger
}

var (
	_ engine.Adapter            = (*Adapter)(nil)
	_ engine.InspectConcurrency = (*Adapter)(nil)
	_ engine.Stream             = (*podmanStream)(nil)
)

// NewAdapter returns an adapter for the podman engine e (e.Endpoint is
// the socket path as reached from the host). It does not connect yet.
// Answers are bounded (unixhttp.Limit): an event line at 1 MiB, any other
// answer at 16 MiB. Its requests keep to no budget (Family's adapters keep
// to their endpoint's).
func NewAdapter(e model.Engine, log *slog.Logger) (engine.Adapter, error) {
	return newAdapter(e, log, nil)
}

func newAdapter(e model.Engine, log *slog.Logger, b *engine.Budget) (engine.Adapter, error) {
	if e.Endpoint == "" {
		return nil, errors.New("podman: engine without an endpoint")
	}
	endpoint := e.Endpoint
	tr := unixhttp.NewTransport(endpoint)
	tr.MaxIdleConnsPerHost = 4
	tr.IdleConnTimeout = 30 * time.Second
	return &Adapter{endpoint: endpoint, http: &http.Client{Transport: engine.Transport(b, unixhttp.Limit(tr, "/events"))}, concurrency: 8, log: log}, nil
}

// ForeignEvents is true: podman's events come back from the journal, where
// every user's podman writes (see engine.ForeignEvents).
func (p *Adapter) ForeignEvents() bool { return true }

// SetInspectConcurrency bounds the inspects in flight during List (default
// 8; n below 1 counts as 1).
func (p *Adapter) SetInspectConcurrency(n int) { p.concurrency = max(n, 1) }

// Close releases idle connections.
func (p *Adapter) Close() error {
	p.http.CloseIdleConnections()
	return nil
}

func (p *Adapter) get(ctx context.Context, pathQuery string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://podman"+apiPrefix+pathQuery, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, answerError(resp.StatusCode, b)
	}
	return resp, nil
}

// answerError is the error for a non-200 answer with body b. A missing
// container is engine.ErrNotFound: podman says so with 404, and (4.x, while
// a container is being removed) with 500 and the cause "no such container".
func answerError(status int, b []byte) error {
	err := fmt.Errorf("HTTP %d: %s", status, strings.TrimSpace(string(b)))
	var body struct {
		Cause string `json:"cause"`
	}
	if status == http.StatusNotFound ||
		(status == http.StatusInternalServerError && json.Unmarshal(b, &body) == nil && body.Cause == "no such container") {
		return fmt.Errorf("%w: %w", engine.ErrNotFound, err)
	}
	return err
}

func (p *Adapter) getJSON(ctx context.Context, pathQuery string, v any) error {
	resp, err := p.get(ctx, pathQuery)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", pathQuery, err)
	}
	return nil
}

// Subscribe opens the event stream of container events since the moment of
// the call. podman sends the response headers only with the first event, so
// the request runs in the stream's own goroutine; the since filter makes the
// subscription effective as of the call all the same (podman reads past
// events from its event log).
func (p *Adapter) Subscribe(ctx context.Context) (engine.Stream, error) {
	since := time.Now()
	// Ping first: it activates a socket-activated podman and fails fast when
	// nothing listens.
	var ping string
	if err := p.getPing(ctx, &ping); err != nil {
		return nil, fmt.Errorf("podman at %s: ping: %w", p.endpoint, err)
	}
	p.log.Debug("podman answers, subscribing to its events", "ping", ping)
	q := url.Values{}
	q.Set("stream", "true")
	q.Set("since", strconv.FormatInt(since.Unix(), 10)+"."+fmt.Sprintf("%09d", since.Nanosecond()))
	q.Set("filters", `{"type":["container"]}`)
	sctx, cancel := context.WithCancel(ctx)
	s := &podmanStream{endpoint: p.endpoint, lines: make(chan []byte), errc: make(chan error, 1), cancel: cancel}
	s.wg.Add(1)
	go s.read(sctx, p, "/events?"+q.Encode())
	return s, nil
}

func (p *Adapter) getPing(ctx context.Context, out *string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://podman/_ping", nil)
	if err != nil {
		return err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	*out = string(b)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

type podmanStream struct {
	endpoint string
	lines    chan []byte
	errc     chan error
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

// read sends each line of the event stream until it fails or ctx ends.
func (s *podmanStream) read(ctx context.Context, p *Adapter, pathQuery string) {
	defer s.wg.Done()
	fail := func(err error) {
		select {
		case s.errc <- err:
		default:
		}
	}
	resp, err := p.get(ctx, pathQuery)
	if err != nil {
		fail(err)
		return
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), unixhttp.MaxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		b := append([]byte(nil), line...)
		select {
		case s.lines <- b:
		case <-ctx.Done():
			fail(ctx.Err())
			return
		}
	}
	err = sc.Err()
	switch {
	case err == nil:
		err = io.EOF
	case errors.Is(err, bufio.ErrTooLong):
		err = fmt.Errorf("event line longer than %d bytes: %w", unixhttp.MaxLine, err)
	}
	fail(err)
}

func (s *podmanStream) Next(ctx context.Context) (engine.Change, error) {
	select {
	case <-ctx.Done():
		return engine.Change{}, ctx.Err()
	case b := <-s.lines:
		return decodePodmanEvent(b)
	case err := <-s.errc:
		return engine.Change{}, fmt.Errorf("podman at %s: events: %w", s.endpoint, err)
	}
}

// Close cancels the request and waits for the reader goroutine.
func (s *podmanStream) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.wg.Wait()
	})
	return nil
}

// podmanEvent is the libpod event as podman 4 sends it on /libpod/events: the
// Docker message shape plus a lower-case status and id.
type podmanEvent struct {
	Status string `json:"status"`
	ID     string `json:"id"`
	Type   string `json:"Type"`
	Action string `json:"Action"`
	Actor  struct {
		ID         string            `json:"ID"`
		Attributes map[string]string `json:"Attributes"`
	} `json:"Actor"`
	Time     int64 `json:"time"`
	TimeNano int64 `json:"timeNano"`
}

// decodePodmanEvent maps one line of podman's event stream: create, start,
// pause, unpause, stop, died (→ die with the containerExitCode attribute),
// remove (→ destroy). init, cleanup, history, exec, attach and others are
// engine.ErrIgnored; lines that are not JSON objects are engine.ErrMalformed.
func decodePodmanEvent(b []byte) (engine.Change, error) {
	var e podmanEvent
	if err := json.Unmarshal(b, &e); err != nil {
		return engine.Change{}, fmt.Errorf("podman event %.80q: %w: %w", b, engine.ErrMalformed, err)
	}
	if e.Type != "" && e.Type != "container" {
		return engine.Change{}, fmt.Errorf("podman %s event: %w", e.Type, engine.ErrIgnored)
	}
	action := e.Action
	if action == "" {
		action = e.Status
	}
	id := e.Actor.ID
	if id == "" {
		id = e.ID
	}
	if action == "" {
		return engine.Change{}, fmt.Errorf("podman event without an action: %w", engine.ErrMalformed)
	}
	ch := engine.Change{ContainerID: id, Time: engine.EventTime(e.Time, e.TimeNano)}
	switch action {
	case "create":
		ch.Type = model.EventCreate
	case "start":
		ch.Type = model.EventStart
	case "pause":
		ch.Type = model.EventPause
	case "unpause":
		ch.Type = model.EventUnpause
	case "stop":
		ch.Type = model.EventStop
	case "remove":
		ch.Type = model.EventDestroy
	case "died":
		ch.Type = model.EventDie
		if v, ok := e.Actor.Attributes["containerExitCode"]; ok && v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				return engine.Change{}, fmt.Errorf("podman died event of %s: containerExitCode %q: %w", id, v, engine.ErrMalformed)
			}
			ch.ExitCode = &n
		}
	default:
		return engine.Change{}, fmt.Errorf("podman %q event: %w", action, engine.ErrIgnored)
	}
	if id == "" {
		return engine.Change{}, fmt.Errorf("podman %q event without a container ID: %w", action, engine.ErrMalformed)
	}
	return ch, nil
}

// podmanListEntry is the part of GET /libpod/containers/json that List uses.
type podmanListEntry struct {
	ID string `json:"Id"`
}

// List returns every container, inspected for PIDs, times and exit codes.
func (p *Adapter) List(ctx context.Context) ([]model.Container, error) {
	var entries []podmanListEntry
	if err := p.getJSON(ctx, "/containers/json?all=true", &entries); err != nil {
		return nil, fmt.Errorf("podman at %s: list containers: %w", p.endpoint, err)
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.ID)
	}
	cs, err := engine.InspectAll(ctx, p.concurrency, ids, p.Inspect)
	if err != nil {
		return nil, fmt.Errorf("podman at %s: list containers: %w", p.endpoint, err)
	}
	return cs, nil
}

// podmanInspect is the part of GET /libpod/containers/{id}/json that agentd uses.
type podmanInspect struct {
	ID        string `json:"Id"`
	Created   string `json:"Created"`
	Name      string `json:"Name"`
	Image     string `json:"Image"`
	ImageName string `json:"ImageName"`
	State     struct {
		Status     string `json:"Status"`
		Running    bool   `json:"Running"`
		Paused     bool   `json:"Paused"`
		OOMKilled  bool   `json:"OOMKilled"`
		Pid        int    `json:"Pid"`
		ExitCode   int    `json:"ExitCode"`
		StartedAt  string `json:"StartedAt"`
		FinishedAt string `json:"FinishedAt"`
		CgroupPath string `json:"CgroupPath"`
		// Health is the health check's state (podman 4.x also writes it
		// under Healthcheck, the older name).
		Health      *podmanHealth `json:"Health"`
		Healthcheck *podmanHealth `json:"Healthcheck"`
	} `json:"State"`
	RestartCount int `json:"RestartCount"`
	Config       struct {
		Labels map[string]string `json:"Labels"`
	} `json:"Config"`
}

type podmanHealth struct {
	Status string `json:"Status"`
}

// Inspect returns one container; the PID is in the engine's PID namespace.
func (p *Adapter) Inspect(ctx context.Context, id string) (model.Container, error) {
	if err := engine.CheckID(id); err != nil {
		return model.Container{}, fmt.Errorf("podman at %s: inspect container: %w", p.endpoint, err)
	}
	var r podmanInspect
	if err := p.getJSON(ctx, "/containers/"+url.PathEscape(id)+"/json", &r); err != nil {
		return model.Container{}, fmt.Errorf("podman at %s: inspect container %s: %w", p.endpoint, id, err)
	}
	c := podmanContainer(r)
	if err := engine.CheckContainer(c); err != nil {
		return model.Container{}, fmt.Errorf("podman at %s: inspect container %s: %w", p.endpoint, id, err)
	}
	return c, nil
}

func podmanContainer(r podmanInspect) model.Container {
	c := model.Container{
		ID:           r.ID,
		Name:         r.Name,
		ImageID:      r.Image,
		Labels:       r.Config.Labels,
		PID:          r.State.Pid,
		ExitCode:     r.State.ExitCode,
		OOMKilled:    r.State.OOMKilled,
		RestartCount: r.RestartCount,
		CreatedAt:    engine.ParseTime(r.Created),
		StartedAt:    engine.ParseTime(r.State.StartedAt),
		FinishedAt:   engine.ParseTime(r.State.FinishedAt),
		CgroupPath:   r.State.CgroupPath,
		State:        podmanState(r.State.Status, r.State.Running, r.State.Paused),
	}
	c.ImageName, c.ImageTags = engine.SplitImageRef(r.ImageName)
	for _, h := range []*podmanHealth{r.State.Health, r.State.Healthcheck} {
		if h != nil && c.Health == "" {
			switch h.Status {
			case model.HealthStarting, model.HealthHealthy, model.HealthUnhealthy:
				c.Health = h.Status
			}
		}
	}
	if !c.State.Running() {
		c.PID = 0
	}
	return c
}

// podmanState maps libpod's states (configured, created, initialized,
// running, paused, stopping, stopped, exited, removing) to the model's.
func podmanState(status string, isRunning, paused bool) model.ContainerState {
	switch {
	case paused || status == "paused":
		return model.StatePaused
	case isRunning || status == "running" || status == "stopping":
		return model.StateRunning
	}
	switch status {
	case "configured", "created", "initialized":
		return model.StateCreated
	case "stopped", "exited", "removing":
		return model.StateExited
	}
	return model.StateUnknown
}

var _ stats.Fallback = (*Adapter)(nil)

// Stats reads one container's stats through podman's Docker-compatible
// one-shot stats endpoint: the stats fallback for a container whose cgroup
// cannot be read.
func (p *Adapter) Stats(ctx context.Context, c model.Container) (stats.Stats, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://podman/v1.41/containers/"+url.PathEscape(c.ID)+"/stats?stream=false&one-shot=true", nil)
	if err != nil {
		return stats.Stats{}, fmt.Errorf("podman at %s: stats of %s: %w", p.endpoint, c.ID, err)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return stats.Stats{}, fmt.Errorf("podman at %s: stats of %s: %w", p.endpoint, c.ID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		err := fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", stats.ErrGone, err)
		}
		return stats.Stats{}, fmt.Errorf("podman at %s: stats of %s: %w", p.endpoint, c.ID, err)
	}
	s, err := docker.DecodeStats(resp.Body)
	if err != nil {
		return stats.Stats{}, fmt.Errorf("podman at %s: stats of %s: %w", p.endpoint, c.ID, err)
	}
	return s, nil
}
