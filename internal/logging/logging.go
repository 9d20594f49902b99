package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
)

// Format selects the handler [New] builds.
type Format int

const (
	// FormatAuto uses journald when stderr is connected to the journal
	// (JOURNAL_STREAM names stderr's device and inode, as systemd sets it
	// for StandardError=journal), text otherwise.
	FormatAuto Format = iota
	// FormatText always writes slog's text format to the writer.
	FormatText
	// FormatJournal always sends native journal entries to
	// /run/systemd/journal/socket, falling back to text on the writer for
	// entries journald refuses.
	FormatJournal
)

// Defaults for [Options].
const (
	DefaultIdentifier = "agentd"
	DefaultBurst      = 10
	DefaultInterval   = time.Minute
)

// Options configures [New]. The zero value is usable: level Info, automatic
// format, identifier "agentd", 10 repeats per minute.
type Options struct {
	// Level is the minimum level; nil means Info. Pass a *slog.LevelVar to
	// change it later (on SIGHUP) without rebuilding the logger.
	Level slog.Leveler
	// Format picks the handler; FormatAuto by default.
	Format Format
	// Identifier is SYSLOG_IDENTIFIER; "agentd" when empty.
	Identifier string
	// Burst is how many records of one kind pass per Interval before the
	// rest are suppressed; 0 means DefaultBurst, negative disables the
	// suppressor.
	Burst int
	// Interval is the suppressor's window; 0 means DefaultInterval.
	Interval time.Duration
}

// New returns agentd's logger writing to w (normally os.Stderr): a journald
// handler when the format resolves to journal, a text handler on w
// otherwise, wrapped by [NewRateLimit]. It never sets slog's default logger.
func New(w io.Writer, opts Options) *slog.Logger {
	return slog.New(NewHandler(w, opts))
}

// NewHandler returns the handler [New] wraps in a logger.
func NewHandler(w io.Writer, opts Options) slog.Handler {
	return newHandler(w, opts, journal.Send, stderrIsJournal)
}

func newHandler(w io.Writer, opts Options, send sendFunc, isJournal func() bool) slog.Handler {
	level := opts.Level
	if level == nil {
		level = slog.LevelInfo
	}
	ident := opts.Identifier
	if ident == "" {
		ident = DefaultIdentifier
	}
	text := slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})
	var h slog.Handler = text
	if opts.Format == FormatJournal || (opts.Format == FormatAuto && isJournal()) {
		h = newJournalHandler(level, ident, send, text)
	}
	burst, interval := opts.Burst, opts.Interval
	if burst == 0 {
		burst = DefaultBurst
	}
	if interval == 0 {
		interval = DefaultInterval
	}
	return NewRateLimit(h, burst, interval)
}

// stderrIsJournal reports whether fd 2 is the journal stream systemd set up;
// an error reading stderr's identity means it is not.
func stderrIsJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return err == nil && ok
}

// ParseLevel parses a configured log level: debug, info, warn (or warning)
// or error, case-insensitive, optionally with an offset as slog allows
// ("error+2"). The error names the value.
func ParseLevel(s string) (slog.Level, error) {
	v := strings.TrimSpace(s)
	if strings.EqualFold(v, "warning") {
		v = "warn"
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(v)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", s)
	}
	return l, nil
}
