package telemetry

import (
	"fmt"
	"log/slog"
	"path"
	"strings"
	"time"

	"github.com/distribution/reference"

	"github.com/agentd-dev/agentd/model"
)

// Config configures the telemetry pipeline. The zero value is not valid; start
// from DefaultConfig. It is no file schema (config.Config is): the agent
// fills it from the configuration, and Validate's errors name the
// configuration file's keys for the settings the file has, the field for the
// others.
type Config struct {
	// ExportInterval is how often container stats are sampled and exported.
	ExportInterval time.Duration
	// EventFlushInterval bounds how long an event waits before it is sent.
	EventFlushInterval time.Duration
	// ShutdownTimeout bounds the final flush when Run's context ends.
	ShutdownTimeout time.Duration
	// Endpoint is the OTLP/gRPC endpoint (host:port or URL). Empty means the
	// exporters' own defaults apply, which honour OTEL_EXPORTER_OTLP_ENDPOINT,
	// OTEL_EXPORTER_OTLP_{METRICS,LOGS}_ENDPOINT and the other standard variables.
	Endpoint string
	// Insecure disables TLS when set (nil: OTEL_EXPORTER_OTLP_INSECURE or the URL scheme decide).
	Insecure *bool
	// Headers are sent with every export, added to OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string
	// Compression is "gzip" or "none"; "" leaves OTEL_EXPORTER_OTLP_COMPRESSION in charge.
	Compression string
	// OTLP holds every OTLP setting of the configuration (the command line
	// applied over the file); the fields Endpoint, Insecure, Headers and
	// Compression above fill what it leaves unset. NewOTLP resolves it over
	// the environment with ResolveOTLP.
	OTLP OTLPSettings
	// Getenv reads the environment for ResolveOTLP (nil: os.Getenv).
	Getenv Getenv
	// LabelAllowlist names the container labels exported as container.label.<key>.
	// Entries may be path.Match patterns ("com.example.*").
	LabelAllowlist []string
	// IncludeEngines, when not empty, limits export to containers of these engine types.
	IncludeEngines []model.EngineType
	// ExcludeEngines drops containers of these engine types.
	ExcludeEngines []model.EngineType
	// IncludeImages, when not empty, limits export to containers whose image name
	// matches one of these path.Match patterns ("docker.io/library/*").
	IncludeImages []string
	// ExcludeImages drops containers whose image name matches one of these patterns.
	ExcludeImages []string
	// StatsWorkers bounds how many containers are read at once.
	StatsWorkers int
	// ResourcesPerRequest is how many resources one OTLP metrics request
	// carries (0: DefaultResourcesPerRequest).
	ResourcesPerRequest int
	// QueueSize bounds the export queue in bytes (0: DefaultQueueSize).
	QueueSize int64
	// QueueDir, when set, keeps the export queue in files there too, so
	// what was not delivered is sent after a restart.
	QueueDir string
	// Log is where the export queue logs (nil discards).
	Log *slog.Logger
}

// DefaultConfig returns the defaults: export every 10 s, events within 1 s,
// 5 s to flush at shutdown, endpoint from the environment.
func DefaultConfig() Config {
	return Config{
		ExportInterval:     10 * time.Second,
		EventFlushInterval: time.Second,
		ShutdownTimeout:    3 * time.Second,
		StatsWorkers:       4,
	}
}

// Validate reports the first setting the pipeline cannot work with. The
// values from the configuration file were validated by config.Config, with
// file, line and key; this catches a Config built in code.
func (c *Config) Validate() error {
	switch {
	case c.ExportInterval <= 0:
		return fmt.Errorf("telemetry: ExportInterval %v must be positive", c.ExportInterval)
	case c.EventFlushInterval <= 0:
		return fmt.Errorf("telemetry: EventFlushInterval %v must be positive", c.EventFlushInterval)
	case c.ShutdownTimeout <= 0:
		return fmt.Errorf("telemetry: ShutdownTimeout %v must be positive", c.ShutdownTimeout)
	case c.StatsWorkers < 1:
		return fmt.Errorf("telemetry: StatsWorkers %d must be at least 1", c.StatsWorkers)
	case c.QueueSize < 0:
		return fmt.Errorf("telemetry: QueueSize %d must not be negative", c.QueueSize)
	case c.ResourcesPerRequest < 0:
		return fmt.Errorf("telemetry: ResourcesPerRequest %d must not be negative", c.ResourcesPerRequest)
	}
	return nil
}

// keep reports whether a container of an engine of type t is exported.
func (c *Config) keep(t model.EngineType, ctr *model.Container) bool {
	if len(c.IncludeEngines) > 0 && !containsType(c.IncludeEngines, t) {
		return false
	}
	if containsType(c.ExcludeEngines, t) {
		return false
	}
	if len(c.IncludeImages) > 0 && !matchImage(c.IncludeImages, ctr) {
		return false
	}
	return !matchImage(c.ExcludeImages, ctr)
}

// matchImage reports whether a pattern matches the container's image in any
// of its spellings: as the engine reports it ("busybox", "local/busybox"),
// fully qualified ("docker.io/library/busybox"), in the short form Docker
// prints ("busybox" for docker.io/library/busybox), and each of those with
// each of the image's tags ("busybox:1.36"). Engines differ in which they
// report, and an operator should not need to know which.
func matchImage(pats []string, ctr *model.Container) bool {
	if len(pats) == 0 || ctr.ImageName == "" {
		return false
	}
	names := []string{ctr.ImageName}
	if ref, err := reference.ParseNormalizedNamed(ctr.ImageName); err == nil {
		names = append(names, ref.Name(), reference.FamiliarName(ref))
	}
	for _, n := range names {
		if matchAny(pats, n) {
			return true
		}
		for _, tag := range ctr.ImageTags {
			// Tags may come as bare tags or as full references.
			if strings.Contains(tag, ":") {
				if matchAny(pats, tag) {
					return true
				}
				continue
			}
			if matchAny(pats, n+":"+tag) {
				return true
			}
		}
	}
	return false
}

// labelAllowed reports whether the label key is on the allowlist.
func (c *Config) labelAllowed(key string) bool { return matchAny(c.LabelAllowlist, key) }

func containsType(ts []model.EngineType, t model.EngineType) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

func matchAny(pats []string, s string) bool {
	for _, p := range pats {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}
