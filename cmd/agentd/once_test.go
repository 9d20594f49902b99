package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/telemetry"
)

// noStatusConfig writes a configuration with no status socket (a test must
// not take the default socket of an agentd running on the host) and extra.
func noStatusConfig(t *testing.T, extra string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "agentd.yaml")
	if err := os.WriteFile(cfg, []byte("status:\n  socket: \"\"\n"+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runAgentdOnce runs `agentd --once` and returns its stdout, stderr and
// exit status.
func runAgentdOnce(t *testing.T, bin string, args ...string) (stdout, stderr string, code int, took time.Duration) {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"--once"}, args...)...)
	cmd.Env = append(os.Environ(), noOTLPEnv...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	took = time.Since(start)
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code, took
}

// TestRunOnceShowsTheHostDockerAndItsContainer is `agentd --once` against the
// testbed's dockerd: the engine by its human name and version, and a running
// container by name with its PIDs, in docker stats' columns. Socket
// activation is off: this test leaves the systemd host's units to the tests
// that hold its lock.
func TestRunOnceShowsTheHostDockerAndItsContainer(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker)
	bin := buildAgentd(t)
	name := "agentd-once-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-"))
	_ = exec.Command("docker", "rm", "-f", name).Run()
	id := testbed.Run(t, "docker", "run", "-d", "--name", name, "--label", "agentd.test="+name, testbed.BusyboxImage, "sleep", "3600")
	t.Cleanup(func() { _ = exec.Command("docker", "rm", "-f", id).Run() })
	version := testbed.Run(t, "docker", "version", "-f", "{{.Server.Version}}")

	stdout, stderr, code, took := runAgentdOnce(t, bin, "--config", noStatusConfig(t, "activation:\n  enabled: false\n"))
	if code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	t.Logf("agentd --once took %v", took)
	engine := telemetry.EngineName("docker", "docker", version, "", "", "")
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(engine) + `\s+up\s+\d+ running / \d+\s+` + regexp.QuoteMeta(testbed.DockerSocket) + `$`).MatchString(stdout) {
		t.Errorf("no engine line %q (up, %s) in:\n%s", engine, testbed.DockerSocket, stdout)
	}
	// busybox sleep is one process.
	row := regexp.MustCompile(`(?m)^` + id[:12] + `\s+` + regexp.QuoteMeta(name) + `\s+\d+\.\d\d%\s+\S+ / \S+\s+\S+ / \S+\s+\S+ / \S+\s+1$`)
	if !row.MatchString(stdout) {
		t.Errorf("no row for %s (%s) with its CPU %% and 1 PID in:\n%s", name, id[:12], stdout)
	}
	if !strings.Contains(stdout, "CONTAINER ID   NAME") || strings.Contains(stdout, "\x1b") {
		t.Errorf("not a plain docker-stats-like table:\n%q", stdout)
	}
}

// TestRunOnceWithoutEngineSaysWhatItLookedFor points agentd at an empty
// host view: no engine, so --once prints what it looked for and how to start
// an engine, and exits 1. Socket activation is off: a host systemd (reached
// outside the host view) could start an engine.
func TestRunOnceWithoutEngineSaysWhatItLookedFor(t *testing.T) {
	bin := buildAgentd(t)
	stdout, stderr, code, _ := runAgentdOnce(t, bin, "--config", noStatusConfig(t, "activation:\n  enabled: false\n"), "--host-proc", t.TempDir())
	if code != exitFail {
		t.Errorf("exit status %d, want %d", code, exitFail)
	}
	for _, want := range []string{"no container engine found.", "dockerd", "systemctl start docker.socket", "podman system service", "activation.enabled is false"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "agentd: no container engine found") {
		t.Errorf("stderr lacks the error:\n%s", stderr)
	}
}

// TestRunStartsQuietly counts what a first `agentd run` says on stderr at
// the default level before its first table: one "engine found" line per
// engine (never two), a line per socket unit activation confirmed, and a
// couple of lines besides. The engines' found events are not repeated on
// stdout. It runs as a first run does, socket activation included, so it
// holds the systemd host's lock.
func TestRunStartsQuietly(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.SystemdHost)
	bin := buildAgentd(t)
	p := startAgentdEnv(t, bin, noOTLPEnv, "run", "--config", noStatusConfig(t, "export:\n  interval: 1s\n"))
	var before string
	waitFor(t, 30*time.Second, "the first table", func() bool {
		before = p.stderr.String()
		return strings.Contains(p.stdout.String(), "ENGINE")
	})
	p.stopWith(t, syscall.SIGINT, 10*time.Second)

	lines := strings.Split(strings.TrimSpace(before), "\n")
	found := map[string]int{}
	other := 0
	engineID := regexp.MustCompile(`engine_id=(\S+)`)
	for _, l := range lines {
		switch {
		case strings.Contains(l, `msg="engine found"`):
			m := engineID.FindStringSubmatch(l)
			if m == nil {
				t.Errorf("an engine found line without engine_id: %s", l)
				continue
			}
			found[m[1]]++
		case strings.Contains(l, "engine socket"): // activated or confirmed by systemd
		case l != "":
			other++
		}
	}
	for id, n := range found {
		if n != 1 {
			t.Errorf("engine %s found %d times", id, n)
		}
	}
	t.Logf("%d lines before the first table: %d engines found, %d other lines", len(lines), len(found), other)
	if len(found) == 0 || other > 3 {
		t.Errorf("%d engines found and %d other lines before the first table, want engines and at most 3 others:\n%s", len(found), other, before)
	}
	if strings.Contains(p.stdout.String(), "agentd.engine.found") {
		t.Errorf("the engine found events are printed on stdout as well:\n%s", p.stdout.String())
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		code     int
		want     string
		inStderr bool
	}{
		{"--help lists the commands and --once", []string{"--help"}, exitOK, "run --once", false},
		{"-h lists the commands", []string{"-h"}, exitOK, "engines ", false},
		{"run -h lists run's flags", []string{"run", "-h"}, exitOK, "-once", true},
		{"a stray argument to run is a usage error", []string{"run", "extra"}, exitConfig, `unexpected argument "extra"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := mainE(context.Background(), tt.args, &out, &errOut)
			got := out.String()
			if tt.inStderr {
				got = errOut.String()
			}
			if code != tt.code || !strings.Contains(got, tt.want) {
				t.Errorf("exit %d (want %d), output lacks %q?\nstdout:\n%s\nstderr:\n%s", code, tt.code, tt.want, out.String(), errOut.String())
			}
		})
	}
}
