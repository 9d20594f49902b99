package watch

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/engine/docker"
	"github.com/agentd-dev/agentd/internal/enginetest"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

// TestDockerStormKeepsToTheRequestBudget starts and stops a storm of
// containers on a private dockerd while discovery-like probes hammer the
// same endpoint, and checks at the budget, all along, that agentd's requests
// never exceed rate × elapsed + burst, and that the watcher still reports
// every container's create, start and die.
func TestDockerStormKeepsToTheRequestBudget(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Containerd)
	// A dockerd of the test's own: the storm leaves the shared engines alone.
	sock := enginetest.StartPrivateDockerd(t, enginetest.StartPrivateContainerd(t).Sock).Sock

	const (
		rate       = 10.0
		burst      = 10
		containers = 24
	)
	budgets := engine.NewBudgets(rate, burst, nil)
	fam := docker.Family(budgets)
	pctx, pcancel := context.WithTimeout(context.Background(), 30*time.Second)
	found, err := fam.Probe(pctx, sock)
	pcancel()
	if err != nil || len(found) != 1 {
		t.Fatalf("probe of the private dockerd: %v %v", found, err)
	}
	e := found[0]
	a, err := fam.NewAdapter(e, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	label := testLabel(t)
	h := startWatcher(t, e, a, label, Options{})
	b := budgets.Get(sock)
	if b == nil || b != budgets.For(e.Endpoint) {
		t.Fatal("the probe and the adapter do not share the endpoint's budget")
	}

	// within checks the budget's promise now.
	var maxRatio float64
	within := func() engine.BudgetStats {
		t.Helper()
		st := b.Stats()
		limit := rate*time.Since(st.Since).Seconds() + burst
		if float64(st.Requests) > limit {
			t.Fatalf("%d requests granted in %s, more than the budget's %.1f", st.Requests, time.Since(st.Since), limit)
		}
		maxRatio = max(maxRatio, float64(st.Requests)/limit)
		return st
	}

	// Discovery's rescans, much faster than the real ones, on the same endpoint.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, _ = fam.Probe(pctx, sock)
			cancel()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() { stop(); wg.Wait() }()

	// The storm: containers started at once, each exiting after 200 ms.
	ids := make([]string, containers)
	errs := make([]error, containers)
	var storm sync.WaitGroup
	for i := range containers {
		storm.Add(1)
		go func() {
			defer storm.Done()
			out, err := exec.Command("docker", "-H", "unix://"+sock, "run", "-d", "--network", "none",
				"--label", "agentd.test="+label, testbed.BusyboxImage, "sh", "-c", "sleep 0.2; exit 3").CombinedOutput()
			ids[i], errs[i] = strings.TrimSpace(string(out)), err
		}()
	}
	storm.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("docker run %d: %v: %s", i, err, ids[i])
		}
	}

	// Every container's create, start and die reaches the model, in order,
	// however long the inspects wait for the budget.
	missing := func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		seen := map[string][]model.EventType{}
		for _, ev := range h.events {
			seen[ev.Container.ID] = append(seen[ev.Container.ID], ev.Type)
		}
		var out []string
		for _, id := range ids {
			if got := fmt.Sprint(seen[id]); got != fmt.Sprint([]model.EventType{model.EventCreate, model.EventStart, model.EventDie}) {
				out = append(out, id[:12]+" "+got)
			}
		}
		return out
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		within()
		m := missing()
		if len(m) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("events missing after 3 minutes: %v", m)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The probes go on a little longer, against a budget that is used up.
	time.Sleep(2 * time.Second)
	st := within()
	if st.Waits == 0 {
		t.Errorf("no request waited: the storm did not reach the budget (%+v)", st)
	}
	ws := h.w.Stats()
	t.Logf("%d requests granted in %.1f s (cap rate×elapsed+burst = %.1f, highest ratio seen %.2f), %d waited %s in all; %d events, %d inspects coalesced",
		st.Requests, time.Since(st.Since).Seconds(), rate*time.Since(st.Since).Seconds()+burst, maxRatio, st.Waits, st.WaitTime, ws.Events, ws.Coalesced)
}
