package packaging_test

import (
	"os"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// TestDaemonSetManifest decodes packaging/examples/daemonset.yaml strictly with
// the Kubernetes API types (an unknown or misspelt field fails) and checks what
// makes agentd work on a node and what keeps it contained: the host PID
// namespace, read-only host mounts of /proc, the cgroup tree and the engine
// sockets, where agentd is told to find them, the OTLP endpoint and the node
// name from the downward API in OTEL_RESOURCE_ATTRIBUTES, resources, and the
// hardening a pod can carry.
func TestDaemonSetManifest(t *testing.T) {
	b, err := os.ReadFile("examples/daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatalf("examples/daemonset.yaml: %v", err)
	}
	// encoding/json, under UnmarshalStrict, matches field names regardless of
	// case ("hostPid" passes for hostPID) while the API server does not: decode
	// again the way it does, case-sensitively, and refuse what it would drop.
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	strictErrs, err := k8sjson.UnmarshalStrict(js, &appsv1.DaemonSet{}, k8sjson.DisallowUnknownFields)
	if err != nil {
		t.Fatalf("examples/daemonset.yaml: %v", err)
	}
	for _, e := range strictErrs {
		t.Errorf("examples/daemonset.yaml: %v", e)
	}
	if ds.APIVersion != "apps/v1" || ds.Kind != "DaemonSet" {
		t.Errorf("apiVersion/kind = %s/%s, want apps/v1/DaemonSet", ds.APIVersion, ds.Kind)
	}
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod template's labels %v", k, v, ds.Spec.Template.Labels)
		}
	}
	pod := ds.Spec.Template.Spec
	if !pod.HostPID {
		t.Error("hostPID is not set: agentd must see the host's processes")
	}
	if pod.HostNetwork || pod.HostIPC {
		t.Errorf("hostNetwork=%v hostIPC=%v, want neither", pod.HostNetwork, pod.HostIPC)
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: agentd needs no API access")
	}
	if psc := pod.SecurityContext; psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod seccompProfile is not RuntimeDefault")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	c := pod.Containers[0]

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("the container has no securityContext")
	}
	if sc.Privileged == nil || *sc.Privileged {
		t.Error("privileged is not false")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities drop %v, want [ALL]", sc.Capabilities)
	} else {
		for _, capab := range sc.Capabilities.Add {
			if !slices.Contains([]corev1.Capability{"SYS_PTRACE", "DAC_READ_SEARCH"}, capab) {
				t.Errorf("capability %s added; only SYS_PTRACE and DAC_READ_SEARCH are needed", capab)
			}
		}
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || !okLim {
			t.Errorf("resources: %s request and limit must both be set (%v)", r, c.Resources)
			continue
		}
		if req.Cmp(lim) > 0 {
			t.Errorf("resources: %s request %s above its limit %s", r, req.String(), lim.String())
		}
	}
	if lim := c.Resources.Limits[corev1.ResourceMemory]; lim.Cmp(resource.MustParse("128Mi")) < 0 {
		t.Errorf("memory limit %s is below 128Mi, too tight for a node with many containers", lim.String())
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range c.VolumeMounts {
		mounts[m.MountPath] = m
		if _, ok := volumes[m.Name]; !ok {
			t.Errorf("mount %s names volume %q, which is not declared", m.MountPath, m.Name)
		}
	}
	for _, want := range []struct{ hostPath, mountPath string }{
		{"/proc", "/host/proc"},
		{"/sys/fs/cgroup", "/host/sys/fs/cgroup"},
		{"/run/containerd", "/run/containerd"},
		{"/run/crio", "/run/crio"},
		{"/run/podman", "/run/podman"},
	} {
		m, ok := mounts[want.mountPath]
		if !ok {
			t.Errorf("no mount at %s (host %s)", want.mountPath, want.hostPath)
			continue
		}
		if !m.ReadOnly {
			t.Errorf("mount %s is not read-only", want.mountPath)
		}
		if hp := volumes[m.Name].HostPath; hp == nil || hp.Path != want.hostPath {
			t.Errorf("mount %s: volume %q is not hostPath %s: %+v", want.mountPath, m.Name, want.hostPath, volumes[m.Name])
		}
	}
	// Every host path mounted is read-only.
	for _, m := range c.VolumeMounts {
		if volumes[m.Name].HostPath != nil && !m.ReadOnly {
			t.Errorf("host path volume %q mounted writable at %s", m.Name, m.MountPath)
		}
	}
	if m, ok := mounts["/run/agentd"]; !ok || volumes[m.Name].EmptyDir == nil {
		t.Error("no emptyDir at /run/agentd for the status socket (the root filesystem is read-only)")
	}

	env := map[string]corev1.EnvVar{}
	for i, e := range c.Env {
		env[e.Name] = e
		// A $(VAR) reference only expands to a variable defined earlier.
		for _, later := range c.Env[i:] {
			if strings.Contains(e.Value, "$("+later.Name+")") {
				t.Errorf("env %s refers to $(%s), which is defined after it", e.Name, later.Name)
			}
		}
	}
	for name, want := range map[string]string{
		"AGENTD_HOST_PROC":   "/host/proc",
		"AGENTD_HOST_CGROUP": "/host/sys/fs/cgroup",
	} {
		if env[name].Value != want {
			t.Errorf("env %s = %q, want %q", name, env[name].Value, want)
		}
	}
	if !strings.HasPrefix(env["OTEL_EXPORTER_OTLP_ENDPOINT"].Value, "http") {
		t.Errorf("env OTEL_EXPORTER_OTLP_ENDPOINT = %q, want a URL", env["OTEL_EXPORTER_OTLP_ENDPOINT"].Value)
	}
	attrs := env["OTEL_RESOURCE_ATTRIBUTES"].Value
	i := strings.Index(attrs, "k8s.node.name=$(")
	if i < 0 {
		t.Fatalf("env OTEL_RESOURCE_ATTRIBUTES = %q, want k8s.node.name=$(VAR) from the downward API", attrs)
	}
	ref := attrs[i+len("k8s.node.name=$("):]
	ref = ref[:strings.IndexByte(ref, ')')]
	node := env[ref]
	if node.ValueFrom == nil || node.ValueFrom.FieldRef == nil || node.ValueFrom.FieldRef.FieldPath != "spec.nodeName" {
		t.Errorf("env %s is not the downward API's spec.nodeName: %+v", ref, node)
	}
}
