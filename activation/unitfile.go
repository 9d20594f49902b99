package activation

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/agentd-dev/agentd/internal/procfs"
)

// unitDirs are the directories systemd loads system unit files from, most
// specific first.
var unitDirs = []string{
	"/etc/systemd/system",
	"/run/systemd/system",
	"/usr/local/lib/systemd/system",
	"/usr/lib/systemd/system",
	"/lib/systemd/system",
}

// maskedListens finds the Listen entries of a masked socket unit, whose
// Listen property systemd leaves empty: it reads the first unit file named
// unit in the standard directories under root that is not the mask itself
// (a link to /dev/null or an empty file). It returns nil when there is none.
// Symlinks (unit dirs link to files elsewhere) resolve inside root, never
// through the host's root: see procfs.OpenInRoot.
func maskedListens(root, unit string) []Listen {
	for _, dir := range unitDirs {
		name := filepath.Join(dir, unit)
		if target, err := os.Readlink(filepath.Join(root, name)); err == nil && target == "/dev/null" {
			continue
		}
		data, err := readInRoot(root, name)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		return parseSocketUnitListens(data)
	}
	return nil
}

// parseSocketUnitListens returns the ListenStream= entries of the [Socket]
// section of a socket unit file as Listen values of type "Stream". Other
// sections, comments, continuation lines and other keys are ignored; an
// empty assignment resets the list, as systemd does.
func parseSocketUnitListens(data []byte) []Listen {
	var out []Listen
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = line[1 : len(line)-1]
			continue
		}
		if section != "Socket" {
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(key) != "ListenStream" {
			continue
		}
		val = strings.TrimSpace(val)
		if val == "" {
			out = nil
			continue
		}
		if addr, ok := expandSpecifiers(val); ok {
			out = append(out, Listen{Type: "Stream", Address: addr})
		}
	}
	return out
}

// expandSpecifiers expands the unit file specifiers a system socket path
// uses: %t (the runtime directory, /run for the system manager) and %%. A
// value with any other specifier cannot be resolved here and is refused.
func expandSpecifiers(v string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 >= len(v) {
			return "", false
		}
		i++
		switch v[i] {
		case '%':
			b.WriteByte('%')
		case 't':
			b.WriteString("/run")
		default:
			return "", false
		}
	}
	return b.String(), true
}

// maxUnitFile bounds what readInRoot reads of a unit file.
const maxUnitFile = 1 << 20

// readInRoot reads the file rel inside root, resolved in one kernel step
// (procfs.OpenInRoot): a link planted or swapped in by whoever owns root
// cannot make agentd read a host file instead.
func readInRoot(root, rel string) ([]byte, error) {
	f, err := procfs.OpenInRoot(root, rel, os.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxUnitFile))
}
