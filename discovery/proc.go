package discovery

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// DefaultProcRoot is where procfs is mounted on a host.
const DefaultProcRoot = "/proc"

// ErrVanished is wrapped by errors about a process that exited while it was
// being read (ENOENT or ESRCH from its /proc files). It is normal during a scan.
var ErrVanished = errors.New("process vanished")

// Process is what discovery knows about one process, read from /proc/PID.
type Process struct {
	// PID is the process ID in the PID namespace of the procfs that was read
	// (the host's for the host /proc).
	PID int `json:"pid"`
	// PPID is the parent's PID in the same namespace; 0 for the namespace's roots.
	PPID int `json:"ppid"`
	// Comm is the command name from /proc/PID/stat (at most 15 bytes).
	Comm string `json:"comm"`
	// StartTime is the start time in clock ticks after boot; PID and StartTime
	// together identify a process across PID reuse.
	StartTime uint64 `json:"start_time"`
	// Cmdline is the argument vector; empty for kernel threads and zombies.
	Cmdline []string `json:"cmdline,omitempty"`
	// NSpid lists the process's PIDs from the reader's PID namespace down to the
	// process's own (the NSpid line of /proc/PID/status); one element for a
	// process in the reader's namespace.
	NSpid []int `json:"nspid,omitempty"`
	// PIDNS is the inode of the process's PID namespace (/proc/PID/ns/pid), 0 if unreadable.
	PIDNS uint64 `json:"pid_ns,omitempty"`
	// MntNS is the inode of the process's mount namespace (/proc/PID/ns/mnt), 0 if unreadable.
	MntNS uint64 `json:"mnt_ns,omitempty"`
	// Cgroup is the cgroup path (the unified one where the host has it).
	Cgroup string `json:"cgroup,omitempty"`
}

// Depth is how many PID namespaces below the reader's the process lives: 0 for
// a process in the reader's namespace, 1 for a container's process, and so on.
func (p *Process) Depth() int {
	if len(p.NSpid) == 0 {
		return 0
	}
	return len(p.NSpid) - 1
}

// procEntry is the process table's record of one process: always the cheap
// fields from stat, the rest only once detail asks for them.
type procEntry struct {
	ppid   int
	start  uint64
	comm   string
	gen    uint32
	ino    uint64 // inode of /proc/PID from getdents
	detail *Process
}

// How often Refresh re-reads a process that did not change visibly. A
// process keeps its /proc/PID inode for its whole life and a reused PID gets
// a new one, so an unchanged inode means the same process; what the inode
// does not show is an exec (a new comm). Young processes, where an exec is
// likely (an entrypoint that execs dockerd), and processes named like an
// engine are re-read on every Refresh; the others on one Refresh in
// fullEvery, staggered by PID so no Refresh reads them all. A process is young
// for youngTicks clock ticks (USER_HZ, 100 a second on Linux, the unit of
// /proc/PID/stat's starttime) after it started.
const (
	youngTicks = 30 * 100
	fullEvery  = 6
)

// ProcFS reads a procfs tree. It keeps a table of every process seen by the last
// Refresh, with the cheap fields of /proc/PID/stat, and parses a process's other
// files only when asked (Process), caching the result for that process (PID and
// start time). A ProcFS is not safe for concurrent use.
type ProcFS struct {
	root   string
	procs  map[int]*procEntry
	gen    uint32
	always map[string]bool // comms re-read on every Refresh
	// uptime returns the time since boot in clock ticks, read once per
	// Refresh; tests replace it.
	uptime func() uint64
	now    uint64 // uptime at the current Refresh
	// lastPID returns the PID most recently allocated in the PID namespace
	// the procfs shows, ok false when that cannot be known (see newLastPID);
	// tests replace it.
	lastPID  func() (uint64, bool)
	seenLast uint64 // lastPID at the last Refresh that listed /proc or read what was allocated since
	pending  []int  // allocated PIDs that had no /proc entry yet when read; read again next time
	retry    []int  // pending of the last call, being read again
	listings int    // Refreshes that listed /proc (for tests)

	// oldest is, by mount namespace, the oldest process of the table in it
	// (see OldestIn), worked out at oldestGen's Refresh.
	oldest    map[uint64]int
	oldestGen uint32

	dents []byte // getdents buffer, reused
	buf   []byte // file read buffer, reused
	path  []byte // NUL-terminated relative path, reused

	// open opens files and directories below root for the slow path; tests
	// replace it to inject errors such as EACCES that root cannot otherwise get.
	open func(name string) (*os.File, error)
}

// NewProcFS returns a reader of the procfs mounted at root ("" means /proc).
func NewProcFS(root string) *ProcFS {
	if root == "" {
		root = DefaultProcRoot
	}
	p := &ProcFS{
		root:   filepath.Clean(root),
		procs:  make(map[int]*procEntry),
		dents:  make([]byte, 32<<10),
		buf:    make([]byte, 0, 4<<10),
		path:   make([]byte, 0, 64),
		open:   os.Open,
		uptime: bootTicks,
	}
	p.lastPID = newLastPID(p.root)
	return p
}

// AlwaysRead makes Refresh re-read the stat of processes with these comms on
// every call (engines, whose exit and PID reuse must be seen at once).
func (p *ProcFS) AlwaysRead(comms ...string) {
	p.always = make(map[string]bool, len(comms))
	for _, c := range comms {
		p.always[c] = true
	}
}

// Root is the procfs root this reader reads.
func (p *ProcFS) Root() string { return p.root }

// Refresh lists the processes, updates the table and drops processes that are
// gone, calling visit for each live process with its PID and comm (comm
// aliases a buffer valid only during the call). It reads /proc/PID/stat of new
// processes, young ones and those named by AlwaysRead every time, and of the
// others once every few calls (see fullEvery). Steady state (no new processes)
// it does not allocate. Processes that vanish mid-scan are skipped silently.
// The error is about the procfs root itself.
//
// Listing /proc costs about 2 µs a process, most of a rescan on a host of a
// thousand processes, so Refresh lists only every fullEvery-th call, or when
// it cannot know what is new. The last PID of /proc/loadavg says which PIDs
// were allocated since the last call: PIDs are handed out in increasing
// order, so the new processes are those between the last PID then and now.
// When none was allocated, Refresh re-reads the young and AlwaysRead
// processes of its table; when a few were, it reads those PIDs (skipping
// threads, which /proc opens but does not list, and reading once more next
// time those not yet visible: a PID is allocated before its process shows)
// and re-reads the table as a listing would. It lists when the last PID is
// unknown, went back (PIDs wrapped around), or moved further than reading
// each new PID is worth; a wrap-around all the way back past the last PID
// within one call, more PIDs than pid_max allocated between two calls, is
// caught by the next listing.
func (p *ProcFS) Refresh(visit func(pid int, comm []byte)) error {
	dirfd, err := syscall.Open(p.root, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("procfs at %s: %w", p.root, err)
	}
	defer syscall.Close(dirfd)
	p.gen++
	p.now = p.uptime()
	last, lastOK := p.lastPID()
	if lastOK && p.gen%fullEvery != 0 && len(p.procs) > 0 && last >= p.seenLast &&
		last-p.seenLast <= uint64(max(minAllocatedRead, len(p.procs)/2)) {
		p.readAllocated(dirfd, p.seenLast, last, visit)
		p.refreshKnown(dirfd, visit, last != p.seenLast)
		p.seenLast = last
		return nil
	}
	if lastOK {
		p.seenLast = last
	}
	p.pending = p.pending[:0]
	p.listings++
	for {
		n, err := syscall.Getdents(dirfd, p.dents)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("procfs at %s: read directory: %w", p.root, err)
		}
		if n <= 0 {
			break
		}
		for off := 0; off+19 <= n; {
			// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
			ino := *(*uint64)(unsafe.Pointer(&p.dents[off]))
			reclen := int(*(*uint16)(unsafe.Pointer(&p.dents[off+16])))
			if reclen < 19 || off+reclen > n {
				break
			}
			name := p.dents[off+19 : off+reclen]
			if i := indexNUL(name); i >= 0 {
				name = name[:i]
			}
			off += reclen
			pid, ok := procfs.ParsePID(name)
			if !ok || pid <= 0 {
				continue
			}
			if e := p.procs[pid]; e != nil && ino != 0 && e.ino == ino && !p.mustRead(pid, e) {
				p.keep(pid, e, visit)
				continue
			}
			p.refreshOne(dirfd, pid, ino, visit)
		}
	}
	p.prune()
	return nil
}

// minAllocatedRead is how many new PIDs Refresh reads one by one rather than
// listing /proc, at least (half the table, on a larger host).
const minAllocatedRead = 64

// readAllocated reads the processes of the PIDs allocated after from up to
// to, and again those of the last call that had not shown yet.
func (p *ProcFS) readAllocated(dirfd int, from, to uint64, visit func(pid int, comm []byte)) {
	p.retry, p.pending = p.pending, p.retry[:0]
	for _, pid := range p.retry {
		p.readNew(dirfd, pid, false, visit)
	}
	for pid := from + 1; pid <= to; pid++ {
		p.readNew(dirfd, int(pid), true, visit)
	}
}

// readNew reads a process whose PID was allocated since the last call:
// whatever had the PID before is gone. Without a process it is read again
// next call if again.
func (p *ProcFS) readNew(dirfd, pid int, again bool, visit func(pid int, comm []byte)) {
	if e := p.procs[pid]; e != nil && e.gen != p.gen {
		delete(p.procs, pid)
	}
	if !p.refreshOne(dirfd, pid, 0, visit) && again {
		p.pending = append(p.pending, pid)
	}
}

// refreshKnown is a Refresh without a listing: the table's young and
// AlwaysRead processes are re-read (dropped when gone), and with stagger the
// others due as a listing would re-read them; the rest are visited as they
// are. Processes read this Refresh already are skipped.
func (p *ProcFS) refreshKnown(dirfd int, visit func(pid int, comm []byte), stagger bool) {
	for pid, e := range p.procs {
		switch {
		case e.gen == p.gen:
		case p.watched(e) || stagger && p.due(pid):
			p.refreshOne(dirfd, pid, e.ino, visit)
		default:
			p.keep(pid, e, visit)
		}
	}
	p.prune()
}

// prune drops the processes this Refresh did not see.
func (p *ProcFS) prune() {
	for pid, e := range p.procs {
		if e.gen != p.gen {
			delete(p.procs, pid)
		}
	}
}

// newLastPID returns a reader of the last allocated PID from /proc/loadavg.
// loadavg shows the PID namespace of the process reading it, not of the
// procfs mount, so it speaks for root only when root is a procfs of the
// reader's own PID namespace (agentd on the host reading the host's /proc):
// then root/self names the reader's own PID. Otherwise the returned function
// always reports false.
func newLastPID(root string) func() (uint64, bool) {
	self, err := os.Readlink(filepath.Join(root, "self"))
	if err != nil || self != strconv.Itoa(os.Getpid()) {
		return func() (uint64, bool) { return 0, false }
	}
	var buf [128]byte
	file := filepath.Join(root, "loadavg")
	return func() (uint64, bool) {
		fd, err := syscall.Open(file, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			return 0, false
		}
		defer syscall.Close(fd)
		n, err := syscall.Read(fd, buf[:])
		if err != nil || n == 0 {
			return 0, false
		}
		return procfs.ParseLoadavgLastPID(buf[:n])
	}
}

// bootTicks is CLOCK_BOOTTIME in clock ticks, the clock of starttime in
// /proc/PID/stat; 0 (every process old) if it cannot be read.
func bootTicks() uint64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return uint64(ts.Sec)*100 + uint64(ts.Nsec)/10_000_000
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// mustRead reports whether an unchanged process is due for a re-read.
func (p *ProcFS) mustRead(pid int, e *procEntry) bool { return p.watched(e) || p.due(pid) }

// watched reports whether e is re-read at every Refresh: young, or named by
// AlwaysRead.
func (p *ProcFS) watched(e *procEntry) bool { return p.now-e.start < youngTicks || p.always[e.comm] }

// due reports whether this Refresh is the one in fullEvery that re-reads pid.
func (p *ProcFS) due(pid int) bool { return (uint32(pid)+p.gen)%fullEvery == 0 }

// keep carries a process that is not re-read into this Refresh and visits it.
func (p *ProcFS) keep(pid int, e *procEntry, visit func(pid int, comm []byte)) {
	e.gen = p.gen
	if visit != nil {
		visit(pid, unsafe.Slice(unsafe.StringData(e.comm), len(e.comm)))
	}
}

// refreshOne reads one process's stat relative to the procfs directory fd.
// It reports false when there is no such process (a thread is none).
func (p *ProcFS) refreshOne(dirfd, pid int, ino uint64, visit func(pid int, comm []byte)) bool {
	p.path = strconv.AppendInt(p.path[:0], int64(pid), 10)
	p.path = append(p.path, "/stat\x00"...)
	b, ok := p.readAt(dirfd)
	if !ok {
		return false
	}
	f, err := procfs.ParseStat(b)
	if err != nil || f.PID != pid {
		return false
	}
	if f.Thread {
		return true // a thread: there is no process to wait for
	}
	e := p.procs[pid]
	if e == nil || e.start != f.StartTime {
		e = &procEntry{start: f.StartTime, comm: string(f.Comm)}
		p.procs[pid] = e
	} else if string(f.Comm) != e.comm {
		e.comm = string(f.Comm)
		e.detail = nil
	}
	e.ppid = f.PPID
	e.gen = p.gen
	e.ino = ino
	if e.detail != nil {
		e.detail.PPID = f.PPID
	}
	if visit != nil {
		visit(pid, f.Comm)
	}
	return true
}

// readAt reads the NUL-terminated path in p.path relative to dirfd into p.buf
// with raw system calls, so the hot path does not allocate.
func (p *ProcFS) readAt(dirfd int) ([]byte, bool) {
	r, _, errno := syscall.Syscall6(syscall.SYS_OPENAT, uintptr(dirfd),
		uintptr(unsafe.Pointer(&p.path[0])), uintptr(syscall.O_RDONLY|syscall.O_CLOEXEC), 0, 0, 0)
	if errno != 0 {
		return nil, false
	}
	fd := int(r)
	defer syscall.Close(fd)
	b, err := procfs.ReadFD(fd, &p.buf)
	return b, err == nil
}

// Lookup returns the cheap fields of a process in the table: PPID, comm and
// start time. ok is false for a process the last Refresh did not see.
func (p *ProcFS) Lookup(pid int) (ppid int, comm string, start uint64, ok bool) {
	e := p.procs[pid]
	if e == nil {
		return 0, "", 0, false
	}
	return e.ppid, e.comm, e.start, true
}

// Len is the number of processes in the table.
func (p *ProcFS) Len() int { return len(p.procs) }

// Process returns the full record of a process in the table, reading cmdline,
// status (NSpid), ns/pid, ns/mnt and cgroup on first use and caching them for
// that process. The error wraps ErrVanished when the process is gone.
func (p *ProcFS) Process(pid int) (*Process, error) {
	e := p.procs[pid]
	if e == nil {
		return nil, fmt.Errorf("process %d: %w", pid, ErrVanished)
	}
	if e.detail != nil {
		return e.detail, nil
	}
	d, err := p.readDetail(pid)
	if err != nil {
		return nil, err
	}
	d.PPID, d.Comm, d.StartTime = e.ppid, e.comm, e.start
	e.detail = d
	return d, nil
}

func (p *ProcFS) readDetail(pid int) (*Process, error) {
	dir := filepath.Join(p.root, strconv.Itoa(pid))
	d := &Process{PID: pid}
	cmdline, err := p.readFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	d.Cmdline = procfs.ParseCmdline(cmdline)
	status, err := p.readFile(filepath.Join(dir, "status"))
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	if d.NSpid, err = procfs.ParseNSpid(nil, status); err != nil {
		return nil, fmt.Errorf("process %d: status: %w", pid, err)
	}
	if cg, err := p.readFile(filepath.Join(dir, "cgroup")); err == nil {
		d.Cgroup = cgroupPath(cg)
	} else if errors.Is(err, ErrVanished) {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	// Namespace links are unreadable without ptrace access and absent on old
	// kernels; 0 then means unknown.
	if l, err := os.Readlink(filepath.Join(dir, "ns", "pid")); err == nil {
		d.PIDNS, _ = procfs.ParseNSInode(l)
	}
	if l, err := os.Readlink(filepath.Join(dir, "ns", "mnt")); err == nil {
		d.MntNS, _ = procfs.ParseNSInode(l)
	}
	return d, nil
}

// OldestIn returns the oldest process of the table in mount namespace ns (the
// earliest start, then the lowest PID): a container's init for the namespace
// of a container's processes, also those a `docker exec` started, which are
// not its descendants. ok is false when no process of the table is known to
// be in ns. The first call after a Refresh reads the mount namespace of
// every process (one readlink each); later ones use what it found.
func (p *ProcFS) OldestIn(ns uint64) (pid int, ok bool) {
	if ns == 0 {
		return 0, false
	}
	if p.oldest == nil || p.oldestGen != p.gen {
		clear(p.oldest)
		if p.oldest == nil {
			p.oldest = make(map[uint64]int)
		}
		p.oldestGen = p.gen
		for pid, e := range p.procs {
			l, err := os.Readlink(filepath.Join(p.root, strconv.Itoa(pid), "ns", "mnt"))
			if err != nil {
				continue // gone, or unreadable: not known to be in any
			}
			ino, err := procfs.ParseNSInode(l)
			if err != nil || ino == 0 {
				continue
			}
			if o, seen := p.oldest[ino]; !seen || e.start < p.procs[o].start || e.start == p.procs[o].start && pid < o {
				p.oldest[ino] = pid
			}
		}
	}
	pid, ok = p.oldest[ns]
	return pid, ok
}

// readFile reads a small /proc file; a vanished process yields ErrVanished.
func (p *ProcFS) readFile(name string) ([]byte, error) {
	f, err := p.open(name)
	if err != nil {
		return nil, vanished(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, vanished(err)
	}
	return b, nil
}

// vanished wraps ErrVanished around errors that mean the process is gone.
func vanished(err error) error {
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("%w: %w", ErrVanished, err)
	}
	return err
}
