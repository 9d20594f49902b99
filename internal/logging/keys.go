package logging

import (
	"log/slog"
	"strings"
)

// The slog attribute keys agentd uses for structured fields. Loggers scoped
// with these keys (logger.With(logging.KeyEngineID, id)) get the matching
// journald field; the repeat suppressor treats all of them but [KeyErr] as
// part of a message's identity.
const (
	// KeyEngineType is the engine family: docker, containerd, cri, podman. Journal field ENGINE_TYPE.
	KeyEngineType = "engine_type"
	// KeyEngineID is the engine's stable ID. Journal field ENGINE_ID.
	KeyEngineID = "engine_id"
	// KeyEnginePrefix is the engine's hierarchy path ("" on the host, "th" inside container th). Journal field ENGINE_PREFIX.
	KeyEnginePrefix = "engine_prefix"
	// KeyContainerID is a container ID. Journal field CONTAINER_ID.
	KeyContainerID = "container_id"
	// KeyContainerName is a container's name. Journal field CONTAINER_NAME.
	KeyContainerName = "container_name"
	// KeyEndpoint is the engine socket as reached from the host. Journal field ENDPOINT.
	KeyEndpoint = "endpoint"
	// KeyUnit is a systemd unit name such as podman.socket. Journal field UNIT.
	KeyUnit = "unit"
	// KeyErr is an error. Journal field ERROR.
	KeyErr = "err"
	// KeyMessageID is the kind of event, one of the MessageID constants. Journal field MESSAGE_ID.
	KeyMessageID = "message_id"
)

// fieldNames maps the well-known attribute keys to their journald fields.
var fieldNames = map[string]string{
	KeyEngineType:    "ENGINE_TYPE",
	KeyEngineID:      "ENGINE_ID",
	KeyEnginePrefix:  "ENGINE_PREFIX",
	KeyContainerID:   "CONTAINER_ID",
	KeyContainerName: "CONTAINER_NAME",
	KeyEndpoint:      "ENDPOINT",
	KeyUnit:          "UNIT",
	KeyErr:           "ERROR",
	KeyMessageID:     "MESSAGE_ID",
}

// identityKeys are the attributes that, with the message and level, make two
// records "the same" for the repeat suppressor.
var identityKeys = map[string]bool{
	KeyEngineType:   true,
	KeyEngineID:     true,
	KeyEnginePrefix: true,
	KeyContainerID:  true,
	KeyUnit:         true,
	KeyMessageID:    true,
}

// MESSAGE_IDs of the kinds of events worth finding in the journal
// (`journalctl MESSAGE_ID=...`): 128-bit random UUIDv4-compatible IDs as
// lower-case hex without dashes, the format journald recommends. They are
// part of agentd's interface: never change one.
const (
	// MessageIDEngineFound marks "engine found" lines.
	MessageIDEngineFound = "89578b84c0154768a4fd0e85e009e61a"
	// MessageIDEngineLost marks "engine lost" lines.
	MessageIDEngineLost = "486e41c1e871415191e72f45ed5f2169"
	// MessageIDActivation marks lines about activating a socket unit.
	MessageIDActivation = "a4b2d2ed1c464742bbc9678ddb9a6238"
	// MessageIDExportFailure marks failed OTLP exports.
	MessageIDExportFailure = "cfc1ada0b50f4a6fac878acbcffbdfbb"
	// MessageIDConfigReload marks configuration reloads (SIGHUP).
	MessageIDConfigReload = "f452f70066d9445f83173f51b88b9adb"
	// MessageIDSuppressed marks the summary the repeat suppressor writes.
	MessageIDSuppressed = "946671a832e0483fbc957671634bbfea"
	// MessageIDQueueDrop marks lines about data dropped because a queue was full.
	MessageIDQueueDrop = "3d1f6c1e9b2a4f0e8a7c5b4d2e1f0a9c"
)

// MessageID returns the attribute that tags a record with a MESSAGE_ID, e.g.
// logger.Info("engine found", logging.MessageID(logging.MessageIDEngineFound)).
func MessageID(id string) slog.Attr { return slog.String(KeyMessageID, id) }

// Err returns the attribute for an error under [KeyErr]; a nil error gives an
// empty attribute, which handlers drop.
func Err(err error) slog.Attr {
	if err == nil {
		return slog.Attr{}
	}
	return slog.Any(KeyErr, err)
}

// reservedFields are set by the journald handler itself; an attribute that
// flattens to one of them is renamed with an ATTR_ prefix instead of
// producing a second value.
var reservedFields = map[string]bool{
	"MESSAGE":           true,
	"PRIORITY":          true,
	"SYSLOG_IDENTIFIER": true,
	"CODE_FILE":         true,
	"CODE_LINE":         true,
	"CODE_FUNC":         true,
}

// maxFieldName is journald's limit on a field name's length.
const maxFieldName = 64

// FieldName returns the journald field name for a flattened attribute key
// (groups joined by "_"): the well-known keys map to ENGINE_TYPE, ENGINE_ID,
// ENGINE_PREFIX, CONTAINER_ID, UNIT, ERROR and MESSAGE_ID; any other key is
// upper-cased with every character outside [A-Z0-9_] replaced by "_",
// leading underscores removed (journald reserves them for trusted fields), a
// leading digit prefixed with "F", names the handler sets itself prefixed
// with "ATTR_", and the result cut to 64 bytes. An empty result is "FIELD".
func FieldName(key string) string {
	if f, ok := fieldNames[key]; ok {
		return f
	}
	var b strings.Builder
	b.Grow(len(key))
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z':
			b.WriteByte(c - 'a' + 'A')
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	name := strings.TrimLeft(b.String(), "_")
	switch {
	case name == "":
		name = "FIELD"
	case name[0] >= '0' && name[0] <= '9':
		name = "F" + name
	case reservedFields[name]:
		name = "ATTR_" + name
	}
	if len(name) > maxFieldName {
		name = name[:maxFieldName]
	}
	return name
}

// validFieldName reports whether journald accepts name as a client field.
func validFieldName(name string) bool {
	if name == "" || len(name) > maxFieldName || name[0] == '_' || (name[0] >= '0' && name[0] <= '9') {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
