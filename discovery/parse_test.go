package discovery

import (
	"slices"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		want  statFields
		fails bool
	}{
		{
			name: "a plain comm parses",
			in:   "6225 (dockerd) S 1 6225 6225 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 12 0 4242 1 1\n",
			want: statFields{pid: 6225, ppid: 1, comm: []byte("dockerd"), startTime: 4242},
		},
		{
			name: "a comm with spaces and a closing parenthesis parses up to the last one",
			in:   "77 (a) b (c)) S 5 77 77 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 1 0 99 1 1",
			want: statFields{pid: 77, ppid: 5, comm: []byte("a) b (c)"), startTime: 99},
		},
		{
			name: "an empty comm parses",
			in:   "8 () R 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7 0 0",
			want: statFields{pid: 8, ppid: 2, comm: []byte(""), startTime: 7},
		},
		{name: "a truncated line is rejected", in: "8 (x) R 2 0 0", fails: true},
		{name: "a line without parentheses is rejected", in: "8 x R 2", fails: true},
		{name: "a non-numeric pid is rejected", in: "x8 (x) R 2 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7", fails: true},
		{name: "an empty line is rejected", in: "", fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if tt.fails {
				if err == nil {
					t.Fatalf("parseStat(%q) = %+v, want an error", tt.in, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.pid != tt.want.pid || got.ppid != tt.want.ppid || string(got.comm) != string(tt.want.comm) || got.startTime != tt.want.startTime {
				t.Fatalf("parseStat = %+v (comm %q), want %+v (comm %q)", got, got.comm, tt.want, tt.want.comm)
			}
		})
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
		{name: "garbage in the line is rejected", in: "NSpid:\t4\tx\n", fails: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNSpid(nil, []byte(tt.in))
			if (err != nil) != tt.fails {
				t.Fatalf("err = %v, want failure %v", err, tt.fails)
			}
			if !tt.fails && !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
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
	var got []unixSocket
	parseNetUnix([]byte(in), func(unixSocket) bool { return true }, func(s unixSocket) { got = append(got, s) })
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
			if got[i].inode != w.inode || got[i].path != w.path || got[i].listening() != w.listening {
				t.Fatalf("row %d = %+v listening %v, want %+v", i, got[i], got[i].listening(), w)
			}
		})
	}
}

func TestParseCgroup(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"the unified path wins on a hybrid host", "12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/system.slice/docker-abc.scope\n", "/system.slice/docker-abc.scope"},
		{"name=systemd is used without a unified line", "12:cpu,cpuacct:/a\n1:name=systemd:/b\n", "/b"},
		{"the first hierarchy is the last resort", "12:cpu:/a\n", "/a"},
		{"garbage yields nothing", "nonsense\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parseCgroup([]byte(tt.in)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseLinks(t *testing.T) {
	if n, err := parseNSInode("pid:[4026531836]"); err != nil || n != 4026531836 {
		t.Fatalf("parseNSInode = %d, %v", n, err)
	}
	for _, bad := range []string{"pid:[]", "pid:[x]", "pid", "[", ""} {
		if _, err := parseNSInode(bad); err == nil {
			t.Errorf("parseNSInode(%q) accepted", bad)
		}
	}
	if n, ok := parseSocketLink("socket:[12328]"); !ok || n != 12328 {
		t.Fatalf("parseSocketLink = %d, %v", n, ok)
	}
	for _, bad := range []string{"pipe:[5]", "socket:[]", "/dev/null", "anon_inode:[eventpoll]", "socket:[1"} {
		if _, ok := parseSocketLink(bad); ok {
			t.Errorf("parseSocketLink(%q) accepted", bad)
		}
	}
}

func TestIsPodmanService(t *testing.T) {
	tests := []struct {
		cmd  []string
		want bool
	}{
		{[]string{"/usr/bin/podman", "--log-level=info", "system", "service"}, true},
		{[]string{"podman", "system", "service", "--time=5"}, true},
		{[]string{"podman", "system", "service", "--time=0", "unix:///run/podman/podman.sock"}, true},
		{[]string{"podman", "run", "busybox"}, false},
		{[]string{"podman", "system", "prune"}, false},
		{[]string{"podman"}, false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.cmd, " "), func(t *testing.T) {
			if got := isPodmanService(tt.cmd); got != tt.want {
				t.Fatalf("isPodmanService = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte("6225 (dockerd) S 1 6225 6225 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 12 0 4242 1 1\n"))
	f.Add([]byte("77 (a) b (c)) S 5 77 77 0 -1 4194560 1 0 0 0 5 3 0 0 20 0 1 0 99 1 1"))
	f.Add([]byte("1 ("))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStat(b)
		if err == nil && (s.pid < 0 || s.ppid < 0) {
			t.Fatalf("negative pid from %q: %+v", b, s)
		}
	})
}

func FuzzParseNSpid(f *testing.F) {
	f.Add([]byte("Name:\tx\nNSpid:\t18419\t1\n"))
	f.Add([]byte("NSpid:"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := parseNSpid(nil, b)
		for _, id := range ids {
			if err == nil && id <= 0 {
				t.Fatalf("non-positive pid %d from %q", id, b)
			}
		}
	})
}

func FuzzParseNetUnix(f *testing.F) {
	f.Add([]byte(netUnixHeader + "0000000000000000: 00000002 00000000 00010000 0001 01 12328 /var/run/docker.sock\n"))
	f.Add([]byte("0: 1 1 1 1 1 1  \n@x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		parseNetUnix(b, func(unixSocket) bool { return true }, func(s unixSocket) {
			if strings.Contains(s.path, "\n") {
				t.Fatalf("path %q spans lines", s.path)
			}
		})
	})
}

func FuzzParseCgroup(f *testing.F) {
	f.Add([]byte("12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/system.slice/x.scope\n"))
	f.Add([]byte("::"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p := parseCgroup(b); strings.Contains(p, "\n") {
			t.Fatalf("path %q spans lines", p)
		}
	})
}
