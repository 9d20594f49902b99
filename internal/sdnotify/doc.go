// Package sdnotify tells systemd about agentd's state through the
// sd_notify(3) protocol (go-systemd's daemon.SdNotify): READY=1 once
// discovery and export are up, RELOADING=1/READY=1 around a SIGHUP reload,
// STOPPING=1 on shutdown, STATUS= lines for `systemctl status`, and WATCHDOG=1
// pings while the daemon is healthy.
//
// Every function is a no-op returning nil when NOTIFY_SOCKET is unset (agentd
// started outside systemd, or under Type=simple), so callers need no "are we
// under systemd" check. It owns none of the decisions of when the daemon is
// ready or healthy: the caller passes those in. It does not unset
// NOTIFY_SOCKET, so child processes agentd never starts could not misuse it
// anyway, and repeated notifications keep working.
package sdnotify
