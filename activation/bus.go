package activation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// D-Bus names used on systemd's manager object.
const (
	systemdDest     = "org.freedesktop.systemd1"
	systemdPath     = dbus.ObjectPath("/org/freedesktop/systemd1")
	managerIface    = "org.freedesktop.systemd1.Manager"
	unitIface       = "org.freedesktop.systemd1.Unit"
	propertiesIface = "org.freedesktop.DBus.Properties"
	unitPathPrefix  = "/org/freedesktop/systemd1/unit/"
)

// busAddr is one way to reach a systemd.
type busAddr struct {
	// address is a D-Bus address, e.g. unix:path=/run/dbus/system_bus_socket.
	address string
	// direct marks systemd's private socket: a peer-to-peer connection to
	// systemd itself, where there is no bus daemon to say Hello or AddMatch to.
	direct bool
	// as, when set, is the uid and gid to connect and authenticate as (a
	// user instance's buses accept only their owner).
	as *credential
}

func (a busAddr) String() string { return a.address }

// parseBusAddr classifies a configured address: one whose path ends in
// /systemd/private is systemd's private peer-to-peer socket.
func parseBusAddr(address string) busAddr {
	return busAddr{address: address, direct: strings.HasSuffix(address, "/systemd/private")}
}

// unixAddress builds a unix:path= D-Bus address with the path escaped.
func unixAddress(path string) string {
	return "unix:path=" + dbus.EscapeBusAddressValue(path)
}

// nestedBusAddrs are the addresses of the systemd with host PID pid: its
// system bus, then its private socket, both through /proc/PID/root.
func nestedBusAddrs(procRoot string, pid int) []busAddr {
	root := filepath.Join(procRoot, strconv.Itoa(pid), "root")
	return []busAddr{
		{address: unixAddress(filepath.Join(root, "run/dbus/system_bus_socket"))},
		{address: unixAddress(filepath.Join(root, "run/systemd/private")), direct: true},
	}
}

// dialRaw opens one authenticated godbus connection to a: EXTERNAL auth with
// our uid, then Hello unless a is systemd's private socket. The connection
// lives until ctx is done or it is closed; the handshake is bounded by
// timeout.
func dialRaw(ctx context.Context, a busAddr, timeout time.Duration) (*dbus.Conn, error) {
	conn, err := dialBus(ctx, a, timeout)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stop := context.AfterFunc(hctx, func() { conn.Close() })
	uid := os.Getuid()
	if a.as != nil {
		uid = a.as.uid
	}
	err = conn.Auth([]dbus.Auth{dbus.AuthExternal(strconv.Itoa(uid))})
	if err == nil && !a.direct {
		err = conn.Hello()
	}
	if !stop() {
		// The handshake ran out of time (or ctx ended) and the connection
		// was closed under it.
		conn.Close()
		if err == nil {
			err = hctx.Err()
		}
		return nil, fmt.Errorf("handshake: %w", errors.Join(err, hctx.Err()))
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// dialBus opens the transport of a: godbus's dial, or a connect as a.as.
func dialBus(ctx context.Context, a busAddr, timeout time.Duration) (*dbus.Conn, error) {
	if a.as == nil {
		return dbus.Dial(a.address, dbus.WithContext(ctx))
	}
	path, ok := strings.CutPrefix(a.address, "unix:path=")
	if !ok {
		return nil, fmt.Errorf("%s: only a unix:path= address can be reached as uid %d", a.address, a.as.uid)
	}
	path, err := dbus.UnescapeBusAddressValue(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", a.address, err)
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	nc, err := dialUnixAs(dctx, path, *a.as)
	if err != nil {
		return nil, err
	}
	conn, err := dbus.NewConn(nc, dbus.WithContext(ctx))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%s: %w", a.address, err)
	}
	return conn, nil
}

// session is a live connection to one systemd: go-systemd's Conn for method
// calls and job results (sd), and the manager's signals. A test stands in a
// fake bus for both.
type session struct {
	addr    busAddr
	sd      systemd
	signals <-chan *dbus.Signal
	close   func()
}

// dialFunc opens a session to a, bounded by ctx; timeout bounds each step.
type dialFunc func(ctx context.Context, a busAddr, timeout time.Duration) (*session, error)

var _ systemd = (*sddbus.Conn)(nil)

// signalBuffer is the depth of the signal channel. godbus never blocks its
// reader on a full channel (it parks each extra signal in a goroutine), so
// the instance loop drains it promptly and this only absorbs bursts.
const signalBuffer = 512

// managerSignals are the manager signals an instance follows.
var managerSignals = []string{"UnitNew", "UnitRemoved", "JobRemoved", "Reloading", "UnitFilesChanged"}

// openSession connects to a, subscribes to systemd's signals and returns the
// session. ctx bounds the session's life: when it is done the connections
// close.
func openSession(ctx context.Context, a busAddr, timeout time.Duration) (*session, error) {
	sd, err := sddbus.NewConnection(func() (*dbus.Conn, error) { return dialRaw(ctx, a, timeout) })
	if err != nil {
		return nil, err
	}
	sig, err := dialRaw(ctx, a, timeout)
	if err != nil {
		sd.Close()
		return nil, err
	}
	signals := make(chan *dbus.Signal, signalBuffer)
	closeAll := func() {
		sig.Close()
		sd.Close()
	}
	if err := subscribe(ctx, a, sd, sig, signals, timeout); err != nil {
		closeAll()
		return nil, err
	}
	return &session{addr: a, sd: sd, signals: signals, close: closeAll}, nil
}

// subscribe routes the signals of sig to signals, adds the bus match rules (not on
// systemd's private socket, where systemd sends to every subscribed peer
// directly) and calls the manager's Subscribe, without which systemd sends
// most signals to nobody.
func subscribe(ctx context.Context, a busAddr, sd *sddbus.Conn, sig *dbus.Conn, signals chan<- *dbus.Signal, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	sig.Signal(signals)
	if !a.direct {
		for _, m := range managerSignals {
			if err := sig.AddMatchSignalContext(ctx,
				dbus.WithMatchSender(systemdDest),
				dbus.WithMatchInterface(managerIface),
				dbus.WithMatchMember(m)); err != nil {
				return fmt.Errorf("add match %s: %w", m, err)
			}
		}
		if err := sig.AddMatchSignalContext(ctx,
			dbus.WithMatchSender(systemdDest),
			dbus.WithMatchInterface(propertiesIface),
			dbus.WithMatchMember("PropertiesChanged"),
			dbus.WithMatchPathNamespace(dbus.ObjectPath(strings.TrimSuffix(unitPathPrefix, "/")))); err != nil {
			return fmt.Errorf("add match PropertiesChanged: %w", err)
		}
	}
	if err := sig.Object(systemdDest, systemdPath).CallWithContext(ctx, managerIface+".Subscribe", 0).Store(); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	if a.direct {
		// go-systemd learns job results from JobRemoved on its own signal
		// connection; on the private socket systemd sends it only to
		// subscribed peers.
		if err := sd.Subscribe(); err != nil {
			return fmt.Errorf("subscribe job results: %w", err)
		}
	}
	return nil
}

// unitPath is the object path systemd gives the unit name.
func unitPath(name string) dbus.ObjectPath {
	return dbus.ObjectPath(unitPathPrefix + sddbus.PathBusEscape(name))
}
