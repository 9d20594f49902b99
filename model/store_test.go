package model

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newTestStore() *Store { return NewStore(slog.New(slog.DiscardHandler)) }

func TestDeduplication(t *testing.T) {
	tests := []struct {
		name    string
		engines []Engine
		docker  []string // container IDs the Docker engine knows
		ctr     Container
		visible bool
	}{
		{"a moby container known to Docker on the same host is hidden",
			[]Engine{{ID: "d", Type: Docker}, {ID: "c", Type: Containerd}}, []string{"x"},
			Container{ID: "x", EngineID: "c", Namespace: NamespaceMoby}, false},
		{"a moby container Docker has not listed yet is hidden while Docker is watched",
			[]Engine{{ID: "d", Type: Docker}, {ID: "c", Type: Containerd}}, []string{"y"},
			Container{ID: "x", EngineID: "c", Namespace: NamespaceMoby}, false},
		{"a moby container is shown when no Docker is watched on that containerd",
			[]Engine{{ID: "c", Type: Containerd}}, nil,
			Container{ID: "x", EngineID: "c", Namespace: NamespaceMoby}, true},
		{"a moby container of a Docker in another container is shown",
			[]Engine{{ID: "d", Type: Docker, Prefix: "th"}, {ID: "c", Type: Containerd}}, []string{"x"},
			Container{ID: "x", EngineID: "c", Namespace: NamespaceMoby}, true},
		{"a k8s.io container is hidden when CRI is watched on the same host",
			[]Engine{{ID: "cri", Type: CRI}, {ID: "c", Type: Containerd}}, nil,
			Container{ID: "x", EngineID: "c", Namespace: NamespaceK8s}, false},
		{"a k8s.io container is shown without CRI",
			[]Engine{{ID: "c", Type: Containerd}}, nil,
			Container{ID: "x", EngineID: "c", Namespace: NamespaceK8s}, true},
		{"another namespace is always shown",
			[]Engine{{ID: "cri", Type: CRI}, {ID: "d", Type: Docker}, {ID: "c", Type: Containerd}}, []string{"x"},
			Container{ID: "x", EngineID: "c", Namespace: "default"}, true},
		{"Docker's own container is shown",
			[]Engine{{ID: "d", Type: Docker}, {ID: "c", Type: Containerd}}, []string{"x"},
			Container{ID: "x", EngineID: "d"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore()
			for _, e := range tt.engines {
				s.PutEngine(e)
			}
			for _, id := range tt.docker {
				s.Upsert(Container{ID: id, EngineID: "d", State: StateRunning})
			}
			s.Upsert(tt.ctr)
			sub := s.Subscribe(8)
			defer sub.Close()
			s.Emit(Event{Type: EventStart, EngineID: tt.ctr.EngineID, Container: &tt.ctr})
			if got := len(sub.C()) == 1; got != tt.visible {
				t.Errorf("event delivered %v, want %v", got, tt.visible)
			}
			found := false
			for _, c := range s.Snapshot().Containers {
				found = found || c.Key() == tt.ctr.Key()
			}
			if found != tt.visible {
				t.Errorf("in snapshot %v, want %v", found, tt.visible)
			}
		})
	}
}

func TestDedupSurvivesDockerDestroyingFirst(t *testing.T) {
	s := newTestStore()
	s.PutEngine(Engine{ID: "d", Type: Docker})
	s.PutEngine(Engine{ID: "c", Type: Containerd})
	s.Upsert(Container{ID: "x", EngineID: "d"})
	moby := Container{ID: "x", EngineID: "c", Namespace: NamespaceMoby}
	s.Upsert(moby)
	s.Delete(ContainerKey{EngineID: "d", ID: "x"})
	if s.Visible(&moby) {
		t.Fatal("the containerd copy became visible after Docker's destroy")
	}
}

func TestSlowSubscriberNeverStallsAndIsCounted(t *testing.T) {
	s := newTestStore()
	slow := s.Subscribe(4)
	defer slow.Close()
	fast := s.Subscribe(1000)
	defer fast.Close()
	c := Container{ID: "x", EngineID: "e"}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 100 {
			s.Upsert(Container{ID: fmt.Sprint(i), EngineID: "e"})
			s.Emit(Event{Type: EventCreate, EngineID: "e", Container: &c})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Emit blocked on a subscriber that does not read")
	}
	if slow.Dropped() != 96 || len(slow.C()) != 4 {
		t.Errorf("slow subscriber: dropped %d, buffered %d; want 96 and 4", slow.Dropped(), len(slow.C()))
	}
	if fast.Dropped() != 0 || len(fast.C()) != 100 {
		t.Errorf("fast subscriber: dropped %d, buffered %d", fast.Dropped(), len(fast.C()))
	}
	if s.Dropped() != 96 {
		t.Errorf("store dropped %d", s.Dropped())
	}
	if n := len(s.EngineContainers("e")); n != 100 {
		t.Errorf("model holds %d containers, want all 100", n)
	}
}

func TestSubscribeCloseDuringEmit(t *testing.T) {
	s := newTestStore()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for range 1000 {
			s.Emit(Event{Type: EventEngineFound})
		}
	}()
	go func() {
		defer wg.Done()
		for range 100 {
			s.Subscribe(1).Close()
		}
	}()
	wg.Wait()
}

func TestSnapshotIsCachedAndSortedAndPruned(t *testing.T) {
	s := newTestStore()
	s.PutEngine(Engine{ID: "b"})
	s.PutEngine(Engine{ID: "a"})
	s.Upsert(Container{ID: "2", EngineID: "a", Labels: map[string]string{"k": "v"}})
	s.Upsert(Container{ID: "1", EngineID: "a"})
	s1 := s.Snapshot()
	if s.Snapshot() != s1 {
		t.Error("an unchanged store rebuilt its snapshot")
	}
	if s1.Engines[0].ID != "a" || s1.Containers[0].ID != "1" {
		t.Errorf("not sorted: %+v", s1)
	}
	if _, ok := s1.Engine("b"); !ok {
		t.Error("Snapshot.Engine does not find b")
	}
	if _, n, ok := s.DeleteEngine("a"); !ok || n != 2 {
		t.Errorf("pruned %d", n)
	}
	if s2 := s.Snapshot(); len(s2.Containers) != 0 || s2.Version <= s1.Version {
		t.Errorf("after prune: %+v", s2)
	}
}

func TestConnectedIsSetOnlyBySetConnected(t *testing.T) {
	s := newTestStore()
	connected := func() bool { e, _ := s.Snapshot().Engine("e"); return e.Connected }
	steps := []struct {
		name string
		do   func()
		want bool
	}{
		{"a new engine starts disconnected, whatever PutEngine is given", func() { s.PutEngine(Engine{ID: "e", Connected: true}) }, false},
		{"SetConnected connects it", func() { s.SetConnected("e", true) }, true},
		{"PutEngine of an update keeps the state", func() { s.PutEngine(Engine{ID: "e", Version: "2"}) }, true},
		{"SetConnected disconnects it", func() { s.SetConnected("e", false) }, false},
		{"SetConnected of a removed engine does not add it back", func() {
			s.DeleteEngine("e")
			if s.SetConnected("e", true) {
				t.Error("SetConnected reported a removed engine as present")
			}
		}, false},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			v := s.Snapshot().Version
			st.do()
			if got := connected(); got != st.want {
				t.Fatalf("connected %v, want %v", got, st.want)
			}
			if s.Snapshot().Version == v {
				t.Error("the Snapshot version did not move")
			}
		})
	}
}

func BenchmarkSnapshot500(b *testing.B) {
	s := newTestStore()
	s.PutEngine(Engine{ID: "e", Type: Docker})
	for i := range 500 {
		s.Upsert(Container{ID: fmt.Sprint(i), EngineID: "e", Labels: map[string]string{"a": "b"}})
	}
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			_ = s.Snapshot()
		}
	})
	b.Run("after a change", func(b *testing.B) {
		for b.Loop() {
			s.Upsert(Container{ID: "0", EngineID: "e"})
			_ = s.Snapshot()
		}
	})
}

func TestPodmanServiceAndDaemonlessViewsAreReportedOnce(t *testing.T) {
	const storage = "/var/lib/containers/storage"
	svc := Engine{ID: "svc", Type: Podman, Storage: storage}
	dl := Engine{ID: "dl", Type: Podman, Storage: storage, Daemonless: true}
	tests := []struct {
		name      string
		engines   []Engine
		connected []string
		// visible: which engines' copies of container x are visible.
		visible string
	}{
		{"the service's view wins while it is connected", []Engine{svc, dl}, []string{"svc", "dl"}, "svc"},
		{"the daemonless view is reported while the service is disconnected", []Engine{svc, dl}, []string{"dl"}, "dl"},
		{"a daemonless view alone is reported", []Engine{dl}, []string{"dl"}, "dl"},
		{"another storage is another podman", []Engine{svc, {ID: "dl", Type: Podman, Storage: "/home/u/.local/share/containers/storage", Daemonless: true}},
			[]string{"svc", "dl"}, "dl svc"},
		{"a podman in another container is another podman", []Engine{svc, {ID: "dl", Type: Podman, Storage: storage, Daemonless: true, Prefix: "th"}},
			[]string{"svc", "dl"}, "dl svc"},
		{"a service of unknown storage hides nothing", []Engine{{ID: "svc", Type: Podman}, dl}, []string{"svc", "dl"}, "dl svc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore()
			for _, e := range tt.engines {
				s.PutEngine(e)
				s.Upsert(Container{ID: "x", EngineID: e.ID, State: StateRunning})
			}
			for _, id := range tt.connected {
				s.SetConnected(id, true)
			}
			var got []string
			for _, c := range s.Snapshot().Containers {
				got = append(got, c.EngineID)
			}
			if fmt.Sprint(got) != fmt.Sprint(strings.Fields(tt.visible)) {
				t.Errorf("visible copies from engines %v, want %v", got, tt.visible)
			}
		})
	}
}

func TestDaemonlessPodmanKeepsTheLabelsItsServiceTold(t *testing.T) {
	const storage = "/var/lib/containers/storage"
	s := newTestStore()
	s.PutEngine(Engine{ID: "svc", Type: Podman, Storage: storage, Connected: true})
	s.PutEngine(Engine{ID: "dl", Type: Podman, Storage: storage, Daemonless: true})
	s.PutEngine(Engine{ID: "other", Type: Podman, Storage: "/home/u/.local/share/containers/storage", Daemonless: true})
	labels := map[string]string{"tier": "front"}
	s.Upsert(Container{ID: "x", EngineID: "svc", State: StateRunning, Labels: labels})

	t.Run("the daemonless view of the service's storage takes the labels the service told", func(t *testing.T) {
		if c := s.Upsert(Container{ID: "x", EngineID: "dl", State: StateRunning}); c.Labels["tier"] != "front" {
			t.Errorf("labels %v, want the service's", c.Labels)
		}
	})
	t.Run("and keeps them when the service's copy is gone", func(t *testing.T) {
		s.Delete(ContainerKey{EngineID: "svc", ID: "x"})
		if c := s.Upsert(Container{ID: "x", EngineID: "dl", State: StateExited}); c.Labels["tier"] != "front" {
			t.Errorf("labels %v after the service left, want the ones it told", c.Labels)
		}
	})
	t.Run("a daemonless view of another storage takes nothing", func(t *testing.T) {
		s.Upsert(Container{ID: "y", EngineID: "svc", State: StateRunning, Labels: labels})
		if c := s.Upsert(Container{ID: "y", EngineID: "other", State: StateRunning}); c.Labels != nil {
			t.Errorf("labels %v from another storage's service", c.Labels)
		}
	})
}

func TestPodmanServiceResyncIsHiddenWhenTheDaemonlessViewToldIt(t *testing.T) {
	const storage = "/var/lib/containers/storage"
	s := newTestStore()
	s.PutEngine(Engine{ID: "svc", Type: Podman, Storage: storage})
	s.PutEngine(Engine{ID: "dl", Type: Podman, Storage: storage, Daemonless: true})
	s.SetConnected("dl", true)
	sub := s.Subscribe(8)
	defer sub.Close()
	c := s.Upsert(Container{ID: "x", EngineID: "svc", State: StateExited})
	s.SetConnected("svc", true)
	s.Emit(Event{Type: EventDie, EngineID: "svc", Container: &c, Resync: true})
	s.Emit(Event{Type: EventDestroy, EngineID: "svc", Container: &c})
	select {
	case ev := <-sub.C():
		if ev.Type != EventDestroy {
			t.Errorf("got %s, want only the live destroy", ev.Type)
		}
	case <-time.After(time.Second):
		t.Fatal("the live event of the service was hidden too")
	}
}

func TestEngineInitsNamesTheRunningContainersWithAnInit(t *testing.T) {
	s := newTestStore()
	s.PutEngine(Engine{ID: "e", Type: Docker})
	s.PutEngine(Engine{ID: "other", Type: Docker})
	for _, c := range []Container{
		{ID: "run", Name: "web", EngineID: "e", State: StateRunning, PID: 10},
		{ID: "paused", Name: "db", EngineID: "e", State: StatePaused, PID: 11},
		{ID: "exited", Name: "job", EngineID: "e", State: StateExited},
		{ID: "created", Name: "new", EngineID: "e", State: StateCreated},
		{ID: "nopid", Name: "odd", EngineID: "e", State: StateRunning},
		{ID: "elsewhere", Name: "x", EngineID: "other", State: StateRunning, PID: 12},
	} {
		s.Upsert(c)
	}
	keep := []Init{{ContainerID: "kept"}}
	got, n := s.EngineInits("e", keep[:1])
	if n != 5 {
		t.Errorf("EngineInits counted %d containers, want the engine's 5", n)
	}
	if len(got) == 0 || got[0].ContainerID != "kept" {
		t.Fatalf("EngineInits = %+v, want it appended to the buffer", got)
	}
	want := map[string]Init{
		"run":    {ContainerID: "run", Name: "web", PID: 10},
		"paused": {ContainerID: "paused", Name: "db", PID: 11},
	}
	if len(got)-1 != len(want) {
		t.Fatalf("EngineInits = %+v, want the running and the paused container", got[1:])
	}
	for _, in := range got[1:] {
		if want[in.ContainerID] != in {
			t.Errorf("EngineInits gave %+v, want %+v", in, want[in.ContainerID])
		}
	}
	if got, n := s.EngineInits("none", nil); len(got) != 0 || n != 0 {
		t.Errorf("EngineInits of an unknown engine = %+v, %d, want nothing", got, n)
	}
}
