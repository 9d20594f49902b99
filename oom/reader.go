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

// read reads records from r until it fails, ends or ctx ends, parses them and
// sends the Kills they complete to out. It closes out when it returns.
func (d *Detector) read(ctx context.Context, r io.Reader, out chan<- Kill) {
	defer close(out)
	buf := make([]byte, readBuf)
	var sp splitter
	var p Parser
	var kills []Kill
	for {
		n, err := r.Read(buf)
		if n > 0 {
			sp.feed(buf[:n], func(b []byte) {
				rec, err := ParseRecord(b)
				if err != nil {
					if m := d.malformed.Add(1); bits.OnesCount64(m) == 1 {
						d.log.Debug("skipping malformed kernel log record", "path", d.cfg.Path, "err", err, "malformed", m)
					}
					return
				}
				d.records.Add(1)
				if k, ok := p.Feed(rec); ok {
					k.Time = d.bootTime().Add(k.SinceBoot)
					kills = append(kills, k)
				}
			})
			for _, k := range kills {
				select {
				case out <- k:
				case <-ctx.Done():
					return
				}
			}
			kills = kills[:0]
		}
		switch {
		case err == nil:
		case errors.Is(err, syscall.EPIPE):
			// The ring buffer overwrote records before they were read; the
			// next read continues with the oldest one left.
			if o := d.overruns.Add(1); bits.OnesCount64(o) == 1 {
				d.log.Warn("kernel log overrun: records were lost before agentd read them, an OOM kill among them goes unreported",
					"path", d.cfg.Path, "overruns", o)
			}
		case errors.Is(err, syscall.EINVAL) && len(buf) < maxReadBuf:
			buf = make([]byte, 2*len(buf))
		case ctx.Err() != nil || errors.Is(err, os.ErrClosed):
			return
		case errors.Is(err, io.EOF):
			d.log.Info("kernel log ended: OOM kills are no longer detected", "path", d.cfg.Path)
			return
		default:
			d.log.Warn("cannot read the kernel log: OOM kills are no longer detected", "path", d.cfg.Path, "err", err)
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
