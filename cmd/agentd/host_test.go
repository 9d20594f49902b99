package main

import (
	"testing"

	"github.com/agentd-dev/agentd/config"
)

// TestHostPrecedence: where the host is comes from the command line, then the
// environment, then the file, key by key.
func TestHostPrecedence(t *testing.T) {
	file := "host:\n  proc: /file/proc\n  cgroup: /file/cgroup\n"
	tests := []struct {
		name                 string
		file                 string
		flagProc, flagCgroup string
		env                  map[string]string
		wantProc, wantCgroup string
	}{
		{name: "defaults", wantProc: "/proc", wantCgroup: "/sys/fs/cgroup"},
		{name: "file", file: file, wantProc: "/file/proc", wantCgroup: "/file/cgroup"},
		{name: "environment over file", file: file, env: map[string]string{"AGENTD_HOST_PROC": "/env/proc", "AGENTD_HOST_CGROUP": "/env/cgroup"},
			wantProc: "/env/proc", wantCgroup: "/env/cgroup"},
		{name: "flags over environment", file: file, flagProc: "/flag/proc", flagCgroup: "/flag/cgroup",
			env: map[string]string{"AGENTD_HOST_PROC": "/env/proc", "AGENTD_HOST_CGROUP": "/env/cgroup"}, wantProc: "/flag/proc", wantCgroup: "/flag/cgroup"},
		{name: "one key each way", file: file, flagCgroup: "/flag/cgroup", env: map[string]string{"AGENTD_HOST_PROC": "/env/proc"},
			wantProc: "/env/proc", wantCgroup: "/flag/cgroup"},
		{name: "discovery.proc_root still works", file: "discovery:\n  proc_root: /old/proc\n", wantProc: "/old/proc", wantCgroup: "/sys/fs/cgroup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse("agentd.yaml", []byte(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			overrideHost(&c, tt.flagProc, tt.flagCgroup, func(k string) string { return tt.env[k] })
			if c.HostProc() != tt.wantProc || c.Host.Cgroup != tt.wantCgroup {
				t.Errorf("proc %q cgroup %q, want %q %q", c.HostProc(), c.Host.Cgroup, tt.wantProc, tt.wantCgroup)
			}
			if err := c.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}
