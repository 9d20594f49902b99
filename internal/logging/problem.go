package logging

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"time"
)

// Problem logs one recurring failure the way an operator reads it in the
// journal: once when it starts, then while it lasts after one interval, two,
// four and so on up to an hour between lines (each with how often it failed
// meanwhile), and once when it ends. A ten-minute outage is five lines. Use one
// Problem per thing that can fail on its own (an exporter, an engine's
// watch); the logger should carry that thing's attributes.
//
// Its methods are safe for concurrent use.
type Problem struct {
	log      *slog.Logger
	msg      string
	interval time.Duration
	now      func() time.Time

	mu       sync.Mutex
	since    time.Time // zero: no problem now
	lastLog  time.Time
	gap      time.Duration // until the next repeat may be logged
	failures int           // since the problem started
	unlogged int           // failures since the last line
}

// maxRepeatGap is the longest a going problem stays unmentioned.
const maxRepeatGap = time.Hour

// NewProblem returns a Problem that logs msg to log at WARN when it starts
// and repeats, and "<msg>: resolved" at INFO when it ends. interval <= 0
// means DefaultInterval (a minute).
func NewProblem(log *slog.Logger, msg string, interval time.Duration) *Problem {
	if interval <= 0 {
		interval = DefaultInterval
	}
	return &Problem{log: log, msg: msg, interval: interval, now: time.Now}
}

// Fail records one failure: the first of a problem is logged with err and
// attrs, later ones when the gap since the last line has passed, with the
// count of failures since the last line and the problem's duration so far.
func (p *Problem) Fail(err error, attrs ...any) {
	p.mu.Lock()
	now := p.now()
	p.failures++
	p.unlogged++
	first := p.since.IsZero()
	switch {
	case first:
		p.since, p.gap = now, p.interval
	case now.Sub(p.lastLog) < p.gap:
		p.mu.Unlock()
		return
	default:
		p.gap = min(2*p.gap, maxRepeatGap)
	}
	n, since := p.unlogged, p.since
	p.lastLog, p.unlogged = now, 0
	p.mu.Unlock()
	args := append([]any{Err(err)}, attrs...)
	if !first {
		args = append(args, "failures", n, "failing_for", now.Sub(since).Round(time.Second))
	}
	p.logAt(slog.LevelWarn, p.msg, args)
}

// OK records a success: when a problem was going on it ends, logged once with
// how long it lasted and how many failures it had. Otherwise OK does nothing.
func (p *Problem) OK(attrs ...any) {
	p.mu.Lock()
	if p.since.IsZero() {
		p.mu.Unlock()
		return
	}
	d, n := p.now().Sub(p.since).Round(time.Second), p.failures
	p.since, p.failures, p.unlogged = time.Time{}, 0, 0
	p.mu.Unlock()
	p.logAt(slog.LevelInfo, p.msg+": resolved", append([]any{"failures", n, "failed_for", d}, attrs...))
}

// logAt logs with the source of Fail's or OK's caller, so that the journal's
// CODE_FILE names the part that failed (watch/watcher.go), not this file.
func (p *Problem) logAt(level slog.Level, msg string, args []any) {
	ctx := context.Background()
	if !p.log.Enabled(ctx, level) {
		return
	}
	var pcs [1]uintptr
	runtime.Callers(3, pcs[:]) // runtime.Callers, logAt, Fail or OK
	r := slog.NewRecord(time.Now(), level, msg, pcs[0])
	r.Add(args...)
	_ = p.log.Handler().Handle(ctx, r)
}

// Failing reports whether a problem is going on.
func (p *Problem) Failing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.since.IsZero()
}
