package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"slices"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/telemetry"
	sdklog "go.opentelemetry.io/otel/sdk/log"
)

// Changes says which parts of a running agent a new configuration touches
// (see Diff). The zero value means nothing to do.
type Changes struct {
	// Rebuild names the keys whose change needs the whole agent rebuilt
	// (its model and watchers started afresh): discovery.proc_root,
	// discovery.include_endpoints and exclude_endpoints,
	// engines.request_budget and activation.*.
	Rebuild []string
	// Telemetry: export.*, events.*, labels.* or the filters changed; the
	// exporters and the pipeline are rebuilt, the events waiting for them
	// are kept.
	Telemetry bool
	// DiscoveryInterval: discovery.interval changed; the discoverer's
	// rescan interval is set.
	DiscoveryInterval bool
	// EngineFilters: filters.include_engines or filters.exclude_engines
	// changed; the watched engines are reconciled with them.
	EngineFilters bool
	// LogLevel: log.level changed (applied by the caller, which owns the
	// logger).
	LogLevel bool
	// StatusSocket: status.socket changed; the status endpoint outlives
	// the agent, so the change takes effect at the next restart.
	StatusSocket bool
}

// Diff compares the running configuration old with new and says what a
// reload has to change. It only compares; it does not validate.
func Diff(old, new config.Config) Changes {
	var c Changes
	if old.Discovery.ProcRoot != new.Discovery.ProcRoot {
		c.Rebuild = append(c.Rebuild, "discovery.proc_root")
	}
	if old.Host != new.Host {
		c.Rebuild = append(c.Rebuild, "host")
	}
	if old.Discovery.GracePeriod != new.Discovery.GracePeriod {
		c.Rebuild = append(c.Rebuild, "discovery.grace_period")
	}
	if !slices.Equal(old.Discovery.IncludeEndpoints, new.Discovery.IncludeEndpoints) ||
		!slices.Equal(old.Discovery.ExcludeEndpoints, new.Discovery.ExcludeEndpoints) {
		// Discovery and activation hold the filter.
		c.Rebuild = append(c.Rebuild, "discovery.include_endpoints/exclude_endpoints")
	}
	if old.Engines != new.Engines {
		// The families the discoverer and the watchers hold were built
		// with the budgets.
		c.Rebuild = append(c.Rebuild, "engines.request_budget")
	}
	if !reflect.DeepEqual(old.Activation, new.Activation) {
		c.Rebuild = append(c.Rebuild, "activation")
	}
	c.Telemetry = !reflect.DeepEqual(old.Export, new.Export) ||
		!reflect.DeepEqual(old.Events, new.Events) ||
		!reflect.DeepEqual(old.Labels, new.Labels) ||
		!reflect.DeepEqual(old.Filters, new.Filters)
	c.DiscoveryInterval = old.Discovery.Interval != new.Discovery.Interval
	c.EngineFilters = !reflect.DeepEqual(old.Filters.IncludeEngines, new.Filters.IncludeEngines) ||
		!reflect.DeepEqual(old.Filters.ExcludeEngines, new.Filters.ExcludeEngines)
	c.LogLevel = old.Log.Level != new.Log.Level
	c.StatusSocket = old.Status.Socket != new.Status.Socket
	return c
}

// Parts lists what c changes, for the reload's log line.
func (c Changes) Parts() []string {
	var p []string
	for _, x := range []struct {
		on   bool
		name string
	}{
		{len(c.Rebuild) > 0, "everything"},
		{c.Telemetry, "telemetry"},
		{c.DiscoveryInterval, "discovery.interval"},
		{c.EngineFilters, "engine filters"},
		{c.LogLevel, "log.level"},
		{c.StatusSocket, "status.socket (at the next restart)"},
	} {
		if x.on {
			p = append(p, x.name)
		}
	}
	return p
}

// ErrRebuild is returned by Reload when the new configuration changes
// something a running agent cannot take (Changes.Rebuild): the caller stops
// this agent and builds a new one.
var ErrRebuild = errors.New("the change needs the agent rebuilt")

// Reload applies cfg (validated, with the command line's overrides applied)
// to the running agent, rebuilding only what Diff says changed: the model,
// the watchers and discovery's engines are kept, so no engine is found
// again and no container's event is lost or repeated. Events that happen
// while the exporters are rebuilt wait on the agent's subscription to the
// model and are exported by the new ones. It returns the changes; with
// ErrRebuild it applied nothing. It is safe for concurrent use with Run; a
// Reload before Run takes effect when Run starts.
func (a *Agent) Reload(cfg config.Config) (Changes, error) {
	a.mu.Lock()
	ch := Diff(a.cfg, cfg)
	if len(ch.Rebuild) > 0 {
		a.mu.Unlock()
		return ch, fmt.Errorf("%w: %v changed", ErrRebuild, ch.Rebuild)
	}
	a.cfg = cfg
	a.mu.Unlock()
	if ch.DiscoveryInterval {
		if err := a.disc.SetInterval(cfg.Discovery.Interval.Std()); err != nil {
			return ch, fmt.Errorf("%w: %w", config.ErrInvalid, err)
		}
	}
	if ch.EngineFilters {
		poke(a.refilter)
	}
	if ch.Telemetry {
		poke(a.retelemetry)
	}
	return ch, nil
}

// poke wakes the goroutine waiting on c without blocking: one pending wake
// covers any number of changes, the goroutine reads the latest
// configuration.
func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// config returns the running configuration.
func (a *Agent) config() config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// pipeline is a telemetry pipeline of one configuration: its sinks, and the
// pipeline itself once build ran.
type pipeline struct {
	cfg     telemetry.Config
	metrics telemetry.MetricSink
	logs    sdklog.Exporter
	p       *telemetry.Pipeline
}

// newPipeline builds the sinks of cfg.
func (a *Agent) newPipeline(ctx context.Context, cfg config.Config) (*pipeline, error) {
	m, l, err := a.sinks(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return &pipeline{cfg: telemetryConfig(cfg, a.log.With("part", "export")), metrics: m, logs: l}, nil
}

// build makes the pipeline from opts and p's sinks; on failure it shuts the
// sinks down.
func (p *pipeline) build(ctx context.Context, opts telemetry.Options, log *slog.Logger) error {
	opts.Metrics, opts.Logs = p.metrics, p.logs
	pp, err := telemetry.NewPipeline(p.cfg, opts, log)
	if err != nil {
		_ = p.metrics.Shutdown(ctx)
		_ = p.logs.Shutdown(ctx)
		return fmt.Errorf("%w: telemetry: %w", config.ErrInvalid, err)
	}
	p.p = pp
	return nil
}

// runTelemetry runs p until ctx ends. A reload that changed the telemetry
// settings (retelemetry) builds the next pipeline first (a configuration it
// cannot build is refused and the running one kept), then stops the running
// one, which forwards the events already queued and flushes, and starts the
// next on the same event subscription: nothing is lost or sent twice.
func (a *Agent) runTelemetry(ctx context.Context, p *pipeline, opts telemetry.Options) error {
	log := a.log.With("part", "telemetry")
	for {
		a.pipe.Store(p.p)
		pctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- p.p.Run(pctx) }()
		var next *pipeline
		for next == nil {
			select {
			case err := <-done:
				stop()
				return err
			case <-ctx.Done():
				err := <-done
				stop()
				if err != nil {
					// Stopping: a collector that cannot take the final flush
					// loses that data, which is worth a warning, not a failed stop.
					log.Warn("final telemetry flush failed; the last interval is lost", logging.MessageID(logging.MessageIDExportFailure), logging.Err(err))
				}
				return nil
			case <-a.retelemetry:
				n, err := a.newPipeline(ctx, a.config())
				if err == nil {
					err = n.build(ctx, opts, log)
				}
				if err != nil {
					log.Error("telemetry settings of the reload refused, keeping the running exporters",
						logging.MessageID(logging.MessageIDConfigReload), logging.Err(err))
					continue
				}
				next = n
			}
		}
		stop()
		if err := <-done; err != nil {
			log.Warn("flushing the exporters a reload replaced failed; their last interval is lost", logging.MessageID(logging.MessageIDExportFailure), logging.Err(err))
		}
		log.Info("telemetry rebuilt for the reloaded configuration", logging.MessageID(logging.MessageIDConfigReload))
		p = next
	}
}
