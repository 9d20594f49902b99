package docker_test

import (
	"testing"

	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/internal/enginetest"
)

// FuzzDockerAnswers serves fuzzed Engine API answers (info, container list,
// inspect, event stream) from a fake socket to the real probe and adapter:
// no panic, no container without an ID or with a negative PID, and every
// error names the engine's socket. The seed corpus (testdata/fuzz) holds
// answers of a real dockerd.
func FuzzDockerAnswers(f *testing.F) {
	f.Add([]byte(`{"ID":"x","ServerVersion":"20.10.24","CgroupDriver":"cgroupfs"}`), []byte(`[{"Id":"abc"}]`),
		[]byte(`{"Id":"abc","Name":"/n","State":{"Running":true,"Pid":-1},"Config":{"Image":"a:b","Labels":{"k":"v"}}}`),
		[]byte(`{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"x"}},"timeNano":1}`+"\n"))
	f.Fuzz(func(t *testing.T, version, list, inspect, events []byte) {
		sock := enginetest.ServeHTTP(t, enginetest.HTTPAnswers{Version: version, List: list, Inspect: inspect, Events: events})
		enginetest.Exercise(t, docker.Family(nil), sock)
	})
}

func TestDockerAdapterRefusesAnswersPastTheBounds(t *testing.T) {
	enginetest.CheckAnswerBounds(t, docker.Family(nil))
}
