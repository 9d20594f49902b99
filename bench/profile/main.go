// Command profile runs agentd's agent in-process under the Go profiler: a CPU
// profile over the whole run and a heap profile at its end (before the agent
// stops), then prints `go tool pprof -top` of both (CPU, live heap, and bytes
// allocated over the run). cmd/agentd has no pprof endpoint; this harness wires
// the same agent package with the same configuration. bench/profile.sh runs it
// against N bench containers and a sink collector.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "profile: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	endpoint := fs.String("otlp-endpoint", "", "OTLP/gRPC endpoint (plaintext) of a collector")
	duration := fs.Duration("duration", 2*time.Minute, "how long the agent runs under the profiler")
	warmup := fs.Duration("warmup", 30*time.Second, "how long the agent runs before the profile starts (startup listings are not steady state)")
	interval := fs.Duration("interval", 10*time.Second, "export interval")
	dir := fs.String("out", ".", "directory for cpu.pprof and heap.pprof")
	top := fs.Int("top", 30, "rows of each pprof -top listing")
	memRate := fs.Int("memprofilerate", runtime.MemProfileRate, "bytes allocated per heap profile sample (runtime.MemProfileRate); 4096 shows a heap of a few MB exactly but costs a tenth of the agent's CPU in sampling, which the CPU profile then shows")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *endpoint == "" {
		return errors.New("-otlp-endpoint is required")
	}
	runtime.MemProfileRate = *memRate
	cfg := config.Default()
	cfg.Export.Endpoint = *endpoint
	cfg.Export.Insecure = true
	cfg.Export.Interval = config.Duration(*interval)
	cfg.Status.Socket = ""         // no status socket: other agents on the host own theirs
	cfg.Activation.Enabled = false // activating the systemd host's sockets changes shared state
	cfg.Log.Level = "warn"
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a, err := agent.New(cfg, agent.Options{Log: log, Stdout: stdout, Version: "bench-profile"})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	cpuPath, heapPath := filepath.Join(*dir, "cpu.pprof"), filepath.Join(*dir, "heap.pprof")
	heapStartPath := filepath.Join(*dir, "heap-start.pprof")
	cpuFile, err := os.Create(cpuPath)
	if err != nil {
		return err
	}
	defer cpuFile.Close()
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	select {
	case err := <-done:
		return fmt.Errorf("agent stopped during the warm-up: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(*warmup):
	}
	// The allocations of the start (listing and inspecting every container)
	// are not steady state: the window's are the heap profile's at its end
	// less the one at its start.
	runtime.GC()
	if err := writeHeap(heapStartPath); err != nil {
		return err
	}
	allocsBefore := totalAlloc()
	if err := pprof.StartCPUProfile(cpuFile); err != nil {
		return fmt.Errorf("start CPU profile: %w", err)
	}
	select {
	case err := <-done:
		pprof.StopCPUProfile()
		return fmt.Errorf("agent stopped early: %w", err)
	case <-ctx.Done():
	case <-time.After(*duration):
	}
	pprof.StopCPUProfile()
	runtime.GC()
	if err := writeHeap(heapPath); err != nil {
		return err
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "profile: agent: %v\n", err)
	}
	fmt.Fprintf(stdout, "agent profiled for %v after a %v warm-up; heap in use %.1f MB, sys %.1f MB, %d GCs, %.1f MB allocated while profiled\n\n",
		*duration, *warmup, mb(ms.HeapInuse), mb(ms.Sys), ms.NumGC, mb(ms.TotalAlloc-allocsBefore))

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	for _, p := range []struct{ title, file, index, base string }{
		{"CPU", cpuPath, "", ""},
		{"live heap (inuse_space)", heapPath, "inuse_space", ""},
		{"allocated while profiled (alloc_space, less the warm-up's)", heapPath, "alloc_space", heapStartPath},
	} {
		fmt.Fprintf(stdout, "## %s: go tool pprof -top %s\n\n", p.title, p.file)
		args := []string{"tool", "pprof", "-top", fmt.Sprintf("-nodecount=%d", *top)}
		if p.index != "" {
			args = append(args, "-sample_index="+p.index)
		}
		if p.base != "" {
			args = append(args, "-diff_base="+p.base)
		}
		cmd := exec.Command("go", append(args, exe, p.file)...)
		cmd.Stdout, cmd.Stderr = stdout, stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go tool pprof %s: %w", p.file, err)
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

func writeHeap(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}

func totalAlloc() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.TotalAlloc
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }
