package telemetry

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/agentd-dev/agentd/model"
)

// Console is the human-readable sink used when no OTLP endpoint is
// configured: each round prints a table of engines and containers with their
// latest metrics, and each event prints one line. It is both a MetricSink and
// an sdklog.Exporter, and safe for concurrent use (writes are serialised).
type Console struct {
	mu sync.Mutex
	w  io.Writer
}

var (
	_ MetricSink      = (*Console)(nil)
	_ sdklog.Exporter = (*Console)(nil)
)

// NewConsole returns a Console writing to w.
func NewConsole(w io.Writer) *Console { return &Console{w: w} }

func resAttr(r *resource.Resource, key string) string {
	if r == nil {
		return ""
	}
	for _, kv := range r.Attributes() {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// running reports whether a container's resource says it is running (the
// others carry only their state, restarts and health).
func running(rm *metricdata.ResourceMetrics) bool {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == Metrics[mState].Name && len(g.DataPoints) > 0 {
				v, _ := g.DataPoints[0].Attributes.Value(AttrState)
				return v.AsString() == string(model.StateRunning)
			}
		}
	}
	return true
}

// ExportMetrics prints the round as two tables.
func (c *Console) ExportMetrics(_ context.Context, batch []*metricdata.ResourceMetrics) error {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENGINE\tTYPE\tPREFIX\tUP\tRUNNING\tTOTAL\tENDPOINT")
	var ctrs []*metricdata.ResourceMetrics
	for _, rm := range batch {
		if resAttr(rm.Resource, "container.id") != "" {
			if running(rm) {
				ctrs = append(ctrs, rm)
			}
			continue
		}
		var up, running, total int64
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				g, ok := m.Data.(metricdata.Gauge[int64])
				if !ok {
					continue
				}
				for _, p := range g.DataPoints {
					switch m.Name {
					case Metrics[mEngineUp].Name:
						up = p.Value
					case Metrics[mEngineContainers].Name:
						total += p.Value
						if v, _ := p.Attributes.Value(AttrState); v.AsString() == "running" {
							running = p.Value
						}
					}
				}
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", shortID(resAttr(rm.Resource, AttrEngineID)),
			resAttr(rm.Resource, "container.runtime.name"), resAttr(rm.Resource, AttrEnginePrefix), up, running, total,
			resAttr(rm.Resource, AttrEngineEndpoint))
	}
	tw.Flush()
	b.WriteByte('\n')
	sort.Slice(ctrs, func(i, j int) bool {
		return resAttr(ctrs[i].Resource, "container.name") < resAttr(ctrs[j].Resource, "container.name")
	})
	tw = tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER\tNAME\tRUNTIME\tCPU\tMEM USAGE\tWORKING SET\tLIMIT\tPIDS\tNET RX/TX\tDISK R/W")
	for _, rm := range ctrs {
		v := map[string]string{}
		var rx, tx, rd, wr int64
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				switch d := m.Data.(type) {
				case metricdata.Gauge[float64]:
					if m.Name == Metrics[mCPUUsage].Name && len(d.DataPoints) > 0 {
						v[m.Name] = fmt.Sprintf("%.2f", d.DataPoints[0].Value)
					}
				case metricdata.Gauge[int64]:
					if len(d.DataPoints) > 0 {
						if m.Unit == "By" {
							v[m.Name] = bytesString(d.DataPoints[0].Value)
						} else {
							v[m.Name] = fmt.Sprint(d.DataPoints[0].Value)
						}
					}
				case metricdata.Sum[int64]:
					if !d.IsMonotonic && len(d.DataPoints) > 0 { // memory and PIDs
						if m.Unit == "By" {
							v[m.Name] = bytesString(d.DataPoints[0].Value)
						} else {
							v[m.Name] = fmt.Sprint(d.DataPoints[0].Value)
						}
						continue
					}
					for _, p := range d.DataPoints {
						dir, _ := p.Attributes.Value("network.io.direction")
						ddir, _ := p.Attributes.Value("disk.io.direction")
						switch {
						case dir.AsString() == "receive":
							rx += p.Value
						case dir.AsString() == "transmit":
							tx += p.Value
						case ddir.AsString() == "read":
							rd += p.Value
						case ddir.AsString() == "write":
							wr += p.Value
						}
					}
				}
			}
		}
		dash := func(s string) string {
			if s == "" {
				return "-"
			}
			return s
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s/%s\t%s/%s\n",
			shortID(resAttr(rm.Resource, "container.id")), resAttr(rm.Resource, "container.name"),
			resAttr(rm.Resource, "container.runtime.name"),
			dash(v[Metrics[mCPUUsage].Name]), dash(v[Metrics[mMemoryUsage].Name]), dash(v[Metrics[mMemoryWorkingSet].Name]),
			dash(v[Metrics[mMemoryLimit].Name]), dash(v[Metrics[mPidsCount].Name]),
			bytesString(rx), bytesString(tx), bytesString(rd), bytesString(wr))
	}
	tw.Flush()
	b.WriteByte('\n')
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := io.WriteString(c.w, b.String())
	return err
}

// Export prints one line per event record.
func (c *Console) Export(_ context.Context, records []sdklog.Record) error {
	var b strings.Builder
	for i := range records {
		r := &records[i]
		name := resAttr(r.Resource(), "container.name")
		if name == "" {
			name = resAttr(r.Resource(), AttrEngineID)
		}
		fmt.Fprintf(&b, "%s %-5s %-22s %s", r.Timestamp().Format("2006-01-02T15:04:05.000Z07:00"), r.SeverityText(), r.EventName(), name)
		r.WalkAttributes(func(kv attribute.KeyValue) bool {
			fmt.Fprintf(&b, " %s=%s", kv.Key, kv.Value.String())
			return true
		})
		b.WriteByte('\n')
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := io.WriteString(c.w, b.String())
	return err
}

// ForceFlush does nothing: Export writes through.
func (c *Console) ForceFlush(context.Context) error { return nil }

// Shutdown does nothing: the writer belongs to the caller.
func (c *Console) Shutdown(context.Context) error { return nil }

func bytesString(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f%ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
