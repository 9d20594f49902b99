package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// TestReliabilityExportsNamesAndLabelsUnderTheTruncationRules runs
// containers on the host Docker with a 64 KiB name, a 64 KiB label, Unicode
// labels, a label key past the limit, 200 labels and an image with a
// 128-character tag, reads them through the real Docker adapter and checks
// what reaches a real collector against the rules in METRICS.md.
func TestReliabilityExportsNamesAndLabelsUnderTheTruncationRules(t *testing.T) {
	testbed.Require(t, testbed.Docker, testbed.Collector)
	col := testbed.StartCollector(t)
	sfx := strconv.Itoa(rand.IntN(1e9))

	tag := strings.Repeat("t", 128)
	image := "local/fuzz-img-" + sfx
	testbed.Run(t, "docker", "tag", testbed.BusyboxImage, image+":"+tag)
	t.Cleanup(func() { _, _ = testOutput("docker", "rmi", image+":"+tag) })

	longName := "fuzz-" + sfx + "-" + strings.Repeat("n", 64<<10)
	big := strings.Repeat("v", 64<<10)
	unicode := "容器-🐳-Привет-ü"
	longKey := "fuzz.key." + strings.Repeat("k", MaxLabelKeyLen)
	run := func(name, img string, labels ...string) string {
		args := []string{"run", "-d", "--name", name}
		for _, l := range labels {
			args = append(args, "--label", l)
		}
		id := testbed.Run(t, "docker", append(append(args, img), "sleep", "600")...)
		t.Cleanup(func() { _, _ = testOutput("docker", "rm", "-f", id) })
		return id
	}
	long := run(longName, image+":"+tag, "fuzz.big="+big, "fuzz.unicode="+unicode, longKey+"=x", "fuzz.empty=")
	var many []string
	for i := range 200 {
		many = append(many, fmt.Sprintf("fuzz.n.%03d=x", i))
	}
	crowded := run("fuzz-many-"+sfx, testbed.BusyboxImage, many...)

	// Read them as agentd does: through the Docker adapter.
	e := model.Engine{ID: "docker-host", Type: model.Docker, Endpoint: testbed.DockerSocket}
	a, err := docker.NewAdapter(e, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.(*docker.Adapter).Close() })
	var cs []model.Container
	for _, id := range []string{long, crowded} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := a.Inspect(ctx, id)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c.EngineID = e.ID
		cs = append(cs, c)
	}
	if len(cs[0].Name) < 64<<10 || cs[0].Labels["fuzz.big"] != big {
		t.Fatalf("the adapter read a %d-byte name and a %d-byte label, want the full 64 KiB", len(cs[0].Name), len(cs[0].Labels["fuzz.big"]))
	}
	w := &dockerWorkload{engine: e}
	w.set(cs)

	cfg := DefaultConfig()
	cfg.LabelAllowlist = []string{"fuzz.*"}
	runToCollector(t, col, cfg, Options{Workload: w, Sampler: stats.NewSampler(stats.SamplerConfig{}, nil)})

	byID := func(id string) map[string]string { return map[string]string{"container.id": id} }
	m := col.WaitMetrics(t, 60*time.Second, func(m *testbed.Metrics) bool {
		return len(m.ResourcesWith(byID(long))) > 0 && len(m.ResourcesWith(byID(crowded))) > 0
	})
	attrsOf := func(id string) map[string]string {
		rs := m.ResourcesWith(byID(id))
		if len(rs) != 1 {
			t.Fatalf("%d resources for %s, want 1", len(rs), id)
		}
		return rs[0].Attrs
	}
	cut := func(s string) string { return s[:MaxStringLen-len(Ellipsis)] + Ellipsis }

	t.Run("a 64 KiB name and label are cut to 4096 bytes ending with an ellipsis", func(t *testing.T) {
		at := attrsOf(long)
		if got := at["container.name"]; got != cut(longName) {
			t.Errorf("container.name: %d bytes ending %q, want %d bytes ending %q", len(got), got[max(0, len(got)-8):], MaxStringLen, Ellipsis)
		}
		if got := at["container.label.fuzz.big"]; got != cut(big) {
			t.Errorf("container.label.fuzz.big: %d bytes, want %d", len(got), MaxStringLen)
		}
	})
	t.Run("unicode and empty labels are exported as they are", func(t *testing.T) {
		at := attrsOf(long)
		if got, ok := at["container.label.fuzz.unicode"]; got != unicode || !ok {
			t.Errorf("container.label.fuzz.unicode = %q, want %q", got, unicode)
		}
		if got, ok := at["container.label.fuzz.empty"]; got != "" || !ok {
			t.Errorf("container.label.fuzz.empty = %q (present %v), want present and empty", got, ok)
		}
	})
	t.Run("a label key longer than 256 bytes is dropped and counted", func(t *testing.T) {
		at := attrsOf(long)
		for k := range at {
			if strings.HasPrefix(k, "container.label.fuzz.key.") {
				t.Errorf("exported a %d-byte label key", len(k)-len("container.label."))
			}
		}
		if got := at[AttrLabelsDropped]; got != "1" {
			t.Errorf("%s = %q, want 1", AttrLabelsDropped, got)
		}
	})
	t.Run("an image name with a long tag is exported whole", func(t *testing.T) {
		at := attrsOf(long)
		if at["container.image.name"] != image || at["container.image.tags"] != `["`+tag+`"]` {
			t.Errorf("container.image.name = %q, tags = %q; want %q and [%q]", at["container.image.name"], at["container.image.tags"], image, tag)
		}
	})
	t.Run("200 labels are cut to 128 attributes with the rest counted", func(t *testing.T) {
		at := attrsOf(crowded)
		labels := 0
		for k, v := range at {
			if strings.HasPrefix(k, "container.label.") {
				labels++
			}
			if len(v) > MaxStringLen || !utf8.ValidString(v) {
				t.Errorf("%s: %d bytes, valid UTF-8 %v", k, len(v), utf8.ValidString(v))
			}
		}
		dropped, _ := strconv.Atoi(at[AttrLabelsDropped])
		if len(at) > MaxAttributes || labels+dropped != 200 || dropped == 0 {
			t.Errorf("%d attributes, %d labels exported and %s = %q; want at most %d attributes and the 200 labels accounted for",
				len(at), labels, AttrLabelsDropped, at[AttrLabelsDropped], MaxAttributes)
		}
	})
}
