package docker

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/model"
	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
)

func TestDecodeDockerEvent(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want model.EventType
		exit int
		err  error
	}{
		{"a die carries its exit code", `{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"137"}},"timeNano":1700000000000000001}`, model.EventDie, 137, nil},
		{"a start is a start", `{"Type":"container","Action":"start","Actor":{"ID":"abc"},"time":1700000000}`, model.EventStart, 0, nil},
		{"a health status change is a health event", `{"Type":"container","Action":"health_status: unhealthy","Actor":{"ID":"abc"},"time":1700000000}`, model.EventHealth, 0, nil},
		{"a kill is ignored", `{"Type":"container","Action":"kill","Actor":{"ID":"abc"}}`, "", 0, engine.ErrIgnored},
		{"an exec is ignored", `{"Type":"container","Action":"exec_start: sh","Actor":{"ID":"abc"}}`, "", 0, engine.ErrIgnored},
		{"an image event is ignored", `{"Type":"image","Action":"pull","Actor":{"ID":"busybox"}}`, "", 0, engine.ErrIgnored},
		{"an event without an ID is malformed", `{"Type":"container","Action":"start"}`, "", 0, engine.ErrMalformed},
		{"a bad exit code is malformed", `{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"x"}}}`, "", 0, engine.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var m events.Message
			if err := json.Unmarshal([]byte(tt.in), &m); err != nil {
				t.Fatal(err)
			}
			ch, err := decodeDockerEvent(m)
			if !errors.Is(err, tt.err) || (tt.err == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if ch.Type != tt.want || ch.ContainerID != "abc" || ch.Time.IsZero() {
				t.Errorf("got %+v", ch)
			}
			if tt.want == model.EventDie && (ch.ExitCode == nil || *ch.ExitCode != tt.exit) {
				t.Errorf("exit code %v, want %d", ch.ExitCode, tt.exit)
			}
		})
	}
}

func TestDecodeDockerCreateCarriesTheContainer(t *testing.T) {
	in := `{"Type":"container","Action":"create","Actor":{"ID":"abc","Attributes":{"image":"registry.example:5000/team/app:1.2","name":"web","tier":"front"}},"timeNano":1700000000000000001}`
	var m events.Message
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	ch, err := decodeDockerEvent(m)
	if err != nil {
		t.Fatal(err)
	}
	c := ch.Container
	if c == nil {
		t.Fatal("a create event without the container it describes")
	}
	if c.ID != "abc" || c.Name != "web" || c.ImageName != "registry.example:5000/team/app" || len(c.ImageTags) != 1 || c.ImageTags[0] != "1.2" ||
		c.State != model.StateCreated || c.PID != 0 || len(c.Labels) != 1 || c.Labels["tier"] != "front" {
		t.Errorf("container from the create event: %+v", *c)
	}
	m.Action = events.ActionStart
	if ch, _ := decodeDockerEvent(m); ch.Container != nil {
		t.Errorf("a start carries a container: %+v (only a create's attributes are what the watcher reports from)", *ch.Container)
	}
}

func FuzzDecodeDockerEvent(f *testing.F) {
	f.Add([]byte(`{"Type":"container","Action":"die","Actor":{"ID":"abc","Attributes":{"exitCode":"1"}},"timeNano":5}`))
	f.Add([]byte(`{"Type":"container","Action":"health_status: healthy","Actor":{"ID":"abc"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var m events.Message
		if json.Unmarshal(b, &m) != nil {
			return
		}
		ch, err := decodeDockerEvent(m)
		enginetest.CheckChange(t, ch, err)
	})
}

func TestDockerContainerHealth(t *testing.T) {
	tests := []struct {
		name   string
		health *container.Health
		want   string
	}{
		{"a container without a health check has no health", nil, ""},
		{"a container whose health check has not passed yet is starting", &container.Health{Status: container.Starting}, model.HealthStarting},
		{"a passing health check is healthy", &container.Health{Status: container.Healthy}, model.HealthHealthy},
		{"a failing health check is unhealthy", &container.Health{Status: container.Unhealthy}, model.HealthUnhealthy},
		{"a status of none is no health check", &container.Health{Status: container.NoHealthcheck}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := container.InspectResponse{ContainerJSONBase: &container.ContainerJSONBase{
				ID: "abc", State: &container.State{Status: "running", Running: true, Pid: 1, Health: tt.health}, RestartCount: 2,
			}}
			c := dockerContainer(r)
			if c.Health != tt.want || c.RestartCount != 2 {
				t.Errorf("health %q restarts %d, want %q and 2", c.Health, c.RestartCount, tt.want)
			}
		})
	}
}
