package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds fuzzed YAML to Parse: it never panics, and a refused
// configuration's error wraps ErrInvalid and names the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte("export:\n  endpoint: localhost:4317\n  interval: 10s\n"))
	f.Add([]byte("labels:\n  allow: [\"app.*\"]\nfilters:\n  exclude_names: [\"x\"]\n"))
	f.Add([]byte("discovery: {interval: -1s}\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte(""))
	f.Add([]byte("export:\n  interval: 10s\n"))
	f.Add([]byte("filters: {exclude_images: ['[']}"))
	f.Add([]byte("- a\n- b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := Parse("fuzz.yaml", data)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrInvalid) && !strings.Contains(err.Error(), "fuzz.yaml") {
			t.Fatalf("error neither wraps ErrInvalid nor names the file: %v", err)
		}
	})
}

func TestLoadRefusesAFileLargerThanMaxFileSize(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agentd.yaml")
	if err := os.WriteFile(p, []byte("# "+strings.Repeat("x", MaxFileSize)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p, true)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load of a %d-byte file: got %v, want an ErrInvalid naming %s and the size", MaxFileSize+3, err, p)
	}
}
