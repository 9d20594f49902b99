package testbed

import (
	"bufio"
	"encoding/json"
	"fmt"
	"strings"
)

// JournalEntries decodes the output of `journalctl -o json`: one entry a
// line; blank lines and journalctl's "-- No entries --" are skipped.
func JournalEntries(out string) ([]map[string]any, error) {
	var entries []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line == "-- No entries --" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("journal line %q: %w", line, err)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return entries, nil
}

// JournalField renders field k of a decoded journal entry: journalctl writes
// values that are not valid UTF-8 (or hold control characters) as arrays of
// bytes.
func JournalField(e map[string]any, k string) string {
	switch v := e[k].(type) {
	case string:
		return v
	case []any:
		b := make([]byte, 0, len(v))
		for _, c := range v {
			if f, ok := c.(float64); ok {
				b = append(b, byte(f))
			}
		}
		return string(b)
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}
