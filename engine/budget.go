package engine

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc"
)

// Budget is the request budget of one engine endpoint: a token bucket that
// refills at a rate (requests per second) up to a burst. Every caller that
// talks to the endpoint (the watcher's list, inspect and event subscription,
// discovery's and activation's probes, the stats fallback) takes a token
// before its request, through the HTTP transport (Transport) or the gRPC
// interceptors (GRPCOptions) its client was built with.
//
// A nil *Budget is unlimited and counts nothing. A Budget is safe for
// concurrent use.
type Budget struct {
	endpoint string
	lim      *rate.Limiter
	clock    Clock
	since    time.Time

	requests, waits atomic.Uint64
	waitNanos       atomic.Int64
}

// BudgetStats are a Budget's counters. They only grow.
type BudgetStats struct {
	// Requests is the number of requests granted: made to the engine.
	// At any time it is at most burst + rate × (now − Since).
	Requests uint64
	// Waits is the number of requests that had to wait for a token,
	// granted or given up when their context ended.
	Waits uint64
	// WaitTime is the total time requests waited.
	WaitTime time.Duration
	// Since is when the budget started counting.
	Since time.Time
}

// Clock is the time source of Budgets, a seam for tests.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// After returns a channel that receives after d, and a function that
	// releases the timer when the wait ends early.
	After(d time.Duration) (<-chan time.Time, func())
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) After(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTimer(d)
	return t.C, func() { t.Stop() }
}

// NewBudget returns the budget of endpoint: perSecond requests per second
// with bursts of up to burst requests (burst below 1 counts as 1). A
// perSecond of 0 or less is unlimited but still counts requests. clock nil
// means the wall clock.
func NewBudget(endpoint string, perSecond float64, burst int, clock Clock) *Budget {
	if clock == nil {
		clock = realClock{}
	}
	limit := rate.Limit(perSecond)
	if perSecond <= 0 {
		limit = rate.Inf
	}
	return &Budget{endpoint: endpoint, lim: rate.NewLimiter(limit, max(burst, 1)), clock: clock, since: clock.Now()}
}

// Wait blocks until the budget grants one request or ctx ends; in the latter
// case it returns an error wrapping ctx's and the request must not be made.
// A request that is granted at once does not count as a wait.
func (b *Budget) Wait(ctx context.Context) error {
	if b == nil {
		return nil
	}
	now := b.clock.Now()
	r := b.lim.ReserveN(now, 1)
	d := r.DelayFrom(now)
	if d <= 0 {
		b.requests.Add(1)
		return nil
	}
	b.waits.Add(1)
	c, stop := b.clock.After(d)
	defer stop()
	select {
	case <-c:
		b.waitNanos.Add(int64(d))
		b.requests.Add(1)
		return nil
	case <-ctx.Done():
		// Give the token back for whoever comes next.
		end := b.clock.Now()
		r.CancelAt(end)
		b.waitNanos.Add(int64(end.Sub(now)))
		return fmt.Errorf("request budget of %s: %w", b.endpoint, context.Cause(ctx))
	}
}

// Stats returns the budget's counters; a nil Budget has none.
func (b *Budget) Stats() BudgetStats {
	if b == nil {
		return BudgetStats{}
	}
	return BudgetStats{Requests: b.requests.Load(), Waits: b.waits.Load(), WaitTime: time.Duration(b.waitNanos.Load()), Since: b.since}
}

// Endpoint returns the engine endpoint the budget belongs to.
func (b *Budget) Endpoint() string {
	if b == nil {
		return ""
	}
	return b.endpoint
}

// Budgets hands out one Budget per engine endpoint, so that the probe and the
// adapter of one endpoint draw from the same bucket. The agent builds one
// and passes it to the families (see Family in the engine packages). A nil
// *Budgets hands out nil Budgets: unlimited and uncounted. Safe for
// concurrent use.
type Budgets struct {
	perSecond float64
	burst     int
	clock     Clock

	mu sync.Mutex
	m  map[string]*Budget
}

// NewBudgets returns the budgets of all endpoints, each perSecond requests
// per second with bursts of burst (see NewBudget; perSecond 0 is unlimited).
// clock nil means the wall clock.
func NewBudgets(perSecond float64, burst int, clock Clock) *Budgets {
	return &Budgets{perSecond: perSecond, burst: burst, clock: clock, m: map[string]*Budget{}}
}

// For returns the budget of endpoint, creating it on first use.
func (bs *Budgets) For(endpoint string) *Budget {
	if bs == nil {
		return nil
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b, ok := bs.m[endpoint]
	if !ok {
		b = NewBudget(endpoint, bs.perSecond, bs.burst, bs.clock)
		bs.m[endpoint] = b
	}
	return b
}

// Get returns the budget of endpoint, nil when nothing asked for it yet.
func (bs *Budgets) Get(endpoint string) *Budget {
	if bs == nil {
		return nil
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.m[endpoint]
}

// All returns every endpoint's budget, ordered by endpoint.
func (bs *Budgets) All() []*Budget {
	if bs == nil {
		return nil
	}
	bs.mu.Lock()
	out := make([]*Budget, 0, len(bs.m))
	for _, b := range bs.m {
		out = append(out, b)
	}
	bs.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].endpoint < out[j].endpoint })
	return out
}

// Transport returns rt with every request taking a token of b first; a
// request whose context ends while it waits fails with Wait's error. A nil b
// returns rt. The returned transport passes CloseIdleConnections on to rt.
func Transport(b *Budget, rt http.RoundTripper) http.RoundTripper {
	if b == nil {
		return rt
	}
	return &budgetTransport{b: b, rt: rt}
}

type budgetTransport struct {
	b  *Budget
	rt http.RoundTripper
}

func (t *budgetTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := t.b.Wait(req.Context()); err != nil {
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, err
	}
	return t.rt.RoundTrip(req)
}

// CloseIdleConnections closes the wrapped transport's idle connections.
func (t *budgetTransport) CloseIdleConnections() {
	if c, ok := t.rt.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// GRPCOptions return the dial options that make every unary call on the
// connection take a token of b first, and every stream take one when it is
// opened (an event subscription is one request, however long it lasts). A
// nil b returns none.
func GRPCOptions(b *Budget) []grpc.DialOption {
	if b == nil {
		return nil
	}
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if err := b.Wait(ctx); err != nil {
				return err
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if err := b.Wait(ctx); err != nil {
				return nil, err
			}
			return streamer(ctx, desc, cc, method, opts...)
		}),
	}
}
