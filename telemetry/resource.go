package telemetry

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/agentd-dev/agentd/model"
)

// agentd resource attributes (no semantic convention covers them).
const (
	AttrEngineID                = "agentd.engine.id"
	AttrEngineType              = "agentd.engine.type"
	AttrEngineEndpoint          = "agentd.engine.endpoint"
	AttrEnginePID               = "agentd.engine.pid"
	AttrEnginePrefix            = "agentd.engine.prefix"
	AttrEngineParentContainerID = "agentd.engine.parent.container.id"
	AttrContainerdNamespace     = "containerd.namespace"
)

// Host describes the host, and agentd on it, that every resource carries.
type Host struct {
	Name string // host.name
	ID   string // host.id, from /etc/machine-id
	// Version is service.version, agentd's version; "" leaves it out.
	Version string
	// Service is service.name when not "" (OTEL_SERVICE_NAME); else
	// ServiceName unless Extra names one.
	Service string
	// Extra is OTEL_RESOURCE_ATTRIBUTES (see WithEnvironment).
	Extra []attribute.KeyValue
}

// DetectHost reads the host name and /etc/machine-id under root ("" means /).
// A missing machine-id leaves ID empty (host.id is then not exported).
func DetectHost(root string) Host {
	if root == "" {
		root = "/"
	}
	var h Host
	if b, err := os.ReadFile(filepath.Join(root, "etc", "hostname")); err == nil && root != "/" {
		h.Name = strings.TrimSpace(string(b))
	}
	if h.Name == "" {
		h.Name, _ = os.Hostname()
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc", "machine-id")); err == nil {
		h.ID = strings.TrimSpace(string(b))
	}
	return h
}

// engineAttrs adds the engine's attributes, named by its identity
// (model.Engine.Identity) on a container's resource; the engine's own
// (forEngine) has the identity's ID, so that containers and engine join on
// it, but the endpoint of the view it describes (a podman's socket or
// storage), and its version whenever it is known.
func engineAttrs(kv []attribute.KeyValue, e *model.Engine, forEngine bool) []attribute.KeyValue {
	id := e.Identity()
	if forEngine {
		id.Endpoint = e.Endpoint
	}
	kv = append(kv,
		semconv.ContainerRuntimeName(e.RuntimeName()),
		attribute.String(AttrEngineType, string(e.Type)),
		attribute.String(AttrEngineID, id.ID),
		attribute.String(AttrEngineEndpoint, id.Endpoint),
		attribute.String(AttrEnginePrefix, e.Prefix),
		attribute.String(AttrEngineParentContainerID, e.ParentContainerID),
	)
	if e.Version != "" && (forEngine || id.ContainerVersion) {
		kv = append(kv, semconv.ContainerRuntimeVersion(e.Version))
	}
	return kv
}

// withEnginePID adds agentd.engine.pid. Only engine resources carry it: a
// container's series must not split when its engine restarts, and a
// socket-activated engine (Unit set) gets a new PID at every activation and has
// none between, so its resource leaves the PID out as well.
func withEnginePID(kv []attribute.KeyValue, e *model.Engine) []attribute.KeyValue {
	if e.PID > 0 && e.Unit == "" {
		kv = append(kv, attribute.Int(AttrEnginePID, e.PID))
	}
	return kv
}

// EngineResource is the OTLP resource of an engine: container.runtime.*,
// agentd.engine.* and the host.
func EngineResource(h Host, e *model.Engine) *resource.Resource {
	kv := withEnginePID(engineAttrs(make([]attribute.KeyValue, 0, 10), e, true), e)
	return resource.NewWithAttributes(semconv.SchemaURL, h.with(kv)...)
}

// ContainerResource is the OTLP resource of a container: container.*, the
// allowlisted labels as container.label.<key>, its engine's attributes and the
// host. It never carries environment variables. allow reports whether a label
// key is exported.
func ContainerResource(h Host, e *model.Engine, c *model.Container, allow func(string) bool) *resource.Resource {
	kv := make([]attribute.KeyValue, 0, 20)
	kv = append(kv, semconv.ContainerID(limitString(c.ID)))
	if v := limitString(c.Name); v != "" {
		kv = append(kv, semconv.ContainerName(v))
	}
	if v := limitString(c.ImageName); v != "" {
		kv = append(kv, semconv.ContainerImageName(v))
	}
	if tags := limitStrings(c.ImageTags); len(tags) > 0 {
		kv = append(kv, semconv.ContainerImageTags(tags...))
	}
	if v := limitString(c.ImageID); v != "" {
		kv = append(kv, semconv.ContainerImageID(v))
	}
	if v := limitString(c.Namespace); v != "" {
		kv = append(kv, attribute.String(AttrContainerdNamespace, v))
	}
	kv = k8sAttrs(kv, e, c)
	kv = engineAttrs(kv, e, false)
	if allow != nil && len(c.Labels) > 0 {
		keys := make([]string, 0, len(c.Labels))
		for k := range c.Labels {
			if allow(k) {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		labels, dropped := limitLabels(keys, c.Labels, len(kv)+len(h.attrs(nil)))
		kv = append(kv, labels...)
		if dropped > 0 {
			kv = append(kv, attribute.Int(AttrLabelsDropped, dropped))
		}
	}
	return resource.NewWithAttributes(semconv.SchemaURL, h.with(kv)...)
}

// The labels the kubelet puts on every container of a pod, whatever the
// runtime (the CRI adapter fills the pod's from its sandbox when a container
// lacks them).
const (
	labelK8sPodName       = "io.kubernetes.pod.name"
	labelK8sPodUID        = "io.kubernetes.pod.uid"
	labelK8sNamespace     = "io.kubernetes.pod.namespace"
	labelK8sContainerName = "io.kubernetes.container.name"
)

// k8sAttrs adds k8s.pod.name, k8s.pod.uid, k8s.namespace.name and
// k8s.container.name from a pod container's labels. A CRI container without
// the container-name label is named by its CRI metadata, which is its name.
func k8sAttrs(kv []attribute.KeyValue, e *model.Engine, c *model.Container) []attribute.KeyValue {
	if v := c.Labels[labelK8sPodName]; v != "" {
		kv = append(kv, semconv.K8SPodName(limitString(v)))
	}
	if v := c.Labels[labelK8sPodUID]; v != "" {
		kv = append(kv, semconv.K8SPodUID(limitString(v)))
	}
	if v := c.Labels[labelK8sNamespace]; v != "" {
		kv = append(kv, semconv.K8SNamespaceName(limitString(v)))
	}
	switch v := c.Labels[labelK8sContainerName]; {
	case v != "":
		kv = append(kv, semconv.K8SContainerName(limitString(v)))
	case (e.Type == model.CRI || e.Type == model.CRIO) && c.Name != "":
		kv = append(kv, semconv.K8SContainerName(limitString(c.Name)))
	}
	return kv
}

// resourceKey is what a container resource is built from; an unchanged key
// reuses the cached resource.
type resourceKey struct {
	name, image, imageID, ns string
	tags                     []string
	labels                   map[string]string
	engine                   model.Engine
}

// keyOf is the key of c's resource; engine-only keys have a zero container part.
func keyOf(e *model.Engine, c *model.Container) resourceKey {
	return resourceKey{name: c.Name, image: c.ImageName, imageID: c.ImageID, ns: c.Namespace,
		tags: c.ImageTags, labels: c.Labels, engine: *e}
}

func (k *resourceKey) equal(o *resourceKey) bool {
	if k.name != o.name || k.image != o.image || k.imageID != o.imageID || k.ns != o.ns ||
		k.engine != o.engine || !slices.Equal(k.tags, o.tags) || len(k.labels) != len(o.labels) {
		return false
	}
	for key, v := range o.labels {
		if w, ok := k.labels[key]; !ok || w != v {
			return false
		}
	}
	return true
}
