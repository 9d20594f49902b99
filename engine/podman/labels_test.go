package podman

import (
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// writeStateDB writes a podman-shaped state database: bucket ctr, a bucket
// per container ID with its stored configuration under "config".
func writeStateDB(t *testing.T, configs map[string]string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "bolt_state.db")
	db, err := bolt.Open(file, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	err = db.Update(func(tx *bolt.Tx) error {
		ctrs, err := tx.CreateBucket([]byte("ctr"))
		if err != nil {
			return err
		}
		for id, cfg := range configs {
			b, err := ctrs.CreateBucket([]byte(id))
			if err != nil {
				return err
			}
			if cfg != "" {
				if err := b.Put([]byte("config"), []byte(cfg)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return file
}

func TestReadLabels(t *testing.T) {
	file := writeStateDB(t, map[string]string{
		"a": `{"spec":{"annotations":{"x":"y"}},"labels":{"app":"web","tier":"front"},"name":"a"}`,
		"b": `{"name":"b"}`,
	})
	got, err := ReadLabels(file, []string{"a", "b", "gone"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{"a": {"app": "web", "tier": "front"}, "b": {}}
	if len(got) != len(want) || !maps.Equal(got["a"], want["a"]) || got["b"] == nil || len(got["b"]) != 0 {
		t.Fatalf("labels %v, want %v (a container without labels has an empty map, an unknown one none)", got, want)
	}

	for _, tc := range []struct {
		name, config string
		want         []string
	}{
		{"a configuration that is not JSON names the file and the container", `{"labels":`, []string{"bolt_state.db", "container bad", "configuration"}},
		{"labels of the wrong type", `{"labels":["a"]}`, []string{"container bad", "configuration"}},
		{"a container without a configuration", ``, []string{"container bad", "no configuration stored"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeStateDB(t, map[string]string{"bad": tc.config})
			_, err := ReadLabels(file, []string{"bad"})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}

	t.Run("no database is fs.ErrNotExist", func(t *testing.T) {
		if _, err := ReadLabels(filepath.Join(t.TempDir(), "bolt_state.db"), []string{"a"}); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("err %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("a file that is no database is an error naming it", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "bolt_state.db")
		if err := os.WriteFile(file, []byte("not a bolt file at all, but long enough to be read as one........"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadLabels(file, []string{"a"}); err == nil || !strings.Contains(err.Error(), file) {
			t.Fatalf("err %v, want one naming %s", err, file)
		}
	})
}

func FuzzParseConfigLabels(f *testing.F) {
	f.Add([]byte(`{"labels":{"a":"b"}}`))
	f.Add([]byte(`{"labels":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		labels, err := parseConfigLabels(b)
		if err == nil && labels == nil {
			t.Fatal("no error and no labels")
		}
	})
}
