package model

import "github.com/agentd-dev/agentd/internal/logging"

// LogAttrs returns the attributes of every log record about engine e,
// whichever package logs it: ENGINE_TYPE, ENGINE_ID, ENGINE_PREFIX (when
// nested) and ENDPOINT, for logger.With(e.LogAttrs()...).
func (e Engine) LogAttrs() []any {
	attrs := []any{logging.KeyEngineType, string(e.Type), logging.KeyEngineID, e.ID}
	if e.Prefix != "" {
		attrs = append(attrs, logging.KeyEnginePrefix, e.Prefix)
	}
	return append(attrs, logging.KeyEndpoint, e.Endpoint)
}

// LogAttrs returns the attributes of a log record about container c:
// ENGINE_ID, CONTAINER_ID and, when known, CONTAINER_NAME.
func (c Container) LogAttrs() []any {
	attrs := []any{logging.KeyEngineID, c.EngineID, logging.KeyContainerID, c.ID}
	if c.Name != "" {
		attrs = append(attrs, logging.KeyContainerName, c.Name)
	}
	return attrs
}
