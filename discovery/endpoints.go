package discovery

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// ErrFiltered is wrapped by Discoverer.Add for an endpoint that
// Config.Endpoints leaves out.
var ErrFiltered = errors.New("left out by the endpoint filter")

// EndpointFilter limits the engine endpoints agentd watches. Patterns are
// path.Match globs ("*" does not cross a "/") on an engine's socket path,
// written two ways, either matching:
//   - the endpoint as agentd reports it (agentd.engine.endpoint, `agentd
//     engines`): /run/docker.sock, or /proc/812/root/run/podman/podman.sock
//     for an engine in another mount namespace;
//   - the path inside the engine's own root: /run/podman/podman.sock, which
//     names that socket in every container (and on the host).
//
// The zero value lets every endpoint through. An endpoint that does not
// pass is never dialled: neither probed nor watched.
type EndpointFilter struct {
	// Include, when not empty, lets through only the endpoints that match
	// one of its patterns.
	Include []string
	// Exclude drops the endpoints that match one of its patterns; it wins
	// over Include.
	Exclude []string
}

// Validate names the first pattern that can never match: a bad glob, or one
// that is not an absolute path pattern (endpoints are absolute paths).
func (f EndpointFilter) Validate() error {
	var errs []error
	for _, l := range []struct {
		name string
		pats []string
	}{{"include", f.Include}, {"exclude", f.Exclude}} {
		for i, p := range l.pats {
			if err := checkEndpointPattern(p); err != nil {
				errs = append(errs, fmt.Errorf("discovery: endpoint %s[%d] %q: %w", l.name, i, p, err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkEndpointPattern says why p cannot match an endpoint, nil when it can.
func checkEndpointPattern(p string) error {
	if _, err := path.Match(p, ""); err != nil {
		return errors.New("bad glob pattern")
	}
	if !strings.HasPrefix(p, "/") {
		return errors.New("must be an absolute path pattern (start with /)")
	}
	return nil
}

// Allows reports whether the engine endpoint endpoint, which is inRoot inside
// the engine's root (endpoint itself for an engine that shares agentd's
// root, or "" when unknown), passes the filter.
func (f EndpointFilter) Allows(endpoint, inRoot string) bool {
	if len(f.Include) > 0 && !matchEndpoint(f.Include, endpoint, inRoot) {
		return false
	}
	return !matchEndpoint(f.Exclude, endpoint, inRoot)
}

// Empty reports whether the filter lets every endpoint through.
func (f EndpointFilter) Empty() bool { return len(f.Include) == 0 && len(f.Exclude) == 0 }

func matchEndpoint(pats []string, endpoint, inRoot string) bool {
	for _, p := range pats {
		if ok, _ := path.Match(p, endpoint); ok {
			return true
		}
		if inRoot != "" && inRoot != endpoint {
			if ok, _ := path.Match(p, inRoot); ok {
				return true
			}
		}
	}
	return false
}

// InRoot returns the path inside its process's root of an endpoint reached
// through procRoot/PID/root (as agentd reports an engine in another mount
// namespace), and the endpoint itself otherwise.
func InRoot(procRoot, endpoint string) string {
	rest, ok := strings.CutPrefix(filepath.Clean(endpoint), filepath.Clean(procRoot)+"/")
	if !ok {
		return endpoint
	}
	pid, rest, ok := strings.Cut(rest, "/")
	if !ok || pid == "" || strings.Trim(pid, "0123456789") != "" {
		return endpoint
	}
	if rest, ok = strings.CutPrefix(rest, "root/"); !ok {
		return endpoint
	}
	return "/" + rest
}
