package stats

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// copyTree copies testdata tree name to a temporary directory whose files a
// test may change, and returns a Reader of it.
func copyTree(t *testing.T, name string) (*Reader, string) {
	t.Helper()
	src := filepath.Join("testdata", name)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	must(t, err)
	return NewReader(filepath.Join(dst, "proc"), filepath.Join(dst, "cgroup")), dst
}

// killWatch is a KillWatch whose count the test sets.
type killWatch struct {
	n        uint64
	watching bool
}

func (w *killWatch) KillsSeen() (uint64, bool) { return w.n, w.watching }

// TestReaderReadsRareFilesWhenTheyMayHaveChanged changes the files of rare
// changes between reads and checks when a read sees the change: the OOM kill
// counter when the KillWatch saw a kill (every read without a watch), the v1
// throttling counters every read under a quota, and everything on the rare
// read rareEvery reads later.
func TestReaderReadsRareFilesWhenTheyMayHaveChanged(t *testing.T) {
	v1Mem := filepath.Join("cgroup", "memory", "docker", "0123abcd")
	v1CPU := filepath.Join("cgroup", "cpu", "docker", "0123abcd")
	v2Dir := filepath.Join("cgroup", "system.slice", "docker-0123abcd.scope")
	type step struct {
		write map[string]string // file (under the tree) to content, before the read
		kill  bool              // the KillWatch sees a kill before the read
		// want: the OOM kills, throttled periods and memory limit the read reports
		oom, throttled, limit uint64
	}
	tests := []struct {
		name      string
		tree      string
		pid       int
		watch     *killWatch
		steps     []step
		rareAfter step   // after the steps, the reads up to the next rare one, then this
		then      []step // reads after the rare one
	}{
		{
			name: "v1 with a kill watch reads oom_control only after a kill", tree: "v1", pid: 4242, watch: &killWatch{watching: true},
			steps: []step{
				{oom: 2, throttled: 45},
				{write: map[string]string{filepath.Join(v1Mem, "memory.oom_control"): "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"}, oom: 2, throttled: 45},
				{kill: true, oom: 3, throttled: 45},
			},
			rareAfter: step{write: map[string]string{filepath.Join(v1Mem, "memory.oom_control"): "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n"}, oom: 4, throttled: 45},
		},
		{
			name: "v1 without a watch reading the kernel log reads oom_control every time", tree: "v1", pid: 4242, watch: &killWatch{watching: false},
			steps: []step{
				{oom: 2, throttled: 45},
				{write: map[string]string{filepath.Join(v1Mem, "memory.oom_control"): "oom_kill_disable 0\nunder_oom 0\noom_kill 5\n"}, oom: 5, throttled: 45},
			},
			rareAfter: step{oom: 5, throttled: 45},
		},
		{
			name: "v1 under a quota reads the throttling counters every time", tree: "v1", pid: 4242, watch: &killWatch{watching: true},
			steps: []step{
				{oom: 2, throttled: 45},
				{write: map[string]string{filepath.Join(v1CPU, "cpu.stat"): "nr_periods 130\nnr_throttled 50\nthrottled_time 3600000000\n"}, oom: 2, throttled: 50},
			},
			rareAfter: step{oom: 2, throttled: 50},
		},
		{
			name: "v1 without periods of a quota reads the throttling counters on rare reads", tree: "v1", pid: 4242, watch: &killWatch{watching: true},
			steps: []step{
				{write: map[string]string{filepath.Join(v1CPU, "cpu.stat"): "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"}, oom: 2, throttled: 0},
				{write: map[string]string{filepath.Join(v1CPU, "cpu.stat"): "nr_periods 130\nnr_throttled 50\nthrottled_time 3600000000\n"}, oom: 2, throttled: 0},
			},
			rareAfter: step{oom: 2, throttled: 50},
		},
		{
			name: "v1 reads the throttling counters every time once they counted periods", tree: "v1", pid: 4242, watch: &killWatch{watching: true},
			steps: []step{
				{write: map[string]string{filepath.Join(v1CPU, "cpu.stat"): "nr_periods 0\nnr_throttled 0\nthrottled_time 0\n"}, oom: 2, throttled: 0},
				{oom: 2, throttled: 0},
			},
			// The rare read sees the first periods; from then on every read
			// reads them.
			rareAfter: step{write: map[string]string{filepath.Join(v1CPU, "cpu.stat"): "nr_periods 10\nnr_throttled 4\nthrottled_time 100\n"}, oom: 2, throttled: 4},
			then:      []step{{write: map[string]string{filepath.Join(v1CPU, "cpu.stat"): "nr_periods 20\nnr_throttled 9\nthrottled_time 300\n"}, oom: 2, throttled: 9}},
		},
		{
			name: "v2 reads memory.max on rare reads and memory.events after a kill", tree: "v2", pid: 777, watch: &killWatch{watching: true},
			steps: []step{
				{oom: 1, throttled: 12, limit: 268435456},
				{write: map[string]string{filepath.Join(v2Dir, "memory.max"): "1048576\n"}, oom: 1, throttled: 12, limit: 268435456},
				{write: map[string]string{filepath.Join(v2Dir, "memory.events"): "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n"}, kill: true, oom: 2, throttled: 12, limit: 268435456},
			},
			rareAfter: step{oom: 2, throttled: 12, limit: 1048576},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, dir := copyTree(t, tt.tree)
			r.SetKillWatch(tt.watch)
			cg, err := r.Locate(tt.pid, "")
			must(t, err)
			defer r.Release(&cg)
			cg.phase = 0 // rare reads are the 1st, the 7th, ...: none among the steps
			var buf []byte
			read := func(i int, st step) {
				t.Helper()
				for f, content := range st.write {
					must(t, os.WriteFile(filepath.Join(dir, f), []byte(content), 0o644))
				}
				if st.kill {
					tt.watch.n++
				}
				var s Stats
				if err := r.Read(&cg, tt.pid, &s, &buf); err != nil {
					t.Fatalf("read %d: %v", i, err)
				}
				if s.OOMKills != st.oom || s.CPUThrottledPeriods != st.throttled || s.MemoryLimit != st.limit {
					t.Errorf("read %d: OOM kills %d, throttled periods %d, limit %d; want %d, %d, %d",
						i, s.OOMKills, s.CPUThrottledPeriods, s.MemoryLimit, st.oom, st.throttled, st.limit)
				}
			}
			for i, st := range tt.steps {
				read(i, st)
			}
			// Until the next rare read nothing changes: the last step's values.
			last := tt.steps[len(tt.steps)-1]
			for i := len(tt.steps); !cg.rare(); i++ {
				read(i, step{oom: last.oom, throttled: last.throttled, limit: last.limit})
				if i > 2*rareEvery {
					t.Fatal("no rare read")
				}
			}
			read(-1, tt.rareAfter)
			for i, st := range tt.then {
				read(100+i, st)
			}
		})
	}
}
