package telemetry

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// ServiceName is service.name on every resource unless OTEL_SERVICE_NAME or
// OTEL_RESOURCE_ATTRIBUTES names another.
const ServiceName = "agentd"

// The environment variables of the OpenTelemetry specification that describe
// the resource.
const (
	EnvResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
	EnvServiceName        = "OTEL_SERVICE_NAME"
)

// ErrResourceAttributes is wrapped by every error about OTEL_RESOURCE_ATTRIBUTES.
var ErrResourceAttributes = errors.New("bad " + EnvResourceAttributes)

// ParseResourceAttributes parses the value of OTEL_RESOURCE_ATTRIBUTES: a
// comma-separated list of key=value pairs whose keys and values are
// percent-decoded and trimmed of surrounding blanks. Any bad entry rejects
// the whole value (the specification's rule), with an error naming the entry.
// An empty value has no attributes.
func ParseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	entries := strings.Split(s, ",")
	kv := make([]attribute.KeyValue, 0, len(entries))
	for i, e := range entries {
		if strings.TrimSpace(e) == "" {
			continue // "a=1,,b=2" and a trailing comma are harmless
		}
		k, v, ok := strings.Cut(e, "=")
		if !ok {
			return nil, fmt.Errorf("%w: entry %d %q has no '='", ErrResourceAttributes, i+1, e)
		}
		key, err := url.PathUnescape(strings.TrimSpace(k))
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d key %q: %w", ErrResourceAttributes, i+1, k, err)
		}
		if key == "" {
			return nil, fmt.Errorf("%w: entry %d %q has an empty key", ErrResourceAttributes, i+1, e)
		}
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("%w: entry %d value of %q: %w", ErrResourceAttributes, i+1, key, err)
		}
		if owned(key) {
			return nil, fmt.Errorf("%w: entry %d: %s is agentd's to say of each container and engine", ErrResourceAttributes, i+1, key)
		}
		kv = append(kv, attribute.String(key, val))
	}
	return kv, nil
}

// owned reports whether agentd sets key per container or engine, which the
// environment, one value for the whole host, cannot.
func owned(key string) bool {
	for _, p := range []string{"container.", "agentd.", "containerd."} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	switch key {
	case "k8s.pod.name", "k8s.pod.uid", "k8s.namespace.name", "k8s.container.name":
		return true
	}
	return false
}

// instanceNamespace is the UUID namespace of service.instance.id values
// (a random UUID fixed for agentd): the same machine-id gives the same
// instance ID on every start and every agentd version.
var instanceNamespace = [16]byte{0x4f, 0x0d, 0x9c, 0x2e, 0x61, 0x3b, 0x4a, 0x57, 0x8e, 0x12, 0x7c, 0xa4, 0x05, 0xd9, 0xb3, 0x6e}

// InstanceID is the stable service.instance.id of agentd on a host: a
// version 5 UUID of the host's machine-id, or of its name when it has none.
func InstanceID(machineID, hostname string) string {
	seed := machineID
	if seed == "" {
		seed = "hostname:" + hostname
	}
	h := sha1.New()
	h.Write(instanceNamespace[:])
	h.Write([]byte(seed))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50 // version 5
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// WithEnvironment returns h with the resource the environment describes:
// OTEL_RESOURCE_ATTRIBUTES (which may override host.* and service.* and add
// any attribute but those agentd sets per container or engine) and OTEL_SERVICE_NAME, which
// wins over a service.name in OTEL_RESOURCE_ATTRIBUTES. getenv is os.Getenv
// outside tests.
func (h Host) WithEnvironment(getenv func(string) string) (Host, error) {
	extra, err := ParseResourceAttributes(getenv(EnvResourceAttributes))
	if err != nil {
		return h, err
	}
	h.Extra = extra
	if s := strings.TrimSpace(getenv(EnvServiceName)); s != "" {
		h.Service = s
	}
	return h, nil
}

// attrs appends the attributes every resource starts with: host.*, os.type,
// service.* and the environment's. Attributes appended after them (the
// container's, the engine's) win over them: a resource keeps the last value
// of a key.
func (h Host) attrs(kv []attribute.KeyValue) []attribute.KeyValue {
	if h.Name != "" {
		kv = append(kv, semconv.HostName(h.Name))
	}
	if h.ID != "" {
		kv = append(kv, semconv.HostID(h.ID))
	}
	kv = append(kv, semconv.OSTypeLinux, semconv.ServiceName(ServiceName),
		semconv.ServiceInstanceID(InstanceID(h.ID, h.Name)))
	if h.Version != "" {
		kv = append(kv, semconv.ServiceVersion(h.Version))
	}
	kv = append(kv, h.Extra...)
	if h.Service != "" {
		kv = append(kv, semconv.ServiceName(h.Service))
	}
	return kv
}

// with is the attributes of a resource: h's, then the object's own.
func (h Host) with(own []attribute.KeyValue) []attribute.KeyValue {
	return append(h.attrs(make([]attribute.KeyValue, 0, len(own)+len(h.Extra)+6)), own...)
}
