package podman

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/agentd-dev/agentd/engine"
	"github.com/agentd-dev/agentd/model"
)

// conmonLine is a conmon command line as podman 4.3 starts it (root, vfs
// storage of a test's own).
const conmonLine = "/usr/bin/conmon --api-version 1 -c b0f2 -u b0f2 -r /usr/bin/runc " +
	"-b /var/tmp/x/root/vfs-containers/b0f2/userdata -p /var/tmp/x/runroot/vfs-containers/b0f2/userdata/pidfile " +
	"-n pl-a --exit-dir /var/tmp/x/tmp/exits --full-attach -l k8s-file:/var/tmp/x/root/vfs-containers/b0f2/userdata/ctr.log " +
	"--log-level warning --runtime-arg --log-format=json --runtime-arg --log " +
	"--runtime-arg=/var/tmp/x/runroot/vfs-containers/b0f2/userdata/oci-log " +
	"--conmon-pidfile /var/tmp/x/runroot/vfs-containers/b0f2/userdata/conmon.pid --exit-command /usr/bin/podman " +
	"--exit-command-arg --root --exit-command-arg /var/tmp/x/root --exit-command-arg --runroot " +
	"--exit-command-arg /var/tmp/x/runroot --exit-command-arg --log-level --exit-command-arg warning " +
	"--exit-command-arg --cgroup-manager --exit-command-arg cgroupfs --exit-command-arg --tmpdir " +
	"--exit-command-arg /var/tmp/x/tmp --exit-command-arg --network-config-dir --exit-command-arg  " +
	"--exit-command-arg --storage-driver --exit-command-arg vfs --exit-command-arg container " +
	"--exit-command-arg cleanup --exit-command-arg b0f2"

func TestParseConmon(t *testing.T) {
	full := Conmon{ID: "b0f2", Name: "pl-a", Bundle: "/var/tmp/x/root/vfs-containers/b0f2/userdata",
		PIDFile: "/var/tmp/x/runroot/vfs-containers/b0f2/userdata/pidfile", ExitDir: "/var/tmp/x/tmp/exits",
		Runtime: "/usr/bin/runc", Root: "/var/tmp/x/root", RunRoot: "/var/tmp/x/runroot", TmpDir: "/var/tmp/x/tmp", StorageDriver: "vfs"}
	tests := []struct {
		name string
		argv []string
		want Conmon
		ok   bool
	}{
		{"podman 4.3's command line gives the container and its storage", strings.Split(conmonLine, " "), full, true},
		{"long options with = and glued short options read the same",
			[]string{"conmon", "--cid=abc", "-nname", "--bundle=/s/overlay-containers/abc/userdata", "--exit-dir=/run/libpod/exits",
				"--exit-command-arg=--root=/s"},
			Conmon{ID: "abc", Name: "name", Bundle: "/s/overlay-containers/abc/userdata", ExitDir: "/run/libpod/exits", Root: "/s", StorageDriver: "overlay"}, true},
		{"without the exit command the storage comes from the bundle",
			[]string{"conmon", "-c", "abc", "-b", "/var/lib/containers/storage/overlay-containers/abc/userdata"},
			Conmon{ID: "abc", Bundle: "/var/lib/containers/storage/overlay-containers/abc/userdata", Root: "/var/lib/containers/storage", StorageDriver: "overlay"}, true},
		{"an exec session's conmon is marked",
			[]string{"conmon", "-c", "abc", "-u", "sess", "--exec", "-b", "/s/overlay-containers/abc/userdata"},
			Conmon{ID: "abc", Bundle: "/s/overlay-containers/abc/userdata", Root: "/s", StorageDriver: "overlay", Exec: true}, true},
		{"a conmon of another manager (no podman bundle, no root) is not podman's",
			[]string{"conmon", "-c", "abc", "-b", "/run/crio/abc"}, Conmon{ID: "abc", Bundle: "/run/crio/abc"}, false},
		{"no container ID is not a container's conmon", []string{"conmon", "--version"}, Conmon{}, false},
		{"an option missing its value at the end is ignored", []string{"conmon", "-c"}, Conmon{}, false},
		{"an empty command line is nothing", nil, Conmon{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseConmon(tt.argv)
			if got != tt.want || ok != tt.ok {
				t.Errorf("ParseConmon:\n got %+v, %v\nwant %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestParseContainersJSON(t *testing.T) {
	in := `[{"id":"b0f2","names":["pl-a"],"image":"bcc9","layer":"9cac",
	  "metadata":"{\"image-name\":\"localhost/local/busybox:latest\",\"image-id\":\"bcc9\",\"name\":\"pl-a\",\"created-at\":1796534002}",
	  "created":"2026-12-06T05:13:22.054416264Z","flags":{"MountLabel":""}},
	 {"id":"bd01","names":["working-container"],"image":"bcc9","metadata":"not json","created":"2026-12-06T05:13:22Z"}]`
	got, err := ParseContainersJSON([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []StoredContainer{
		{ID: "b0f2", Name: "pl-a", ImageID: "bcc9", ImageName: "localhost/local/busybox:latest",
			Created: time.Date(2026, 12, 6, 5, 13, 22, 54416264, time.UTC), Podman: true},
		{ID: "bd01", Name: "working-container", ImageID: "bcc9", Created: time.Date(2026, 12, 6, 5, 13, 22, 0, time.UTC)},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	errs := []struct {
		name, in string
		err      error
	}{
		{"an entry without an ID is a bad answer", `[{"names":["x"]}]`, engine.ErrBadAnswer},
		{"not JSON is an error", `{`, nil},
	}
	for _, tt := range errs {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseContainersJSON([]byte(tt.in))
			if err == nil || tt.err != nil && !errors.Is(err, tt.err) {
				t.Errorf("error %v, want %v", err, tt.err)
			}
		})
	}
}

func TestParseExitAndPIDFiles(t *testing.T) {
	tests := []struct {
		name  string
		parse func([]byte) (int, error)
		in    string
		want  int
		ok    bool
	}{
		{"an exit code", ParseExitFile, "7", 7, true},
		{"an exit code with a newline", ParseExitFile, "137\n", 137, true},
		{"-1 is conmon's code for unknown", ParseExitFile, "-1", -1, true},
		{"an exit code above 255 is refused", ParseExitFile, "256", 0, false},
		{"an empty exit file is refused", ParseExitFile, "", 0, false},
		{"a PID", ParsePIDFile, "24186", 24186, true},
		{"PID 0 is refused", ParsePIDFile, "0", 0, false},
		{"junk is refused", ParsePIDFile, "x1", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.parse([]byte(tt.in))
			if got != tt.want || (err == nil) != tt.ok {
				t.Errorf("got %d, %v; want %d, ok=%v", got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestDiffContainers(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	t1, t2, now := t0.Add(time.Second), t0.Add(2*time.Second), t0.Add(time.Minute)
	created := model.Container{ID: "a", State: model.StateCreated, CreatedAt: t0}
	running := model.Container{ID: "a", State: model.StateRunning, CreatedAt: t0, StartedAt: t1, PID: 10}
	exited := model.Container{ID: "a", State: model.StateExited, CreatedAt: t0, StartedAt: t1, FinishedAt: t2, ExitCode: 7}
	exitedUnknown := exited
	exitedUnknown.FinishedAt, exitedUnknown.ExitCode = time.Time{}, 0
	again := running
	again.StartedAt, again.PID = t2, 11
	m := func(cs ...model.Container) map[string]model.Container { return byID(cs) }
	tests := []struct {
		name     string
		old, cur map[string]model.Container
		want     string
	}{
		{"a new created container is a create", m(), m(created), "create@0"},
		{"a new running container is a create and a start with its PID", m(), m(running), "create@0 start@1/pid10"},
		{"a new exited container ran in between", m(), m(exited), "create@0 start@1 die@2/exit7"},
		{"a created container that runs is a start", m(created), m(running), "start@1/pid10"},
		{"a running container that exited is a die with its code", m(running), m(exited), "die@2/exit7"},
		{"an exit whose code was missed is a die without a code, stamped now", m(running), m(exitedUnknown), "die@60"},
		{"a container that ran and exited in between is a start and a die", m(created), m(exited), "start@1 die@2/exit7"},
		{"a restart between two readings is a die and a start", m(running), m(again), "die@2 start@2/pid11"},
		{"a removed running container is a die and a destroy", m(running), m(), "die@60 destroy@60"},
		{"a removed exited container is a destroy", m(exited), m(), "destroy@60"},
		{"no change is nothing", m(running), m(running), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, ch := range diffContainers(tt.old, tt.cur, now) {
				s := fmt.Sprintf("%s@%d", strings.TrimPrefix(string(ch.Type), "container."), int(ch.Time.Sub(t0).Seconds()))
				if ch.PID != 0 {
					s += fmt.Sprintf("/pid%d", ch.PID)
				}
				if ch.ExitCode != nil {
					s += fmt.Sprintf("/exit%d", *ch.ExitCode)
				}
				got = append(got, s)
			}
			if g := strings.Join(got, " "); g != tt.want {
				t.Errorf("got %q, want %q", g, tt.want)
			}
		})
	}
}

// inotifyEvent encodes one inotify event as read(2) returns it.
func inotifyEvent(wd int32, name string) []byte {
	n := (len(name) + 1 + 15) / 16 * 16
	b := make([]byte, unix.SizeofInotifyEvent+n)
	binary.NativeEndian.PutUint32(b[0:4], uint32(wd))
	binary.NativeEndian.PutUint32(b[4:8], unix.IN_CLOSE_WRITE)
	binary.NativeEndian.PutUint32(b[12:16], uint32(n))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

func TestInotifyNames(t *testing.T) {
	b := append(inotifyEvent(1, "abc"), inotifyEvent(2, "bolt_state.db")...)
	b = append(b, inotifyEvent(1, "def")...)
	if got := fmt.Sprint(inotifyNames(b, 1)); got != "[abc def]" {
		t.Errorf("names of watch 1: %s", got)
	}
	if got := inotifyNames(b[:len(b)-3], 1); fmt.Sprint(got) != "[abc]" {
		t.Errorf("a cut event is left out: %v", got)
	}
	if got := inotifyNames(b, -1); got != nil {
		t.Errorf("no exit directory watched: %v", got)
	}
}

// TestDaemonlessAdapterOnAFakeStorage reads a storage laid out as podman
// leaves it, with no conmon running: a container never started is created,
// one whose PID file is there exited, with the code of its exit file.
func TestDaemonlessAdapterOnAFakeStorage(t *testing.T) {
	dir := t.TempDir()
	root, run := filepath.Join(dir, "root"), filepath.Join(dir, "run")
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(root, "overlay-containers", "containers.json"), `[
	  {"id":"c1","names":["made"],"image":"i1","metadata":"{\"image-name\":\"docker.io/library/x:1\",\"name\":\"made\"}"},
	  {"id":"c2","names":["ran"],"image":"i1","metadata":"{\"image-name\":\"x\",\"name\":\"ran\"}"},
	  {"id":"c3","names":["buildah"],"image":"i1","metadata":"{}"}]`)
	write(filepath.Join(root, "overlay-containers", "c2", "userdata", "config.json"), `{"linux":{"cgroupsPath":"machine.slice:libpod:c2"}}`)
	write(filepath.Join(run, "overlay-containers", "c2", "userdata", "pidfile"), "999999999")
	write(filepath.Join(run, "overlay-containers", "c2", "userdata", "conmon.pid"), "999999998")
	write(filepath.Join(dir, "exits", "c2"), "3")
	a, err := NewDaemonlessAdapter(model.Engine{Endpoint: root}, "/proc", nil)
	if err != nil {
		t.Fatal(err)
	}
	a.lay.runRoot, a.lay.exitDir = run, filepath.Join(dir, "exits")
	list, err := a.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, c := range list {
		got[c.ID] = fmt.Sprintf("%s %s %s/%v %d %s", c.Name, c.State, c.ImageName, c.ImageTags, c.ExitCode, c.CgroupPath)
	}
	want := map[string]string{
		"c1": "made created docker.io/library/x/[1] 0 ",
		"c2": "ran exited x/[] 3 /machine.slice/libpod-c2.scope",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
	if _, err := a.Inspect(t.Context(), "c3"); !errors.Is(err, engine.ErrNotFound) {
		t.Errorf("buildah's container: %v, want ErrNotFound", err)
	}
}

// FuzzParseConmon: any command line parses without a panic, and one that
// is accepted names a container and a storage.
func FuzzParseConmon(f *testing.F) {
	f.Add(conmonLine)
	f.Add("conmon --cid=abc -b /s/overlay-containers/abc/userdata --exit-command-arg --root=/s")
	f.Add("conmon -c")
	f.Fuzz(func(t *testing.T, line string) {
		c, ok := ParseConmon(strings.Split(line, " "))
		if ok && (c.ID == "" || c.Root == "") {
			t.Errorf("accepted %+v", c)
		}
	})
}

// FuzzParseContainersJSON: any containers.json parses without a panic, and
// every container it returns has an ID.
func FuzzParseContainersJSON(f *testing.F) {
	f.Add([]byte(`[{"id":"b0f2","names":["pl-a"],"image":"bcc9","metadata":"{\"image-name\":\"x:1\",\"name\":\"pl-a\",\"created-at\":1}","created":"2026-12-06T05:13:22Z"}]`))
	f.Add([]byte(`[{"id":"x","metadata":"{\"created-at\":-1}"}]`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, err := ParseContainersJSON(b)
		if err != nil {
			return
		}
		for _, c := range cs {
			if c.ID == "" {
				t.Errorf("container without an ID: %+v", c)
			}
		}
		_, _ = ParseExitFile(b)
		_, _ = ParsePIDFile(b)
	})
}
