package sdnotify

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// notify sends state; an unset NOTIFY_SOCKET is not an error.
func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %q: %w", firstLine(state), err)
	}
	return nil
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Ready tells systemd that startup (or a reload) finished: READY=1, with a
// STATUS= line when status is not empty. For Type=notify, systemctl start
// returns only after this.
func Ready(status string) error {
	return notify(withStatus(daemon.SdNotifyReady, status))
}

// Reloading tells systemd a configuration reload started: RELOADING=1 with
// MONOTONIC_USEC= (the CLOCK_MONOTONIC time systemd ≥ 253 requires to match
// the reload with the ExecReload= request). Call [Ready] when the reload is
// done, whether it succeeded or the old configuration was kept.
func Reloading() error {
	return notify(daemon.SdNotifyReloading + "\n" + strings.TrimSuffix(daemon.SdNotifyMonotonicUsec(), "\n"))
}

// Stopping tells systemd that shutdown began: STOPPING=1, with a STATUS=
// line when status is not empty.
func Stopping(status string) error {
	return notify(withStatus(daemon.SdNotifyStopping, status))
}

// Status sets the free-form status line `systemctl status agentd` shows,
// e.g. "watching 4 engines, 37 containers".
func Status(status string) error {
	return notify("STATUS=" + oneLine(status))
}

func withStatus(state, status string) string {
	if status == "" {
		return state
	}
	return state + "\nSTATUS=" + oneLine(status)
}

// oneLine keeps a status from smuggling extra assignments into the message.
func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", " ")
}

// WatchdogInterval returns how often [Watchdog] pings: half of
// WATCHDOG_USEC when the watchdog is enabled for this process (WATCHDOG_PID
// unset or ours), 0 when it is not, and an error for a malformed
// WATCHDOG_USEC.
func WatchdogInterval() (time.Duration, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("systemd watchdog: %w", err)
	}
	return d / 2, nil
}

// Watchdog pings systemd's watchdog (WATCHDOG=1) every half WatchdogSec while
// healthy() returns true, starting at once, until ctx is done. When healthy()
// returns false it skips the ping, so a daemon that stays unhealthy is killed
// with SIGABRT after WatchdogSec and restarted (Restart=on-failure); a daemon
// that recovers in time resumes pinging.
//
// It returns nil at once when the watchdog is not enabled for this process,
// nil when ctx is done, and an error for a malformed WATCHDOG_USEC or a
// failed send (the notify socket is gone, so systemd is too). healthy is
// called from the calling goroutine only; run Watchdog in a goroutine the
// caller owns.
func Watchdog(ctx context.Context, healthy func() bool) error {
	every, err := WatchdogInterval()
	if err != nil || every <= 0 {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if healthy() {
			if err := notify(daemon.SdNotifyWatchdog); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
