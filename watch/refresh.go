package watch

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/model"
)

// A create that says what it created and a start of a container the model
// knows are reported from the event and the model at once: an inspect made
// then may wait seconds (dockerd holds a container's lock while it starts
// it, and the request budget may be spent in a storm), and the event must
// not wait with it. What only the engine can tell (the PID for the stats, the
// image ID, the cgroup, the health) is asked for afterwards by a refresh,
// one in flight per container, whose answer the session's loop merges into
// the model without an event.

// refreshed is the answer to a refresh of container k.
type refreshed struct {
	k   model.ContainerKey
	c   model.Container
	err error
	// failed counts the refreshes of k in a row that failed before this one.
	failed int
}

// refresher runs the refreshes of one session: at most
// Options.InspectConcurrency in flight, owned by the session (its goroutines
// end with the session's context, and wait waits for them). A refresh whose
// inspect fails (a timeout while the engine is busy, an engine error) is
// made again after a delay growing from Options.MinBackoff to MaxBackoff,
// for as long as the container is in the model: until then it has no PID,
// so no figures from its cgroup.
type refresher struct {
	w    *Watcher
	sem  chan struct{}
	done chan refreshed
	wg   sync.WaitGroup
	// inflight holds the containers being refreshed.
	inflight map[model.ContainerKey]*flight
	// batch numbers the session's batches (applyBatch counts them).
	batch uint64
}

// flight is a refresh in flight.
type flight struct {
	// batch is the batch that asked: its inspect is made after every
	// event of that batch.
	batch uint64
	// again is set when a later batch asked too: the answer may predate
	// its events, one more refresh follows.
	again bool
	// inspecting is set once the inspect is being made: a refresh waiting
	// for its turn or its retry delay is made after any event applied
	// before then.
	inspecting atomic.Bool
}

func newRefresher(w *Watcher) *refresher {
	return &refresher{
		w:        w,
		sem:      make(chan struct{}, w.opts.InspectConcurrency),
		done:     make(chan refreshed, w.opts.InspectConcurrency),
		inflight: map[model.ContainerKey]*flight{},
	}
}

// ask schedules a refresh of container k, whose event ch was reported from
// what it said. Called from the session's loop only.
func (r *refresher) ask(ctx context.Context, k model.ContainerKey, ch engine.Change) {
	if f, busy := r.inflight[k]; busy {
		if f.batch == r.batch || f.again || !f.inspecting.Load() {
			// The refresh asked for, or the one to follow it, is
			// made after this event.
			r.w.coalesced.Add(1)
		} else {
			f.again = true
		}
		return
	}
	r.start(ctx, k, ch, 0)
}

// start makes a refresh of k, the failed+1st in a row, after a delay when
// earlier ones failed.
func (r *refresher) start(ctx context.Context, k model.ContainerKey, ch engine.Change, failed int) {
	f := &flight{batch: r.batch}
	r.inflight[k] = f
	r.w.pending.Add(1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if failed > 0 {
			t := time.NewTimer(r.retryDelay(failed))
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.w.pending.Add(-1)
				return
			}
		}
		select {
		case r.sem <- struct{}{}:
		case <-ctx.Done():
			r.w.pending.Add(-1)
			return
		}
		f.inspecting.Store(true)
		c, err := r.w.inspect(ctx, ch)
		<-r.sem
		select {
		case r.done <- refreshed{k: k, c: c, err: err, failed: failed}:
		case <-ctx.Done():
			r.w.pending.Add(-1)
		}
	}()
}

// retryDelay is the wait before the refresh that follows failed ones.
func (r *refresher) retryDelay(failed int) time.Duration {
	d := r.w.opts.MinBackoff
	for range failed - 1 {
		if d >= r.w.opts.MaxBackoff/2 {
			return r.w.opts.MaxBackoff
		}
		d *= 2
	}
	return min(d, r.w.opts.MaxBackoff)
}

// answered merges a refresh's answer into the model, and asks again if an
// event came in the meantime or the inspect failed and the container is
// still in the model. Called from the session's loop only.
func (r *refresher) answered(ctx context.Context, a refreshed) {
	again := r.inflight[a.k].again
	delete(r.inflight, a.k)
	defer r.w.pending.Add(-1)
	retry := r.w.merge(a, !again, r.retryDelay(a.failed+1))
	if ctx.Err() != nil {
		return
	}
	ch := engine.Change{ContainerID: a.k.ID, Namespace: a.k.Namespace}
	switch {
	case again:
		r.start(ctx, a.k, ch, 0)
	case retry:
		r.start(ctx, a.k, ch, a.failed+1)
	}
}

// wait waits for the refreshes' goroutines and drops the answers not merged;
// cancel the session's context first.
func (r *refresher) wait() {
	r.wg.Wait()
	for {
		select {
		case <-r.done:
			r.w.pending.Add(-1)
		default:
			return
		}
	}
}

// merge brings what a refresh saw into the model's container: what an event
// cannot tell (name, image, labels, cgroup, restart count) always; the PID,
// the health and the engine's own start time only when current (no event
// of the container was applied since the refresh was asked: its answer is
// not older than the model) and the inspect saw the run the model is in (it
// may be ahead of the stream: the container died or ran again, and those
// events, and their own refresh, follow). It reports whether the refresh
// failed for a container still in the model, to be made again after next.
func (w *Watcher) merge(a refreshed, current bool, next time.Duration) (retry bool) {
	cur, known := w.store.Container(a.k)
	if a.err != nil {
		if !known || errors.Is(a.err, engine.ErrNotFound) || errors.Is(a.err, context.Canceled) {
			return false
		}
		log := w.log.Debug
		if a.failed == 0 {
			log = w.log.Warn
		}
		log("container reported from its events only until its inspect answers",
			logging.KeyContainerID, a.k.ID, "container", cur.Name, "failed", a.failed+1, "retry_in", next, logging.Err(a.err))
		return true
	}
	if !known {
		return false
	}
	if a.failed > 0 {
		w.log.Info("container inspected after failed attempts",
			logging.KeyContainerID, a.k.ID, "container", cur.Name, "failed", a.failed)
	}
	in := a.c
	w.learnImage(in)
	c := cur
	if in.Name != "" {
		c.Name = in.Name
	}
	if in.ImageName != "" || in.ImageID != "" {
		c.ImageName, c.ImageTags, c.ImageID = in.ImageName, in.ImageTags, in.ImageID
	}
	if in.Labels != nil {
		c.Labels = in.Labels
	}
	if in.CgroupPath != "" {
		c.CgroupPath = in.CgroupPath
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = in.CreatedAt
	}
	c.RestartCount = max(c.RestartCount, in.RestartCount)
	if current && sameRun(cur, in) {
		c.PID, c.Health = in.PID, in.Health
		if !in.StartedAt.IsZero() {
			// The engine's record of the start, as a list gives it
			// after a reconnect: the event's time is a little later.
			c.StartedAt = in.StartedAt
		}
	}
	w.store.Upsert(c)
	return false
}

// runSlack is how much earlier than the start event an engine may record
// the start of the same run.
const runSlack = 5 * time.Second

// sameRun reports whether inspection in saw the run of the container that
// the model's cur is in.
func sameRun(cur, in model.Container) bool {
	if cur.State.Running() != in.State.Running() || ahead(in, cur.StartedAt) {
		return false
	}
	return !in.StartedAt.Before(cur.StartedAt.Add(-runSlack))
}

// maxImages bounds the image IDs a watcher remembers.
const maxImages = 4096

// learnImage remembers the image ID behind c's image reference, for the next
// create of a container from it (see imageID).
func (w *Watcher) learnImage(c model.Container) {
	if c.ImageID == "" || c.ImageName == "" {
		return
	}
	w.imu.Lock()
	defer w.imu.Unlock()
	if len(w.images) >= maxImages {
		clear(w.images)
	}
	w.images[imageRef(c)] = c.ImageID
}

// imageID returns the image ID last seen behind c's image reference, "" if
// none was: a create reported from its event carries the ID its image had
// when agentd last looked (a tag pulled anew since is right in the model
// once the refresh is answered).
func (w *Watcher) imageID(c model.Container) string {
	w.imu.Lock()
	defer w.imu.Unlock()
	return w.images[imageRef(c)]
}

func imageRef(c model.Container) string {
	return c.ImageName + ":" + strings.Join(c.ImageTags, ",")
}

// imageLookupTimeout bounds the image lookups of a batch (see lookUpImages):
// the creates wait for them, and the event latency target is 300 ms.
const imageLookupTimeout = 150 * time.Millisecond

// lookUpImages asks the engine (engine.ImageIDs) for the ID of every image
// the batch's creates name by reference, one lookup per reference, in
// parallel, and remembers the answers for imageID: a create reported from
// its event then carries its image ID from its first export, as the later
// ones (from inspects) do, so its resource does not change. The reference is
// looked up again in every batch, not taken from what was learnt before: a
// tag may have moved to a new image (a rebuild) since. A lookup that fails
// or takes longer than imageLookupTimeout leaves what was learnt before.
func (w *Watcher) lookUpImages(ctx context.Context, batch []engine.Change) {
	ids, ok := w.adapter.(engine.ImageIDs)
	if !ok {
		return
	}
	var refs []string
	for _, ch := range batch {
		if ch.Type != model.EventCreate || ch.Container == nil || ch.Container.ImageName == "" {
			continue
		}
		if ref := imageLookupRef(*ch.Container); !slices.Contains(refs, ref) {
			refs = append(refs, ref)
		}
	}
	if len(refs) == 0 {
		return
	}
	lctx, cancel := context.WithTimeout(ctx, imageLookupTimeout)
	defer cancel()
	sem := make(chan struct{}, w.opts.InspectConcurrency)
	var wg sync.WaitGroup
	for _, ref := range refs {
		select {
		case sem <- struct{}{}:
		case <-lctx.Done():
			wg.Wait()
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id, err := ids.ImageID(lctx, ref)
			if err != nil {
				w.log.Debug("looking up a created container's image", "image", ref, logging.Err(err))
				return
			}
			name, tags := engine.SplitImageRef(ref)
			w.learnImage(model.Container{ImageName: name, ImageTags: tags, ImageID: id})
		}()
	}
	wg.Wait()
}

// imageLookupRef is the reference c was created from, as its create event
// named it: the image name, and its tag when there is one.
func imageLookupRef(c model.Container) string {
	if len(c.ImageTags) == 1 {
		return c.ImageName + ":" + c.ImageTags[0]
	}
	return c.ImageName
}
