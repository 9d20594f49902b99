package telemetry

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/agentd-dev/agentd/model"
)

// TestOTLPShapeGolden pins the shape of one export round: the resources with
// their attributes, and every metric's name, unit, kind, temporality, point
// attributes and values, for a fixed workload of two running containers, an exited
// one and their engine. Refresh with `go test ./telemetry -run TestOTLPShapeGolden -update`.
func TestOTLPShapeGolden(t *testing.T) {
	cfg := DefaultConfig()
	cfg.LabelAllowlist = []string{"app"}
	cs, es := fixedWorkload(2)
	// An exited container: its state and restarts, no usage.
	exited := *cs[1].container
	exited.ID, exited.Name, exited.State, exited.PID, exited.Health, exited.RestartCount = fmt.Sprintf("%064d", 9), "c9", model.StateExited, 0, "", 3
	cs = append(cs, sampled{engine: cs[0].engine, container: &exited})
	now := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	batch := newBuilder(&cfg, Host{Name: "host-1", ID: "machine-id-1"}, "test").build(now, cs, es)
	got := renderBatch(batch)

	compareGolden(t, filepath.Join("testdata", "otlp-shape.golden"), got, "the OTLP shape", "TestOTLPShapeGolden")
	if strings.Contains(got, "secret") {
		t.Errorf("a label outside the allowlist was exported:\n%s", got)
	}
}

// renderBatch writes a batch as stable text: attributes sorted, one line per point.
func renderBatch(batch []*metricdata.ResourceMetrics) string {
	var b strings.Builder
	for _, rm := range batch {
		fmt.Fprintf(&b, "resource %s\n", renderAttrs(rm.Resource.Set()))
		for _, sm := range rm.ScopeMetrics {
			fmt.Fprintf(&b, "  scope %s %s\n", sm.Scope.Name, sm.Scope.Version)
			for _, m := range sm.Metrics {
				fmt.Fprintf(&b, "    %s [%s] %s\n", m.Name, m.Unit, renderData(m.Data))
			}
		}
	}
	return b.String()
}

func renderAttrs(s *attribute.Set) string {
	var kv []string
	for it := s.Iter(); it.Next(); {
		a := it.Attribute()
		kv = append(kv, fmt.Sprintf("%s=%s", a.Key, a.Value.String()))
	}
	sort.Strings(kv)
	return "{" + strings.Join(kv, " ") + "}"
}

func renderData(d metricdata.Aggregation) string {
	var lines []string
	point := func(attrs attribute.Set, start, ts time.Time, v any) {
		s := fmt.Sprintf("%s=%v", renderAttrs(&attrs), v)
		if !start.IsZero() {
			s += " start=" + start.Format(time.RFC3339)
		}
		lines = append(lines, s+" time="+ts.Format(time.RFC3339))
	}
	var head string
	switch d := d.(type) {
	case metricdata.Gauge[int64]:
		head = "gauge int"
		for _, p := range d.DataPoints {
			point(p.Attributes, p.StartTime, p.Time, p.Value)
		}
	case metricdata.Gauge[float64]:
		head = "gauge double"
		for _, p := range d.DataPoints {
			point(p.Attributes, p.StartTime, p.Time, p.Value)
		}
	case metricdata.Sum[int64]:
		head = fmt.Sprintf("sum int monotonic=%v %s", d.IsMonotonic, d.Temporality)
		for _, p := range d.DataPoints {
			point(p.Attributes, p.StartTime, p.Time, p.Value)
		}
	case metricdata.Sum[float64]:
		head = fmt.Sprintf("sum double monotonic=%v %s", d.IsMonotonic, d.Temporality)
		for _, p := range d.DataPoints {
			point(p.Attributes, p.StartTime, p.Time, p.Value)
		}
	default:
		head = fmt.Sprintf("%T", d)
	}
	sort.Strings(lines)
	return head + "\n      " + strings.Join(lines, "\n      ")
}
