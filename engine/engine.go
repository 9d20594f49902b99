package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/agentd-dev/agentd/internal/unixsock"
	"github.com/agentd-dev/agentd/model"
)

// ErrNotFound is wrapped by Adapter.Inspect when the engine does not know the container.
var ErrNotFound = errors.New("container not found")

// ErrIgnored is wrapped by Stream.Next's caller-visible decode errors for events
// that are well-formed but of no interest (image pulls, network events); the
// watcher skips them without counting them as malformed.
var ErrIgnored = errors.New("event ignored")

// Adapter is the engine-specific half of a watcher: it speaks one engine's API.
// The engine-independent half (package watch) owns reconnects, resyncs and the
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

// ForeignEvents is implemented by an Adapter whose event stream may carry
// events of containers that are not its engine's: podman reads its events
// back from the journal, where every user's podman writes, so root podman's
// stream also tells of rootless containers. The watcher adds a container it
// did not list only when the engine can inspect it.
type ForeignEvents interface {
	ForeignEvents() bool
}

// InspectConcurrency is implemented by an Adapter whose List inspects
// containers one by one (Docker, podman): the watcher sets how many of those
// inspects may be in flight (watch.Options.InspectConcurrency). Called before
// the adapter's first List, not concurrently with it.
type InspectConcurrency interface {
	SetInspectConcurrency(n int)
}

// InspectMany is implemented by adapters that inspect several containers for
// the price of one: containerd lists the containers of a namespace matching
// any of several IDs in one request, and their tasks in one more. The
// watcher inspects a batch's containers through it, so that in a storm,
// where the request budget makes batches grow, a container costs less the
// more of them come together. ids are as Adapter.Inspect takes them; a
// container missing from the answer is gone (ErrNotFound).
type InspectMany interface {
	InspectMany(ctx context.Context, ids []string) (map[string]model.Container, error)
}

// ImageIDs is implemented by an Adapter whose create events name the image
// by the reference the container was created from (Docker's), not by its
// ID: the watcher asks it for the image's ID before it reports the create,
// so that the container's first export already carries container.image.id
// (a resource whose attributes change is a second series at the backend).
// Looking up an image does not wait for the container, whose inspect
// dockerd holds back while it starts it. An error wrapping ErrNotFound
// means the engine knows no such image.
type ImageIDs interface {
	ImageID(ctx context.Context, ref string) (string, error)
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
	// PID is the started task's PID in the engine's PID namespace, for a
	// start whose event says it (containerd's), 0 otherwise: the watcher
	// then needs no inspect to follow the container's stats.
	PID int
	// Container is what a create event itself says of its container (name,
	// image reference, labels), for engines whose events carry it, nil
	// otherwise. The watcher reports the create from it at once and asks the
	// engine for the rest (image ID, cgroup, PID) afterwards, so the event
	// does not wait for an inspect the engine may be slow to answer while it
	// starts the container. Never the PID.
	Container *model.Container
}

// ErrNotEngine is wrapped by a Probe's error for a socket that answered, but
// not as the family asked for (a Docker-compatible endpoint asked for libpod,
// a gRPC server without the CRI service). Discovery skips such sockets quietly.
var ErrNotEngine = errors.New("not an engine endpoint")

// Family is everything agentd knows about one engine family, as the family's
// package (engine/docker, engine/podman, engine/containerd, engine/cri)
// describes it. agentd wires an explicit list of families; discovery, the
// watchers and activation ask that list and know no engine API themselves.
type Family struct {
	// Name names the family in logs ("docker", "containerd").
	Name string
	// Types are the engine types the family's probe reports and its
	// adapters watch.
	Types []model.EngineType
	// Comms are the process names (/proc/PID/stat comm, at most 15
	// bytes) of the family's engine processes.
	Comms []string
	// Match, when set, must also accept a process's command line (podman:
	// only "podman system service" is an engine).
	Match func(cmdline []string) bool
	// Endpoints, when set, names the family's endpoints in a process's
	// command line (paths in the process's mount namespace), asked instead
	// of the process's listening sockets: conmon listens on no socket of
	// podman's, but names the storage of the podman that started it.
	// Discovery reaches each path from the host and probes it.
	Endpoints func(cmdline []string) []string
	// Probe asks the unix socket at endpoint (a host path) whether an engine
	// of the family answers there, and returns what answered. It honours
	// ctx's deadline; a socket that answers as something else gives an
	// error wrapping ErrNotEngine.
	Probe func(ctx context.Context, endpoint string) ([]model.Engine, error)
	// NewAdapter builds the watcher's adapter for an engine of one of Types;
	// the adapter logs to log. It does not connect: connecting is the
	// watcher's job, so that an engine that is down is retried, not refused.
	NewAdapter func(e model.Engine, log *slog.Logger) (Adapter, error)
	// Sockets are the final parts of the paths systemd socket units of the
	// family listen on ("docker.sock", "podman/podman.sock").
	Sockets []string
}

// Families is the explicit list of engine families agentd knows.
type Families []Family

// ForType returns the family whose adapters watch engines of type t.
func (fs Families) ForType(t model.EngineType) (Family, bool) {
	for _, f := range fs {
		for _, ft := range f.Types {
			if ft == t {
				return f, true
			}
		}
	}
	return Family{}, false
}

// ForEngine returns the family whose adapters watch e: the first of e's
// type that finds its endpoints the way e was found, in command lines
// (Family.Endpoints) for a daemonless engine, on sockets for any other.
func (fs Families) ForEngine(e model.Engine) (Family, bool) {
	for _, f := range fs {
		if slices.Contains(f.Types, e.Type) && (f.Endpoints != nil) == e.Daemonless {
			return f, true
		}
	}
	return fs.ForType(e.Type)
}

// ForSocket returns the family and engine type whose socket units listen on
// path p: p ends with "/"+suffix (or equals it) for one of the family's
// Sockets. The first family listed wins.
func (fs Families) ForSocket(p string) (Family, bool) {
	for _, f := range fs {
		for _, s := range f.Sockets {
			suf := strings.Trim(s, "/")
			if suf != "" && (p == suf || strings.HasSuffix(p, "/"+suf)) {
				return f, true
			}
		}
	}
	return Family{}, false
}

// ParseTime parses an engine's RFC 3339 time; Go's zero time
// ("0001-01-01T00:00:00Z") and junk give the zero time.
func ParseTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || t.Year() <= 1 {
		return time.Time{}
	}
	return t
}

// EventTime prefers the nanosecond timestamp; engines that send only seconds
// get those, and an event without either gets the zero time (the watcher
// stamps it on arrival).
func EventTime(sec, nano int64) time.Time {
	switch {
	case nano > 0:
		return time.Unix(0, nano)
	case sec > 0:
		return time.Unix(sec, 0)
	}
	return time.Time{}
}

// SplitImageRef splits "registry/name:tag" into name and tags; a digest
// reference keeps its digest in the name.
func SplitImageRef(ref string) (string, []string) {
	if ref == "" || strings.Contains(ref, "@") {
		return ref, nil
	}
	i := strings.LastIndex(ref, ":")
	if i < 0 || strings.Contains(ref[i:], "/") {
		return ref, nil
	}
	return ref[:i], []string{ref[i+1:]}
}

// IsGRPCNotFound tells whether a gRPC error of containerd or a CRI runtime,
// wrapped or not, means the object is gone.
func IsGRPCNotFound(err error) bool {
	return status.Code(err) == codes.NotFound
}

// InspectAll inspects ids with at most limit calls in flight, for adapters
// whose list lacks details. Containers gone in between (ErrNotFound) are left
// out; other errors are joined and returned with the containers that did
// answer.
func InspectAll(ctx context.Context, limit int, ids []string, inspect func(context.Context, string) (model.Container, error)) ([]model.Container, error) {
	out := make([]model.Container, len(ids))
	ok := make([]bool, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, max(limit, 1))
	var wg sync.WaitGroup
	for i, id := range ids {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return nil, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := inspect(ctx, id)
			switch {
			case err == nil:
				out[i], ok[i] = c, true
			case errors.Is(err, ErrNotFound):
			default:
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	res := make([]model.Container, 0, len(ids))
	for i := range out {
		if ok[i] {
			res = append(res, out[i])
		}
	}
	return res, errors.Join(errs...)
}

// DialGRPC returns a lazily connecting gRPC client connection to the unix
// socket at endpoint, for containerd and CRI runtimes. Every (re)connect
// dials through unixsock.Dial, so an endpoint under /proc/PID/root is
// resolved inside that root each time.
func DialGRPC(endpoint string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	dial := func(ctx context.Context, _ string) (net.Conn, error) { return unixsock.Dial(ctx, endpoint) }
	opts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(dial),
	}, opts...)
	return grpc.NewClient("unix://"+endpoint, opts...)
}

// ErrBadAnswer is wrapped by an adapter's error for an engine answer that
// parsed but cannot be right: a container without an ID, a negative PID.
var ErrBadAnswer = errors.New("bad answer")

// CheckID refuses an empty container ID, to be asked for or received.
func CheckID(id string) error {
	if id == "" {
		return fmt.Errorf("empty container ID: %w", ErrBadAnswer)
	}
	return nil
}

// CheckContainer refuses a container an engine described with an empty ID
// or a negative PID; the error names the field and its value.
func CheckContainer(c model.Container) error {
	if c.ID == "" {
		return fmt.Errorf("container %q without an ID: %w", c.Name, ErrBadAnswer)
	}
	if c.PID < 0 {
		return fmt.Errorf("container %s: negative PID %d: %w", c.ID, c.PID, ErrBadAnswer)
	}
	return nil
}
