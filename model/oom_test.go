package model

import (
	"log/slog"
	"testing"
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
