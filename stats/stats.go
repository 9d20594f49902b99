package stats

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentd-dev/agentd/internal/logging"
	"github.com/agentd-dev/agentd/model"
)

// Field is a bit set telling which parts of Stats were read.
type Field uint32

// The fields of Stats.
const (
	FieldCPUTotal         Field = 1 << iota // CPUTotalNanos
	FieldCPUModes                           // CPUUserNanos, CPUSystemNanos
	FieldCPUUsage                           // CPUUsage
	FieldMemoryUsage                        // MemoryUsage
	FieldMemoryRSS                          // MemoryRSS
	FieldMemoryWorkingSet                   // MemoryWorkingSet
	FieldMemoryLimit                        // MemoryLimit (absent: no limit)
	FieldDisk                               // DiskReadBytes, DiskWriteBytes, Disks
	FieldPids                               // Pids
	FieldNetwork                            // Networks
	FieldMemoryFaults                       // MemoryMinorFaults, MemoryMajorFaults
	FieldCPUThrottling                      // CPUPeriods, CPUThrottledPeriods, CPUThrottledNanos
	FieldOOMKills                           // OOMKills
	FieldPressure                           // Pressure (each resource says what it has)
)

// Source says where a sample came from.
type Source string

// The sources of samples.
const (
	SourceCgroupV1  Source = "cgroup-v1"
	SourceCgroupV2  Source = "cgroup-v2"
	SourceEngineAPI Source = "engine-api"
)

// Stats is one sample of a container's resource usage. Counters are
// cumulative since the container (its cgroup) started.
type Stats struct {
	// Time is when the sample was read.
	Time time.Time
	// Source is where it was read from.
	Source Source
	// Has tells which fields hold values.
	Has Field

	CPUTotalNanos  uint64 // cumulative CPU time
	CPUUserNanos   uint64 // cumulative CPU time in user mode
	CPUSystemNanos uint64 // cumulative CPU time in kernel mode
	// CPUUsage is the average number of CPUs used since the previous sample of
	// the same container (1.0 = one core busy); absent on the first sample.
	CPUUsage float64

	MemoryUsage      uint64 // bytes charged to the cgroup, page cache included
	MemoryRSS        uint64 // anonymous memory (v1 total_rss, v2 anon)
	MemoryWorkingSet uint64 // usage minus inactive file cache
	MemoryLimit      uint64 // bytes; see FieldMemoryLimit

	// MemoryMinorFaults and MemoryMajorFaults are the cumulative page
	// faults of the cgroup (memory.stat pgfault minus pgmajfault, and
	// pgmajfault), so that the two add up to every fault.
	MemoryMinorFaults uint64
	MemoryMajorFaults uint64
	// OOMKills counts the processes of the cgroup the OOM killer killed
	// (v2 memory.events oom_kill, v1 memory.oom_control oom_kill).
	OOMKills uint64

	// CPUPeriods, CPUThrottledPeriods and CPUThrottledNanos come from the
	// CFS bandwidth controller (cpu.stat nr_periods, nr_throttled,
	// throttled_usec or v1 throttled_time). They are set only when periods
	// were counted, i.e. the container has (or had) a CPU quota.
	CPUPeriods          uint64
	CPUThrottledPeriods uint64
	CPUThrottledNanos   uint64

	// Pressure is the pressure stall information of the cgroup
	// (cpu.pressure, memory.pressure, io.pressure of the cgroup v2
	// hierarchy, which a hybrid cgroup v1 host has as well), indexed by
	// PressureCPU, PressureMemory and PressureIO.
	Pressure [numPressure]Pressure

	DiskReadBytes  uint64
	DiskWriteBytes uint64
	// Disks holds the byte counters by block device, when the source gives
	// them (the cgroup files do, the engine fallback does not).
	Disks []Disk

	Pids uint64

	// Networks holds the container's interfaces other than lo.
	Networks []Interface
}

// Disk is one block device's cumulative byte counters of a container.
type Disk struct {
	Major, Minor uint32
	// Device is the device's name in /dev (DEVNAME of
	// /sys/dev/block/MAJ:MIN/uevent, e.g. "sda"), or "MAJ:MIN" when the
	// name cannot be read.
	Device     string
	ReadBytes  uint64
	WriteBytes uint64
}

// The resources of Stats.Pressure.
const (
	PressureCPU = iota
	PressureMemory
	PressureIO
	numPressure
)

// Pressure is one resource's cumulative stall time: Some is the time at
// least one task of the cgroup was stalled on the resource, Full the time all
// of its non-idle tasks were at once. Has says which of the two were read
// (cpu.pressure has no full line before Linux 5.13).
type Pressure struct {
	SomeNanos, FullNanos uint64
	HasSome, HasFull     bool
}

// Interface is one network interface's cumulative byte counters.
type Interface struct {
	Name    string
	RxBytes uint64
	TxBytes uint64
}

// Fallback reads one container's stats through its engine's API. It is used
// only for a container whose cgroup cannot be read. Implementations must be
// safe for concurrent use.
type Fallback interface {
	// Stats returns a one-shot sample of c, with Source SourceEngineAPI.
	// The error wraps ErrGone when the engine no longer has c.
	Stats(ctx context.Context, c model.Container) (Stats, error)
}

// ErrGone is wrapped by a Fallback's error when the engine no longer has the
// container: it was removed between the snapshot of the round and the read,
// as containers are, which is no error of the round (its destroy follows as an
// event).
var ErrGone = errors.New("container gone")

// errFirstEmpty marks the first round in a row an engine reported no values
// for a container: one that is ending answers so once, and has no figures
// that round and no error.
var errFirstEmpty = errors.New("first empty answer")

// SamplerConfig configures a Sampler.
type SamplerConfig struct {
	// ProcRoot and CgroupRoot default to /proc and /sys/fs/cgroup.
	ProcRoot, CgroupRoot string
	// Workers bounds how many containers are read at once (default
	// min(4, GOMAXPROCS)).
	Workers int
	// Fallback returns the engine fallback for the engine with this ID, or nil
	// for none. Nil means no fallbacks.
	Fallback func(engineID string) Fallback
	// KillWatch, when not nil, tells when the kernel OOM-killed a process,
	// so that the OOM kill counters are read only then (see Reader.Read).
	KillWatch KillWatch
	// MaxOpenFiles bounds the cgroup and procfs files kept open between
	// samples (see Reader): 0 means DefaultMaxOpenFiles, negative keeps none.
	MaxOpenFiles int
	// FallbackTimeout bounds each Fallback call (default
	// DefaultFallbackTimeout): an engine that accepts and does not answer
	// (stopped with SIGSTOP, wedged) costs one worker that long, not the
	// whole sample.
	FallbackTimeout time.Duration
}

// DefaultFallbackTimeout is SamplerConfig.FallbackTimeout's default.
const DefaultFallbackTimeout = 5 * time.Second

// Sampler samples containers and keeps what it needs between samples (the
// located cgroup and the previous CPU time, per container). Sample must not be
// called concurrently with itself; the Sampler is otherwise safe to share.
type Sampler struct {
	reader   *Reader
	fallback func(string) Fallback
	fbWait   time.Duration
	log      *slog.Logger
	workers  int
	bufs     sync.Pool

	mu    sync.Mutex
	state map[model.ContainerKey]*containerState
	round uint64
}

type containerState struct {
	pid      int
	cg       Cgroup
	cgErr    error
	prevCPU  uint64
	prevTime time.Time
	hasPrev  bool
	round    uint64
	source   Source
	// empty counts the rounds in a row the engine answered with no values.
	empty int
}

func newReader(cfg SamplerConfig) *Reader {
	r := NewReader(cfg.ProcRoot, cfg.CgroupRoot)
	if cfg.KillWatch != nil {
		r.SetKillWatch(cfg.KillWatch)
	}
	switch {
	case cfg.MaxOpenFiles < 0:
		r.SetMaxOpenFiles(0)
	case cfg.MaxOpenFiles > 0:
		r.SetMaxOpenFiles(cfg.MaxOpenFiles)
	}
	return r
}

// NewSampler returns a Sampler that logs the stats source of each container
// at debug level to log (nil discards).
func NewSampler(cfg SamplerConfig, log *slog.Logger) *Sampler {
	w := cfg.Workers
	if w <= 0 {
		w = min(4, runtime.GOMAXPROCS(0))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sampler{
		reader:   newReader(cfg),
		fallback: cfg.Fallback,
		fbWait:   cmp.Or(max(cfg.FallbackTimeout, 0), DefaultFallbackTimeout),
		log:      log,
		workers:  w,
		state:    make(map[model.ContainerKey]*containerState),
	}
	s.bufs.New = func() any { b := make([]byte, 0, 8192); return &b }
	return s
}

// Close closes the files the Sampler keeps open (see Reader). It must not be
// called concurrently with Sample; a Sample after Close opens them anew.
func (s *Sampler) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, st := range s.state {
		s.reader.Release(&st.cg)
		delete(s.state, id)
	}
	return nil
}

// OpenFiles is how many cgroup and procfs files the Sampler keeps open.
func (s *Sampler) OpenFiles() int { return s.reader.OpenFiles() }

// Sample reads every container of cs that has a PID and returns out grown to
// len(cs), out[i] being cs[i]'s sample (Has == 0 when nothing could be read,
// or when the container has no PID and no fallback). It reuses out's
// Networks backing arrays, so samples from an earlier call must not be kept
// past the next. Errors of single containers are joined and returned along
// with everything else that was read; ctx cancellation stops early with
// ctx.Err(). Samplers forget containers that are absent from a call.
func (s *Sampler) Sample(ctx context.Context, cs []model.Container, out []Stats) ([]Stats, error) {
	if cap(out) < len(cs) {
		out = append(out[:cap(out)], make([]Stats, len(cs)-cap(out))...)
	}
	out = out[:len(cs)]

	s.mu.Lock()
	s.round++
	round := s.round
	states := make([]*containerState, len(cs))
	for i := range cs {
		k := cs[i].Key()
		st := s.state[k]
		if st == nil {
			st = &containerState{}
			s.state[k] = st
		}
		st.round = round
		states[i] = st
	}
	for id, st := range s.state {
		if st.round != round {
			s.reader.Release(&st.cg)
			delete(s.state, id)
		}
	}
	s.mu.Unlock()

	errs := make([]error, len(cs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(s.workers, len(cs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bp := s.bufs.Get().(*[]byte)
			defer s.bufs.Put(bp)
			for {
				i := int(next.Add(1) - 1)
				if i >= len(cs) || ctx.Err() != nil {
					return
				}
				errs[i] = s.sampleOne(ctx, &cs[i], states[i], &out[i], bp)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return out, err
	}
	return out, errors.Join(errs...)
}

// sampleOne fills out for c. st is owned by this call. A container whose
// process has exited by the time its figures could not be read, or that its
// engine no longer has or answers with no values for the first time, ended
// between the snapshot and the read, as containers do: it has no figures
// this round and no error (its die follows as an event).
func (s *Sampler) sampleOne(ctx context.Context, c *model.Container, st *containerState, out *Stats, buf *[]byte) error {
	err := s.sampleLive(ctx, c, st, out, buf)
	if err != nil && (c.PID > 0 && s.reader.Exited(c.PID) || errors.Is(err, ErrGone) || errors.Is(err, errFirstEmpty)) {
		return nil
	}
	return err
}

func (s *Sampler) sampleLive(ctx context.Context, c *model.Container, st *containerState, out *Stats, buf *[]byte) error {
	nets, disks := out.Networks[:0], out.Disks[:0]
	*out = Stats{Networks: nets, Disks: disks}
	if c.PID > 0 && (st.pid != c.PID || st.cg.Version == 0) {
		st.pid = c.PID
		st.hasPrev = false
		s.reader.Release(&st.cg)
		st.cg, st.cgErr = s.reader.Locate(c.PID, c.ID)
	}
	var cgErr error
	if c.PID > 0 && st.cgErr == nil {
		out.Time = time.Now()
		cgErr = s.reader.Read(&st.cg, c.PID, out, buf)
		if out.Has != 0 {
			out.Source = SourceCgroupV1
			if st.cg.Version == 2 {
				out.Source = SourceCgroupV2
			}
		}
	}
	if out.Has&^(FieldNetwork|FieldPressure) == 0 {
		// The cgroup could not be read (no PID, not located, or every file
		// missing, e.g. the process just exited): ask the engine, if it can.
		var fb Fallback
		if s.fallback != nil {
			fb = s.fallback(c.EngineID)
		}
		if fb == nil {
			if c.PID > 0 && st.cgErr != nil {
				return fmt.Errorf("container %s (pid %d): %w", c.ID, c.PID, st.cgErr)
			}
			return cgErr
		}
		fctx, cancel := context.WithTimeout(ctx, s.fbWait)
		fs, err := fb.Stats(fctx, *c)
		cancel()
		if err != nil {
			return errors.Join(fmt.Errorf("container %s: engine stats: %w", c.ID, err), cgErr)
		}
		fs.Has &^= FieldCPUUsage
		if fs.Has == 0 {
			// Docker answers an empty document when its shim cannot read the
			// cgroup either ("no metrics received" in dockerd's log), and for
			// a container no longer running. The first such round is one of a
			// container ending (its die event follows); a second is not.
			st.empty++
			err := fmt.Errorf("container %s: engine stats: the engine reported no values", c.ID)
			if st.empty == 1 {
				err = fmt.Errorf("%w: %w", errFirstEmpty, err)
			}
			return errors.Join(err, cgErr)
		}
		st.empty = 0
		*out = fs
		out.Source = SourceEngineAPI
		if out.Time.IsZero() {
			out.Time = time.Now()
		}
	}
	if st.source != out.Source {
		s.log.Debug("container stats source", logging.KeyContainerID, c.ID, "source", out.Source, "cgroup_error", st.cgErr)
		st.source = out.Source
	}
	if out.Has&FieldCPUTotal != 0 {
		if st.hasPrev && out.CPUTotalNanos >= st.prevCPU && out.Time.After(st.prevTime) {
			out.CPUUsage = float64(out.CPUTotalNanos-st.prevCPU) / float64(out.Time.Sub(st.prevTime).Nanoseconds())
			out.Has |= FieldCPUUsage
		}
		st.prevCPU, st.prevTime, st.hasPrev = out.CPUTotalNanos, out.Time, true
	}
	if cgErr != nil {
		return fmt.Errorf("container %s: %w", c.ID, cgErr)
	}
	return nil
}
