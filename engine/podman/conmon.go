package podman

import (
	"path"
	"strings"
)

// Conmon is what a conmon command line says about the container it
// monitors and the podman that started it. podman starts one conmon per
// running container (and one per exec session) and leaves it running,
// detached, after `podman run -d` returns: with no podman service, conmon
// is the only process that tells a container runs.
type Conmon struct {
	// ID is the container's ID (-c, --cid).
	ID string
	// Name is the container's name (-n, --name).
	Name string
	// Bundle is the OCI bundle (-b, --bundle): the directory that holds
	// the container's config.json, STORAGE/DRIVER-containers/ID/userdata.
	Bundle string
	// PIDFile is where the runtime writes the container's init PID
	// (-p, --container-pidfile), in conmon's PID namespace.
	PIDFile string
	// ExitDir is the directory where conmon writes a file named after the
	// container holding its exit code (--exit-dir). podman's cleanup,
	// which conmon runs as the container exits, reads and removes it.
	ExitDir string
	// Runtime is the OCI runtime's path (-r, --runtime).
	Runtime string
	// Exec is true for the conmon of an exec session (--exec), which
	// says nothing about the container's own state.
	Exec bool
	// Root, RunRoot, TmpDir and StorageDriver are podman's global flags
	// as conmon hands them to the exit command (--exit-command-arg
	// --root ...): the storage that holds the container. Root falls back
	// to the bundle's storage when the exit command does not name it.
	Root, RunRoot, TmpDir, StorageDriver string
}

// conmonValueFlags are conmon's options that take a value (conmon 2.x,
// glib option syntax: "-c ID", "--cid ID", "--cid=ID", "-cID"); any other
// option is taken to be boolean.
var conmonValueFlags = map[string]bool{
	"api-version": true, "b": true, "bundle": true, "c": true, "cid": true,
	"P": true, "conmon-pidfile": true, "p": true, "container-pidfile": true,
	"u": true, "cuuid": true, "exec-process-spec": true, "exit-command": true,
	"exit-command-arg": true, "exit-delay": true, "exit-dir": true, "l": true,
	"log-path": true, "log-level": true, "log-size-max": true, "log-tag": true,
	"log-global-size-max": true, "n": true, "name": true, "r": true,
	"runtime": true, "runtime-arg": true, "runtime-opt": true, "s": true,
	"socket-dir-path": true, "persist-dir": true, "T": true, "timeout": true,
	"seccomp-notify-socket": true, "seccomp-notify-plugins": true,
	"restore": true, "restore-arg": true, "log-label": true,
}

// ParseConmon reads a conmon command line (argv[0] first). ok is false
// when it names no container: not a conmon of podman's.
func ParseConmon(argv []string) (c Conmon, ok bool) {
	var exitArgs []string
	for i := 1; i < len(argv); i++ {
		a := argv[i]
		if a == "--" {
			break
		}
		var name, val string
		var hasVal bool
		switch {
		case strings.HasPrefix(a, "--"):
			name, val, hasVal = strings.Cut(a[2:], "=")
		case strings.HasPrefix(a, "-") && len(a) >= 2:
			name = a[1:2]
			if len(a) > 2 {
				val, hasVal = strings.TrimPrefix(a[2:], "="), true
			}
		default:
			continue // a stray argument
		}
		if !conmonValueFlags[name] {
			if name == "e" || name == "exec" {
				c.Exec = true
			}
			continue
		}
		if !hasVal {
			if i+1 >= len(argv) {
				break
			}
			i++
			val = argv[i]
		}
		switch name {
		case "c", "cid":
			c.ID = val
		case "n", "name":
			c.Name = val
		case "b", "bundle":
			c.Bundle = val
		case "p", "container-pidfile":
			c.PIDFile = val
		case "exit-dir":
			c.ExitDir = val
		case "r", "runtime":
			c.Runtime = val
		case "exit-command-arg":
			exitArgs = append(exitArgs, val)
		}
	}
	c.Root, c.RunRoot, c.TmpDir, c.StorageDriver = podmanGlobals(exitArgs)
	if c.Root == "" {
		c.Root = bundleStorage(c.Bundle)
	}
	if c.StorageDriver == "" {
		c.StorageDriver = bundleDriver(c.Bundle)
	}
	return c, c.ID != "" && c.Root != ""
}

// podmanGlobals picks podman's storage flags out of an exit command's
// arguments ("--root X" or "--root=X"), up to the subcommand.
func podmanGlobals(args []string) (root, runRoot, tmpDir, driver string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "--") {
			break // the subcommand ("container cleanup")
		}
		name, val, hasVal := strings.Cut(a[2:], "=")
		dst := map[string]*string{"root": &root, "runroot": &runRoot, "tmpdir": &tmpDir, "storage-driver": &driver}[name]
		if !hasVal && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			i++
			val = args[i]
		}
		if dst != nil {
			*dst = val
		}
	}
	return root, runRoot, tmpDir, driver
}

// bundleStorage is the storage root of a bundle
// ROOT/DRIVER-containers/ID/userdata, "" for any other path.
func bundleStorage(bundle string) string {
	dir, ok := bundleParts(bundle)
	if !ok {
		return ""
	}
	return path.Dir(dir)
}

// bundleDriver is the storage driver of a bundle
// ROOT/DRIVER-containers/ID/userdata, "" for any other path.
func bundleDriver(bundle string) string {
	dir, ok := bundleParts(bundle)
	if !ok {
		return ""
	}
	return strings.TrimSuffix(path.Base(dir), "-containers")
}

// bundleParts returns ROOT/DRIVER-containers of a podman bundle path.
func bundleParts(bundle string) (string, bool) {
	if !path.IsAbs(bundle) {
		return "", false
	}
	b := path.Clean(bundle)
	if path.Base(b) != "userdata" {
		return "", false
	}
	dir := path.Dir(path.Dir(b))
	if !strings.HasSuffix(path.Base(dir), "-containers") || path.Base(dir) == "-containers" || path.Dir(dir) == "/" {
		return "", false
	}
	return dir, true
}
