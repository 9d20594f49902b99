package podman_test

import (
	"testing"

	"github.com/agentd-dev/agentd/engine/podman"
	"github.com/agentd-dev/agentd/internal/enginetest"
)

// FuzzPodmanAnswers serves fuzzed libpod answers (version, container list,
// inspect, event stream) from a fake socket to the real probe and adapter:
// no panic, no container without an ID or with a negative PID, and every
// error names the engine's socket.
func FuzzPodmanAnswers(f *testing.F) {
	f.Add([]byte(`{"Version":"4.3.1","Components":[{"Name":"Podman Engine","Details":{"APIVersion":"4.3.1"}}]}`),
		[]byte(`[{"Id":"abc"},{"Id":""}]`),
		[]byte(`{"Id":"abc","Name":"n","ImageName":"local/busybox:latest","State":{"Status":"running","Running":true,"Pid":-5},"Config":{"Labels":{"k":"v"}}}`),
		[]byte(`{"status":"died","id":"abc","Type":"container","Action":"died","Actor":{"ID":"abc","Attributes":{"containerExitCode":"1"}},"timeNano":1}`+"\n"))
	f.Fuzz(func(t *testing.T, version, list, inspect, events []byte) {
		sock := enginetest.ServeHTTP(t, enginetest.HTTPAnswers{Version: version, List: list, Inspect: inspect, Events: events})
		enginetest.Exercise(t, podman.Family(nil), sock)
	})
}

func TestPodmanAdapterRefusesAnswersPastTheBounds(t *testing.T) {
	enginetest.CheckAnswerBounds(t, podman.Family(nil))
}
