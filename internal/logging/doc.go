// Package logging builds agentd's *slog.Logger: a journald handler when
// stderr is connected to the journal (the daemon runs under systemd with
// StandardError=journal, the default), a text handler otherwise, both wrapped
// in a repeat suppressor.
//
// It owns the slog attribute keys agentd uses for structured fields (see
// [KeyEngineType] and its siblings), their journald field names, and the
// MESSAGE_ID of each kind of event worth finding in the journal
// ([MessageIDEngineFound] and its siblings). It does not own the level read
// from configuration (the caller parses it with [ParseLevel]) and never sets
// slog's default logger.
//
// # Journal fields
//
// Every record sent to journald carries MESSAGE, PRIORITY (from the slog
// level), SYSLOG_IDENTIFIER, CODE_FILE, CODE_LINE and CODE_FUNC (from the
// record's PC) and one field per attribute. Attribute keys are flattened with
// their groups joined by "_" and upper-cased; the well-known keys map as
// listed in [FieldName]. Names journald would reject (characters outside
// [A-Z0-9_], a leading "_" or digit, more than 64 bytes) are rewritten, never
// dropped. The "unit" attribute becomes UNIT=: journald stores it as sent,
// and `journalctl -u` matches UNIT= only for entries from PID 1, so agentd's
// lines about a (possibly nested) unit never pose as the manager's own; query
// them with `journalctl UNIT=podman.socket`.
package logging
