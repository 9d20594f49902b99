package telemetry

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"go.opentelemetry.io/otel/attribute"

	"github.com/agentd-dev/agentd/model"
)

func TestLimitString(t *testing.T) {
	long := strings.Repeat("a", MaxStringLen+1)
	runes := strings.Repeat("é", MaxStringLen) // 2 bytes each
	for _, tc := range []struct {
		name, in, want string
	}{
		{"an empty string stays empty", "", ""},
		{"a short string is kept", "web-1", "web-1"},
		{"unicode is kept", "容器-🐳", "容器-🐳"},
		{"invalid UTF-8 becomes U+FFFD", "a\xffb\xc3", "a\uFFFDb\uFFFD"},
		{"a string of exactly the limit is kept", long[:MaxStringLen], long[:MaxStringLen]},
		{"a longer string is cut and ends with an ellipsis", long, long[:MaxStringLen-len(Ellipsis)] + Ellipsis},
		{"a cut falls on a rune boundary", runes, runes[:MaxStringLen-len(Ellipsis)-1] + Ellipsis},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := limitString(tc.in)
			if got != tc.want {
				t.Fatalf("limitString(%.40q…) = %.40q… (%d bytes), want %.40q… (%d bytes)", tc.in, got, len(got), tc.want, len(tc.want))
			}
			if !utf8.ValidString(got) || len(got) > MaxStringLen {
				t.Fatalf("limitString gave %d bytes, valid UTF-8 %v", len(got), utf8.ValidString(got))
			}
		})
	}
}

func TestContainerResourceUnderTheTruncationRules(t *testing.T) {
	big := strings.Repeat("v", 64<<10)
	manyLabels := map[string]string{}
	for i := range 300 {
		manyLabels[fmt.Sprintf("l%03d", i)] = "x"
	}
	for _, tc := range []struct {
		name      string
		c         model.Container
		check     map[string]string // attribute → wanted value ("" = absent)
		labels    int               // wanted container.label.* count, -1 = any
		dropped   int64
		maxLabels int
	}{
		{
			name: "an empty name, image and tag are left out",
			c:    model.Container{ID: "c1", ImageTags: []string{""}},
			check: map[string]string{"container.name": "", "container.image.name": "",
				"container.image.id": "", AttrLabelsDropped: ""},
		},
		{
			name: "a 64 KiB name and image name are cut to the limit",
			c:    model.Container{ID: "c2", Name: big, ImageName: big, ImageTags: []string{big}},
			check: map[string]string{"container.name": big[:MaxStringLen-len(Ellipsis)] + Ellipsis,
				"container.image.name": big[:MaxStringLen-len(Ellipsis)] + Ellipsis},
		},
		{
			name:  "unicode and invalid UTF-8 in names",
			c:     model.Container{ID: "c3", Name: "Привет-🐳\xfe"},
			check: map[string]string{"container.name": "Привет-🐳\uFFFD"},
		},
		{
			name:    "a label with a 64 KiB value is cut, one with a long or empty key is dropped",
			c:       model.Container{ID: "c4", Labels: map[string]string{"big": big, strings.Repeat("k", MaxLabelKeyLen+1): "v", "": "v", "ok": "✓"}},
			check:   map[string]string{"container.label.big": big[:MaxStringLen-len(Ellipsis)] + Ellipsis, "container.label.ok": "✓"},
			labels:  2,
			dropped: 2,
		},
		{
			name: "label values beyond 16 KiB in all are dropped",
			c:    model.Container{ID: "c5", Labels: map[string]string{"a": big, "b": big, "c": big, "d": big, "e": big}},
			// Four values of 4096 bytes fill 16 KiB exactly; the fifth is dropped.
			labels:  4,
			dropped: 1,
		},
		{
			name:    "labels beyond 128 attributes are dropped and counted",
			c:       model.Container{ID: "c6", Labels: manyLabels},
			labels:  -1,
			dropped: -1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &model.Engine{ID: "e", Type: model.Docker, Endpoint: "/run/docker.sock"}
			r := ContainerResource(Host{Name: "h"}, e, &tc.c, func(string) bool { return true })
			attrs := map[string]attribute.Value{}
			nLabels := 0
			for _, kv := range r.Attributes() {
				attrs[string(kv.Key)] = kv.Value
				if strings.HasPrefix(string(kv.Key), "container.label.") {
					nLabels++
				}
				if kv.Value.Type() == attribute.STRING && (len(kv.Value.AsString()) > MaxStringLen || !utf8.ValidString(kv.Value.AsString())) {
					t.Errorf("%s: %d bytes, valid UTF-8 %v", kv.Key, len(kv.Value.AsString()), utf8.ValidString(kv.Value.AsString()))
				}
			}
			if n := len(r.Attributes()); n > MaxAttributes {
				t.Errorf("%d attributes, more than %d", n, MaxAttributes)
			}
			for k, want := range tc.check {
				v, ok := attrs[k]
				switch {
				case want == "" && ok:
					t.Errorf("%s = %.40q, want it absent", k, v.AsString())
				case want != "" && (!ok || v.AsString() != want):
					t.Errorf("%s = %.40q (%d bytes), want %.40q (%d bytes)", k, v.AsString(), len(v.AsString()), want, len(want))
				}
			}
			if tc.labels >= 0 && nLabels != tc.labels {
				t.Errorf("%d labels exported, want %d", nLabels, tc.labels)
			}
			if tc.dropped >= 0 {
				if got := attrs[AttrLabelsDropped].AsInt64(); got != tc.dropped {
					t.Errorf("%s = %d, want %d", AttrLabelsDropped, got, tc.dropped)
				}
			} else if got := attrs[AttrLabelsDropped].AsInt64(); int(got)+nLabels != len(tc.c.Labels) || got == 0 {
				t.Errorf("%s = %d with %d labels exported, want the %d labels accounted for", AttrLabelsDropped, got, nLabels, len(tc.c.Labels))
			}
		})
	}
}
