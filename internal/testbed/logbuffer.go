package testbed

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// logTail is how many of its last lines a failed test's log buffer shows.
const logTail = 60

// LogBuffer collects a logger's lines for assertions. Under go test -v it
// echoes each line to the test log as it comes; otherwise a failed test
// shows the last lines once it has ended, after its own errors, so that
// these stay in sight at the top of the test's output in a long CI log.
// It is safe for concurrent writes and reads.
type LogBuffer struct {
	t      testing.TB
	stream bool
	mu     sync.Mutex
	b      bytes.Buffer
}

// NewLogBuffer returns a LogBuffer of t.
func NewLogBuffer(t testing.TB) *LogBuffer {
	l := &LogBuffer{t: t, stream: testing.Verbose()}
	t.Cleanup(l.showTail)
	return l
}

// Write keeps p (and echoes it under -v).
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stream {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return l.b.Write(p)
}

// showTail logs the last lines of a failed test that did not stream them.
func (l *LogBuffer) showTail() {
	if l.stream || !l.t.Failed() {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := strings.Split(strings.TrimRight(l.b.String(), "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return
	}
	from := max(0, len(lines)-logTail)
	l.t.Logf("the test's log, last %d of %d lines:", len(lines)-from, len(lines))
	for _, line := range lines[from:] {
		l.t.Log(line)
	}
}

// Count returns how many lines contain every one of subs.
func (l *LogBuffer) Count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range strings.Split(l.b.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
