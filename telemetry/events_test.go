package telemetry

import (
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"

	"github.com/agentd-dev/agentd/model"
)

type nopProcessor struct{}

func (nopProcessor) OnEmit(context.Context, *sdklog.Record) error           { return nil }
func (nopProcessor) Enabled(context.Context, sdklog.EnabledParameters) bool { return true }
func (nopProcessor) Shutdown(context.Context) error                         { return nil }
func (nopProcessor) ForceFlush(context.Context) error                       { return nil }

// TestDestroyForgetsTheContainersLogger: the logger cached for a container's
// resource goes with the container's destroy, whatever its engine and
// namespace, so that churn does not fill the cache (a churn of 1,000
// containers held 7 MiB of loggers before).
func TestDestroyForgetsTheContainersLogger(t *testing.T) {
	cfg := DefaultConfig()
	em := newEventEmitter(&cfg, Host{}, "test", nopProcessor{})
	eng := &model.Engine{ID: "e1", Type: model.Containerd}
	now := time.Now()
	for i, ns := range []string{"", "default", "k8s.io"} {
		c := &model.Container{EngineID: eng.ID, Namespace: ns, ID: "c" + string(rune('0'+i)), State: model.StateRunning}
		for _, typ := range []model.EventType{model.EventCreate, model.EventStart, model.EventDie, model.EventDestroy} {
			em.emit(context.Background(), &model.Event{Type: typ, Container: c}, eng, now)
		}
	}
	if len(em.loggers) != 0 {
		t.Errorf("%d loggers cached after every container was destroyed, want 0: %v", len(em.loggers), keysOf(em.loggers))
	}
}

func keysOf[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// recordingProcessor keeps the body and attributes of every record.
type recordingProcessor struct {
	nopProcessor
	records []recorded
}

type recorded struct {
	body  string
	attrs map[string]string
}

func (p *recordingProcessor) OnEmit(_ context.Context, r *sdklog.Record) error {
	rec := recorded{body: r.Body().AsString(), attrs: map[string]string{}}
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		rec.attrs[string(kv.Key)] = kv.Value.String()
		return true
	})
	p.records = append(p.records, rec)
	return nil
}

// TestDieExitCode: a die says the exit code the engine told, and no exit
// code at all when nobody told it (a container that ended while its engine
// was not watched): 0 would say it succeeded.
func TestDieExitCode(t *testing.T) {
	cases := []struct {
		name     string
		ev       model.Event
		wantCode string // "": no attribute
		wantBody string
	}{
		{"told", model.Event{Type: model.EventDie, ExitCode: 3}, "3", "(exit code 3)"},
		{"told zero", model.Event{Type: model.EventDie}, "0", "(exit code 0)"},
		{"unknown", model.Event{Type: model.EventDie, ExitUnknown: true, Resync: true}, "", "(exit code unknown"},
		{"a stop after its die", model.Event{Type: model.EventStop, ExitCode: 137}, "137", "(exit code 137)"},
		{"a stop before its die", model.Event{Type: model.EventStop, ExitUnknown: true}, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			p := &recordingProcessor{}
			em := newEventEmitter(&cfg, Host{}, "test", p)
			eng := &model.Engine{ID: "e1", Type: model.Docker}
			tc.ev.Container = &model.Container{EngineID: eng.ID, ID: "c1", Name: "web", State: model.StateExited}
			em.emit(context.Background(), &tc.ev, eng, time.Now())
			if len(p.records) != 1 {
				t.Fatalf("%d records, want 1", len(p.records))
			}
			r := p.records[0]
			code, ok := r.attrs[AttrExitCode]
			if tc.wantCode == "" && ok || tc.wantCode != "" && code != tc.wantCode {
				t.Errorf("exit code attribute %q (present %v), want %q", code, ok, tc.wantCode)
			}
			if !strings.Contains(r.body, tc.wantBody) {
				t.Errorf("body %q, want it to contain %q", r.body, tc.wantBody)
			}
		})
	}
}
