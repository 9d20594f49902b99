package model

// MarkOOMKilled sets OOMKilled on the stored container k, in one step under
// the Store's lock, so that it cannot undo a concurrent Upsert of newer state
// (as a Container-then-Upsert would). It returns the container as stored
// afterwards; ok is false when k is not in the Store. It emits no event.
//
// The OOM detector (package oom) uses it for kills that only the kernel log
// reports: a watcher's later die keeps the flag, since it ORs in the stored
// one, and the exported state shows it.
func (s *Store) MarkOOMKilled(k ContainerKey) (c Container, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.containers[k]
	if !ok {
		return Container{}, false
	}
	if !p.OOMKilled {
		// Snapshots copy containers, so changing the stored one is safe.
		p.OOMKilled = true
		s.changed()
	}
	return *p, true
}
