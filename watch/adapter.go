package watch

import (
	"context"
	"errors"
	"time"

	"github.com/agentd-dev/agentd/model"
)

// ErrNotFound is wrapped by Adapter.Inspect when the engine does not know the container.
var ErrNotFound = errors.New("container not found")

// ErrIgnored is wrapped by Stream.Next's caller-visible decode errors for events
// that are well-formed but of no interest (image pulls, network events); the
// watcher skips them without counting them as malformed.
var ErrIgnored = errors.New("event ignored")

// Adapter is the engine-specific half of a watcher: it speaks one engine's API.
// The engine-independent half (the Watcher) owns reconnects, resyncs and the
// model. List and Inspect may be called while a Stream from Subscribe is open.
type Adapter interface {
	// Subscribe opens the engine's event stream. When it returns a nil error the
	// subscription is in place: every change after that moment reaches the Stream,
	// so a List issued afterwards cannot miss anything (subscribe first, list,
	// reconcile).
	Subscribe(ctx context.Context) (Stream, error)
	// List returns every container the engine knows, in all states.
	List(ctx context.Context) ([]model.Container, error)
	// Inspect returns one container's current state, or an error wrapping
	// ErrNotFound when it is gone.
	Inspect(ctx context.Context, id string) (model.Container, error)
}

// Stream is an open event subscription.
type Stream interface {
	// Next blocks until the next change, ctx ends, or the stream fails. An error
	// wrapping ErrIgnored or ErrMalformed means this one event is skipped and the
	// stream is still usable; any other error ends the stream.
	Next(ctx context.Context) (Change, error)
	// Close ends the subscription and releases its connection.
	Close() error
}

// ErrMalformed is wrapped by Stream.Next for an event that could not be decoded;
// the watcher counts and logs it and goes on with the stream.
var ErrMalformed = errors.New("malformed event")

// Change is one engine event, decoded into agentd's terms but not yet applied
// to the model.
type Change struct {
	// Type is the normalised lifecycle event.
	Type model.EventType
	// ContainerID is the engine's ID of the container concerned.
	ContainerID string
	// Namespace is the containerd namespace, "" for other engines.
	Namespace string
	// Time is the engine's timestamp of the event.
	Time time.Time
	// ExitCode is set for die events when the engine reports it.
	ExitCode *int
	// Signal is the signal that stopped the container, when the engine says.
	Signal string
}
