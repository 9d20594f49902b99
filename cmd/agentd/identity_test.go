package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBadResourceAttributesStopAgentd: a malformed OTEL_RESOURCE_ATTRIBUTES
// is a configuration error: agentd says which entry is wrong and exits 2
// (which the packaged unit does not restart), rather than exporting resources
// the operator did not ask for.
func TestBadResourceAttributesStopAgentd(t *testing.T) {
	bin := buildAgentd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "run")
	cmd.Env = append(os.Environ(), "OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod,broken")
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitConfig {
		t.Fatalf("agentd run = %v, want exit %d\n%s", err, exitConfig, out.String())
	}
	for _, want := range []string{"OTEL_RESOURCE_ATTRIBUTES", `"broken"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the error does not name %s:\n%s", want, out.String())
		}
	}
}
