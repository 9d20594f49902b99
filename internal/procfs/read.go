package procfs

import (
	"bytes"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// UserHZ is the unit of the clock-tick fields of /proc/PID/stat (StartTime):
// the kernel converts to USER_HZ, 100 per second on every Linux architecture
// agentd builds for, regardless of CONFIG_HZ.
const UserHZ = 100

// Path returns the path of a process's file below the procfs root, such as
// Path("/proc", 812, "ns", "pid") = "/proc/812/ns/pid".
func Path(root string, pid int, elem ...string) string {
	return filepath.Join(append([]string{root, strconv.Itoa(pid)}, elem...)...)
}

// ReadStatus reads and parses root/PID/status. A process that is gone yields
// an error wrapping fs.ErrNotExist (or ESRCH); a malformed file one wrapping
// ErrMalformed and naming the file.
func ReadStatus(root string, pid int) (Status, error) {
	return readFile(Path(root, pid, "status"), ParseStatus)
}

// Comm reads root/PID/comm, the command name (at most 15 bytes) without the
// kernel's trailing newline. A process that is gone yields an error wrapping
// fs.ErrNotExist (or ESRCH).
func Comm(root string, pid int) (string, error) {
	b, err := os.ReadFile(Path(root, pid, "comm"))
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSuffix(b, []byte{'\n'})), nil
}

// BootTime returns when the system booted. For the live /proc it is now
// minus CLOCK_BOOTTIME, the clock that /proc/PID/stat's starttime counts on
// (kernel 5.3 and later); the btime line of root/stat is rounded down to whole
// seconds, which would put every start time up to a second early. For any
// other root (a fake tree, a host /proc mounted elsewhere) btime is used.
//
// The live value is computed once per process, so that two start times of
// one process always compare equal.
func BootTime(root string) (time.Time, error) {
	if filepath.Clean(root) == "/proc" {
		if t := liveBootTime(); !t.IsZero() {
			return t, nil
		}
	}
	return readFile(filepath.Join(root, "stat"), ParseBootTime)
}

var liveBootTime = sync.OnceValue(func() time.Time {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return time.Time{}
	}
	// Rounded to the starttime resolution: the result is an instant, not a reading.
	return time.Now().Add(-time.Duration(ts.Nano())).Round(time.Second / UserHZ)
})

// StartTime returns when process pid of the procfs at root started: the
// StartTime of root/PID/stat (clock ticks since boot) added to BootTime. It
// is exact to 1/UserHZ second. Errors name the file concerned.
func StartTime(root string, pid int) (time.Time, error) {
	st, err := readFile(Path(root, pid, "stat"), ParseStat)
	if err != nil {
		return time.Time{}, err
	}
	boot, err := BootTime(root)
	if err != nil {
		return time.Time{}, err
	}
	return boot.Add(time.Duration(st.StartTime) * time.Second / UserHZ), nil
}

// readFile reads file and parses it; a read error is returned as it is (it
// names the file), a parse error is wrapped with the file's name.
func readFile[T any](file string, parse func([]byte) (T, error)) (T, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := parse(b)
	if err != nil {
		var zero T
		return zero, fmt.Errorf("%s: %w", file, err)
	}
	return v, nil
}

// shortReadLimit bounds the reads Complete takes for a whole file.
const shortReadLimit = 3584

// Complete reports whether a read of a kernel-generated file (procfs,
// cgroupfs) that returned n bytes into room bytes of buffer, for total bytes
// so far, has seen the whole file, so that the read returning 0 can be
// skipped. Such files are seq_files: one read fills the caller's buffer from
// a kernel buffer of at least a page, generated in one go for single-record
// files (every cgroup file, /proc/PID/stat) and record by record for the
// others (net/dev, a line per interface). A read that did not fill the
// buffer and stayed well below a page is therefore the whole file; a longer
// one may have stopped at the kernel buffer's end and is read on. Regular
// files (fake trees in tests) end at a short read too.
func Complete(total, n, room int) bool {
	return n < room && total < shortReadLimit
}

// minReadBuffer is the smallest buffer ReadFD reads into.
const minReadBuffer = 4096

// ReadFD reads the kernel file open at fd whole, from offset 0, into *buf
// (growing it, to at least minReadBuffer bytes), and returns the bytes read.
// It reads with pread, so a file kept open is read afresh every time, and
// stops without waiting for the read that returns 0 once Complete says it
// has the whole file. It does not allocate while *buf is large enough.
func ReadFD(fd int, buf *[]byte) ([]byte, error) {
	if cap(*buf) < minReadBuffer {
		*buf = make([]byte, 0, minReadBuffer)
	}
	b := (*buf)[:0]
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		room := cap(b) - len(b)
		n, err := unix.Pread(fd, b[len(b):cap(b)], int64(len(b)))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			*buf = b
			return nil, err
		}
		if n == 0 {
			break
		}
		b = b[:len(b)+n]
		if Complete(len(b), n, room) {
			break
		}
	}
	*buf = b
	return b, nil
}
