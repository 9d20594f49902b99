package packaging_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/internal/testbed"
)

// maxExposure is the target for `systemd-analyze security agentd.service`.
const maxExposure = 4.0

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func TestDefaultConfigShowsTheBuiltInDefaults(t *testing.T) {
	data, err := os.ReadFile("agentd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("the shipped file, all commented out, loads as the defaults", func(t *testing.T) {
		cfg, err := config.Parse("agentd.yaml", data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(cfg.Export, config.Default().Export) || cfg.Log != config.Default().Log {
			t.Fatalf("got %+v", cfg)
		}
	})
	t.Run("the file with every setting uncommented is valid and equals the defaults", func(t *testing.T) {
		body := string(data)
		_, body, _ = strings.Cut(body, "\n\n") // the header is prose
		var b strings.Builder
		for _, line := range strings.Split(body, "\n") {
			b.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "# "), "#") + "\n")
		}
		cfg, err := config.Parse("uncommented.yaml", []byte(b.String()))
		if err != nil {
			t.Fatalf("%v\n%s", err, b.String())
		}
		want := config.Default()
		// Empty lists and maps decode as empty, not nil: compare what has a value.
		if cfg.Export.Interval != want.Export.Interval || cfg.Events != want.Events ||
			cfg.Discovery.Interval != want.Discovery.Interval || cfg.Discovery.ProcRoot != want.Discovery.ProcRoot || cfg.Discovery.GracePeriod != want.Discovery.GracePeriod ||
			cfg.Engines != want.Engines ||
			cfg.Activation.Enabled != want.Activation.Enabled || len(cfg.Activation.SocketSuffixes) != len(want.Activation.SocketSuffixes) ||
			cfg.Status != want.Status || cfg.Log != want.Log || cfg.Export.Endpoint != want.Export.Endpoint ||
			cfg.Export.Insecure != want.Export.Insecure || cfg.Export.Compression != want.Export.Compression ||
			len(cfg.Export.Headers)+len(cfg.Labels.Allowlist)+len(cfg.Filters.IncludeEngines)+len(cfg.Filters.ExcludeEngines)+
				len(cfg.Filters.ExcludeImages)+len(cfg.Activation.ExcludeUnits)+len(cfg.Discovery.IncludeEndpoints)+len(cfg.Discovery.ExcludeEndpoints) != 0 {
			t.Fatalf("uncommented defaults differ:\n got %+v\nwant %+v", cfg, want)
		}
	})
}

func TestVersionIsValidForDebianAndRPM(t *testing.T) {
	// VERSION as make passes it (raw `git describe`), as a user sets it, or unset.
	tests := []struct{ name, in, want string }{
		{"an unset VERSION comes from git describe", "", ""},
		{"a bare commit with a leading digit is not taken for a version", "0d9f8ae", "0.0.0~dev+0d9f8ae"},
		{"a bare commit with a leading letter is made a version", "abc1234-dirty", "0.0.0~dev+abc1234.dirty"},
		{"a release tag loses its v", "v1.2.3", "1.2.3"},
		{"commits after a tag become build metadata", "v1.2.3-4-gabc1234-dirty", "1.2.3+4.gabc1234.dirty"},
		{"a release candidate sorts before the release", "v1.3.0-rc1", "1.3.0~rc1"},
		{"a valid version is kept as given", "0.0.1~test1", "0.0.1~test1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("bash", "version.sh")
			cmd.Env = append(os.Environ(), "VERSION="+tt.in)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("VERSION=%q version.sh: %v: %s", tt.in, err, out)
			}
			v := strings.TrimSpace(string(out))
			if tt.want != "" && v != tt.want {
				t.Fatalf("VERSION=%q: got %q, want %q", tt.in, v, tt.want)
			}
			if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(v) {
				t.Fatalf("version %q has characters Debian or RPM reject", v)
			}
			if err := exec.Command("dpkg", "--compare-versions", v, "gt", "0~").Run(); err != nil {
				t.Fatalf("dpkg does not accept %q", v)
			}
		})
	}
}

// pkgs is one build of the packages.
type pkgs struct{ deb, rpm string }

// build runs packaging/build.sh, which builds the real agentd from
// ./cmd/agentd with version stamped in, and packages it into dir. A build
// failure fails the test.
func build(t *testing.T, version, dir string) pkgs {
	t.Helper()
	testbed.BuildPackages(t, repoRoot(t), version, dir)
	// The packaged binary leaves gRPC's x/net/trace out (see GO_TAGS in the
	// Makefile): 3 MB of resident memory.
	bin := filepath.Join(repoRoot(t), "dist", "build", "agentd")
	if out, err := exec.Command("go", "version", "-m", bin).CombinedOutput(); err != nil {
		t.Fatalf("go version -m %s: %v\n%s", bin, err, out)
	} else if !strings.Contains(string(out), "-tags=grpcnotrace") {
		t.Errorf("%s was not built with -tags grpcnotrace:\n%s", bin, out)
	}
	return pkgs{
		deb: filepath.Join(dir, "agentd_"+version+"_amd64.deb"),
		rpm: filepath.Join(dir, "agentd-"+version+".x86_64.rpm"),
	}
}

// sysHost is a Docker container that boots systemd: the testbed's systemd
// host, or a private one a test starts.
type sysHost struct{ name string }

// run runs a shell script in the host and returns its trimmed combined output.
func (h sysHost) run(script string) (string, error) {
	out, err := exec.Command("docker", "exec", h.name, "sh", "-c", script).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// must runs a shell script in the host and fails t when it fails.
func (h sysHost) must(t *testing.T, script string) string {
	t.Helper()
	out, err := h.run(script)
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", h.name, script, err, out)
	}
	return out
}

// copy copies a host file into the systemd host (docker cp cannot write
// below the tmpfs mounts systemd puts there).
func (h sysHost) copy(t *testing.T, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("docker", "exec", "-i", h.name, "sh", "-c", "cat > "+dst)
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("copy %s to %s:%s: %v\n%s", src, h.name, dst, err, out)
	}
}

// write writes content to path in the host.
func (h sysHost) write(t *testing.T, path, content string) {
	t.Helper()
	cmd := exec.Command("docker", "exec", "-i", h.name, "sh", "-c", "mkdir -p \"$(dirname "+path+")\" && cat > "+path)
	cmd.Stdin = strings.NewReader(content)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("write %s:%s: %v\n%s", h.name, path, err, out)
	}
}

// mark returns the cursor of the journal's newest entry: journal(t, mark)
// reads what came after it (the journal keeps entries of earlier test runs).
func (h sysHost) mark(t *testing.T) string {
	t.Helper()
	out := h.must(t, "journalctl -n 0 --show-cursor -q | tail -n 1")
	cursor, ok := strings.CutPrefix(out, "-- cursor: ")
	if !ok {
		t.Fatalf("in %s: no journal cursor in %q", h.name, out)
	}
	return cursor
}

// show returns one property of agentd.service.
func (h sysHost) show(t *testing.T, prop string) string {
	t.Helper()
	return h.must(t, "systemctl show -p "+prop+" --value agentd.service")
}

// waitFor polls cond every 200 ms until it holds or timeout passes, then
// fails t with agentd's status and journal.
func (h sysHost) waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if cond() {
			return
		}
	}
	status, _ := h.run("systemctl status --no-pager agentd.service; journalctl -u agentd --no-pager -n 40")
	t.Fatalf("in %s: %s: not within %v\n%s", h.name, what, timeout, status)
}

// waitState polls `systemctl is-active agentd` until it prints want.
func (h sysHost) waitState(t *testing.T, want string) {
	t.Helper()
	h.waitFor(t, 30*time.Second, "agentd.service "+want, func() bool {
		got, _ := h.run("systemctl is-active agentd.service")
		return got == want
	})
}

// install installs a .deb already copied to path in the host.
func (h sysHost) install(t *testing.T, path string) {
	t.Helper()
	h.must(t, "DEBIAN_FRONTEND=noninteractive dpkg -i "+path+" </dev/null")
}

// journal returns agentd.service's journal entries after the cursor (from
// mark) that match the journalctl arguments, decoded.
func (h sysHost) journal(t *testing.T, cursor string, matches ...string) []map[string]any {
	t.Helper()
	entries, err := testbed.JournalEntries(h.must(t, "journalctl -u agentd.service --no-pager -o json --after-cursor '"+cursor+"' "+strings.Join(matches, " ")))
	if err != nil {
		t.Fatal(err)
	}
	return entries
}

// field renders a journal field.
var field = testbed.JournalField

// messages joins the MESSAGE fields of entries, one a line.
func messages(entries []map[string]any) string {
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(field(e, "MESSAGE") + "\n")
	}
	return b.String()
}

// restoreEngines stops the engine services of h that agentd's socket
// activation started during the test, so the systemd host is back to
// "sockets listening, services not running" for other tests.
func restoreEngines(t *testing.T, h sysHost) {
	t.Helper()
	var inactive []string
	for _, u := range []string{"docker.service", "containerd.service"} {
		if out, _ := h.run("systemctl is-active " + u); out != "active" {
			inactive = append(inactive, u)
		}
	}
	t.Cleanup(func() {
		if len(inactive) > 0 {
			if out, err := h.run("systemctl stop " + strings.Join(inactive, " ")); err != nil {
				t.Errorf("restore %s: %v: %s", strings.Join(inactive, ", "), err, out)
			}
		}
	})
}

// testConfig is the agentd.yaml the lifecycle test installs: OTLP to the
// collector on the unix socket at /run/agentd-otel.sock inside the systemd
// host, exported every 2 s.
const testConfig = `# edited by TestDebLifecycleOnSystemdHost
export:
  endpoint: unix:///run/agentd-otel.sock
  insecure: true
  interval: 2s
`

func TestDebLifecycleOnSystemdHost(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.SystemdHost, testbed.Collector)
	h := sysHost{testbed.SystemdHostName()}
	dir := t.TempDir()
	v1 := build(t, "0.0.1~test1", filepath.Join(dir, "v1"))
	v2 := build(t, "0.0.2~test2", filepath.Join(dir, "v2"))

	restoreEngines(t, h)
	// The collector outlives agentd (cleanups run last first): agentd's
	// final flush on every stop reaches it.
	sock := fmt.Sprintf("/proc/%d/root/run/agentd-otel.sock", testbed.SystemdHostPID(t))
	col := testbed.StartCollector(t, testbed.WithUnixSocket(sock))
	t.Cleanup(func() {
		if out, err := h.run("dpkg -P agentd; rm -f /var/tmp/agentd_*.deb; rm -rf /etc/systemd/system/agentd.service.d; " +
			"systemctl daemon-reload; systemctl reset-failed agentd.service 2>/dev/null; true"); err != nil {
			t.Errorf("cleanup: %v: %s", err, out)
		}
	})
	h.must(t, "dpkg -P agentd >/dev/null 2>&1; rm -rf /etc/systemd/system/agentd.service.d; systemctl daemon-reload; systemctl reset-failed agentd.service 2>/dev/null; true")
	h.copy(t, v1.deb, "/var/tmp/agentd_1.deb")
	h.copy(t, v2.deb, "/var/tmp/agentd_2.deb")
	installed := h.mark(t)

	t.Run("install starts the real agentd, which reports READY to systemd", func(t *testing.T) {
		h.install(t, "/var/tmp/agentd_1.deb")
		h.waitState(t, "active")
		if out := h.must(t, "agentd version"); out != "agentd 0.0.1~test1" {
			t.Errorf("installed binary: %q", out)
		}
		props := h.must(t, "systemctl show -p Type,NRestarts,WatchdogUSec,Restart,RestartPreventExitStatus,UnitFileState,NotifyAccess,StatusText agentd.service")
		for _, want := range []string{"Type=notify", "NRestarts=0", "WatchdogUSec=30s", "Restart=on-failure",
			"RestartPreventExitStatus=2", "UnitFileState=enabled", "NotifyAccess=main"} {
			if !strings.Contains(props, want) {
				t.Errorf("missing %s in\n%s", want, props)
			}
		}
		sock := h.must(t, "systemctl is-active agentd.socket; stat -c '%a %U %F' /run/agentd/agentd.sock")
		if sock != "active\n660 root socket" {
			t.Errorf("agentd.socket: %q", sock)
		}
	})

	t.Run("the journal has the engine found entry for the socket-activated podman with its fields", func(t *testing.T) {
		var found map[string]any
		h.waitFor(t, 60*time.Second, "a journal entry ENGINE_TYPE=podman MESSAGE_ID=engine found", func() bool {
			for _, e := range h.journal(t, installed, "ENGINE_TYPE=podman") {
				if field(e, "MESSAGE") == "engine found" {
					found = e
					return true
				}
			}
			return false
		})
		for k, want := range map[string]string{
			"ENGINE_TYPE":       "podman",
			"MESSAGE_ID":        logging.MessageIDEngineFound,
			"SYSLOG_IDENTIFIER": "agentd",
			"_SYSTEMD_UNIT":     "agentd.service",
		} {
			if got := field(found, k); got != want {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
		if id := field(found, "ENGINE_ID"); !strings.HasPrefix(id, "podman:") || !strings.HasSuffix(id, "/run/podman/podman.sock") {
			t.Errorf("ENGINE_ID = %q, want the podman socket of the systemd host", id)
		}
	})

	t.Run("the hardened unit reaches a rootless user's podman.socket over the user's own bus", func(t *testing.T) {
		u := testbed.NewRootlessUser(t)
		h.waitFor(t, 2*time.Minute, "a journal entry engine found for "+u.PodmanSocket(), func() bool {
			for _, e := range h.journal(t, installed, "ENGINE_TYPE=podman") {
				if field(e, "MESSAGE") == "engine found" && strings.HasSuffix(field(e, "ENGINE_ID"), u.PodmanSocket()) {
					return true
				}
			}
			return false
		})
	})

	t.Run("as a service without a collector agentd says once what to set, prints no tables and sums up in its status line", func(t *testing.T) {
		line := regexp.MustCompile(`^[0-9]+ engines? up(, [0-9]+ down)?, [0-9]+ running containers?; not exporting \(no OTLP endpoint configured\)$`)
		h.waitFor(t, 30*time.Second, "the status line to sum up the engines", func() bool {
			return line.MatchString(h.show(t, "StatusText"))
		})
		var warned int
		for _, e := range h.journal(t, installed) {
			msg := field(e, "MESSAGE")
			if strings.Contains(msg, "RUNNING") && strings.Contains(msg, "ENDPOINT") {
				t.Errorf("a table in the journal: %q", msg)
			}
			if strings.Contains(msg, "no OTLP endpoint configured") {
				warned++
				if !strings.Contains(msg, "export.endpoint") || field(e, "PRIORITY") != "4" {
					t.Errorf("the no-endpoint entry (PRIORITY %s) does not say what to set: %q", field(e, "PRIORITY"), msg)
				}
			}
		}
		if warned != 1 {
			t.Errorf("%d entries say no endpoint is configured, want 1", warned)
		}
	})

	t.Run("journalctl ENGINE_TYPE=podman has the entries of discovery, activation and watch", func(t *testing.T) {
		// A watch that goes well is quiet at INFO; a restart of the engine
		// is what an operator looks for: the watch's lines say it broke
		// off and resynced.
		h.must(t, "systemctl restart podman.service")
		h.waitFor(t, 30*time.Second, "entries of all three packages", func() bool {
			files := map[string]bool{}
			for _, e := range h.journal(t, installed, "ENGINE_TYPE=podman") {
				for _, pkg := range []string{"/discovery/", "/activation/", "/watch/"} {
					if strings.Contains(field(e, "CODE_FILE"), pkg) {
						files[pkg] = true
					}
				}
			}
			return len(files) == 3
		})
	})

	t.Run("agentd rode out the restart of podman.service without a crash", func(t *testing.T) {
		// Restart=on-failure would hide a crash from the other subtests:
		// the unit is active again seconds later.
		if n := h.show(t, "NRestarts"); n != "0" {
			crash, _ := h.run("journalctl -u agentd.service --no-pager -o cat --after-cursor '" + installed + "' | " +
				"grep -m1 -B20 -A80 -E '^(panic:|fatal error:|SIGABRT|SIGQUIT|SIGSEGV)|Watchdog timeout'")
			t.Fatalf("agentd.service restarted %s times; the first crash in its journal:\n%s", n, crash)
		}
	})

	t.Run("journalctl -x explains the engine found entry from the packaged catalog", func(t *testing.T) {
		// Only the catalogued entries: a journal that also holds a
		// goroutine dump must not push them out of sight.
		out := h.must(t, "journalctl -x -u agentd.service --no-pager MESSAGE_ID="+logging.MessageIDEngineFound)
		for _, want := range []string{"agentd watches a container engine: podman", "To see everything agentd logs about this engine"} {
			if !strings.Contains(out, want) {
				t.Errorf("journalctl -x lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("under the hardened unit agentd logs no permission errors", func(t *testing.T) {
		// Discovery (/proc/*/fd, /proc/*/root), D-Bus and the engines have
		// all run by now: the engine found entry above needs each of them.
		for _, e := range h.journal(t, installed, "-p", "warning") {
			msg := strings.ToLower(field(e, "MESSAGE") + " " + field(e, "ERROR"))
			for _, bad := range []string{"permission denied", "operation not permitted", "access denied", "read-only file system"} {
				if strings.Contains(msg, bad) {
					t.Errorf("journal: %s", field(e, "MESSAGE")+" "+field(e, "ERROR"))
				}
			}
		}
		caps := h.show(t, "CapabilityBoundingSet")
		for _, c := range []string{"cap_sys_ptrace", "cap_dac_read_search", "cap_dac_override", "cap_syslog", "cap_setuid", "cap_setgid"} {
			if !strings.Contains(caps, c) {
				t.Errorf("CapabilityBoundingSet=%s lacks %s", caps, c)
			}
		}
		if got := h.show(t, "ProtectKernelLogs"); got != "no" {
			t.Errorf("ProtectKernelLogs=%s: it would block /dev/kmsg", got)
		}
	})

	t.Run("the hardened unit's exposure is within the target", func(t *testing.T) {
		out := h.must(t, "systemd-analyze security --no-pager agentd.service | tail -1")
		m := regexp.MustCompile(`exposure level for agentd\.service: ([0-9.]+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no exposure in %q", out)
		}
		score, _ := strconv.ParseFloat(m[1], 64)
		t.Logf("systemd-analyze security agentd.service: %.1f", score)
		if score > maxExposure {
			t.Fatalf("exposure %.1f above the target %.1f", score, maxExposure)
		}
	})

	var exported map[string]string // the container's resource attributes
	t.Run("a podman container of the systemd host reaches the collector on the host over a unix socket", func(t *testing.T) {
		// The receiver's socket is bound through /proc/PID/root, so inside
		// the systemd host it is /run/agentd-otel.sock: no network between them.
		h.write(t, "/etc/agentd/agentd.yaml", testConfig)
		reloaded := h.mark(t)
		h.must(t, "systemctl reload agentd.service")
		h.waitState(t, "active")
		h.waitFor(t, 20*time.Second, "the reload in the journal", func() bool {
			// Filtered here: journalctl -u already matches on MESSAGE_ID
			// (coredumps), and another MESSAGE_ID= match mixes with it.
			for _, e := range h.journal(t, reloaded) {
				if field(e, "MESSAGE_ID") == logging.MessageIDConfigReload {
					return true
				}
			}
			return false
		})

		name := fmt.Sprintf("agentd-pkg-%d", rand.Uint32())
		t.Cleanup(func() { _, _ = h.run("podman rm -f -t 0 " + name) })
		h.must(t, "podman run -d --name "+name+" --label agentd.test="+name+" "+testbed.BusyboxImage+" sleep 300")
		want := map[string]string{
			"container.name":         name,
			"container.runtime.name": "podman",
			// Inside the systemd host agentd runs on that host: no prefix.
			"agentd.engine.prefix":              "",
			"agentd.engine.parent.container.id": "",
		}
		col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool {
			return m.Metric(want, "container.memory.usage") != nil
		})
		col.WaitLogs(t, 30*time.Second, func(l *testbed.Logs) bool {
			return len(l.Filter(func(r testbed.LogRecord) bool {
				return r.EventName == "container.start" && r.HasResource(want)
			})) > 0
		})
		exported = want
	})

	t.Run("the status line says where agentd exports and changes when an engine stops", func(t *testing.T) {
		var before string
		h.waitFor(t, 30*time.Second, "the status line to name the collector", func() bool {
			before = h.show(t, "StatusText")
			return strings.HasSuffix(before, "; exporting to unix:///run/agentd-otel.sock, last export ok")
		})
		t.Cleanup(func() { _, _ = h.run("systemctl start docker.socket") })
		h.must(t, "systemctl stop docker.socket docker.service")
		h.waitFor(t, 30*time.Second, "the status line to change", func() bool {
			return h.show(t, "StatusText") != before
		})
		t.Logf("status line %q, with Docker stopped %q", before, h.show(t, "StatusText"))
	})

	t.Run("that container is exported as one resource, not one per path to its engine", func(t *testing.T) {
		if exported == nil {
			testbed.Unavailable(t, "the export subtest failed")
		}
		time.Sleep(5 * time.Second) // two more export rounds
		m, err := col.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		res := m.ResourcesWith(exported)
		var engines []string
		for _, r := range res {
			engines = append(engines, r.Attrs["agentd.engine.id"])
		}
		if len(res) != 1 {
			t.Errorf("%d resources for container %s, want 1; engines %q", len(res), exported["container.name"], engines)
		}
	})

	t.Run("a ten-minute collector outage with container churn leaves at most a dozen journal lines", func(t *testing.T) {
		if exported == nil {
			testbed.Unavailable(t, "the export subtest failed")
		}
		outage := h.mark(t)
		up := col.Down(t)
		for end := time.Now().Add(10 * time.Minute); time.Now().Before(end); time.Sleep(30 * time.Second) {
			h.must(t, "podman run --rm "+testbed.BusyboxImage+" true")
		}
		up()
		h.waitFor(t, 60*time.Second, "the end of the export problem in the journal", func() bool {
			for _, e := range h.journal(t, outage) {
				if strings.HasSuffix(field(e, "MESSAGE"), "failing: resolved") {
					return true
				}
			}
			return false
		})
		entries := h.journal(t, outage)
		t.Logf("%d journal lines for the outage:\n%s", len(entries), messages(entries))
		if len(entries) > 12 {
			t.Errorf("%d journal lines, want at most 12", len(entries))
		}
	})

	t.Run("upgrade keeps the edited configuration and restarts the new version", func(t *testing.T) {
		pid1 := h.show(t, "MainPID")
		h.install(t, "/var/tmp/agentd_2.deb")
		h.waitState(t, "active")
		if out := h.must(t, "dpkg-query -W -f '${Version}' agentd"); out != "0.0.2~test2-1" {
			t.Errorf("installed version %q", out)
		}
		if out := h.must(t, "agentd version"); out != "agentd 0.0.2~test2" {
			t.Errorf("installed binary: %q", out)
		}
		if out := h.must(t, "cat /etc/agentd/agentd.yaml"); out != strings.TrimSpace(testConfig) {
			t.Errorf("edited configuration lost:\n%s", out)
		}
		h.waitFor(t, 10*time.Second, "a new MainPID", func() bool {
			pid2 := h.show(t, "MainPID")
			return pid2 != pid1 && pid2 != "0"
		})
	})

	t.Run("a broken configuration fails the unit once with the file, line and problem, without a restart loop", func(t *testing.T) {
		h.write(t, "/etc/agentd/agentd.yaml", "# broken on purpose\nexport: {interval: often}\n")
		t.Cleanup(func() {
			h.write(t, "/etc/agentd/agentd.yaml", testConfig)
			h.must(t, "systemctl reset-failed agentd.service; systemctl restart agentd.service")
			h.waitState(t, "active")
		})
		broke := h.mark(t)
		_, _ = h.run("systemctl restart agentd.service") // fails: the unit does not reach READY
		h.waitState(t, "failed")
		if got := h.show(t, "ExecMainStatus"); got != "2" {
			t.Errorf("ExecMainStatus=%s, want 2", got)
		}
		// Restart=on-failure would restart after RestartSec=5s: wait past it.
		time.Sleep(7 * time.Second)
		if got := h.show(t, "ActiveState") + " " + h.show(t, "NRestarts"); got != "failed 0" {
			t.Errorf("ActiveState NRestarts = %q, want \"failed 0\"", got)
		}
		msgs := messages(h.journal(t, broke))
		if !regexp.MustCompile(`/etc/agentd/agentd\.yaml:? line 2: "often" is not a duration`).MatchString(msgs) {
			t.Errorf("no journal line naming the file, line and problem:\n%s", msgs)
		}
		if n := strings.Count(msgs, `"often" is not a duration`); n != 1 {
			t.Errorf("the error is logged %d times, want once:\n%s", n, msgs)
		}
	})

	t.Run("the watchdog restarts agentd when its main loop stalls", func(t *testing.T) {
		h.write(t, "/etc/systemd/system/agentd.service.d/50-test-watchdog.conf", "[Service]\nWatchdogSec=6s\n")
		h.must(t, "cp /etc/default/agentd /var/tmp/agentd.default && echo AGENTD_TEST_HOOKS=1 >> /etc/default/agentd")
		t.Cleanup(func() {
			h.must(t, "mv /var/tmp/agentd.default /etc/default/agentd; rm -f /etc/systemd/system/agentd.service.d/50-test-watchdog.conf; "+
				"systemctl daemon-reload; systemctl restart agentd.service")
			h.waitState(t, "active")
		})
		h.must(t, "systemctl daemon-reload && systemctl restart agentd.service")
		h.waitState(t, "active")
		if got := h.show(t, "WatchdogUSec"); got != "6s" {
			t.Fatalf("WatchdogUSec=%s, want 6s from the drop-in", got)
		}
		pid1, restarts1 := h.show(t, "MainPID"), h.show(t, "NRestarts")
		stalled := h.mark(t)
		h.must(t, "systemctl kill --kill-who=main -s SIGUSR2 agentd.service")
		// Healthy() turns false within 10 s, then 6 s without a ping, then
		// RestartSec=5s.
		h.waitFor(t, 60*time.Second, "a restart by the watchdog", func() bool {
			pid2 := h.show(t, "MainPID")
			return h.show(t, "NRestarts") != restarts1 && pid2 != pid1 && pid2 != "0"
		})
		h.waitState(t, "active")
		n1, _ := strconv.Atoi(restarts1)
		if n2, _ := strconv.Atoi(h.show(t, "NRestarts")); n2 != n1+1 {
			t.Errorf("NRestarts %d -> %d, want one restart", n1, n2)
		}
		msgs := messages(h.journal(t, stalled))
		for _, want := range []string{"test hook: stalling the main loop", "Watchdog timeout (limit 6s)!"} {
			if !strings.Contains(msgs, want) {
				t.Errorf("journal lacks %q:\n%s", want, msgs)
			}
		}
	})

	t.Run("remove stops and disables the service and keeps the configuration", func(t *testing.T) {
		h.must(t, "dpkg -r agentd")
		if out, _ := h.run("systemctl is-active agentd.service agentd.socket"); out != "inactive\ninactive" {
			t.Errorf("after remove: %q", out)
		}
		h.must(t, "test -f /etc/agentd/agentd.yaml && test -f /etc/default/agentd && test ! -e /usr/bin/agentd")
		if out := h.must(t, "cat /etc/agentd/agentd.yaml"); out != strings.TrimSpace(testConfig) {
			t.Errorf("configuration changed by remove:\n%s", out)
		}
	})

	t.Run("reinstall after remove enables and starts again", func(t *testing.T) {
		h.install(t, "/var/tmp/agentd_2.deb")
		h.waitState(t, "active")
		if out := h.must(t, "systemctl is-enabled agentd.service"); out != "enabled" {
			t.Errorf("is-enabled %q", out)
		}
	})

	t.Run("purge removes the configuration", func(t *testing.T) {
		h.must(t, "dpkg -P agentd")
		out, _ := h.run("ls -d /etc/agentd /etc/default/agentd /var/lib/agentd /lib/systemd/system/agentd.service 2>&1")
		if strings.Count(out, "No such file") != 4 {
			t.Errorf("left behind: %s", out)
		}
		if out, _ := h.run("systemctl is-active agentd.service"); out != "inactive" {
			t.Errorf("after purge: %q", out)
		}
	})
}

// kmsgProbe runs in agentd.service's sandbox (ExecStartPost= shares the
// unit's mount namespace, capabilities, device policy and system call
// filter) and says whether /dev/kmsg can be read there.
const kmsgProbe = `[Service]
ExecStartPost=/bin/sh -c 'if head -n 1 /dev/kmsg >/dev/null; then echo "kmsg probe: readable"; else echo "kmsg probe: blocked"; fi'
`

// TestUnitReadsKernelLogOnSystemdHost proves that agentd.service's hardening
// leaves /dev/kmsg readable (OOM kill detection) and that
// ProtectKernelLogs=yes would not. The testbed's systemd host lacks
// CAP_SYSLOG and /dev/kmsg (Docker grants neither by default, and
// kernel.dmesg_restrict=1 needs the capability), so the test boots a private
// systemd host from the same image with both.
func TestUnitReadsKernelLogOnSystemdHost(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.SystemdHost)
	image := testbed.Run(t, "docker", "inspect", "-f", "{{.Config.Image}}", testbed.SystemdHostName())
	h := sysHost{fmt.Sprintf("agentd-pkg-kmsg-%d", rand.Uint32())}
	t.Cleanup(func() {
		if out, err := exec.Command("docker", "rm", "-f", h.name).CombinedOutput(); err != nil {
			t.Errorf("docker rm -f %s: %v: %s", h.name, err, out)
		}
	})
	testbed.Run(t, "docker", "run", "-d", "--name", h.name, "--hostname", h.name,
		"--label", "agentd.test=TestUnitReadsKernelLogOnSystemdHost",
		"--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE", "--cap-add", "SYSLOG",
		"--device", "/dev/kmsg:/dev/kmsg:r",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
		"--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
		image, "/lib/systemd/systemd")
	h.waitFor(t, 60*time.Second, "systemd to finish booting", func() bool {
		s, _ := h.run("systemctl is-system-running")
		return s == "running" || s == "degraded"
	})
	// This host has no storage for engines: keep agentd from activating them.
	h.must(t, "systemctl mask --now docker.socket podman.socket docker.service podman.service containerd.service")

	p := build(t, "0.0.1~test1", t.TempDir())
	h.copy(t, p.deb, "/var/tmp/agentd.deb")
	h.install(t, "/var/tmp/agentd.deb")
	h.waitState(t, "active")

	probe := func(t *testing.T, dropIn string) string {
		t.Helper()
		h.write(t, "/etc/systemd/system/agentd.service.d/50-test-kmsg.conf", kmsgProbe+dropIn)
		restarted := h.mark(t)
		h.must(t, "systemctl daemon-reload && systemctl restart agentd.service")
		h.waitState(t, "active")
		var got string
		h.waitFor(t, 10*time.Second, "the kmsg probe's verdict", func() bool {
			m := messages(h.journal(t, restarted))
			switch {
			case strings.Contains(m, "kmsg probe: readable"):
				got = "readable"
			case strings.Contains(m, "kmsg probe: blocked"):
				got = "blocked"
			}
			return got != ""
		})
		return got
	}
	t.Run("the shipped unit can read /dev/kmsg with CAP_SYSLOG", func(t *testing.T) {
		if got := probe(t, ""); got != "readable" {
			t.Errorf("/dev/kmsg is %s under the shipped unit", got)
		}
		status := h.must(t, "grep CapEff /proc/$(systemctl show -p MainPID --value agentd.service)/status")
		eff, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(status, "CapEff:")), 16, 64)
		if err != nil {
			t.Fatalf("%q: %v", status, err)
		}
		const capSyslog = 34
		if eff&(1<<capSyslog) == 0 {
			t.Errorf("agentd's effective capabilities %#x lack CAP_SYSLOG", eff)
		}
	})
	t.Run("ProtectKernelLogs=yes would block it", func(t *testing.T) {
		if got := probe(t, "ProtectKernelLogs=yes\n"); got != "blocked" {
			t.Errorf("/dev/kmsg is %s with ProtectKernelLogs=yes", got)
		}
	})
}

func TestRPMLayoutAndScratchInstall(t *testing.T) {
	testbed.Require(t, testbed.Root)
	if _, err := exec.LookPath("rpm"); err != nil {
		testbed.Unavailable(t, "rpm is not installed (apt-get install rpm)")
	}
	dir := t.TempDir()
	p := build(t, "0.0.1~test1", filepath.Join(dir, "out"))

	out, err := exec.Command("rpm", "-qp", "--scripts", "--requires", "--list", p.rpm).CombinedOutput()
	if err != nil {
		t.Fatalf("rpm -qp: %v\n%s", err, out)
	}
	for _, want := range []string{
		"/usr/bin/agentd", "/usr/lib/systemd/system/agentd.service", "/usr/lib/systemd/system/agentd.socket",
		"/usr/lib/systemd/catalog/agentd.catalog", "/etc/agentd/agentd.yaml", "/etc/sysconfig/agentd",
		"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet",
		`if [ "$1" -eq 1 ]`, `if [ "$1" -eq 0 ]`, "systemctl try-restart agentd.service",
	} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("rpm -qp output lacks %q", want)
		}
	}
	if bytes.Contains(out, []byte("/etc/default/agentd")) || bytes.Contains(out, []byte("/lib/systemd/system/agentd.service\n/")) && !bytes.Contains(out, []byte("/usr/lib/systemd")) {
		t.Errorf("rpm carries deb-only paths:\n%s", out)
	}
	cfg, err := exec.Command("rpm", "-qp", "--configfiles", p.rpm).CombinedOutput()
	if err != nil || !bytes.Contains(cfg, []byte("/etc/agentd/agentd.yaml")) || !bytes.Contains(cfg, []byte("/etc/sysconfig/agentd")) {
		t.Errorf("config files: %v %s", err, cfg)
	}

	// Install into a scratch root whose only tools are busybox applets:
	// the scriptlets must run without systemd or systemctl.
	scratch := filepath.Join(dir, "root")
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox (busybox-static) is needed for the scratch root's /bin/sh: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(scratch, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(scratch, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"sh", "mkdir", "rm", "touch", "test", "["} {
		if err := os.Symlink("busybox", filepath.Join(scratch, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"--root", scratch, "--initdb"},
		{"-i", "--nodeps", "--root", scratch, p.rpm},
		{"-V", "--root", scratch, "agentd"},
		{"-e", "--root", scratch, "agentd"},
	} {
		out, err := exec.Command("rpm", args...).CombinedOutput()
		if err != nil || bytes.Contains(out, []byte("scriptlet failed")) || bytes.Contains(out, []byte("error")) {
			t.Fatalf("rpm %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if args[0] == "-i" {
			for _, f := range []string{"usr/bin/agentd", "usr/lib/systemd/system/agentd.service", "etc/agentd/agentd.yaml", "etc/sysconfig/agentd"} {
				if _, err := os.Stat(filepath.Join(scratch, f)); err != nil {
					t.Errorf("after rpm -i: %v", err)
				}
			}
			// The packaged binary is the real agentd from ./cmd/agentd.
			out, err := exec.Command(filepath.Join(scratch, "usr/bin/agentd"), "version").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "agentd 0.0.1~test1" {
				t.Errorf("packaged agentd version: %v: %q", err, out)
			}
		}
	}
}
