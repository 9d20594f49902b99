package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrMalformed is wrapped by the errors of the parsers for input they cannot
// make sense of.
var ErrMalformed = errors.New("malformed")

// parseError is a malformed-input error with details; it matches ErrMalformed.
type parseError struct{ msg string }

func (e *parseError) Error() string        { return e.msg }
func (e *parseError) Is(target error) bool { return target == ErrMalformed }

func malformed(format string, args ...any) error {
	return &parseError{msg: fmt.Sprintf(format, args...)}
}

// Stat is what agentd reads from one /proc/PID/stat line.
type Stat struct {
	// PID is field 1, the process's PID in the procfs's PID namespace.
	PID int
	// PPID is field 4, the parent's PID.
	PPID int
	// Comm is field 2 without its parentheses; it aliases the parsed bytes.
	Comm []byte
	// StartTime is field 22, the start time in clock ticks (UserHZ) after
	// boot; with PID it identifies a process across PID reuse.
	StartTime uint64
	// Thread is whether field 38, exit_signal, is -1: the task is a thread
	// other than its thread group's leader (only those have no exit signal).
	// /proc does not list such threads but opens /proc/TID of one.
	Thread bool
}

// ParseStat parses /proc/PID/stat. The comm field is in parentheses and may
// itself contain spaces, parentheses and ')' followed by a space, so it runs
// from the first '(' to the last ')' of the line; the numeric fields follow
// it. It returns Comm as a sub-slice of b and never allocates; the error is
// ErrMalformed itself.
func ParseStat(b []byte) (Stat, error) {
	var f Stat
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return f, ErrMalformed
	}
	pid, ok := ParsePID(bytes.TrimSpace(b[:open]))
	if !ok {
		return f, ErrMalformed
	}
	f.PID = pid
	f.Comm = b[open+1 : closing]
	// Field 3 (state) starts after ") ". Fields are counted from 1 as in proc(5):
	// ppid is 4 and starttime is 22.
	rest := b[closing+1:]
	field := 2
	for len(rest) > 0 && field < 38 {
		rest = skipSpaces(rest)
		if len(rest) == 0 {
			break
		}
		field++
		end := bytes.IndexByte(rest, ' ')
		if end < 0 {
			end = len(rest)
		}
		tok := bytes.TrimRight(rest[:end], "\n")
		switch field {
		case 4:
			v, ok := ParsePID(tok)
			if !ok {
				return f, ErrMalformed
			}
			f.PPID = v
		case 22:
			v, ok := ParseUint(tok)
			if !ok {
				return f, ErrMalformed
			}
			f.StartTime = v
		case 38:
			f.Thread = string(tok) == "-1"
		}
		rest = rest[end:]
	}
	if field < 22 {
		return f, ErrMalformed
	}
	return f, nil
}

// Status is what agentd reads from /proc/PID/status.
type Status struct {
	// PID is the Pid line: the PID in the procfs's PID namespace.
	PID int
	// PPID is the PPid line: the parent's PID, 0 for a namespace's root.
	PPID int
	// NSpid is the NSpid line: the process's PIDs from the procfs's PID
	// namespace (the outermost it sees) down to the process's own. It is nil
	// on kernels before 4.1, which have no such line.
	NSpid []int
}

// ParseStatus parses the Pid, PPid and NSpid lines of /proc/PID/status and
// ignores the others. A missing line leaves its field zero; one of the three
// that does not parse (a PID that is not a positive number in NSpid) is an
// error wrapping ErrMalformed.
func ParseStatus(b []byte) (Status, error) {
	var st Status
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		k, v, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		var err error
		switch string(k) {
		case "Pid":
			st.PID, err = statusPID(k, v)
		case "PPid":
			st.PPID, err = statusPID(k, v)
		case "NSpid":
			st.NSpid, err = appendNSpid(st.NSpid, v)
		}
		if err != nil {
			return Status{}, err
		}
	}
	return st, nil
}

func statusPID(key, v []byte) (int, error) {
	n, ok := ParsePID(bytes.TrimSpace(v))
	if !ok {
		return 0, malformed("status: %s %.40q is not a PID", key, v)
	}
	return n, nil
}

// ParseNSpid appends to dst the PIDs of the NSpid line of /proc/PID/status
// (see Status.NSpid). A kernel without the line yields dst and no error; a
// field that is not a positive number is an error wrapping ErrMalformed.
func ParseNSpid(dst []int, status []byte) ([]int, error) {
	for len(status) > 0 {
		var line []byte
		line, status, _ = bytes.Cut(status, []byte{'\n'})
		if v, ok := bytes.CutPrefix(line, []byte("NSpid:")); ok {
			return appendNSpid(dst, v)
		}
	}
	return dst, nil
}

func appendNSpid(dst []int, v []byte) ([]int, error) {
	for _, tok := range bytes.Fields(v) {
		n, ok := ParsePID(tok)
		if !ok || n <= 0 {
			return dst, malformed("status: NSpid field %.40q is not a PID", tok)
		}
		dst = append(dst, n)
	}
	return dst, nil
}

// CgroupLine is one line of /proc/PID/cgroup, "ID:controllers:path".
type CgroupLine struct {
	// ID is the hierarchy ID, 0 for the unified (cgroup v2) hierarchy.
	ID uint64
	// Controllers are the hierarchy's comma-separated controllers
	// ("cpu,cpuacct", "name=systemd"), "" for the unified hierarchy.
	Controllers string
	// Path is the cgroup's path relative to the reading process's cgroup
	// namespace root. It starts with '/'; one starting with "/.." lies outside
	// that namespace.
	Path string
}

// ParseCgroup parses /proc/PID/cgroup. It returns every well-formed line in
// order. The error wraps ErrMalformed when some line is malformed (not three
// colon-separated fields with a numeric ID and a path starting with '/') or
// there is no line at all; the lines it could parse are returned all the
// same, for callers that skip bad lines.
func ParseCgroup(b []byte) ([]CgroupLine, error) {
	var out []CgroupLine
	var bad error
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		id, rest, ok := bytes.Cut(line, []byte{':'})
		ctrl, path, ok2 := bytes.Cut(rest, []byte{':'})
		if !ok || !ok2 || len(path) == 0 || path[0] != '/' {
			if bad == nil {
				bad = malformed("line %.80q is not \"ID:controllers:path\"", line)
			}
			continue
		}
		n, ok := ParseUint(id)
		if !ok {
			if bad == nil {
				bad = malformed("line %.80q has a non-numeric hierarchy ID", line)
			}
			continue
		}
		out = append(out, CgroupLine{ID: n, Controllers: string(ctrl), Path: string(path)})
	}
	if bad == nil && len(out) == 0 {
		bad = malformed("no cgroup lines")
	}
	return out, bad
}

// ParseBootTime returns the boot time from the btime line of /proc/stat.
func ParseBootTime(stat []byte) (time.Time, error) {
	for len(stat) > 0 {
		var line []byte
		line, stat, _ = bytes.Cut(stat, []byte{'\n'})
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			sec, err := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			if err != nil {
				return time.Time{}, malformed("btime %.40q: %v", v, err)
			}
			return time.Unix(sec, 0), nil
		}
	}
	return time.Time{}, malformed("no btime line")
}

// ParseNSInode parses the target of a /proc/PID/ns/* link, such as
// "pid:[4026531836]", into the namespace's inode number.
func ParseNSInode(link string) (uint64, error) {
	open := strings.IndexByte(link, '[')
	if open < 0 || len(link) < open+3 || link[len(link)-1] != ']' {
		return 0, ErrMalformed
	}
	n, err := strconv.ParseUint(link[open+1:len(link)-1], 10, 64)
	if err != nil {
		return 0, ErrMalformed
	}
	return n, nil
}

// ParseSocketLink parses the target of a /proc/PID/fd/N link; it returns the
// inode for "socket:[INODE]" and false for anything else (files, pipes, anon
// inodes).
func ParseSocketLink(link string) (uint64, bool) {
	const prefix = "socket:["
	if len(link) <= len(prefix)+1 || link[:len(prefix)] != prefix || link[len(link)-1] != ']' {
		return 0, false
	}
	n, err := strconv.ParseUint(link[len(prefix):len(link)-1], 10, 64)
	if err != nil {
		return 0, false
	}
	return n, true
}

// ParseCmdline splits /proc/PID/cmdline (NUL-separated, usually
// NUL-terminated); it returns nil for an empty one (kernel threads, zombies).
func ParseCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	parts := bytes.Split(b, []byte{0})
	out := make([]string, len(parts))
	for i, p := range parts {
		out[i] = string(p)
	}
	return out
}

// UnixSocket is one row of /proc/PID/net/unix.
type UnixSocket struct {
	Flags uint64
	Type  uint64
	State uint64
	Inode uint64
	// Path is "" for unbound sockets; abstract names start with '@'.
	Path string
}

// Socket constants as /proc/net/unix prints them (hexadecimal).
const (
	unixTypeStream    = 0x0001  // SOCK_STREAM
	unixStateUnconn   = 0x01    // SS_UNCONNECTED: listening sockets show this state
	unixFlagAcceptCon = 0x10000 // __SO_ACCEPTCON: listen(2) was called
)

// Listening reports whether the row is a listening unix stream socket.
func (s UnixSocket) Listening() bool {
	return s.Type == unixTypeStream && s.State == unixStateUnconn && s.Flags&unixFlagAcceptCon != 0
}

// ParseNetUnix calls fn for every well-formed row of /proc/PID/net/unix:
//
//	Num       RefCount Protocol Flags    Type St Inode Path
//	0000000000000000: 00000002 00000000 00010000 0001 01 12328 /run/docker.sock
//
// Fields are separated by one or more spaces; the path is the rest of the line
// after the inode and may itself contain spaces. Malformed rows are skipped.
// The Path string is only allocated for rows that keep returns true for, so
// callers filter on the numeric fields (and inode) before paying for the path.
func ParseNetUnix(b []byte, keep func(s UnixSocket) bool, fn func(s UnixSocket)) {
	first := true
	for len(b) > 0 {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if first {
			first = false
			if bytes.HasPrefix(bytes.TrimSpace(line), []byte("Num")) {
				continue
			}
		}
		var s UnixSocket
		var ok bool
		rest := line
		var fields [7][]byte
		for i := range fields {
			rest = skipSpaces(rest)
			end := bytes.IndexByte(rest, ' ')
			if end < 0 {
				end = len(rest)
			}
			fields[i], rest = rest[:end], rest[end:]
		}
		if len(fields[6]) == 0 || !bytes.HasSuffix(fields[0], []byte(":")) {
			continue
		}
		if s.Flags, ok = parseHex(fields[3]); !ok {
			continue
		}
		if s.Type, ok = parseHex(fields[4]); !ok {
			continue
		}
		if s.State, ok = parseHex(fields[5]); !ok {
			continue
		}
		if s.Inode, ok = ParseUint(fields[6]); !ok {
			continue
		}
		if !keep(s) {
			continue
		}
		s.Path = string(skipSpaces(rest))
		fn(s)
	}
}

func skipSpaces(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// ParsePID parses a non-negative decimal int of at most 2^31-1 (PIDs, and
// the names of /proc's process directories) without allocating.
func ParsePID(b []byte) (int, bool) {
	v, ok := ParseUint(b)
	if !ok || v > 1<<31-1 {
		return 0, false
	}
	return int(v), true
}

// ParseUint parses a decimal uint64, as procfs and cgroupfs print counters,
// without allocating. Signs, spaces and overflow are rejected.
func ParseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}

// parseHex parses a hexadecimal uint64 without allocating.
func parseHex(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}

// ParseLoadavgLastPID returns the last field of /proc/loadavg ("0.00 0.01
// 0.05 1/123 4567"): the PID most recently allocated in the reader's PID
// namespace. ok is false for anything else. It does not allocate.
func ParseLoadavgLastPID(b []byte) (uint64, bool) {
	end := len(b)
	for end > 0 && (b[end-1] == '\n' || b[end-1] == ' ') {
		end--
	}
	start := end
	for start > 0 && b[start-1] != ' ' {
		start--
	}
	if start == 0 {
		return 0, false
	}
	return ParseUint(b[start:end])
}
