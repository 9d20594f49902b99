package main

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// noOTLPEnv clears the OTLP endpoint variables of the test's environment, so
// agentd runs without a collector whatever the shell had set.
var noOTLPEnv = []string{"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT=", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT="}

// agentdProcess is a running agentd binary.
type agentdProcess struct {
	cmd    *exec.Cmd
	done   chan error
	stdout *syncBuffer
	stderr *syncBuffer
}

// startAgentd runs bin with args until it is stopped (or killed when the
// test ends).
func startAgentd(t *testing.T, bin string, args ...string) *agentdProcess {
	t.Helper()
	return startAgentdEnv(t, bin, nil, args...)
}

// startAgentdEnv is startAgentd with env added to the test's environment
// (later entries win).
func startAgentdEnv(t *testing.T, bin string, env []string, args ...string) *agentdProcess {
	t.Helper()
	p := &agentdProcess{cmd: exec.Command(bin, args...), done: make(chan error, 1), stdout: &syncBuffer{}, stderr: &syncBuffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if env != nil {
		p.cmd.Env = append(os.Environ(), env...)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		err := <-p.done
		p.done <- err
		if t.Failed() {
			t.Logf("agentd (pid %d) stdout:\n%s\nstderr:\n%s", p.cmd.Process.Pid, p.stdout.String(), p.stderr.String())
		}
	})
	return p
}

// stop sends SIGTERM and wants a clean exit within 10 s.
func (p *agentdProcess) stop(t *testing.T) {
	t.Helper()
	p.stopWith(t, syscall.SIGTERM, 10*time.Second)
}

// stopWith sends sig and wants a clean exit within d; it returns how long
// the exit took.
func (p *agentdProcess) stopWith(t *testing.T, sig syscall.Signal, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		p.done <- err
		if err != nil {
			t.Fatalf("agentd exited with %v after %v", err, sig)
		}
	case <-time.After(d):
		t.Fatalf("agentd did not exit within %v of %v", d, sig)
	}
	return time.Since(start)
}
