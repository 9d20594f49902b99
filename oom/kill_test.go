package oom

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// kills runs a fixture through the splitter and the Parser, as the Detector does.
func fixtureKills(t *testing.T, name string) []Kill {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var s splitter
	var p Parser
	var out []Kill
	s.feed(b, func(rec []byte) {
		r, err := ParseRecord(rec)
		if err != nil {
			return
		}
		if k, ok := p.Feed(r); ok {
			out = append(out, k)
		}
	})
	return out
}

func TestParserFindsKillsInEveryKernelFormat(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		fixture string
		want    []Kill
	}{
		{
			name:    "kernel 6.18 on this testbed reports a host Docker container's kill with both memory cgroups",
			fixture: "kernel-6.18-docker-cgroupfs.kmsg",
			want: []Kill{{SinceBoot: 5432440678 * time.Microsecond, Seq: 2090, PID: 12566, Task: "sh",
				TaskMemcg:  "/docker/259e2723f03c623a983fc92657f7cd0aba2c6b34890f11158b0ff9830244c88d",
				OOMMemcg:   "/docker/259e2723f03c623a983fc92657f7cd0aba2c6b34890f11158b0ff9830244c88d",
				Constraint: "CONSTRAINT_MEMCG"}},
		},
		{
			name:    "kernel 6.18 reports podman's container in the systemd host with the full host path",
			fixture: "kernel-6.18-podman-nested.kmsg",
			want: []Kill{{SinceBoot: 5522843686 * time.Microsecond, Seq: 2194, PID: 15094, Task: "sh",
				TaskMemcg:  "/docker/5959395be3ebeff3fd1d167b3be2f2e5cc2a6cec562c0d7620875b2c9e8f41c0/machine.slice/libpod-830dbbe931b0683715aee16199a42c146063e563736f3475b3cee53294697e8c.scope",
				OOMMemcg:   "/docker/5959395be3ebeff3fd1d167b3be2f2e5cc2a6cec562c0d7620875b2c9e8f41c0/machine.slice/libpod-830dbbe931b0683715aee16199a42c146063e563736f3475b3cee53294697e8c.scope",
				Constraint: "CONSTRAINT_MEMCG"}},
		},
		{
			name:    "kernel 5.10 with the systemd driver, a caller field, a dictionary and a comm with spaces and parentheses",
			fixture: "kernel-5.10-systemd-cgroup2.kmsg",
			want: []Kill{{SinceBoot: 912345920 * time.Microsecond, Seq: 303, PID: 778, Task: "stress (x)",
				TaskMemcg: "/system.slice/docker-" + id + ".scope", OOMMemcg: "/system.slice/docker-" + id + ".scope",
				Constraint: "CONSTRAINT_MEMCG"}},
		},
		{
			name:    "kernel 4.14 names the cgroups in a Task in line and the kill is the Killed line, not the Kill process one",
			fixture: "kernel-4.14-legacy.kmsg",
			want: []Kill{{SinceBoot: 81234710 * time.Microsecond, Seq: 9007, PID: 4242, Task: "sh",
				TaskMemcg: "/docker/" + id, OOMMemcg: "/docker/" + id}},
		},
		{
			name:    "a system-wide OOM has no oom cgroup but the task's",
			fixture: "kernel-6.1-global.kmsg",
			want: []Kill{{SinceBoot: 1000200 * time.Microsecond, Seq: 52, PID: 31337, Task: "java",
				TaskMemcg: "/kubepods/burstable/pod1234/" + id, Constraint: "CONSTRAINT_NONE"}},
		},
		{
			name:    "a report whose summary was rate-limited away still gives the kill, without cgroups",
			fixture: "ratelimited.kmsg",
			want:    []Kill{{SinceBoot: 2 * time.Second, Seq: 7000, PID: 555, Task: "yes"}},
		},
		{
			name:    "garbage is skipped and an escaped parenthesis in a comm is kept",
			fixture: "garbage.kmsg",
			want:    []Kill{{SinceBoot: 50 * time.Microsecond, Seq: 13, PID: 99, Task: "a)b"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := fixtureKills(t, tt.fixture)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d kills %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("kill %d\n got %+v\nwant %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestParserDoesNotMixReports(t *testing.T) {
	feed := func(p *Parser, msg string) (Kill, bool) { return p.Feed(Record{Message: msg}) }
	t.Run("a summary for another PID is not used for a kill", func(t *testing.T) {
		var p Parser
		feed(&p, "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=a,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=sh,pid=1,uid=0")
		k, ok := feed(&p, "Memory cgroup out of memory: Killed process 2 (sh) total-vm:1kB")
		if !ok || k.PID != 2 || k.TaskMemcg != "" {
			t.Errorf("got %+v, %v", k, ok)
		}
	})
	t.Run("a new report forgets the previous report's summary", func(t *testing.T) {
		var p Parser
		feed(&p, "oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=a,mems_allowed=0,oom_memcg=/a,task_memcg=/a,task=sh,pid=1,uid=0")
		feed(&p, "sh invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0")
		k, ok := feed(&p, "Memory cgroup out of memory: Killed process 1 (sh) total-vm:1kB")
		if !ok || k.TaskMemcg != "" {
			t.Errorf("got %+v, %v", k, ok)
		}
	})
	t.Run("the reaper's line is not a second kill", func(t *testing.T) {
		var p Parser
		if k, ok := feed(&p, "oom_reaper: reaped process 1 (sh), now anon-rss:0kB"); ok {
			t.Errorf("got %+v", k)
		}
	})
	t.Run("commas in the nodemask, mems_allowed and cgroup names do not confuse the summary", func(t *testing.T) {
		k, ok := parseSummary("oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=0,2,cpuset=a,b,mems_allowed=0,2,oom_memcg=/x,y,task_memcg=/x,y/z,task=a,b,pid=7,uid=0")
		want := Kill{PID: 7, Task: "a,b", TaskMemcg: "/x,y/z", OOMMemcg: "/x,y", Constraint: "CONSTRAINT_MEMCG"}
		if !ok || k != want {
			t.Errorf("got %+v, %v; want %+v", k, ok, want)
		}
	})
}
