package containerd

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc"

	apievents "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/events/v1"
	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/namespaces"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// The containerd event topics the adapter subscribes to.
const (
	containerdTopicContainerCreate = "/containers/create"
	containerdTopicContainerDelete = "/containers/delete"
	containerdTopicTaskCreate      = "/tasks/create"
	containerdTopicTaskStart       = "/tasks/start"
	containerdTopicTaskExit        = "/tasks/exit"
	containerdTopicTaskPaused      = "/tasks/paused"
	containerdTopicTaskResumed     = "/tasks/resumed"
	containerdTopicTaskOOM         = "/tasks/oom"
	containerdTopicTaskDelete      = "/tasks/delete"
)

var containerdTopics = []string{
	containerdTopicContainerCreate,
	containerdTopicContainerDelete,
	containerdTopicTaskCreate,
	containerdTopicTaskStart,
	containerdTopicTaskExit,
	containerdTopicTaskPaused,
	containerdTopicTaskResumed,
	containerdTopicTaskOOM,
	containerdTopicTaskDelete,
}

const (
	// containerdSyncNamespace is the namespace of the marker events that
	// Subscribe publishes to learn that its subscription is registered. Only
	// the event exchange sees it: no namespace record is created.
	containerdSyncNamespace = "agentd-sync"
	// containerdSyncTopicPrefix starts the marker event's topic; a random token
	// per subscription follows.
	containerdSyncTopicPrefix = "/agentd/sync/"
	// containerdSyncRepublishMin and Max bound the interval, doubling from
	// Min, at which the marker is published again while Subscribe waits for it
	// (a marker published before the server registered the subscription is
	// never delivered; here that takes a few milliseconds).
	containerdSyncRepublishMin = 2 * time.Millisecond
	containerdSyncRepublishMax = 100 * time.Millisecond
	// containerdSyncTimeout bounds Subscribe's wait for its marker.
	containerdSyncTimeout = 10 * time.Second
)

// Subscribe opens containerd's event stream for all namespaces, filtered to the
// container and task lifecycle topics.
//
// containerd's Subscribe RPC gives no acknowledgement that the server has
// registered the subscription, so Subscribe publishes a marker event (topic
// /agentd/sync/<random>, namespace agentd-sync, which the subscription's
// filter also matches) and returns only once that marker came back on the
// stream; events that arrive before it are kept and delivered first. Every
// change after Subscribe returns therefore reaches the engine.Stream. (Other
// unfiltered subscribers of the same containerd, such as `ctr events`, see the
// marker too; Docker's and the CRI plugin's subscriptions filter on their
// namespaces and do not.)
//
// The stream stays open until Close is called or ctx ends; Next must not be
// called concurrently with itself.
func (a *Adapter) Subscribe(ctx context.Context) (engine.Stream, error) {
	return a.subscribe(ctx)
}

// SubscribeEvents subscribes to the container and task events of the
// containerd at endpoint over conn, as Subscribe does, for another engine's
// adapter that serves on the same socket (the CRI adapter lists on them).
// Received delivers them; Close ends the subscription.
func SubscribeEvents(ctx context.Context, conn *grpc.ClientConn, endpoint string, log *slog.Logger) (*EventStream, error) {
	return (&Adapter{conn: conn, endpoint: endpoint, log: log}).subscribe(ctx)
}

// Received returns the channel of the subscription's events; an error ends it.
func (s *EventStream) Received() <-chan Received { return s.recv }

// Err is the error that ended the subscription, nil for an event.
func (r Received) Err() error { return r.err }

// subscribe is Subscribe; it needs only a.conn, a.endpoint and a.log.
func (a *Adapter) subscribe(ctx context.Context) (*EventStream, error) {
	token, err := containerdSyncToken()
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: subscribe: %w", a.endpoint, err)
	}
	syncTopic := containerdSyncTopicPrefix + token
	filters := make([]string, 0, len(containerdTopics)+1)
	for _, t := range append(containerdTopics, syncTopic) {
		filters = append(filters, fmt.Sprintf("topic==%q", t))
	}

	sctx, cancel := context.WithCancel(ctx)
	events := eventsapi.NewEventsClient(a.conn)
	sub, err := events.Subscribe(sctx, &eventsapi.SubscribeRequest{Filters: filters})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("containerd at %s: subscribe: %w", a.endpoint, err)
	}
	s := &EventStream{
		a:         a,
		syncTopic: syncTopic,
		cancel:    cancel,
		recv:      make(chan Received),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	go s.pump(sctx, sub)

	if err := s.awaitSync(ctx, events); err != nil {
		_ = s.Close()
		return nil, fmt.Errorf("containerd at %s: subscribe: %w", a.endpoint, err)
	}
	a.log.Debug("containerd event subscription in place", "topic", syncTopic)
	return s, nil
}

// containerdSyncToken returns a random token for a marker topic.
func containerdSyncToken() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// Received is one result of the stream's Recv: an event, or the error that
// ended the subscription.
type Received struct {
	env *apitypes.Envelope
	err error
}

// EventStream is the engine.Stream of a Adapter. A goroutine (pump)
// reads the gRPC stream so that Next can honour its ctx; Close stops it and
// waits for it.
type EventStream struct {
	a         *Adapter
	syncTopic string
	cancel    context.CancelFunc
	recv      chan Received
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	pending []*apitypes.Envelope // read by Subscribe before the marker; Next's only
	failed  error                // the error that ended the stream
}

var _ engine.Stream = (*EventStream)(nil)

// pump forwards Recv results to s.recv until an error or cancellation.
func (s *EventStream) pump(ctx context.Context, sub eventsapi.Events_SubscribeClient) {
	defer close(s.done)
	for {
		env, err := sub.Recv()
		select {
		case s.recv <- Received{env: env, err: err}:
		case <-ctx.Done():
			return
		}
		if err != nil {
			return
		}
	}
}

// awaitSync publishes the marker until it comes back on the stream.
func (s *EventStream) awaitSync(ctx context.Context, events eventsapi.EventsClient) error {
	ctx, cancel := context.WithTimeout(ctx, containerdSyncTimeout)
	defer cancel()
	marker, err := anypb.New(&emptypb.Empty{})
	if err != nil {
		return err
	}
	pctx := namespaces.WithNamespace(ctx, containerdSyncNamespace)
	publish := func() error {
		_, err := events.Publish(pctx, &eventsapi.PublishRequest{Topic: s.syncTopic, Event: marker})
		if err != nil {
			return fmt.Errorf("publish marker event %s: %w", s.syncTopic, err)
		}
		return nil
	}
	if err := publish(); err != nil {
		return err
	}
	every := containerdSyncRepublishMin
	tick := time.NewTimer(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for marker event %s: %w", s.syncTopic, ctx.Err())
		case <-tick.C:
			if err := publish(); err != nil {
				return err
			}
			every = min(2*every, containerdSyncRepublishMax)
			tick.Reset(every)
		case r := <-s.recv:
			if r.err != nil {
				return fmt.Errorf("events stream: %w", r.err)
			}
			if r.env.GetTopic() == s.syncTopic {
				return nil
			}
			s.pending = append(s.pending, r.env)
		}
	}
}

// Next returns the next decoded change. Errors wrapping engine.ErrIgnored or
// engine.ErrMalformed concern one event only; any other error ends the stream (and
// every later call returns it).
func (s *EventStream) Next(ctx context.Context) (engine.Change, error) {
	for {
		if s.failed != nil {
			return engine.Change{}, s.failed
		}
		var env *apitypes.Envelope
		if len(s.pending) > 0 {
			env = s.pending[0]
			s.pending[0] = nil
			s.pending = s.pending[1:]
		} else {
			select {
			case <-ctx.Done():
				return engine.Change{}, ctx.Err()
			case <-s.stop:
				s.failed = fmt.Errorf("containerd at %s: events stream closed", s.a.endpoint)
				continue
			case r := <-s.recv:
				if r.err != nil {
					s.failed = fmt.Errorf("containerd at %s: events stream: %w", s.a.endpoint, r.err)
					continue
				}
				env = r.env
			}
		}
		if env.GetTopic() == s.syncTopic {
			continue // a marker published again while Subscribe waited
		}
		var ts time.Time
		if t := env.GetTimestamp(); t != nil && t.IsValid() {
			ts = t.AsTime()
		}
		ch, err := decodeContainerdEvent(env.GetNamespace(), env.GetTopic(), ts, env.GetEvent().GetTypeUrl(), env.GetEvent().GetValue())
		if err != nil {
			return engine.Change{}, fmt.Errorf("containerd at %s: event %s in namespace %s: %w", s.a.endpoint, env.GetTopic(), env.GetNamespace(), err)
		}
		switch ch.Type {
		case model.EventDie:
			if ch.ExitCode != nil {
				s.a.rememberExit(ch.Namespace, ch.ContainerID, *ch.ExitCode, ch.Time)
			}
		case model.EventDestroy:
			s.a.forgetExit(ch.Namespace, ch.ContainerID)
		}
		return ch, nil
	}
}

// Close ends the subscription and waits for the reading goroutine.
func (s *EventStream) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.cancel()
		<-s.done
	})
	return nil
}

// decodeContainerdEvent turns one containerd event (its envelope's namespace,
// topic and timestamp, and the Any it carries) into a engine.Change. It returns an
// error wrapping engine.ErrIgnored for topics of no interest (task create and delete,
// exits of exec'd processes) and engine.ErrMalformed for anything it cannot decode,
// including a payload type that does not match the topic and a missing
// namespace or container ID. It never panics, whatever the input.
func decodeContainerdEvent(ns, topic string, ts time.Time, typeURL string, value []byte) (engine.Change, error) {
	switch topic {
	case containerdTopicContainerCreate, containerdTopicContainerDelete, containerdTopicTaskStart,
		containerdTopicTaskExit, containerdTopicTaskPaused, containerdTopicTaskResumed, containerdTopicTaskOOM:
	case containerdTopicTaskCreate, containerdTopicTaskDelete:
		return engine.Change{}, engine.ErrIgnored
	default:
		return engine.Change{}, fmt.Errorf("topic %q: %w", topic, engine.ErrIgnored)
	}
	if ns == "" {
		return engine.Change{}, fmt.Errorf("no namespace: %w", engine.ErrMalformed)
	}
	v, err := unmarshalAny(typeURL, value)
	if err != nil {
		return engine.Change{}, fmt.Errorf("decode %q: %v: %w", typeURL, err, engine.ErrMalformed)
	}
	ch := engine.Change{Namespace: ns, Time: ts}
	ok := false
	switch e := v.(type) {
	case *apievents.ContainerCreate:
		ok = topic == containerdTopicContainerCreate
		ch.Type, ch.ContainerID = model.EventCreate, e.GetID()
	case *apievents.ContainerDelete:
		ok = topic == containerdTopicContainerDelete
		ch.Type, ch.ContainerID = model.EventDestroy, e.GetID()
	case *apievents.TaskStart:
		ok = topic == containerdTopicTaskStart
		ch.Type, ch.ContainerID = model.EventStart, e.GetContainerID()
		ch.PID = int(min(e.GetPid(), math.MaxInt32))
	case *apievents.TaskPaused:
		ok = topic == containerdTopicTaskPaused
		ch.Type, ch.ContainerID = model.EventPause, e.GetContainerID()
	case *apievents.TaskResumed:
		ok = topic == containerdTopicTaskResumed
		ch.Type, ch.ContainerID = model.EventUnpause, e.GetContainerID()
	case *apievents.TaskOOM:
		ok = topic == containerdTopicTaskOOM
		ch.Type, ch.ContainerID = model.EventOOM, e.GetContainerID()
	case *apievents.TaskExit:
		ok = topic == containerdTopicTaskExit
		ch.Type, ch.ContainerID = model.EventDie, e.GetContainerID()
		if ok && e.GetID() != "" && e.GetID() != e.GetContainerID() {
			return engine.Change{}, fmt.Errorf("exit of exec process %s in container %s: %w", e.GetID(), e.GetContainerID(), engine.ErrIgnored)
		}
		code := int(e.GetExitStatus())
		ch.ExitCode = &code
		if t := e.GetExitedAt(); t != nil && t.IsValid() {
			ch.Time = t.AsTime()
		}
	}
	if !ok {
		return engine.Change{}, fmt.Errorf("payload %q does not match the topic: %w", typeURL, engine.ErrMalformed)
	}
	if ch.ContainerID == "" {
		return engine.Change{}, fmt.Errorf("no container ID: %w", engine.ErrMalformed)
	}
	return ch, nil
}

// unmarshalAny decodes an event payload by its type URL, looked up among the
// protobuf types linked in (containerd's event types register themselves;
// containerd names them without a host, "containerd.events.TaskExit").
// containerd's typeurl package does the same but also links the gogo
// protobuf runtime, a quarter of a megabyte of agentd's code.
func unmarshalAny(typeURL string, value []byte) (proto.Message, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(typeURL)
	if err != nil {
		return nil, err
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(value, m); err != nil {
		return nil, err
	}
	return m, nil
}
