package agent

import (
	"fmt"
	"os"
	"strings"
)

// StatusLine is the one-line summary systemd shows for the unit
// (`systemctl status agentd`, sd_notify STATUS=): engines up and down,
// running containers, where agentd exports and how the last export went.
// It is safe for concurrent use.
func (a *Agent) StatusLine() string {
	snap := a.store.Snapshot()
	up, down := 0, 0
	for _, e := range snap.Engines {
		if e.Connected {
			up++
		} else {
			down++
		}
	}
	running := 0
	for i := range snap.Containers {
		if snap.Containers[i].State.Running() {
			running++
		}
	}
	var b strings.Builder
	switch {
	case up+down == 0:
		b.WriteString("no container engine found")
	case down == 0:
		fmt.Fprintf(&b, "%d %s up", up, plural(up, "engine", "engines"))
	default:
		fmt.Fprintf(&b, "%d %s up, %d down", up, plural(up, "engine", "engines"), down)
	}
	fmt.Fprintf(&b, ", %d running %s; %s", running, plural(running, "container", "containers"), a.exportSummary())
	return b.String()
}

// exportSummary says where agentd exports and how the last export went.
func (a *Agent) exportSummary() string {
	target := a.config().Export.Endpoint
	if target == "" {
		target = os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	switch {
	case target == "" && !otlpEnvSet() && a.opts.Stdout == nil:
		return "not exporting (no OTLP endpoint configured)"
	case target == "" && !otlpEnvSet():
		return "printing to stdout (no OTLP endpoint configured)"
	case target == "":
		target = "the OTEL_EXPORTER_OTLP_*_ENDPOINT collectors"
	}
	p := a.pipe.Load()
	if p == nil {
		return "exporting to " + target
	}
	at, err := p.LastExport()
	switch {
	case at.IsZero():
		return "exporting to " + target
	case err != nil:
		return "export to " + target + " failing: " + err.Error()
	}
	return "exporting to " + target + ", last export ok"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
