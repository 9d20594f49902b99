package model

import (
	"log/slog"
	"testing"
	"time"
)

func TestMarkOOMKilled(t *testing.T) {
	s := NewStore(slog.New(slog.DiscardHandler))
	c := Container{EngineID: "e", ID: "c", State: StateRunning, PID: 7}
	s.Upsert(c)
	v := s.Snapshot().Version

	t.Run("a stored container gets the flag and the Store a new version", func(t *testing.T) {
		got, ok := s.MarkOOMKilled(c.Key())
		if !ok || !got.OOMKilled || got.PID != 7 {
			t.Fatalf("MarkOOMKilled = %+v, %v", got, ok)
		}
		snap := s.Snapshot()
		if snap.Version == v || !snap.Containers[0].OOMKilled {
			t.Errorf("snapshot not updated: version %d (was %d), %+v", snap.Version, v, snap.Containers)
		}
	})
	t.Run("marking again changes nothing", func(t *testing.T) {
		v := s.Snapshot().Version
		if _, ok := s.MarkOOMKilled(c.Key()); !ok || s.Snapshot().Version != v {
			t.Errorf("second mark changed the Store")
		}
	})
	t.Run("an unknown container is reported as not there", func(t *testing.T) {
		if _, ok := s.MarkOOMKilled(ContainerKey{EngineID: "e", ID: "nope"}); ok {
			t.Errorf("ok for an unknown container")
		}
	})
}

func TestOOMKilledIsStickyWithinARun(t *testing.T) {
	s := NewStore(slog.New(slog.DiscardHandler))
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := Container{EngineID: "e", ID: "c", State: StateRunning, StartedAt: start}
	s.Upsert(c)
	// The watcher inspected before the kernel log said OOM, and upserts after.
	if _, ok := s.MarkOOMKilled(c.Key()); !ok {
		t.Fatal("not stored")
	}
	late := c
	late.State = StateExited
	if got := s.Upsert(late); !got.OOMKilled {
		t.Fatal("an update of the same run lost the OOM flag")
	}
	restarted := c
	restarted.StartedAt = start.Add(time.Minute)
	if got := s.Upsert(restarted); got.OOMKilled {
		t.Fatal("a new run kept the OOM flag of the last one")
	}
}
