// Package status serves agentd's local status endpoint: an HTTP API on a unix
// socket (/run/agentd/agentd.sock by default, or the socket systemd passes
// through agentd.socket) answering health and the current engine tree as JSON.
//
// It owns the listener and the wire format. It does not compute health or the
// tree: a Source does. No TCP listener is ever opened here.
package status
