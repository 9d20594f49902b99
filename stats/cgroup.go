package stats

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// ErrCgroupOutsideNamespace is wrapped by Locate when /proc/<pid>/cgroup shows
// a path starting with "/..": the container's cgroup lies outside the cgroup
// namespace agentd runs in, so it cannot be reached under the cgroupfs root.
var ErrCgroupOutsideNamespace = errors.New("cgroup outside the reader's cgroup namespace")

// ErrNoCgroup is wrapped by Locate when none of the controllers agentd reads
// has a directory under the cgroupfs root.
var ErrNoCgroup = errors.New("no readable cgroup")

// Cgroup is where one container's cgroup files are. Build it with
// Reader.Locate; the zero value reads nothing. Reading keeps the files open
// (see Reader): call Reader.Release before dropping a Cgroup that was read,
// and do not copy one after its first Read.
type Cgroup struct {
	// Version is 1 or 2.
	Version int
	// Dirs of the controllers; "" when the controller is not found. For v2 all
	// of them are the one unified directory.
	CPU, Memory, IO, Pids string

	// cfs is the v1 cpu controller's directory (CFS bandwidth: throttling),
	// "" on v2. A file's path is its directory (see dir) and its name
	// (cgroupFiles), joined only to open it: kept as paths, the files of a
	// container were 1.3 KB of agentd's heap.
	cfs string
	// absent has bit i set for file i once a read found that the kernel does
	// not have it (cpu.stat of the cpu controller, memory.events, pressure
	// files), so it costs no syscall after.
	absent uint32

	// Files whose content changes only on rare events are read at the
	// first read, at every rareEvery-th read after it (phase spreads those
	// reads over the rounds), and when a signal says they changed; the
	// other reads reuse the values kept here. See Reader.Read.
	reads, phase uint32
	// OOM kills: the KillWatch's count when memEvents was last read.
	oomSeen  uint64
	oomKills uint64
	oomOK    bool
	// v1 CFS bandwidth: whether the cpu controller's cpu.stat has counted
	// periods of a quota, and its throttling counters of the last read.
	quota                                  bool
	periods, throttledPeriods, throttledNs uint64
	throttleOK                             bool
	// v2 memory.max of the last read.
	limit   uint64
	limitOK bool

	// The process's net/dev and whether it is in the host's network
	// namespace, decided at the first read (a process keeps its namespace).
	memLimitInStat bool // v1 memory.stat has hierarchical_memory_limit

	netPID   int
	netDev   string
	netKnown bool
	netHost  bool

	fds [numFiles]int32 // open files, fd+1; 0 is closed
}

// Reader reads cgroup and procfs files under configurable roots. It keeps the
// files of each Cgroup it reads open, up to a budget of open files shared by
// all (DefaultMaxOpenFiles, see SetMaxOpenFiles), and re-reads them from
// offset 0: a steady container costs one pread per file and round instead of
// open, read and close. Past the budget, files are opened and closed at every
// read. Each open file also holds a page of kernel memory while it is open
// (its seq_file buffer). A Reader is safe for concurrent use; one Cgroup is
// read by one goroutine at a time.
type Reader struct {
	procRoot   string
	cgroupRoot string
	unified    string // the cgroup v2 mount: cgroupRoot, or cgroupRoot/unified on a hybrid host
	hostNetNS  string
	sysRoot    string // "" when unknown: devices are named MAJ:MIN

	open    atomic.Int64 // files kept open now
	maxOpen int64
	kills   KillWatch // nil: OOM kill counters read every time

	devMu    sync.Mutex
	devNames map[uint64]string // MAJ<<32|MIN to name, see deviceName
}

// SetSysRoot sets where sysfs is, for the names of block devices
// (/sys/dev/block/MAJ:MIN/uevent); "" names them MAJ:MIN. NewReader derives
// it from a cgroup root ending in fs/cgroup ("/sys/fs/cgroup" gives "/sys").
// Call it before the first Read.
func (r *Reader) SetSysRoot(dir string) { r.sysRoot = dir }

// KillWatch tells a Reader when the kernel has OOM-killed a process, so
// that it reads the OOM kill counters of cgroups only then.
type KillWatch interface {
	// KillsSeen returns a count that changes whenever an OOM kill is seen
	// (or kernel log records were lost), and whether the kernel log is
	// being read at all: without it, the counters are read every time.
	KillsSeen() (count uint64, watching bool)
}

// SetKillWatch makes r read OOM kill counters only when w has seen a kill
// (and at least every rareEvery-th read); nil reads them every time. Call it
// before the first Read.
func (r *Reader) SetKillWatch(w KillWatch) { r.kills = w }

// SetMaxOpenFiles sets how many files the Reader may keep open (0: none, every
// read opens and closes), at most half the process's limit of open files
// (RLIMIT_NOFILE). It applies to files opened from now on; call it before the
// first Read.
func (r *Reader) SetMaxOpenFiles(n int) { r.maxOpen = openFilesCap(int64(max(n, 0))) }

// MaxOpenFiles is how many files the Reader may keep open.
func (r *Reader) MaxOpenFiles() int { return int(r.maxOpen) }

// Exited reports whether process pid is gone from procfs.
func (r *Reader) Exited(pid int) bool {
	_, err := os.Stat(r.procRoot + "/" + strconv.Itoa(pid))
	return errors.Is(err, fs.ErrNotExist)
}

// NewReader returns a Reader of procfs at procRoot and cgroupfs at cgroupRoot
// ("" means /proc and /sys/fs/cgroup).
func NewReader(procRoot, cgroupRoot string) *Reader {
	if procRoot == "" {
		procRoot = "/proc"
	}
	if cgroupRoot == "" {
		cgroupRoot = "/sys/fs/cgroup"
	}
	r := &Reader{procRoot: procRoot, cgroupRoot: cgroupRoot, unified: cgroupRoot, maxOpen: openFilesCap(DefaultMaxOpenFiles)}
	if clean := filepath.Clean(cgroupRoot); filepath.Base(clean) == "cgroup" && filepath.Base(filepath.Dir(clean)) == "fs" {
		r.sysRoot = filepath.Dir(filepath.Dir(clean))
	}
	if _, err := os.Stat(filepath.Join(cgroupRoot, "cgroup.controllers")); err != nil {
		if _, err := os.Stat(filepath.Join(cgroupRoot, "unified", "cgroup.controllers")); err == nil {
			r.unified = filepath.Join(cgroupRoot, "unified")
		}
	}
	// The host's network namespace, to recognise host-network containers. PID 1
	// may be unreadable in a sandbox; the reader's own namespace is the next
	// best guess for an agent running on the host.
	if ns, err := os.Readlink(filepath.Join(procRoot, "1", "ns", "net")); err == nil {
		r.hostNetNS = ns
	} else if ns, err := os.Readlink(filepath.Join(procRoot, "self", "ns", "net")); err == nil {
		r.hostNetNS = ns
	}
	return r
}

// v1 controller names agentd reads, by what they give.
const (
	ctrlCPU    = "cpuacct"
	ctrlCFS    = "cpu" // CFS bandwidth: throttling
	ctrlMemory = "memory"
	ctrlIO     = "blkio"
	ctrlPids   = "pids"
)

// Locate finds the cgroup of container id, whose process pid (in the host
// PID namespace) is read from /proc/<pid>/cgroup. The process may have moved
// into a cgroup below the container's own: systemd as a container's PID 1
// moves itself to init.scope, and the container's other processes live in
// its sibling slices. So the path is cut back to the deepest part that names
// the container (see ownCgroup); a path that names no part of it is taken as
// it is. It returns an error wrapping fs.ErrNotExist when the process is
// gone, ErrMalformed for a bad file, ErrCgroupOutsideNamespace, or
// ErrNoCgroup when no controller directory exists under the cgroupfs root.
func (r *Reader) Locate(pid int, id string) (Cgroup, error) {
	file := filepath.Join(r.procRoot, strconv.Itoa(pid), "cgroup")
	data, err := os.ReadFile(file)
	if err != nil {
		return Cgroup{}, err
	}
	lines, err := parseProcCgroup(file, data)
	if err != nil {
		return Cgroup{}, err
	}
	var cg Cgroup
	var v2path string
	hasV1 := false
	for _, l := range lines {
		l.Path = ownCgroup(l.Path, id)
		if l.Controllers == "" {
			v2path = l.Path
			continue
		}
		for _, c := range strings.Split(l.Controllers, ",") {
			var dst *string
			switch c {
			case ctrlCPU:
				dst = &cg.CPU
			case ctrlCFS:
				dst = &cg.cfs
			case ctrlMemory:
				dst = &cg.Memory
			case ctrlIO:
				dst = &cg.IO
			case ctrlPids:
				dst = &cg.Pids
			default:
				continue
			}
			hasV1 = true
			if strings.HasPrefix(l.Path, "/..") {
				return Cgroup{}, fmt.Errorf("%s: %s: %w", file, l.Path, ErrCgroupOutsideNamespace)
			}
			*dst = r.v1Dir(l.Controllers, c, l.Path)
		}
	}
	if hasV1 {
		cg.Version = 1
		if cg.CPU == "" && cg.Memory == "" && cg.IO == "" && cg.Pids == "" {
			return Cgroup{}, fmt.Errorf("%s: cgroup v1 under %s: %w", file, r.cgroupRoot, ErrNoCgroup)
		}
		// A hybrid host has the cgroup v2 hierarchy too, controllerless but
		// with pressure files for every cgroup. They are not read: three
		// files more per container and round, 13 % of agentd's CPU at 1,000
		// containers on such a host, for figures cAdvisor and runc give only
		// on cgroup v2 as well (see telemetry/METRICS.md).
		cg.phase = phaseOf(cg.Memory + cg.CPU)
		return cg, nil
	}
	if v2path == "" {
		return Cgroup{}, fmt.Errorf("%s: %w", file, ErrNoCgroup)
	}
	if strings.HasPrefix(v2path, "/..") {
		return Cgroup{}, fmt.Errorf("%s: %s: %w", file, v2path, ErrCgroupOutsideNamespace)
	}
	dir := filepath.Join(r.unified, v2path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return Cgroup{}, fmt.Errorf("%s: cgroup v2 directory %s: %w", file, dir, ErrNoCgroup)
	}
	cg = Cgroup{Version: 2, CPU: dir, Memory: dir, IO: dir, Pids: dir}
	cg.phase = phaseOf(dir)
	return cg, nil
}

// rareEvery is how often (in reads of a Cgroup) the files whose content
// changes only on rare events are read without a signal that they changed:
// a minute at the default 10 s export interval.
const rareEvery = 6

// phaseOf spreads the rare reads of containers located at the same time
// over rareEvery rounds.
func phaseOf(dir string) uint32 {
	h := uint32(2166136261) // FNV-1a
	for i := 0; i < len(dir); i++ {
		h = (h ^ uint32(dir[i])) * 16777619
	}
	return h % rareEvery
}

// rare reports whether this read of cg reads the files of rare changes.
func (cg *Cgroup) rare() bool {
	return cg.reads == 0 || (cg.reads+cg.phase)%rareEvery == 0
}

// cgroupFiles names the files of each cgroup version by file number; "" is
// a file the version does not have. v1 has pressure files only in the v2
// hierarchy of a hybrid host, which Locate does not read (see there).
var cgroupFiles = [...][numFiles]string{
	1: {
		fileCPUUsage:    "cpuacct.usage",
		fileCPUStat:     "cpuacct.stat",
		fileMemUsage:    "memory.usage_in_bytes",
		fileMemStat:     "memory.stat",
		fileMemLimit:    "memory.limit_in_bytes",
		fileIO:          "blkio.throttle.io_service_bytes",
		filePids:        "pids.current",
		fileCPUThrottle: "cpu.stat",
		fileMemEvents:   "memory.oom_control",
	},
	2: {
		fileCPUStat:                   "cpu.stat",
		fileMemUsage:                  "memory.current",
		fileMemStat:                   "memory.stat",
		fileMemLimit:                  "memory.max",
		fileIO:                        "io.stat",
		filePids:                      "pids.current",
		fileMemEvents:                 "memory.events",
		filePressure + PressureCPU:    "cpu.pressure",
		filePressure + PressureMemory: "memory.pressure",
		filePressure + PressureIO:     "io.pressure",
	},
}

// name is the name of cgroup file i in its directory, "" when cg's version
// has no such file.
func (cg *Cgroup) name(i int) string {
	if cg.Version < 1 || cg.Version >= len(cgroupFiles) {
		return ""
	}
	return cgroupFiles[cg.Version][i]
}

// dir is the directory of cgroup file i: its controller's.
func (cg *Cgroup) dir(i int) string {
	switch i {
	case fileCPUUsage, fileCPUStat:
		return cg.CPU
	case fileCPUThrottle:
		return cg.cfs
	case fileIO:
		return cg.IO
	case filePids:
		return cg.Pids
	case fileMemUsage, fileMemStat, fileMemLimit, fileMemEvents:
		return cg.Memory
	}
	if i >= filePressure && i < filePressure+numPressure {
		return cg.Memory // v2's one directory (name has none on v1)
	}
	return ""
}

// has reports whether cgroup file i is to be read: cg's version has it, its
// controller was found and no read found it missing.
func (cg *Cgroup) has(i int) bool {
	return cg.absent&(1<<i) == 0 && cg.name(i) != "" && cg.dir(i) != ""
}

// path is the path of cgroup file i, "" when it has none.
func (cg *Cgroup) path(i int) string {
	if !cg.has(i) {
		return ""
	}
	return cg.dir(i) + "/" + cg.name(i)
}

// fileErr names cgroup file i by its path in err, an error of a parser given
// the file's name alone (so that no read allocates its path).
func (cg *Cgroup) fileErr(i int, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s/%w", cg.dir(i), err)
}

// ownCgroup cuts path back to the container's own cgroup: the deepest part
// equal to id or, failing that, the deepest part holding id between
// separators, as engines name their cgroups ("/docker/<id>",
// "docker-<id>.scope", "libpod-<id>.scope", "cri-containerd-<id>.scope",
// "crio-<id>.scope", "/kubepods/.../<id>"). A nested container's deeper part
// is found first, so its outer container's part is never taken for it.
func ownCgroup(path, id string) string {
	if id == "" {
		return path
	}
	parts := strings.Split(path, "/")
	cut := -1
	for i := len(parts) - 1; i >= 0 && cut < 0; i-- {
		if parts[i] == id {
			cut = i
		}
	}
	for i := len(parts) - 1; i >= 0 && cut < 0; i-- {
		if namesID(parts[i], id) {
			cut = i
		}
	}
	if cut < 0 || cut == len(parts)-1 {
		return path
	}
	return strings.Join(parts[:cut+1], "/")
}

// namesID reports whether id occurs in part with a separator (not a letter
// or digit) or the end of part on each side.
func namesID(part, id string) bool {
	for off := 0; ; {
		i := strings.Index(part[off:], id)
		if i < 0 {
			return false
		}
		i += off
		end := i + len(id)
		if (i == 0 || !alnum(part[i-1])) && (end == len(part) || !alnum(part[end])) {
			return true
		}
		off = i + 1
	}
}

func alnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// v1Dir finds the directory of controller c whose hierarchy line lists
// controllers: the mount may be named after the whole list ("cpu,cpuacct") or
// after the controller alone (with the other names as symlinks, or separate
// mounts as on this project's testbed). It returns "" when neither exists.
func (r *Reader) v1Dir(controllers, c, path string) string {
	for _, mount := range []string{controllers, c} {
		dir := filepath.Join(r.cgroupRoot, mount, path)
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
		if mount == c {
			break
		}
	}
	return ""
}

// Read fills s from the files of cg and the network namespace of pid. buf is
// a scratch buffer reused across calls (grown as needed). A missing file
// leaves its fields unset (s.Has tells what was read); a file that cannot be
// parsed is an error naming it, joined with the others, and the rest is still
// read. Read does not set s.Time, s.Source or s.CPUUsage.
//
// Files whose content changes only on rare events are not read every time:
// the OOM kill counter (v1 memory.oom_control, v2 memory.events) is read
// when the Reader's KillWatch has seen a kill since the last read (every
// time without a watch that is reading the kernel log), v2 memory.max every
// rareEvery-th read, and v1's throttling counters (cpu.stat of the cpu
// controller) every time only once they have counted periods of a quota:
// without one they do not move. Every one of them
// is also read at the first read and every rareEvery-th read after it, so a
// value is never older than that many rounds. The other reads report the
// values of the last read.
func (r *Reader) Read(cg *Cgroup, pid int, s *Stats, buf *[]byte) error {
	defer func() { cg.reads++ }()
	var errs []error
	keep := func(err error) {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	switch cg.Version {
	case 1:
		keep(r.readV1(cg, s, buf))
	case 2:
		keep(r.readV2(cg, s, buf))
	}
	keep(r.readPressure(cg, s, buf))
	if pid > 0 {
		keep(r.readNet(cg, pid, s, buf))
	}
	return errors.Join(errs...)
}

func (r *Reader) readV1(cg *Cgroup, s *Stats, buf *[]byte) error {
	var errs []error
	keep := func(err error) bool {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		return err == nil
	}
	if cg.has(fileCPUUsage) {
		if data, err := r.readCgroup(cg, fileCPUUsage, buf); keep(err) {
			v, err := parseSingle(cg.name(fileCPUUsage), data)
			if keep(cg.fileErr(fileCPUUsage, err)) {
				s.CPUTotalNanos = v
				s.Has |= FieldCPUTotal
			}
		}
		if data, err := r.readCgroup(cg, fileCPUStat, buf); keep(err) {
			var user, system uint64
			var seen int
			err := keyed(cg.name(fileCPUStat), data, func(k []byte, v uint64) {
				switch string(k) {
				case "user":
					user, seen = v, seen|1
				case "system":
					system, seen = v, seen|2
				}
			})
			if keep(cg.fileErr(fileCPUStat, err)) && seen == 3 {
				s.CPUUserNanos = user * (1e9 / userHZ)
				s.CPUSystemNanos = system * (1e9 / userHZ)
				s.Has |= FieldCPUModes
			}
		}
	}
	r.readThrottlingV1(cg, s, buf, keep)
	if cg.has(fileMemUsage) {
		if data, err := r.readCgroup(cg, fileMemUsage, buf); keep(err) {
			v, err := parseSingle(cg.name(fileMemUsage), data)
			if keep(cg.fileErr(fileMemUsage, err)) {
				s.MemoryUsage = v
				s.Has |= FieldMemoryUsage
			}
		}
		if data, err := r.readCgroup(cg, fileMemStat, buf); keep(err) {
			var rss, totalRSS, inactive, limit, pgfault, pgmaj, totalPgfault, totalPgmaj uint64
			var seen int
			err := keyed(cg.name(fileMemStat), data, func(k []byte, v uint64) {
				switch string(k) {
				case "rss":
					rss, seen = v, seen|1
				case "total_rss":
					totalRSS, seen = v, seen|2
				case "total_inactive_file":
					inactive, seen = v, seen|4
				case "hierarchical_memory_limit":
					limit, seen = v, seen|8
				case "pgfault":
					pgfault, seen = v, seen|16
				case "pgmajfault":
					pgmaj, seen = v, seen|32
				case "total_pgfault":
					totalPgfault, seen = v, seen|64
				case "total_pgmajfault":
					totalPgmaj, seen = v, seen|128
				}
			})
			if keep(cg.fileErr(fileMemStat, err)) {
				switch {
				case seen&2 != 0: // hierarchical, includes child cgroups
					s.MemoryRSS = totalRSS
					s.Has |= FieldMemoryRSS
				case seen&1 != 0:
					s.MemoryRSS = rss
					s.Has |= FieldMemoryRSS
				}
				switch {
				case seen&192 == 192: // hierarchical, includes child cgroups
					s.setFaults(totalPgfault, totalPgmaj)
				case seen&48 == 48:
					s.setFaults(pgfault, pgmaj)
				}
				if seen&4 != 0 && s.Has&FieldMemoryUsage != 0 {
					s.MemoryWorkingSet = Sub0(s.MemoryUsage, inactive)
					s.Has |= FieldMemoryWorkingSet
				}
				// The limit in force, this cgroup's or a lower one of an
				// ancestor's (a pod's), saves reading memory.limit_in_bytes.
				if seen&8 != 0 {
					if limit < UnlimitedThreshold {
						s.MemoryLimit = limit
						s.Has |= FieldMemoryLimit
					}
					cg.memLimitInStat = true
				}
			}
		}
		if cg.has(fileMemEvents) {
			r.readOOMKills(cg, s, buf, keep)
		}
		if !cg.memLimitInStat {
			if data, err := r.readCgroup(cg, fileMemLimit, buf); keep(err) {
				v, err := parseSingle(cg.name(fileMemLimit), data)
				if keep(cg.fileErr(fileMemLimit, err)) && v < UnlimitedThreshold {
					s.MemoryLimit = v
					s.Has |= FieldMemoryLimit
				}
			}
		}
	}
	if cg.has(fileIO) {
		if data, err := r.readCgroup(cg, fileIO, buf); keep(err) {
			disks := s.Disks[:0]
			err := parseBlkio(cg.name(fileIO), data, func(major, minor uint32, rd, wr uint64) {
				disks = r.addDisk(disks, major, minor, rd, wr)
			})
			if keep(cg.fileErr(fileIO, err)) {
				s.setDisks(disks)
			}
		}
	}
	if cg.has(filePids) {
		r.readPids(cg, s, buf, keep)
	}
	return errors.Join(errs...)
}

func (r *Reader) readV2(cg *Cgroup, s *Stats, buf *[]byte) error {
	var errs []error
	keep := func(err error) bool {
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
		return err == nil
	}
	if data, err := r.readCgroup(cg, fileCPUStat, buf); keep(err) {
		var usage, user, system, periods, throttled, throttledUsec uint64
		var seen int
		err := keyed(cg.name(fileCPUStat), data, func(k []byte, v uint64) {
			switch string(k) {
			case "usage_usec":
				usage, seen = v, seen|1
			case "user_usec":
				user, seen = v, seen|2
			case "system_usec":
				system, seen = v, seen|4
			case "nr_periods":
				periods, seen = v, seen|8
			case "nr_throttled":
				throttled, seen = v, seen|16
			case "throttled_usec":
				throttledUsec, seen = v, seen|32
			}
		})
		if keep(cg.fileErr(fileCPUStat, err)) {
			if seen&56 == 56 && periods > 0 {
				s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledNanos = periods, throttled, throttledUsec*1000
				s.Has |= FieldCPUThrottling
			}
			if seen&1 != 0 {
				s.CPUTotalNanos = usage * 1000
				s.Has |= FieldCPUTotal
			}
			if seen&6 == 6 {
				s.CPUUserNanos, s.CPUSystemNanos = user*1000, system*1000
				s.Has |= FieldCPUModes
			}
		}
	}
	if data, err := r.readCgroup(cg, fileMemUsage, buf); keep(err) {
		v, err := parseSingle(cg.name(fileMemUsage), data)
		if keep(cg.fileErr(fileMemUsage, err)) {
			s.MemoryUsage = v
			s.Has |= FieldMemoryUsage
		}
	}
	if data, err := r.readCgroup(cg, fileMemStat, buf); keep(err) {
		var anon, inactive, pgfault, pgmaj uint64
		var seen int
		err := keyed(cg.name(fileMemStat), data, func(k []byte, v uint64) {
			switch string(k) {
			case "anon":
				anon, seen = v, seen|1
			case "inactive_file":
				inactive, seen = v, seen|2
			case "pgfault":
				pgfault, seen = v, seen|4
			case "pgmajfault":
				pgmaj, seen = v, seen|8
			}
		})
		if keep(cg.fileErr(fileMemStat, err)) {
			if seen&12 == 12 {
				s.setFaults(pgfault, pgmaj)
			}
			if seen&1 != 0 {
				s.MemoryRSS = anon
				s.Has |= FieldMemoryRSS
			}
			if seen&2 != 0 && s.Has&FieldMemoryUsage != 0 {
				s.MemoryWorkingSet = Sub0(s.MemoryUsage, inactive)
				s.Has |= FieldMemoryWorkingSet
			}
		}
	}
	if cg.rare() {
		cg.limitOK = false
		if data, err := r.readCgroup(cg, fileMemLimit, buf); keep(err) {
			v, unlimited, err := parseMax(cg.name(fileMemLimit), data)
			if keep(cg.fileErr(fileMemLimit, err)) && !unlimited {
				cg.limit, cg.limitOK = v, true
			}
		}
		r.closeFile(cg, fileMemLimit) // read once a minute: not worth a page of kernel memory
	}
	if cg.limitOK {
		s.MemoryLimit = cg.limit
		s.Has |= FieldMemoryLimit
	}
	if cg.has(fileMemEvents) {
		r.readOOMKills(cg, s, buf, keep)
	}
	if data, err := r.readCgroup(cg, fileIO, buf); keep(err) {
		disks := s.Disks[:0]
		err := parseIOStat(cg.name(fileIO), data, func(major, minor uint32, rd, wr uint64) {
			disks = r.addDisk(disks, major, minor, rd, wr)
		})
		if keep(cg.fileErr(fileIO, err)) {
			s.setDisks(disks)
		}
	}
	r.readPids(cg, s, buf, keep)
	return errors.Join(errs...)
}

func (r *Reader) readPids(cg *Cgroup, s *Stats, buf *[]byte, keep func(error) bool) {
	if data, err := r.readCgroup(cg, filePids, buf); keep(err) {
		v, err := parseSingle(cg.name(filePids), data)
		if keep(cg.fileErr(filePids, err)) {
			s.Pids = v
			s.Has |= FieldPids
		}
	}
}

// readOOMKills reads oom_kill of v2 memory.events or v1 memory.oom_control
// (which has it from Linux 4.13).
//
// It reads the file only when the KillWatch has seen a kill since the last
// read, or on a rare read; otherwise the count of the last read stands.
func (r *Reader) readOOMKills(cg *Cgroup, s *Stats, buf *[]byte, keep func(error) bool) {
	seen, watching := uint64(0), false
	if r.kills != nil {
		seen, watching = r.kills.KillsSeen()
	}
	if watching && !cg.rare() && seen == cg.oomSeen {
		if cg.oomOK {
			s.OOMKills = cg.oomKills
			s.Has |= FieldOOMKills
		}
		return
	}
	// The count is taken before the read: a kill seen during it makes the
	// next read read again.
	cg.oomSeen, cg.oomOK = seen, false
	data, err := r.readOptional(cg, fileMemEvents, buf)
	if watching {
		r.closeFile(cg, fileMemEvents) // read rarely: not worth a page of kernel memory
	}
	if !keep(err) || data == nil {
		return
	}
	var n uint64
	found := false
	err = keyed(cg.name(fileMemEvents), data, func(k []byte, v uint64) {
		if string(k) == "oom_kill" {
			n, found = v, true
		}
	})
	if keep(cg.fileErr(fileMemEvents, err)) && found {
		cg.oomKills, cg.oomOK = n, true
		s.OOMKills = n
		s.Has |= FieldOOMKills
	}
}

// readThrottlingV1 reads the v1 cpu controller's throttling counters, its
// cpu.stat. They move only while the cgroup runs under a CFS quota, and
// nr_periods counts the quota's periods in which it ran: so cpu.stat is read
// on rare reads until it shows a period, and at every read from then on, kept
// open (a container that ran under a quota is taken to keep it). Of a quota
// set later, the counters show within rareEvery reads, whole since they are
// cumulative. Reading cpu.cfs_quota_us instead cost an open, a read and a
// close a minute for every container, for the same answer.
func (r *Reader) readThrottlingV1(cg *Cgroup, s *Stats, buf *[]byte, keep func(error) bool) {
	if !cg.has(fileCPUThrottle) {
		return
	}
	if cg.rare() || cg.quota {
		cg.throttleOK = false
		if data, err := r.readOptional(cg, fileCPUThrottle, buf); keep(err) && data != nil {
			var t Stats
			// throttling sets the field only for a cgroup with periods.
			if keep(cg.fileErr(fileCPUThrottle, throttling(cg.name(fileCPUThrottle), data, "throttled_time", 1, &t))) && t.Has&FieldCPUThrottling != 0 {
				cg.periods, cg.throttledPeriods, cg.throttledNs = t.CPUPeriods, t.CPUThrottledPeriods, t.CPUThrottledNanos
				cg.throttleOK, cg.quota = true, true
			}
		}
		if !cg.quota {
			r.closeFile(cg, fileCPUThrottle)
		}
	}
	if cg.throttleOK {
		s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledNanos = cg.periods, cg.throttledPeriods, cg.throttledNs
		s.Has |= FieldCPUThrottling
	}
}

// readPressure reads the cgroup's pressure files, those that exist.
func (r *Reader) readPressure(cg *Cgroup, s *Stats, buf *[]byte) error {
	var errs []error
	for i := range numPressure {
		f := filePressure + i
		if !cg.has(f) {
			continue
		}
		data, err := r.readOptional(cg, f, buf)
		if err != nil || data == nil {
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		p, err := parsePressure(cg.name(f), data)
		if err != nil {
			errs = append(errs, cg.fileErr(f, err))
			continue
		}
		s.Pressure[i] = p
		s.Has |= FieldPressure
	}
	return errors.Join(errs...)
}

// throttling reads the CFS bandwidth counters of a cpu.stat whose throttled
// time is under key, in units of unitNanos nanoseconds.
func throttling(file string, data []byte, key string, unitNanos uint64, s *Stats) error {
	var periods, throttled, t uint64
	var seen int
	err := keyed(file, data, func(k []byte, v uint64) {
		switch string(k) {
		case "nr_periods":
			periods, seen = v, seen|1
		case "nr_throttled":
			throttled, seen = v, seen|2
		case key:
			t, seen = v, seen|4
		}
	})
	if err == nil && seen == 7 && periods > 0 {
		s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledNanos = periods, throttled, t*unitNanos
		s.Has |= FieldCPUThrottling
	}
	return err
}

func (s *Stats) setFaults(all, major uint64) {
	s.MemoryMinorFaults, s.MemoryMajorFaults = Sub0(all, major), major
	s.Has |= FieldMemoryFaults
}

// setDisks sets the disk counters to disks and their sums.
func (s *Stats) setDisks(disks []Disk) {
	var rd, wr uint64
	for i := range disks {
		rd += disks[i].ReadBytes
		wr += disks[i].WriteBytes
	}
	s.Disks, s.DiskReadBytes, s.DiskWriteBytes = disks, rd, wr
	s.Has |= FieldDisk
}

// addDisk adds a row's bytes to the device's entry of disks, appending it
// the first time (blkio has a row per device and operation).
func (r *Reader) addDisk(disks []Disk, major, minor uint32, rd, wr uint64) []Disk {
	for i := range disks {
		if d := &disks[i]; d.Major == major && d.Minor == minor {
			d.ReadBytes += rd
			d.WriteBytes += wr
			return disks
		}
	}
	name := ""
	if i := len(disks); i < cap(disks) {
		if d := disks[:i+1][i]; d.Major == major && d.Minor == minor {
			name = d.Device // the same device in the same place as last round
		}
	}
	if name == "" {
		name = r.deviceName(major, minor)
	}
	return append(disks, Disk{Major: major, Minor: minor, Device: name, ReadBytes: rd, WriteBytes: wr})
}

// deviceName is the /dev name of block device major:minor, from DEVNAME in
// sysfs's /sys/dev/block/MAJ:MIN/uevent, or "MAJ:MIN" when that cannot be
// read (no sysfs root, a device of another namespace). Names are cached for
// the Reader's life: device numbers are not reused while a disk is attached.
func (r *Reader) deviceName(major, minor uint32) string {
	key := uint64(major)<<32 | uint64(minor)
	r.devMu.Lock()
	defer r.devMu.Unlock()
	if n, ok := r.devNames[key]; ok {
		return n
	}
	dev := strconv.FormatUint(uint64(major), 10) + ":" + strconv.FormatUint(uint64(minor), 10)
	name := dev
	if r.sysRoot != "" {
		if data, err := os.ReadFile(filepath.Join(r.sysRoot, "dev", "block", dev, "uevent")); err == nil {
			if n := ueventDevName(data); n != "" {
				name = n
			}
		}
	}
	if r.devNames == nil {
		r.devNames = make(map[uint64]string)
	}
	r.devNames[key] = name
	return name
}

// ueventDevName returns DEVNAME of a sysfs uevent file ("KEY=value" lines),
// "" when absent.
func ueventDevName(data []byte) string {
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		if v, ok := bytes.CutPrefix(line, []byte("DEVNAME=")); ok && len(v) > 0 && utf8.Valid(v) && !bytes.ContainsAny(v, "\x00 ") {
			return string(v)
		}
	}
	return ""
}

// readNet reads /proc/<pid>/net/dev unless pid shares the host's network
// namespace. Interface names are reused from s.Networks when unchanged, so a
// steady container costs no allocations.
func (r *Reader) readNet(cg *Cgroup, pid int, s *Stats, buf *[]byte) error {
	if !cg.netKnown || cg.netPID != pid {
		r.closeFile(cg, fileNetDev)
		dir := r.procRoot + "/" + strconv.Itoa(pid)
		cg.netPID, cg.netDev, cg.netKnown, cg.netHost = pid, dir+"/net/dev", true, false
		if r.hostNetNS != "" {
			if link, err := os.Readlink(dir + "/ns/net"); err == nil && link == r.hostNetNS {
				cg.netHost = true
			}
		}
	}
	if cg.netHost {
		return nil
	}
	file := cg.netDev
	data, err := r.read(cg, fileNetDev, file, buf)
	if err != nil {
		return err
	}
	prev := s.Networks
	nets := prev[:0]
	err = parseNetDev(file, data, func(name []byte, rx, tx uint64) {
		i := len(nets)
		var n string
		if i < len(prev) && prev[i].Name == string(name) {
			n = prev[i].Name
		} else {
			n = string(name)
		}
		nets = append(nets, Interface{Name: n, RxBytes: rx, TxBytes: tx})
	})
	if err != nil {
		return err
	}
	s.Networks = nets
	s.Has |= FieldNetwork
	return nil
}

// Sub0 is a-b, or 0 when b exceeds a (counters read at slightly different times).
func Sub0(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
