package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where agentd looks for its configuration.
const DefaultPath = "/etc/agentd/agentd.yaml"

// Config is agentd's whole configuration.
type Config struct {
	Export     Export     `yaml:"export"`
	Events     Events     `yaml:"events"`
	Discovery  Discovery  `yaml:"discovery"`
	Engines    Engines    `yaml:"engines"`
	Host       Host       `yaml:"host"`
	Activation Activation `yaml:"activation"`
	Labels     Labels     `yaml:"labels"`
	Filters    Filters    `yaml:"filters"`
	Status     Status     `yaml:"status"`
	Log        Log        `yaml:"log"`
	Memory     Memory     `yaml:"memory"`

	// lines maps dotted keys to the line they were set on, for error messages.
	lines map[string]int
	// file is where the configuration came from ("" for defaults only).
	file string
}

// Export configures the OTLP exporters. Every OTLP setting here wins over
// the OTEL_EXPORTER_OTLP_* environment variables (per-signal ones first);
// the command line wins over the file (see telemetry.ResolveOTLP).
type Export struct {
	// Protocol is "grpc" (the default) or "http/protobuf".
	Protocol string `yaml:"protocol"`
	// Endpoint is, for gRPC, host:port or an http(s):// URL of an OTLP/gRPC
	// receiver, or unix:///absolute/path for one listening on a unix socket;
	// for http/protobuf the base URL (/v1/metrics and /v1/logs are
	// appended). Empty means: no OTLP export unless OTEL_EXPORTER_OTLP_ENDPOINT
	// (or a per-signal variable, or metrics_endpoint/logs_endpoint) is set;
	// with none, agentd prints what it sees on stdout.
	Endpoint string `yaml:"endpoint"`
	// MetricsEndpoint and LogsEndpoint are one signal's endpoint, used as
	// written (an http/protobuf URL gets no path appended).
	MetricsEndpoint string `yaml:"metrics_endpoint"`
	LogsEndpoint    string `yaml:"logs_endpoint"`
	// Insecure disables TLS towards an endpoint written without a scheme
	// (an http:// URL is plaintext, https:// is TLS, whatever this says).
	// Written as false in the file, it overrides OTEL_EXPORTER_OTLP_INSECURE.
	Insecure bool `yaml:"insecure"`
	// Interval is the metrics export interval.
	Interval Duration `yaml:"interval"`
	// Timeout bounds one export request (0: OTEL_EXPORTER_OTLP_TIMEOUT, else 10s).
	Timeout Duration `yaml:"timeout"`
	// Headers are sent with every export request; a header named here wins
	// over the same header in OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string `yaml:"headers"`
	// Compression is "gzip" or "none" ("" leaves OTEL_EXPORTER_OTLP_COMPRESSION,
	// else none).
	Compression string `yaml:"compression"`
	// TLS sets the certificates of a TLS connection.
	TLS TLS `yaml:"tls"`
	// Temporality is the metrics temporality preference: cumulative (the
	// default), delta or lowmemory.
	Temporality string `yaml:"temporality"`
	// QueueSize bounds the export queue, metrics and events together, in
	// bytes of encoded requests ("32MiB", "512KiB" or a number of bytes);
	// requests that do not fit are dropped and counted in
	// agentd.export.dropped. Default 32 MiB, at least 1 MiB.
	QueueSize ByteSize `yaml:"queue_size"`
	// QueueDir, when set, keeps the export queue in files there as well
	// (an absolute path; the packaged unit's StateDirectory is
	// /var/lib/agentd, so /var/lib/agentd/queue), so what was not delivered
	// is sent after a restart or a reboot. Empty: memory only.
	QueueDir string `yaml:"queue_dir"`
}

// TLS is export.tls: PEM files for the connection to the collector.
type TLS struct {
	// CAFile holds the certificates that verify the collector, instead of
	// the system's roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the client certificate and its key, for a
	// collector that requires one (mTLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// DefaultQueueSize is export.queue_size's default.
const DefaultQueueSize = 32 << 20

// ByteSize is a size in bytes written as a number or with a unit: "512KiB",
// "32MiB", "1GiB" (KB, MB, GB are read as KiB, MiB, GiB).
type ByteSize int64

// UnmarshalYAML parses a size.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}

// ParseByteSize parses "32MiB", "512 KiB", "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	v, err := strconv.ParseInt(t, 10, 64)
	if err != nil || v < 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (want e.g. 32MiB, 512KiB or a number of bytes)", s)
	}
	return ByteSize(v * mult), nil
}

// Memory configures how agentd manages its own memory.
type Memory struct {
	// SoftLimit is the Go runtime's soft memory limit
	// (runtime/debug.SetMemoryLimit): the garbage collector collects more
	// often as agentd's memory nears it, instead of letting the heap grow
	// to twice what is live. It never goes below the runtime's non-heap
	// memory plus twice the live heap (see package internal/memlimit), so
	// more containers than it was sized for cost memory, not CPU. Read at
	// start. 0 turns it off; GOMEMLIMIT in the environment wins.
	SoftLimit ByteSize `yaml:"soft_limit"`
}

// DefaultSoftLimit is memory.soft_limit's default: at 1,000 containers it
// keeps agentd's RSS at 41-42 MB (49 MB at the 36 MiB it was) for the same
// CPU within the noise, over a live heap of about 13 MB; at 100 containers
// it does not bind (see bench/RESULTS.md).
const DefaultSoftLimit = 30 << 20

// Events configures lifecycle event export.
type Events struct {
	// FlushInterval bounds how long an event waits before it is sent.
	FlushInterval Duration `yaml:"flush_interval"`
}

// Discovery configures the process-table scan.
type Discovery struct {
	// Interval between rescans of the process table.
	Interval Duration `yaml:"interval"`
	// ProcRoot is the procfs mount to read (a host /proc mounted elsewhere works).
	ProcRoot string `yaml:"proc_root"`
	// GracePeriod is how long an engine whose process went away stays known
	// (agentd.engine.up 0, its watcher reconnecting) before it is lost and
	// its containers are pruned. An engine back within it (same socket, same
	// identity) is the same engine: its watcher resyncs and reports exactly
	// the transitions it missed. It must be longer than the scan interval.
	GracePeriod Duration `yaml:"grace_period"`
	// IncludeEndpoints, when not empty, limits the engines agentd watches
	// to the sockets matching one of these glob patterns (path.Match: "*"
	// does not cross a "/"). A pattern matches the endpoint as agentd
	// reports it (agentd.engine.endpoint, `agentd engines`: /run/docker.sock,
	// /proc/812/root/run/podman/podman.sock for an engine in a container)
	// or the socket's path inside the engine's own root
	// (/run/podman/podman.sock: that socket in every container and on the
	// host). A socket left out is never dialled: not probed, watched or
	// socket-activated. Empty: every engine.
	IncludeEndpoints []string `yaml:"include_endpoints"`
	// ExcludeEndpoints are patterns like IncludeEndpoints' of sockets never
	// watched; they win over IncludeEndpoints.
	ExcludeEndpoints []string `yaml:"exclude_endpoints"`
}

// Engines configures how agentd treats the engines it talks to.
type Engines struct {
	// RequestBudget bounds the requests agentd makes to each engine
	// endpoint, whoever makes them (watcher, discovery and activation
	// probes, stats fallback).
	RequestBudget RequestBudget `yaml:"request_budget"`
}

// RequestBudget is engines.request_budget: a token bucket per engine
// endpoint.
type RequestBudget struct {
	// Rate is the sustained number of requests per second; 0 is unlimited.
	Rate float64 `yaml:"rate"`
	// Burst is how many requests may go at once after a quiet spell (at
	// least 1 when Rate is set).
	Burst int `yaml:"burst"`
}

// MaxRequestRate bounds engines.request_budget.rate and .burst.
const MaxRequestRate = 1_000_000

// Host says where agentd finds the host it watches: its own root unless it
// runs in a container, where the host's /proc and cgroup tree are mounted
// elsewhere (read-only, e.g. under /host).
type Host struct {
	// Proc is the host's procfs; empty means discovery.proc_root (kept for
	// older files), which defaults to /proc.
	Proc string `yaml:"proc"`
	// Cgroup is the root of the host's cgroup tree.
	Cgroup string `yaml:"cgroup"`
	// OpenFiles bounds the containers' cgroup and procfs files agentd keeps
	// open between rounds (0: none, every round opens, reads and closes each
	// file). A kept file is read with one pread a round, half the CPU of an
	// open, read and close, and holds about 4.5 KiB of kernel memory; a
	// container has 7 (cgroup v1) or 9 (cgroup v2). At most half of agentd's
	// limit of open files (LimitNOFILE) is used.
	OpenFiles int `yaml:"open_files"`
}

// DefaultOpenFiles is host.open_files's default: every file of 1,000
// containers on a cgroup v1 host, about 1,100 on a cgroup v2 host.
const DefaultOpenFiles = 10240

// MaxOpenFiles bounds host.open_files.
const MaxOpenFiles = 1 << 20

// HostProc is the procfs agentd reads: host.proc, else discovery.proc_root.
func (c Config) HostProc() string {
	if c.Host.Proc != "" {
		return c.Host.Proc
	}
	return c.Discovery.ProcRoot
}

// Activation configures systemd socket activation of engines.
type Activation struct {
	// Enabled turns D-Bus socket-unit discovery and activation on.
	Enabled bool `yaml:"enabled"`
	// SocketSuffixes are engine sockets beyond the ones agentd knows
	// (docker.sock, podman.sock, crio.sock): socket units listening on a path
	// that ends in Suffix hold an engine of Type.
	SocketSuffixes []SocketSuffix `yaml:"socket_suffixes"`
	// ExcludeUnits are socket units never activated (path.Match patterns).
	ExcludeUnits []string `yaml:"exclude_units"`
}

// SocketSuffix is one entry of activation.socket_suffixes.
type SocketSuffix struct {
	// Suffix is the end of the Listen path, e.g. "custom/engine.sock".
	Suffix string `yaml:"suffix"`
	// Type is the engine type listening there (see engineTypes).
	Type string `yaml:"type"`
}

// Labels configures which container labels are exported.
type Labels struct {
	// Allowlist names the labels exported as container.label.<key>; none by default.
	Allowlist []string `yaml:"allowlist"`
}

// Filters limit which engines and containers are reported.
type Filters struct {
	IncludeEngines []string `yaml:"include_engines"`
	ExcludeEngines []string `yaml:"exclude_engines"`
	// IncludeImages, when not empty, limits reporting to containers whose image
	// name matches one of these glob patterns (path.Match).
	IncludeImages []string `yaml:"include_images"`
	// ExcludeImages are glob patterns (path.Match) on the image name.
	ExcludeImages []string `yaml:"exclude_images"`
}

// Status configures the local status endpoint.
type Status struct {
	// Socket is the unix socket path; a socket passed by systemd wins.
	Socket string `yaml:"socket"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}

// Duration is a time.Duration written as "10s", "1m30s".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. 10s, 1m)", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as a string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Engine types accepted in filters.
var engineTypes = []string{"docker", "containerd", "cri", "cri-o", "podman"}

// Default returns the embedded default configuration.
func Default() Config {
	return Config{
		Export:    Export{Interval: Duration(10 * time.Second), QueueSize: DefaultQueueSize},
		Events:    Events{FlushInterval: Duration(100 * time.Millisecond)},
		Discovery: Discovery{Interval: Duration(5 * time.Second), ProcRoot: "/proc", GracePeriod: Duration(5 * time.Minute)},
		Engines:   Engines{RequestBudget: RequestBudget{Rate: 50, Burst: 100}},
		Host:      Host{Cgroup: "/sys/fs/cgroup", OpenFiles: DefaultOpenFiles},
		Activation: Activation{
			Enabled: true,
		},
		Status: Status{Socket: "/run/agentd/agentd.sock"},
		Log:    Log{Level: "info"},
		Memory: Memory{SoftLimit: DefaultSoftLimit},
	}
}

// ErrInvalid is wrapped by every error about the configuration's content, so
// callers can map it to exit code 2.
var ErrInvalid = errors.New("invalid configuration")

// MaxFileSize bounds the configuration file: a larger file is refused
// before it is read into memory.
const MaxFileSize = 1 << 20

// Load reads path over the defaults. A missing file at the default path is not
// an error (the embedded defaults apply); a missing file named explicitly is.
func Load(path string, explicit bool) (Config, error) {
	cfg := Default()
	data, err := readFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) && !explicit {
			return cfg, nil
		}
		return cfg, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	cfg, err = Parse(path, data)
	return cfg, err
}

// readFile reads path, refusing a file of more than MaxFileSize bytes.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("%s: file larger than %d bytes", path, MaxFileSize)
	}
	return data, nil
}

// Parse decodes data (read from file, used in messages) over the defaults and validates it.
func Parse(file string, data []byte) (Config, error) {
	cfg := Default()
	cfg.file = file
	if len(data) > MaxFileSize {
		return cfg, fmt.Errorf("%w: %s: %d bytes, more than %d", ErrInvalid, file, len(data), MaxFileSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return cfg, fmt.Errorf("%w: %s: %v", ErrInvalid, file, err)
	}
	if len(root.Content) == 0 {
		return cfg, cfg.Validate()
	}
	cfg.lines = map[string]int{}
	collectLines(root.Content[0], "", cfg.lines)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("%w: %s: %v", ErrInvalid, file, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	return cfg, cfg.Validate()
}

func collectLines(n *yaml.Node, prefix string, out map[string]int) {
	if n.Kind != yaml.MappingNode {
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i].Value
		if prefix != "" {
			k = prefix + "." + k
		}
		out[k] = n.Content[i].Line
		collectLines(n.Content[i+1], k, out)
	}
}

// Validate checks every value and names the file, line, key and value of each
// problem; all problems are reported together.
func (c Config) Validate() error {
	var errs []error
	bad := func(key string, value any, why string) {
		loc := c.file
		if loc == "" {
			loc = "configuration"
		}
		if line, ok := c.lines[key]; ok {
			loc = fmt.Sprintf("%s:%d", loc, line)
		}
		errs = append(errs, fmt.Errorf("%s: %s: %v: %s", loc, key, value, why))
	}
	if c.Export.Interval.Std() < time.Second {
		bad("export.interval", c.Export.Interval.Std(), "must be at least 1s")
	}
	if c.Events.FlushInterval.Std() <= 0 || c.Events.FlushInterval.Std() > time.Minute {
		bad("events.flush_interval", c.Events.FlushInterval.Std(), "must be between 1ns and 1m")
	}
	if c.Discovery.Interval.Std() < 100*time.Millisecond {
		bad("discovery.interval", c.Discovery.Interval.Std(), "must be at least 100ms")
	}
	if g := c.Discovery.GracePeriod.Std(); g <= c.Discovery.Interval.Std() || g > 24*time.Hour {
		bad("discovery.grace_period", g, "must be longer than discovery.interval and at most 24h")
	}
	if r := c.Engines.RequestBudget.Rate; !(r >= 0 && r <= MaxRequestRate) {
		bad("engines.request_budget.rate", r, fmt.Sprintf("must be between 0 (unlimited) and %d requests per second", MaxRequestRate))
	}
	if b := c.Engines.RequestBudget.Burst; b < 0 || b > MaxRequestRate || (b < 1 && c.Engines.RequestBudget.Rate > 0) {
		bad("engines.request_budget.burst", b, fmt.Sprintf("must be between 1 and %d requests", MaxRequestRate))
	}
	if c.Discovery.ProcRoot == "" || !filepath.IsAbs(c.Discovery.ProcRoot) {
		bad("discovery.proc_root", c.Discovery.ProcRoot, "must be an absolute path")
	}
	if c.Host.Proc != "" && !filepath.IsAbs(c.Host.Proc) {
		bad("host.proc", c.Host.Proc, "must be an absolute path")
	}
	if c.Host.Cgroup == "" || !filepath.IsAbs(c.Host.Cgroup) {
		bad("host.cgroup", c.Host.Cgroup, "must be an absolute path")
	}
	if n := c.Host.OpenFiles; n < 0 || n > MaxOpenFiles {
		bad("host.open_files", n, fmt.Sprintf("must be between 0 (keep none open) and %d files", MaxOpenFiles))
	}
	if e := c.Export.Endpoint; strings.HasPrefix(e, "unix:") {
		if p := strings.TrimPrefix(e, "unix://"); p == e || !filepath.IsAbs(p) {
			bad("export.endpoint", e, "a unix socket must be written unix:///absolute/path")
		}
	} else if e != "" && strings.Contains(e, "://") && !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
		bad("export.endpoint", e, "must be host:port, an http(s):// URL or unix:///path")
	}
	if l := c.Memory.SoftLimit; l != 0 && l < 8<<20 {
		bad("memory.soft_limit", int64(l), "must be 0 (off) or at least 8MiB")
	}
	if c.Export.QueueSize < 1<<20 {
		bad("export.queue_size", int64(c.Export.QueueSize), "must be at least 1MiB")
	}
	if d := c.Export.QueueDir; d != "" && !filepath.IsAbs(d) {
		bad("export.queue_dir", d, "must be an absolute path")
	}
	switch c.Export.Compression {
	case "", "gzip", "none":
	default:
		bad("export.compression", c.Export.Compression, `must be "gzip" or "none"`)
	}
	switch c.Export.Protocol {
	case "", "grpc", "http/protobuf":
	default:
		bad("export.protocol", c.Export.Protocol, "must be grpc or http/protobuf")
	}
	switch c.Export.Temporality {
	case "", "cumulative", "delta", "lowmemory":
	default:
		bad("export.temporality", c.Export.Temporality, "must be cumulative, delta or lowmemory")
	}
	if c.Export.Timeout.Std() < 0 {
		bad("export.timeout", c.Export.Timeout.Std(), "must not be negative")
	}
	for _, ep := range []struct{ key, val string }{{"export.metrics_endpoint", c.Export.MetricsEndpoint}, {"export.logs_endpoint", c.Export.LogsEndpoint}} {
		if ep.val != "" && strings.Contains(ep.val, "://") && !strings.HasPrefix(ep.val, "http://") && !strings.HasPrefix(ep.val, "https://") && !strings.HasPrefix(ep.val, "unix:///") {
			bad(ep.key, ep.val, "must be host:port, an http(s):// URL or unix:///path")
		}
	}
	for _, f := range []struct{ key, val string }{{"export.tls.ca_file", c.Export.TLS.CAFile}, {"export.tls.cert_file", c.Export.TLS.CertFile}, {"export.tls.key_file", c.Export.TLS.KeyFile}} {
		if f.val != "" && !filepath.IsAbs(f.val) {
			bad(f.key, f.val, "must be an absolute path")
		}
	}
	if (c.Export.TLS.CertFile == "") != (c.Export.TLS.KeyFile == "") {
		if c.Export.TLS.CertFile == "" {
			bad("export.tls.key_file", c.Export.TLS.KeyFile, "needs export.tls.cert_file")
		} else {
			bad("export.tls.cert_file", c.Export.TLS.CertFile, "needs export.tls.key_file")
		}
	}
	for i, s := range c.Activation.SocketSuffixes {
		if strings.Trim(s.Suffix, "/") == "" {
			bad(fmt.Sprintf("activation.socket_suffixes[%d].suffix", i), fmt.Sprintf("%q", s.Suffix), "must name the end of a socket path")
		}
		if !slices.Contains(engineTypes, s.Type) {
			bad(fmt.Sprintf("activation.socket_suffixes[%d].type", i), fmt.Sprintf("%q", s.Type), "unknown engine type (want one of "+strings.Join(engineTypes, ", ")+")")
		}
	}
	for i, p := range c.Activation.ExcludeUnits {
		if _, err := path.Match(p, ""); err != nil {
			bad(fmt.Sprintf("activation.exclude_units[%d]", i), p, "bad glob pattern")
		}
	}
	for _, list := range []struct {
		key  string
		vals []string
	}{{"filters.include_engines", c.Filters.IncludeEngines}, {"filters.exclude_engines", c.Filters.ExcludeEngines}} {
		for _, v := range list.vals {
			if !slices.Contains(engineTypes, v) {
				bad(list.key, v, "unknown engine type (want one of "+strings.Join(engineTypes, ", ")+")")
			}
		}
	}
	for _, list := range []struct {
		key  string
		pats []string
	}{{"discovery.include_endpoints", c.Discovery.IncludeEndpoints}, {"discovery.exclude_endpoints", c.Discovery.ExcludeEndpoints}} {
		for i, p := range list.pats {
			if _, err := path.Match(p, ""); err != nil || !strings.HasPrefix(p, "/") {
				bad(list.key, fmt.Sprintf("item %d, %q", i+1, p), "bad glob pattern (want an absolute path pattern, e.g. /run/docker.sock or /var/tmp/engines-*/*.sock)")
			}
		}
	}
	for _, list := range []struct {
		key  string
		pats []string
	}{{"filters.include_images", c.Filters.IncludeImages}, {"filters.exclude_images", c.Filters.ExcludeImages}, {"labels.allowlist", c.Labels.Allowlist}} {
		for _, p := range list.pats {
			if _, err := path.Match(p, ""); err != nil || p == "" {
				bad(list.key, strconv.Quote(p), "bad glob pattern")
			}
		}
	}
	for k := range c.Export.Headers {
		if k == "" || strings.ContainsAny(k, " \t\r\n:") {
			bad("export.headers", strconv.Quote(k), "not a valid header name")
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", c.Log.Level, "must be debug, info, warn or error")
	}
	if c.Status.Socket != "" && !filepath.IsAbs(c.Status.Socket) {
		bad("status.socket", c.Status.Socket, "must be an absolute path")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// IsSet reports whether the file set the dotted key ("export.insecure"),
// which tells a false written in the file from one left out.
func (c Config) IsSet(key string) bool {
	_, ok := c.lines[key]
	return ok
}

// File is the path the configuration was read from, "" for the embedded defaults.
func (c Config) File() string { return c.file }
