package logging

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"
)

// maxTracked bounds the suppressor's memory: records whose identity would be
// the maxTracked+1st one tracked in a window pass through unlimited.
const maxTracked = 4096

// NewRateLimit wraps h so that each kind of record — same level, message and
// identity attributes (every Key constant but [KeyErr], from the record and
// from With) — passes at most burst times per interval. Repeats beyond that
// are dropped and counted; when the interval that dropped them ends, one
// summary record "suppressed N repeats" goes to h at the dropped records'
// level, carrying their identity attributes, "repeated_message" (the
// original message), "repeated_message_id" (the original message_id, if
// any), "suppressed" (N), "interval" and MESSAGE_ID [MessageIDSuppressed].
//
// It works with any handler. burst < 1 or interval <= 0 returns h unchanged.
// The returned handler and those derived with WithAttrs/WithGroup share one
// counter table and are safe for concurrent use. Summaries are written from a
// time.AfterFunc timer, so one may arrive after the last record; nothing else
// runs in the background.
func NewRateLimit(h slog.Handler, burst int, interval time.Duration) slog.Handler {
	if burst < 1 || interval <= 0 {
		return h
	}
	return &rateLimitHandler{
		inner: h,
		lim:   &limiter{burst: burst, interval: interval, entries: map[string]*limitEntry{}, now: time.Now},
	}
}

type rateLimitHandler struct {
	inner slog.Handler
	lim   *limiter
	// identity holds the identity attributes added with WithAttrs as
	// flattened key → value, plus their attrs for summaries.
	identity      map[string]string
	identityAttrs []slog.Attr
	prefix        string
}

var _ slog.Handler = (*rateLimitHandler)(nil)

type limiter struct {
	burst    int
	interval time.Duration
	now      func() time.Time

	mu        sync.Mutex
	entries   map[string]*limitEntry
	nextSweep time.Time
}

type limitEntry struct {
	start      time.Time
	count      int
	suppressed int
	scheduled  bool
	// what the summary says and where it goes.
	level   slog.Level
	message string
	attrs   []slog.Attr
	handler slog.Handler
}

// Enabled defers to the wrapped handler.
func (h *rateLimitHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

// Handle passes r on unless its kind exceeded the burst in this interval.
func (h *rateLimitHandler) Handle(ctx context.Context, r slog.Record) error {
	ids := make(map[string]string, len(h.identity)+2)
	attrs := append([]slog.Attr(nil), h.identityAttrs...)
	for k, v := range h.identity {
		ids[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		collectIdentity(ids, &attrs, h.prefix, a)
		return true
	})
	key := identityKey(r.Level, r.Message, ids)
	if !h.lim.admit(key, r.Level, r.Message, attrs, h.inner) {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a handler whose records also carry attrs.
func (h *rateLimitHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.inner = h.inner.WithAttrs(attrs)
	h2.identity = make(map[string]string, len(h.identity)+len(attrs))
	for k, v := range h.identity {
		h2.identity[k] = v
	}
	h2.identityAttrs = append([]slog.Attr(nil), h.identityAttrs...)
	for _, a := range attrs {
		collectIdentity(h2.identity, &h2.identityAttrs, h.prefix, a)
	}
	return &h2
}

// WithGroup returns a handler that nests later attributes under name.
func (h *rateLimitHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.inner = h.inner.WithGroup(name)
	h2.prefix += name + "_"
	return &h2
}

// collectIdentity records a (flattened under prefix) when it is an identity
// attribute. Summaries get identity attributes at the top level, under their
// flattened key.
func collectIdentity(ids map[string]string, attrs *[]slog.Attr, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "_"
		}
		for _, ga := range a.Value.Group() {
			collectIdentity(ids, attrs, p, ga)
		}
		return
	}
	k := prefix + a.Key
	if !identityKeys[k] {
		return
	}
	v := a.Value.String()
	if _, seen := ids[k]; !seen {
		*attrs = append(*attrs, slog.String(k, v))
	}
	ids[k] = v
}

func identityKey(l slog.Level, msg string, ids map[string]string) string {
	keys := make([]string, 0, len(ids))
	for k := range ids {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%d\x00%s", l, msg)
	for _, k := range keys {
		fmt.Fprintf(&b, "\x00%s=%s", k, ids[k])
	}
	return b.String()
}

// admit counts one record of kind key and reports whether it may pass.
func (l *limiter) admit(key string, level slog.Level, msg string, attrs []slog.Attr, h slog.Handler) bool {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.After(l.nextSweep) {
		l.sweep(now)
		l.nextSweep = now.Add(l.interval)
	}
	e, ok := l.entries[key]
	if !ok || (now.Sub(e.start) >= l.interval && !e.scheduled) {
		if !ok && len(l.entries) >= maxTracked {
			return true
		}
		l.entries[key] = &limitEntry{start: now, count: 1, level: level, message: msg, attrs: attrs, handler: h}
		return true
	}
	e.count++
	if e.count <= l.burst {
		return true
	}
	e.suppressed++
	e.handler = h
	if !e.scheduled {
		e.scheduled = true
		time.AfterFunc(e.start.Add(l.interval).Sub(now), func() { l.flush(key, e) })
	}
	return false
}

// sweep forgets entries whose interval ended without suppression; entries
// with a pending summary are removed by flush.
func (l *limiter) sweep(now time.Time) {
	for k, e := range l.entries {
		if !e.scheduled && now.Sub(e.start) >= l.interval {
			delete(l.entries, k)
		}
	}
}

// flush ends e's interval and writes its summary.
func (l *limiter) flush(key string, e *limitEntry) {
	l.mu.Lock()
	n := e.suppressed
	if l.entries[key] == e {
		delete(l.entries, key)
	}
	l.mu.Unlock()
	if n == 0 {
		return
	}
	r := slog.NewRecord(time.Now(), e.level, fmt.Sprintf("suppressed %d repeats", n), 0)
	for _, a := range e.attrs {
		if a.Key == KeyMessageID {
			a.Key = "repeated_message_id"
		}
		r.AddAttrs(a)
	}
	r.AddAttrs(
		slog.String("repeated_message", e.message),
		slog.Int("suppressed", n),
		slog.Duration("interval", l.interval),
		MessageID(MessageIDSuppressed),
	)
	_ = e.handler.Handle(context.Background(), r)
}
