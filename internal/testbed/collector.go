package testbed

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Otelcol is a private OpenTelemetry Collector (the binary testbed/collector.sh
// builds) started for one test: an OTLP/gRPC receiver on a free loopback port (or
// on a unix socket, see WithUnixSocket) and file exporters writing what it receives as OTLP JSON lines, metrics and logs in
// separate files. Its methods are safe for concurrent use.
type Otelcol struct {
	endpoint    string // host:port, or the socket path when unix
	unix        bool
	opts        collectorOptions
	httpAddr    string // host:port of the OTLP/HTTP receiver, with WithHTTPReceiver
	dir         string
	metricsFile string
	logsFile    string
	outputFile  string

	// base is the configuration file a gateway collector (StartGateway) runs
	// with, its overrides merged after it; env is added to its environment.
	base string
	env  []string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been waited for
	waitErr error         // set before exited is closed
}

// collectorReady is the line the collector logs once every pipeline has started,
// which includes the receiver's listener being bound.
const collectorReady = "Everything is ready"

// CollectorOption changes how StartCollector sets up the collector.
type CollectorOption func(*collectorOptions)

type collectorOptions struct {
	unixSocket  string
	tls         *ReceiverTLS
	http        bool
	bearerToken string
}

// ReceiverTLS is the TLS of the collector's receivers (see WithTLS): PEM
// files of its certificate and key, and, for mutual TLS, of the CA its
// clients' certificates must chain to.
type ReceiverTLS struct {
	CertFile, KeyFile string
	// ClientCAFile, when set, makes the receivers require a client
	// certificate signed by it.
	ClientCAFile string
}

// WithTLS makes every receiver of the collector serve TLS.
func WithTLS(tls ReceiverTLS) CollectorOption {
	return func(o *collectorOptions) { o.tls = &tls }
}

// WithHTTPReceiver adds an OTLP/HTTP receiver on another free loopback port
// (see HTTPEndpoint), with the same TLS and authentication as the gRPC one.
func WithHTTPReceiver() CollectorOption {
	return func(o *collectorOptions) { o.http = true }
}

// WithBearerToken makes every receiver require the header
// "authorization: Bearer TOKEN" (the bearertokenauth extension) and keep
// the request's metadata (include_metadata): a request without the right
// token is refused with Unauthenticated (gRPC) or 401 (HTTP).
func WithBearerToken(token string) CollectorOption {
	return func(o *collectorOptions) { o.bearerToken = token }
}

// WithUnixSocket makes the OTLP/gRPC receiver listen on the unix socket path
// (receivers.otlp.protocols.grpc with transport: unix) instead of a loopback
// TCP port. path may lie in another mount namespace reached through
// /proc/PID/root/..., so a program inside a container connects to it by its
// path there, with no network between them. A stale socket file at path is
// removed before the collector starts and again when it stops; any other file
// there makes StartCollector fail.
func WithUnixSocket(path string) CollectorOption {
	return func(o *collectorOptions) { o.unixSocket = path }
}

// StartCollector starts a collector for t (it Requires the Collector part) and
// returns once its OTLP/gRPC receiver accepts connections. The collector stops
// (SIGTERM, then SIGKILL after 10 s) in t's cleanup, and its own output is logged
// to t when t failed. Parallel tests each get their own collector: the receiver
// port is picked free, retried when another process takes it first, and the
// collector's own telemetry binds no port.
func StartCollector(t testing.TB, opts ...CollectorOption) *Otelcol {
	t.Helper()
	Require(t, Collector)
	var o collectorOptions
	for _, opt := range opts {
		opt(&o)
	}
	dir := t.TempDir()
	c := &Otelcol{
		opts:        o,
		dir:         dir,
		metricsFile: filepath.Join(dir, "metrics.jsonl"),
		logsFile:    filepath.Join(dir, "logs.jsonl"),
		outputFile:  filepath.Join(dir, "collector.log"),
	}
	if o.unixSocket != "" {
		c.endpoint, c.unix = o.unixSocket, true
		if err := removeStaleSocket(c.endpoint); err != nil {
			t.Fatalf("collector: %v", err)
		}
		if err := c.start(); err != nil {
			_ = removeStaleSocket(c.endpoint)
			t.Fatalf("collector %s: %v\ncollector output:\n%s", CollectorBinary(), err, c.output())
		}
		t.Cleanup(func() {
			c.stop(t)
			if err := removeStaleSocket(c.endpoint); err != nil {
				t.Errorf("collector: %v", err)
			}
		})
		return c
	}
	const attempts = 5
	var lastErr error
	for i := 0; i < attempts; i++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("collector: pick a free port: %v", err)
		}
		c.endpoint = net.JoinHostPort("127.0.0.1", port)
		if o.http {
			hport, err := freePort()
			if err != nil {
				t.Fatalf("collector: pick a free port: %v", err)
			}
			c.httpAddr = net.JoinHostPort("127.0.0.1", hport)
		}
		err = c.start()
		if err == nil {
			t.Cleanup(func() { c.stop(t) })
			return c
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	t.Fatalf("collector %s: %v\ncollector output:\n%s", CollectorBinary(), lastErr, c.output())
	return nil
}

// Endpoint is the host:port of the collector's OTLP/gRPC receiver (plaintext),
// or, with WithUnixSocket, the gRPC target unix://PATH.
func (c *Otelcol) Endpoint() string {
	if c.unix {
		return "unix://" + c.endpoint
	}
	return c.endpoint
}

// HTTPEndpoint is the host:port of the collector's OTLP/HTTP receiver
// (WithHTTPReceiver; "" without it). Requests go to /v1/metrics and /v1/logs.
func (c *Otelcol) HTTPEndpoint() string { return c.httpAddr }

// MetricsFile is the path of the OTLP JSON lines file of the metrics pipeline.
func (c *Otelcol) MetricsFile() string { return c.metricsFile }

// LogsFile is the path of the OTLP JSON lines file of the logs pipeline.
func (c *Otelcol) LogsFile() string { return c.logsFile }

// Metrics reads what the collector has written to its metrics file so far.
func (c *Otelcol) Metrics() (*Metrics, error) { return ReadMetricsFile(c.metricsFile) }

// Logs reads what the collector has written to its logs file so far.
func (c *Otelcol) Logs() (*Logs, error) { return ReadLogsFile(c.logsFile) }

// pollInterval is how often the Wait methods re-read the files; the file
// exporters flush every 100 ms.
const pollInterval = 100 * time.Millisecond

// WaitMetrics re-reads the metrics file until pred accepts its content and
// returns that content. After timeout, or when the file does not decode, it
// fails t with a summary of what the file held. pred sees a fresh snapshot on
// every call and must not keep it.
func (c *Otelcol) WaitMetrics(t testing.TB, timeout time.Duration, pred func(*Metrics) bool) *Metrics {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		m, err := c.Metrics()
		if err != nil {
			t.Fatalf("collector metrics: %v", err)
		}
		if pred(m) {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector metrics: condition not met within %v; %s holds %s", timeout, c.metricsFile, m.Summary())
		}
		time.Sleep(pollInterval)
	}
}

// WaitLogs re-reads the logs file until pred accepts its content and returns
// that content, with the same rules as WaitMetrics.
func (c *Otelcol) WaitLogs(t testing.TB, timeout time.Duration, pred func(*Logs) bool) *Logs {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		l, err := c.Logs()
		if err != nil {
			t.Fatalf("collector logs: %v", err)
		}
		if pred(l) {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("collector logs: condition not met within %v; %s holds %s", timeout, c.logsFile, l.Summary())
		}
		time.Sleep(pollInterval)
	}
}

// errPortTaken marks a start that failed because the receiver port was taken
// between picking it and the collector binding it.
var errPortTaken = errors.New("receiver port taken")

// start writes the configuration for c.endpoint and runs the collector until it
// is ready or has exited.
func (c *Otelcol) start() error {
	cfgPath := filepath.Join(c.dir, "config.yaml")
	cfg, args := c.config(), []string{"--config=file:" + cfgPath}
	if c.base != "" {
		var err error
		if cfg, err = c.gatewayOverrides(); err != nil {
			return err
		}
		args = []string{"--config=file:" + c.base, "--config=file:" + cfgPath}
	}
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	out, err := os.Create(c.outputFile)
	if err != nil {
		return fmt.Errorf("create output file: %w", err)
	}
	defer out.Close() // the child has its own descriptor
	cmd := exec.Command(CollectorBinary(), args...)
	cmd.Dir = c.dir
	if len(c.env) > 0 {
		cmd.Env = append(os.Environ(), c.env...)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	c.cmd, c.exited, c.waitErr = cmd, make(chan struct{}), nil
	go func() {
		c.waitErr = cmd.Wait()
		close(c.exited)
	}()

	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-c.exited:
			if !c.unix && strings.Contains(c.output(), "address already in use") {
				return fmt.Errorf("%s: %w", c.endpoint, errPortTaken)
			}
			return fmt.Errorf("exited before it was ready: %v", c.waitErr)
		case <-time.After(50 * time.Millisecond):
		}
		if strings.Contains(c.output(), collectorReady) && c.dial() == nil {
			return nil
		}
		if time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("not ready on %s within 30s", c.endpoint)
		}
	}
}

// stop ends the collector and, when t failed, logs its output.
func (c *Otelcol) stop(t testing.TB) {
	t.Helper()
	select {
	case <-c.exited:
		t.Errorf("collector on %s exited during the test: %v", c.endpoint, c.waitErr)
	default:
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("collector on %s did not stop within 10s of SIGTERM; killed", c.endpoint)
			c.kill()
		}
	}
	if t.Failed() {
		t.Logf("collector on %s, files in %s; %s", c.endpoint, c.dir, notable(c.output(), collectorDumpLines))
	}
}

// collectorDumpLines is how many of the collector's notable lines a failed
// test logs: its errors must stay in sight at the end of the test's output.
const collectorDumpLines = 40

// notable is the end of a collector's output without the debug exporter's
// line for every batch it received (a long test's thousands of them would
// push the test's own failure out of a CI log's tail): at most n lines.
func notable(output string, n int) string {
	var keep []string
	batches := 0
	for _, line := range strings.Split(strings.TrimRight(output, "\n"), "\n") {
		if strings.Contains(line, `"otelcol.component.id": "debug"`) && strings.Contains(line, "\tinfo\t") {
			batches++
			continue
		}
		keep = append(keep, line)
	}
	head := fmt.Sprintf("its output without the %d lines of the debug exporter's batches", batches)
	if len(keep) > n {
		head += fmt.Sprintf(", last %d of %d lines", n, len(keep))
		keep = keep[len(keep)-n:]
	}
	return head + ":\n" + strings.Join(keep, "\n")
}

// kill ends the process and waits for it.
func (c *Otelcol) kill() {
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// output is what the collector process printed so far.
func (c *Otelcol) output() string {
	b, err := os.ReadFile(c.outputFile)
	if err != nil {
		return fmt.Sprintf("(output unreadable: %v)", err)
	}
	return string(b)
}

// dial checks that the receiver accepts connections.
func (c *Otelcol) dial() error {
	if c.unix {
		return dialUnix(c.endpoint)
	}
	return dialTCP(c.endpoint)
}

// removeStaleSocket removes the unix socket at path, if there is one; a
// missing file is fine, any other kind of file is an error.
func removeStaleSocket(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("receiver socket %s: %w", path, err)
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("receiver socket %s: exists and is not a socket (%v)", path, st.Mode())
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("receiver socket %s: remove: %w", path, err)
	}
	return nil
}

// config is the collector configuration: one pipeline per signal, each to its
// own file flushed every 100 ms, plus a one-line-per-batch debug exporter whose
// output lands in the collector's own output. The collector's own metrics are
// off, so it binds no port besides the receiver's.
func (c *Otelcol) config() string {
	q := func(s string) string {
		b, _ := json.Marshal(s) // a JSON string is a YAML double-quoted scalar
		return string(b)
	}
	transport := ""
	if c.unix {
		transport = "\n        transport: unix"
	}
	// common is what every receiver protocol gets: TLS and authentication.
	common := ""
	if t := c.opts.tls; t != nil {
		common += fmt.Sprintf("\n        tls:\n          cert_file: %s\n          key_file: %s", q(t.CertFile), q(t.KeyFile))
		if t.ClientCAFile != "" {
			common += fmt.Sprintf("\n          client_ca_file: %s", q(t.ClientCAFile))
		}
	}
	extensions, serviceExtensions := "", ""
	if c.opts.bearerToken != "" {
		common += "\n        include_metadata: true\n        auth:\n          authenticator: bearertokenauth"
		extensions = fmt.Sprintf("extensions:\n  bearertokenauth:\n    token: %s\n", q(c.opts.bearerToken))
		serviceExtensions = "\n  extensions: [bearertokenauth]"
	}
	httpReceiver := ""
	if c.httpAddr != "" {
		httpReceiver = fmt.Sprintf("\n      http:\n        endpoint: %s%s", q(c.httpAddr), common)
	}
	return extensions + fmt.Sprintf(`receivers:
  otlp:
    protocols:
      grpc:
        endpoint: %s%s%s%s
exporters:
  debug:
    verbosity: basic
  file/metrics:
    path: %s
    flush_interval: 100ms
  file/logs:
    path: %s
    flush_interval: 100ms
service:%s
  telemetry:
    metrics:
      level: none
    logs:
      level: info
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [file/metrics, debug]
    logs:
      receivers: [otlp]
      exporters: [file/logs, debug]
`, q(c.endpoint), transport, common, httpReceiver, q(c.metricsFile), q(c.logsFile), serviceExtensions)
}

// freePort asks the kernel for a free loopback TCP port. Another process may
// take it before the collector binds it; StartCollector retries then.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	return port, err
}

func dialTCP(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Stall freezes the collector with SIGSTOP, as a collector that hangs does:
// its sockets still accept connections (the kernel completes them) but
// nothing answers. The returned function resumes it with SIGCONT.
func (c *Otelcol) Stall(t testing.TB) (resume func()) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("collector on %s: stall: %v", c.endpoint, err)
	}
	// The signal is delivered asynchronously: a request sent at once could
	// still be answered. Wait until every thread has stopped.
	if err := waitStopped(c.cmd.Process.Pid, 5*time.Second); err != nil {
		t.Fatalf("collector on %s: stall: %v", c.endpoint, err)
	}
	var once sync.Once
	resume = func() {
		once.Do(func() { _ = c.cmd.Process.Signal(syscall.SIGCONT) })
	}
	// A stopped collector never exits on SIGTERM: resume it first.
	t.Cleanup(resume)
	return resume
}

// waitStopped waits until every thread of pid is in the stopped state (T in
// /proc/PID/task/TID/stat).
func waitStopped(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return err
		}
		stopped := len(tasks) > 0
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				continue // the thread ended
			}
			// The state follows the command's closing parenthesis.
			if i := bytes.LastIndexByte(b, ')'); i < 0 || i+2 >= len(b) || b[i+2] != 'T' {
				stopped = false
				break
			}
		}
		if stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d not stopped after %v", pid, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// Down stops the collector, as a collector that goes away does, and returns
// the function that starts it again on the same endpoint (waiting until it
// is ready). Its output files keep what it received before.
func (c *Otelcol) Down(t testing.TB) (up func()) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		c.kill()
	}
	return func() {
		t.Helper()
		if c.unix {
			if err := removeStaleSocket(c.endpoint); err != nil {
				t.Fatalf("collector: %v", err)
			}
		}
		if err := c.start(); err != nil {
			t.Fatalf("collector back on %s: %v", c.endpoint, err)
		}
	}
}
