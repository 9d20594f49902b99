package telemetry

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/agentd-dev/agentd/model"
)

// maxLoggers bounds the per-resource logger cache; past it the cache starts
// over (loggers are cheap to rebuild).
const maxLoggers = 4096

// eventEmitter turns model events into OTLP log records whose resource is the
// container's or the engine's. The SDK fixes one resource per LoggerProvider,
// so it keeps one LoggerProvider per resource, all feeding the same
// processor: the processor batches records of every resource together and the
// OTLP exporter groups them by resource into one request. The providers own
// no goroutines and are never shut down; the processor is, by the pipeline.
// It is used by one goroutine at a time.
type eventEmitter struct {
	cfg       *Config
	host      Host
	version   string
	processor sdklog.Processor
	loggers   map[string]*cachedLogger
}

type cachedLogger struct {
	key    resourceKey
	logger log.Logger
}

func newEventEmitter(cfg *Config, host Host, version string, p sdklog.Processor) *eventEmitter {
	return &eventEmitter{cfg: cfg, host: host, version: version, processor: p, loggers: make(map[string]*cachedLogger)}
}

func (em *eventEmitter) logger(cacheKey string, key resourceKey, res func() *resource.Resource) log.Logger {
	cl := em.loggers[cacheKey]
	if cl != nil && cl.key.equal(&key) {
		return cl.logger
	}
	if len(em.loggers) >= maxLoggers {
		clear(em.loggers)
	}
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res()), sdklog.WithProcessor(em.processor))
	l := lp.Logger(ScopeName, log.WithInstrumentationVersion(em.version), log.WithSchemaURL(semconv.SchemaURL))
	em.loggers[cacheKey] = &cachedLogger{key: key, logger: l}
	return l
}

// containerLoggerKey is the cache key of c's logger: the key a destroy
// deletes must be the key its events were cached under.
func containerLoggerKey(c *model.Container) string {
	return "c/" + c.EngineID + "/" + c.Namespace + "/" + c.ID
}

// emit sends one event. engine is the container's engine (for a container
// event) and must not be nil for one; for engine events ev.Engine is used.
func (em *eventEmitter) emit(ctx context.Context, ev *model.Event, engine *model.Engine, now time.Time) {
	def, ok := eventByName(ev.Type)
	if !ok {
		def = Event{Name: ev.Type, Severity: log.SeverityInfo}
	}
	var l log.Logger
	var body string
	switch {
	case ev.Container != nil && engine != nil:
		c := ev.Container
		key := keyOf(engine, c)
		cacheKey := containerLoggerKey(c)
		l = em.logger(cacheKey, key, func() *resource.Resource { return ContainerResource(em.host, engine, c, em.cfg.labelAllowed) })
		name := limitString(c.Name)
		if name == "" {
			name = shortID(c.ID)
		}
		body = fmt.Sprintf("%s %s", ev.Type, name)
		if ev.Type == model.EventDestroy {
			defer delete(em.loggers, cacheKey)
		}
	case ev.Engine != nil:
		e := ev.Engine
		l = em.logger("e/"+e.ID, resourceKey{engine: *e}, func() *resource.Resource { return EngineResource(em.host, e) })
		body = fmt.Sprintf("%s %s %s", ev.Type, e.Type, e.Endpoint)
	default:
		return
	}

	var r log.Record
	r.SetEventName(string(ev.Type))
	ts := ev.Time
	if ts.IsZero() {
		ts = now
	}
	r.SetTimestamp(ts)
	r.SetObservedTimestamp(now)
	sev := def.Severity
	oom := ev.Type == model.EventOOM || (ev.Container != nil && ev.Container.OOMKilled && ev.Type == model.EventDie)
	switch ev.Type {
	case model.EventDie, model.EventStop:
		if ev.ExitUnknown {
			// No exit code attribute: 0 would say it succeeded. A stop
			// before its die (the Docker 29 line) has none yet.
			if ev.Type == model.EventDie {
				body += " (exit code unknown: it ended while its engine was not watched)"
			}
			break
		}
		r.AddAttributes(attribute.Int(AttrExitCode, ev.ExitCode))
		body += fmt.Sprintf(" (exit code %d)", ev.ExitCode)
		if def.WarnOnNonZeroExit && ev.ExitCode != 0 {
			sev = log.SeverityWarn
		}
	}
	if ev.Type == model.EventDie || ev.Type == model.EventOOM {
		r.AddAttributes(attribute.Bool(AttrOOMKilled, oom))
		if oom {
			sev = log.SeverityWarn
		}
	}
	if ev.Type == model.EventHealth && ev.Container != nil {
		r.AddAttributes(attribute.String(AttrHealth, ev.Container.Health))
		body += " (" + ev.Container.Health + ")"
		if ev.Container.Health == model.HealthUnhealthy {
			sev = log.SeverityWarn
		}
	}
	if ev.Signal != "" {
		r.AddAttributes(attribute.String(AttrSignal, ev.Signal))
	}
	if ev.Resync {
		r.AddAttributes(attribute.Bool(AttrResync, true))
	}
	r.SetSeverity(sev)
	r.SetSeverityText(sev.String())
	r.SetBody(attribute.StringValue(body))
	l.Emit(ctx, r)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
