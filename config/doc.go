// Package config loads and validates agentd's configuration file
// (/etc/agentd/agentd.yaml by default).
//
// It owns the file format, the defaults and validation; errors name the file,
// the line, the key and the value that is wrong. It does not read environment
// variables of the OpenTelemetry exporters (OTEL_EXPORTER_OTLP_*): the exporters
// read those themselves, and values in the file take precedence.
package config
