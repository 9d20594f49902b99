package discovery

import (
	"strings"
	"testing"
)

func TestCgroupPath(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"the unified path wins on a hybrid host", "12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/system.slice/docker-abc.scope\n", "/system.slice/docker-abc.scope"},
		{"name=systemd is used without a unified line", "12:cpu,cpuacct:/a\n1:name=systemd:/b\n", "/b"},
		{"the first hierarchy is the last resort", "12:cpu:/a\n", "/a"},
		{"a malformed line is skipped", "garbage\n12:cpu:/a\n", "/a"},
		{"garbage yields nothing", "nonsense\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cgroupPath([]byte(tt.in)); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzCgroupPath(f *testing.F) {
	f.Add([]byte("12:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n0::/system.slice/x.scope\n"))
	f.Add([]byte("::"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if p := cgroupPath(b); strings.Contains(p, "\n") {
			t.Fatalf("path %q spans lines", p)
		}
	})
}
