package oom

import (
	"testing"

	"github.com/agentd-dev/agentd/model"
)

func TestMatch(t *testing.T) {
	const (
		th     = "5959395be3ebeff3fd1d167b3be2f2e5cc2a6cec562c0d7620875b2c9e8f41c0"
		pod    = "830dbbe931b0683715aee16199a42c146063e563736f3475b3cee53294697e8c"
		dock   = "259e2723f03c623a983fc92657f7cd0aba2c6b34890f11158b0ff9830244c88d"
		inner  = "d7eda27c3e127b75aa40f860be4b3735fcd270afc963f869c276437b7bca1384"
		stale  = "1111111111111111111111111111111111111111111111111111111111111111"
		podCg  = "/docker/" + th + "/machine.slice/libpod-" + pod + ".scope"
		innerC = "/docker/" + inner
	)
	cs := []model.Container{
		{EngineID: "host-docker", ID: th, Name: "agentd-th", State: model.StateRunning, PID: 100, CgroupPath: "/docker/" + th},
		{EngineID: "host-docker", ID: dock, Name: "oomer", State: model.StateRunning, PID: 12566, CgroupPath: "/docker/" + dock},
		{EngineID: "th-podman", ID: pod, Name: "pod", State: model.StateRunning, PID: 15094, CgroupPath: podCg},
		{EngineID: "th-docker", ID: inner, Name: "inner", State: model.StateRunning, PID: 15304, CgroupPath: innerC},
		{EngineID: "ctrd", Namespace: "agentd-x", ID: "job", State: model.StateRunning, PID: 4000, CgroupPath: "/agentd-x/job"},
		{EngineID: "nested-ns", ID: "n1", State: model.StateRunning, PID: 5000, CgroupPath: "/docker/n1"},
		{EngineID: "cri", ID: stale, State: model.StateExited, CgroupPath: ""},
		{EngineID: "host-docker", ID: "exited", State: model.StateExited, PID: 0, CgroupPath: "/docker/exited"},
	}
	tests := []struct {
		name   string
		kill   Kill
		wantID string
		how    int
	}{
		{"a host Docker container is matched by its cgroup", Kill{PID: 12566, TaskMemcg: "/docker/" + dock, OOMMemcg: "/docker/" + dock}, dock, matchExact},
		{"podman in the systemd host wins over the systemd host's own container", Kill{PID: 15094, TaskMemcg: podCg, OOMMemcg: podCg}, pod, matchExact},
		{"Docker in the systemd host reports the path from the root", Kill{PID: 9, TaskMemcg: innerC}, inner, matchExact},
		{"a containerd container is matched by namespace and ID", Kill{PID: 4001, TaskMemcg: "/agentd-x/job"}, "job", matchExact},
		{"an engine in its own cgroup namespace reports a suffix of the kernel's path", Kill{PID: 1, TaskMemcg: "/docker/" + th + "/docker/n1"}, "n1", matchExact},
		{"a process in a sub-cgroup of a container belongs to it", Kill{PID: 1, TaskMemcg: "/docker/" + th + "/system.slice/foo.service"}, th, matchID},
		{"a container with no known cgroup is found by the ID in the path", Kill{PID: 1, TaskMemcg: "/kubepods/burstable/pod1/" + stale}, stale, matchID},
		{"a rate-limited report is matched by the init PID", Kill{PID: 15304}, inner, matchPID},
		{"an exited container's PID 0 matches nothing", Kill{PID: 0}, "", matchNone},
		{"a sub-cgroup of a container without an ID in it is matched as below", Kill{PID: 1, TaskMemcg: "/agentd-x/job/sub"}, "job", matchUnder},
		{"only the OOM cgroup known still finds the container", Kill{PID: 1, OOMMemcg: "/agentd-x/job"}, "job", matchOOMUnder},
		{"a host process matches nothing", Kill{PID: 1, TaskMemcg: "/user.slice/user-0.slice/session-1.scope"}, "", matchNone},
		{"a cgroup that only shares a prefix with a container's name matches nothing", Kill{PID: 1, TaskMemcg: "/agentd-x/jobs"}, "", matchNone},
		{"the root cgroup matches nothing", Kill{PID: 1, TaskMemcg: "/"}, "", matchNone},
		{"an exited container is still matched by its cgroup when the die came first", Kill{PID: 3, TaskMemcg: "/docker/exited"}, "exited", matchExact},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, how := match(cs, tt.kill)
			if c.ID != tt.wantID || how != tt.how {
				t.Errorf("match = %q by %s, want %q by %s", c.ID, matchNames[how], tt.wantID, matchNames[tt.how])
			}
		})
	}
	t.Run("a running container wins over an exited one with the same cgroup", func(t *testing.T) {
		two := []model.Container{
			{EngineID: "c", Namespace: "n", ID: "old", State: model.StateExited, CgroupPath: "/n/x"},
			{EngineID: "c", Namespace: "n", ID: "new", State: model.StateRunning, PID: 7, CgroupPath: "/n/x"},
		}
		if c, _ := match(two, Kill{PID: 8, TaskMemcg: "/n/x"}); c.ID != "new" {
			t.Errorf("matched %q, want new", c.ID)
		}
	})
}
