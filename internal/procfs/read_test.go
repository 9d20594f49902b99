package procfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeTree writes files (relative path → content) below a new root.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, body := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestReaders(t *testing.T) {
	root := writeTree(t, map[string]string{
		"stat": "cpu  1 2 3\nbtime 1700000000\nprocesses 9\n",
		// comm holds a space and a ')': fields are counted after the last ')'.
		"42/stat":   "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 10 18446744073709551615\n",
		"42/comm":   "a) b\n",
		"42/status": "Name:\ta) b\nPid:\t42\nPPid:\t1\nNSpid:\t42\t7\n",
		"43/stat":   "43 (short) S 1\n",
		"43/status": "Pid:\t43\nNSpid:\t43\tx\n",
	})
	t.Run("the start time is boot time plus starttime ticks", func(t *testing.T) {
		got, err := StartTime(root, 42)
		if err != nil {
			t.Fatal(err)
		}
		if want := time.Unix(1700000000, 0).Add(123450 * time.Millisecond); !got.Equal(want) {
			t.Errorf("StartTime = %v, want %v", got, want)
		}
	})
	t.Run("a truncated stat line is an error naming the file", func(t *testing.T) {
		if _, err := StartTime(root, 43); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "43/stat") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a vanished process is fs.ErrNotExist", func(t *testing.T) {
		if _, err := StartTime(root, 44); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v", err)
		}
		if _, err := Comm(root, 44); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v", err)
		}
		if _, err := ReadStatus(root, 44); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("comm loses only the trailing newline", func(t *testing.T) {
		if got, err := Comm(root, 42); err != nil || got != "a) b" {
			t.Errorf("Comm = %q, %v", got, err)
		}
	})
	t.Run("status is read and a malformed one names the file", func(t *testing.T) {
		st, err := ReadStatus(root, 42)
		if err != nil || st.PID != 42 || st.PPID != 1 || !slices.Equal(st.NSpid, []int{42, 7}) {
			t.Errorf("ReadStatus = %+v, %v", st, err)
		}
		if _, err := ReadStatus(root, 43); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "43/status") {
			t.Errorf("err = %v", err)
		}
	})
	t.Run("a missing btime is an error naming /proc/stat", func(t *testing.T) {
		bad := writeTree(t, map[string]string{"stat": "cpu 1\n"})
		if _, err := BootTime(bad); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), filepath.Join(bad, "stat")) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestReadersOnTheRealProcfs(t *testing.T) {
	pid := os.Getpid()
	st, err := ReadStatus("/proc", pid)
	if err != nil || st.PID != pid || st.PPID != os.Getppid() || len(st.NSpid) == 0 || st.NSpid[0] != pid {
		t.Fatalf("ReadStatus(self) = %+v, %v", st, err)
	}
	start, err := StartTime("/proc", pid)
	if err != nil || time.Since(start) < 0 || time.Since(start) > time.Hour {
		t.Fatalf("StartTime(self) = %v, %v", start, err)
	}
	b, err := os.ReadFile(Path("/proc", pid, "cgroup"))
	if err != nil {
		t.Fatal(err)
	}
	if lines, err := ParseCgroup(b); err != nil || len(lines) == 0 {
		t.Fatalf("ParseCgroup(self) = %+v, %v", lines, err)
	}
}

func ExamplePath() {
	fmt.Println(Path("/proc", 812, "ns", "pid"))
	// Output: /proc/812/ns/pid
}

func TestComplete(t *testing.T) {
	tests := []struct {
		name           string
		total, n, room int
		want           bool
	}{
		{"a short read well below a page is the whole file", 300, 300, 4096, true},
		{"a read that filled the buffer may have more behind it", 4096, 4096, 4096, false},
		{"a read near a page may have stopped at the kernel buffer's end", 3950, 3950, 8192, false},
		{"the tail of a long file is read on until EOF", 5000, 904, 3192, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Complete(tt.total, tt.n, tt.room); got != tt.want {
				t.Errorf("Complete(%d, %d, %d) = %v, want %v", tt.total, tt.n, tt.room, got, tt.want)
			}
		})
	}
}

func TestReadFD(t *testing.T) {
	for _, size := range []int{0, 1, minReadBuffer - 1, minReadBuffer, 3 * minReadBuffer, 100_000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			want := strings.Repeat("x", size)
			file := filepath.Join(t.TempDir(), "f")
			if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(file)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var buf []byte
			for round := range 2 { // a kept-open file reads whole again
				got, err := ReadFD(int(f.Fd()), &buf)
				if err != nil || string(got) != want {
					t.Fatalf("round %d: %d bytes, %v; want %d bytes", round, len(got), err, size)
				}
			}
		})
	}
	t.Run("a bad fd is an error", func(t *testing.T) {
		var buf []byte
		if _, err := ReadFD(-1, &buf); err == nil {
			t.Fatal("no error for fd -1")
		}
	})
}
