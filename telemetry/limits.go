package telemetry

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Truncation rules for the names, labels and image names agentd exports:
// whatever an engine reports, a resource stays valid OTLP of bounded size.
const (
	// MaxStringLen bounds a string attribute value in bytes; a longer one is
	// cut at a rune boundary and ends with Ellipsis.
	MaxStringLen = 4096
	// MaxLabelKeyLen bounds a label key in bytes; a label with a longer
	// key is dropped (a cut key could collide with another label).
	MaxLabelKeyLen = 256
	// MaxLabelValues bounds the bytes of all exported label values of one
	// resource, after each was cut to MaxStringLen; labels that do not fit
	// are dropped, in key order.
	MaxLabelValues = 16 << 10
	// MaxAttributes bounds the attributes of one resource; labels beyond it
	// are dropped.
	MaxAttributes = 128
	// Ellipsis ends a cut string.
	Ellipsis = "…"
	// AttrLabelsDropped counts the allowlisted labels of a container that
	// were dropped under these rules; absent when none was.
	AttrLabelsDropped = "agentd.container.labels.dropped"
)

// limitString makes s valid UTF-8 (each invalid byte sequence becomes
// U+FFFD) and cuts it to at most MaxStringLen bytes at a rune boundary,
// ending with Ellipsis.
func limitString(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if len(s) <= MaxStringLen {
		return s
	}
	cut := MaxStringLen - len(Ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + Ellipsis
}

// limitStrings applies limitString to each of ss and leaves out the empty
// ones; nil when none is left.
func limitStrings(ss []string) []string {
	var out []string
	for _, s := range ss {
		if s = limitString(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// limitLabels returns the attributes of the labels keys (sorted, allowlisted)
// of labels under the rules above, given that the resource already has used
// attributes, and how many were dropped. An empty key counts as dropped.
func limitLabels(keys []string, labels map[string]string, used int) ([]attribute.KeyValue, int) {
	room := MaxAttributes - used - 1 // one for AttrLabelsDropped
	budget := MaxLabelValues
	kv := make([]attribute.KeyValue, 0, min(len(keys), max(room, 0)))
	dropped := 0
	for _, k := range keys {
		v := limitString(labels[k])
		if k == "" || len(k) > MaxLabelKeyLen || !utf8.ValidString(k) || len(kv) >= room || len(v) > budget {
			dropped++
			continue
		}
		budget -= len(v)
		kv = append(kv, semconv.ContainerLabel(k, v))
	}
	return kv, dropped
}

// truncationDoc describes the rules for METRICS.md.
func truncationDoc() string {
	return fmt.Sprintf("## Names, labels and image names\n\n"+
		"Container names, IDs, image names, tags and IDs, namespaces and label values come from the engines and are exported under these rules:\n\n"+
		"- invalid UTF-8 is replaced by U+FFFD;\n"+
		"- a string longer than %d bytes is cut at a rune boundary and ends with `%s` (at most %d bytes in all);\n"+
		"- an empty name, image name, image tag or image ID is left out;\n"+
		"- a label whose key is empty, not UTF-8 or longer than %d bytes is dropped;\n"+
		"- the label values of one resource total at most %d bytes; labels are taken in key order and one that does not fit is dropped;\n"+
		"- a resource has at most %d attributes; labels beyond that are dropped;\n"+
		"- `%s` (int) counts the labels dropped under these rules, and is absent when none was.\n",
		MaxStringLen, Ellipsis, MaxStringLen, MaxLabelKeyLen, MaxLabelValues, MaxAttributes, AttrLabelsDropped)
}
