package logging

import (
	"context"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// sendFunc delivers one entry to journald; journal.Send in production.
type sendFunc func(message string, priority journal.Priority, vars map[string]string) error

// journalHandler is a slog.Handler that writes native journal entries.
// It is safe for concurrent use: its state is immutable after construction
// and journal.Send serialises on its own connection.
type journalHandler struct {
	level      slog.Leveler
	identifier string
	send       sendFunc
	// fallback receives records journald refused (socket gone, journald
	// restarting), so a line is never lost silently.
	fallback slog.Handler
	// fields holds the flattened attributes added with WithAttrs.
	fields map[string]string
	// prefix is the open groups joined by "_", with a trailing "_".
	prefix string
}

var _ slog.Handler = (*journalHandler)(nil)

func newJournalHandler(level slog.Leveler, identifier string, send sendFunc, fallback slog.Handler) *journalHandler {
	return &journalHandler{level: level, identifier: identifier, send: send, fallback: fallback, fields: map[string]string{}}
}

// Enabled reports whether the handler's level admits level.
func (h *journalHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

// Handle sends r to journald; when that fails it hands r to the fallback
// handler and returns the send error.
func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	vars := make(map[string]string, len(h.fields)+r.NumAttrs()+4)
	for k, v := range h.fields {
		vars[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(vars, h.prefix, a)
		return true
	})
	vars["SYSLOG_IDENTIFIER"] = h.identifier
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		if f.File != "" {
			vars["CODE_FILE"] = f.File
			vars["CODE_LINE"] = strconv.Itoa(f.Line)
		}
		if f.Function != "" {
			vars["CODE_FUNC"] = f.Function
		}
	}
	if err := h.send(r.Message, Priority(r.Level), vars); err != nil {
		if h.fallback != nil {
			_ = h.fallback.Handle(ctx, r)
		}
		return err
	}
	return nil
}

// WithAttrs returns a handler whose entries also carry attrs.
func (h *journalHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := h.clone()
	for _, a := range attrs {
		addAttr(h2.fields, h2.prefix, a)
	}
	if h.fallback != nil {
		h2.fallback = h.fallback.WithAttrs(attrs)
	}
	return h2
}

// WithGroup returns a handler that prefixes later attribute keys with name.
func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := h.clone()
	h2.prefix += name + "_"
	if h.fallback != nil {
		h2.fallback = h.fallback.WithGroup(name)
	}
	return h2
}

func (h *journalHandler) clone() *journalHandler {
	h2 := *h
	h2.fields = make(map[string]string, len(h.fields))
	for k, v := range h.fields {
		h2.fields[k] = v
	}
	return &h2
}

// addAttr flattens a into vars under prefix. Empty attributes are dropped,
// as slog requires; groups recurse with their name joined by "_" (an inline
// group, one with an empty key, adds no prefix).
func addAttr(vars map[string]string, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return
	}
	if a.Value.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p += a.Key + "_"
		}
		for _, ga := range a.Value.Group() {
			addAttr(vars, p, ga)
		}
		return
	}
	vars[FieldName(prefix+a.Key)] = formatValue(a.Value)
}

// formatValue renders v the way the text handler would, errors by Error().
func formatValue(v slog.Value) string {
	switch v.Kind() {
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return err.Error()
		}
	}
	return v.String()
}

// Priority maps a slog level to a syslog priority: below Info is debug (7),
// below Warn info (6), below Error warning (4), Error up to Error+3 err (3),
// Error+4 and above crit (2).
func Priority(l slog.Level) journal.Priority {
	switch {
	case l < slog.LevelInfo:
		return journal.PriDebug
	case l < slog.LevelWarn:
		return journal.PriInfo
	case l < slog.LevelError:
		return journal.PriWarning
	case l < slog.LevelError+4:
		return journal.PriErr
	default:
		return journal.PriCrit
	}
}
