package oom

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Record is one kernel log record as /dev/kmsg presents it:
//
//	prio,seq,usec,flags[,more];message
//	 KEY=VALUE
//
// The header fields are comma-separated before the first ';' (future kernels
// may add fields, and CONFIG_PRINTK_CALLER adds "caller=T123": extra fields are
// ignored); the message runs to the end of the line, with non-printable bytes
// escaped as \xNN by the kernel; continuation lines start with a space and
// carry the record's dictionary (SUBSYSTEM=..., DEVICE=...).
type Record struct {
	// Facility and Level split the syslog priority (prio = facility*8 + level).
	Facility int
	Level    int
	// Seq is the kernel's sequence number: it increases by one per record, so
	// a gap means lost records.
	Seq uint64
	// SinceBoot is when the record was logged, on the kernel's printk clock
	// (monotonic since boot, not counting suspend).
	SinceBoot time.Duration
	// Flags is the flags field: "-" for a record, "c" or "+" for continuation
	// fragments on old kernels.
	Flags string
	// Message is the log message, unescaped.
	Message string
	// Dict holds the continuation lines' KEY=VALUE pairs, without the leading space.
	Dict []string
}

// ErrMalformed is wrapped by the errors of ParseRecord.
var ErrMalformed = errors.New("malformed kernel log record")

// ParseRecord parses one record: a header line and the continuation lines
// that belong to it (one read(2) of /dev/kmsg). A trailing newline is
// optional. It never panics; bad input gives an error wrapping ErrMalformed.
func ParseRecord(b []byte) (Record, error) {
	b = bytes.TrimSuffix(b, []byte("\n"))
	line, rest, _ := bytes.Cut(b, []byte("\n"))
	r, err := parseHeaderLine(line)
	if err != nil {
		return Record{}, err
	}
	for len(rest) > 0 {
		var l []byte
		l, rest, _ = bytes.Cut(rest, []byte("\n"))
		if len(l) == 0 || l[0] != ' ' {
			return Record{}, fmt.Errorf("%w: continuation line %q does not start with a space", ErrMalformed, truncate(l))
		}
		r.Dict = append(r.Dict, unescape(string(l[1:])))
	}
	return r, nil
}

// parseHeaderLine parses "prio,seq,usec,flags;message" (no newline).
func parseHeaderLine(line []byte) (Record, error) {
	head, msg, ok := bytes.Cut(line, []byte(";"))
	if !ok {
		return Record{}, fmt.Errorf("%w: no ';' in %q", ErrMalformed, truncate(line))
	}
	fields := strings.Split(string(head), ",")
	if len(fields) < 4 {
		return Record{}, fmt.Errorf("%w: header %q has %d fields, want at least 4", ErrMalformed, truncate(head), len(fields))
	}
	prio, err := strconv.ParseUint(fields[0], 10, 31)
	if err != nil {
		return Record{}, fmt.Errorf("%w: priority %q", ErrMalformed, fields[0])
	}
	seq, err := strconv.ParseUint(fields[1], 10, 64)
	if err != nil {
		return Record{}, fmt.Errorf("%w: sequence number %q", ErrMalformed, fields[1])
	}
	usec, err := strconv.ParseUint(fields[2], 10, 64)
	if err != nil || usec > uint64(maxSinceBoot/time.Microsecond) {
		return Record{}, fmt.Errorf("%w: timestamp %q", ErrMalformed, fields[2])
	}
	return Record{
		Facility:  int(prio >> 3),
		Level:     int(prio & 7),
		Seq:       seq,
		SinceBoot: time.Duration(usec) * time.Microsecond,
		Flags:     fields[3],
		Message:   unescape(string(msg)),
	}, nil
}

// maxSinceBoot bounds the timestamp so that it converts to a Duration without
// overflow (about 292 years).
const maxSinceBoot = time.Duration(1<<63 - 1)

// unescape undoes the kernel's \xNN escaping of non-printable bytes (and of
// the backslash itself) in messages and dictionary values.
func unescape(s string) string {
	if !strings.Contains(s, `\x`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && s[i+1] == 'x' {
			if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func truncate(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// maxPending bounds a partial line kept between reads of a stream source; a
// longer line is garbage and dropped.
const maxPending = 64 << 10

// splitter turns the bytes read from a kernel log source into records. On
// /dev/kmsg every read(2) returns exactly one whole record; a pipe or a file
// (tests, replays) returns arbitrary chunks. It keeps a partial line across
// reads, attaches continuation lines to the record before them, and hands a
// record over at the next header line or at the end of a read, whichever comes
// first, so a record is never held back waiting for the next one.
type splitter struct {
	partial []byte // an incomplete line carried over to the next read
	rec     []byte // the current record: header line plus its continuation lines
	orphans int    // continuation lines with no record before them
	dropped int    // over-long lines dropped
}

// feed consumes one read's bytes and calls each for every complete record.
func (s *splitter) feed(b []byte, each func([]byte)) {
	if len(s.partial) > 0 {
		b = append(s.partial, b...)
		s.partial = nil
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(b) > maxPending {
				s.dropped++
			} else {
				s.partial = append([]byte(nil), b...)
			}
			break
		}
		line := b[:i+1]
		b = b[i+1:]
		if line[0] == ' ' {
			if len(s.rec) == 0 {
				s.orphans++
				continue
			}
			s.rec = append(s.rec, line...)
			continue
		}
		s.flush(each)
		s.rec = append(s.rec[:0], line...)
	}
	s.flush(each)
}

func (s *splitter) flush(each func([]byte)) {
	if len(s.rec) == 0 {
		return
	}
	each(s.rec)
	s.rec = s.rec[:0]
}
