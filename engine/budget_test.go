package engine

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// fakeClock is a Clock whose time moves only when a waiter sleeps: After
// advances it by d at once, so a sequence of Waits runs without real time
// passing and the clock tells how long they waited in total. With block
// set, After never fires (for cancellation).
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	block bool
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !c.block {
		c.now = c.now.Add(d)
		ch <- c.now
	}
	return ch, func() {}
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestBudgetWait(t *testing.T) {
	tests := []struct {
		name  string
		rate  float64
		burst int
		// before each request, the clock moves by gap (idle time).
		requests int
		gap      time.Duration
		// want
		waits    uint64
		waitTime time.Duration
	}{
		{name: "a burst within the bucket does not wait", rate: 10, burst: 5, requests: 5, waits: 0},
		{name: "requests beyond the burst wait one interval each", rate: 10, burst: 5, requests: 20, waits: 15, waitTime: 15 * 100 * time.Millisecond},
		{name: "requests spaced at the rate never wait", rate: 10, burst: 1, requests: 50, gap: 100 * time.Millisecond, waits: 0},
		{name: "requests twice as fast as the rate wait half an interval each", rate: 10, burst: 1, requests: 11, gap: 50 * time.Millisecond, waits: 10, waitTime: 10 * 50 * time.Millisecond},
		{name: "a rate of 0 is unlimited", rate: 0, burst: 0, requests: 1000, waits: 0},
		{name: "a burst of 0 counts as 1", rate: 1, burst: 0, requests: 3, waits: 2, waitTime: 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &fakeClock{now: time.Unix(1_000_000, 0)}
			b := NewBudget("/run/test.sock", tt.rate, tt.burst, clk)
			start := clk.Now()
			for range tt.requests {
				clk.advance(tt.gap)
				if err := b.Wait(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			st := b.Stats()
			st.Since = time.Time{}
			if st.Requests != uint64(tt.requests) || st.Waits != tt.waits || st.WaitTime != tt.waitTime {
				t.Fatalf("stats %+v, want %d requests, %d waits, %s waited", st, tt.requests, tt.waits, tt.waitTime)
			}
			// The bucket's promise: never more than burst + rate*elapsed.
			if tt.rate > 0 {
				elapsed := clk.Now().Sub(start).Seconds()
				if limit := float64(max(tt.burst, 1)) + tt.rate*elapsed; float64(tt.requests) > limit+1e-9 {
					t.Fatalf("%d requests in %.3fs exceed the budget %.1f", tt.requests, elapsed, limit)
				}
			}
		})
	}
}

func TestBudgetWaitEndsWithItsContext(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1_000_000, 0), block: true}
	b := NewBudget("/run/test.sock", 1, 1, clk)
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Wait(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if st := b.Stats(); st.Requests != 1 || st.Waits != 1 {
		t.Fatalf("stats %+v, want 1 request granted, 1 wait", st)
	}
	// The cancelled request gave its token back: one second on, the next
	// one goes at once.
	clk.advance(time.Second)
	clk.block = false
	if err := b.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Waits != 1 {
		t.Fatalf("stats %+v: the request after the cancelled one waited", st)
	}
}

func TestNilBudgetIsUnlimited(t *testing.T) {
	var b *Budget
	if err := b.Wait(context.Background()); err != nil || b.Stats() != (BudgetStats{}) {
		t.Fatalf("nil budget: err %v, stats %+v", err, b.Stats())
	}
	var bs *Budgets
	if bs.For("/x") != nil || bs.Get("/x") != nil || bs.All() != nil {
		t.Fatal("nil Budgets hands out budgets")
	}
}

func TestBudgetsShareOneBudgetPerEndpoint(t *testing.T) {
	bs := NewBudgets(10, 10, nil)
	a, b, c := bs.For("/run/a.sock"), bs.For("/run/a.sock"), bs.For("/run/b.sock")
	if a != b || a == c || bs.Get("/run/a.sock") != a || bs.Get("/run/c.sock") != nil {
		t.Fatal("one endpoint must have one budget, two endpoints two")
	}
	all := bs.All()
	if len(all) != 2 || all[0].Endpoint() != "/run/a.sock" || all[1].Endpoint() != "/run/b.sock" {
		t.Fatalf("All = %v", all)
	}
}

func TestTransportTakesATokenPerRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer srv.Close()
	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	b := NewBudget("test", 1, 2, clk)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: Transport(b, tr)}
	for range 4 {
		resp, err := hc.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
	}
	if st := b.Stats(); st.Requests != 4 || st.Waits != 2 || st.WaitTime != 2*time.Second {
		t.Fatalf("stats %+v, want 4 requests, 2 waits of 1s", st)
	}
}

func TestGRPCOptionsTakeATokenPerCallAndPerStream(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "engine.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()

	clk := &fakeClock{now: time.Unix(1_000_000, 0)}
	b := NewBudget(sock, 1, 2, clk)
	conn, err := DialGRPC(sock, GRPCOptions(b)...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	st, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil { // the first status; the stream stays open
		t.Fatal(err)
	}
	if got := b.Stats(); got.Requests != 4 || got.Waits != 2 || got.WaitTime != 2*time.Second {
		t.Fatalf("stats %+v, want 4 requests (3 calls, 1 stream), 2 waits of 1s", got)
	}
}
