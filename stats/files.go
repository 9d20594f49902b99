package stats

import (
	"bytes"
	"errors"
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// Files a Cgroup keeps open between reads, by index into Cgroup.fds.
const (
	fileCPUUsage = iota
	fileCPUStat
	fileMemUsage
	fileMemStat
	fileMemLimit
	fileIO
	filePids
	fileNetDev
	fileCPUThrottle // v1 cpu controller's cpu.stat
	fileMemEvents   // v2 memory.events, v1 memory.oom_control
	filePressure    // filePressure+PressureCPU, ...Memory, ...IO
	numFiles        = filePressure + numPressure
)

// DefaultMaxOpenFiles is how many cgroup and procfs files a Reader keeps open
// by default (see Reader): every file of 1,000 containers a round reads on a
// cgroup v1 host (7 each) and of about 1,100 on a cgroup v2 host (9 each,
// with the pressure files). A kept file holds about 4.5 KiB of kernel memory
// (its seq_file page, charged to agentd's cgroup: 4.6-4.7 KiB a file
// measured by BenchmarkRound1000), so the whole budget is at most 46 MiB of
// kernel memory, 45 KiB a container; in return a kept file costs one pread a
// round instead of open, read and close, which halves the CPU of a round (see
// BenchmarkRound1000 and bench/RESULTS.md). It was 4,096, which at 1,000
// containers left 40 % of them opening every file at every round.
const DefaultMaxOpenFiles = 10240

// openFilesCap bounds a Reader's budget by the process's limit of open files
// (RLIMIT_NOFILE, which the Go runtime raises to its hard limit at start):
// at most half of it, so that sockets, the journal and the engines' streams
// always find descriptors. Without a readable limit the budget stands.
func openFilesCap(n int64) int64 {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == unix.RLIM_INFINITY {
		return n
	}
	return min(n, int64(lim.Cur/2))
}

// read returns the content of file number i of cg, which is at path. The
// file is kept open and re-read from offset 0 the next time: kernel-generated
// files (cgroupfs, procfs) regenerate their content on every read from 0, and
// one pread costs a quarter of open, read and close on a VM. A kept file that
// fails (ENODEV once the cgroup is removed, ESRCH once the process is gone) is
// closed and the path opened anew. Past the Reader's budget of open files, or
// when path is "", the file is opened, read and closed as before.
func (r *Reader) read(cg *Cgroup, i int, path string, buf *[]byte) ([]byte, error) {
	if data, ok := r.readKept(cg, i, buf); ok {
		return data, nil
	}
	return r.openRead(cg, i, path, buf)
}

// readCgroup is read of cgroup file i of cg, whose path is made only when the
// file has to be opened.
func (r *Reader) readCgroup(cg *Cgroup, i int, buf *[]byte) ([]byte, error) {
	if data, ok := r.readKept(cg, i, buf); ok {
		return data, nil
	}
	return r.openRead(cg, i, cg.path(i), buf)
}

// readKept reads the file i cg keeps open, reporting false when it keeps
// none or the read failed (and the file is closed).
func (r *Reader) readKept(cg *Cgroup, i int, buf *[]byte) ([]byte, bool) {
	fd := int(cg.fds[i]) - 1
	if fd < 0 {
		return nil, false
	}
	if data, err := preadAll(fd, buf); err == nil {
		return data, true
	}
	r.closeFile(cg, i)
	return nil, false
}

// openRead opens and reads path as file i of cg, keeping it open within the
// budget.
func (r *Reader) openRead(cg *Cgroup, i int, path string, buf *[]byte) ([]byte, error) {
	if path == "" || !r.reserve() {
		return readFile(path, buf)
	}
	fd, data, err := openAndRead(path, buf)
	if err != nil {
		r.open.Add(-1)
		return nil, err
	}
	cg.fds[i] = int32(fd + 1)
	return data, nil
}

// readFile reads the whole file into *buf (growing it) with raw syscalls, so
// no *os.File is allocated. Errors are *fs.PathError naming the file.
func readFile(file string, buf *[]byte) ([]byte, error) {
	fd, data, err := openAndRead(file, buf)
	if err != nil {
		return nil, err
	}
	_ = syscall.Close(fd)
	return data, nil
}

// openAndRead opens file and reads it whole; on success the caller owns fd.
// Errors are *fs.PathError naming the file.
func openAndRead(file string, buf *[]byte) (int, []byte, error) {
	fd, err := syscall.Open(file, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return -1, nil, &fs.PathError{Op: "open", Path: file, Err: err}
	}
	data, err := preadAll(fd, buf)
	if err != nil {
		_ = syscall.Close(fd)
		return -1, nil, &fs.PathError{Op: "read", Path: file, Err: err}
	}
	return fd, data, nil
}

// reserve takes one file from the budget, reporting false when none is left.
func (r *Reader) reserve() bool {
	if r.open.Add(1) > r.maxOpen {
		r.open.Add(-1)
		return false
	}
	return true
}

func (r *Reader) closeFile(cg *Cgroup, i int) {
	if fd := int(cg.fds[i]) - 1; fd >= 0 {
		_ = syscall.Close(fd)
		cg.fds[i] = 0
		r.open.Add(-1)
	}
}

// Release closes the files cg keeps open. cg reads again afterwards (opening
// them anew); Release must be called before a Cgroup is dropped, or its files
// stay open.
func (r *Reader) Release(cg *Cgroup) {
	for i := range cg.fds {
		r.closeFile(cg, i)
	}
}

// OpenFiles is how many files the Reader keeps open now.
func (r *Reader) OpenFiles() int { return int(r.open.Load()) }

// preadAll reads fd from offset 0 to its end into *buf (growing it), without
// the NUL padding some kernel files end with.
func preadAll(fd int, buf *[]byte) ([]byte, error) {
	b, err := procfs.ReadFD(fd, buf)
	if err != nil {
		return nil, err
	}
	return bytes.TrimRight(b, "\x00"), nil
}

// readOptional reads cgroup file number i of cg like readCgroup, for a file
// that some kernels do not have: when it does not exist or the kernel does
// not support it (pressure files with PSI disabled answer EOPNOTSUPP), it is
// marked absent so it is not tried again, and nil data with a nil error is
// returned.
func (r *Reader) readOptional(cg *Cgroup, i int, buf *[]byte) ([]byte, error) {
	data, err := r.readCgroup(cg, i, buf)
	if err != nil && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.EOPNOTSUPP)) {
		r.closeFile(cg, i)
		cg.absent |= 1 << i
		return nil, nil
	}
	return data, err
}
