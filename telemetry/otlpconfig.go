package telemetry

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// OTLP protocols (OTEL_EXPORTER_OTLP_PROTOCOL).
const (
	ProtocolGRPC         = "grpc"
	ProtocolHTTPProtobuf = "http/protobuf"
)

// Metrics temporality preferences
// (OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE).
const (
	TemporalityCumulative = "cumulative"
	TemporalityDelta      = "delta"
	TemporalityLowMemory  = "lowmemory"
)

// Defaults of the OTLP settings nothing sets. agentd keeps OTLP/gRPC as its
// default protocol (the specification recommends http/protobuf for new
// SDKs; agentd spoke only gRPC before, and an upgrade must not move its
// traffic to another port).
const (
	DefaultProtocol    = ProtocolGRPC
	DefaultOTLPTimeout = 10 * time.Second
	defaultGRPCTarget  = "localhost:4317"
	defaultHTTPBase    = "http://localhost:4318"
)

// OTLPSettings is one layer of OTLP exporter settings: the command line, or
// the configuration file. A zero field is not set and leaves the setting to
// the layers below it. Layers are resolved by ResolveOTLP.
type OTLPSettings struct {
	// Source names the layer in errors: "export" makes keys read
	// "export.protocol", "--otlp" makes them "--otlp-protocol".
	Source string
	// Protocol is "grpc" or "http/protobuf".
	Protocol string
	// Endpoint is the endpoint of both signals: for gRPC host:port, an
	// http(s):// URL or unix:///path; for http/protobuf a base URL to which
	// /v1/metrics and /v1/logs are appended.
	Endpoint string
	// MetricsEndpoint and LogsEndpoint are one signal's endpoint, used as
	// they are (no path appended).
	MetricsEndpoint, LogsEndpoint string
	// Insecure, when not nil, says whether an endpoint written without a
	// scheme is reached without TLS.
	Insecure *bool
	// Timeout bounds one export request.
	Timeout time.Duration
	// Headers are added to every request; a layer's header wins over the
	// same header of a lower layer.
	Headers map[string]string
	// Compression is "gzip" or "none".
	Compression string
	// CAFile is a PEM file of the certificates that verify the collector
	// (instead of the system's roots).
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key (mTLS).
	CertFile, KeyFile string
	// Temporality is "cumulative", "delta" or "lowmemory".
	Temporality string
}

// key is the name of a setting in this layer, for errors.
func (s *OTLPSettings) key(name string) string {
	src := s.Source
	if src == "" {
		src = "export"
	}
	if strings.HasPrefix(src, "-") {
		return src + "-" + strings.NewReplacer("_", "-", ".", "-").Replace(name)
	}
	return src + "." + name
}

// OTLPSignal is one signal's resolved exporter settings: every field is set,
// so the exporters get each as an explicit option and the SDK's own reading
// of OTEL_EXPORTER_OTLP_* cannot override it.
type OTLPSignal struct {
	// Protocol is ProtocolGRPC or ProtocolHTTPProtobuf.
	Protocol string
	// Endpoint is, for gRPC, host:port or unix:///path; for http/protobuf
	// the whole URL the requests are POSTed to.
	Endpoint string
	// Insecure is true when the connection has no TLS.
	Insecure bool
	// Timeout bounds one export request.
	Timeout time.Duration
	// Headers are sent with every request (never nil).
	Headers map[string]string
	// Gzip compresses the requests.
	Gzip bool
	// CAFile, CertFile and KeyFile are the TLS files ("" when not set).
	CAFile, CertFile, KeyFile string
}

// OTLPResolved is the outcome of ResolveOTLP.
type OTLPResolved struct {
	Metrics, Logs OTLPSignal
	// Temporality is the metrics temporality preference.
	Temporality string
}

// Getenv looks up an environment variable; os.Getenv in agentd, a map in tests.
type Getenv func(string) string

// ResolveOTLP resolves every OTLP setting of both signals from layers (in
// decreasing precedence: the command line, then the configuration file) and
// the environment, with one precedence for every key:
//
//	command line > file > OTEL_EXPORTER_OTLP_{METRICS,LOGS}_* > OTEL_EXPORTER_OTLP_* > default
//
// An environment variable set to "" counts as not set (as the specification
// says). Headers merge by name across the levels, the higher level winning
// a name. A general endpoint (file export.endpoint, the command line,
// OTEL_EXPORTER_OTLP_ENDPOINT) is a base URL for http/protobuf, to which
// /v1/metrics or /v1/logs is appended; a per-signal one is used as it is.
// A bad value is an error naming its key (or variable) and value; all of
// them are reported together.
func ResolveOTLP(getenv Getenv, layers ...OTLPSettings) (OTLPResolved, error) {
	r := resolver{getenv: getenv, layers: layers}
	var out OTLPResolved
	out.Metrics = r.signal("METRICS", "metrics")
	out.Logs = r.signal("LOGS", "logs")
	out.Temporality = r.temporality()
	return out, errors.Join(r.errs...)
}

type resolver struct {
	getenv Getenv
	layers []OTLPSettings
	errs   []error
}

func (r *resolver) bad(key, value, why string) {
	r.errs = append(r.errs, fmt.Errorf("%s: %q: %s", key, value, why))
}

// env returns the per-signal variable's value, else the general one's, and
// the name of the one that was set.
func (r *resolver) env(sig, name string) (val, key string) {
	if sig != "" {
		k := "OTEL_EXPORTER_OTLP_" + sig + "_" + name
		if v := r.getenv(k); v != "" {
			return v, k
		}
	}
	k := "OTEL_EXPORTER_OTLP_" + name
	return r.getenv(k), k
}

// str resolves a string setting: the first layer that sets it (field
// returns ""), else the environment.
func (r *resolver) str(sig, envName, keyName string, field func(*OTLPSettings) string) (val, key string) {
	for i := range r.layers {
		if v := field(&r.layers[i]); v != "" {
			return v, r.layers[i].key(keyName)
		}
	}
	return r.env(sig, envName)
}

func (r *resolver) signal(sig, lower string) OTLPSignal {
	s := OTLPSignal{Headers: map[string]string{}}

	proto, key := r.str(sig, "PROTOCOL", "protocol", func(l *OTLPSettings) string { return l.Protocol })
	switch proto {
	case "":
		s.Protocol = DefaultProtocol
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		s.Protocol = proto
	default:
		r.bad(key, proto, "must be grpc or http/protobuf (http/json is not supported)")
		s.Protocol = DefaultProtocol
	}

	// Insecure: the first layer that sets it, else the environment.
	insecure, insecureSet := false, false
	for i := range r.layers {
		if p := r.layers[i].Insecure; p != nil {
			insecure, insecureSet = *p, true
			break
		}
	}
	if !insecureSet {
		if v, k := r.env(sig, "INSECURE"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				r.bad(k, v, "must be true or false")
			}
			insecure = b
		}
	}

	// Endpoint: a layer's per-signal endpoint, then its general one, then the
	// environment in the same order.
	endpoint, key, perSignal := "", "", false
	for i := range r.layers {
		l := &r.layers[i]
		sigEP := l.MetricsEndpoint
		if sig == "LOGS" {
			sigEP = l.LogsEndpoint
		}
		if sigEP != "" {
			endpoint, key, perSignal = sigEP, l.key(lower+"_endpoint"), true
			break
		}
		if l.Endpoint != "" {
			endpoint, key = l.Endpoint, l.key("endpoint")
			break
		}
	}
	if endpoint == "" {
		k := "OTEL_EXPORTER_OTLP_" + sig + "_ENDPOINT"
		if v := r.getenv(k); v != "" {
			endpoint, key, perSignal = v, k, true
		} else {
			endpoint, key = r.getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "OTEL_EXPORTER_OTLP_ENDPOINT"
		}
	}
	if s.Protocol == ProtocolGRPC {
		s.Endpoint, s.Insecure = r.grpcEndpoint(key, endpoint, insecure)
	} else {
		s.Endpoint, s.Insecure = r.httpEndpoint(key, endpoint, insecure, perSignal, lower)
	}

	// Timeout.
	s.Timeout = DefaultOTLPTimeout
	timeoutSet := false
	for i := range r.layers {
		if d := r.layers[i].Timeout; d != 0 {
			if d < 0 {
				r.bad(r.layers[i].key("timeout"), d.String(), "must be positive")
			} else {
				s.Timeout = d
			}
			timeoutSet = true
			break
		}
	}
	if !timeoutSet {
		if v, k := r.env(sig, "TIMEOUT"); v != "" {
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil || ms <= 0 {
				r.bad(k, v, "must be a positive number of milliseconds")
			} else {
				s.Timeout = time.Duration(ms) * time.Millisecond
			}
		}
	}

	// Headers: general environment, then per-signal, then the layers from
	// the lowest up, each overriding the names it sets.
	for _, k := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_" + sig + "_HEADERS"} {
		if v := r.getenv(k); v != "" {
			if err := parseHeaders(v, s.Headers); err != nil {
				r.bad(k, v, err.Error())
			}
		}
	}
	for i := len(r.layers) - 1; i >= 0; i-- {
		for name, v := range r.layers[i].Headers {
			if !validHeaderName(name) {
				r.bad(r.layers[i].key("headers"), name, "not a valid header name")
				continue
			}
			s.Headers[strings.ToLower(name)] = v
		}
	}

	// Compression.
	comp, key := r.str(sig, "COMPRESSION", "compression", func(l *OTLPSettings) string { return l.Compression })
	switch comp {
	case "", "none":
	case "gzip":
		s.Gzip = true
	default:
		r.bad(key, comp, `must be "gzip" or "none"`)
	}

	// TLS files.
	var certKey, keyKey string
	s.CAFile, _ = r.str(sig, "CERTIFICATE", "tls.ca_file", func(l *OTLPSettings) string { return l.CAFile })
	s.CertFile, certKey = r.str(sig, "CLIENT_CERTIFICATE", "tls.cert_file", func(l *OTLPSettings) string { return l.CertFile })
	s.KeyFile, keyKey = r.str(sig, "CLIENT_KEY", "tls.key_file", func(l *OTLPSettings) string { return l.KeyFile })
	switch {
	case s.CertFile != "" && s.KeyFile == "":
		r.bad(certKey, s.CertFile, "a client certificate needs its key (tls.key_file, OTEL_EXPORTER_OTLP_CLIENT_KEY)")
	case s.KeyFile != "" && s.CertFile == "":
		r.bad(keyKey, s.KeyFile, "a client key needs its certificate (tls.cert_file, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE)")
	}
	return s
}

// grpcEndpoint turns an endpoint into a gRPC target (host:port or
// unix:///path) and whether it is plaintext: an http:// URL is, an https://
// URL is not, a bare host:port is when insecure is.
func (r *resolver) grpcEndpoint(key, ep string, insecure bool) (string, bool) {
	switch {
	case ep == "":
		// The specification's default, http://localhost:4317, is plaintext.
		return defaultGRPCTarget, true
	case strings.HasPrefix(ep, "unix:"):
		p := strings.TrimPrefix(ep, "unix://")
		if p == ep || !strings.HasPrefix(p, "/") {
			r.bad(key, ep, "a unix socket must be written unix:///absolute/path")
		}
		return ep, true
	case strings.Contains(ep, "://"):
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			r.bad(key, ep, "must be host:port, an http(s):// URL or unix:///path")
			return defaultGRPCTarget, insecure
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "4317")
		}
		return host, u.Scheme == "http"
	default:
		if _, _, err := net.SplitHostPort(ep); err != nil {
			r.bad(key, ep, "must be host:port, an http(s):// URL or unix:///path")
		}
		return ep, insecure
	}
}

// httpEndpoint turns an endpoint into the URL of one signal's requests and
// whether it is plaintext. A bare host:port gets http:// when insecure,
// https:// otherwise; a general endpoint gets /v1/<signal> appended.
func (r *resolver) httpEndpoint(key, ep string, insecure, perSignal bool, signal string) (string, bool) {
	if ep == "" {
		return defaultHTTPBase + "/v1/" + signal, true
	}
	raw := ep
	if !strings.Contains(ep, "://") {
		scheme := "https://"
		if insecure {
			scheme = "http://"
		}
		raw = scheme + ep
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.bad(key, ep, "must be an http(s):// URL or host:port for http/protobuf")
		return defaultHTTPBase + "/v1/" + signal, true
	}
	if !perSignal {
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/" + signal
	} else if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), u.Scheme == "http"
}

func (r *resolver) temporality() string {
	for i := range r.layers {
		if v := r.layers[i].Temporality; v != "" {
			return r.checkTemporality(r.layers[i].key("temporality"), v)
		}
	}
	k := "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"
	if v := r.getenv(k); v != "" {
		return r.checkTemporality(k, v)
	}
	return TemporalityCumulative
}

func (r *resolver) checkTemporality(key, v string) string {
	switch t := strings.ToLower(v); t {
	case TemporalityCumulative, TemporalityDelta, TemporalityLowMemory:
		return t
	}
	r.bad(key, v, "must be cumulative, delta or lowmemory")
	return TemporalityCumulative
}

// parseHeaders adds the headers of an OTEL_EXPORTER_OTLP_*HEADERS value
// (k1=v1,k2=v2, values percent-encoded) to into.
func parseHeaders(v string, into map[string]string) error {
	for _, pair := range strings.Split(v, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, val, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		if !ok || !validHeaderName(k) {
			return fmt.Errorf("header %q is not name=value", strings.TrimSpace(pair))
		}
		dec, err := url.PathUnescape(strings.TrimSpace(val))
		if err != nil {
			return fmt.Errorf("header %s: bad percent-encoding: %v", k, err)
		}
		into[strings.ToLower(k)] = dec
	}
	return nil
}

// validHeaderName reports whether name is an HTTP token (RFC 9110).
func validHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		if c > 0x7e || c <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, c) {
			return false
		}
	}
	return true
}

// TLSConfig returns the signal's client TLS configuration (nil when the
// connection is plaintext): the CA file's certificates instead of the
// system's roots when one is set, the client certificate when one is set.
// A file that cannot be read or parsed is an error naming it.
func (s *OTLPSignal) TLSConfig() (*tls.Config, error) {
	if s.Insecure {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TLS CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s: no PEM certificate in it", s.CAFile)
		}
		cfg.RootCAs = pool
	}
	if s.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("TLS client certificate %s and key %s: %w", s.CertFile, s.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}
