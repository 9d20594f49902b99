package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// storm starts a goroutine per container and must have stopped them all when it returns.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPct(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	tests := []struct {
		name string
		ds   []time.Duration
		p    int
		want string
	}{
		{"no samples have no percentile", nil, 99, "n/a"},
		{"one sample is every percentile", ms(7), 50, "7ms"},
		{"the median of 1..100 ms is 50 ms (nearest rank)", ms(hundred...), 50, "50ms"},
		{"the 99th percentile of 1..100 ms is 99 ms", ms(hundred...), 99, "99ms"},
		{"the 100th percentile is the maximum", ms(1, 2, 3), 100, "3ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pct(tt.ds, tt.p); got != tt.want {
				t.Errorf("pct(%d) = %s, want %s", tt.p, got, tt.want)
			}
		})
	}
}

func TestStormPacesAndBoundsTheWorkers(t *testing.T) {
	var mu sync.Mutex
	var running, most, calls int
	rate, err := storm(context.Background(), 20, 200, 0, 3, func(int) error {
		mu.Lock()
		running++
		calls++
		most = max(most, running)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		running--
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 20 || most > 3 {
		t.Errorf("%d calls, at most %d at once; want 20 calls and at most 3", calls, most)
	}
	// 3 workers of 20 ms each cannot keep 200/s: the achieved rate says so.
	if rate <= 0 || rate > 200 {
		t.Errorf("achieved rate %.1f/s, want in (0, 200]", rate)
	}
}

func TestStormReturnsTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	_, err := storm(context.Background(), 5, 1000, 0, 2, func(i int) error {
		if i == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("err %v, want boom", err)
	}
}

func TestStormWithADurationStopsStartingWhenItIsOver(t *testing.T) {
	var calls atomic.Int32
	rate, err := storm(context.Background(), 1000, 100, 200*time.Millisecond, 8, func(int) error {
		calls.Add(1)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 100/s for 200 ms: about 20 starts, far from the cap of 1000.
	if n := calls.Load(); n < 10 || n > 30 {
		t.Errorf("%d starts in 200 ms at 100/s, want about 20", n)
	}
	if rate < 50 || rate > 150 {
		t.Errorf("achieved rate %.1f/s, want about 100", rate)
	}
}

func TestStormWithADurationStopsAtTheCount(t *testing.T) {
	var calls atomic.Int32
	if _, err := storm(context.Background(), 5, 1000, time.Minute, 2, func(int) error {
		calls.Add(1)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 5 {
		t.Errorf("%d starts, want the cap of 5", n)
	}
}

// statLine is a /proc/PID/stat line of a process named comm with the given
// ppid and utime, stime, cutime and cstime.
func statLine(pid int, comm string, ppid int, times ...uint64) string {
	f := []string{strconv.Itoa(pid), "(" + comm + ")", "S", strconv.Itoa(ppid), "1", "1", "0", "-1", "4194560", "100", "0", "0", "0"}
	for _, v := range times {
		f = append(f, strconv.FormatUint(v, 10))
	}
	return strings.Join(append(f, "20", "0", "1", "0", "12345", "1000000", "200"), " ") + "\n"
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name string
		line string
		want procStat
	}{
		{"a plain comm", statLine(7561, "containerd", 1, 10, 20, 30, 40),
			procStat{comm: "containerd", ppid: 1, utime: 10, stime: 20, cutime: 30, cstime: 40}},
		{"a comm with spaces and a ')' is read to the last ')'", statLine(9, "a) b (c) d", 7, 1, 2, 3, 4),
			procStat{comm: "a) b (c) d", ppid: 7, utime: 1, stime: 2, cutime: 3, cstime: 4}},
		{"a comm that looks like the fields after it", statLine(9, "x) S 1 2 3", 8, 5, 6, 7, 8),
			procStat{comm: "x) S 1 2 3", ppid: 8, utime: 5, stime: 6, cutime: 7, cstime: 8}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("parseStat = %+v, want %+v", got, tt.want)
			}
			if got.own() != tt.want.utime+tt.want.stime || got.reaped() != tt.want.cutime+tt.want.cstime {
				t.Errorf("own %d reaped %d, want utime+stime and cutime+cstime", got.own(), got.reaped())
			}
		})
	}
}

func TestParseStatRejects(t *testing.T) {
	for _, tt := range []struct{ name, line string }{
		{"an empty file", ""},
		{"a line without (comm)", "12 containerd S 1 2 3"},
		{"a line cut short after comm", "12 (sh) S 1 2 3 4 5\n"},
		{"a time that is not a number", strings.Replace(statLine(1, "sh", 0, 1, 2, 3, 4), " 3 4 ", " x 4 ", 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := parseStat([]byte(tt.line)); err == nil {
				t.Errorf("parseStat(%q) = %+v, want an error", tt.line, s)
			}
		})
	}
}

// fakeProc writes a proc tree with one stat file per line given, named by its PID.
func fakeProc(t *testing.T, lines map[int]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, line := range lines {
		dir := filepath.Join(root, strconv.Itoa(pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stat"), []byte(line), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestShimReaperIsTheParentOfTheInitsParent(t *testing.T) {
	root := fakeProc(t, map[int]string{
		1:   statLine(1, "init", 0, 5, 5, 900, 100),
		700: statLine(700, "containerd-shim", 1, 2, 3, 4, 5),
		701: statLine(701, "sleep", 700, 0, 0, 0, 0),
	})
	reaper, shim, rs, err := shimReaper(root, 701)
	if err != nil {
		t.Fatal(err)
	}
	if reaper != 1 || shim.comm != "containerd-shim" || rs.reaped() != 1000 {
		t.Errorf("reaper %d (reaped %d), shim %q; want 1 (1000), containerd-shim", reaper, rs.reaped(), shim.comm)
	}
	if _, _, _, err := shimReaper(root, 702); err == nil {
		t.Error("a gone init process: no error")
	}
}

func TestCPUWindowCountsTheEnginesTheShimsAndAgentd(t *testing.T) {
	lines := map[int]string{
		1:   statLine(1, "init", 0, 0, 0, 1000, 0),
		10:  statLine(10, "containerd", 1, 100, 100, 50, 0),
		20:  statLine(20, "agentd", 1, 10, 10, 0, 0),
		700: statLine(700, "containerd-shim", 1, 1, 1, 0, 0),
		701: statLine(701, "sleep", 700, 0, 0, 0, 0),
	}
	root := fakeProc(t, lines)
	w, err := startCPU(root, []int{10}, 20)
	if err != nil {
		t.Fatal(err)
	}
	w.findReaper(701)
	// containerd: 30 ticks own and 20 reaped; init reaped 150 ticks of shims; agentd 5.
	lines[1] = statLine(1, "init", 0, 0, 0, 1150, 0)
	lines[10] = statLine(10, "containerd", 1, 110, 120, 70, 0)
	lines[20] = statLine(20, "agentd", 1, 13, 12, 0, 0)
	root2 := fakeProc(t, lines)
	w.proc = root2
	res := results{}
	var out strings.Builder
	if err := w.end(&out, res, "now"); err != nil {
		t.Fatal(err)
	}
	want := results{"cpu_containerd_s": "0.50", "cpu_shims_s": "1.50", "cpu_engines_s": "2.00", "cpu_agent_s": "0.05", "shim_reaper": "1/init"}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("%s = %q, want %q\n%s", k, res[k], v, out.String())
		}
	}
}

func TestCPUWindowDoesNotCountShimsTwiceWhenTheEngineReapsThem(t *testing.T) {
	root := fakeProc(t, map[int]string{
		10:  statLine(10, "containerd", 1, 0, 0, 0, 0),
		700: statLine(700, "containerd-shim", 10, 1, 1, 0, 0),
		701: statLine(701, "sleep", 700, 0, 0, 0, 0),
	})
	w, err := startCPU(root, []int{10}, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.findReaper(701)
	res := results{}
	var out strings.Builder
	if err := w.end(&out, res, "now"); err != nil {
		t.Fatal(err)
	}
	if res["cpu_shims_s"] != "counted-in-engine" || res["cpu_engines_s"] != "0.00" {
		t.Errorf("shims %q, engines %q; want counted-in-engine, 0.00\n%s", res["cpu_shims_s"], res["cpu_engines_s"], out.String())
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		name string
		args []string
		bad  string // part of the error, "" for none
	}{
		{"the Docker defaults with a logs file are fine", []string{"-logs", "x"}, ""},
		{"a containerd storm without a sink is fine", []string{"-engine", "containerd", "-no-sink", "-rate", "5", "-duration", "10s", "-cpu-pids", "10 20"}, ""},
		{"an unknown engine is refused", []string{"-engine", "podman", "-logs", "x"}, "-engine"},
		{"no logs file and no -no-sink is refused", nil, "-logs"},
		{"a logs file with -no-sink is refused", []string{"-logs", "x", "-no-sink"}, "-no-sink"},
		{"a duration without a rate is refused", []string{"-logs", "x", "-duration", "10s"}, "-duration"},
		{"a label without a value is refused", []string{"-logs", "x", "-label", "k"}, "-label"},
		{"a count of 0 is refused", []string{"-logs", "x", "-count", "0"}, "-count"},
		{"a PID that is not a number is refused", []string{"-no-sink", "-cpu-pids", "10 dockerd"}, "-cpu-pids"},
		{"a PID of 0 is refused", []string{"-no-sink", "-cpu-pids", "0"}, "-cpu-pids"},
		{"containerd without a namespace is refused", []string{"-engine", "containerd", "-no-sink", "-namespace", ""}, "-namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseArgs(tt.args)
			switch {
			case tt.bad == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.bad != "" && (err == nil || !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.bad)):
				t.Errorf("error %v, want a usage error naming %s", err, tt.bad)
			}
		})
	}
}

func TestParseArgsPicksTheEnginesImage(t *testing.T) {
	for engine, want := range map[string]string{"docker": "local/busybox:latest", "containerd": "docker.io/local/busybox:latest"} {
		c, err := parseArgs([]string{"-engine", engine, "-no-sink"})
		if err != nil {
			t.Fatal(err)
		}
		if c.image != want {
			t.Errorf("%s: image %q, want %q", engine, c.image, want)
		}
	}
}

func TestFollowHandsOnUntilAnErrorOrTheEnd(t *testing.T) {
	msgs := make(chan int, 3)
	msgs <- 1
	msgs <- 2
	var got []int
	boom := errors.New("boom")
	err := follow(context.Background(), msgs, nil, func(m int) error {
		got = append(got, m)
		if m == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || len(got) != 2 {
		t.Errorf("err %v after %v, want boom after [1 2]", err, got)
	}
	errs := make(chan error, 1)
	errs <- errors.New("stream broke")
	if err := follow(context.Background(), nil, errs, func(int) error { return nil }); err == nil {
		t.Error("a stream error: none returned")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := follow(ctx, nil, make(chan error), func(int) error { return nil }); err != nil {
		t.Errorf("the end of ctx: %v, want nil", err)
	}
}
