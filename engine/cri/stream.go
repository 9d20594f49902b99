package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/model"
)

// Subscribe opens the runtime's event stream.
//
// With GetContainerEvents the subscription is a server-streaming RPC whose
// server sends nothing until the first event, so there is no acknowledgement
// that it is registered: Subscribe waits a short window (500 ms the first
// time, when it also learns whether the RPC is implemented; 100 ms later) for
// an early error, and otherwise returns the stream. A runtime that answers
// Unimplemented (containerd 1.6), or that ends the stream at once without an
// event (CRI-O with its default enable_pod_events = false), switches the
// adapter to polling for good.
//
// When polling, Subscribe lists the containers once as the baseline, and every
// change after that list is found by a later poll, so nothing is missed.
//
// The stream stays open until Close is called or ctx ends; Next must not be
// called concurrently with itself.
func (a *Adapter) Subscribe(ctx context.Context) (engine.Stream, error) {
	a.mu.Lock()
	mode := a.mode
	a.mu.Unlock()
	if mode != criModePolling {
		window := a.probeWindow
		if mode == criModeStreaming {
			window = min(window, 100*time.Millisecond)
		}
		st, err := a.subscribeEvents(ctx, window)
		switch {
		case err == nil:
			a.setMode(criModeStreaming, "")
			return st, nil
		case errors.Is(err, io.EOF):
			a.setMode(criModePolling, reasonEnded)
		case status.Code(err) == codes.Unimplemented:
			a.setMode(criModePolling, reasonUnimplemented)
		default:
			return nil, fmt.Errorf("cri at %s: get container events: %w", a.endpoint, err)
		}
	}
	return a.subscribePoll(ctx)
}

// Why a runtime is polled.
const (
	reasonUnimplemented = "the runtime does not implement GetContainerEvents"
	// CRI-O with its default enable_pod_events = false answers
	// GetContainerEvents by ending the stream at once.
	reasonEnded = "the runtime ends its GetContainerEvents stream at once (CRI-O with enable_pod_events = false)"
)

// endedAtOnce is how soon after it opened an event stream that ends without
// an event counts as a runtime that does not stream events (reasonEnded),
// rather than one that went away.
const endedAtOnce = 2 * time.Second

// setMode records the event source and logs it, with why, when it changes.
func (a *Adapter) setMode(m criEventMode, why string) {
	a.mu.Lock()
	old := a.mode
	a.mode = m
	a.mu.Unlock()
	if old == m {
		return
	}
	switch m {
	case criModePolling:
		a.log.Debug("cri runtime polled for its containers", "reason", why, "interval", a.pollInterval)
	case criModeStreaming:
		a.log.Info("cri runtime streams container events (GetContainerEvents)")
	}
}

// subscribeEvents opens GetContainerEvents and waits up to window for the
// runtime to refuse it.
func (a *Adapter) subscribeEvents(ctx context.Context, window time.Duration) (*criEventStream, error) {
	sctx, cancel := context.WithCancel(ctx)
	sub, err := a.rt.GetContainerEvents(sctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		cancel()
		return nil, err
	}
	s := &criEventStream{
		a:      a,
		opened: time.Now(),
		cancel: cancel,
		recv:   make(chan criRecv),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go s.pump(sctx, sub)
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		_ = s.Close()
		return nil, ctx.Err()
	case r := <-s.recv:
		if r.err != nil {
			_ = s.Close()
			return nil, r.err
		}
		s.pending = append(s.pending, r.ev)
	}
	return s, nil
}

// criRecv is one result of the event stream's Recv.
type criRecv struct {
	ev  *runtimeapi.ContainerEventResponse
	err error
}

// criEventStream is the engine.Stream over GetContainerEvents. A goroutine (pump)
// reads the gRPC stream so that Next can honour its ctx; Close stops it and
// waits for it.
type criEventStream struct {
	a         *Adapter
	opened    time.Time
	delivered int // events Next returned
	cancel    context.CancelFunc
	recv      chan criRecv
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	pending []*runtimeapi.ContainerEventResponse
	failed  error
}

var _ engine.Stream = (*criEventStream)(nil)

func (s *criEventStream) pump(ctx context.Context, sub grpc.ServerStreamingClient[runtimeapi.ContainerEventResponse]) {
	defer close(s.done)
	for {
		ev, err := sub.Recv()
		select {
		case s.recv <- criRecv{ev: ev, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// Next returns the next decoded event; see engine.Stream.
func (s *criEventStream) Next(ctx context.Context) (engine.Change, error) {
	if s.failed != nil {
		return engine.Change{}, s.failed
	}
	var ev *runtimeapi.ContainerEventResponse
	if len(s.pending) > 0 {
		ev = s.pending[0]
		s.pending = s.pending[1:]
	} else {
		select {
		case <-ctx.Done():
			return engine.Change{}, ctx.Err()
		case <-s.stop:
			s.failed = fmt.Errorf("cri at %s: event stream closed", s.a.endpoint)
			return engine.Change{}, s.failed
		case r := <-s.recv:
			if r.err != nil {
				switch {
				case status.Code(r.err) == codes.Unimplemented:
					s.a.setMode(criModePolling, reasonUnimplemented)
				case errors.Is(r.err, io.EOF) && s.delivered == 0 && time.Since(s.opened) < endedAtOnce:
					s.a.setMode(criModePolling, reasonEnded)
				}
				s.failed = fmt.Errorf("cri at %s: event stream: %w", s.a.endpoint, r.err)
				return engine.Change{}, s.failed
			}
			ev = r.ev
		}
	}
	s.delivered++
	ch, err := decodeCRIEvent(ev)
	if err != nil {
		return engine.Change{}, fmt.Errorf("cri at %s: event %s of container %s: %w", s.a.endpoint, ev.GetContainerEventType(), ev.GetContainerId(), err)
	}
	return ch, nil
}

// Close ends the subscription and waits for the reading goroutine.
func (s *criEventStream) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.cancel()
		<-s.done
	})
	return nil
}

// decodeCRIEvent turns one GetContainerEvents response into a engine.Change. Events
// about pod sandboxes (the container ID is the sandbox's) are ignored; a
// missing container ID or an unknown event type is malformed. A stop becomes
// die with the exit code from the container's status in the event, when the
// event carries it. It never panics, whatever the input.
func decodeCRIEvent(ev *runtimeapi.ContainerEventResponse) (engine.Change, error) {
	id := ev.GetContainerId()
	if id == "" {
		return engine.Change{}, fmt.Errorf("no container ID: %w", engine.ErrMalformed)
	}
	if sb := ev.GetPodSandboxStatus(); sb != nil && sb.GetId() == id {
		return engine.Change{}, fmt.Errorf("pod sandbox event: %w", engine.ErrIgnored)
	}
	ch := engine.Change{ContainerID: id, Time: criTime(ev.GetCreatedAt())}
	switch ev.GetContainerEventType() {
	case runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT:
		ch.Type = model.EventCreate
	case runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT:
		ch.Type = model.EventStart
	case runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT:
		ch.Type = model.EventDie
		for _, st := range ev.GetContainersStatuses() {
			if st.GetId() == id && st.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
				code := int(st.GetExitCode())
				ch.ExitCode = &code
				if t := criTime(st.GetFinishedAt()); !t.IsZero() {
					ch.Time = t
				}
			}
		}
	case runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT:
		ch.Type = model.EventDestroy
	default:
		return engine.Change{}, fmt.Errorf("event type %d: %w", ev.GetContainerEventType(), engine.ErrMalformed)
	}
	return ch, nil
}

// criSeen is what a poll remembers of a container.
type criSeen struct {
	state runtimeapi.ContainerState
}

// criPollStream is the engine.Stream of a runtime without GetContainerEvents: Next
// lists the containers and turns the differences into Changes.
//
// containerd serves its own event API next to its CRI plugin, so the stream
// subscribes to containerd's container and task events on the same
// connection, before the baseline list, and lists when one arrives (and
// again criFollowUps after it: the CRI plugin updates its view of a container
// after containerd published the event), else every criIdlePolls intervals.
// An idle runtime then costs a list every 10 s instead of every second, and a
// change shows within milliseconds instead of within the interval. A runtime
// without the event API (or a broken event stream) is listed every interval.
// The event stream's goroutine is the only one the stream starts; Close stops
// it.
type criPollStream struct {
	a        *Adapter
	ctx      context.Context // the Subscribe ctx: the stream ends with it
	interval time.Duration
	last     map[string]criSeen
	lastPoll time.Time
	queue    []engine.Change
	stop     chan struct{}
	once     sync.Once
	failed   error

	trigger  *containerd.EventStream    // containerd's events; nil without them
	events   <-chan containerd.Received // trigger's until the trigger fails, then nil
	eventAt  time.Time                  // the last event, zero once its follow-ups are done
	followUp int                        // follow-up lists done since eventAt
}

// criFollowUps are the lists after an event, counted from it; criIdlePolls
// is how many intervals an event-triggered stream waits without events.
var criFollowUps = []time.Duration{0, 200 * time.Millisecond, time.Second}

const criIdlePolls = 10

var _ engine.Stream = (*criPollStream)(nil)

// subscribePoll subscribes to containerd's events where the runtime has them
// and lists the containers as the baseline of a polling stream.
func (a *Adapter) subscribePoll(ctx context.Context) (*criPollStream, error) {
	s := &criPollStream{a: a, ctx: ctx, interval: a.pollInterval, stop: make(chan struct{})}
	trig, err := containerd.SubscribeEvents(ctx, a.conn, a.endpoint, a.log)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		a.log.Debug("no containerd events next to the CRI runtime: listing every interval", logging.Err(err))
	} else {
		s.trigger, s.events = trig, trig.Received()
	}
	cur, err := s.list(ctx)
	if err != nil {
		_ = s.Close()
		return nil, err
	}
	s.last = cur
	s.lastPoll = time.Now()
	return s, nil
}

// nextPoll is when the next list is due.
func (s *criPollStream) nextPoll() time.Time {
	switch {
	case s.events == nil:
		return s.lastPoll.Add(s.interval)
	case !s.eventAt.IsZero():
		return s.eventAt.Add(criFollowUps[s.followUp])
	}
	return s.lastPoll.Add(criIdlePolls * s.interval)
}

// list returns the current containers by ID.
func (s *criPollStream) list(ctx context.Context) (map[string]criSeen, error) {
	cl, err := s.a.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("cri at %s: poll containers: %w", s.a.endpoint, err)
	}
	cur := make(map[string]criSeen, len(cl.GetContainers()))
	for _, c := range cl.GetContainers() {
		cur[c.GetId()] = criSeen{state: c.GetState()}
	}
	return cur, nil
}

// Next returns the next synthesised change, listing when one may be there
// (see criPollStream) until there is one. A failing list ends the stream.
func (s *criPollStream) Next(ctx context.Context) (engine.Change, error) {
	for len(s.queue) == 0 {
		if s.failed != nil {
			return engine.Change{}, s.failed
		}
		if wait := time.Until(s.nextPoll()); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return engine.Change{}, ctx.Err()
			case <-s.ctx.Done():
				t.Stop()
				s.failed = fmt.Errorf("cri at %s: poll stream: %w", s.a.endpoint, s.ctx.Err())
				continue
			case <-s.stop:
				t.Stop()
				s.failed = fmt.Errorf("cri at %s: poll stream closed", s.a.endpoint)
				continue
			case r := <-s.events:
				t.Stop()
				if r.Err() != nil {
					s.a.log.Debug("containerd event stream next to the CRI runtime failed: listing every interval", logging.Err(r.Err()))
					s.events, s.eventAt = nil, time.Time{}
				} else {
					s.eventAt, s.followUp = time.Now(), 0
				}
				continue
			case <-t.C:
			}
		}
		if err := s.poll(ctx); err != nil {
			if err := callerDone(ctx); err != nil {
				// The caller's deadline, not the runtime: the stream goes on.
				return engine.Change{}, err
			}
			s.failed = err
		}
		if !s.eventAt.IsZero() {
			if s.followUp++; s.followUp == len(criFollowUps) {
				s.eventAt = time.Time{}
			}
		}
	}
	ch := s.queue[0]
	s.queue = s.queue[1:]
	return ch, nil
}

// poll lists once and queues the changes since the previous list.
func (s *criPollStream) poll(ctx context.Context) error {
	cur, err := s.list(ctx)
	if err != nil {
		return err
	}
	now := time.Now()
	s.lastPoll = now
	var changes []engine.Change
	for id, c := range cur {
		p, had := s.last[id]
		if had && p.state == c.state {
			continue
		}
		var st *runtimeapi.ContainerStatus
		if c.state != runtimeapi.ContainerState_CONTAINER_CREATED || !had {
			r, err := s.a.rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
			switch {
			case engine.IsGRPCNotFound(err):
				// removed since the list: the next poll sees it gone
			case err != nil:
				return fmt.Errorf("cri at %s: poll container %s: %w", s.a.endpoint, id, err)
			default:
				st = r.GetStatus()
			}
		}
		changes = append(changes, criDiff(id, p, had, c, st, now)...)
	}
	for id, p := range s.last {
		if _, ok := cur[id]; ok {
			continue
		}
		if p.state == runtimeapi.ContainerState_CONTAINER_RUNNING {
			changes = append(changes, engine.Change{Type: model.EventDie, ContainerID: id, Time: now})
		}
		changes = append(changes, engine.Change{Type: model.EventDestroy, ContainerID: id, Time: now})
	}
	s.last = cur
	slices.SortStableFunc(changes, func(x, y engine.Change) int { return x.Time.Compare(y.Time) })
	s.queue = append(s.queue, changes...)
	return nil
}

// criRank orders the CRI states along a container's life; unknown is -1.
func criRank(s runtimeapi.ContainerState) int {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return 0
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return 1
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return 2
	}
	return -1
}

// criDiff returns the changes that take a container from what the previous
// poll saw (prev, if had) to what this poll sees (cur, with its status st when
// available): create for a new container, start when it got to running or
// beyond (and was started, per its status), die when it got to exited.
// engine.Change times come from the status where it has them, else now.
func criDiff(id string, prev criSeen, had bool, cur criSeen, st *runtimeapi.ContainerStatus, now time.Time) []engine.Change {
	at := func(ns int64) time.Time {
		if t := criTime(ns); !t.IsZero() {
			return t
		}
		return now
	}
	from, to := -1, criRank(cur.state)
	if had {
		from = criRank(prev.state)
		if from < 0 || to < 0 {
			return nil // unknown states: wait for a definite one
		}
	}
	var out []engine.Change
	if !had {
		out = append(out, engine.Change{Type: model.EventCreate, ContainerID: id, Time: at(st.GetCreatedAt())})
		from = 0
	}
	if from < 1 && to >= 1 && (to == 1 || st.GetStartedAt() > 0) {
		out = append(out, engine.Change{Type: model.EventStart, ContainerID: id, Time: at(st.GetStartedAt())})
	}
	if from < 2 && to == 2 {
		die := engine.Change{Type: model.EventDie, ContainerID: id, Time: at(st.GetFinishedAt())}
		if st.GetState() == runtimeapi.ContainerState_CONTAINER_EXITED {
			code := int(st.GetExitCode())
			die.ExitCode = &code
		}
		out = append(out, die)
	}
	if from == 2 && to == 1 {
		out = append(out, engine.Change{Type: model.EventStart, ContainerID: id, Time: at(st.GetStartedAt())})
	}
	return out
}

// Close ends the stream; a Next blocked waiting for the next poll returns.
func (s *criPollStream) Close() error {
	s.once.Do(func() {
		close(s.stop)
		if s.trigger != nil {
			_ = s.trigger.Close()
		}
	})
	return nil
}

// callerDone returns ctx's error once ctx is done or its deadline has passed.
// gRPC fails a call with DeadlineExceeded on its own timer, which can fire a
// moment before ctx reports it.
func callerDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}
