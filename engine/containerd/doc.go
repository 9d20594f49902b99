// Package containerd is agentd's knowledge of containerd: its processes, the
// version and introspection probe, and the watcher's Adapter over
// containerd's API services (namespaces, containers, tasks, images, content,
// events) without its client library. Every namespace is watched; the moby
// namespace (Docker's) and k8s.io (the CRI plugin's) are reported once, under
// Docker and CRI, by the model. Its event subscription (SubscribeEvents) is
// also what the CRI adapter lists on when containerd serves CRI.
package containerd
