// Command agentd is the host agent: it finds the container engines on this
// host (nested ones too), watches their containers and exports metrics and
// lifecycle events over OTLP. main only wires flags, configuration and the
// logger; the work lives in the packages it calls.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/internal/logging"
	"go.opentelemetry.io/otel"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes. exitConfig is in agentd.service's RestartPreventExitStatus.
const (
	exitOK     = 0
	exitFail   = 1
	exitConfig = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := mainE(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// mainE runs one subcommand and maps its error to an exit code.
func mainE(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	switch {
	case len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help"):
		cmd = "help" // the commands, not only run's flags
	case len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-':
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = runCommand(ctx, args, stdout, stderr)
	case "engines":
		err = runEngines(ctx, args, stdout, stderr, newLogger(stderr, "warn", new(slog.LevelVar)))
	case "status":
		err = runStatus(ctx, args, stdout)
	case "version":
		fmt.Fprintf(stdout, "agentd %s\n", version)
	case "help", "-h", "--help":
		usage(stdout)
	default:
		usage(stderr)
		err = fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, config.ErrInvalid), errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "agentd: %v\n", err)
		return exitConfig
	default:
		fmt.Fprintf(stderr, "agentd: %v\n", err)
		return exitFail
	}
}

var errUsage = errors.New("usage")

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: agentd [command] [flags]

commands:
  run       run the agent in the foreground (default); with no OTLP endpoint
            configured it shows the engines and their containers like
            docker stats, redrawn in place on a terminal
  run --once
            print one snapshot of the engines and their containers and exit:
            it waits for discovery and two stats rounds (CPU % needs two
            samples), at most `+onceWait.String()+`; exit status 1 when no engine
            is found (the output then says what was looked for)
  engines   print the container engines on this host as a tree, and the
            systemd socket units that would start one (--json)
  status    ask a running agent for its health and engine tree
  version   print the version

Run "agentd COMMAND -h" for a command's flags ("agentd run -h" for --once,
--config and the OTLP flags).
`)
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", config.DefaultPath, "configuration file")
	endpoint := fs.String("otlp-endpoint", "", "OTLP endpoint: host:port or URL (overrides export.endpoint and OTEL_EXPORTER_OTLP_*ENDPOINT)")
	insecure := fs.Bool("otlp-insecure", false, "no TLS towards an OTLP endpoint given as host:port")
	protocol := fs.String("otlp-protocol", "", "OTLP protocol: grpc or http/protobuf (overrides export.protocol and OTEL_EXPORTER_OTLP_*PROTOCOL)")
	hostProc := fs.String("host-proc", "", "the host's procfs when agentd runs in a container (overrides host.proc and AGENTD_HOST_PROC)")
	hostCgroup := fs.String("host-cgroup", "", "the host's cgroup tree when agentd runs in a container (overrides host.cgroup and AGENTD_HOST_CGROUP)")
	once := fs.Bool("once", false, "print one snapshot of the engines and their containers on stdout and exit (exit status 1 when no engine is found)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: run: unexpected argument %q", errUsage, fs.Arg(0))
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := config.Load(*cfgPath, explicit)
	if err != nil {
		return err
	}
	// The command line wins over the file, on every reload too. Where the host
	// is comes from the command line, then the environment (a container's
	// deployment knows its mounts; a shared file does not), then the file.
	override := func(c *config.Config) {
		if *endpoint != "" {
			c.Export.Endpoint = *endpoint
			c.Export.MetricsEndpoint, c.Export.LogsEndpoint = "", ""
		}
		c.Export.Insecure = c.Export.Insecure || *insecure
		if *protocol != "" {
			c.Export.Protocol = *protocol
		}
		overrideHost(c, *hostProc, *hostCgroup, os.Getenv)
	}
	switch *protocol {
	case "", "grpc", "http/protobuf":
	default:
		return fmt.Errorf("%w: --otlp-protocol: %q: must be grpc or http/protobuf", config.ErrInvalid, *protocol)
	}
	override(&cfg)
	if err := cfg.Validate(); err != nil {
		return err
	}
	level := new(slog.LevelVar)
	log := newLogger(stderr, cfg.Log.Level, level)
	// The OpenTelemetry SDK also reports failed exports to its global error
	// handler, which writes to stderr; telemetry logs them already, as one
	// problem for the whole outage.
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Debug("opentelemetry sdk", logging.Err(err)) }))
	if *once {
		return runOnce(ctx, cfg, log, stdout)
	}
	return run(ctx, cfg, override, level, log, stdout)
}

// newLogger builds the process logger (journald fields when stderr is the
// journal, text otherwise); libraries get it passed in.
func newLogger(w io.Writer, levelName string, level *slog.LevelVar) *slog.Logger {
	if l, err := logging.ParseLevel(levelName); err == nil {
		level.Set(l)
	}
	return logging.New(w, logging.Options{Level: level})
}

// overrideHost applies where the host is: the flags' values, else
// AGENTD_HOST_PROC and AGENTD_HOST_CGROUP, else what c has from its file.
func overrideHost(c *config.Config, flagProc, flagCgroup string, getenv func(string) string) {
	c.Host.Proc = firstSet(flagProc, getenv("AGENTD_HOST_PROC"), c.Host.Proc)
	c.Host.Cgroup = firstSet(flagCgroup, getenv("AGENTD_HOST_CGROUP"), c.Host.Cgroup)
}

// firstSet returns the first of values that is not empty.
func firstSet(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
