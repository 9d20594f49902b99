package telemetry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/agentd-dev/agentd/internal/logging"
)

// diskQueue keeps each queued request in a file of its own under dir until it
// is delivered, so that the requests an agentd could not send are sent by the
// next one (after a restart or a reboot). A file is
//
//	"AGQ1" | uint32 length | uint32 CRC-32C of the payload | payload
//
// (big endian), named SEQUENCE.SIGNAL.otlp with a 20-digit sequence number,
// written as .tmp and renamed, so a crash leaves a whole file or a .tmp that
// the next start removes. A file that does not read back (truncated, wrong
// magic, length or checksum, unknown signal) is moved aside as NAME.corrupt
// and logged; it never stops the others. Methods are safe for concurrent use.
type diskQueue struct {
	dir string
	log *slog.Logger

	mu  sync.Mutex
	seq uint64
}

const (
	diskMagic  = "AGQ1"
	diskHeader = 12
	diskSuffix = ".otlp"
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// openDiskQueue creates dir (0700) when missing.
func openDiskQueue(dir string, log *slog.Logger) (*diskQueue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("export queue directory %s: %w", dir, err)
	}
	return &diskQueue{dir: dir, log: log}, nil
}

// encodeDiskFile returns the file content of payload.
func encodeDiskFile(payload []byte) []byte {
	b := make([]byte, diskHeader, diskHeader+len(payload))
	copy(b, diskMagic)
	binary.BigEndian.PutUint32(b[4:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[8:], crc32.Checksum(payload, crcTable))
	return append(b, payload...)
}

// decodeDiskFile returns the payload of a file's content, or what is wrong
// with it.
func decodeDiskFile(b []byte) ([]byte, error) {
	if len(b) < diskHeader {
		return nil, fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), diskHeader)
	}
	if string(b[:4]) != diskMagic {
		return nil, fmt.Errorf("magic %q, want %q", b[:4], diskMagic)
	}
	n := binary.BigEndian.Uint32(b[4:])
	if uint64(len(b)-diskHeader) != uint64(n) {
		return nil, fmt.Errorf("header says %d payload bytes, file has %d", n, len(b)-diskHeader)
	}
	p := b[diskHeader:]
	if got, want := crc32.Checksum(p, crcTable), binary.BigEndian.Uint32(b[8:]); got != want {
		return nil, fmt.Errorf("checksum %08x, header says %08x", got, want)
	}
	return p, nil
}

// write stores payload as the newest request of signal and returns its
// file name.
func (d *diskQueue) write(signal string, payload []byte) (string, error) {
	d.mu.Lock()
	d.seq++
	name := fmt.Sprintf("%020d.%s%s", d.seq, signal, diskSuffix)
	d.mu.Unlock()
	path := filepath.Join(d.dir, name)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return "", fmt.Errorf("export queue file %s: %w", tmp, err)
	}
	_, err = f.Write(encodeDiskFile(payload))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("export queue file %s: %w", path, err)
	}
	return name, nil
}

// remove deletes a delivered request's file.
func (d *diskQueue) remove(name string) {
	if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		d.log.Warn("export queue: remove a delivered request's file", logging.Err(err))
	}
}

// replay reads the requests a previous run left, oldest first, and the
// signals of the files it moved aside as corrupt. Later writes are numbered
// after them.
func (d *diskQueue) replay() (items []*queued, corrupt []string) {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		d.log.Warn("export queue: read the queue directory", "dir", d.dir, logging.Err(err))
		return nil, nil
	}
	type file struct {
		seq    uint64
		signal string
		name   string
	}
	var files []file
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") {
			_ = os.Remove(filepath.Join(d.dir, name)) // a write that did not finish
			continue
		}
		base, ok := strings.CutSuffix(name, diskSuffix)
		if !ok || !e.Type().IsRegular() {
			continue // .corrupt files and anything else are left alone
		}
		seqText, signal, _ := strings.Cut(base, ".")
		seq, err := strconv.ParseUint(seqText, 10, 64)
		if err != nil || (signal != SignalMetrics && signal != SignalEvents) {
			d.moveAside(name, "unknown", fmt.Errorf("name is not SEQUENCE.{%s,%s}%s", SignalMetrics, SignalEvents, diskSuffix))
			corrupt = append(corrupt, "unknown")
			continue
		}
		files = append(files, file{seq, signal, name})
		d.seq = max(d.seq, seq)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].seq < files[j].seq })
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(d.dir, f.name))
		if err == nil {
			var p []byte
			if p, err = decodeDiskFile(b); err == nil {
				items = append(items, &queued{signal: f.signal, data: p, file: f.name})
				continue
			}
		}
		d.moveAside(f.name, f.signal, err)
		corrupt = append(corrupt, f.signal)
	}
	return items, corrupt
}

// moveAside renames a file that does not read back to NAME.corrupt.
func (d *diskQueue) moveAside(name, signal string, why error) {
	path := filepath.Join(d.dir, name)
	if err := os.Rename(path, path+".corrupt"); err != nil {
		d.log.Error("export queue: move a corrupt file aside", "file", path, logging.Err(err))
	}
	d.log.Warn("export queue: a queued request does not read back, moved aside (counted in agentd.export.dropped, reason corrupt)",
		"file", path+".corrupt", "signal", signal, logging.Err(why))
}
