package telemetry

import (
	"testing"

	"github.com/agentd-dev/agentd/model"
)

func TestContainerResourceRuntimeAndK8sAttributes(t *testing.T) {
	pod := map[string]string{
		"io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.uid": "u-1",
		"io.kubernetes.pod.namespace": "shop",
	}
	withName := map[string]string{"io.kubernetes.container.name": "nginx"}
	for k, v := range pod {
		withName[k] = v
	}
	tests := []struct {
		name   string
		engine model.Engine
		ctr    model.Container
		want   map[string]string // "" means absent
	}{
		{"containerd's CRI plugin names containerd, the pod from labels, the container from its CRI name",
			model.Engine{ID: "cri:/run/containerd/containerd.sock", Type: model.CRI, Runtime: "containerd"},
			model.Container{ID: "c1", Name: "app", Labels: pod},
			map[string]string{"container.runtime.name": "containerd", "agentd.engine.type": "cri",
				"k8s.pod.name": "web-0", "k8s.pod.uid": "u-1", "k8s.namespace.name": "shop", "k8s.container.name": "app"}},
		{"CRI-O names cri-o; the kubelet's container-name label wins",
			model.Engine{ID: "cri-o:/run/crio/crio.sock", Type: model.CRIO, Runtime: "cri-o"},
			model.Container{ID: "c2", Name: "k8s_nginx_web-0", Labels: withName},
			map[string]string{"container.runtime.name": "cri-o", "agentd.engine.type": "cri-o", "k8s.container.name": "nginx"}},
		{"a Docker container of no pod carries no k8s attributes",
			model.Engine{ID: "d", Type: model.Docker},
			model.Container{ID: "c3", Name: "web"},
			map[string]string{"container.runtime.name": "docker", "agentd.engine.type": "docker",
				"k8s.pod.name": "", "k8s.container.name": ""}},
		{"a Docker container the kubelet made (cri-dockerd) carries its pod's",
			model.Engine{ID: "d", Type: model.Docker},
			model.Container{ID: "c4", Name: "k8s_nginx", Labels: withName},
			map[string]string{"container.runtime.name": "docker", "k8s.pod.name": "web-0", "k8s.container.name": "nginx"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := ContainerResource(Host{Name: "h"}, &tt.engine, &tt.ctr, nil)
			got := map[string]string{}
			for _, kv := range res.Attributes() {
				got[string(kv.Key)] = kv.Value.AsString()
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}
