package telemetry

import (
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) Getenv { return func(k string) string { return m[k] } }

func boolp(b bool) *bool { return &b }

// TestResolveOTLPPrecedence proves the one precedence, key by key: command
// line > file > OTEL_EXPORTER_OTLP_METRICS_* > OTEL_EXPORTER_OTLP_* >
// default. For each key the four levels hold different values; level n
// removes the levels above it, and the value of the highest one left must
// win.
func TestResolveOTLPPrecedence(t *testing.T) {
	type key struct {
		name string
		// set puts v into a layer.
		set func(l *OTLPSettings, v string)
		// sigEnv and env are the per-signal and general variables ("" when
		// the specification has none).
		sigEnv, env string
		// vals are the values of the command line, file, per-signal
		// variable and general variable.
		vals [4]string
		// base is environment every case has (what the key needs to be
		// meaningful).
		base map[string]string
		got  func(r OTLPResolved) string
		// want is the result when the highest level set is the command
		// line, the file, the per-signal variable, the general variable,
		// none ("error": ResolveOTLP must refuse the combination).
		want [5]string
	}
	dur := func(v string) time.Duration { d, _ := time.ParseDuration(v); return d }
	keys := []key{
		{name: "protocol", set: func(l *OTLPSettings, v string) { l.Protocol = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", env: "OTEL_EXPORTER_OTLP_PROTOCOL",
			vals: [4]string{"grpc", "http/protobuf", "grpc", "http/protobuf"},
			got:  func(r OTLPResolved) string { return r.Metrics.Protocol },
			want: [5]string{"grpc", "http/protobuf", "grpc", "http/protobuf", "grpc"}},
		{name: "endpoint", set: func(l *OTLPSettings, v string) { l.Endpoint = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", env: "OTEL_EXPORTER_OTLP_ENDPOINT",
			vals: [4]string{"cli:1", "file:2", "sig:3", "gen:4"},
			got:  func(r OTLPResolved) string { return r.Metrics.Endpoint },
			want: [5]string{"cli:1", "file:2", "sig:3", "gen:4", "localhost:4317"}},
		{name: "metrics endpoint", set: func(l *OTLPSettings, v string) { l.MetricsEndpoint = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", env: "OTEL_EXPORTER_OTLP_ENDPOINT",
			vals: [4]string{"cli:1", "file:2", "sig:3", "gen:4"},
			got:  func(r OTLPResolved) string { return r.Metrics.Endpoint },
			want: [5]string{"cli:1", "file:2", "sig:3", "gen:4", "localhost:4317"}},
		{name: "logs endpoint", set: func(l *OTLPSettings, v string) { l.LogsEndpoint = v },
			sigEnv: "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", env: "OTEL_EXPORTER_OTLP_ENDPOINT",
			vals: [4]string{"cli:1", "file:2", "sig:3", "gen:4"},
			got:  func(r OTLPResolved) string { return r.Logs.Endpoint },
			want: [5]string{"cli:1", "file:2", "sig:3", "gen:4", "localhost:4317"}},
		{name: "insecure", set: func(l *OTLPSettings, v string) { l.Insecure = boolp(v == "true") },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_INSECURE", env: "OTEL_EXPORTER_OTLP_INSECURE",
			vals: [4]string{"false", "true", "false", "true"},
			base: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "collector:4317"},
			got:  func(r OTLPResolved) string { return map[bool]string{true: "true", false: "false"}[r.Metrics.Insecure] },
			want: [5]string{"false", "true", "false", "true", "false"}},
		{name: "timeout", set: func(l *OTLPSettings, v string) { l.Timeout = dur(v) },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", env: "OTEL_EXPORTER_OTLP_TIMEOUT",
			vals: [4]string{"1s", "2s", "3000", "4000"},
			got:  func(r OTLPResolved) string { return r.Metrics.Timeout.String() },
			want: [5]string{"1s", "2s", "3s", "4s", "10s"}},
		{name: "headers", set: func(l *OTLPSettings, v string) { l.Headers = map[string]string{"X-Tenant": v} },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_HEADERS", env: "OTEL_EXPORTER_OTLP_HEADERS",
			vals: [4]string{"cli", "file", "x-tenant=sig", "x-tenant=gen%20eral"},
			got:  func(r OTLPResolved) string { return r.Metrics.Headers["x-tenant"] },
			want: [5]string{"cli", "file", "sig", "gen eral", ""}},
		{name: "compression none in the file over gzip in the environment", set: func(l *OTLPSettings, v string) { l.Compression = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", env: "OTEL_EXPORTER_OTLP_COMPRESSION",
			vals: [4]string{"gzip", "none", "gzip", "gzip"},
			got:  func(r OTLPResolved) string { return map[bool]string{true: "gzip", false: "none"}[r.Metrics.Gzip] },
			want: [5]string{"gzip", "none", "gzip", "gzip", "none"}},
		{name: "compression per signal over general", set: func(l *OTLPSettings, v string) { l.Compression = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", env: "OTEL_EXPORTER_OTLP_COMPRESSION",
			vals: [4]string{"none", "gzip", "none", "gzip"},
			got:  func(r OTLPResolved) string { return map[bool]string{true: "gzip", false: "none"}[r.Metrics.Gzip] },
			want: [5]string{"none", "gzip", "none", "gzip", "none"}},
		{name: "CA file", set: func(l *OTLPSettings, v string) { l.CAFile = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", env: "OTEL_EXPORTER_OTLP_CERTIFICATE",
			vals: [4]string{"/cli.pem", "/file.pem", "/sig.pem", "/gen.pem"},
			got:  func(r OTLPResolved) string { return r.Metrics.CAFile },
			want: [5]string{"/cli.pem", "/file.pem", "/sig.pem", "/gen.pem", ""}},
		{name: "client certificate", set: func(l *OTLPSettings, v string) { l.CertFile = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", env: "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
			vals: [4]string{"/cli.pem", "/file.pem", "/sig.pem", "/gen.pem"},
			base: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/key.pem"},
			got:  func(r OTLPResolved) string { return r.Metrics.CertFile },
			// With no certificate at all, the key alone is refused.
			want: [5]string{"/cli.pem", "/file.pem", "/sig.pem", "/gen.pem", "error"}},
		{name: "client key", set: func(l *OTLPSettings, v string) { l.KeyFile = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", env: "OTEL_EXPORTER_OTLP_CLIENT_KEY",
			vals: [4]string{"/cli.key", "/file.key", "/sig.key", "/gen.key"},
			base: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE": "/cert.pem"},
			got:  func(r OTLPResolved) string { return r.Metrics.KeyFile },
			want: [5]string{"/cli.key", "/file.key", "/sig.key", "/gen.key", "error"}},
		{name: "temporality", set: func(l *OTLPSettings, v string) { l.Temporality = v },
			sigEnv: "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", env: "",
			vals: [4]string{"delta", "lowmemory", "delta", ""},
			got:  func(r OTLPResolved) string { return r.Temporality },
			want: [5]string{"delta", "lowmemory", "delta", "cumulative", "cumulative"}},
	}
	levels := []string{"the command line", "the file", "the per-signal variable", "the general variable", "nothing"}
	for _, k := range keys {
		for level := range levels {
			t.Run(k.name+" comes from "+levels[level]+" when it is the highest set", func(t *testing.T) {
				cli, file := OTLPSettings{Source: "--otlp"}, OTLPSettings{Source: "export"}
				env := map[string]string{}
				for n, v := range k.base {
					env[n] = v
				}
				if level <= 0 {
					k.set(&cli, k.vals[0])
				}
				if level <= 1 {
					k.set(&file, k.vals[1])
				}
				if level <= 2 && k.sigEnv != "" {
					env[k.sigEnv] = k.vals[2]
				}
				if level <= 3 && k.env != "" {
					env[k.env] = k.vals[3]
				}
				r, err := ResolveOTLP(envOf(env), cli, file)
				if k.want[level] == "error" {
					if err == nil {
						t.Fatalf("no error; want one (environment %v)", env)
					}
					return
				}
				if err != nil {
					t.Fatalf("ResolveOTLP: %v", err)
				}
				if got := k.got(r); got != k.want[level] {
					t.Errorf("%s = %q, want %q (command line %+v, file %+v, environment %v)", k.name, got, k.want[level], cli, file, env)
				}
			})
		}
	}
}

// TestResolveOTLPEndpoints covers how an endpoint becomes a gRPC target or
// an HTTP URL, and whether the connection is plaintext.
func TestResolveOTLPEndpoints(t *testing.T) {
	cases := []struct {
		name            string
		file            OTLPSettings
		env             map[string]string
		metrics, logs   string
		metricsInsecure bool
		logsInsecureToo bool
	}{
		{name: "a gRPC host:port is TLS unless insecure", file: OTLPSettings{Endpoint: "c:4317"},
			metrics: "c:4317", logs: "c:4317"},
		{name: "a gRPC http URL is plaintext", file: OTLPSettings{Endpoint: "http://c:4317"},
			metrics: "c:4317", logs: "c:4317", metricsInsecure: true, logsInsecureToo: true},
		{name: "a gRPC https URL is TLS even with insecure set", file: OTLPSettings{Endpoint: "https://c", Insecure: boolp(true)},
			metrics: "c:4317", logs: "c:4317"},
		{name: "a gRPC unix socket is plaintext", file: OTLPSettings{Endpoint: "unix:///run/otel.sock"},
			metrics: "unix:///run/otel.sock", logs: "unix:///run/otel.sock", metricsInsecure: true, logsInsecureToo: true},
		{name: "a general HTTP endpoint gets the signal's path", file: OTLPSettings{Protocol: "http/protobuf", Endpoint: "https://c:4318/otlp/"},
			metrics: "https://c:4318/otlp/v1/metrics", logs: "https://c:4318/otlp/v1/logs"},
		{name: "a per-signal HTTP endpoint is used as written", file: OTLPSettings{Protocol: "http/protobuf"},
			env:     map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:9/custom"},
			metrics: "http://m:9/custom", logs: "http://c:4318/v1/logs", metricsInsecure: true, logsInsecureToo: true},
		{name: "an HTTP host:port is https unless insecure", file: OTLPSettings{Protocol: "http/protobuf", Endpoint: "c:4318"},
			metrics: "https://c:4318/v1/metrics", logs: "https://c:4318/v1/logs"},
		{name: "an insecure HTTP host:port is http", file: OTLPSettings{Protocol: "http/protobuf", Endpoint: "c:4318", Insecure: boolp(true)},
			metrics: "http://c:4318/v1/metrics", logs: "http://c:4318/v1/logs", metricsInsecure: true, logsInsecureToo: true},
		{name: "the HTTP default is the specification's", file: OTLPSettings{Protocol: "http/protobuf"},
			metrics: "http://localhost:4318/v1/metrics", logs: "http://localhost:4318/v1/logs", metricsInsecure: true, logsInsecureToo: true},
		{name: "a per-signal protocol applies to its signal only", env: map[string]string{"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"},
			metrics: "c:4317", logs: "http://c:4317/v1/logs", metricsInsecure: true, logsInsecureToo: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := ResolveOTLP(envOf(c.env), c.file)
			if err != nil {
				t.Fatal(err)
			}
			if r.Metrics.Endpoint != c.metrics || r.Logs.Endpoint != c.logs {
				t.Errorf("endpoints = %q, %q, want %q, %q", r.Metrics.Endpoint, r.Logs.Endpoint, c.metrics, c.logs)
			}
			if r.Metrics.Insecure != c.metricsInsecure || r.Logs.Insecure != c.logsInsecureToo {
				t.Errorf("insecure = %t, %t, want %t, %t", r.Metrics.Insecure, r.Logs.Insecure, c.metricsInsecure, c.logsInsecureToo)
			}
		})
	}
}

// TestResolveOTLPHeadersMerge: headers merge by name; the higher level
// wins a name, names of lower levels stay.
func TestResolveOTLPHeadersMerge(t *testing.T) {
	env := map[string]string{
		"OTEL_EXPORTER_OTLP_HEADERS":         "a=gen,b=gen,c=gen",
		"OTEL_EXPORTER_OTLP_METRICS_HEADERS": "b=sig,c=sig",
	}
	r, err := ResolveOTLP(envOf(env), OTLPSettings{Headers: map[string]string{"C": "file"}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"a": "gen", "b": "sig", "c": "file"}
	for k, v := range want {
		if r.Metrics.Headers[k] != v {
			t.Errorf("metrics header %s = %q, want %q (all: %v)", k, r.Metrics.Headers[k], v, r.Metrics.Headers)
		}
	}
	if r.Logs.Headers["b"] != "gen" || r.Logs.Headers["c"] != "file" {
		t.Errorf("logs headers = %v, want b=gen (no logs variable) and c=file", r.Logs.Headers)
	}
}

// TestResolveOTLPBadValues: every bad value is an error naming the key (or
// variable) it came from and the value.
func TestResolveOTLPBadValues(t *testing.T) {
	cases := []struct {
		name     string
		cli      OTLPSettings
		file     OTLPSettings
		env      map[string]string
		key, val string
	}{
		{name: "a protocol in the environment", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, key: "OTEL_EXPORTER_OTLP_PROTOCOL", val: "http/json"},
		{name: "a per-signal protocol", env: map[string]string{"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "thrift"}, key: "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", val: "thrift"},
		{name: "a protocol in the file", file: OTLPSettings{Protocol: "udp"}, key: "export.protocol", val: "udp"},
		{name: "a protocol on the command line", cli: OTLPSettings{Protocol: "udp"}, key: "--otlp-protocol", val: "udp"},
		{name: "an endpoint with another scheme", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "ftp://c:21"}, key: "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", val: "ftp://c:21"},
		{name: "a gRPC endpoint without a port", file: OTLPSettings{Endpoint: "collector"}, key: "export.endpoint", val: "collector"},
		{name: "a relative unix socket", file: OTLPSettings{LogsEndpoint: "unix://run/x.sock"}, key: "export.logs_endpoint", val: "unix://run/x.sock"},
		{name: "an insecure that is no boolean", env: map[string]string{"OTEL_EXPORTER_OTLP_INSECURE": "maybe"}, key: "OTEL_EXPORTER_OTLP_INSECURE", val: "maybe"},
		{name: "a timeout that is no number", env: map[string]string{"OTEL_EXPORTER_OTLP_TIMEOUT": "10s"}, key: "OTEL_EXPORTER_OTLP_TIMEOUT", val: "10s"},
		{name: "a negative timeout", file: OTLPSettings{Timeout: -time.Second}, key: "export.timeout", val: "-1s"},
		{name: "a header without a value", env: map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "a=1,broken"}, key: "OTEL_EXPORTER_OTLP_HEADERS", val: "a=1,broken"},
		{name: "a header with bad percent-encoding", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_HEADERS": "a=%zz"}, key: "OTEL_EXPORTER_OTLP_METRICS_HEADERS", val: "a=%zz"},
		{name: "a header name in the file", file: OTLPSettings{Headers: map[string]string{"bad name": "x"}}, key: "export.headers", val: "bad name"},
		{name: "a compression", env: map[string]string{"OTEL_EXPORTER_OTLP_COMPRESSION": "zstd"}, key: "OTEL_EXPORTER_OTLP_COMPRESSION", val: "zstd"},
		{name: "a client certificate without key", file: OTLPSettings{CertFile: "/c.pem"}, key: "export.tls.cert_file", val: "/c.pem"},
		{name: "a client key without certificate", env: map[string]string{"OTEL_EXPORTER_OTLP_CLIENT_KEY": "/k.pem"}, key: "OTEL_EXPORTER_OTLP_CLIENT_KEY", val: "/k.pem"},
		{name: "a temporality", env: map[string]string{"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "sometimes"}, key: "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", val: "sometimes"},
	}
	for _, c := range cases {
		t.Run(c.name+" is refused with its key and value", func(t *testing.T) {
			if c.cli.Source == "" {
				c.cli.Source = "--otlp"
			}
			_, err := ResolveOTLP(envOf(c.env), c.cli, c.file)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), c.key+": ") || !strings.Contains(err.Error(), `"`+c.val+`"`) {
				t.Errorf("error %q does not name %s and %q", err, c.key, c.val)
			}
		})
	}
}

func TestOTLPSignalTLSConfigNamesTheBadFile(t *testing.T) {
	dir := t.TempDir()
	s := OTLPSignal{CAFile: dir + "/missing.pem"}
	if _, err := s.TLSConfig(); err == nil || !strings.Contains(err.Error(), "missing.pem") {
		t.Errorf("missing CA file: error %v, want one naming the file", err)
	}
	s = OTLPSignal{CertFile: dir + "/c.pem", KeyFile: dir + "/k.pem"}
	if _, err := s.TLSConfig(); err == nil || !strings.Contains(err.Error(), "c.pem") {
		t.Errorf("missing client certificate: error %v, want one naming the file", err)
	}
}
