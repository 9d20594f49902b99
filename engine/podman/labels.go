package podman

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// StateDBFile is where podman 4 keeps its state database (BoltDB) below a
// storage root: the labels of its containers are there and nowhere else
// (not in containers.json, not in the OCI config). Podman 5 may keep it in
// SQLite (db.sql) instead, which the daemonless view does not read.
const StateDBFile = "libpod/bolt_state.db"

// stateDBTimeout bounds the wait for podman's lock on its state database: a
// podman command holds it for the few milliseconds of one operation.
const stateDBTimeout = 200 * time.Millisecond

// ReadLabels returns the labels podman's state database at file holds for
// the containers ids (those it has no record of are left out). The database
// is opened read-only and shared, so a podman command waits at most for this
// read. A missing database yields fs.ErrNotExist; a malformed record an error
// naming the file and the container.
func ReadLabels(file string, ids []string) (map[string]map[string]string, error) {
	if _, err := os.Stat(file); err != nil {
		return nil, err
	}
	db, err := bolt.Open(file, 0, &bolt.Options{ReadOnly: true, Timeout: stateDBTimeout})
	if err != nil {
		return nil, fmt.Errorf("podman state database %s: %w", file, err)
	}
	defer func() { _ = db.Close() }()
	out := make(map[string]map[string]string, len(ids))
	err = db.View(func(tx *bolt.Tx) error {
		ctrs := tx.Bucket([]byte("ctr"))
		if ctrs == nil {
			return nil // no container created yet
		}
		for _, id := range ids {
			b := ctrs.Bucket([]byte(id))
			if b == nil {
				continue
			}
			labels, err := parseConfigLabels(b.Get([]byte("config")))
			if err != nil {
				return fmt.Errorf("container %s: %w", id, err)
			}
			out[id] = labels
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("podman state database %s: %w", file, err)
	}
	return out, nil
}

// parseConfigLabels takes the labels from a container's configuration as
// podman stores it (JSON, labels at the top level); a container without
// labels gets an empty map, so that it is known to have none.
func parseConfigLabels(b []byte) (map[string]string, error) {
	if b == nil {
		return nil, errors.New("no configuration stored")
	}
	var cfg struct {
		Labels map[string]string `json:"labels"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	return cfg.Labels, nil
}

// labelsOf returns the labels of the stored containers, from the adapter's
// cache (labels never change after a container is created) or, for those it
// has not seen, from podman's state database in one read. A database that
// is missing (podman 5 with SQLite) or unreadable leaves labels out: the
// containers are reported without them, and the read is tried again at the
// next listing.
func (a *DaemonlessAdapter) labelsOf(stored []StoredContainer) map[string]map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var missing []string
	for _, s := range stored {
		if _, ok := a.labels[s.ID]; !ok && s.Podman {
			missing = append(missing, s.ID)
		}
	}
	if len(missing) > 0 {
		file := filepath.Join(a.endpoint, StateDBFile)
		got, err := ReadLabels(file, missing)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !a.noStateDB {
				a.noStateDB = true
				a.log.Info("podman's state database is not a BoltDB file here: containers seen without a podman service carry no labels", "file", file)
			}
		case err != nil:
			a.log.Warn("podman container labels not read", "error", err)
		}
		for id, l := range got {
			a.labels[id] = l
		}
	}
	out := make(map[string]map[string]string, len(stored))
	for _, s := range stored {
		if l, ok := a.labels[s.ID]; ok {
			out[s.ID] = maps.Clone(l)
		}
	}
	return out
}
