package telemetry

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// Console is the human-readable sink used when no OTLP endpoint is
// configured; it reads like `docker stats` grouped by engine. Each metrics
// round shows the engine tree (type, version, where each engine lives, up or
// down) and, per engine, its containers with CPU %, MEM USAGE / LIMIT, NET
// I/O, BLOCK I/O and PIDS; each lifecycle event is one line (time, engine,
// container, event, exit code). On a terminal the view is redrawn in place
// with the latest events under it; otherwise rounds and events are appended
// as plain text. With no engine it prints the hint of ConsoleOptions.
//
// Console is both a MetricSink and an sdklog.Exporter, and safe for
// concurrent use (writes are serialised).
type Console struct {
	mu      sync.Mutex
	w       io.Writer
	opts    ConsoleOptions
	names   map[string]string // engine ID -> human name, from the last round
	body    string            // the last round, rendered (terminal)
	events  []string          // the latest event lines (terminal)
	drawn   bool              // a round was drawn (terminal)
	cleared bool              // the screen was cleared once (terminal)
	hinted  bool              // the full hint was printed (plain)
}

// ConsoleOptions tune a Console. The zero value appends plain text.
type ConsoleOptions struct {
	// Terminal redraws the view in place with ANSI escapes (the writer is a
	// terminal) instead of appending each round.
	Terminal bool
	// Hint says what was looked for and how to start an engine; it is
	// printed instead of the tables when a round has no engine.
	Hint func() string
	// Snapshot, when set, receives every printable round instead of the
	// writer, and events are dropped: `agentd --once` picks one to print.
	Snapshot func(Snapshot)
	// Now and Location are the clock and time zone of the view's times;
	// nil means time.Now and time.Local.
	Now      func() time.Time
	Location *time.Location
}

// Snapshot is one rendered round, for ConsoleOptions.Snapshot.
type Snapshot struct {
	// Text is the round as the plain view prints it.
	Text string
	// Engines and Containers count what the round holds.
	Engines, Containers int
	// Complete is true when every engine is up and every container has its
	// CPU use (the second sample of a container has it).
	Complete bool
}

// consoleEvents is how many event lines the terminal view keeps under the tables.
const consoleEvents = 10

var (
	_ MetricSink      = (*Console)(nil)
	_ sdklog.Exporter = (*Console)(nil)
)

// NewConsole returns a Console writing to w.
func NewConsole(w io.Writer, opts ConsoleOptions) *Console {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Location == nil {
		opts.Location = time.Local
	}
	return &Console{w: w, opts: opts, names: map[string]string{}}
}

func resAttr(r *resource.Resource, key string) string {
	if r == nil {
		return ""
	}
	v, _ := r.Set().Value(attribute.Key(key))
	return v.String()
}

// ExportMetrics prints the round: the engine tree and each engine's
// containers, or the hint when there is no engine.
func (c *Console) ExportMetrics(_ context.Context, batch []*metricdata.ResourceMetrics) error {
	r := reduceRound(batch)
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.names)
	for _, e := range r.engines {
		c.names[e.id] = r.name(e)
	}
	var b strings.Builder
	switch {
	case len(r.engines) == 0 && c.opts.Terminal, len(r.engines) == 0 && !c.hinted, len(r.engines) == 0 && c.opts.Snapshot != nil:
		b.WriteString(c.hint())
		c.hinted = true
	case len(r.engines) == 0:
		b.WriteString("no container engine found yet\n")
	default:
		c.hinted = false
		r.renderEngines(&b)
		r.renderContainers(&b)
	}
	if c.opts.Snapshot != nil {
		c.opts.Snapshot(Snapshot{Text: b.String(), Engines: len(r.engines), Containers: r.containers, Complete: r.complete()})
		return nil
	}
	if c.opts.Terminal {
		c.body = b.String()
		c.drawn = true
		return c.redraw()
	}
	_, err := fmt.Fprintf(c.w, "%s\n%s\n", c.opts.Now().In(c.opts.Location).Format(time.TimeOnly), b.String())
	return err
}

func (c *Console) hint() string {
	if c.opts.Hint != nil {
		return c.opts.Hint()
	}
	return "no container engine found\n"
}

// redraw draws the terminal view from the top of the screen: the screen is
// cleared the first time only; then every line is erased to its end and the
// rest of the screen after it, which does not flicker the way clearing the
// whole screen every time does. Log lines written meanwhile (to stderr, on
// the same terminal) show under the view until the next redraw.
func (c *Console) redraw() error {
	var b strings.Builder
	if !c.cleared { // what the terminal showed before goes, once
		b.WriteString("\x1b[2J")
		c.cleared = true
	}
	b.WriteString("\x1b[H")
	line := func(s string) { b.WriteString(s + "\x1b[K\n") }
	line(fmt.Sprintf("agentd  %s  (Ctrl-C to stop)", c.opts.Now().In(c.opts.Location).Format(time.TimeOnly)))
	line("")
	for _, l := range strings.Split(strings.TrimSuffix(c.body, "\n"), "\n") {
		line(l)
	}
	if len(c.events) > 0 {
		line("")
		line("EVENTS")
		for _, l := range c.events {
			line(l)
		}
	}
	b.WriteString("\x1b[J")
	_, err := io.WriteString(c.w, b.String())
	return err
}

// Export prints one line per container event. agentd.engine.found and
// .lost are left out: the log says each once, and the engine tree shows
// the engine up or down.
func (c *Console) Export(_ context.Context, records []sdklog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.Snapshot != nil {
		return nil
	}
	var b strings.Builder
	for i := range records {
		r := &records[i]
		if strings.HasPrefix(r.EventName(), "agentd.engine.") {
			continue
		}
		l := eventLine(r, c.names, c.opts.Location)
		if c.opts.Terminal {
			c.events = append(c.events, l)
			if n := len(c.events) - consoleEvents; n > 0 {
				c.events = append(c.events[:0], c.events[n:]...)
			}
			continue
		}
		b.WriteString(l + "\n")
	}
	if c.opts.Terminal {
		if !c.drawn {
			return nil
		}
		return c.redraw()
	}
	_, err := io.WriteString(c.w, b.String())
	return err
}

// ForceFlush does nothing: Export writes through.
func (c *Console) ForceFlush(context.Context) error { return nil }

// Shutdown does nothing: the writer belongs to the caller.
func (c *Console) Shutdown(context.Context) error { return nil }
