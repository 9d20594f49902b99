package watch

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// TestEngineDownWhenFoundIsWatchedOnceItAnswers adds a containerd and a CRI
// engine to a Supervisor (with the default constructors, as the agent does)
// while nothing listens at their endpoint, then starts a real containerd
// there: both watchers must connect and list it, without another Add.
func TestEngineDownWhenFoundIsWatchedOnceItAnswers(t *testing.T) {
	testbed.Require(t, testbed.Containerd, testbed.CRI)
	// The endpoint is a symlink that points nowhere until containerd runs.
	endpoint := filepath.Join(t.TempDir(), "late.sock")
	store := model.NewStore(testLogger(t))
	sup := NewSupervisor(store, testFamilies(), Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}, testLogger(t))
	t.Cleanup(func() { _ = sup.Close() })
	engines := []model.Engine{
		{ID: "late-containerd", Type: model.Containerd, Endpoint: endpoint},
		{ID: "late-cri", Type: model.CRI, Endpoint: endpoint},
	}
	for _, e := range engines {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := sup.Add(ctx, e)
		cancel()
		if err != nil {
			t.Fatalf("Add(%s) while the engine is down: %v", e.ID, err)
		}
	}
	time.Sleep(300 * time.Millisecond) // a few failed attempts first
	sock := enginetest.CRIPrivateContainerd(t)
	if err := os.Symlink(sock, endpoint); err != nil {
		t.Fatal(err)
	}
	for _, e := range engines {
		t.Run(e.ID+" connects and lists once the engine answers", func(t *testing.T) {
			w, ok := sup.Watcher(e.ID)
			if !ok {
				t.Fatal("no watcher")
			}
			deadline := time.Now().Add(20 * time.Second)
			for w.Stats().Syncs == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no list after the engine came up: %+v", w.Stats())
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
