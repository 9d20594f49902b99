package oom

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// Read buffer sizes. /dev/kmsg returns one whole record per read(2) and fails
// with EINVAL when the buffer is too small for it; records are at most about
// 1 KiB of text plus their dictionary, so 8 KiB is ample. On EINVAL the buffer
// doubles up to maxReadBuf before the Detector gives up.
const (
	readBuf    = 8 << 10
	maxReadBuf = 1 << 20
)

// openKmsg opens the kernel log at path and, unless fromStart, moves to its
// end: on /dev/kmsg lseek(fd, 0, SEEK_END) skips every record already in the
// ring buffer, so only records logged from now on are read. A source that
// cannot seek (a pipe) is read from where it is. The file is opened through
// the runtime poller (/dev/kmsg and pipes support poll), so closing it ends
// a pending Read.
func openKmsg(path string, fromStart bool) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if !fromStart {
		if _, err := f.Seek(0, io.SeekEnd); err != nil && !errors.Is(err, syscall.ESPIPE) {
			f.Close()
			return nil, fmt.Errorf("seek to the end: %w", err)
		}
	}
	return f, nil
}

// records turns what is read from the kernel log into Kills: it splits the
// reads into records, parses them and feeds the OOM report parser.
type records struct {
	d     *Detector
	buf   []byte
	sp    splitter
	p     Parser
	kills []Kill
}

func (d *Detector) newRecords() *records {
	return &records{d: d, buf: make([]byte, readBuf)}
}

// feed takes the n bytes read into buf and sends the Kills they complete to
// out; false when ctx ended meanwhile.
func (r *records) feed(ctx context.Context, n int, out chan<- Kill) bool {
	if n <= 0 {
		return true
	}
	d := r.d
	r.sp.feed(r.buf[:n], func(b []byte) {
		rec, err := ParseRecord(b)
		if err != nil {
			if m := d.malformed.Add(1); bits.OnesCount64(m) == 1 {
				d.log.Debug("skipping malformed kernel log record", "path", d.cfg.Path, "err", err, "malformed", m)
			}
			return
		}
		d.records.Add(1)
		if k, ok := r.p.Feed(rec); ok {
			k.Time = d.bootTime().Add(k.SinceBoot)
			r.kills = append(r.kills, k)
		}
	})
	defer func() { r.kills = r.kills[:0] }()
	for _, k := range r.kills {
		select {
		case out <- k:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// failed handles a read error; false when reading must stop.
func (r *records) failed(ctx context.Context, err error) bool {
	d := r.d
	switch {
	case err == nil:
	case errors.Is(err, syscall.EPIPE):
		// The ring buffer overwrote records before they were read; the
		// next read continues with the oldest one left.
		if o := d.overruns.Add(1); bits.OnesCount64(o) == 1 {
			d.log.Warn("kernel log overrun: records were lost before agentd read them, an OOM kill among them goes unreported",
				"path", d.cfg.Path, "overruns", o)
		}
	case errors.Is(err, syscall.EINVAL) && len(r.buf) < maxReadBuf:
		r.buf = make([]byte, 2*len(r.buf))
	case ctx.Err() != nil || errors.Is(err, os.ErrClosed):
		return false
	case errors.Is(err, io.EOF):
		d.log.Info("kernel log ended: OOM kills are no longer detected", "path", d.cfg.Path)
		return false
	default:
		d.log.Warn("cannot read the kernel log: OOM kills are no longer detected", "path", d.cfg.Path, "err", err)
		return false
	}
	return true
}

// read reads records from r until it fails, ends or ctx ends, parses them and
// sends the Kills they complete to out. It closes out when it returns.
func (d *Detector) read(ctx context.Context, r io.Reader, out chan<- Kill) {
	defer close(out)
	rs := d.newRecords()
	for {
		n, err := r.Read(rs.buf)
		if !rs.feed(ctx, n, out) || !rs.failed(ctx, err) {
			return
		}
	}
}

// readSyncing is read for a kernel log that the runtime poller waits on
// (/dev/kmsg, a FIFO), which lets it answer ReadThrough: when a sync is
// wanted and a read finds the log empty, it sends the time that read began on
// synced, after every Kill read before. Records written before that time have
// all been read. ReadThrough wakes a waiting read with a read deadline.
func (d *Detector) readSyncing(ctx context.Context, f *os.File, rc syscall.RawConn, out chan<- Kill, synced chan<- time.Time) {
	defer close(out)
	rs := d.newRecords()
	for {
		var (
			n     int
			rerr  error
			empty bool
			began time.Time
		)
		err := rc.Read(func(fd uintptr) bool {
			began = time.Now()
			n, rerr = syscall.Read(int(fd), rs.buf)
			switch {
			case errors.Is(rerr, syscall.EINTR):
				n, rerr = 0, nil
			case errors.Is(rerr, syscall.EAGAIN):
				if !d.syncWant.Swap(false) {
					return false // wait until the log is readable
				}
				n, rerr, empty = 0, nil, true
			case rerr == nil && n == 0:
				rerr = io.EOF
			}
			return true
		})
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// ReadThrough woke the wait; the next read looks again.
			_ = f.SetReadDeadline(time.Time{})
			continue
		case err != nil:
			rerr = err
		case empty:
			select {
			case synced <- began:
			case <-ctx.Done():
				return
			}
			continue
		}
		if !rs.feed(ctx, n, out) || !rs.failed(ctx, rerr) {
			return
		}
	}
}

// memoryCgroup returns the memory cgroup of pid from procRoot/PID/cgroup:
// the v1 memory controller's line, or the v2 line ("0::/path") when there is
// none. It is the fallback when the kernel's summary line was rate-limited
// away; the killed process may already be gone, then it returns "".
func memoryCgroup(procRoot string, pid int) string {
	b, err := os.ReadFile(procfs.Path(procRoot, pid, "cgroup"))
	if err != nil {
		return ""
	}
	lines, _ := procfs.ParseCgroup(b)
	var unified string
	for _, l := range lines {
		if l.Controllers == "" {
			unified = l.Path
			continue
		}
		for c := range strings.SplitSeq(l.Controllers, ",") {
			if c == "memory" {
				return l.Path
			}
		}
	}
	return unified
}
