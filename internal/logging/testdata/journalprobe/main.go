// Command journalprobe logs through internal/logging with its default
// options, for TestJournaldOnSystemdHost: run under systemd with
// StandardError=journal it must pick the journald handler.
package main

import (
	"errors"
	"os"
	"time"

	"github.com/agentd-dev/agentd/internal/logging"
)

func main() {
	id := os.Args[1]
	log := logging.New(os.Stderr, logging.Options{Burst: 3, Interval: 200 * time.Millisecond})
	eng := log.With(logging.KeyEngineType, "podman", logging.KeyEngineID, id, logging.KeyEnginePrefix, "th")
	eng.Info("engine found", logging.MessageID(logging.MessageIDEngineFound),
		logging.KeyUnit, "podman.socket", logging.KeyContainerID, "c0ffee")
	for range 10 {
		eng.Error("export failed", logging.MessageID(logging.MessageIDExportFailure), logging.Err(errors.New("connection refused")))
	}
	// Give the suppressor's summary time to go out.
	time.Sleep(600 * time.Millisecond)
}
