package testbed

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	collogspb "go.opentelemetry.io/proto/otlp/collector/logs/v1"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	logspb "go.opentelemetry.io/proto/otlp/logs/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// This file reads the OTLP JSON lines the collector's fileexporter writes: one
// ExportMetricsServiceRequest or ExportLogsServiceRequest per line, in the OTLP
// JSON encoding. That encoding is protojson with one exception this code
// handles: trace and span IDs are hex strings, where protojson expects base64
// for bytes fields. int64 values as strings and enums as numbers are protojson.

// Metrics is what a collector wrote to its metrics file, resources merged: every
// batch for the same resource (same attribute set) adds to one Resource, and
// every batch of the same metric of that resource adds its points to one Metric,
// in file order. It is a snapshot; later batches need a new read.
type Metrics struct {
	// Requests are the decoded batches, one per line, for what the accessors do not cover.
	Requests []*colmetricspb.ExportMetricsServiceRequest
	// Resources in order of first appearance.
	Resources []*Resource
}

// Resource is one OTLP resource and the metrics written for it.
type Resource struct {
	// Attrs are the resource attributes, rendered by ValueString.
	Attrs map[string]string
	// Metrics in order of first appearance.
	Metrics []*Metric
}

// Metric is one metric of a resource, points of every batch appended in file order.
type Metric struct {
	Name        string
	Unit        string
	Description string
	// Scope is the name of the instrumentation scope that first reported it.
	Scope string
	// Type is "gauge", "sum", "histogram", "exponential_histogram" or "summary".
	Type string
	// Monotonic tells a counter from an up-down counter (sums only).
	Monotonic bool
	// Temporality is "cumulative" or "delta" for sums and histograms, "" otherwise.
	Temporality string
	// Points are the data points, oldest batch first.
	Points []Point
}

// Point is one data point of a metric.
type Point struct {
	// Attrs are the data point attributes, rendered by ValueString.
	Attrs map[string]string
	// Start and Time are the start (cumulative metrics) and observation times.
	Start, Time time.Time
	// Value is the value of a gauge or sum point (integers converted) and the
	// sum of a histogram or summary point.
	Value float64
	// Int is the value of a gauge or sum point with an integer value; IsInt says it has one.
	Int   int64
	IsInt bool
	// Count is the count of a histogram or summary point.
	Count uint64
}

// Logs is what a collector wrote to its logs file, flattened: every log record
// with its resource and scope, in file order. It is a snapshot.
type Logs struct {
	// Requests are the decoded batches, one per line, for what the accessors do not cover.
	Requests []*collogspb.ExportLogsServiceRequest
	// Records in file order.
	Records []LogRecord
}

// LogRecord is one OTLP log record with its resource.
type LogRecord struct {
	// Resource holds the attributes of the record's resource, rendered by ValueString.
	Resource map[string]string
	// Scope is the instrumentation scope name.
	Scope string
	// EventName is the record's event name ("" for a plain log record).
	EventName string
	// Severity is the OTLP severity number (9 is INFO, 13 WARN, 17 ERROR).
	Severity int
	// SeverityText is the severity as the producer spelled it.
	SeverityText string
	// Body is the record body, rendered by ValueString.
	Body string
	// Attrs are the record attributes, rendered by ValueString.
	Attrs map[string]string
	// Time and ObservedTime are the event and observation times (zero when unset).
	Time, ObservedTime time.Time
	// TraceID and SpanID are hex, "" when unset.
	TraceID, SpanID string
}

// ReadMetricsFile reads a fileexporter's metrics file. A missing file reads as no
// metrics; see ParseMetrics for the format.
func ReadMetricsFile(path string) (*Metrics, error) {
	m := &Metrics{}
	if err := readFile(path, func(r io.Reader) (err error) { m, err = ParseMetrics(r); return err }); err != nil {
		return nil, err
	}
	return m, nil
}

// ReadLogsFile reads a fileexporter's logs file. A missing file reads as no
// records; see ParseLogs for the format.
func ReadLogsFile(path string) (*Logs, error) {
	l := &Logs{}
	if err := readFile(path, func(r io.Reader) (err error) { l, err = ParseLogs(r); return err }); err != nil {
		return nil, err
	}
	return l, nil
}

// ParseMetrics decodes OTLP JSON lines, one ExportMetricsServiceRequest each.
// Blank lines are skipped, and so is a last line without its newline: the
// collector may be writing it. Any other line that does not decode is an error
// naming its line number.
func ParseMetrics(r io.Reader) (*Metrics, error) {
	m := &Metrics{}
	err := scanLines(r, func(line []byte) error {
		req := &colmetricspb.ExportMetricsServiceRequest{}
		if err := unmarshalOTLPJSON(line, req); err != nil {
			return err
		}
		m.add(req)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ParseLogs decodes OTLP JSON lines, one ExportLogsServiceRequest each, with the
// same rules as ParseMetrics.
func ParseLogs(r io.Reader) (*Logs, error) {
	l := &Logs{}
	err := scanLines(r, func(line []byte) error {
		req := &collogspb.ExportLogsServiceRequest{}
		if err := unmarshalOTLPJSON(line, req); err != nil {
			return err
		}
		l.add(req)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

// readFile calls parse with the file at path open; a missing file is not read.
func readFile(path string, parse func(io.Reader) error) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if err := parse(f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func scanLines(r io.Reader, each func([]byte) error) error {
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			// A line without its newline is still being written.
			return nil
		}
		if err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := each(line); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
}

var otlpJSON = protojson.UnmarshalOptions{DiscardUnknown: true}

// unmarshalOTLPJSON decodes one OTLP JSON document into msg, converting the hex
// trace and span IDs of OTLP JSON to the base64 protojson expects.
func unmarshalOTLPJSON(data []byte, msg proto.Message) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber() // keeps int64 and uint64 values exact through the round trip
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("decode OTLP JSON: %w", err)
	}
	if dec.More() {
		return fmt.Errorf("decode OTLP JSON: more than one document on the line")
	}
	hexIDsToBase64(doc)
	fixed, err := json.Marshal(doc)
	if err != nil {
		return fmt.Errorf("re-encode OTLP JSON: %w", err)
	}
	if err := otlpJSON.Unmarshal(fixed, msg); err != nil {
		return fmt.Errorf("decode OTLP JSON as %s: %w", msg.ProtoReflect().Descriptor().FullName(), err)
	}
	return nil
}

// idKeys are the bytes fields OTLP JSON writes as hex, in both JSON spellings.
var idKeys = map[string]bool{
	"traceId": true, "spanId": true, "parentSpanId": true,
	"trace_id": true, "span_id": true, "parent_span_id": true,
}

func hexIDsToBase64(v any) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && idKeys[k] && s != "" {
				if b, err := hex.DecodeString(s); err == nil {
					v[k] = base64.StdEncoding.EncodeToString(b)
				}
				continue
			}
			hexIDsToBase64(e)
		}
	case []any:
		for _, e := range v {
			hexIDsToBase64(e)
		}
	}
}

func (m *Metrics) add(req *colmetricspb.ExportMetricsServiceRequest) {
	m.Requests = append(m.Requests, req)
	for _, rm := range req.GetResourceMetrics() {
		attrs := AttrMap(rm.GetResource().GetAttributes())
		res := m.resource(attrs)
		for _, sm := range rm.GetScopeMetrics() {
			for _, pm := range sm.GetMetrics() {
				res.metric(pm, sm.GetScope().GetName())
			}
		}
	}
}

func (m *Metrics) resource(attrs map[string]string) *Resource {
	key := attrKey(attrs)
	for _, r := range m.Resources {
		if attrKey(r.Attrs) == key {
			return r
		}
	}
	r := &Resource{Attrs: attrs}
	m.Resources = append(m.Resources, r)
	return r
}

func (r *Resource) metric(pm *metricspb.Metric, scope string) {
	var m *Metric
	for _, have := range r.Metrics {
		if have.Name == pm.GetName() {
			m = have
			break
		}
	}
	if m == nil {
		m = &Metric{Name: pm.GetName(), Unit: pm.GetUnit(), Description: pm.GetDescription(), Scope: scope}
		r.Metrics = append(r.Metrics, m)
	}
	switch d := pm.GetData().(type) {
	case *metricspb.Metric_Gauge:
		m.Type = "gauge"
		m.addNumbers(d.Gauge.GetDataPoints())
	case *metricspb.Metric_Sum:
		m.Type = "sum"
		m.Monotonic = d.Sum.GetIsMonotonic()
		m.Temporality = temporality(d.Sum.GetAggregationTemporality())
		m.addNumbers(d.Sum.GetDataPoints())
	case *metricspb.Metric_Histogram:
		m.Type = "histogram"
		m.Temporality = temporality(d.Histogram.GetAggregationTemporality())
		for _, p := range d.Histogram.GetDataPoints() {
			m.Points = append(m.Points, Point{
				Attrs: AttrMap(p.GetAttributes()), Start: unixNano(p.GetStartTimeUnixNano()),
				Time: unixNano(p.GetTimeUnixNano()), Value: p.GetSum(), Count: p.GetCount(),
			})
		}
	case *metricspb.Metric_ExponentialHistogram:
		m.Type = "exponential_histogram"
		m.Temporality = temporality(d.ExponentialHistogram.GetAggregationTemporality())
		for _, p := range d.ExponentialHistogram.GetDataPoints() {
			m.Points = append(m.Points, Point{
				Attrs: AttrMap(p.GetAttributes()), Start: unixNano(p.GetStartTimeUnixNano()),
				Time: unixNano(p.GetTimeUnixNano()), Value: p.GetSum(), Count: p.GetCount(),
			})
		}
	case *metricspb.Metric_Summary:
		m.Type = "summary"
		for _, p := range d.Summary.GetDataPoints() {
			m.Points = append(m.Points, Point{
				Attrs: AttrMap(p.GetAttributes()), Start: unixNano(p.GetStartTimeUnixNano()),
				Time: unixNano(p.GetTimeUnixNano()), Value: p.GetSum(), Count: p.GetCount(),
			})
		}
	}
}

func (m *Metric) addNumbers(points []*metricspb.NumberDataPoint) {
	for _, p := range points {
		pt := Point{Attrs: AttrMap(p.GetAttributes()), Start: unixNano(p.GetStartTimeUnixNano()), Time: unixNano(p.GetTimeUnixNano())}
		switch v := p.GetValue().(type) {
		case *metricspb.NumberDataPoint_AsInt:
			pt.Int, pt.IsInt, pt.Value = v.AsInt, true, float64(v.AsInt)
		case *metricspb.NumberDataPoint_AsDouble:
			pt.Value = v.AsDouble
		}
		m.Points = append(m.Points, pt)
	}
}

func temporality(t metricspb.AggregationTemporality) string {
	switch t {
	case metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_CUMULATIVE:
		return "cumulative"
	case metricspb.AggregationTemporality_AGGREGATION_TEMPORALITY_DELTA:
		return "delta"
	}
	return ""
}

func (l *Logs) add(req *collogspb.ExportLogsServiceRequest) {
	l.Requests = append(l.Requests, req)
	for _, rl := range req.GetResourceLogs() {
		res := AttrMap(rl.GetResource().GetAttributes())
		for _, sl := range rl.GetScopeLogs() {
			for _, r := range sl.GetLogRecords() {
				l.Records = append(l.Records, logRecord(res, sl.GetScope().GetName(), r))
			}
		}
	}
}

func logRecord(res map[string]string, scope string, r *logspb.LogRecord) LogRecord {
	rec := LogRecord{
		Resource: res, Scope: scope, EventName: r.GetEventName(),
		Severity: int(r.GetSeverityNumber()), SeverityText: r.GetSeverityText(),
		Attrs: AttrMap(r.GetAttributes()),
		Time:  unixNano(r.GetTimeUnixNano()), ObservedTime: unixNano(r.GetObservedTimeUnixNano()),
	}
	if r.GetBody() != nil {
		rec.Body = ValueString(r.GetBody())
	}
	if id := r.GetTraceId(); len(id) > 0 {
		rec.TraceID = hex.EncodeToString(id)
	}
	if id := r.GetSpanId(); len(id) > 0 {
		rec.SpanID = hex.EncodeToString(id)
	}
	return rec
}

// ResourcesWith returns the resources whose attributes include every key and value
// of match (all resources for an empty match), in order of first appearance.
func (m *Metrics) ResourcesWith(match map[string]string) []*Resource {
	var out []*Resource
	for _, r := range m.Resources {
		if hasAttrs(r.Attrs, match) {
			out = append(out, r)
		}
	}
	return out
}

// Metric returns the first metric named name of the first resource whose
// attributes include match, or nil when there is none.
func (m *Metrics) Metric(match map[string]string, name string) *Metric {
	for _, r := range m.ResourcesWith(match) {
		if mt := r.Metric(name); mt != nil {
			return mt
		}
	}
	return nil
}

// Metric returns the resource's metric named name, or nil when it has none.
func (r *Resource) Metric(name string) *Metric {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// Last returns the newest point whose attributes include every key and value of
// match (any point for an empty match), and false when there is none. For a
// cumulative sum that is its current value.
func (m *Metric) Last(match map[string]string) (Point, bool) {
	if m == nil {
		return Point{}, false
	}
	for i := len(m.Points) - 1; i >= 0; i-- {
		if hasAttrs(m.Points[i].Attrs, match) {
			return m.Points[i], true
		}
	}
	return Point{}, false
}

// Events returns the records with the given EventName, in file order.
func (l *Logs) Events(name string) []LogRecord {
	return l.Filter(func(r LogRecord) bool { return r.EventName == name })
}

// Filter returns the records keep accepts, in file order.
func (l *Logs) Filter(keep func(LogRecord) bool) []LogRecord {
	var out []LogRecord
	for _, r := range l.Records {
		if keep(r) {
			out = append(out, r)
		}
	}
	return out
}

// HasAttrs reports whether the record's attributes include every key and value of match.
func (r LogRecord) HasAttrs(match map[string]string) bool { return hasAttrs(r.Attrs, match) }

// HasResource reports whether the record's resource attributes include every key and value of match.
func (r LogRecord) HasResource(match map[string]string) bool { return hasAttrs(r.Resource, match) }

func hasAttrs(attrs, match map[string]string) bool {
	for k, v := range match {
		if have, ok := attrs[k]; !ok || have != v {
			return false
		}
	}
	return true
}

// AttrMap renders OTLP attributes as a map of ValueString renderings. A key that
// repeats (invalid OTLP) keeps its last value.
func AttrMap(kvs []*commonpb.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[kv.GetKey()] = ValueString(kv.GetValue())
	}
	return m
}

// ValueString renders an OTLP value for assertions: strings as they are, ints and
// doubles in Go's shortest decimal form, bools as true/false, bytes as base64,
// arrays and key-value lists as compact JSON of those renderings (so the string
// slice {"1.0", "latest"} is `["1.0","latest"]`), and an empty value as "".
func ValueString(v *commonpb.AnyValue) string {
	switch v := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return v.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(v.IntValue, 10)
	case *commonpb.AnyValue_DoubleValue:
		return strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
	case *commonpb.AnyValue_BoolValue:
		return strconv.FormatBool(v.BoolValue)
	case *commonpb.AnyValue_BytesValue:
		return base64.StdEncoding.EncodeToString(v.BytesValue)
	case *commonpb.AnyValue_ArrayValue:
		vals := make([]string, 0, len(v.ArrayValue.GetValues()))
		for _, e := range v.ArrayValue.GetValues() {
			vals = append(vals, ValueString(e))
		}
		b, _ := json.Marshal(vals) // a []string always marshals
		return string(b)
	case *commonpb.AnyValue_KvlistValue:
		b, _ := json.Marshal(AttrMap(v.KvlistValue.GetValues())) // a map[string]string always marshals
		return string(b)
	}
	return ""
}

func unixNano(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)).UTC()
}

// attrKey is a canonical rendering of an attribute set: sorted k=v, one per line.
func attrKey(attrs map[string]string) string {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte('=')
		b.WriteString(strconv.Quote(attrs[k]))
		b.WriteByte('\n')
	}
	return b.String()
}

// Summary renders the metrics for a failure message: each resource's attributes,
// then each metric with its type, point count and newest point.
func (m *Metrics) Summary() string {
	if len(m.Resources) == 0 {
		return fmt.Sprintf("no metrics (%d batches)", len(m.Requests))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d batches, %d resources:", len(m.Requests), len(m.Resources))
	for _, r := range m.Resources {
		fmt.Fprintf(&b, "\n  resource %s", formatAttrs(r.Attrs))
		for _, mt := range r.Metrics {
			fmt.Fprintf(&b, "\n    %s (%s %s", mt.Name, mt.Type, mt.Unit)
			if mt.Temporality != "" {
				fmt.Fprintf(&b, " %s", mt.Temporality)
			}
			fmt.Fprintf(&b, ") %d points", len(mt.Points))
			if n := len(mt.Points); n > 0 {
				p := mt.Points[n-1]
				fmt.Fprintf(&b, ", newest %s %s", strconv.FormatFloat(p.Value, 'g', -1, 64), formatAttrs(p.Attrs))
			}
		}
	}
	return b.String()
}

// Summary renders the records for a failure message, one line each, the newest
// 50 when there are more.
func (l *Logs) Summary() string {
	if len(l.Records) == 0 {
		return fmt.Sprintf("no log records (%d batches)", len(l.Requests))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d batches, %d log records:", len(l.Requests), len(l.Records))
	recs := l.Records
	if len(recs) > 50 {
		fmt.Fprintf(&b, "\n  (%d older records left out)", len(recs)-50)
		recs = recs[len(recs)-50:]
	}
	for _, r := range recs {
		fmt.Fprintf(&b, "\n  event=%q severity=%d body=%q attrs=%s resource=%s",
			r.EventName, r.Severity, r.Body, formatAttrs(r.Attrs), formatAttrs(r.Resource))
	}
	return b.String()
}

func formatAttrs(attrs map[string]string) string {
	return "{" + strings.ReplaceAll(strings.TrimSuffix(attrKey(attrs), "\n"), "\n", " ") + "}"
}
