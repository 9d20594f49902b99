// Package cri is agentd's knowledge of the Kubernetes Container Runtime
// Interface: CRI-O (crio) and containerd's CRI plugin. It recognises their
// processes, probes the runtime service (a runtime naming itself cri-o is
// CRI-O), and watches through GetContainerEvents where the runtime streams
// them, else by listing on a schedule (on containerd's own events where the
// runtime is containerd).
package cri
