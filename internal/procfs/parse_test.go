package procfs

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

const netUnixHeader = "Num       RefCount Protocol Flags    Type St Inode Path\n"

func TestParseStat(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  Stat
		fails bool
	}{
		{
			name: "a plain comm parses",
			in:   "6225 (dockerd) S 1 6225 6225 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 12 0 4242 1 1\n",
			want: Stat{PID: 6225, PPID: 1, Comm: []byte("dockerd"), StartTime: 4242},
		},
		{
			name: "a comm with spaces and a closing parenthesis parses up to the last one",
			in:   "77 (a) b (c)) S 5 77 77 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 1 0 99 1 1",
			want: Stat{PID: 77, PPID: 5, Comm: []byte("a) b (c)"), StartTime: 99},
		},
		{
			name: "an empty comm parses",
			in:   "8 () R 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7 0 0",
			want: Stat{PID: 8, PPID: 2, Comm: []byte(""), StartTime: 7},
		},
		{
			name: "a thread group leader has an exit signal",
			in:   "741 (dockerd) S 1 741 741 0 -1 4194560 112204 3403090 85 47 898 1189 1382 1521 20 0 24 0 2604364 2156638208 54117 18446744073709551615 94852777758720 94852805005781 140729607018736 0 0 0 1002055680 0 2143420159 0 0 0 17 0 0 0 0 0 0 94852810660112 94852835205752 94853848317952 140729607027343 140729607027396 140729607027396 140729607028710 0\n",
			want: Stat{PID: 741, PPID: 1, Comm: []byte("dockerd"), StartTime: 2604364},
		},
		{
			name: "another thread of the group has none",
			in:   "1607 (dockerd) S 1 741 741 0 -1 4194624 2273 3403090 0 47 13 18 1382 1521 20 0 24 0 2605020 2156638208 54117 18446744073709551615 94852777758720 94852805005781 140729607018736 0 0 0 0 0 2143420159 1 0 0 -1 0 0 0 0 0 0 94852810660112 94852835205752 94853848317952 140729607027343 140729607027396 140729607027396 140729607028710 0\n",
			want: Stat{PID: 1607, PPID: 1, Comm: []byte("dockerd"), StartTime: 2605020, Thread: true},
		},
		{name: "a truncated line is rejected", in: "8 (x) R 2 0 0", fails: true},
		{name: "a line without parentheses is rejected", in: "8 x R 2", fails: true},
		{name: "a non-numeric pid is rejected", in: "x8 (x) R 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", fails: true},
		{name: "an empty line is rejected", in: "", fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.in))
			if tt.fails {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseStat(%q) = %+v, %v; want ErrMalformed", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.PID != tt.want.PID || got.PPID != tt.want.PPID || string(got.Comm) != string(tt.want.Comm) || got.StartTime != tt.want.StartTime || got.Thread != tt.want.Thread {
				t.Fatalf("ParseStat = %+v (comm %q), want %+v (comm %q)", got, got.Comm, tt.want, tt.want.Comm)
			}
		})
	}
}

func TestParseStatDoesNotAllocate(t *testing.T) {
	b := []byte("6225 (dockerd) S 1 6225 6225 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 12 0 4242 1 1\n")
	if n := testing.AllocsPerRun(100, func() { _, _ = ParseStat(b) }); n != 0 {
		t.Fatalf("ParseStat allocates %v times", n)
	}
}

func TestParseNSpid(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []int
		fails bool
	}{
		{name: "a host process has one PID", in: "Name:\tx\nNSpid:\t42\nPPid:\t1\n", want: []int{42}},
		{name: "a nested process lists PIDs from the outside in", in: "NSpid:\t18419\t1\n", want: []int{18419, 1}},
		{name: "three levels parse", in: "Name:\tx\nNSpid:\t900\t40\t3", want: []int{900, 40, 3}},
		{name: "an old kernel without the line yields nothing", in: "Name:\tx\nPid:\t4\n", want: nil},
		{name: "an empty line yields nothing", in: "NSpid:\n", want: nil},
		{name: "garbage in the line is rejected", in: "NSpid:\t4\tx\n", fails: true},
		{name: "a zero PID is rejected", in: "NSpid:\t0\n", fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNSpid(nil, []byte(tt.in))
			if (err != nil) != tt.fails || (err != nil && !errors.Is(err, ErrMalformed)) {
				t.Fatalf("err = %v, want failure %v", err, tt.fails)
			}
			if !tt.fails && !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseStatus(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  Status
		fails bool
	}{
		{name: "Pid, PPid and NSpid are read", in: "Name:\tsleep\nPid:\t9123\nPPid:\t9100\nNSpid:\t9123\t57\t1\nUid:\t0\t0\t0\t0\n", want: Status{PID: 9123, PPID: 9100, NSpid: []int{9123, 57, 1}}},
		{name: "an old kernel has no NSpid", in: "Pid:\t1\nPPid:\t0\n", want: Status{PID: 1}},
		{name: "a bad PPid is rejected", in: "Pid:\t5\nPPid:\tx\n", fails: true},
		{name: "a bad Pid is rejected", in: "Pid:\t-5\n", fails: true},
		{name: "a bad NSpid is rejected", in: "NSpid:\t5 0\n", fails: true},
		{name: "an empty file has nothing", in: "", want: Status{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStatus([]byte(tt.in))
			if (err != nil) != tt.fails || (err != nil && !errors.Is(err, ErrMalformed)) {
				t.Fatalf("err = %v, want failure %v", err, tt.fails)
			}
			if !tt.fails && (got.PID != tt.want.PID || got.PPID != tt.want.PPID || !slices.Equal(got.NSpid, tt.want.NSpid)) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseNetUnix(t *testing.T) {
	in := netUnixHeader +
		"0000000000000000: 00000002 00000000 00010000 0001 01 12328 /var/run/docker.sock\n" +
		"0000000000000000:   00000002   00000000   00010000   0001   01   555   /run/with  spaces.sock\n" +
		"0000000000000000: 00000002 00000000 00010000 0001 01 600 @/containerd-shim/abc.sock\n" +
		"0000000000000000: 00000003 00000000 00000000 0001 03 601 /run/docker.sock\n" +
		"0000000000000000: 00000002 00000000 00000000 0002 01 602 /run/systemd/notify\n" +
		"0000000000000000: 00000002 00000000 00000000 0001 01 603\n" +
		"garbage line\n" +
		"0000000000000000: 00000002 00000000 0001zz00 0001 01 604 /bad/flags\n"
	var got []UnixSocket
	ParseNetUnix([]byte(in), func(UnixSocket) bool { return true }, func(s UnixSocket) { got = append(got, s) })
	want := []struct {
		inode     uint64
		path      string
		listening bool
	}{
		{12328, "/var/run/docker.sock", true},
		{555, "/run/with  spaces.sock", true},
		{600, "@/containerd-shim/abc.sock", true},
		{601, "/run/docker.sock", false},
		{602, "/run/systemd/notify", false},
		{603, "", false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d rows %+v, want %d", len(got), got, len(want))
	}
	for i, w := range want {
		t.Run("row with inode "+strings.TrimSpace(w.path)+" parses", func(t *testing.T) {
			if got[i].Inode != w.inode || got[i].Path != w.path || got[i].Listening() != w.listening {
				t.Fatalf("row %d = %+v listening %v, want %+v", i, got[i], got[i].Listening(), w)
			}
		})
	}
}

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  []CgroupLine
		fails bool
	}{
		{
			name: "a hybrid host's lines all parse",
			in:   "12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/system.slice/docker-abc.scope\n",
			want: []CgroupLine{{12, "cpu,cpuacct", "/docker/abc"}, {1, "name=systemd", "/docker/abc"}, {0, "", "/system.slice/docker-abc.scope"}},
		},
		{name: "a path outside the namespace parses", in: "0::/../../x\n", want: []CgroupLine{{0, "", "/../../x"}}},
		{name: "a line without a path is malformed, the others still parse", in: "4:memory\n3:pids:/a\n", want: []CgroupLine{{3, "pids", "/a"}}, fails: true},
		{name: "a non-numeric ID is malformed", in: "x:memory:/a\n", fails: true},
		{name: "a relative path is malformed", in: "1:memory:a\n", fails: true},
		{name: "garbage is malformed", in: "nonsense\n", fails: true},
		{name: "an empty file is malformed", in: "", fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCgroup([]byte(tt.in))
			if (err != nil) != tt.fails || (err != nil && !errors.Is(err, ErrMalformed)) {
				t.Fatalf("err = %v, want failure %v", err, tt.fails)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseBootTime(t *testing.T) {
	got, err := ParseBootTime([]byte("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"))
	if err != nil || !got.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("got %v, %v", got, err)
	}
	for _, bad := range []string{"cpu 1\n", "btime x\n", ""} {
		if _, err := ParseBootTime([]byte(bad)); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseBootTime(%q): err = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestParseLinks(t *testing.T) {
	if n, err := ParseNSInode("pid:[4026531836]"); err != nil || n != 4026531836 {
		t.Fatalf("ParseNSInode = %d, %v", n, err)
	}
	for _, bad := range []string{"pid:[]", "pid:[x]", "pid", "[", ""} {
		if _, err := ParseNSInode(bad); err == nil {
			t.Errorf("ParseNSInode(%q) accepted", bad)
		}
	}
	if n, ok := ParseSocketLink("socket:[12328]"); !ok || n != 12328 {
		t.Fatalf("ParseSocketLink = %d, %v", n, ok)
	}
	for _, bad := range []string{"pipe:[5]", "socket:[]", "/dev/null", "anon_inode:[eventpoll]", "socket:[1"} {
		if _, ok := ParseSocketLink(bad); ok {
			t.Errorf("ParseSocketLink(%q) accepted", bad)
		}
	}
}

func TestParseCmdline(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"a NUL-terminated vector splits", "podman\x00system\x00service\x00", []string{"podman", "system", "service"}},
		{"an empty argument is kept", "a\x00\x00b", []string{"a", "", "b"}},
		{"a kernel thread has none", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseCmdline([]byte(tt.in)); !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseNumbers(t *testing.T) {
	tests := []struct {
		in     string
		want   uint64
		ok     bool
		pidOK  bool
		reason string
	}{
		{"0", 0, true, true, "zero parses"},
		{"2147483647", 2147483647, true, true, "the largest PID parses"},
		{"2147483648", 2147483648, true, false, "a number past int32 is no PID"},
		{"18446744073709551615", 1<<64 - 1, true, false, "the largest uint64 parses"},
		{"18446744073709551616", 0, false, false, "an overflowing number is rejected"},
		{"-1", 0, false, false, "a sign is rejected"},
		{" 1", 0, false, false, "a space is rejected"},
		{"", 0, false, false, "an empty number is rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.reason, func(t *testing.T) {
			v, ok := ParseUint([]byte(tt.in))
			if ok != tt.ok || v != tt.want {
				t.Fatalf("ParseUint(%q) = %d, %v", tt.in, v, ok)
			}
			p, ok := ParsePID([]byte(tt.in))
			if ok != tt.pidOK || (ok && uint64(p) != tt.want) {
				t.Fatalf("ParsePID(%q) = %d, %v", tt.in, p, ok)
			}
		})
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("6225 (dockerd) S 1 6225 6225 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 12 0 4242 1 1\n"))
	f.Add([]byte("77 (a) b (c)) S 5 77 77 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 1 0 99 1 1"))
	f.Add([]byte("1 ("))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseStat(b)
		if err == nil && (s.PID < 0 || s.PPID < 0) {
			t.Fatalf("negative pid from %q: %+v", b, s)
		}
	})
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("Name:\tsleep\nPid:\t9123\nPPid:\t9100\nNSpid:\t9123\t57\t1\n"))
	f.Add([]byte("Pid:\t1\n"))
	f.Add([]byte("NSpid:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStatus(b)
		if err != nil && !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v is not ErrMalformed", err)
		}
		ids, nerr := ParseNSpid(nil, b)
		for _, id := range append(ids, st.NSpid...) {
			if id <= 0 && nerr == nil {
				t.Fatalf("non-positive pid %d from %q", id, b)
			}
		}
		if err == nil && (st.PID < 0 || st.PPID < 0) {
			t.Fatalf("negative pid from %q: %+v", b, st)
		}
	})
}

func FuzzParseNetUnix(f *testing.F) {
	f.Add([]byte(netUnixHeader + "0000000000000000: 00000002 00000000 00010000 0001 01 12328 /var/run/docker.sock\n"))
	f.Add([]byte("0: 1 1 1 1 1 1  \n@x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseNetUnix(b, func(UnixSocket) bool { return true }, func(s UnixSocket) {
			if strings.Contains(s.Path, "\n") {
				t.Fatalf("path %q spans lines", s.Path)
			}
		})
	})
}

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/system.slice/x.scope\n"))
	f.Add([]byte("4:memory:/docker/abc\n0::/docker/abc\n"))
	f.Add([]byte("::"))
	f.Fuzz(func(t *testing.T, b []byte) {
		lines, err := ParseCgroup(b)
		if err == nil && len(lines) == 0 {
			t.Fatal("no lines and no error")
		}
		for _, l := range lines {
			if !strings.HasPrefix(l.Path, "/") || strings.Contains(l.Path, "\n") || strings.Contains(l.Controllers, ":") {
				t.Fatalf("bad line %+v from %q", l, b)
			}
		}
	})
}

func FuzzParseBootTime(f *testing.F) {
	f.Add([]byte("cpu  1 2 3\nbtime 1700000000\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseBootTime(b)
	})
}

func TestParseLoadavgLastPID(t *testing.T) {
	tests := []struct {
		name, in string
		want     uint64
		ok       bool
	}{
		{"the last field is the last PID", "0.00 0.01 0.05 1/123 4567\n", 4567, true},
		{"without a newline", "1.50 1.20 0.90 3/800 99", 99, true},
		{"an empty file says nothing", "", 0, false},
		{"a non-number says nothing", "0.00 0.01 0.05 1/123 x\n", 0, false},
		{"a single field says nothing", "4567\n", 0, false},
		{"an overflowing number says nothing", "0 0 0 1/1 99999999999999999999999\n", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseLoadavgLastPID([]byte(tt.in))
			if got != tt.want || ok != tt.ok {
				t.Fatalf("ParseLoadavgLastPID(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func FuzzParseLoadavgLastPID(f *testing.F) {
	f.Add([]byte("0.00 0.01 0.05 1/123 4567\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseLoadavgLastPID(b) })
}
