package testbed

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

// LogBuffer collects a logger's lines for assertions and echoes each to the
// test log. It is safe for concurrent writes and reads.
type LogBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

// NewLogBuffer returns a LogBuffer echoing to t.
func NewLogBuffer(t testing.TB) *LogBuffer { return &LogBuffer{t: t} }

// Write keeps p and logs it to the test.
func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return l.b.Write(p)
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
