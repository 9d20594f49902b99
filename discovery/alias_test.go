package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// TestOneSocketReachedByTwoPathsIsOneEngine: a systemd socket unit names the
// podman socket through one path and the process scan reaches it through
// another; both must be the same engine, not two watchers exporting every
// container twice.
func TestOneSocketReachedByTwoPathsIsOneEngine(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.SystemdHost)
	th := testbed.SystemdHostPID(t)
	// Another process of the systemd host: same mount namespace, other PID.
	kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", th, th))
	if err != nil || len(strings.Fields(string(kids))) == 0 {
		t.Fatalf("children of the systemd host's PID 1: %q, %v", kids, err)
	}
	other, _ := strconv.Atoi(strings.Fields(string(kids))[0])
	path1 := fmt.Sprintf("/proc/%d/root/run/podman/podman.sock", th)
	path2 := fmt.Sprintf("/proc/%d/root/run/podman/podman.sock", other)

	d, err := New(Config{}, realFamilies(), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sub := d.Subscribe()
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	es1, err := d.Add(ctx, path1, model.Podman, "podman.socket")
	if err != nil || len(es1) != 1 {
		t.Fatalf("Add(%s) = %v, %v", path1, es1, err)
	}
	es2, err := d.Add(ctx, path2, model.Podman, "")
	if err != nil || len(es2) != 1 {
		t.Fatalf("Add(%s) = %v, %v", path2, es2, err)
	}
	if es1[0].ID != es2[0].ID || es2[0].Endpoint != path1 {
		t.Errorf("the second path made another engine: %+v and %+v", es1[0], es2[0])
	}
	var podmans int
	for _, e := range d.Engines() {
		if e.Type == model.Podman {
			podmans++
		}
	}
	if podmans != 1 {
		t.Errorf("%d podman engines known, want 1: %+v", podmans, d.Engines())
	}
	found := 0
	for len(sub.C()) > 0 {
		if c := <-sub.C(); c.Kind == EngineFound {
			found++
		}
	}
	if found != 1 {
		t.Errorf("%d engine-found changes, want 1", found)
	}
	t.Run("removing it by its alias forgets it", func(t *testing.T) {
		d.Remove(path2)
		for _, e := range d.Engines() {
			if e.ID == es1[0].ID && e.PID == 0 {
				t.Errorf("engine %s still known after Remove of its alias", e.ID)
			}
		}
	})
}
