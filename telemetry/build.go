package telemetry

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"

	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// ScopeName is the instrumentation scope of everything agentd exports.
const ScopeName = "github.com/agentd-dev/agentd/telemetry"

var (
	setCPUUser     = attribute.NewSet(semconv.CPUModeUser)
	setCPUSystem   = attribute.NewSet(semconv.CPUModeSystem)
	setDiskRead    = attribute.NewSet(semconv.DiskIODirectionRead)
	setDiskWrite   = attribute.NewSet(semconv.DiskIODirectionWrite)
	setFaultMajor  = attribute.NewSet(semconv.SystemPagingFaultTypeMajor)
	setFaultMinor  = attribute.NewSet(semconv.SystemPagingFaultTypeMinor)
	setStallSome   = attribute.NewSet(attribute.String(AttrStallType, "some"))
	setStallFull   = attribute.NewSet(attribute.String(AttrStallType, "full"))
	pressureMetric = [...]int{stats.PressureCPU: mCPUPressure, stats.PressureMemory: mMemoryPressure, stats.PressureIO: mIOPressure}
	healthStates   = []string{model.HealthStarting, model.HealthHealthy, model.HealthUnhealthy}
	engineStates   = []model.ContainerState{model.StateCreated, model.StateRunning, model.StatePaused, model.StateExited, model.StateUnknown}
	engineStateSet = func() map[model.ContainerState]attribute.Set {
		m := make(map[model.ContainerState]attribute.Set, len(engineStates))
		for _, s := range engineStates {
			m[s] = attribute.NewSet(attribute.String(AttrState, string(s)))
		}
		return m
	}()
	healthSet = func() map[string]attribute.Set {
		m := make(map[string]attribute.Set, len(healthStates))
		for _, s := range healthStates {
			m[s] = attribute.NewSet(attribute.String(AttrHealth, s))
		}
		return m
	}()
)

// builder turns samples into one ResourceMetrics per container and per
// engine. It keeps per-container state between rounds: the cached resource
// and the stable start time of the cumulative counters. It keeps no
// container's metrics: a round (prepare) makes each ResourceMetrics when its
// sink asks for it (see roundMetrics). It is used by one goroutine at a time.
type builder struct {
	cfg   *Config
	host  Host
	scope instrumentation.Scope

	containers map[model.ContainerKey]*containerState
	engines    map[string]*engineState
	agent      *agentOut // agentd's own resource, made at the first round with a queue
	round      uint64

	// netSets and diskSets are the attribute sets of container.network.io
	// by interface name and of container.disk.io by device, shared by every
	// container (nearly all have an eth0): one pair per name, not one per
	// container. Emptied when they grow past maxSharedSets.
	netSets  map[string][2]attribute.Set
	diskSets map[string][2]attribute.Set
	// scratch is the one ResourceMetrics a streamed round refills for each
	// of its entries in turn.
	scratch containerOut
	// outs are the ResourceMetrics of a round made at once (batch), kept
	// from round to round for the sinks that want it so (entry i refilled
	// in place); never made for a streamed round.
	outs []containerOut
}

// maxSharedSets bounds builder.netSets and builder.diskSets (interface names
// come from containers' network namespaces, which anyone may name).
const maxSharedSets = 1024

type containerState struct {
	key       resourceKey
	res       *resource.Resource
	start     time.Time // start time of cumulative points
	startedAt time.Time // the container's StartedAt the start was taken from
	round     uint64
}

// containerOut is one ResourceMetrics and the storage of its metrics and
// points, refilled in place: refilling allocates nothing when the metrics
// have the shape they had the last time. A streamed round refills one
// containerOut (builder.scratch) for every container in turn and the sink
// encodes each before the next: before, each container kept one of
// its own from round to round, a second copy of every container's metrics
// beside the wire records, 7 MB of live heap at 1,000 containers.
type containerOut struct {
	rm    metricdata.ResourceMetrics
	scope [1]metricdata.ScopeMetrics
	ms    []metricdata.Metrics
	slots [numMetrics]slot
}

// slot holds one metric's points and the aggregation that boxes them,
// made again only when the number of points changes.
type slot struct {
	f   []metricdata.DataPoint[float64]
	i   []metricdata.DataPoint[int64]
	agg metricdata.Aggregation
}

// points appends metric m to o's metrics with n points in *pts (slot m's f
// or i) and returns the points for the caller to fill, every field of each.
func points[N int64 | float64](o *containerOut, m int, pts *[]metricdata.DataPoint[N], n int) []metricdata.DataPoint[N] {
	sl := &o.slots[m]
	if sl.agg == nil || len(*pts) != n {
		if cap(*pts) >= n {
			*pts = (*pts)[:n]
		} else {
			*pts = make([]metricdata.DataPoint[N], n)
		}
		switch Metrics[m].Kind {
		case Counter, UpDownCounter:
			sl.agg = metricdata.Sum[N]{DataPoints: *pts, Temporality: metricdata.CumulativeTemporality, IsMonotonic: Metrics[m].Kind == Counter}
		default:
			sl.agg = metricdata.Gauge[N]{DataPoints: *pts}
		}
	}
	o.ms = append(o.ms, metric[N](m, sl.agg))
	return *pts
}

func (o *containerOut) float(m, n int) []metricdata.DataPoint[float64] {
	return points(o, m, &o.slots[m].f, n)
}

func (o *containerOut) int(m, n int) []metricdata.DataPoint[int64] {
	return points(o, m, &o.slots[m].i, n)
}

// gaugeOf sets the one point of a gauge to v at t.
func gaugeOf[N int64 | float64](pts []metricdata.DataPoint[N], v N, t time.Time) {
	pts[0] = metricdata.DataPoint[N]{Time: t, Value: v}
}

// sumOf sets the one point of a cumulative sum to v at t, counted from start.
func sumOf[N int64 | float64](pts []metricdata.DataPoint[N], v N, start, t time.Time) {
	pts[0] = metricdata.DataPoint[N]{StartTime: start, Time: t, Value: v}
}

type engineState struct {
	engine model.Engine
	res    *resource.Resource
	round  uint64
}

func newBuilder(cfg *Config, host Host, version string) *builder {
	return &builder{
		cfg:        cfg,
		host:       host,
		scope:      instrumentation.Scope{Name: ScopeName, Version: version, SchemaURL: semconv.SchemaURL},
		containers: make(map[model.ContainerKey]*containerState),
		engines:    make(map[string]*engineState),
	}
}

// containerResource returns the cached resource of c, rebuilt when what it
// is made of changed.
func (b *builder) container(e *model.Engine, c *model.Container, now time.Time) *containerState {
	ck := c.Key()
	st := b.containers[ck]
	if st == nil {
		st = &containerState{}
		b.containers[ck] = st
	}
	if k := keyOf(e, c); st.res == nil || !st.key.equal(&k) {
		st.res = ContainerResource(b.host, e, c, b.cfg.labelAllowed)
		st.key = k
	}
	if st.start.IsZero() || !c.StartedAt.Equal(st.startedAt) {
		// A restarted container has a new cgroup whose counters start at 0.
		st.startedAt = c.StartedAt
		st.start = c.StartedAt
		if st.start.IsZero() || st.start.After(now) {
			st.start = now
		}
	}
	st.round = b.round
	return st
}

func (b *builder) engine(e *model.Engine) *engineState {
	st := b.engines[e.ID]
	if st == nil || st.engine != *e {
		st = &engineState{engine: *e, res: EngineResource(b.host, e)}
		b.engines[e.ID] = st
	}
	st.round = b.round
	return st
}

// sampled is one container to export with its sample; stats is nil for a
// container that is not running, which carries only its state, restarts and
// health.
type sampled struct {
	engine    *model.Engine
	container *model.Container
	stats     *stats.Stats
}

// engineCount is one engine with its containers counted by state.
type engineCount struct {
	engine *model.Engine
	counts map[model.ContainerState]int64
	// requests, when known, are the requests agentd made to the engine.
	requests *RequestStats
}

// prepare starts a round: it brings the state of every container and
// engine in cs and es up to date and forgets those of earlier rounds that
// are absent now. The round's ResourceMetrics are made when its sink asks
// for them; the round is only valid until the next prepare.
func (b *builder) prepare(now time.Time, cs []sampled, es []engineCount) *roundMetrics {
	b.round++
	r := &roundMetrics{b: b, now: now, cs: cs, es: es,
		cst: make([]*containerState, len(cs)), est: make([]*engineState, len(es))}
	for i := range cs {
		r.cst[i] = b.container(cs[i].engine, cs[i].container, now)
	}
	for i := range es {
		r.est[i] = b.engine(es[i].engine)
	}
	for id, st := range b.containers {
		if st.round != b.round {
			delete(b.containers, id)
		}
	}
	for id, st := range b.engines {
		if st.round != b.round {
			delete(b.engines, id)
		}
	}
	if len(b.netSets) > maxSharedSets {
		b.netSets = nil
	}
	if len(b.diskSets) > maxSharedSets {
		b.diskSets = nil
	}
	return r
}

// build returns the batch of one round, every ResourceMetrics made at once
// (roundMetrics.batch). The batch is only valid until the next build.
func (b *builder) build(now time.Time, cs []sampled, es []engineCount) []*metricdata.ResourceMetrics {
	return b.prepare(now, cs, es).batch()
}

// roundMetrics is one round as the builder prepared it: its containers,
// then its engines, then, with a queue, agentd's own resource. Metrics makes
// an entry's ResourceMetrics into one scratch that the next call refills, so
// a sink that encodes each entry before it asks for the next (OTLPMetrics)
// holds one container's metrics at a time, not a copy of the round's.
type roundMetrics struct {
	b   *builder
	now time.Time
	cs  []sampled
	cst []*containerState
	es  []engineCount
	est []*engineState
	// queue, when set, are the export queue's stats for agentd's own
	// resource, the round's last entry.
	queue *QueueStats
}

var _ resourceSource = (*roundMetrics)(nil)

// withQueue adds agentd's own resource with the queue stats s.
func (r *roundMetrics) withQueue(s QueueStats) {
	r.queue = &s
	r.b.agentResource(r.now)
}

// Len is the number of entries.
func (r *roundMetrics) Len() int {
	n := len(r.cs) + len(r.es)
	if r.queue != nil {
		n++
	}
	return n
}

// Resource is entry i's resource.
func (r *roundMetrics) Resource(i int) *resource.Resource {
	switch {
	case i < len(r.cs):
		return r.cst[i].res
	case i < len(r.cs)+len(r.es):
		return r.est[i-len(r.cs)].res
	}
	return r.b.agent.res
}

// Metrics makes entry i's ResourceMetrics into the builder's scratch: valid
// until the next call.
func (r *roundMetrics) Metrics(i int) *metricdata.ResourceMetrics {
	return r.fill(i, &r.b.scratch)
}

// fill makes entry i's ResourceMetrics into o.
func (r *roundMetrics) fill(i int, o *containerOut) *metricdata.ResourceMetrics {
	switch {
	case i < len(r.cs):
		c := &r.cs[i]
		return r.b.containerMetrics(o, r.cst[i], c.engine, c.container, c.stats, r.now)
	case i < len(r.cs)+len(r.es):
		j := i - len(r.cs)
		return r.b.engineMetrics(o, r.est[j], &r.es[j], r.now)
	}
	return r.b.agentMetrics(o, *r.queue, r.now)
}

// batch makes every entry's ResourceMetrics, each into storage of its own
// (builder.outs, refilled in place round after round): for the sinks that
// keep the whole round (the console, DeltaSink). Valid until the next
// prepare.
func (r *roundMetrics) batch() []*metricdata.ResourceMetrics {
	n := r.Len()
	b := r.b
	if len(b.outs) < n {
		b.outs = append(b.outs, make([]containerOut, n-len(b.outs))...)
	} else if len(b.outs) > 2*n {
		clear(b.outs[n:]) // a round that shrank a lot lets the rest go
		b.outs = b.outs[:n]
	}
	batch := make([]*metricdata.ResourceMetrics, n)
	for i := range n {
		batch[i] = r.fill(i, &b.outs[i])
	}
	return batch
}

func metric[N int64 | float64](m int, data metricdata.Aggregation) metricdata.Metrics {
	d := &Metrics[m]
	return metricdata.Metrics{Name: d.Name, Description: d.Description, Unit: d.Unit, Data: data}
}

// containerMetrics makes container c's ResourceMetrics into o.
func (b *builder) containerMetrics(o *containerOut, st *containerState, e *model.Engine, c *model.Container, s *stats.Stats, now time.Time) *metricdata.ResourceMetrics {
	o.ms = o.ms[:0]
	if s == nil {
		s = &stats.Stats{}
	}
	t := s.Time
	if t.IsZero() {
		t = now
	}
	start := st.start
	if s.Has&stats.FieldCPUModes != 0 {
		p := o.float(mCPUTime, 2)
		p[0] = metricdata.DataPoint[float64]{Attributes: setCPUUser, StartTime: start, Time: t, Value: float64(s.CPUUserNanos) / 1e9}
		p[1] = metricdata.DataPoint[float64]{Attributes: setCPUSystem, StartTime: start, Time: t, Value: float64(s.CPUSystemNanos) / 1e9}
	}
	if s.Has&stats.FieldCPUUsage != 0 {
		gaugeOf(o.float(mCPUUsage, 1), s.CPUUsage, t)
	}
	if s.Has&stats.FieldCPUThrottling != 0 {
		sumOf(o.int(mCPUPeriods, 1), int64(s.CPUPeriods), start, t)
		sumOf(o.int(mCPUThrottledPeriods, 1), int64(s.CPUThrottledPeriods), start, t)
		sumOf(o.float(mCPUThrottledTime, 1), float64(s.CPUThrottledNanos)/1e9, start, t)
	}
	b.pressure(o, s, stats.PressureCPU, start, t)
	if s.Has&stats.FieldMemoryUsage != 0 {
		sumOf(o.int(mMemoryUsage, 1), int64(s.MemoryUsage), start, t)
	}
	if s.Has&stats.FieldMemoryRSS != 0 {
		sumOf(o.int(mMemoryRSS, 1), int64(s.MemoryRSS), start, t)
	}
	if s.Has&stats.FieldMemoryWorkingSet != 0 {
		sumOf(o.int(mMemoryWorkingSet, 1), int64(s.MemoryWorkingSet), start, t)
	}
	if s.Has&(stats.FieldMemoryWorkingSet|stats.FieldMemoryLimit) == stats.FieldMemoryWorkingSet|stats.FieldMemoryLimit {
		sumOf(o.int(mMemoryAvailable, 1), int64(stats.Sub0(s.MemoryLimit, s.MemoryWorkingSet)), start, t)
	}
	if s.Has&stats.FieldMemoryLimit != 0 {
		sumOf(o.int(mMemoryLimit, 1), int64(s.MemoryLimit), start, t)
	}
	if s.Has&stats.FieldMemoryFaults != 0 {
		p := o.int(mPagingFaults, 2)
		p[0] = metricdata.DataPoint[int64]{Attributes: setFaultMajor, StartTime: start, Time: t, Value: int64(s.MemoryMajorFaults)}
		p[1] = metricdata.DataPoint[int64]{Attributes: setFaultMinor, StartTime: start, Time: t, Value: int64(s.MemoryMinorFaults)}
	}
	if s.Has&stats.FieldOOMKills != 0 {
		sumOf(o.int(mOOMKills, 1), int64(s.OOMKills), start, t)
	}
	b.pressure(o, s, stats.PressureMemory, start, t)
	if s.Has&stats.FieldDisk != 0 {
		b.diskIO(o, s, start, t)
	}
	b.pressure(o, s, stats.PressureIO, start, t)
	if s.Has&stats.FieldNetwork != 0 && len(s.Networks) > 0 {
		if b.netSets == nil {
			b.netSets = make(map[string][2]attribute.Set)
		}
		p := o.int(mNetworkIO, 2*len(s.Networks))
		for i, n := range s.Networks {
			sets, ok := b.netSets[n.Name]
			if !ok {
				iface := semconv.NetworkInterfaceName(n.Name)
				sets = [2]attribute.Set{
					attribute.NewSet(semconv.NetworkIODirectionReceive, iface),
					attribute.NewSet(semconv.NetworkIODirectionTransmit, iface),
				}
				b.netSets[n.Name] = sets
			}
			p[2*i] = metricdata.DataPoint[int64]{Attributes: sets[0], StartTime: start, Time: t, Value: int64(n.RxBytes)}
			p[2*i+1] = metricdata.DataPoint[int64]{Attributes: sets[1], StartTime: start, Time: t, Value: int64(n.TxBytes)}
		}
	}
	if s.Has&stats.FieldPids != 0 {
		sumOf(o.int(mPidsCount, 1), int64(s.Pids), start, t)
	}
	if c.State.Running() && !c.StartedAt.IsZero() && !c.StartedAt.After(t) {
		gaugeOf(o.float(mUptime, 1), t.Sub(c.StartedAt).Seconds(), t)
	}
	created := c.CreatedAt
	if created.IsZero() || created.After(start) {
		created = start
	}
	if e.Type == model.Docker || e.Type == model.Podman { // the engines that count restarts
		sumOf(o.int(mRestarts, 1), int64(max(c.RestartCount, 0)), created, t)
	}
	state := c.State
	if _, ok := engineStateSet[state]; !ok {
		state = model.StateUnknown
	}
	p := o.int(mState, 1)
	p[0] = metricdata.DataPoint[int64]{Attributes: engineStateSet[state], Time: t, Value: 1}
	if set, ok := healthSet[c.Health]; ok {
		p := o.int(mHealth, 1)
		p[0] = metricdata.DataPoint[int64]{Attributes: set, Time: t, Value: 1}
	}
	o.scope[0] = metricdata.ScopeMetrics{Scope: b.scope, Metrics: o.ms}
	o.rm = metricdata.ResourceMetrics{Resource: st.res, ScopeMetrics: o.scope[:]}
	return &o.rm
}

// pressure appends the stall time of resource r (a stats.Pressure index),
// some and, where the kernel counts it, full.
func (b *builder) pressure(o *containerOut, s *stats.Stats, r int, start, t time.Time) {
	ps := &s.Pressure[r]
	if s.Has&stats.FieldPressure == 0 || !ps.HasSome {
		return
	}
	n := 1
	if ps.HasFull {
		n = 2
	}
	p := o.float(pressureMetric[r], n)
	p[0] = metricdata.DataPoint[float64]{Attributes: setStallSome, StartTime: start, Time: t, Value: float64(ps.SomeNanos) / 1e9}
	if ps.HasFull {
		p[1] = metricdata.DataPoint[float64]{Attributes: setStallFull, StartTime: start, Time: t, Value: float64(ps.FullNanos) / 1e9}
	}
}

// diskIO appends container.disk.io: by device when the sample has devices,
// else (engine fallback) the totals without system.device.
func (b *builder) diskIO(o *containerOut, s *stats.Stats, start, t time.Time) {
	if len(s.Disks) == 0 {
		p := o.int(mDiskIO, 2)
		p[0] = metricdata.DataPoint[int64]{Attributes: setDiskRead, StartTime: start, Time: t, Value: int64(s.DiskReadBytes)}
		p[1] = metricdata.DataPoint[int64]{Attributes: setDiskWrite, StartTime: start, Time: t, Value: int64(s.DiskWriteBytes)}
		return
	}
	if b.diskSets == nil {
		b.diskSets = make(map[string][2]attribute.Set)
	}
	p := o.int(mDiskIO, 2*len(s.Disks))
	for i := range s.Disks {
		d := &s.Disks[i]
		sets, ok := b.diskSets[d.Device]
		if !ok {
			dev := semconv.SystemDevice(d.Device)
			sets = [2]attribute.Set{
				attribute.NewSet(semconv.DiskIODirectionRead, dev),
				attribute.NewSet(semconv.DiskIODirectionWrite, dev),
			}
			b.diskSets[d.Device] = sets
		}
		p[2*i] = metricdata.DataPoint[int64]{Attributes: sets[0], StartTime: start, Time: t, Value: int64(d.ReadBytes)}
		p[2*i+1] = metricdata.DataPoint[int64]{Attributes: sets[1], StartTime: start, Time: t, Value: int64(d.WriteBytes)}
	}
}

// engineMetrics makes the ResourceMetrics of engine ec into o.
func (b *builder) engineMetrics(o *containerOut, st *engineState, ec *engineCount, now time.Time) *metricdata.ResourceMetrics {
	o.ms = o.ms[:0]
	pts := o.int(mEngineContainers, len(engineStates))
	for i, s := range engineStates {
		pts[i] = metricdata.DataPoint[int64]{Attributes: engineStateSet[s], Time: now, Value: ec.counts[s]}
	}
	var up int64
	if ec.engine.Connected {
		up = 1
	}
	gaugeOf(o.int(mEngineUp, 1), up, now)
	if r := ec.requests; r != nil {
		sumOf(o.int(mEngineRequests, 1), int64(r.Requests), r.Since, now)
		sumOf(o.int(mEngineRequestWaits, 1), int64(r.Waits), r.Since, now)
		sumOf(o.float(mEngineRequestWaitTime, 1), r.WaitTime.Seconds(), r.Since, now)
		if !r.CoalescedSince.IsZero() {
			sumOf(o.int(mEngineRequestsCoalesced, 1), int64(r.Coalesced), r.CoalescedSince, now)
		}
	}
	o.scope[0] = metricdata.ScopeMetrics{Scope: b.scope, Metrics: o.ms}
	o.rm = metricdata.ResourceMetrics{Resource: st.res, ScopeMetrics: o.scope[:]}
	return &o.rm
}
