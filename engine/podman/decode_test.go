package podman

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/model"
)

func TestDecodePodmanEvent(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want model.EventType
		err  error
	}{
		{"died is a die with the exit code", `{"status":"died","id":"abc","Type":"container","Action":"died","Actor":{"ID":"abc","Attributes":{"containerExitCode":"137"}},"time":1,"timeNano":1000000001}`, model.EventDie, nil},
		{"remove is a destroy", `{"status":"remove","id":"abc","Type":"container","Action":"remove","Actor":{"ID":"abc"}}`, model.EventDestroy, nil},
		{"the lower-case status is enough", `{"status":"start","id":"abc","Type":"container"}`, model.EventStart, nil},
		{"init is ignored", `{"Type":"container","Action":"init","Actor":{"ID":"abc"}}`, "", engine.ErrIgnored},
		{"cleanup is ignored", `{"Type":"container","Action":"cleanup","Actor":{"ID":"abc"}}`, "", engine.ErrIgnored},
		{"history is ignored", `{"Type":"container","Action":"history","Actor":{"ID":"abc"}}`, "", engine.ErrIgnored},
		{"a non-JSON line is malformed", `not json`, "", engine.ErrMalformed},
		{"an event without an action is malformed", `{"Type":"container","Actor":{"ID":"abc"}}`, "", engine.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ch, err := decodePodmanEvent([]byte(tt.in))
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err == nil && (ch.Type != tt.want || ch.ContainerID != "abc") {
				t.Errorf("got %+v", ch)
			}
			if tt.want == model.EventDie && (ch.ExitCode == nil || *ch.ExitCode != 137) {
				t.Errorf("exit code %v", ch.ExitCode)
			}
		})
	}
}

func FuzzDecodePodmanEvent(f *testing.F) {
	f.Add([]byte(`{"status":"died","id":"abc","Type":"container","Action":"died","Actor":{"ID":"abc","Attributes":{"containerExitCode":"137"}},"time":1}`))
	f.Add([]byte(`{"status":"remove","id":"abc"}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ch, err := decodePodmanEvent(b)
		enginetest.CheckChange(t, ch, err)
	})
}

func TestPodmanContainerHealth(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"a container without a health check has no health", `{"Id":"abc","State":{"Status":"running","Running":true,"Pid":1}}`, ""},
		{"podman's Health state is read", `{"Id":"abc","State":{"Status":"running","Running":true,"Pid":1,"Health":{"Status":"healthy"}}}`, model.HealthHealthy},
		{"podman's older Healthcheck name is read", `{"Id":"abc","State":{"Status":"running","Running":true,"Pid":1,"Healthcheck":{"Status":"unhealthy"}}}`, model.HealthUnhealthy},
		{"an unknown status is no health", `{"Id":"abc","State":{"Status":"running","Running":true,"Pid":1,"Health":{"Status":""}}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r podmanInspect
			if err := json.Unmarshal([]byte(tt.json), &r); err != nil {
				t.Fatal(err)
			}
			if c := podmanContainer(r); c.Health != tt.want {
				t.Errorf("health %q, want %q", c.Health, tt.want)
			}
		})
	}
}

func TestAnswerError(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		body     string
		notFound bool
	}{
		{"404 is a missing container", 404, `{"cause":"no such container","message":"no container with name or ID \"x\" found: no such container","response":404}`, true},
		// podman 4.3 answers so for a container removed while it inspects it.
		{"500 with the cause no such container is a missing container", 500, `{"cause":"no such container","message":"container abc does not exist in database: no such container","response":500}`, true},
		{"another 500 is an engine error", 500, `{"cause":"database is locked","message":"database is locked","response":500}`, false},
		{"a 500 without JSON is an engine error", 500, `no such container`, false},
		{"409 is an engine error", 409, `{"cause":"no such container"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := answerError(tt.status, []byte(tt.body))
			if got := errors.Is(err, engine.ErrNotFound); got != tt.notFound {
				t.Errorf("ErrNotFound %v, want %v (%v)", got, tt.notFound, err)
			}
		})
	}
}
