package testbed

import (
	"strings"
	"testing"
)

func TestNotableDropsTheDebugExportersBatches(t *testing.T) {
	batch := "2026-12-07T02:40:10.100Z\tinfo\tLogs\t{\"otelcol.component.id\": \"debug\", \"log records\": 1}"
	warn := "2026-12-07T02:40:11.000Z\twarn\totlpreceiver\t{\"error\": \"x\"}"
	tests := []struct {
		name   string
		output string
		n      int
		want   string
	}{
		{"only batches", batch + "\n" + batch + "\n", 5, "its output without the 2 lines of the debug exporter's batches:\n"},
		{"warning kept", batch + "\n" + warn + "\n" + batch, 5, "its output without the 2 lines of the debug exporter's batches:\n" + warn},
		{"last n", "a\nb\nc\nd", 2, "its output without the 0 lines of the debug exporter's batches, last 2 of 4 lines:\nc\nd"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := notable(tt.output, tt.n); got != tt.want {
				t.Errorf("notable:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
	if got := notable(strings.Repeat(batch+"\n", 3), 1); !strings.HasSuffix(got, ":\n") {
		t.Errorf("only batches left a line: %q", got)
	}
}
