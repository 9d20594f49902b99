package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentd-dev/agentd/activation"
	"github.com/agentd-dev/agentd/internal/testbed"
	"github.com/agentd-dev/agentd/model"
)

func TestEnginesCommand(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.Containerd, testbed.SystemdHost)
	// The systemd host's Docker is socket-activated: start it so that the tree
	// has a nested engine (left running; this test is not about activation).
	testbed.Run(t, "docker", "exec", testbed.SystemdHostName(), "systemctl", "start", "docker.service")
	hostDockerID := testbed.Run(t, "docker", "info", "-f", "{{.ID}}")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)

	t.Run("--json lists the host Docker and the Docker nested in the systemd host", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if err := runEngines(ctx, []string{"--json"}, &out, &errOut, log); err != nil {
			t.Fatalf("%v: %s", err, errOut.String())
		}
		var got struct {
			Engines []engineView `json:"engines"`
		}
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("%v: %s", err, out.String())
		}
		var host, nested bool
		for _, e := range got.Engines {
			if e.Type == model.Docker && e.ID == hostDockerID && e.Prefix == "" && e.Containers >= 1 {
				host = true
			}
			if e.Type == model.Docker && e.Prefix == testbed.SystemdHostName() && e.ParentEngineID == hostDockerID {
				nested = true
			}
		}
		if !host || !nested {
			t.Fatalf("host docker found %v, nested docker found %v in:\n%s", host, nested, out.String())
		}
	})
	t.Run("the socket units of the systemd host (podman.socket, docker.socket) are listed, never started", func(t *testing.T) {
		th := testbed.SystemdHostName()
		// podman.service exits when idle; stop it so the unit only listens.
		testbed.Run(t, "docker", "exec", th, "systemctl", "stop", "podman.service")
		var out, errOut bytes.Buffer
		if err := runEngines(ctx, nil, &out, &errOut, log); err != nil {
			t.Fatalf("%v: %s", err, errOut.String())
		}
		pid := testbed.SystemdHostPID(t)
		for _, want := range []string{
			fmt.Sprintf("podman podman.socket -> podman.service  /proc/%d/root/run/podman/podman.sock  ", pid),
			fmt.Sprintf("docker docker.socket -> docker.service  /proc/%d/root/run/docker.sock  ", pid),
		} {
			if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), fmt.Sprintf("systemd pid %d", pid)) {
				t.Fatalf("no line %q in:\n%s", want, out.String())
			}
		}
		if state, _ := exec.Command("docker", "exec", th, "systemctl", "is-active", "podman.service").Output(); strings.TrimSpace(string(state)) == "active" {
			t.Errorf("listing the socket units started podman.service")
		}
	})
	t.Run("the tree shows the nested Docker indented under its container", func(t *testing.T) {
		var out, errOut bytes.Buffer
		if err := runEngines(ctx, nil, &out, &errOut, log); err != nil {
			t.Fatalf("%v: %s", err, errOut.String())
		}
		text := out.String()
		want := "  container " + testbed.SystemdHostName() + " ("
		if !strings.Contains(text, want) || !strings.Contains(text, "\n    docker ") {
			t.Fatalf("tree lacks %q and an indented docker line:\n%s", want, text)
		}
	})
}

func TestEnginesCommandOnAnEmptyProcfs(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := runEngines(context.Background(), []string{"--proc", t.TempDir()}, &out, &errOut, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{"no container engine found.", "dockerd", "podman.sock", "systemctl start docker.socket"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestEnginesCommandRejectsBadArguments(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"an unknown flag is a usage error", []string{"--bogus"}},
		{"a stray argument is a usage error", []string{"extra"}},
		{"a missing procfs root is an error", []string{"--proc", "/nonexistent/proc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := runEngines(context.Background(), tt.args, &out, &errOut, slog.New(slog.DiscardHandler))
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.args[0] != "--proc" && !errors.Is(err, errUsage) {
				t.Fatalf("error %v does not wrap errUsage", err)
			}
		})
	}
}

func TestEngineLineSaysWhatIsDaemonless(t *testing.T) {
	tests := []struct {
		name string
		v    engineView
		want string
	}{
		{"a podman service", engineView{Engine: model.Engine{Type: model.Podman, Version: "4.3.1", Endpoint: "/run/podman/podman.sock", PID: 7}, Containers: 2},
			"podman 4.3.1  /run/podman/podman.sock  pid 7  2 running containers"},
		{"a daemonless podman", engineView{Engine: model.Engine{Type: model.Podman, Daemonless: true, Endpoint: "/var/lib/containers/storage", PID: 9}, Containers: 1},
			"podman - (daemonless: its storage and conmon processes)  /var/lib/containers/storage  pid 9  1 running containers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := engineLine(tt.v); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestEnginesShowsEachPodmanOnce(t *testing.T) {
	svc := engineView{Engine: model.Engine{ID: "podman:/run/podman/podman.sock", Type: model.Podman, Version: "4.3.1",
		Endpoint: "/run/podman/podman.sock", Storage: "/var/lib/containers/storage", PID: 7}, Containers: 2}
	dl := engineView{Engine: model.Engine{ID: "podman:/var/lib/containers/storage", Type: model.Podman, Daemonless: true,
		Endpoint: "/var/lib/containers/storage", Storage: "/var/lib/containers/storage", PID: 9}, Containers: 0}
	rootless := engineView{Engine: model.Engine{ID: "podman:/proc/5/root/home/u/.local/share/containers/storage", Type: model.Podman,
		Daemonless: true, Endpoint: "/proc/5/root/home/u/.local/share/containers/storage", Storage: "/home/u/.local/share/containers/storage",
		Prefix: "th", PID: 11}, Containers: 1}
	userUnit := activation.SocketEngine{Type: model.Podman, Unit: "podman.socket", Service: "podman.service",
		Endpoint: "/proc/44/root/run/user/1001/podman/podman.sock", SystemdPID: 44, State: activation.StateListening}
	storageOf := func(u activation.SocketEngine) (string, error) {
		if u.SystemdPID == 44 {
			return "/proc/44/root/home/u/.local/share/containers/storage", nil
		}
		return "", errors.New("no such systemd")
	}
	// The user's systemd and the conmon reach one directory through two roots.
	same := func(a, b string) bool {
		strip := func(p string) string { return p[strings.Index(p, "/root/")+len("/root"):] }
		return strip(a) == strip(b)
	}
	tests := []struct {
		name  string
		views []engineView
		units []activation.SocketEngine
		want  []string
	}{
		{"a podman service and the daemonless view of its storage are one line, the service's with the storage",
			[]engineView{svc, dl}, nil,
			[]string{"podman 4.3.1  /run/podman/podman.sock  pid 7  2 running containers  storage /var/lib/containers/storage"}},
		{"a rootless user's storage shows the user's podman.socket that would start its service",
			[]engineView{rootless}, []activation.SocketEngine{userUnit},
			[]string{"podman - (daemonless: its storage and conmon processes)  /proc/5/root/home/u/.local/share/containers/storage  pid 11  1 running containers  unit podman.socket  service /proc/44/root/run/user/1001/podman/podman.sock (listening: starts on the first connection)"}},
		{"a socket unit of another storage is left to the socket units' list",
			[]engineView{dl}, []activation.SocketEngine{userUnit},
			[]string{"podman - (daemonless: its storage and conmon processes)  /var/lib/containers/storage  pid 9  0 running containers"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, v := range onePodman(slices.Clone(tt.views), tt.units, storageOf, same) {
				got = append(got, engineLine(v))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}

// TestEnginesShowsARootlessPodmanWithItsService: a user of the systemd host
// with podman.socket enabled (its service not running) runs a container
// with `podman run -d`: `agentd engines` shows the user's podman once, its
// storage with the socket unit and socket of its service, and starts
// nothing.
func TestEnginesShowsARootlessPodmanWithItsService(t *testing.T) {
	testbed.Require(t, testbed.Root, testbed.Docker, testbed.SystemdHost)
	u := testbed.NewRootlessUser(t)
	u.Run(t, "systemctl", "--user", "stop", "podman.service")
	u.Run(t, "podman", "run", "-d", "--net=host", "--pid=host", testbed.BusyboxImage, "sleep", "1000")
	storage := "/home/" + u.Name + "/.local/share/containers/storage"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := runEngines(ctx, []string{"--json"}, &out, &errOut, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatalf("%v: %s", err, errOut.String())
	}
	var got struct {
		Engines []engineView `json:"engines"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	var views []engineView
	for _, e := range got.Engines {
		if e.Type == model.Podman && e.Storage == storage {
			views = append(views, e)
		}
	}
	if len(views) != 1 {
		t.Fatalf("%d engines of the user's storage %s, want 1:\n%s", len(views), storage, out.String())
	}
	v := views[0]
	if !strings.HasSuffix(v.ServiceEndpoint, "/root"+u.PodmanSocket()) || !strings.HasSuffix(v.StorageEndpoint, "/root"+storage) ||
		(v.Daemonless && v.Unit != "podman.socket") || v.Containers != 1 {
		t.Errorf("the user's podman: %+v, want its storage with its podman.socket at %s and 1 running container", v, u.PodmanSocket())
	}
	t.Logf("the user's podman: %s", engineLine(v))
}
