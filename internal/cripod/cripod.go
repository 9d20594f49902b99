// Package cripod makes pods through a CRI runtime service the way the
// kubelet does: a host-network pod sandbox (no CNI needed) and containers in
// it, each labelled with the io.kubernetes.* labels the kubelet sets, and
// reads a container's stats back. The tests' CRI set-ups
// (internal/enginetest, agent) and the VM host's CRI client (testbed/cripod,
// a static binary run in the guest) share it, so that a pod is made one way
// everywhere. It imports no testing package.
package cripod

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The labels the kubelet puts on every pod sandbox (the pod's three) and
// container (all four), whatever the runtime.
const (
	LabelPodName       = "io.kubernetes.pod.name"
	LabelPodNamespace  = "io.kubernetes.pod.namespace"
	LabelPodUID        = "io.kubernetes.pod.uid"
	LabelContainerName = "io.kubernetes.container.name"
)

// Dial connects a gRPC client to the CRI runtime service on the unix socket
// at path (the connection comes up at the first call).
func Dial(path string) (*grpc.ClientConn, error) {
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("CRI client for %s: %w", path, err)
	}
	return conn, nil
}

// Sandbox is the config of pod name in namespace ns with uid: host network,
// labelled with the kubelet's pod labels and labels (which may not override
// them), its logs in logDir ("" for none).
func Sandbox(name, ns, uid, logDir string, labels map[string]string) *runtimeapi.PodSandboxConfig {
	l := maps.Clone(labels)
	if l == nil {
		l = map[string]string{}
	}
	l[LabelPodName], l[LabelPodNamespace], l[LabelPodUID] = name, ns, uid
	return &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: ns, Uid: uid},
		LogDirectory: logDir,
		Labels:       l,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}
}

// Container is the config of container name of pod sb running command in
// image, with the environment env, labelled with the kubelet's pod and
// container labels and labels (which may not override them). Its log is
// name.log in the pod's log directory when the pod has one.
func Container(sb *runtimeapi.PodSandboxConfig, name, image string, command []string, env map[string]string, labels map[string]string) *runtimeapi.ContainerConfig {
	l := maps.Clone(labels)
	if l == nil {
		l = map[string]string{}
	}
	m := sb.GetMetadata()
	l[LabelPodName], l[LabelPodNamespace], l[LabelPodUID] = m.GetName(), m.GetNamespace(), m.GetUid()
	l[LabelContainerName] = name
	var kvs []*runtimeapi.KeyValue
	for _, k := range sortedKeys(env) {
		kvs = append(kvs, &runtimeapi.KeyValue{Key: k, Value: []byte(env[k])})
	}
	c := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  command,
		Envs:     kvs,
		Labels:   l,
	}
	if sb.GetLogDirectory() != "" {
		c.LogPath = name + ".log"
	}
	return c
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Run runs pod sb and creates and starts container c in it. It returns the
// pod sandbox's ID whenever the sandbox runs, also with an error of a later
// step, so that the caller can remove it.
func Run(ctx context.Context, rt runtimeapi.RuntimeServiceClient, sb *runtimeapi.PodSandboxConfig, c *runtimeapi.ContainerConfig) (podID, ctrID string, err error) {
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: sb})
	if err != nil {
		return "", "", fmt.Errorf("CRI RunPodSandbox of pod %s/%s: %w", sb.GetMetadata().GetNamespace(), sb.GetMetadata().GetName(), err)
	}
	podID = pod.GetPodSandboxId()
	created, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c, SandboxConfig: sb})
	if err != nil {
		return podID, "", fmt.Errorf("CRI CreateContainer %s in pod sandbox %s: %w", c.GetMetadata().GetName(), podID, err)
	}
	ctrID = created.GetContainerId()
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
		return podID, ctrID, fmt.Errorf("CRI StartContainer %s (%s): %w", c.GetMetadata().GetName(), ctrID, err)
	}
	return podID, ctrID, nil
}

// Remove stops and removes pod sandbox podID with its containers. A pod
// that is gone already is no error: a clean-up may follow a removal.
func Remove(ctx context.Context, rt runtimeapi.RuntimeServiceClient, podID string) error {
	_, stopErr := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID})
	if status.Code(stopErr) == codes.NotFound {
		return nil
	}
	if stopErr != nil {
		stopErr = fmt.Errorf("CRI StopPodSandbox %s: %w", podID, stopErr)
	}
	_, rmErr := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
	if status.Code(rmErr) == codes.NotFound {
		rmErr = nil
	}
	if rmErr != nil {
		rmErr = fmt.Errorf("CRI RemovePodSandbox %s: %w", podID, rmErr)
	}
	return errors.Join(stopErr, rmErr)
}

// Stats is the part of a container's CRI ContainerStats the VM host test
// compares, in plain numbers: what the runtime read from the container's
// cgroup.
type Stats struct {
	ContainerID string `json:"container_id"`
	Name        string `json:"name"`
	// Timestamps are the runtime's, in nanoseconds since the epoch.
	CPUTimestamp    int64  `json:"cpu_timestamp"`
	CPUUsageNanos   uint64 `json:"cpu_usage_core_nano_seconds"`
	MemoryTimestamp int64  `json:"memory_timestamp"`
	// MemoryUsage is memory.current on cgroup v2.
	MemoryUsage uint64 `json:"memory_usage_bytes"`
	// MemoryWorkingSet is usage minus inactive_file.
	MemoryWorkingSet uint64 `json:"memory_working_set_bytes"`
	// MemoryRSS is memory.stat anon on cgroup v2.
	MemoryRSS uint64 `json:"memory_rss_bytes"`
}

// ContainerStats asks the runtime for container id's stats.
func ContainerStats(ctx context.Context, rt runtimeapi.RuntimeServiceClient, id string) (Stats, error) {
	resp, err := rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		return Stats{}, fmt.Errorf("CRI ContainerStats of %s: %w", id, err)
	}
	s := resp.GetStats()
	if s.GetCpu() == nil || s.GetMemory() == nil {
		return Stats{}, fmt.Errorf("CRI ContainerStats of %s: no CPU or memory figures in %v", id, s)
	}
	return Stats{
		ContainerID:      s.GetAttributes().GetId(),
		Name:             s.GetAttributes().GetMetadata().GetName(),
		CPUTimestamp:     s.GetCpu().GetTimestamp(),
		CPUUsageNanos:    s.GetCpu().GetUsageCoreNanoSeconds().GetValue(),
		MemoryTimestamp:  s.GetMemory().GetTimestamp(),
		MemoryUsage:      s.GetMemory().GetUsageBytes().GetValue(),
		MemoryWorkingSet: s.GetMemory().GetWorkingSetBytes().GetValue(),
		MemoryRSS:        s.GetMemory().GetRssBytes().GetValue(),
	}, nil
}
