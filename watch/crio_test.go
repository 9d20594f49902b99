package watch

import (
	"context"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/engine/cri"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/model"
)

// TestCRIWatcherOnARuntimeWithCRIODefaults watches a CRI runtime that
// behaves as CRI-O does with its default configuration (enable_pod_events =
// false): GetContainerEvents ends at once, there is no containerd event
// service, and Version names cri-o. The pods and containers are real
// (containerd's CRI plugin behind enginetest.CRIOLike). agentd must recognise
// CRI-O, list on a schedule instead of reconnecting in a loop, and still
// report every transition. It holds for longer than the watcher's longest
// reconnect backoff, which is when a loop would show.
func TestCRIWatcherOnARuntimeWithCRIODefaults(t *testing.T) {
	ctx, rt, label, real := criWatcherTest(t, "crio-")
	sock := enginetest.CRIOLike(t, real.Endpoint)

	probed, err := cri.Probe(ctx, sock)
	if err != nil {
		t.Fatal(err)
	}
	if len(probed) != 1 || probed[0].Type != model.CRIO || probed[0].RuntimeName() != "cri-o" {
		t.Fatalf("probe of a runtime naming itself cri-o: %+v", probed)
	}
	e := probed[0]
	a, err := cri.New(e, testLogger(t)) // the production poll interval
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	h := startWatcher(t, e, a, label, Options{})
	began := time.Now()

	pod := runCRITestPod(ctx, t, rt, label)
	ctrID := pod.create(ctx, t, "app")
	h.expect(model.EventCreate)
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}
	h.expect(model.EventStart)
	if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctrID, Timeout: 0}); err != nil {
		t.Fatal(err)
	}
	if evs := h.expect(model.EventDie); evs[0].ExitCode != 137 {
		t.Errorf("die with exit code %d, want 137", evs[0].ExitCode)
	}
	if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctrID}); err != nil {
		t.Fatal(err)
	}
	h.expect(model.EventDestroy)
	pod.remove(context.Background(), t)

	// Past the longest reconnect backoff (16 s) and a few of its steps.
	if hold := 20*time.Second - time.Since(began); hold > 0 {
		h.quiet(hold)
	}
	if src := a.EventSource(); src != "polling" {
		t.Errorf("event source %q, want polling", src)
	}
	if st := h.w.Stats(); st.Reconnects != 0 {
		t.Errorf("stats %+v: a runtime that ends its event stream at once must be polled, not reconnected to", st)
	}
}
