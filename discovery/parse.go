package discovery

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
)

// errMalformed is wrapped by the /proc parsers for input they cannot make sense of.
var errMalformed = errors.New("malformed")

// statFields is what discovery needs from one /proc/PID/stat line.
type statFields struct {
	pid       int
	ppid      int
	comm      []byte // aliases the input
	startTime uint64 // clock ticks after boot; with pid it identifies a process
}

// parseStat parses /proc/PID/stat. The comm field is in parentheses and may
// itself contain spaces, parentheses and ')' followed by a space, so it runs from
// the first '(' to the last ')' of the line; the numeric fields follow it. It
// returns comm as a sub-slice of b and never allocates.
func parseStat(b []byte) (statFields, error) {
	var f statFields
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return f, errMalformed
	}
	pid, ok := atoiBytes(bytes.TrimSpace(b[:open]))
	if !ok {
		return f, errMalformed
	}
	f.pid = pid
	f.comm = b[open+1 : closing]
	// Field 3 (state) starts after ") ". Fields are counted from 1 as in proc(5):
	// ppid is 4 and starttime is 22.
	rest := b[closing+1:]
	field := 2
	for len(rest) > 0 && field < 22 {
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
			v, ok := atoiBytes(tok)
			if !ok {
				return f, errMalformed
			}
			f.ppid = v
		case 22:
			v, ok := atouBytes(tok)
			if !ok {
				return f, errMalformed
			}
			f.startTime = v
		}
		rest = rest[end:]
	}
	if field < 22 {
		return f, errMalformed
	}
	return f, nil
}

// parseNSpid appends to dst the PIDs of the "NSpid:" line of /proc/PID/status,
// from the host's (outermost visible) PID namespace down to the process's own.
// A kernel without the line yields no PIDs and no error.
func parseNSpid(dst []int, status []byte) ([]int, error) {
	for len(status) > 0 {
		line := status
		if i := bytes.IndexByte(status, '\n'); i >= 0 {
			line, status = status[:i], status[i+1:]
		} else {
			status = nil
		}
		v, ok := bytes.CutPrefix(line, []byte("NSpid:"))
		if !ok {
			continue
		}
		for _, tok := range bytes.Fields(v) {
			n, ok := atoiBytes(tok)
			if !ok || n <= 0 {
				return dst, errMalformed
			}
			dst = append(dst, n)
		}
		return dst, nil
	}
	return dst, nil
}

// parseNSInode parses the target of a /proc/PID/ns/* link, such as
// "pid:[4026531836]", into the namespace's inode number.
func parseNSInode(link string) (uint64, error) {
	open := strings.IndexByte(link, '[')
	if open < 0 || len(link) < open+3 || link[len(link)-1] != ']' {
		return 0, errMalformed
	}
	n, err := strconv.ParseUint(link[open+1:len(link)-1], 10, 64)
	if err != nil {
		return 0, errMalformed
	}
	return n, nil
}

// parseSocketLink parses the target of a /proc/PID/fd/N link; it returns the
// inode for "socket:[INODE]" and false for anything else (files, pipes, anon inodes).
func parseSocketLink(link string) (uint64, bool) {
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

// unixSocket is one row of /proc/PID/net/unix.
type unixSocket struct {
	flags uint64
	typ   uint64
	state uint64
	inode uint64
	path  string // "" for unbound sockets; abstract names start with '@'
}

// Socket constants as /proc/net/unix prints them (hexadecimal).
const (
	unixTypeStream    = 0x0001  // SOCK_STREAM
	unixStateUnconn   = 0x01    // SS_UNCONNECTED: listening sockets show this state
	unixFlagAcceptCon = 0x10000 // __SO_ACCEPTCON: listen(2) was called
)

// listening reports whether the row is a listening unix stream socket.
func (s unixSocket) listening() bool {
	return s.typ == unixTypeStream && s.state == unixStateUnconn && s.flags&unixFlagAcceptCon != 0
}

// parseNetUnix calls fn for every well-formed row of /proc/PID/net/unix:
//
//	Num       RefCount Protocol Flags    Type St Inode Path
//	0000000000000000: 00000002 00000000 00010000 0001 01 12328 /run/docker.sock
//
// Fields are separated by one or more spaces; the path is the rest of the line
// after the inode and may itself contain spaces. Malformed rows are skipped. The
// path string is only allocated for rows that keep returns true for, so callers
// filter on the numeric fields (and inode) before paying for the path.
func parseNetUnix(b []byte, keep func(s unixSocket) bool, fn func(s unixSocket)) {
	first := true
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		if first {
			first = false
			if bytes.HasPrefix(bytes.TrimSpace(line), []byte("Num")) {
				continue
			}
		}
		var s unixSocket
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
		if s.flags, ok = hexBytes(fields[3]); !ok {
			continue
		}
		if s.typ, ok = hexBytes(fields[4]); !ok {
			continue
		}
		if s.state, ok = hexBytes(fields[5]); !ok {
			continue
		}
		if s.inode, ok = atouBytes(fields[6]); !ok {
			continue
		}
		if !keep(s) {
			continue
		}
		s.path = string(skipSpaces(rest))
		fn(s)
	}
}

// parseCgroup returns the process's cgroup path from /proc/PID/cgroup: the
// unified (cgroup v2, "0::") path when there is one, else the name=systemd
// hierarchy's path, else the first hierarchy's path; "" when none parses.
func parseCgroup(b []byte) string {
	var systemd, first []byte
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		id, rest, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(id) == 0 {
			continue
		}
		ctrl, path, ok := bytes.Cut(rest, []byte(":"))
		if !ok || len(path) == 0 {
			continue
		}
		switch {
		case string(id) == "0" && len(ctrl) == 0:
			return string(path)
		case string(ctrl) == "name=systemd" && systemd == nil:
			systemd = path
		case first == nil:
			first = path
		}
	}
	if systemd != nil {
		return string(systemd)
	}
	return string(first)
}

// parseCmdline splits /proc/PID/cmdline (NUL-separated, usually NUL-terminated).
func parseCmdline(b []byte) []string {
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

func skipSpaces(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	return b
}

// atoiBytes parses a non-negative decimal int without allocating.
func atoiBytes(b []byte) (int, bool) {
	v, ok := atouBytes(b)
	if !ok || v > 1<<31-1 {
		return 0, false
	}
	return int(v), true
}

// atouBytes parses a decimal uint64 without allocating.
func atouBytes(b []byte) (uint64, bool) {
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

// hexBytes parses a hexadecimal uint64 without allocating.
func hexBytes(b []byte) (uint64, bool) {
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
