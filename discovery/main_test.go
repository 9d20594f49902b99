package discovery

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeEngineEnv); mode != "" {
		// This binary runs as a fake engine process of a reliability test.
		os.Exit(serveFakeEngine(mode, os.Getenv(fakeSocketEnv)))
	}
	goleak.VerifyTestMain(m)
}
