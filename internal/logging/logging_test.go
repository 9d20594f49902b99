package logging

import (
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type sent struct {
	msg  string
	pri  journal.Priority
	vars map[string]string
}

type capture struct {
	mu      sync.Mutex
	entries []sent
	err     error
}

func (c *capture) send(msg string, pri journal.Priority, vars map[string]string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.entries = append(c.entries, sent{msg, pri, vars})
	return c.err
}

func (c *capture) all() []sent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sent(nil), c.entries...)
}

func journalLogger(c *capture, w *bytes.Buffer, opts Options) *slog.Logger {
	opts.Format = FormatJournal
	return slog.New(newHandler(w, opts, c.send, func() bool { return false }))
}

func TestJournalHandlerMapsAttributesToFields(t *testing.T) {
	c := &capture{}
	log := journalLogger(c, &bytes.Buffer{}, Options{Level: slog.LevelDebug})
	log.With(KeyEngineType, "podman", KeyEngineID, "e1").
		WithGroup("stats").
		Warn("engine lost", KeyContainerID, "c1", slog.Group("cpu", "mode", "user"))
	log.Info("engine found", KeyEnginePrefix, "th", KeyUnit, "podman.socket",
		Err(errors.New("boom")), MessageID(MessageIDEngineFound), "message", "clash", "9lives", 1)
	got := c.all()
	if len(got) != 2 {
		t.Fatalf("sent %d entries, want 2", len(got))
	}
	for _, tc := range []struct {
		name string
		e    sent
		want map[string]string
		pri  journal.Priority
	}{
		{"a scoped logger with a group sends flattened fields", got[0], map[string]string{
			"ENGINE_TYPE": "podman", "ENGINE_ID": "e1", "STATS_CONTAINER_ID": "c1",
			"STATS_CPU_MODE": "user", "SYSLOG_IDENTIFIER": "agentd",
		}, journal.PriWarning},
		{"well-known keys map to their journal fields", got[1], map[string]string{
			"ENGINE_PREFIX": "th", "UNIT": "podman.socket", "ERROR": "boom",
			"MESSAGE_ID": MessageIDEngineFound, "ATTR_MESSAGE": "clash", "F9LIVES": "1",
		}, journal.PriInfo},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.e.pri != tc.pri {
				t.Errorf("priority %d, want %d", tc.e.pri, tc.pri)
			}
			for k, v := range tc.want {
				if tc.e.vars[k] != v {
					t.Errorf("%s=%q, want %q (all: %v)", k, tc.e.vars[k], v, tc.e.vars)
				}
			}
			if !strings.HasSuffix(tc.e.vars["CODE_FILE"], "logging_test.go") || tc.e.vars["CODE_LINE"] == "" ||
				!strings.Contains(tc.e.vars["CODE_FUNC"], "TestJournalHandlerMapsAttributesToFields") {
				t.Errorf("code location %q:%q %q", tc.e.vars["CODE_FILE"], tc.e.vars["CODE_LINE"], tc.e.vars["CODE_FUNC"])
			}
			for k := range tc.e.vars {
				if !validFieldName(k) {
					t.Errorf("field name %q is not valid for journald", k)
				}
			}
		})
	}
}

func TestJournalHandlerFallsBackToTextWhenJournaldRefuses(t *testing.T) {
	c := &capture{err: errors.New("journald gone")}
	var buf bytes.Buffer
	journalLogger(c, &buf, Options{}).Info("engine found", KeyEngineID, "e1")
	if !strings.Contains(buf.String(), "engine found") || !strings.Contains(buf.String(), "engine_id=e1") {
		t.Fatalf("fallback wrote %q", buf.String())
	}
}

func TestLevelFiltersBeforeSending(t *testing.T) {
	c := &capture{}
	journalLogger(c, &bytes.Buffer{}, Options{Level: slog.LevelWarn}).Info("quiet")
	if n := len(c.all()); n != 0 {
		t.Fatalf("sent %d entries below the level", n)
	}
}

func TestNewPicksTextOutsideTheJournal(t *testing.T) {
	var buf bytes.Buffer
	c := &capture{}
	log := slog.New(newHandler(&buf, Options{}, c.send, func() bool { return false }))
	log.Info("hello", KeyEngineType, "docker")
	if len(c.all()) != 0 || !strings.Contains(buf.String(), "msg=hello engine_type=docker") {
		t.Fatalf("text output %q, journal entries %d", buf.String(), len(c.all()))
	}
	log = slog.New(newHandler(&buf, Options{}, c.send, func() bool { return true }))
	log.Info("to journal")
	if len(c.all()) != 1 {
		t.Fatalf("journal entries %d, want 1 when stderr is the journal", len(c.all()))
	}
}

func TestFieldName(t *testing.T) {
	for _, tc := range []struct{ key, want string }{
		{"engine_type", "ENGINE_TYPE"},
		{"engine_id", "ENGINE_ID"},
		{"engine_prefix", "ENGINE_PREFIX"},
		{"container_id", "CONTAINER_ID"},
		{"unit", "UNIT"},
		{"err", "ERROR"},
		{"message_id", "MESSAGE_ID"},
		{"http.status-code", "HTTP_STATUS_CODE"},
		{"_private", "PRIVATE"},
		{"2xx", "F2XX"},
		{"", "FIELD"},
		{"___", "FIELD"},
		{"priority", "ATTR_PRIORITY"},
		{"ünï", "N__"},
		{strings.Repeat("a", 80), strings.Repeat("A", 64)},
	} {
		t.Run(tc.key+" becomes "+tc.want, func(t *testing.T) {
			if got := FieldName(tc.key); got != tc.want {
				t.Errorf("FieldName(%q) = %q, want %q", tc.key, got, tc.want)
			}
		})
	}
}

func FuzzFieldNameIsAlwaysValid(f *testing.F) {
	for _, s := range []string{"engine_id", "_x", "9", "", "a.b-c", "MESSAGE"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if n := FieldName(key); !validFieldName(n) {
			t.Fatalf("FieldName(%q) = %q, not a valid journal field name", key, n)
		}
	})
}

func TestMessageIDsAre128BitLowerHex(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}$`)
	seen := map[string]bool{}
	for _, id := range []string{MessageIDEngineFound, MessageIDEngineLost, MessageIDActivation,
		MessageIDExportFailure, MessageIDConfigReload, MessageIDSuppressed} {
		if !re.MatchString(id) {
			t.Errorf("%s is not a lower-case UUIDv4 without dashes", id)
		}
		if seen[id] {
			t.Errorf("%s is used twice", id)
		}
		seen[id] = true
	}
}

func TestPriority(t *testing.T) {
	for _, tc := range []struct {
		l    slog.Level
		want journal.Priority
	}{
		{slog.LevelDebug, journal.PriDebug}, {slog.LevelInfo, journal.PriInfo},
		{slog.LevelWarn, journal.PriWarning}, {slog.LevelError, journal.PriErr},
		{slog.LevelError + 4, journal.PriCrit},
	} {
		t.Run(tc.l.String()+" maps to syslog priority", func(t *testing.T) {
			if got := Priority(tc.l); got != tc.want {
				t.Errorf("Priority(%v) = %d, want %d", tc.l, got, tc.want)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"debug", slog.LevelDebug, false}, {"INFO", slog.LevelInfo, false},
		{"warning", slog.LevelWarn, false}, {"error", slog.LevelError, false},
		{"loud", 0, true},
	} {
		t.Run("level "+tc.in, func(t *testing.T) {
			got, err := ParseLevel(tc.in)
			if (err != nil) != tc.wantErr || (!tc.wantErr && got != tc.want) {
				t.Errorf("ParseLevel(%q) = %v, %v", tc.in, got, err)
			}
			if err != nil && !strings.Contains(err.Error(), tc.in) {
				t.Errorf("error %q does not name the value", err)
			}
		})
	}
}

func TestRateLimitSuppressesRepeatsAndSummarises(t *testing.T) {
	c := &capture{}
	log := journalLogger(c, &bytes.Buffer{}, Options{Burst: 3, Interval: 200 * time.Millisecond})
	e1 := log.With(KeyEngineID, "e1")
	for range 10 {
		e1.Warn("reconnect failed", Err(errors.New("refused")), MessageID(MessageIDExportFailure))
	}
	log.With(KeyEngineID, "e2").Warn("reconnect failed") // another engine: its own budget
	if n := len(c.all()); n != 4 {
		t.Fatalf("passed %d records, want 3 of e1 and 1 of e2", n)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(c.all()) < 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := c.all()
	if len(got) != 5 {
		t.Fatalf("got %d records, want a summary after the interval", len(got))
	}
	s := got[4]
	if s.msg != "suppressed 7 repeats" || s.vars["ENGINE_ID"] != "e1" || s.vars["REPEATED_MESSAGE"] != "reconnect failed" ||
		s.vars["MESSAGE_ID"] != MessageIDSuppressed || s.vars["REPEATED_MESSAGE_ID"] != MessageIDExportFailure ||
		s.vars["SUPPRESSED"] != "7" || s.pri != journal.PriWarning {
		t.Fatalf("summary %q %v", s.msg, s.vars)
	}
	e1.Warn("reconnect failed")
	if n := len(c.all()); n != 6 {
		t.Fatalf("after the interval the record should pass again, have %d", n)
	}
}

func TestRateLimitDisabledPassesEverything(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(newHandler(&buf, Options{Burst: -1}, nil, func() bool { return false }))
	for range 50 {
		log.Info("same")
	}
	if n := strings.Count(buf.String(), "msg=same"); n != 50 {
		t.Fatalf("wrote %d lines, want 50", n)
	}
}

func TestRateLimitIsSafeForConcurrentUse(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	// The interval is long enough that the 800 lines fall in one window even
	// on a loaded machine.
	const interval = 3 * time.Second
	h := NewRateLimit(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil), 5, interval)
	log := slog.New(h)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				log.Info("spam", KeyEngineID, i%2)
			}
		})
	}
	wg.Wait()
	// Let the summaries' timers fire before goleak looks.
	for deadline := time.Now().Add(4 * interval); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		n := strings.Count(buf.String(), "suppressed")
		mu.Unlock()
		if n == 2 {
			break
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(buf.String(), "msg=spam"); n != 10 {
		t.Fatalf("passed %d, want 5 per engine", n)
	}
	if !strings.Contains(buf.String(), "suppressed 395 repeats") {
		t.Fatalf("no summary in %q", buf.String()[max(0, buf.Len()-400):])
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func ExampleFieldName() {
	fmt.Println(FieldName(KeyEngineID), FieldName(KeyErr), FieldName("stats_cpu.mode"), FieldName("_secret"))
	// Output: ENGINE_ID ERROR STATS_CPU_MODE SECRET
}

// TestEveryMessageIDHasACatalogEntry: journalctl -x explains every
// MESSAGE_ID agentd logs, from packaging/agentd.catalog.
func TestEveryMessageIDHasACatalogEntry(t *testing.T) {
	catalog, err := os.ReadFile("../../packaging/agentd.catalog")
	if err != nil {
		t.Fatal(err)
	}
	f, err := parser.ParseFile(token.NewFileSet(), "keys.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := 0
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if !strings.HasPrefix(name.Name, "MessageID") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					continue
				}
				ids++
				id := strings.Trim(lit.Value, `"`)
				if !bytes.Contains(catalog, []byte("\n-- "+id+"\n")) {
					t.Errorf("%s (%s) has no entry in packaging/agentd.catalog", name.Name, id)
				}
			}
		}
	}
	if ids < 7 {
		t.Fatalf("found %d MESSAGE_IDs in keys.go, want at least 7", ids)
	}
}
