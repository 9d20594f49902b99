package cripod_test

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/internal/cripod"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
)

func TestConfigsCarryTheKubeletsLabels(t *testing.T) {
	sb := cripod.Sandbox("web", "shop", "u-1", "", map[string]string{"app": "web", cripod.LabelPodName: "forged"})
	if m := sb.GetMetadata(); m.GetName() != "web" || m.GetNamespace() != "shop" || m.GetUid() != "u-1" {
		t.Errorf("sandbox metadata %v", m)
	}
	want := map[string]string{"app": "web", cripod.LabelPodName: "web", cripod.LabelPodNamespace: "shop", cripod.LabelPodUID: "u-1"}
	if !equal(sb.GetLabels(), want) {
		t.Errorf("sandbox labels %v, want %v", sb.GetLabels(), want)
	}
	if sb.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() != runtimeapi.NamespaceMode_NODE {
		t.Error("the sandbox is not on the host's network")
	}
	if sb.GetLogDirectory() != "" {
		t.Errorf("log directory %q, want none", sb.GetLogDirectory())
	}

	c := cripod.Container(sb, "nginx", "local/busybox:latest", []string{"sleep", "1"},
		map[string]string{"B": "2", "A": "1"}, map[string]string{cripod.LabelContainerName: "forged", "tier": "front"})
	want = map[string]string{"tier": "front", cripod.LabelPodName: "web", cripod.LabelPodNamespace: "shop", cripod.LabelPodUID: "u-1",
		cripod.LabelContainerName: "nginx"}
	if !equal(c.GetLabels(), want) {
		t.Errorf("container labels %v, want %v", c.GetLabels(), want)
	}
	if c.GetMetadata().GetName() != "nginx" || c.GetImage().GetImage() != "local/busybox:latest" || c.GetLogPath() != "" {
		t.Errorf("container config %v", c)
	}
	if envs := c.GetEnvs(); len(envs) != 2 || envs[0].GetKey() != "A" || string(envs[0].GetValue()) != "1" || envs[1].GetKey() != "B" {
		t.Errorf("container environment %v, want A=1 B=2 in order", envs)
	}
	if got := cripod.Container(cripod.Sandbox("p", "n", "u", "/var/log/pods/x", nil), "app", "i", nil, nil, nil).GetLogPath(); got != "app.log" {
		t.Errorf("log path in a pod with a log directory: %q, want app.log", got)
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestRunAndRemoveOnTheTestbed runs a pod through the testbed's containerd
// CRI plugin (or a private containerd of the test's own where the host's
// cannot run sandboxes, see enginetest.CRILifecycleEndpoint), checks that its
// container runs with the kubelet's labels and removes the pod.
//
// ContainerStats is not asked here: on the testbed machine's cgroup v1
// hybrid hierarchy containerd 1.6's CRI plugin answers it with "unexpected
// metrics response: []". TestVMHostTodaysEnginesFiguresMatchTheEngines
// (internal/vmhost) reads it from containerd 2 on a cgroup v2 host and
// checks its figures.
func TestRunAndRemoveOnTheTestbed(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.CRI)
	endpoint := enginetest.CRILifecycleEndpoint(t)
	enginetest.ImportBusybox(t, endpoint, "k8s.io")
	rt, _ := enginetest.CRIClient(t, endpoint)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()

	r := enginetest.Random(t)
	sb := cripod.Sandbox("cripod-"+r, "agentd-test", "uid-"+r, t.TempDir(), map[string]string{"agentd.test": "cripod-" + r})
	podID, ctrID, err := cripod.Run(ctx, rt, sb, cripod.Container(sb, "hold", testbed.BusyboxImage,
		[]string{"sh", "-c", "echo $HOLD >/ready; sleep 1000"},
		map[string]string{"HOLD": "held"}, nil))
	if podID != "" {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cripod.Remove(ctx, rt, podID); err != nil {
				t.Errorf("remove: %v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctrID})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.GetStatus().GetLabels()[cripod.LabelContainerName]; got != "hold" {
		t.Errorf("the runtime has label %s %q, want hold", cripod.LabelContainerName, got)
	}
	if st.GetStatus().GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container %s is %v, want running", ctrID, st.GetStatus().GetState())
	}
	if err := cripod.Remove(ctx, rt, podID); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID}); err == nil {
		t.Errorf("pod sandbox %s still there after Remove", podID)
	}
}
