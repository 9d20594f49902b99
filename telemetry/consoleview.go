package telemetry

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/attribute"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/agentd-dev/agentd/model"
)

// This file turns a round of metrics and event records into the text the
// Console prints: an engine tree and, per engine, a table of its containers
// in the columns and units of `docker stats`. It reads only what the
// resources and data points carry, so it renders any batch, recorded or live.

// consoleEngine is one engine of a round, from its resource and metrics.
type consoleEngine struct {
	id, typ, runtime, version, endpoint, prefix, parentCID string
	up                                                     bool
	running, total                                         int64
	parent                                                 string // ID of the engine managing parentCID, "" if unknown
	containers                                             []*consoleContainer
}

// consoleContainer is one container of a round.
type consoleContainer struct {
	id, name, engineID string
	cpu                float64 // CPUs in use
	mem, limit, pids   int64
	rx, tx, rd, wr     int64
	has                map[string]bool // metric names seen
}

// consoleRound is a round reduced to what the Console shows.
type consoleRound struct {
	engines    []*consoleEngine // sorted: host first, then by name
	byID       map[string]*consoleEngine
	names      map[string]string // engine ID -> human name, unique in the round
	containers int
}

// point is one data point of any int or float Gauge or Sum.
type point struct {
	attrs attribute.Set
	v     float64
}

// pointsOf returns the data points of d whatever its aggregation: a metric
// reads the same whether the table declares it a Gauge or a Sum.
func pointsOf(d metricdata.Aggregation) []point {
	var out []point
	switch d := d.(type) {
	case metricdata.Gauge[int64]:
		out = appendPoints(out, d.DataPoints)
	case metricdata.Gauge[float64]:
		out = appendPoints(out, d.DataPoints)
	case metricdata.Sum[int64]:
		out = appendPoints(out, d.DataPoints)
	case metricdata.Sum[float64]:
		out = appendPoints(out, d.DataPoints)
	}
	return out
}

func appendPoints[N int64 | float64](out []point, dps []metricdata.DataPoint[N]) []point {
	for _, p := range dps {
		out = append(out, point{p.Attributes, float64(p.Value)})
	}
	return out
}

func attrString(s attribute.Set, key string) string {
	v, _ := s.Value(attribute.Key(key))
	return v.AsString()
}

// runningResource reports whether a container's resource says it is
// running: its state metric, when it has one, names the state.
func runningResource(rm *metricdata.ResourceMetrics) bool {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != Metrics[mState].Name {
				continue
			}
			for _, p := range pointsOf(m.Data) {
				if p.v > 0 {
					return attrString(p.attrs, AttrState) == string(model.StateRunning)
				}
			}
		}
	}
	return true
}

// reduceRound reads a batch into engines and their containers.
func reduceRound(batch []*metricdata.ResourceMetrics) consoleRound {
	r := consoleRound{byID: map[string]*consoleEngine{}, names: map[string]string{}}
	var ctrs []*consoleContainer
	engineOf := map[string]string{} // container ID -> engine ID
	for _, rm := range batch {
		res := rm.Resource
		if id := resAttr(res, "container.id"); id != "" {
			c := &consoleContainer{id: printable(id), name: printable(resAttr(res, "container.name")), engineID: resAttr(res, AttrEngineID), has: map[string]bool{}}
			if c.name == "" {
				c.name = shortID(id)
			}
			engineOf[id] = c.engineID
			if !runningResource(rm) {
				continue // a stopped container carries only its state, restarts and health
			}
			readContainer(c, rm)
			ctrs = append(ctrs, c)
			continue
		}
		id := resAttr(res, AttrEngineID)
		if id == "" {
			continue // agentd's own resource
		}
		e := engineFromResource(res)
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				for _, p := range pointsOf(m.Data) {
					switch m.Name {
					case Metrics[mEngineUp].Name:
						e.up = p.v > 0
					case Metrics[mEngineContainers].Name:
						e.total += int64(p.v)
						if attrString(p.attrs, AttrState) == "running" {
							e.running += int64(p.v)
						}
					}
				}
			}
		}
		r.byID[id] = e
		r.engines = append(r.engines, e)
	}
	for _, e := range r.engines {
		if e.parentCID != "" {
			e.parent = engineOf[e.parentCID]
		}
	}
	for _, c := range ctrs {
		e := r.byID[c.engineID]
		if e == nil { // a container whose engine resource is not in the batch
			e = &consoleEngine{id: c.engineID, up: true}
			r.byID[c.engineID] = e
			r.engines = append(r.engines, e)
		}
		e.containers = append(e.containers, c)
		r.containers++
	}
	for _, e := range r.engines {
		sort.Slice(e.containers, func(i, j int) bool {
			a, b := e.containers[i], e.containers[j]
			return a.name < b.name || a.name == b.name && a.id < b.id
		})
	}
	// Two engines of one name (two Docker daemons on the host) are told
	// apart by their endpoints.
	count := map[string]int{}
	for _, e := range r.engines {
		r.names[e.id] = r.baseName(e)
		count[r.names[e.id]]++
	}
	for _, e := range r.engines {
		if n := r.names[e.id]; count[n] > 1 && e.endpoint != "" {
			r.names[e.id] = n + " at " + e.endpoint
		}
	}
	sort.SliceStable(r.engines, func(i, j int) bool {
		a, b := r.engines[i], r.engines[j]
		if a.prefix != b.prefix {
			return a.prefix < b.prefix
		}
		return r.name(a) < r.name(b) || r.name(a) == r.name(b) && a.id < b.id
	})
	return r
}

func engineFromResource(res *resource.Resource) *consoleEngine {
	return &consoleEngine{
		id:        resAttr(res, AttrEngineID),
		typ:       printable(resAttr(res, AttrEngineType)),
		runtime:   printable(resAttr(res, "container.runtime.name")),
		version:   printable(resAttr(res, "container.runtime.version")),
		endpoint:  printable(resAttr(res, AttrEngineEndpoint)),
		prefix:    printable(resAttr(res, AttrEnginePrefix)),
		parentCID: printable(resAttr(res, AttrEngineParentContainerID)),
	}
}

func readContainer(c *consoleContainer, rm *metricdata.ResourceMetrics) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			pts := pointsOf(m.Data)
			if len(pts) == 0 {
				continue
			}
			c.has[m.Name] = true
			switch m.Name {
			case Metrics[mCPUUsage].Name:
				c.cpu = pts[0].v
			case Metrics[mMemoryUsage].Name:
				c.mem = int64(pts[0].v)
			case Metrics[mMemoryLimit].Name:
				c.limit = int64(pts[0].v)
			case Metrics[mPidsCount].Name:
				c.pids = int64(pts[0].v)
			case Metrics[mNetworkIO].Name:
				for _, p := range pts {
					switch attrString(p.attrs, "network.io.direction") {
					case "receive":
						c.rx += int64(p.v)
					case "transmit":
						c.tx += int64(p.v)
					}
				}
			case Metrics[mDiskIO].Name:
				for _, p := range pts {
					switch attrString(p.attrs, "disk.io.direction") {
					case "read":
						c.rd += int64(p.v)
					case "write":
						c.wr += int64(p.v)
					}
				}
			}
		}
	}
}

// name is the engine's human name (see EngineName), with its endpoint when
// another engine of the round has the same name.
func (r consoleRound) name(e *consoleEngine) string { return r.names[e.id] }

func (r consoleRound) baseName(e *consoleEngine) string {
	parentType := ""
	if p := r.byID[e.parent]; p != nil {
		parentType = p.typ
	}
	return EngineName(e.typ, e.runtime, e.version, e.prefix, parentType, e.id)
}

// EngineName is an engine's human name for people (the console, the CLI):
// its type, its version without distribution suffixes, and where it lives —
// "(host)", or "in docker:th" for an engine inside container th of a Docker
// engine (parentType "" leaves the engine type out: "in th"). A CRI view
// names the runtime that serves it ("cri on containerd 1.6.20 (host)").
// With no type it falls back to id.
func EngineName(typ, runtime, version, prefix, parentType, id string) string {
	var b strings.Builder
	switch {
	case typ == "" && runtime == "":
		b.WriteString(printable(id))
	case typ == "":
		b.WriteString(runtime)
	case runtime != "" && runtime != typ:
		b.WriteString(typ + " on " + runtime)
	default:
		b.WriteString(typ)
	}
	if v := shortVersion(version); v != "" {
		b.WriteString(" " + v)
	}
	switch {
	case prefix == "":
		b.WriteString(" (host)")
	case parentType != "":
		b.WriteString(" in " + parentType + ":" + prefix)
	default:
		b.WriteString(" in " + prefix)
	}
	return b.String()
}

// shortVersion drops a distribution's suffix ("20.10.24+dfsg1",
// "1.6.20~ds1") and a leading v.
func shortVersion(v string) string {
	if i := strings.IndexAny(v, "+~"); i > 0 {
		v = v[:i]
	}
	return strings.TrimPrefix(v, "v")
}

// renderEngines writes the engine tree: host engines, and under each the
// containers of it that hold engines, with those engines indented below.
func (r consoleRound) renderEngines(b *strings.Builder) {
	var t strings.Builder
	tw := tabwriter.NewWriter(&t, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ENGINE\tSTATE\tCONTAINERS\tENDPOINT")
	children := map[string][]*consoleEngine{} // parent engine ID -> nested engines
	var roots []*consoleEngine
	for _, e := range r.engines {
		if e.parent != "" && r.byID[e.parent] != nil && e.parent != e.id {
			children[e.parent] = append(children[e.parent], e)
			continue
		}
		roots = append(roots, e)
	}
	containerName := map[string]string{}
	for _, e := range r.engines {
		for _, c := range e.containers {
			containerName[c.id] = c.name
		}
	}
	seen := map[string]bool{}
	var walk func(e *consoleEngine, indent string)
	walk = func(e *consoleEngine, indent string) {
		if seen[e.id] {
			return
		}
		seen[e.id] = true
		state := "down"
		if e.up {
			state = "up"
		}
		fmt.Fprintf(tw, "%s%s\t%s\t%d running / %d\t%s\n", indent, r.baseName(e), state, e.running, e.total, orDash(e.endpoint))
		kids := children[e.id]
		sort.SliceStable(kids, func(i, j int) bool { return kids[i].parentCID < kids[j].parentCID })
		for i := 0; i < len(kids); {
			cid := kids[i].parentCID
			name := containerName[cid]
			if name == "" {
				name = lastPathElem(kids[i].prefix)
			}
			fmt.Fprintf(tw, "%s  └ %s\t\t\t\n", indent, name)
			for ; i < len(kids) && kids[i].parentCID == cid; i++ {
				walk(kids[i], indent+"      ")
			}
		}
	}
	for _, e := range roots {
		walk(e, "")
	}
	for _, e := range r.engines { // a cycle in bad input: still listed, flat
		walk(e, "")
	}
	tw.Flush()
	writeTrimmed(b, t.String())
}

// writeTrimmed writes s to b without the spaces tabwriter leaves at the
// ends of lines.
func writeTrimmed(b *strings.Builder, s string) {
	for _, l := range strings.SplitAfter(s, "\n") {
		if l == "" {
			continue
		}
		b.WriteString(strings.TrimRight(l, " \n") + "\n")
	}
}

// renderContainers writes, for each engine with containers, its name and a
// table in the columns of `docker stats`.
func (r consoleRound) renderContainers(b *strings.Builder) {
	for _, e := range r.engines {
		if len(e.containers) == 0 {
			continue
		}
		b.WriteByte('\n')
		b.WriteString(r.name(e) + "\n")
		tw := tabwriter.NewWriter(b, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tNET I/O\tBLOCK I/O\tPIDS")
		for _, c := range e.containers {
			cpu, mem, pids := "--", "--", "--"
			if c.has[Metrics[mCPUUsage].Name] {
				cpu = fmt.Sprintf("%.2f%%", c.cpu*100)
			}
			if c.has[Metrics[mMemoryUsage].Name] {
				limit := "--"
				if c.has[Metrics[mMemoryLimit].Name] && c.limit > 0 {
					limit = binarySize(c.limit)
				}
				mem = binarySize(c.mem) + " / " + limit
			}
			if c.has[Metrics[mPidsCount].Name] {
				pids = fmt.Sprint(c.pids)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s / %s\t%s / %s\t%s\n", shortID(c.id), c.name, cpu, mem,
				decimalSize(c.rx), decimalSize(c.tx), decimalSize(c.rd), decimalSize(c.wr), pids)
		}
		tw.Flush()
	}
}

// complete reports whether the round shows everything a snapshot needs:
// every engine up and every container with its CPU (which takes two samples).
func (r consoleRound) complete() bool {
	for _, e := range r.engines {
		if !e.up {
			return false
		}
		for _, c := range e.containers {
			if !c.has[Metrics[mCPUUsage].Name] {
				return false
			}
		}
	}
	return true
}

// eventLine renders one event record as one line: time, engine, container,
// event and what it carries ("exit code 137, OOM killed"). names gives the
// human names of the engines of the last round, by ID.
func eventLine(r *sdklog.Record, names map[string]string, loc *time.Location) string {
	res := r.Resource()
	id := resAttr(res, AttrEngineID)
	engine := names[id]
	if engine == "" {
		e := engineFromResource(res)
		engine = EngineName(e.typ, e.runtime, e.version, e.prefix, "", id)
	}
	name := printable(resAttr(res, "container.name"))
	if name == "" {
		name = shortID(printable(resAttr(res, "container.id")))
	}
	var details []string
	exit, signal, oom := "", "", false
	r.WalkAttributes(func(kv attribute.KeyValue) bool {
		switch string(kv.Key) {
		case AttrExitCode:
			exit = kv.Value.String()
		case AttrSignal:
			signal = kv.Value.String()
		case AttrOOMKilled:
			oom = kv.Value.AsBool()
		}
		return true
	})
	if exit != "" {
		details = append(details, "exit code "+exit)
	}
	if signal != "" {
		details = append(details, "signal "+signal)
	}
	if oom {
		details = append(details, "OOM killed")
	}
	ev := strings.TrimPrefix(r.EventName(), "container.")
	line := fmt.Sprintf("%s  %s  %s  %s", r.Timestamp().In(loc).Format(time.TimeOnly), engine, name, ev)
	if len(details) > 0 {
		line += "  (" + strings.Join(details, ", ") + ")"
	}
	return line
}

// binarySize is n in binary units as `docker stats` prints memory ("68.25MiB").
func binarySize(n int64) string {
	return humanSize(float64(n), 1024, 4, []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"})
}

// decimalSize is n in decimal units as `docker stats` prints I/O ("1.21kB").
func decimalSize(n int64) string {
	return humanSize(float64(n), 1000, 3, []string{"B", "kB", "MB", "GB", "TB", "PB", "EB"})
}

func humanSize(v, base float64, precision int, units []string) string {
	i := 0
	for v >= base && i < len(units)-1 {
		v /= base
		i++
	}
	s := fmt.Sprintf("%.*g", precision, v)
	if strings.ContainsRune(s, 'e') && i < len(units)-1 { // 999.9 rounds to 1e+03
		i++
		s = fmt.Sprintf("%.*g", precision, v/base)
	}
	return s + units[i]
}

// printable is s fit for a terminal: invalid UTF-8 and control characters
// (tabs, newlines, escape sequences from a container's name) become '?',
// so that what engines report can neither break the columns nor drive the
// terminal.
func printable(s string) string {
	s = strings.ToValidUTF8(s, "?")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return '?'
		}
		return r
	}, s)
}

func lastPathElem(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return orDash(p)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
