package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/agentd-dev/agentd/agent"
	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/telemetry"
)

// onceWait bounds how long `agentd run --once` waits for a complete snapshot.
const onceWait = 10 * time.Second

// onceRounds is how many rounds --once takes at least: CPU % needs two
// samples, and socket-activated engines answer within the first second.
const onceRounds = 2

// errNoEngine is --once finding no engine: exit status 1, after the hint.
var errNoEngine = errors.New("no container engine found")

// runOnce implements `agentd run --once`: the agent runs with the readable
// view (never OTLP, no status socket), its rounds every second, until a round
// shows every engine up and every container with its CPU use, after
// onceRounds rounds at least, or until onceWait passed; that round is printed
// on stdout and agentd exits. No engine: the round says what was looked for,
// and runOnce returns errNoEngine. No round at all within onceWait (ctx
// ended, or the agent failed) is an error too.
func runOnce(ctx context.Context, cfg config.Config, log *slog.Logger, stdout io.Writer) error {
	cfg.Export.Endpoint, cfg.Export.MetricsEndpoint, cfg.Export.LogsEndpoint = "", "", ""
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"} {
		_ = os.Unsetenv(k) // a snapshot is printed, never exported
	}
	cfg.Export.Interval = config.Duration(time.Second)
	cfg.Status.Socket = ""
	if err := cfg.Validate(); err != nil {
		return err
	}
	snaps := make(chan telemetry.Snapshot, 1)
	a, err := agent.New(cfg, agent.Options{
		Log: log, Stdout: io.Discard, Version: version,
		Console: telemetry.ConsoleOptions{Snapshot: func(s telemetry.Snapshot) {
			select { // the latest round wins
			case <-snaps:
			default:
			}
			snaps <- s
		}},
	})
	if err != nil {
		return err
	}
	actx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()

	deadline := time.NewTimer(onceWait)
	defer deadline.Stop()
	var last *telemetry.Snapshot
	rounds := 0
wait:
	for {
		select {
		case s := <-snaps:
			last, rounds = &s, rounds+1
			if rounds >= onceRounds && s.Complete {
				break wait
			}
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		case err := <-done:
			if err == nil {
				err = errors.New("the agent stopped")
			}
			return fmt.Errorf("--once: %w", err)
		}
	}
	stop()
	runErr := <-done
	switch {
	case last == nil && runErr != nil:
		return fmt.Errorf("--once: no snapshot within %v: %w", onceWait, runErr)
	case last == nil:
		return fmt.Errorf("--once: no snapshot within %v", onceWait)
	}
	if _, err := io.WriteString(stdout, last.Text); err != nil {
		return err
	}
	if last.Engines == 0 {
		return errNoEngine
	}
	return nil
}
