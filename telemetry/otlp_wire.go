package telemetry

import (
	"encoding/binary"
	"math"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/protobuf/encoding/protowire"
)

// wireRecords writes each ResourceMetrics of a round as the OTLP protobuf
// bytes that carry it: a record, the resource_metrics field of an
// ExportMetricsServiceRequest (tag, length and message). A request is its
// records one after the other, appended straight into the request's buffer,
// which the export queue keeps or gRPC sends as it is: nothing is converted
// into protobuf messages or marshalled by reflection.
//
// Earlier rounds kept every container's record and wrote only the new times
// and values into it; at 1,000 containers those kept records were 7 MB, a
// quarter of agentd's live heap, and the export queue copied them into its
// requests anyway. Encoding a round afresh costs about as much as that copy.
//
// It encodes what agentd's builder makes: gauges and sums of int64 and
// float64 without exemplars, with attributes of bool, int64, float64 and
// string values, in scopes without attributes. encodable reports anything
// else, and the caller hands that ResourceMetrics to the SDK. The resource
// comes encoded from the caller (OTLPMetrics has the SDK transform each one
// once). Not safe for concurrent use.
type wireRecords struct {
	attrs map[attribute.Distinct][]byte // encoded KeyValue fields of a point, by set
	w     wireWriter
}

// Field numbers and lengths of the OTLP messages written here
// (opentelemetry/proto/metrics/v1/metrics.proto and common.proto).
const (
	fieldRequestResourceMetrics = 1

	fieldRMResource = 1
	fieldRMScopes   = 2
	fieldRMSchema   = 3

	fieldSMScope   = 1
	fieldSMMetrics = 2
	fieldSMSchema  = 3

	fieldScopeName    = 1
	fieldScopeVersion = 2

	fieldMetricName  = 1
	fieldMetricDesc  = 2
	fieldMetricUnit  = 3
	fieldMetricGauge = 5
	fieldMetricSum   = 7

	fieldDataPoints      = 1 // of Gauge and Sum
	fieldSumTemporality  = 2
	fieldSumMonotonic    = 3
	fieldPointStart      = 2
	fieldPointTime       = 3
	fieldPointDouble     = 4
	fieldPointInt        = 6
	fieldPointAttributes = 7
	fieldKeyValueKey     = 1
	fieldKeyValueValue   = 2
	fieldAnyString       = 1
	fieldAnyBool         = 2
	fieldAnyInt          = 3
	fieldAnyDouble       = 4
	otlpTemporalityDelta = 1
	otlpTemporalityCumul = 2
	maxCachedSets        = 4096
)

// reset drops the attribute cache when it grew past maxCachedSets.
func (c *wireRecords) reset() {
	if c.attrs == nil || len(c.attrs) > maxCachedSets {
		c.attrs = make(map[attribute.Distinct][]byte)
	}
}

// encodable checks everything encode relies on.
func (c *wireRecords) encodable(rm *metricdata.ResourceMetrics) bool {
	for i := range rm.ScopeMetrics {
		sm := &rm.ScopeMetrics[i]
		if sm.Scope.Attributes.Len() > 0 {
			return false
		}
		for j := range sm.Metrics {
			var ok bool
			switch d := sm.Metrics[j].Data.(type) {
			case metricdata.Gauge[int64]:
				ok = pointsEncodable(c, d.DataPoints)
			case metricdata.Gauge[float64]:
				ok = pointsEncodable(c, d.DataPoints)
			case metricdata.Sum[int64]:
				ok = knownTemporality(d.Temporality) && pointsEncodable(c, d.DataPoints)
			case metricdata.Sum[float64]:
				ok = knownTemporality(d.Temporality) && pointsEncodable(c, d.DataPoints)
			}
			if !ok {
				return false
			}
		}
	}
	return true
}

func knownTemporality(t metricdata.Temporality) bool {
	return t == metricdata.CumulativeTemporality || t == metricdata.DeltaTemporality
}

// pointsEncodable reports whether the points have no exemplars and
// attributes of scalar values, caching the encoded sets.
func pointsEncodable[N int64 | float64](c *wireRecords, pts []metricdata.DataPoint[N]) bool {
	for i := range pts {
		if len(pts[i].Exemplars) > 0 {
			return false
		}
		if _, ok := c.attributes(pts[i].Attributes); !ok {
			return false
		}
	}
	return true
}

// attributes returns set encoded as a point's attribute fields, false if a
// value is not a scalar.
func (c *wireRecords) attributes(set attribute.Set) ([]byte, bool) {
	if set.Len() == 0 {
		return nil, true
	}
	if b, ok := c.attrs[set.Equivalent()]; ok {
		return b, true
	}
	var w wireWriter
	for it := set.Iter(); it.Next(); {
		kv := it.Attribute()
		f := w.open()
		w.str(fieldKeyValueKey, string(kv.Key))
		v := w.open()
		switch kv.Value.Type() {
		case attribute.BOOL:
			w.b = protowire.AppendTag(w.b, fieldAnyBool, protowire.VarintType)
			w.b = protowire.AppendVarint(w.b, protowire.EncodeBool(kv.Value.AsBool()))
		case attribute.INT64:
			w.b = protowire.AppendTag(w.b, fieldAnyInt, protowire.VarintType)
			w.b = protowire.AppendVarint(w.b, uint64(kv.Value.AsInt64()))
		case attribute.FLOAT64:
			w.b = protowire.AppendTag(w.b, fieldAnyDouble, protowire.Fixed64Type)
			w.b = protowire.AppendFixed64(w.b, math.Float64bits(kv.Value.AsFloat64()))
		case attribute.STRING:
			w.b = protowire.AppendTag(w.b, fieldAnyString, protowire.BytesType)
			w.b = protowire.AppendString(w.b, kv.Value.AsString())
		default:
			return nil, false
		}
		w.close(fieldKeyValueValue, v)
		w.close(fieldPointAttributes, f)
	}
	c.attrs[set.Equivalent()] = w.b
	return w.b, true
}

// appendRecord appends rm's record to dst, res and schema being its
// resource encoded and its schema URL; false, with dst as it was, if rm is
// not encodable.
func (c *wireRecords) appendRecord(dst []byte, rm *metricdata.ResourceMetrics, res []byte, schema string) ([]byte, bool) {
	if c.attrs == nil {
		c.reset()
	}
	if !c.encodable(rm) {
		return dst, false
	}
	w := &c.w
	w.b = dst
	rec := w.open()
	w.b = protowire.AppendTag(w.b, fieldRMResource, protowire.BytesType)
	w.b = protowire.AppendBytes(w.b, res)
	for i := range rm.ScopeMetrics {
		sm := &rm.ScopeMetrics[i]
		s := w.open()
		sc := w.open()
		w.str(fieldScopeName, sm.Scope.Name)
		w.str(fieldScopeVersion, sm.Scope.Version)
		w.close(fieldSMScope, sc)
		for j := range sm.Metrics {
			c.metric(&sm.Metrics[j])
		}
		w.str(fieldSMSchema, sm.Scope.SchemaURL)
		w.close(fieldRMScopes, s)
	}
	w.str(fieldRMSchema, schema)
	w.close(fieldRequestResourceMetrics, rec)
	out := w.b
	w.b = nil
	return out, true
}

// metric writes one metric.
func (c *wireRecords) metric(md *metricdata.Metrics) {
	w := &c.w
	m := w.open()
	w.str(fieldMetricName, md.Name)
	w.str(fieldMetricDesc, md.Description)
	w.str(fieldMetricUnit, md.Unit)
	d := w.open()
	field := protowire.Number(fieldMetricGauge)
	var temporality metricdata.Temporality
	var monotonic bool
	switch a := md.Data.(type) {
	case metricdata.Gauge[int64]:
		encodePoints(c, a.DataPoints)
	case metricdata.Gauge[float64]:
		encodePoints(c, a.DataPoints)
	case metricdata.Sum[int64]:
		encodePoints(c, a.DataPoints)
		temporality, monotonic, field = a.Temporality, a.IsMonotonic, fieldMetricSum
	case metricdata.Sum[float64]:
		encodePoints(c, a.DataPoints)
		temporality, monotonic, field = a.Temporality, a.IsMonotonic, fieldMetricSum
	}
	if field == fieldMetricSum {
		t := uint64(otlpTemporalityCumul)
		if temporality == metricdata.DeltaTemporality {
			t = otlpTemporalityDelta
		}
		w.b = protowire.AppendTag(w.b, fieldSumTemporality, protowire.VarintType)
		w.b = protowire.AppendVarint(w.b, t)
		if monotonic {
			w.b = protowire.AppendTag(w.b, fieldSumMonotonic, protowire.VarintType)
			w.b = protowire.AppendVarint(w.b, 1)
		}
	}
	w.close(field, d)
	w.close(fieldSMMetrics, m)
}

// encodePoints writes the points of a gauge or sum.
func encodePoints[N int64 | float64](c *wireRecords, pts []metricdata.DataPoint[N]) {
	w := &c.w
	valueField := protowire.Number(fieldPointDouble)
	if _, ok := any(N(0)).(int64); ok {
		valueField = fieldPointInt
	}
	for i := range pts {
		pt := &pts[i]
		p := w.open()
		start := unixNano(pt.StartTime)
		if start != 0 {
			w.b = protowire.AppendTag(w.b, fieldPointStart, protowire.Fixed64Type)
			w.b = protowire.AppendFixed64(w.b, start)
		}
		w.b = protowire.AppendTag(w.b, fieldPointTime, protowire.Fixed64Type)
		w.b = protowire.AppendFixed64(w.b, unixNano(pt.Time))
		w.b = protowire.AppendTag(w.b, valueField, protowire.Fixed64Type)
		w.b = protowire.AppendFixed64(w.b, valueBits(pt.Value))
		attrs, _ := c.attributes(pt.Attributes)
		w.b = append(w.b, attrs...)
		w.close(fieldDataPoints, p)
	}
}

func valueBits[N int64 | float64](v N) uint64 {
	switch v := any(v).(type) {
	case int64:
		return uint64(v)
	case float64:
		return math.Float64bits(v)
	}
	return 0
}

// unixNano is t in Unix nanoseconds, 0 for the zero time or before 1970 (as
// the SDK's transform has it).
func unixNano(t time.Time) uint64 {
	return uint64(max(0, t.UnixNano()))
}

// wireWriter appends protobuf fields, putting each message's tag and length
// in front of it once its end is known.
type wireWriter struct {
	b []byte
}

// wireMark is where a message's body starts.
type wireMark struct{ at int }

func (w *wireWriter) open() wireMark { return wireMark{len(w.b)} }

// close makes what was written since m the body of field f.
func (w *wireWriter) close(f protowire.Number, m wireMark) {
	n := len(w.b) - m.at
	var hb [2 * binary.MaxVarintLen64]byte
	h := protowire.AppendVarint(protowire.AppendTag(hb[:0], f, protowire.BytesType), uint64(n))
	w.b = append(w.b, h...)
	copy(w.b[m.at+len(h):], w.b[m.at:m.at+n])
	copy(w.b[m.at:], h)
}

// str writes a string field unless it is empty (proto3's default).
func (w *wireWriter) str(f protowire.Number, s string) {
	if s == "" {
		return
	}
	w.b = protowire.AppendTag(w.b, f, protowire.BytesType)
	w.b = protowire.AppendString(w.b, s)
}
