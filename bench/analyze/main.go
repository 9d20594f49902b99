// Command analyze reads the OTLP JSON lines a sink collector's file exporter
// wrote and reports, for the export requests one agent sent inside a time
// window, what the sink received per export round: OTLP bytes (protobuf, and
// gzip as on a compressed wire), data points, resources, and how many of the
// bench containers each round covered. bench/run.sh calls it; its output is
// one line of key=value pairs.
package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/agentd-dev/agentd/internal/testbed"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	metricspb "go.opentelemetry.io/proto/otlp/metrics/v1"
	"google.golang.org/protobuf/proto"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "analyze: %v\n", err)
		os.Exit(1)
	}
}

// request is one export request the sink received, reduced to what is counted.
type request struct {
	time      time.Time // latest data point time in it
	agentd    bool      // a resource carries agentd.* attributes
	bytes     int       // protobuf size
	gzipBytes int       // gzip of the protobuf
	points    int
	resources int
	ids       map[string]bool // container.id values
}

// round is the requests of one export round (one collection by the agent).
type round struct {
	start     time.Time
	requests  int
	bytes     int
	gzipBytes int
	points    int
	resources int
	ids       map[string]bool
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("analyze", flag.ContinueOnError)
	file := fs.String("metrics", "", "metrics file of the sink's file exporter (OTLP JSON lines)")
	from := fs.Float64("from", 0, "window start, unix seconds")
	to := fs.Float64("to", 0, "window end, unix seconds")
	interval := fs.Duration("interval", 10*time.Second, "the agents' export interval")
	source := fs.String("source", "", `count only requests of "agentd" (resources with agentd.* attributes) or "peer" (without)`)
	idsFile := fs.String("ids", "", "file of the bench containers' full IDs, one a line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *file == "" || *to <= *from {
		return errors.New("-metrics and a window -from < -to are required")
	}
	want := map[string]bool{}
	if *idsFile != "" {
		b, err := os.ReadFile(*idsFile)
		if err != nil {
			return err
		}
		for _, id := range strings.Fields(string(b)) {
			want[id] = true
		}
	}
	start, end := unix(*from), unix(*to)
	reqs, err := readRequests(*file)
	if err != nil {
		return err
	}
	var sel []request
	for _, r := range reqs {
		if r.time.Before(start) || !r.time.Before(end) {
			continue
		}
		if (*source == "agentd" && !r.agentd) || (*source == "peer" && r.agentd) {
			continue
		}
		sel = append(sel, r)
	}
	rounds := group(sel, *interval/2)
	fmt.Fprintln(out, summarize(rounds, want))
	return nil
}

func unix(s float64) time.Time { return time.Unix(0, int64(s*1e9)) }

// readRequests decodes every complete line of the file.
func readRequests(path string) ([]request, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	reqs, err := readRequestsFrom(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return reqs, nil
}

// readRequestsFrom decodes every complete line (one OTLP JSON request each); a
// last line without its newline is still being written and is skipped.
func readRequestsFrom(rd io.Reader) ([]request, error) {
	var out []request
	br := bufio.NewReaderSize(rd, 1<<20)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		m, err := testbed.ParseMetrics(bytes.NewReader(line))
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		for _, req := range m.Requests {
			r, err := reduce(req)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
			out = append(out, r)
		}
	}
}

func reduce(req *colmetricspb.ExportMetricsServiceRequest) (request, error) {
	b, err := proto.Marshal(req)
	if err != nil {
		return request{}, err
	}
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	_, _ = w.Write(b)
	if err := w.Close(); err != nil {
		return request{}, err
	}
	r := request{bytes: len(b), gzipBytes: gz.Len(), resources: len(req.ResourceMetrics), ids: map[string]bool{}}
	for _, rm := range req.ResourceMetrics {
		for _, kv := range rm.GetResource().GetAttributes() {
			if strings.HasPrefix(kv.Key, "agentd.") {
				r.agentd = true
			}
			if kv.Key == "container.id" {
				r.ids[kv.GetValue().GetStringValue()] = true
			}
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				for _, t := range pointTimes(m) {
					if t2 := time.Unix(0, int64(t)); t2.After(r.time) {
						r.time = t2
					}
					r.points++
				}
			}
		}
	}
	return r, nil
}

// pointTimes are the time_unix_nano of every data point of m.
func pointTimes(m *metricspb.Metric) []uint64 {
	var ts []uint64
	switch d := m.Data.(type) {
	case *metricspb.Metric_Gauge:
		for _, p := range d.Gauge.DataPoints {
			ts = append(ts, p.TimeUnixNano)
		}
	case *metricspb.Metric_Sum:
		for _, p := range d.Sum.DataPoints {
			ts = append(ts, p.TimeUnixNano)
		}
	case *metricspb.Metric_Histogram:
		for _, p := range d.Histogram.DataPoints {
			ts = append(ts, p.TimeUnixNano)
		}
	case *metricspb.Metric_ExponentialHistogram:
		for _, p := range d.ExponentialHistogram.DataPoints {
			ts = append(ts, p.TimeUnixNano)
		}
	case *metricspb.Metric_Summary:
		for _, p := range d.Summary.DataPoints {
			ts = append(ts, p.TimeUnixNano)
		}
	}
	return ts
}

// group puts requests into rounds: a request within gap of a round's first
// request belongs to that round.
func group(reqs []request, gap time.Duration) []round {
	sort.Slice(reqs, func(i, j int) bool { return reqs[i].time.Before(reqs[j].time) })
	var rounds []round
	for _, r := range reqs {
		if len(rounds) == 0 || r.time.Sub(rounds[len(rounds)-1].start) > gap {
			rounds = append(rounds, round{start: r.time, ids: map[string]bool{}})
		}
		c := &rounds[len(rounds)-1]
		c.requests++
		c.bytes += r.bytes
		c.gzipBytes += r.gzipBytes
		c.points += r.points
		c.resources += r.resources
		for id := range r.ids {
			c.ids[id] = true
		}
	}
	return rounds
}

// summarize renders the per-round averages and the coverage of the bench
// containers as key=value pairs.
func summarize(rounds []round, want map[string]bool) string {
	n := len(rounds)
	if n == 0 {
		return "rounds=0"
	}
	var req, by, gz, pts, res int
	minCov, maxCov, complete := len(want), 0, 0
	for _, r := range rounds {
		req += r.requests
		by += r.bytes
		gz += r.gzipBytes
		pts += r.points
		res += r.resources
		cov := 0
		for id := range want {
			if r.ids[id] {
				cov++
			}
		}
		minCov, maxCov = min(minCov, cov), max(maxCov, cov)
		if cov == len(want) {
			complete++
		}
	}
	avg := func(v int) float64 { return float64(v) / float64(n) }
	return fmt.Sprintf("rounds=%d requests_per_round=%.1f bytes_per_round=%.0f gzip_bytes_per_round=%.0f points_per_round=%.0f resources_per_round=%.0f bench_ids=%d bench_ids_min=%d bench_ids_max=%d complete_rounds=%d",
		n, avg(req), avg(by), avg(gz), avg(pts), avg(res), len(want), minCov, maxCov, complete)
}
