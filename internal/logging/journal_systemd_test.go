package logging

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
)

// TestJournaldOnSystemdHost runs testdata/journalprobe as a transient unit
// of the testbed's real systemd (StandardError=journal) and reads its entries
// back with journalctl: New must detect the journal stream and send native
// entries with the mapped fields, and the suppressor's summary must follow.
func TestJournaldOnSystemdHost(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	host := testbed.SystemdHostName()
	bin := filepath.Join(t.TempDir(), "journalprobe")
	build := exec.Command("go", "build", "-o", bin, "./testdata/journalprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build probe: %v\n%s", err, out)
	}
	id := fmt.Sprintf("probe-%d", time.Now().UnixNano())
	dst := "/var/tmp/agentd-" + id
	f, err := os.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cp := exec.Command("docker", "exec", "-i", host, "sh", "-c", "cat > "+dst+" && chmod 0755 "+dst)
	cp.Stdin = f
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("copy probe: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("docker", "exec", host, "rm", "-f", dst).Run() })

	testbed.Run(t, "docker", "exec", host, "systemd-run", "--wait", "--quiet", "--unit", "agentd-"+id,
		"-p", "StandardError=journal", "-p", "StandardOutput=journal", dst, id)

	var entries []map[string]any
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		out := testbed.Run(t, "docker", "exec", host, "journalctl", "-o", "json", "--no-pager", "ENGINE_TYPE=podman", "ENGINE_ID="+id)
		entries = entries[:0]
		for _, line := range strings.Split(out, "\n") {
			var e map[string]any
			if json.Unmarshal([]byte(line), &e) == nil {
				entries = append(entries, e)
			}
		}
		if len(entries) >= 5 {
			break
		}
	}
	if len(entries) != 5 {
		t.Fatalf("journal has %d entries for %s, want engine found + 3 export failures + 1 summary: %v", len(entries), id, entries)
	}
	for _, tc := range []struct {
		name  string
		entry map[string]any
		want  map[string]string
	}{
		{"engine found carries the mapped fields", entries[0], map[string]string{
			"MESSAGE": "engine found", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "agentd", "_TRANSPORT": "journal",
			"ENGINE_TYPE": "podman", "ENGINE_ID": id, "ENGINE_PREFIX": "th", "UNIT": "podman.socket",
			"CONTAINER_ID": "c0ffee", "MESSAGE_ID": MessageIDEngineFound, "CODE_FUNC": "main.main",
		}},
		{"an error carries ERROR and priority err", entries[1], map[string]string{
			"MESSAGE": "export failed", "PRIORITY": "3", "ERROR": "connection refused", "MESSAGE_ID": MessageIDExportFailure,
		}},
		{"repeats beyond the burst are summarised", entries[4], map[string]string{
			"MESSAGE": "suppressed 7 repeats", "PRIORITY": "3", "MESSAGE_ID": MessageIDSuppressed,
			"REPEATED_MESSAGE": "export failed", "REPEATED_MESSAGE_ID": MessageIDExportFailure, "SUPPRESSED": "7",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.want {
				if got, _ := tc.entry[k].(string); got != v {
					t.Errorf("%s=%q, want %q", k, got, v)
				}
			}
			if file, _ := tc.entry["CODE_FILE"].(string); !strings.HasSuffix(file, "journalprobe/main.go") && tc.entry["MESSAGE_ID"] != MessageIDSuppressed {
				t.Errorf("CODE_FILE=%q", file)
			}
		})
	}
}
