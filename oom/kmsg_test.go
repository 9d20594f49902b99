package oom

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Record
		err  bool
	}{
		{
			name: "a plain record parses into its fields",
			in:   "6,2089,5432440662,-;oom-kill:constraint=CONSTRAINT_MEMCG\n",
			want: Record{Facility: 0, Level: 6, Seq: 2089, SinceBoot: 5432440662 * time.Microsecond, Flags: "-",
				Message: "oom-kill:constraint=CONSTRAINT_MEMCG"},
		},
		{
			name: "the priority splits into facility and level",
			in:   "30,7,1,-;systemd[1]: started",
			want: Record{Facility: 3, Level: 6, Seq: 7, SinceBoot: time.Microsecond, Flags: "-", Message: "systemd[1]: started"},
		},
		{
			name: "continuation lines become the dictionary",
			in:   "6,1,2,-;pci_bus 0000:00: resource\n SUBSYSTEM=pci_bus\n DEVICE=+pci_bus:0000:00\n",
			want: Record{Level: 6, Seq: 1, SinceBoot: 2 * time.Microsecond, Flags: "-", Message: "pci_bus 0000:00: resource",
				Dict: []string{"SUBSYSTEM=pci_bus", "DEVICE=+pci_bus:0000:00"}},
		},
		{
			name: "extra header fields such as the caller are ignored",
			in:   "3,303,912345920,-,caller=T777;Killed process 1 (x)",
			want: Record{Level: 3, Seq: 303, SinceBoot: 912345920 * time.Microsecond, Flags: "-", Message: "Killed process 1 (x)"},
		},
		{
			name: "escaped bytes are unescaped",
			in:   `6,12,40,c;a\x5cb\x09c \xzz`,
			want: Record{Level: 6, Seq: 12, SinceBoot: 40 * time.Microsecond, Flags: "c", Message: "a\\b\tc \\xzz"},
		},
		{
			name: "a semicolon in the message stays in the message",
			in:   "6,1,1,-;a;b",
			want: Record{Level: 6, Seq: 1, SinceBoot: time.Microsecond, Flags: "-", Message: "a;b"},
		},
		{name: "a line without a semicolon is malformed", in: "hello world", err: true},
		{name: "a header with three fields is malformed", in: "6,1,2;x", err: true},
		{name: "a non-numeric sequence number is malformed", in: "6,x,2,-;x", err: true},
		{name: "a negative timestamp is malformed", in: "6,1,-2,-;x", err: true},
		{name: "a huge timestamp is malformed", in: "6,1,99999999999999999999,-;x", err: true},
		{name: "a continuation line without its space is malformed", in: "6,1,2,-;x\nKEY=V", err: true},
		{name: "an empty record is malformed", in: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRecord([]byte(tt.in))
			if tt.err {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseRecord(%q) = %+v, %v; want an error wrapping ErrMalformed", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseRecord(%q): %v", tt.in, err)
			}
			if got.Facility != tt.want.Facility || got.Level != tt.want.Level || got.Seq != tt.want.Seq ||
				got.SinceBoot != tt.want.SinceBoot || got.Flags != tt.want.Flags || got.Message != tt.want.Message ||
				!slices.Equal(got.Dict, tt.want.Dict) {
				t.Errorf("ParseRecord(%q)\n got %+v\nwant %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSplitter(t *testing.T) {
	const stream = "6,1,1,-;first\n SUBSYSTEM=a\n DEVICE=b\n6,2,2,-;second\n6,3,3,-;third\n"
	want := []string{"6,1,1,-;first\n SUBSYSTEM=a\n DEVICE=b\n", "6,2,2,-;second\n", "6,3,3,-;third\n"}
	split := func(chunks []string) (*splitter, []string) {
		var s splitter
		var got []string
		for _, c := range chunks {
			s.feed([]byte(c), func(b []byte) { got = append(got, string(b)) })
		}
		return &s, got
	}
	t.Run("one read per record, as /dev/kmsg returns them, gives each record with its dictionary", func(t *testing.T) {
		_, got := split(want)
		if !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("the whole stream in one read gives the same records", func(t *testing.T) {
		_, got := split([]string{stream})
		if !slices.Equal(got, want) {
			t.Errorf("got %q, want %q", got, want)
		}
	})
	t.Run("reads split anywhere in a line keep the partial line, and dictionary lines after a read's end are dropped", func(t *testing.T) {
		var chunks []string
		for i := 0; i < len(stream); i += 5 {
			chunks = append(chunks, stream[i:min(i+5, len(stream))])
		}
		s, got := split(chunks)
		want := []string{"6,1,1,-;first\n", "6,2,2,-;second\n", "6,3,3,-;third\n"}
		if !slices.Equal(got, want) || s.orphans != 2 {
			t.Errorf("got %q with %d orphans, want %q with 2", got, s.orphans, want)
		}
	})
	t.Run("a continuation line with no record before it is counted and dropped", func(t *testing.T) {
		s, got := split([]string{" ORPHAN=1\n6,1,1,-;x\n"})
		if s.orphans != 1 || !slices.Equal(got, []string{"6,1,1,-;x\n"}) {
			t.Errorf("orphans %d, records %q", s.orphans, got)
		}
	})
	t.Run("an endless line is dropped instead of growing without bound", func(t *testing.T) {
		s, got := split([]string{strings.Repeat("x", maxPending+1), "\n6,1,1,-;x\n"})
		if s.dropped != 1 || len(got) != 2 || got[1] != "6,1,1,-;x\n" {
			t.Errorf("dropped %d, records %d", s.dropped, len(got))
		}
	})
}

// FuzzParseRecord feeds arbitrary bytes to the record parser, the splitter
// and the OOM report parser: none may panic, and what parses must be sane.
func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"6,2089,5432440662,-;oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=x,mems_allowed=0,oom_memcg=/docker/a,task_memcg=/docker/a,task=sh,pid=12566,uid=0\n",
		"3,2090,5432440678,-;Memory cgroup out of memory: Killed process 12566 (sh) total-vm:14564kB\n",
		"6,9003,81234600,-;Task in /docker/a killed as a result of limit of /docker/a\n",
		"6,1,2,-;x\n SUBSYSTEM=acpi\n",
		"6,1,2,-,caller=T1;Killed process 1 (a)b) total-vm:1kB",
		`6,1,2,-;\x5c\x4`,
		"",
		";",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRecord(b)
		if err == nil {
			if r.SinceBoot < 0 || r.Level < 0 || r.Level > 7 || r.Facility < 0 {
				t.Fatalf("ParseRecord(%q) = %+v: out of range", b, r)
			}
			var p Parser
			if k, ok := p.Feed(r); ok && k.PID <= 0 {
				t.Fatalf("Feed(%+v) gave a kill with PID %d", r, k.PID)
			}
		}
		var s splitter
		s.feed(b, func(rec []byte) {
			if len(rec) == 0 || rec[0] == ' ' {
				t.Fatalf("splitter gave record %q", rec)
			}
		})
		if k, ok := parseSummary(string(b)); ok && k.PID <= 0 {
			t.Fatalf("parseSummary(%q) gave PID %d", b, k.PID)
		}
	})
}
