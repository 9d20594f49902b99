package watch

import (
	"slices"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// TestADieOfAKnownContainerCostsNoInspect: a die carries its exit code and
// time, all it changes; only a die the event does not say enough about (no
// exit code) is inspected.
func TestADieOfAKnownContainerCostsNoInspect(t *testing.T) {
	tests := []struct {
		name     string
		die      fakeOp
		want     string
		inspects int64
	}{
		{"a die with its exit code", die("a", 137), "die a exit=137 SIGKILL", 0},
		{"a die without an exit code", func(f *fakeEngine) {
			f.now = f.now.Add(time.Second)
			c := f.containers["a"]
			c.State, c.FinishedAt, c.ExitCode = model.StateExited, f.now, 3
			f.containers["a"] = c
			f.send(engine.Change{Type: model.EventDie, ContainerID: "a", Time: f.now}, nil)
		}, "die a exit=3", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, w, sub := runCounted(t, []fakeOp{create("a"), start("a")}, false)
			f.do(tt.die)
			eventually(t, 10*time.Second, "the watcher handles the die", func() bool { return f.idle(w, 1) })
			if got := drained(sub); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("events %q, want %q", got, tt.want)
			}
			if n := f.inspects.Load(); n != tt.inspects {
				t.Errorf("%d inspects, want %d", n, tt.inspects)
			}
		})
	}
}
