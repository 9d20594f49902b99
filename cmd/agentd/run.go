package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/coreos/go-systemd/v22/journal"
	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/internal/sdnotify"
	"github.com/agentd-dev/agentd/status"
	"github.com/agentd-dev/agentd/telemetry"
)

// run runs the agent until ctx ends. SIGHUP re-reads the configuration file
// and applies override (the command line's settings) to it: a valid one is
// applied to the running agent, which rebuilds only the parts whose settings
// changed (agent.Reload: the model, watchers and engines stay, no event is
// lost or repeated); only a change of discovery.proc_root or activation
// rebuilds the whole agent (the status socket stays open). An invalid one is
// logged and the running configuration kept.
func run(ctx context.Context, cfg config.Config, override func(*config.Config), level *slog.LevelVar, log *slog.Logger, stdout io.Writer) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if os.Getenv("AGENTD_TEST_HOOKS") == "1" {
		// Test hook: SIGUSR2 wedges the main loop so tests can prove the
		// systemd watchdog restarts agentd.
		usr2 := make(chan os.Signal, 1)
		signal.Notify(usr2, syscall.SIGUSR2)
		defer signal.Stop(usr2)
		go func() {
			select {
			case <-usr2:
				if a := current.Load(); a != nil {
					log.Warn("test hook: stalling the main loop")
					a.Stall()
				}
			case <-ctx.Done():
			}
		}()
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// The status endpoint and the watchdog stop with ctx: cancel before
	// waiting, or an agent that fails to start would hang agentd.
	defer func() { cancel(); wg.Wait() }()

	if cfg.Status.Socket != "" {
		l, passed, err := status.Listen(cfg.Status.Socket)
		if err != nil {
			return err
		}
		log.Debug("status endpoint listening", "socket", l.Addr().String(), "from_systemd", passed)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := status.Serve(ctx, l, currentSource{}, log); err != nil {
				log.Error("status endpoint failed", logging.Err(err))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		healthy := func() bool { a := current.Load(); return a != nil && a.Healthy() }
		if err := sdnotify.Watchdog(ctx, healthy); err != nil {
			log.Error("systemd watchdog", logging.Err(err))
		}
	}()

	for {
		out := console(stdout)
		a, err := agent.New(cfg, agent.Options{
			Log: log, Stdout: out, Version: version,
			Console: telemetry.ConsoleOptions{Terminal: isTerminal(out)},
			Ready: func() {
				if err := sdnotify.Ready("watching engines"); err != nil {
					log.Warn("sd_notify READY", logging.Err(err))
				}
			},
			Status: func(line string) { _ = sdnotify.Status(line) },
		})
		if err != nil {
			return err
		}
		current.Store(a)
		actx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- a.Run(actx) }()

		var next *config.Config
		for next == nil {
			select {
			case err := <-done:
				stop()
				if ctx.Err() != nil {
					_ = sdnotify.Stopping("stopping")
					return err
				}
				return fmt.Errorf("agent stopped: %w", err)
			case <-ctx.Done():
				_ = sdnotify.Stopping("stopping")
				log.Info("stopping")
				err := <-done
				stop()
				return err
			case <-hup:
				_ = sdnotify.Reloading()
				c, err := config.Load(cfg.File(), cfg.File() != "")
				if err != nil {
					log.Error("configuration reload refused, keeping the running configuration",
						logging.MessageID(logging.MessageIDConfigReload), logging.Err(err))
					_ = sdnotify.Ready("reload refused: " + err.Error())
					continue
				}
				override(&c)
				changes, err := a.Reload(c)
				if errors.Is(err, agent.ErrRebuild) {
					next = &c
					continue
				}
				if err != nil {
					log.Error("configuration reload refused, keeping the running configuration",
						logging.MessageID(logging.MessageIDConfigReload), logging.Err(err))
					_ = sdnotify.Ready("reload refused: " + err.Error())
					continue
				}
				cfg = c
				applyLevel(level, cfg)
				log.Info("configuration reloaded", logging.MessageID(logging.MessageIDConfigReload),
					"file", cfg.File(), "changed", strings.Join(changes.Parts(), ", "))
				if changes.StatusSocket {
					log.Warn("status.socket changed: the status endpoint moves at the next restart", "socket", cfg.Status.Socket)
				}
				_ = sdnotify.Ready("watching engines")
			}
		}
		log.Info("reloading configuration, rebuilding the agent", logging.MessageID(logging.MessageIDConfigReload), "file", next.File())
		stop()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			log.Warn("stopping for reload", logging.Err(err))
		}
		cfg = *next
		applyLevel(level, cfg)
	}
}

// applyLevel sets the logger's level from cfg (validated already).
func applyLevel(level *slog.LevelVar, cfg config.Config) {
	if lv, err := logging.ParseLevel(cfg.Log.Level); err == nil {
		level.Set(lv)
	}
}

// current is the running agent, for the status endpoint and the watchdog
// (they outlive an agent across configuration reloads).
var current atomic.Pointer[agent.Agent]

type currentSource struct{}

func (currentSource) Status(ctx context.Context) status.Report {
	if a := current.Load(); a != nil {
		return a.Status(ctx)
	}
	return status.Report{Version: version, Problems: []string{"starting"}}
}

// console returns where the readable tables of an agent without an OTLP
// endpoint go: stdout, unless agentd runs as a service, whose stdout is the
// journal or, under systemd (INVOCATION_ID set), no terminal. A service says
// once how to configure an endpoint instead of writing tables to the journal
// every round.
func console(stdout io.Writer) io.Writer {
	f, ok := stdout.(*os.File)
	if !ok {
		return stdout
	}
	if isJournal, err := journal.StdoutIsJournalStream(); err == nil && isJournal && f == os.Stdout {
		return nil
	}
	if !isTerminal(f) && os.Getenv("INVOCATION_ID") != "" {
		return nil
	}
	return stdout
}

// isTerminal reports whether w is a terminal, where the readable view is
// redrawn in place; anything else (a pipe, a file) gets appended text.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
