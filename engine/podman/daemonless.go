package podman

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/containerd"
	"github.com/agentd-dev/agentd/internal/procfs"
	"github.com/agentd-dev/agentd/model"
)

// Daemonless podman: containers that `podman run -d` started with no podman
// service running. Nothing answers for them; what podman leaves on the host
// tells instead:
//
//   - one conmon process per running container, whose command line names the
//     container, its bundle, its PID file, the exit directory and, through
//     the exit command's arguments, the storage (--root, --runroot);
//   - containers/storage's DRIVER-containers/containers.json under the
//     storage root: every container with its name, image and creation time;
//   - RUNROOT/DRIVER-containers/ID/userdata: conmon.pid (conmon's PID) and
//     pidfile (the container's init PID), left behind when it exits;
//   - the exit directory, where conmon writes a file named after the
//     container holding its exit code; podman's cleanup (the exit command)
//     reads and removes it a moment later, so the adapter watches the
//     directory (inotify) to catch the code as it is written;
//   - the bundle's config.json (the OCI spec): the cgroup path.
//
// The engine is the storage: its endpoint is the storage root as reached
// from the host, its ID "podman:" and that path, model.Engine.Daemonless
// set. Discovery finds it through conmon processes (DaemonlessFamily).

// DefaultExitDir and DefaultRunRoot are root podman's defaults, for a
// storage at DefaultRoot whose conmon cannot be read.
const (
	DefaultRoot    = "/var/lib/containers/storage"
	DefaultRunRoot = "/run/containers/storage"
	DefaultExitDir = "/run/libpod/exits"
)

// DaemonlessFamily describes daemonless podman: conmon processes, whose
// command lines name the storage they belong to (engine.Family.Endpoints),
// the storage probe and the adapter that reads the storage. procRoot is the
// procfs the adapter reads conmon processes from ("/proc" on a host).
func DaemonlessFamily(procRoot string) engine.Family {
	return engine.Family{
		Name:  "podman-daemonless",
		Types: []model.EngineType{model.Podman},
		Comms: []string{"conmon"},
		Endpoints: func(cmdline []string) []string {
			c, ok := ParseConmon(cmdline)
			if !ok {
				return nil
			}
			return []string{c.Root}
		},
		Probe: ProbeStorage,
		NewAdapter: func(e model.Engine, log *slog.Logger) (engine.Adapter, error) {
			return NewDaemonlessAdapter(e, procRoot, log)
		},
	}
}

// procRootPath matches an endpoint reached through another process's root:
// PROCFS/PID/root/PATH.
var procRootPath = regexp.MustCompile(`^(.*/[0-9]+/root)(/.*)$`)

// splitEndpoint splits a storage endpoint into the host path of the
// engine's root directory ("" when it is agentd's own) and the storage
// root in the engine's mount namespace.
func splitEndpoint(endpoint string) (prefix, storage string) {
	if m := procRootPath.FindStringSubmatch(endpoint); m != nil {
		return m[1], m[2]
	}
	return "", endpoint
}

// ProbeStorage tells whether endpoint (a host path) is a podman storage root:
// a DRIVER-containers/containers.json or podman's state (libpod) beneath it. The
// engine it returns is daemonless, named after the storage.
func ProbeStorage(ctx context.Context, endpoint string) ([]model.Engine, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ms, err := filepath.Glob(filepath.Join(endpoint, "*-containers", "containers.json"))
	if err != nil || len(ms) == 0 {
		if st, err := os.Stat(filepath.Join(endpoint, "libpod")); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("podman storage at %s: no containers.json and no libpod state: %w", endpoint, engine.ErrNotEngine)
		}
	}
	_, storage := splitEndpoint(endpoint)
	return []model.Engine{{
		ID:         string(model.Podman) + ":" + endpoint,
		Type:       model.Podman,
		Endpoint:   endpoint,
		Storage:    storage,
		Daemonless: true,
	}}, nil
}

// layout is where a storage's podman keeps its run-time files, in the
// engine's mount namespace: learned from a conmon command line, else
// root podman's defaults.
type layout struct {
	runRoot, exitDir, driver string
}

// exitInfo is an exit code caught from the exit directory.
type exitInfo struct {
	code int
	at   time.Time
}

// DaemonlessAdapter reads one podman storage and the conmon processes of its
// containers: List and Inspect from the files, Subscribe from changes to
// them (inotify), so that no podman service is needed or started. Safe for
// concurrent use.
type DaemonlessAdapter struct {
	endpoint string // the storage root as reached from the host
	storage  string // the storage root in the engine's mount namespace
	prefix   string // the host path of the engine's root, "" for agentd's own
	procRoot string // the procfs where conmon PIDs are looked up
	log      *slog.Logger

	mu        sync.Mutex
	lay       layout
	exits     map[string]exitInfo
	labels    map[string]map[string]string // by container ID, from podman's state database
	noStateDB bool                         // said once that there is none to read
}

var (
	_ engine.Adapter = (*DaemonlessAdapter)(nil)
	_ engine.Stream  = (*daemonlessStream)(nil)
)

// NewDaemonlessAdapter returns the adapter of daemonless engine e. It reads
// the command line of e's conmon (e.PID, under procRoot) for the storage's
// run-time layout, and falls back to root podman's defaults.
func NewDaemonlessAdapter(e model.Engine, procRoot string, log *slog.Logger) (*DaemonlessAdapter, error) {
	if e.Endpoint == "" {
		return nil, errors.New("podman: daemonless engine without a storage")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	prefix, storage := splitEndpoint(e.Endpoint)
	a := &DaemonlessAdapter{endpoint: e.Endpoint, storage: storage, prefix: prefix, procRoot: procRoot, log: log, exits: map[string]exitInfo{}, labels: map[string]map[string]string{}}
	a.lay = layout{exitDir: DefaultExitDir, runRoot: DefaultRunRoot}
	if ms, _ := filepath.Glob(filepath.Join(e.Endpoint, "*-containers", "containers.json")); len(ms) > 0 {
		a.lay.driver = bundleDriver(filepath.Join(filepath.Dir(ms[0]), "x", "userdata"))
	}
	if e.PID > 0 {
		if b, err := os.ReadFile(procfs.Path(procRoot, e.PID, "cmdline")); err == nil {
			if c, ok := ParseConmon(procfs.ParseCmdline(b)); ok {
				a.learn(c)
			}
		}
	}
	return a, nil
}

// learn takes the run-time layout from a conmon of the storage.
func (a *DaemonlessAdapter) learn(c Conmon) {
	if c.Root != a.storage {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if c.RunRoot != "" {
		a.lay.runRoot = c.RunRoot
	}
	if c.ExitDir != "" {
		a.lay.exitDir = c.ExitDir
	}
	if c.StorageDriver != "" {
		a.lay.driver = c.StorageDriver
	}
}

func (a *DaemonlessAdapter) layout() layout {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lay
}

// host returns the host path of p, a path in the engine's mount namespace.
func (a *DaemonlessAdapter) host(p string) string { return a.prefix + p }

// procPath is the /proc file of process pid of the engine's PID namespace.
func (a *DaemonlessAdapter) procPath(pid int, name string) string {
	if a.prefix == "" {
		return procfs.Path(a.procRoot, pid, name)
	}
	return a.host(path.Join("/proc", strconv.Itoa(pid), name))
}

// List returns the podman containers of the storage, in all states.
func (a *DaemonlessAdapter) List(ctx context.Context) ([]model.Container, error) {
	stored, err := a.readStorage()
	if err != nil {
		return nil, err
	}
	out := make([]model.Container, 0, len(stored))
	labels := a.labelsOf(stored)
	for _, s := range stored {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if s.Podman {
			c := a.container(s)
			c.Labels = labels[s.ID]
			out = append(out, c)
		}
	}
	a.forgetExits(stored)
	return out, nil
}

// Inspect returns one container, or an error wrapping engine.ErrNotFound.
func (a *DaemonlessAdapter) Inspect(ctx context.Context, id string) (model.Container, error) {
	if err := engine.CheckID(id); err != nil {
		return model.Container{}, fmt.Errorf("podman storage at %s: inspect container: %w", a.endpoint, err)
	}
	stored, err := a.readStorage()
	if err != nil {
		return model.Container{}, err
	}
	for _, s := range stored {
		if s.ID == id && s.Podman {
			c := a.container(s)
			c.Labels = a.labelsOf([]StoredContainer{s})[s.ID]
			return c, nil
		}
	}
	return model.Container{}, fmt.Errorf("podman storage at %s: inspect container %s: %w", a.endpoint, id, engine.ErrNotFound)
}

// readStorage reads containers.json.
func (a *DaemonlessAdapter) readStorage() ([]StoredContainer, error) {
	lay := a.layout()
	file := filepath.Join(a.endpoint, lay.driver+"-containers", "containers.json")
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		// containers/storage writes it with the first container: none yet.
		if _, serr := os.Stat(a.endpoint); serr == nil {
			return nil, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("podman storage at %s: %w", a.endpoint, err)
	}
	cs, err := ParseContainersJSON(b)
	if err != nil {
		return nil, fmt.Errorf("podman storage at %s: %w", a.endpoint, err)
	}
	return cs, nil
}

// forgetExits drops the exit codes and labels of containers no longer in the
// storage.
func (a *DaemonlessAdapter) forgetExits(stored []StoredContainer) {
	ids := make(map[string]bool, len(stored))
	for _, s := range stored {
		ids[s.ID] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for id := range a.exits {
		if !ids[id] {
			delete(a.exits, id)
		}
	}
	for id := range a.labels {
		if !ids[id] {
			delete(a.labels, id)
		}
	}
}

// container puts together what the files say of one stored container:
// running while a conmon of it lives (PID from the runtime's PID file),
// exited when it has run (its PID file is there) and created otherwise.
func (a *DaemonlessAdapter) container(s StoredContainer) model.Container {
	lay := a.layout()
	c := model.Container{ID: s.ID, Name: s.Name, ImageID: s.ImageID, CreatedAt: s.Created, State: model.StateCreated}
	c.ImageName, c.ImageTags = engine.SplitImageRef(s.ImageName)
	run := a.host(path.Join(lay.runRoot, lay.driver+"-containers", s.ID, "userdata"))
	if b, err := os.ReadFile(filepath.Join(a.endpoint, lay.driver+"-containers", s.ID, "userdata", "config.json")); err == nil {
		c.CgroupPath = containerd.SpecCgroupPath(b)
	}
	pidFile := filepath.Join(run, "pidfile")
	st, err := os.Stat(pidFile)
	if err != nil {
		return c
	}
	// The runtime writes the PID file as the container starts: its time
	// is the start of the last run, and an exit code caught before it is
	// an earlier run's.
	c.StartedAt = st.ModTime()
	e, exited := a.exitOf(s.ID)
	exited = exited && !e.at.Before(c.StartedAt)
	if !exited && a.conmonRuns(s.ID, filepath.Join(run, "conmon.pid")) {
		if b, err := os.ReadFile(pidFile); err == nil {
			if pid, err := ParsePIDFile(b); err == nil {
				c.State, c.PID = model.StateRunning, pid
				return c
			}
		}
	}
	c.State = model.StateExited
	if exited {
		c.ExitCode, c.FinishedAt = e.code, e.at
	}
	return c
}

// conmonRuns tells whether the conmon whose PID is in pidFile still runs
// and monitors container id (a PID reused by another process does not).
func (a *DaemonlessAdapter) conmonRuns(id, pidFile string) bool {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return false
	}
	pid, err := ParsePIDFile(b)
	if err != nil {
		return false
	}
	cl, err := os.ReadFile(a.procPath(pid, "cmdline"))
	if err != nil {
		return false
	}
	c, ok := ParseConmon(procfs.ParseCmdline(cl))
	if !ok || c.ID != id || c.Exec {
		return false
	}
	a.learn(c)
	return true
}

// exitOf returns the exit code of id: the one caught as conmon wrote it,
// else the exit file if podman's cleanup has not removed it yet.
func (a *DaemonlessAdapter) exitOf(id string) (exitInfo, bool) {
	a.mu.Lock()
	e, ok := a.exits[id]
	dir := a.lay.exitDir
	a.mu.Unlock()
	if ok {
		return e, true
	}
	return a.readExit(filepath.Join(a.host(dir), id))
}

// readExit reads an exit file and remembers its code.
func (a *DaemonlessAdapter) readExit(file string) (exitInfo, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return exitInfo{}, false
	}
	code, err := ParseExitFile(b)
	if err != nil {
		a.log.Debug("unreadable exit file", "file", file, "err", err)
		return exitInfo{}, false
	}
	e := exitInfo{code: code, at: time.Now()}
	if st, err := os.Stat(file); err == nil {
		e.at = st.ModTime()
	}
	a.mu.Lock()
	a.exits[filepath.Base(file)] = e
	a.mu.Unlock()
	return e, true
}
