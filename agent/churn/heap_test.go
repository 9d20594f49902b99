package churn_test

import (
	"bufio"
	"bytes"
	"fmt"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// heapProfile is the live heap by allocation site: in-use bytes per stack,
// the stack named by its first frames outside the runtime.
type heapProfile map[string]int64

// takeHeapProfile reads the heap profile after two collections (a profile
// describes the heap as of the last one completed).
func takeHeapProfile(t *testing.T) heapProfile {
	t.Helper()
	runtime.GC()
	runtime.GC()
	var buf bytes.Buffer
	if err := pprof.Lookup("heap").WriteTo(&buf, 1); err != nil {
		t.Fatalf("heap profile: %v", err)
	}
	p, err := parseHeapProfile(&buf)
	if err != nil {
		t.Fatalf("heap profile: %v", err)
	}
	return p
}

// parseHeapProfile reads the text form of a heap profile (debug=1): a record
// "inuse_objects: inuse_bytes [alloc_objects: alloc_bytes] @ addresses"
// followed by its frames, "#\taddress\tfunction+offset\tfile:line".
func parseHeapProfile(r *bytes.Buffer) (heapProfile, error) {
	p := heapProfile{}
	var (
		inuse  int64
		frames []string
		inRec  bool
	)
	flush := func() {
		if inRec && inuse > 0 {
			p[strings.Join(frames, " < ")] += inuse
		}
		inRec, inuse, frames = false, 0, nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# runtime.MemStats"):
			flush()
			return p, nil
		case strings.HasPrefix(line, "#\t"):
			if !inRec || len(frames) >= 4 {
				continue
			}
			f := strings.Fields(line)
			if len(f) < 4 {
				continue
			}
			fn := f[2]
			if i := strings.LastIndex(fn, "+"); i > 0 {
				fn = fn[:i]
			}
			if strings.HasPrefix(fn, "runtime.") && len(frames) == 0 {
				continue
			}
			frames = append(frames, fmt.Sprintf("%s (%s)", fn, f[3][strings.LastIndex(f[3], "/")+1:]))
		case strings.Contains(line, " @ ") && !strings.HasPrefix(line, "heap profile"):
			flush()
			n, _, ok := strings.Cut(line, "[")
			if !ok {
				return nil, fmt.Errorf("heap profile record %q: no [", line)
			}
			_, bytesPart, ok := strings.Cut(n, ":")
			if !ok {
				return nil, fmt.Errorf("heap profile record %q: no in-use bytes", line)
			}
			v, err := strconv.ParseInt(strings.TrimSpace(bytesPart), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("heap profile record %q: %w", line, err)
			}
			inuse, inRec = v, true
		}
	}
	flush()
	return p, sc.Err()
}

// heapGrowth describes the n allocation sites whose live bytes grew most
// from before to after.
func heapGrowth(before, after heapProfile, n int) string {
	type site struct {
		stack string
		grew  int64
	}
	var sites []site
	for s, v := range after {
		if d := v - before[s]; d > 0 {
			sites = append(sites, site{s, d})
		}
	}
	sort.Slice(sites, func(i, j int) bool { return sites[i].grew > sites[j].grew })
	var b strings.Builder
	for _, s := range sites[:min(n, len(sites))] {
		fmt.Fprintf(&b, "\n  +%d KiB  %s", s.grew>>10, s.stack)
	}
	return b.String()
}

// keep holds what TestHeapGrowthNamesTheSite allocates until it looks.
var keep [][]byte

func TestHeapGrowthNamesTheSite(t *testing.T) {
	before := takeHeapProfile(t)
	for range 64 {
		keep = append(keep, make([]byte, 32<<10))
	}
	after := takeHeapProfile(t)
	got := heapGrowth(before, after, 3)
	keep = nil
	if !strings.Contains(got, "TestHeapGrowthNamesTheSite") {
		t.Fatalf("the growth does not name the allocating function:%s", got)
	}
	t.Logf("grew most:%s", got)
}
