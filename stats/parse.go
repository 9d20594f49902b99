package stats

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// ErrMalformed is wrapped by every parse error; the message names the file.
var ErrMalformed = errors.New("malformed file")

// UnlimitedThreshold is where "no limit" starts: cgroup v1 reports "no limit" as the largest page-aligned
// int64 (9223372036854771712 with 4 KiB pages); anything at or above 2^62 is
// treated as unlimited, as no machine has that much memory.
const UnlimitedThreshold = 1 << 62

// userHZ is the unit of cpuacct.stat: USER_HZ ticks, 100 per second on every
// Linux architecture agentd runs on (the kernel converts to USER_HZ for
// userspace regardless of CONFIG_HZ).
const userHZ = 100

func malformed(file, format string, args ...any) error {
	return fmt.Errorf("%s: %w: %s", file, ErrMalformed, fmt.Sprintf(format, args...))
}

// parseSingle parses a file holding one unsigned integer and a newline.
func parseSingle(file string, data []byte) (uint64, error) {
	v, ok := procfs.ParseUint(bytes.TrimSpace(data))
	if !ok {
		return 0, malformed(file, "want one unsigned integer, got %q", truncate(data))
	}
	return v, nil
}

// parseMax parses a cgroup v2 limit: an unsigned integer or "max". unlimited
// is true for "max".
func parseMax(file string, data []byte) (v uint64, unlimited bool, err error) {
	t := bytes.TrimSpace(data)
	if string(t) == "max" {
		return 0, true, nil
	}
	v, ok := procfs.ParseUint(t)
	if !ok {
		return 0, false, malformed(file, "want an unsigned integer or \"max\", got %q", truncate(data))
	}
	return v, false, nil
}

// keyed walks a flat keyed file ("key value" per line, as memory.stat,
// cpu.stat and cpuacct.stat are) and calls fn for each pair. It fails on a
// line that is not two fields with an unsigned integer value.
func keyed(file string, data []byte, fn func(key []byte, v uint64)) error {
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		k, v, ok := bytes.Cut(line, []byte{' '})
		if !ok || len(k) == 0 {
			return malformed(file, "line %q is not \"key value\"", truncate(line))
		}
		n, ok := procfs.ParseUint(bytes.TrimSpace(v))
		if !ok {
			return malformed(file, "line %q has no unsigned integer value", truncate(line))
		}
		fn(k, n)
	}
	return nil
}

// parseDev parses a "MAJ:MIN" device number.
func parseDev(dev []byte) (major, minor uint32, ok bool) {
	a, b, found := bytes.Cut(dev, []byte{':'})
	if !found {
		return 0, 0, false
	}
	ma, ok1 := procfs.ParseUint(a)
	mi, ok2 := procfs.ParseUint(b)
	if !ok1 || !ok2 || ma > 1<<32-1 || mi > 1<<32-1 {
		return 0, 0, false
	}
	return uint32(ma), uint32(mi), true
}

// parseBlkio walks the Read and Write rows of blkio.throttle.io_service_bytes
// (v1): rows "MAJ:MIN Op bytes" and a final "Total bytes". fn is called for
// each Read row with (read, 0) and each Write row with (0, write).
func parseBlkio(file string, data []byte, fn func(major, minor uint32, read, write uint64)) error {
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		f0, rest, ok := bytes.Cut(line, []byte{' '})
		if !ok {
			return malformed(file, "line %q has one field", truncate(line))
		}
		if string(f0) == "Total" {
			if _, ok := procfs.ParseUint(bytes.TrimSpace(rest)); !ok {
				return malformed(file, "line %q has no unsigned integer total", truncate(line))
			}
			continue
		}
		op, val, ok := bytes.Cut(rest, []byte{' '})
		major, minor, devOK := parseDev(f0)
		if !ok || !devOK {
			return malformed(file, "line %q is not \"MAJ:MIN Op bytes\"", truncate(line))
		}
		n, ok := procfs.ParseUint(bytes.TrimSpace(val))
		if !ok {
			return malformed(file, "line %q has no unsigned integer value", truncate(line))
		}
		switch string(op) {
		case "Read":
			fn(major, minor, n, 0)
		case "Write":
			fn(major, minor, 0, n)
		}
	}
	return nil
}

// parseIOStat calls fn with the rbytes and wbytes of each device row of
// io.stat (v2): rows "MAJ:MIN key=value key=value ...".
func parseIOStat(file string, data []byte, fn func(major, minor uint32, read, write uint64)) error {
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		dev, rest, _ := bytes.Cut(line, []byte{' '})
		major, minor, ok := parseDev(dev)
		if !ok {
			return malformed(file, "line %q does not start with MAJ:MIN", truncate(line))
		}
		var read, write uint64
		for len(rest) > 0 {
			var kv []byte
			kv, rest, _ = bytes.Cut(rest, []byte{' '})
			if len(kv) == 0 {
				continue
			}
			k, v, ok := bytes.Cut(kv, []byte{'='})
			if !ok {
				return malformed(file, "field %q is not key=value", truncate(kv))
			}
			if string(k) != "rbytes" && string(k) != "wbytes" {
				continue
			}
			n, ok := procfs.ParseUint(v)
			if !ok {
				return malformed(file, "field %q has no unsigned integer value", truncate(kv))
			}
			if k[0] == 'r' {
				read = n
			} else {
				write = n
			}
		}
		fn(major, minor, read, write)
	}
	return nil
}

// parsePressure parses a cgroup v2 pressure file (cpu.pressure,
// memory.pressure, io.pressure): lines "some|full avg10=F avg60=F avg300=F
// total=N", total being the cumulative stall time in microseconds. Only the
// totals are kept; a file without a some line (PSI disabled) is malformed.
func parsePressure(file string, data []byte) (Pressure, error) {
	var p Pressure
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		kind, rest, _ := bytes.Cut(line, []byte{' '})
		var total uint64
		found := false
		for len(rest) > 0 {
			var kv []byte
			kv, rest, _ = bytes.Cut(rest, []byte{' '})
			k, v, ok := bytes.Cut(kv, []byte{'='})
			if !ok {
				return Pressure{}, malformed(file, "field %q is not key=value", truncate(kv))
			}
			if string(k) == "total" {
				if total, ok = procfs.ParseUint(v); !ok || total > (1<<64-1)/1000 {
					return Pressure{}, malformed(file, "field %q has no microsecond total", truncate(kv))
				}
				found = true
			}
		}
		if !found {
			return Pressure{}, malformed(file, "line %q has no total", truncate(line))
		}
		switch string(kind) {
		case "some":
			p.SomeNanos, p.HasSome = total*1000, true
		case "full":
			p.FullNanos, p.HasFull = total*1000, true
		default:
			return Pressure{}, malformed(file, "line %q is neither some nor full", truncate(line))
		}
	}
	if !p.HasSome {
		return Pressure{}, malformed(file, "no \"some\" line")
	}
	return p, nil
}

// parseNetDev calls fn for each interface row of /proc/<pid>/net/dev other
// than lo, with its received and transmitted byte counts. The first two lines
// are headers.
func parseNetDev(file string, data []byte, fn func(name []byte, rx, tx uint64)) error {
	for i := 0; i < 2; i++ {
		_, rest, ok := bytes.Cut(data, []byte{'\n'})
		if !ok {
			if i == 0 || len(bytes.TrimSpace(data)) != 0 {
				return malformed(file, "missing header lines")
			}
			return nil
		}
		data = rest
	}
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		name, counters, ok := bytes.Cut(line, []byte{':'})
		name = bytes.TrimSpace(name)
		if !ok || len(name) == 0 {
			return malformed(file, "line %q is not \"iface: counters\"", truncate(line))
		}
		var rx, tx uint64
		field := 0
		for len(counters) > 0 {
			counters = bytes.TrimLeft(counters, " ")
			if len(counters) == 0 {
				break
			}
			var f []byte
			f, counters, _ = bytes.Cut(counters, []byte{' '})
			n, ok := procfs.ParseUint(f)
			if !ok {
				return malformed(file, "interface %q: counter %q is not an unsigned integer", truncate(name), truncate(f))
			}
			switch field {
			case 0:
				rx = n
			case 8:
				tx = n
			}
			field++
		}
		if field < 16 {
			return malformed(file, "interface %q has %d counters, want 16", truncate(name), field)
		}
		if string(name) == "lo" {
			continue
		}
		fn(name, rx, tx)
	}
	return nil
}

// parseProcCgroup parses /proc/<pid>/cgroup ("ID:controllers:path" lines);
// any malformed line, or none at all, is an error naming file.
func parseProcCgroup(file string, data []byte) ([]procfs.CgroupLine, error) {
	lines, err := procfs.ParseCgroup(data)
	if err != nil {
		return nil, malformed(file, "%v", err)
	}
	return lines, nil
}

func truncate(b []byte) string {
	const max = 80
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}
