package testbed

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RootlessUser is a user of the systemd host set up for rootless podman the
// way podman's documentation does it: lingering (user@UID.service runs with
// no login) and `systemctl --user enable --now podman.socket`, with the
// testbed's busybox image in the user's own storage.
type RootlessUser struct {
	Name string
	UID  int
}

// RuntimeDir is the user's XDG_RUNTIME_DIR, /run/user/UID.
func (u RootlessUser) RuntimeDir() string { return "/run/user/" + strconv.Itoa(u.UID) }

// PodmanSocket is the path of the user's podman.socket inside the systemd host.
func (u RootlessUser) PodmanSocket() string { return u.RuntimeDir() + "/podman/podman.sock" }

// Run runs a command as the user inside the systemd host, with the user's
// runtime directory and bus, and returns its trimmed output.
func (u RootlessUser) Run(t testing.TB, args ...string) string {
	t.Helper()
	return RunInSystemdHost(t, append([]string{"runuser", "-u", u.Name, "--", "env",
		"XDG_RUNTIME_DIR=" + u.RuntimeDir(), "DBUS_SESSION_BUS_ADDRESS=unix:path=" + u.RuntimeDir() + "/bus"}, args...)...)
}

// NewRootlessUser makes a rootless podman user in the systemd host and
// removes it, its processes and its files when t ends. The caller holds the
// systemd host (Require SystemdHost).
func NewRootlessUser(t testing.TB) RootlessUser {
	t.Helper()
	name := fmt.Sprintf("agentd-rl-%06x", rand.Uint32()>>8)
	RunInSystemdHost(t, "useradd", "--create-home", name)
	uid, err := strconv.Atoi(RunInSystemdHost(t, "id", "-u", name))
	if err != nil {
		t.Fatalf("id -u %s: %v", name, err)
	}
	u := RootlessUser{Name: name, UID: uid}
	t.Cleanup(func() {
		th := SystemdHostName()
		_ = run("docker", "exec", th, "loginctl", "disable-linger", name)
		_ = run("docker", "exec", th, "systemctl", "stop", "user@"+strconv.Itoa(uid)+".service")
		_ = run("docker", "exec", th, "pkill", "-KILL", "-u", name)
		_ = run("docker", "exec", th, "userdel", "--remove", "--force", name)
	})
	RunInSystemdHost(t, "loginctl", "enable-linger", name)
	unit := "user@" + strconv.Itoa(uid) + ".service"
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		out, _ := output("docker", "exec", SystemdHostName(), "systemctl", "is-active", unit)
		if strings.TrimSpace(out) == "active" {
			break
		}
		if time.Now().After(deadline) {
			status, _ := output("docker", "exec", SystemdHostName(), "systemctl", "status", "--no-pager", unit)
			t.Fatalf("%s is not active a minute after enable-linger (the systemd host needs libpam-systemd and dbus-user-session):\n%s", unit, status)
		}
	}
	u.Run(t, "systemctl", "--user", "enable", "--now", "podman.socket")
	u.Run(t, "sh", "-c", "podman import -q - "+BusyboxImage+" </opt/agentd-testbed/busybox.tar >/dev/null")
	return u
}
