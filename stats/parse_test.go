package stats

import (
	"errors"
	"os"
	"reflect"
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
		{"a blkio row without an operation is malformed", func() error { return parseBlkio("f", []byte("8:0 12\n"), noDisk) }, true},
		{"an empty blkio file (no I/O yet) is zero", func() error { return parseBlkio("f", []byte("Total 0\n"), noDisk) }, false},
		{"a blkio row whose device is not MAJ:MIN is malformed", func() error { return parseBlkio("f", []byte("8:x Read 1\n"), noDisk) }, true},
		{"an io.stat field without = is malformed", func() error { return parseIOStat("f", []byte("8:0 rbytes\n"), noDisk) }, true},
		{"an io.stat device number overflowing 32 bits is malformed", func() error { return parseIOStat("f", []byte("4294967296:0 rbytes=1\n"), noDisk) }, true},
		{"a pressure file without a some line is malformed", func() error {
			_, err := parsePressure("f", []byte("full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n"))
			return err
		}, true},
		{"a pressure line without a total is malformed", func() error { _, err := parsePressure("f", []byte("some avg10=0.00\n")); return err }, true},
		{"a pressure line of another kind is malformed", func() error { _, err := parsePressure("f", []byte("most total=1\n")); return err }, true},
		{"a pressure total that would overflow in nanoseconds is malformed", func() error {
			_, err := parsePressure("f", []byte("some total=18446744073709552\n"))
			return err
		}, true},
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

func noDisk(uint32, uint32, uint64, uint64) {}

type diskRow struct {
	major, minor uint32
	read, write  uint64
}

func TestDeviceParsers(t *testing.T) {
	tests := []struct {
		name  string
		parse func(string, []byte, func(uint32, uint32, uint64, uint64)) error
		data  string
		want  []diskRow
	}{
		{"io.stat gives each device's read and written bytes", parseIOStat,
			"8:0 rbytes=1000 wbytes=2000 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=5 wbytes=7 rios=1 wios=1 dbytes=0 dios=0\n",
			[]diskRow{{8, 0, 1000, 2000}, {259, 0, 5, 7}}},
		{"an io.stat row with no byte counts is a device with zero bytes", parseIOStat, "253:1 rios=3\n", []diskRow{{253, 1, 0, 0}}},
		{"blkio gives a row per device and operation, Total rows skipped", parseBlkio,
			"8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 12288\n8:0 Total 12288\n8:16 Read 100\n8:16 Write 0\nTotal 12388\n",
			[]diskRow{{8, 0, 4096, 0}, {8, 0, 0, 8192}, {8, 16, 100, 0}, {8, 16, 0, 0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []diskRow
			err := tt.parse("f", []byte(tt.data), func(ma, mi uint32, r, w uint64) { got = append(got, diskRow{ma, mi, r, w}) })
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParsePressure(t *testing.T) {
	tests := []struct {
		name, data string
		want       Pressure
	}{
		{"memory.pressure gives some and full totals in nanoseconds",
			"some avg10=0.00 avg60=0.00 avg300=0.00 total=18516\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=17117\n",
			Pressure{SomeNanos: 18516000, FullNanos: 17117000, HasSome: true, HasFull: true}},
		{"cpu.pressure of a kernel before 5.13 has only some",
			"some avg10=7.95 avg60=37.00 avg300=23.88 total=141142179\n",
			Pressure{SomeNanos: 141142179000, HasSome: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePressure("f", []byte(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestUeventDevName(t *testing.T) {
	for _, tt := range []struct{ name, data, want string }{
		{"a disk's uevent names it", "MAJOR=8\nMINOR=0\nDEVNAME=sda\nDEVTYPE=disk\n", "sda"},
		{"a device mapper node keeps its dm- name", "MAJOR=253\nMINOR=1\nDEVNAME=dm-1\n", "dm-1"},
		{"a uevent without DEVNAME names nothing", "MAJOR=8\nMINOR=0\n", ""},
		{"an empty DEVNAME names nothing", "DEVNAME=\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := ueventDevName([]byte(tt.data)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParsePressure(f *testing.F) {
	f.Add([]byte("some avg10=0.00 avg60=0.00 avg300=0.00 total=18516\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=17117\n"))
	f.Add([]byte("some avg10=7.95 avg60=37.00 avg300=23.88 total=141142179\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parsePressure("f", data)
		if err == nil && !p.HasSome {
			t.Fatalf("parsed without a some line: %+v", p)
		}
		_ = ueventDevName(data)
	})
}

func FuzzParseKeyed(f *testing.F) {
	f.Add([]byte("user 150\nsystem 25\n"))
	f.Add([]byte("usage_usec 1\nuser_usec 2\n"))
	f.Add([]byte("usage_usec 1\nnr_periods 10\nnr_throttled 3\nthrottled_usec 400\n"))
	f.Add([]byte("nr_periods 10\nnr_throttled 3\nthrottled_time 400000\nnr_bursts 0\n"))
	f.Add([]byte("low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"))
	f.Add([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = keyed("f", data, func([]byte, uint64) {})
		var s Stats
		if err := throttling("f", data, "throttled_usec", 1000, &s); err == nil && s.Has&FieldCPUThrottling != 0 && s.CPUPeriods == 0 {
			t.Fatalf("throttling set without periods: %+v", s)
		}
		_, _ = parseSingle("f", data)
		_, _, _ = parseMax("f", data)
	})
}

func FuzzParseIO(f *testing.F) {
	f.Add([]byte("8:0 Read 4096\n8:0 Write 1\nTotal 4097\n"))
	f.Add([]byte("8:0 rbytes=1 wbytes=2 rios=1\n"))
	f.Add([]byte("4294967295:4294967295 rbytes=18446744073709551615 wbytes=1\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = parseBlkio("f", data, noDisk)
		_ = parseIOStat("f", data, noDisk)
		_, _, _ = parseDev(data)
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
		reuse(&s)
		if err := r.Read(cg, pid, &s, &buf); err != nil {
			b.Fatal(err)
		}
	}
}

// reuse clears s for the next read and keeps its slices, as the Sampler
// reuses them.
func reuse(s *Stats) {
	nets, disks := s.Networks, s.Disks[:0]
	*s = Stats{Networks: nets, Disks: disks}
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
