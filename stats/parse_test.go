package stats

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/agentd-dev/agentd/internal/testbed"
)

func TestParsers(t *testing.T) {
	tests := []struct {
		name    string
		parse   func() error
		wantErr bool
	}{
		{"a single value with trailing newline parses", func() error {
			v, err := parseSingle("f", []byte("123\n"))
			if err == nil && v != 123 {
				return errors.New("wrong value")
			}
			return err
		}, false},
		{"a single value overflowing uint64 is malformed", func() error {
			_, err := parseSingle("f", []byte("18446744073709551616\n"))
			return err
		}, true},
		{"a negative single value is malformed", func() error { _, err := parseSingle("f", []byte("-1\n")); return err }, true},
		{"memory.max of max is unlimited", func() error {
			_, unl, err := parseMax("f", []byte("max\n"))
			if err == nil && !unl {
				return errors.New("not unlimited")
			}
			return err
		}, false},
		{"a keyed line without a value is malformed", func() error { return keyed("f", []byte("user 1\nsystem\n"), func([]byte, uint64) {}) }, true},
		{"a blkio row without an operation is malformed", func() error { _, _, err := parseBlkio("f", []byte("8:0 12\n")); return err }, true},
		{"an empty blkio file (no I/O yet) is zero", func() error { _, _, err := parseBlkio("f", []byte("Total 0\n")); return err }, false},
		{"an io.stat field without = is malformed", func() error { _, _, err := parseIOStat("f", []byte("8:0 rbytes\n")); return err }, true},
		{"a net/dev row with too few counters is malformed", func() error {
			return parseNetDev("f", []byte("h1\nh2\neth0: 1 2 3\n"), func([]byte, uint64, uint64) {})
		}, true},
		{"a net/dev file with only headers has no interfaces", func() error {
			return parseNetDev("f", []byte("h1\nh2\n"), func([]byte, uint64, uint64) { panic("called") })
		}, false},
		{"a /proc/pid/cgroup line without a path is malformed", func() error { _, err := parseProcCgroup("f", []byte("4:memory\n")); return err }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.parse()
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if err != nil && (!errors.Is(err, ErrMalformed) || !strings.HasPrefix(err.Error(), "f: ")) {
				t.Errorf("error %q does not name the file as malformed", err)
			}
		})
	}
}

func FuzzParseKeyed(f *testing.F) {
	f.Add([]byte("user 150\nsystem 25\n"))
	f.Add([]byte("usage_usec 1\nuser_usec 2\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = keyed("f", data, func([]byte, uint64) {})
		_, _ = parseSingle("f", data)
		_, _, _ = parseMax("f", data)
	})
}

func FuzzParseIO(f *testing.F) {
	f.Add([]byte("8:0 Read 4096\n8:0 Write 1\nTotal 4097\n"))
	f.Add([]byte("8:0 rbytes=1 wbytes=2 rios=1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _ = parseBlkio("f", data)
		_, _, _ = parseIOStat("f", data)
	})
}

func FuzzParseNetDev(f *testing.F) {
	f.Add([]byte("Inter-|\n face |\n  eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n    lo: 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = parseNetDev("f", data, func(name []byte, rx, tx uint64) {
			if len(name) == 0 || string(name) == "lo" {
				t.Fatalf("bad interface %q", name)
			}
		})
	})
}

func BenchmarkReadCgroupV1(b *testing.B) {
	r := tree("v1")
	cg, err := r.Locate(4242, "")
	if err != nil {
		b.Fatal(err)
	}
	benchReads(b, r, &cg, 4242)
}

// benchReads reads cg (of process pid) b.N times into one reused Stats.
func benchReads(b *testing.B, r *Reader, cg *Cgroup, pid int) {
	var s Stats
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		nets := s.Networks
		s = Stats{Networks: nets}
		if err := r.Read(cg, pid, &s, &buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadHostCgroup reads this process's own cgroup on the real
// cgroupfs and procfs, with files kept open (the default) and with every
// file opened and closed at each read, for the ratio between the two.
func BenchmarkReadHostCgroup(b *testing.B) {
	for _, bc := range []struct {
		name    string
		maxOpen int
	}{{"kept open", DefaultMaxOpenFiles}, {"opened at every read", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			r := NewReader("/proc", "/sys/fs/cgroup")
			r.SetMaxOpenFiles(bc.maxOpen)
			pid := os.Getpid()
			cg, err := r.Locate(pid, "")
			if err != nil {
				testbed.Unavailable(b, "no readable cgroup here: %v", err)
			}
			defer r.Release(&cg)
			benchReads(b, r, &cg, pid)
		})
	}
}
