package testbed

import (
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// systemdHostLock is the file whose flock serialises the tests of every
// process on this machine that use the systemd host container: they start,
// stop and mask its units (podman.service, docker.socket, ...), and a test of
// one package must not stop the engine another package's test is watching
// (`go test ./...` runs packages in parallel).
var systemdHostLock = filepath.Join(os.TempDir(), "agentd-testbed-systemd-host.lock")

// hostLock holds the lock for this process while any of its tests does;
// tests of one process share it (subtests, parallel tests).
var hostLock struct {
	sync.Mutex
	holders int
	f       *os.File
}

// lockSystemdHost makes t the systemd host's user until t ends, waiting for
// other test processes that use it.
func lockSystemdHost(t testing.TB) {
	t.Helper()
	hostLock.Lock()
	defer hostLock.Unlock()
	if hostLock.holders == 0 {
		f, err := os.OpenFile(systemdHostLock, os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			t.Fatalf("systemd host lock: %v", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			start := time.Now()
			t.Logf("waiting for the systemd host: another test process uses it (%s)", systemdHostLock)
			if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
				f.Close()
				t.Fatalf("systemd host lock: %v", err)
			}
			t.Logf("got the systemd host after %v", time.Since(start).Round(time.Millisecond))
		}
		hostLock.f = f
	}
	hostLock.holders++
	t.Cleanup(func() {
		hostLock.Lock()
		defer hostLock.Unlock()
		hostLock.holders--
		if hostLock.holders == 0 {
			hostLock.f.Close() // releases the flock
			hostLock.f = nil
		}
	})
}
