// Command standin stands in for agentd in the packaging tests while
// cmd/agentd does not build: it speaks agentd's systemd protocol through
// internal/sdnotify (READY after start, RELOADING/READY on SIGHUP, STOPPING on
// SIGTERM, watchdog pings) and exits 2 when --config names a file it cannot
// read, like agentd's configuration error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/internal/sdnotify"
)

var version = "dev"

func main() {
	cfg := flag.String("config", "/etc/agentd/agentd.yaml", "configuration file")
	flag.Parse()
	log := logging.New(os.Stderr, logging.Options{})
	if _, err := os.ReadFile(*cfg); err != nil {
		fmt.Fprintf(os.Stderr, "standin: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan error, 1)
	go func() { done <- sdnotify.Watchdog(ctx, func() bool { return true }) }()
	if err := sdnotify.Ready("stand-in " + version + " running"); err != nil {
		log.Error("notify ready", logging.Err(err))
	}
	log.Info("started", "version", version)
	for {
		select {
		case <-hup:
			_ = sdnotify.Reloading()
			log.Info("reloaded", logging.MessageID(logging.MessageIDConfigReload))
			_ = sdnotify.Ready("reloaded")
		case <-ctx.Done():
			_ = sdnotify.Stopping("stopping")
			if err := <-done; err != nil {
				log.Error("watchdog", logging.Err(err))
			}
			return
		}
	}
}
