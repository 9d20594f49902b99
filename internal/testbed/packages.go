package testbed

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// BuildPackages runs packaging/build.sh of the repository at repo: it builds
// agentd from ./cmd/agentd with version stamped in and packages it (.deb and
// .rpm) into dir. AGENTD_BIN is dropped from the environment, so the package
// holds the binary just built, never one handed in. A failure fails t.
func BuildPackages(t testing.TB, repo, version, dir string) {
	t.Helper()
	cmd := exec.Command("bash", "packaging/build.sh")
	cmd.Dir = repo
	env := make([]string, 0, len(os.Environ())+2)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AGENTD_BIN=") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "VERSION="+version, "DIST="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packaging/build.sh (go build ./cmd/agentd and nfpm): %v\n%s", err, out)
	}
}
