package telemetry

import (
	"context"
	"testing"
	"time"

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
