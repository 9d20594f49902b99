package logging

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestProblemLogsStartRepeatsAndEnd: a failure that repeats every second
// for ten minutes is one line at the start, repeats after 1, 3 and 7
// minutes (gaps doubling from a minute), and one at the end.
func TestProblemLogsStartRepeatsAndEnd(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	p := NewProblem(log, "export failing", time.Minute)
	now := time.Unix(1_000_000, 0)
	p.now = func() time.Time { return now }

	p.OK() // no problem: nothing to say
	for i := 0; i < 600; i++ {
		p.Fail(errors.New("connection refused"), MessageID(MessageIDExportFailure))
		now = now.Add(time.Second)
	}
	if !p.Failing() {
		t.Fatal("Failing() = false during the problem")
	}
	p.OK()
	p.OK()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines, want 5:\n%s", len(lines), buf.String())
	}
	tests := []struct {
		name, line string
		want       []string
	}{
		{"the first line says what failed", lines[0], []string{"level=WARN", `msg="export failing"`, `err="connection refused"`, "message_id=" + MessageIDExportFailure}},
		{"a repeat counts the failures since the last line", lines[1], []string{"level=WARN", "failures=60", "failing_for=1m0s"}},
		{"the gap doubles", lines[2], []string{"level=WARN", "failures=120", "failing_for=3m0s"}},
		{"and doubles again", lines[3], []string{"level=WARN", "failures=240", "failing_for=7m0s"}},
		{"the end says how long and how often", lines[4], []string{"level=INFO", `msg="export failing: resolved"`, "failures=600", "failed_for=10m0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, w := range tt.want {
				if !strings.Contains(tt.line, w) {
					t.Errorf("%q lacks %q", tt.line, w)
				}
			}
		})
	}
	if p.Failing() {
		t.Error("Failing() = true after OK")
	}
}

// TestProblemLinesNameTheirCaller: the source of a Problem's lines (the
// journal's CODE_FILE) is where Fail and OK are called, not problem.go.
func TestProblemLinesNameTheirCaller(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{AddSource: true}))
	p := NewProblem(log, "engine unreachable", time.Minute)
	p.Fail(errors.New("EOF"))
	p.OK()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	for _, l := range lines {
		if !strings.Contains(l, "problem_test.go:") || strings.Contains(l, "problem.go:") {
			t.Errorf("the line does not name its caller: %s", l)
		}
	}
}
