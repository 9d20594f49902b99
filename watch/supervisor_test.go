package watch

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

func TestSupervisorAddRemoveClose(t *testing.T) {
	testbed.Require(t, testbed.Docker)
	label := testLabel(t)
	store := model.NewStore(testLogger(t))
	sub := store.Subscribe(100000)
	defer sub.Close()
	sup := NewSupervisor(store, testFamilies(), Options{}, testLogger(t))
	ctx := context.Background()

	t.Run("an engine type without a constructor is refused", func(t *testing.T) {
		err := sup.Add(ctx, model.Engine{ID: "x", Type: model.EngineType("lxc"), Endpoint: "/nonexistent"})
		if !errors.Is(err, ErrUnsupported) {
			t.Fatalf("err %v, want ErrUnsupported", err)
		}
	})
	id := testbed.Run(t, "docker", "create", "--network", "none", "--label", "agentd.test="+label, testbed.BusyboxImage, "true")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
	docker := model.Engine{ID: "sup-docker", Type: model.Docker, Endpoint: testbed.DockerSocket}
	// An engine whose socket is gone is kept and retried, not refused.
	gone := model.Engine{ID: "sup-gone", Type: model.Podman, Endpoint: "/nonexistent/podman.sock"}

	t.Run("added engines are found and their containers listed", func(t *testing.T) {
		for _, e := range []model.Engine{docker, gone} {
			if err := sup.Add(ctx, e); err != nil {
				t.Fatal(err)
			}
		}
		eventually(t, 30*time.Second, "the docker watcher lists", func() bool {
			_, ok := store.Container(model.ContainerKey{EngineID: docker.ID, ID: id})
			return ok
		})
		if len(store.Snapshot().Engines) != 2 {
			t.Errorf("engines: %+v", store.Snapshot().Engines)
		}
	})
	t.Run("removing an engine prunes its containers and reports it lost", func(t *testing.T) {
		sup.Remove(docker.ID)
		if n := len(store.EngineContainers(docker.ID)); n != 0 {
			t.Errorf("%d containers left", n)
		}
		if _, ok := store.Engine(docker.ID); ok {
			t.Error("engine still in the store")
		}
	})
	t.Run("close stops every watcher", func(t *testing.T) {
		if err := sup.Close(); err != nil {
			t.Fatal(err)
		}
		if err := sup.Add(ctx, docker); !errors.Is(err, ErrClosed) {
			t.Errorf("Add after Close: %v", err)
		}
	})
	var got []model.EventType
	for len(sub.C()) > 0 {
		ev := <-sub.C()
		if ev.Engine != nil {
			got = append(got, model.EventType(string(ev.Type)+":"+ev.EngineID))
		}
	}
	want := []model.EventType{"agentd.engine.found:sup-docker", "agentd.engine.found:sup-gone", "agentd.engine.lost:sup-docker", "agentd.engine.lost:sup-gone"}
	if fmtTypes(got) != fmtTypes(want) {
		t.Errorf("engine events %v, want %v", got, want)
	}
}
