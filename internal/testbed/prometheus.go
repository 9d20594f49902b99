package testbed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// PrometheusBinary is the Prometheus server of the Debian package prometheus.
const PrometheusBinary = "prometheus"

// PrometheusServer is a private Prometheus started for one test: its own
// loopback port, its own storage under t.TempDir(), no scrape targets, and the
// remote-write receiver on (--web.enable-remote-write-receiver), so whatever
// it holds was written to it. Its methods are safe for concurrent use.
type PrometheusServer struct {
	addr       string
	dir        string
	outputFile string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error
}

// StartPrometheus starts a Prometheus for t (it Requires the Prometheus part)
// and returns once it reports ready. It stops (SIGTERM, then SIGKILL after
// 10 s) in t's cleanup, and its output is logged to t when t failed. The port is
// picked free and retried when another process takes it first.
func StartPrometheus(t testing.TB) *PrometheusServer {
	t.Helper()
	Require(t, Prometheus)
	dir := t.TempDir()
	p := &PrometheusServer{dir: dir, outputFile: filepath.Join(dir, "prometheus.log")}
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte("global:\n  evaluation_interval: 1m\nscrape_configs: []\n"), 0o600); err != nil {
		t.Fatalf("prometheus: write config: %v", err)
	}
	var lastErr error
	for i := 0; i < 5; i++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("prometheus: pick a free port: %v", err)
		}
		p.addr = net.JoinHostPort("127.0.0.1", port)
		err = p.start(cfg)
		if err == nil {
			t.Cleanup(func() { p.stop(t) })
			return p
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("prometheus: %v\nits output:\n%s", lastErr, p.output())
	return nil
}

// RemoteWriteURL is where a remote-write client sends samples.
func (p *PrometheusServer) RemoteWriteURL() string { return "http://" + p.addr + "/api/v1/write" }

// Addr is the host:port of its HTTP API.
func (p *PrometheusServer) Addr() string { return p.addr }

func (p *PrometheusServer) start(cfg string) error {
	out, err := os.Create(p.outputFile)
	if err != nil {
		return fmt.Errorf("create output file: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(PrometheusBinary,
		"--config.file="+cfg,
		"--storage.tsdb.path="+filepath.Join(p.dir, "data"),
		"--web.listen-address="+p.addr,
		"--web.enable-remote-write-receiver",
		"--log.level=info")
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", PrometheusBinary, err)
	}
	p.cmd, p.exited, p.waitErr = cmd, make(chan struct{}), nil
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-p.exited:
			if strings.Contains(p.output(), "address already in use") {
				return fmt.Errorf("%s: %w", p.addr, errPortTaken)
			}
			return fmt.Errorf("exited before it was ready: %v", p.waitErr)
		case <-time.After(100 * time.Millisecond):
		}
		if p.ready() {
			return nil
		}
		if time.Now().After(deadline) {
			_ = p.cmd.Process.Kill()
			<-p.exited
			return fmt.Errorf("not ready on %s within 60s", p.addr)
		}
	}
}

func (p *PrometheusServer) ready() bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.addr + "/-/ready")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode == http.StatusOK
}

func (p *PrometheusServer) stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		t.Errorf("prometheus on %s exited during the test: %v", p.addr, p.waitErr)
	default:
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("prometheus on %s did not stop within 10s of SIGTERM; killed", p.addr)
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	}
	if t.Failed() {
		t.Logf("prometheus on %s, files in %s; its output:\n%s", p.addr, p.dir, p.output())
	}
}

func (p *PrometheusServer) output() string {
	b, err := os.ReadFile(p.outputFile)
	if err != nil {
		return fmt.Sprintf("(output unreadable: %v)", err)
	}
	return string(b)
}

// Series is one time series of a query result: its labels (__name__ included)
// and its samples, oldest first (one for an instant vector).
type Series struct {
	Labels  map[string]string
	Samples []Sample
}

// Sample is one value of a series at a time (millisecond precision, as stored).
type Sample struct {
	Time  time.Time
	Value float64
}

// Query evaluates the PromQL query at time at over the HTTP API
// (/api/v1/query) and returns the series of an instant vector or a range
// vector result; any other result type, or a query error, is an error naming
// the query.
func (p *PrometheusServer) Query(ctx context.Context, query string, at time.Time) ([]Series, error) {
	u := url.URL{Scheme: "http", Host: p.addr, Path: "/api/v1/query", RawQuery: url.Values{
		"query": {query},
		"time":  {strconv.FormatFloat(float64(at.UnixMilli())/1000, 'f', 3, 64)},
	}.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %q: %w", query, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("query %q: read answer: %w", query, err)
	}
	var ans struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
				Values [][]any           `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, fmt.Errorf("query %q: HTTP %d, answer %.200q: %w", query, resp.StatusCode, body, err)
	}
	if ans.Status != "success" {
		return nil, fmt.Errorf("query %q: HTTP %d, %s: %s", query, resp.StatusCode, ans.Status, ans.Error)
	}
	out := make([]Series, 0, len(ans.Data.Result))
	for _, r := range ans.Data.Result {
		s := Series{Labels: r.Metric}
		var raw [][]any
		switch ans.Data.ResultType {
		case "vector":
			raw = [][]any{r.Value}
		case "matrix":
			raw = r.Values
		default:
			return nil, fmt.Errorf("query %q: result type %q, want vector or matrix", query, ans.Data.ResultType)
		}
		for _, v := range raw {
			smp, err := parseSample(v)
			if err != nil {
				return nil, fmt.Errorf("query %q: series %v: %w", query, r.Metric, err)
			}
			s.Samples = append(s.Samples, smp)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseSample decodes the API's [unix seconds, "value"] pair.
func parseSample(v []any) (Sample, error) {
	if len(v) != 2 {
		return Sample{}, fmt.Errorf("sample %v: want [time, value]", v)
	}
	ts, ok := v[0].(float64)
	vs, ok2 := v[1].(string)
	if !ok || !ok2 {
		return Sample{}, fmt.Errorf("sample %v: want [number, string]", v)
	}
	f, err := strconv.ParseFloat(vs, 64)
	if err != nil {
		return Sample{}, fmt.Errorf("sample %v: %w", v, err)
	}
	ms := int64(ts*1000 + 0.5)
	return Sample{Time: time.UnixMilli(ms), Value: f}, nil
}
