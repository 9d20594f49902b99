package packaging_test

import (
	"bytes"
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
		if cfg.Export.Interval != want.Export.Interval || cfg.Events != want.Events || cfg.Discovery != want.Discovery ||
			cfg.Activation.Enabled != want.Activation.Enabled || !reflect.DeepEqual(cfg.Activation.SocketSuffixes, want.Activation.SocketSuffixes) ||
			cfg.Status != want.Status || cfg.Log != want.Log || cfg.Export.Endpoint != want.Export.Endpoint ||
			cfg.Export.Insecure != want.Export.Insecure || cfg.Export.Compression != want.Export.Compression ||
			len(cfg.Export.Headers)+len(cfg.Labels.Allowlist)+len(cfg.Filters.IncludeEngines)+len(cfg.Filters.ExcludeEngines)+
				len(cfg.Filters.ExcludeImages)+len(cfg.Activation.ExcludeUnits) != 0 {
			t.Fatalf("uncommented defaults differ:\n got %+v\nwant %+v", cfg, want)
		}
	})
}

func TestVersionIsValidForDebianAndRPM(t *testing.T) {
	out, err := exec.Command("bash", "version.sh").CombinedOutput()
	if err != nil {
		t.Fatalf("version.sh: %v: %s", err, out)
	}
	v := strings.TrimSpace(string(out))
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`).MatchString(v) {
		t.Fatalf("version %q has characters Debian or RPM reject", v)
	}
	if err := exec.Command("dpkg", "--compare-versions", v, "gt", "0~").Run(); err != nil {
		t.Fatalf("dpkg does not accept %q", v)
	}
}

// pkgs is one build of the packages.
type pkgs struct{ deb, rpm string }

// build packages bin as version into dir.
func build(t *testing.T, bin, version, dir string) pkgs {
	t.Helper()
	cmd := exec.Command("bash", "packaging/build.sh")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "VERSION="+version, "AGENTD_BIN="+bin, "DIST="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	return pkgs{
		deb: filepath.Join(dir, "agentd_"+version+"_amd64.deb"),
		rpm: filepath.Join(dir, "agentd-"+version+".x86_64.rpm"),
	}
}

// agentdBinary builds ./cmd/agentd; while it does not build or run, it
// builds the stand-in (testdata/standin), which speaks the same systemd
// protocol through internal/sdnotify and logs through internal/logging, and
// says so in the test log.
func agentdBinary(t *testing.T, dir string) (bin string, real bool) {
	t.Helper()
	bin = filepath.Join(dir, "agentd")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/agentd")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return bin, true
	}
	t.Logf("NOTE: ./cmd/agentd does not build (%v: %s); packaging the stand-in testdata/standin instead", err, bytes.TrimSpace(out))
	cmd = exec.Command("go", "build", "-trimpath", "-o", bin, "./packaging/testdata/standin")
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build stand-in: %v\n%s", err, out)
	}
	return bin, false
}

// th runs a shell command in the systemd host.
func th(t *testing.T, script string) (string, error) {
	t.Helper()
	out, err := exec.Command("docker", "exec", testbed.SystemdHostName(), "sh", "-c", script).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func mustTH(t *testing.T, script string) string {
	t.Helper()
	out, err := th(t, script)
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", testbed.SystemdHostName(), script, err, out)
	}
	return out
}

// copyTH copies a host file into the systemd host (docker cp cannot write
// below the tmpfs mounts systemd puts there).
func copyTH(t *testing.T, src, dst string) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("docker", "exec", "-i", testbed.SystemdHostName(), "sh", "-c", "cat > "+dst)
	cmd.Stdin = f
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("copy %s to %s: %v\n%s", src, dst, err, out)
	}
}

// waitState polls `systemctl is-active agentd` until it prints want.
func waitState(t *testing.T, want string) {
	t.Helper()
	var got string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got, _ = th(t, "systemctl is-active agentd.service")
		if got == want {
			return
		}
	}
	status, _ := th(t, "systemctl status --no-pager agentd.service; journalctl -u agentd --no-pager -n 30")
	t.Fatalf("agentd.service is %q, want %q\n%s", got, want, status)
}

func TestDebLifecycleOnSystemdHost(t *testing.T) {
	testbed.Require(t, testbed.SystemdHost)
	dir := t.TempDir()
	bin, real := agentdBinary(t, dir)
	v1 := build(t, bin, "0.0.1~test1", filepath.Join(dir, "v1"))
	v2 := build(t, bin, "0.0.2~test2", filepath.Join(dir, "v2"))

	t.Cleanup(func() {
		if out, err := th(t, "dpkg -P agentd; rm -f /var/tmp/agentd_*.deb; systemctl reset-failed agentd.service 2>/dev/null; true"); err != nil {
			t.Errorf("cleanup: %v: %s", err, out)
		}
	})
	mustTH(t, "dpkg -P agentd >/dev/null 2>&1; true")
	copyTH(t, v1.deb, "/var/tmp/agentd_1.deb")
	copyTH(t, v2.deb, "/var/tmp/agentd_2.deb")

	t.Run("install enables and starts the service as Type=notify with a watchdog", func(t *testing.T) {
		mustTH(t, "DEBIAN_FRONTEND=noninteractive dpkg -i /var/tmp/agentd_1.deb </dev/null")
		waitState(t, "active")
		props := mustTH(t, "systemctl show -p Type,NRestarts,WatchdogUSec,Restart,RestartPreventExitStatus,UnitFileState,NotifyAccess agentd.service")
		for _, want := range []string{"Type=notify", "NRestarts=0", "WatchdogUSec=30s", "Restart=on-failure",
			"RestartPreventExitStatus=2", "UnitFileState=enabled", "NotifyAccess=main"} {
			if !strings.Contains(props, want) {
				t.Errorf("missing %s in\n%s", want, props)
			}
		}
		sock := mustTH(t, "systemctl is-active agentd.socket; stat -c '%a %U %F' /run/agentd/agentd.sock")
		if sock != "active\n660 root socket" {
			t.Errorf("agentd.socket: %q", sock)
		}
	})

	t.Run("the hardened unit's exposure is within the target", func(t *testing.T) {
		out := mustTH(t, "systemd-analyze security --no-pager agentd.service | tail -1")
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

	t.Run("reload goes through SIGHUP and leaves the service active", func(t *testing.T) {
		mustTH(t, "systemctl reload agentd.service")
		waitState(t, "active")
		if !real {
			out := mustTH(t, "sleep 1; journalctl -u agentd.service -o json --no-pager MESSAGE_ID=f452f70066d9445f83173f51b88b9adb")
			if !strings.Contains(out, `"SYSLOG_IDENTIFIER":"agentd"`) || !strings.Contains(out, `"CODE_FUNC":"main.main"`) {
				t.Fatalf("no structured journal entry for the reload: %s", out)
			}
		}
	})

	t.Run("upgrade keeps an edited configuration and restarts the new version", func(t *testing.T) {
		pid1 := mustTH(t, "systemctl show -p MainPID --value agentd.service")
		mustTH(t, "echo '# edited by TestDebLifecycleOnSystemdHost' >> /etc/agentd/agentd.yaml")
		mustTH(t, "DEBIAN_FRONTEND=noninteractive dpkg -i /var/tmp/agentd_2.deb </dev/null")
		waitState(t, "active")
		if out := mustTH(t, "dpkg-query -W -f '${Version}' agentd"); out != "0.0.2~test2-1" {
			t.Errorf("installed version %q", out)
		}
		if out := mustTH(t, "tail -1 /etc/agentd/agentd.yaml"); out != "# edited by TestDebLifecycleOnSystemdHost" {
			t.Errorf("edited configuration lost, last line %q", out)
		}
		if pid2 := mustTH(t, "systemctl show -p MainPID --value agentd.service"); pid2 == pid1 {
			t.Errorf("service not restarted on upgrade (MainPID %s)", pid1)
		}
	})

	t.Run("remove stops and disables the service and keeps the configuration", func(t *testing.T) {
		mustTH(t, "dpkg -r agentd")
		if out, _ := th(t, "systemctl is-active agentd.service agentd.socket"); out != "inactive\ninactive" {
			t.Errorf("after remove: %q", out)
		}
		mustTH(t, "test -f /etc/agentd/agentd.yaml && test -f /etc/default/agentd && test ! -e /usr/bin/agentd")
	})

	t.Run("reinstall after remove enables and starts again", func(t *testing.T) {
		mustTH(t, "DEBIAN_FRONTEND=noninteractive dpkg -i /var/tmp/agentd_2.deb </dev/null")
		waitState(t, "active")
		if out := mustTH(t, "systemctl is-enabled agentd.service"); out != "enabled" {
			t.Errorf("is-enabled %q", out)
		}
	})

	t.Run("purge removes the configuration", func(t *testing.T) {
		mustTH(t, "dpkg -P agentd")
		if out, _ := th(t, "ls -d /etc/agentd /etc/default/agentd /var/lib/agentd /lib/systemd/system/agentd.service 2>&1"); strings.Contains(out, "/etc/agentd\n") || !strings.Contains(out, "No such file") || strings.Count(out, "No such file") != 4 {
			t.Errorf("left behind: %s", out)
		}
		if out, _ := th(t, "systemctl is-active agentd.service"); out != "inactive" {
			t.Errorf("after purge: %q", out)
		}
	})
}

func TestRPMLayoutAndScratchInstall(t *testing.T) {
	testbed.Require(t, testbed.Root)
	if _, err := exec.LookPath("rpm"); err != nil {
		if testbed.InCI() {
			t.Fatal("rpm is not installed (apt-get install rpm)")
		}
		t.Skip("rpm is not installed (apt-get install rpm)")
	}
	dir := t.TempDir()
	bin, _ := agentdBinary(t, dir)
	p := build(t, bin, "0.0.1~test1", filepath.Join(dir, "out"))

	out, err := exec.Command("rpm", "-qp", "--scripts", "--requires", "--list", p.rpm).CombinedOutput()
	if err != nil {
		t.Fatalf("rpm -qp: %v\n%s", err, out)
	}
	for _, want := range []string{
		"/usr/bin/agentd", "/usr/lib/systemd/system/agentd.service", "/usr/lib/systemd/system/agentd.socket",
		"/etc/agentd/agentd.yaml", "/etc/sysconfig/agentd",
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
		}
	}
}
