// Command cripod is the testbed's CRI client where cri-tools (crictl) are not
// to be had: it runs a pod as the kubelet does (internal/cripod: a
// host-network pod sandbox and one container, with the kubelet's
// io.kubernetes.* labels), reads a container's CRI ContainerStats, and
// removes a pod. TestVMHostTodaysEnginesFiguresMatchTheEngines builds it
// static (CGO_ENABLED=0) and runs it in the VM host against containerd 2's
// CRI plugin.
//
//	cripod run -pod NAME -namespace NS -uid UID -name CONTAINER -image IMAGE [-env K=V]... [-cgroup-parent PATH] -- COMMAND...
//	    prints the pod sandbox's ID and the container's ID on one line
//	cripod stats CONTAINER-ID
//	    prints the container's ContainerStats as JSON (internal/cripod.Stats)
//	cripod rm POD-ID
//	    stops and removes the pod sandbox
//
// Every subcommand takes -endpoint (default /run/containerd/containerd.sock)
// and -timeout (default 5m: the VM host is emulated, and with the testbed
// machine at a load average of 70 the guest's step that starts its three
// containers took over two minutes).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/agentd-dev/agentd/internal/cripod"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "cripod:", err)
		os.Exit(1)
	}
}

// envFlag collects -env K=V flags.
type envFlag map[string]string

func (e envFlag) String() string { return fmt.Sprint(map[string]string(e)) }

func (e envFlag) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("-env %q: want KEY=VALUE", s)
	}
	e[k] = v
	return nil
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: cripod run|stats|rm [flags]")
	}
	sub := args[0]
	fs := flag.NewFlagSet("cripod "+sub, flag.ContinueOnError)
	endpoint := fs.String("endpoint", "/run/containerd/containerd.sock", "the CRI runtime service's unix socket")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long the subcommand may take")
	var pod, ns, uid, name, image, cgroupParent string
	env := envFlag{}
	if sub == "run" {
		fs.StringVar(&pod, "pod", "", "the pod's name")
		fs.StringVar(&ns, "namespace", "default", "the pod's Kubernetes namespace")
		fs.StringVar(&uid, "uid", "", "the pod's UID")
		fs.StringVar(&name, "name", "", "the container's name")
		fs.StringVar(&image, "image", "", "the container's image")
		fs.Var(env, "env", "KEY=VALUE in the container's environment (repeatable)")
		fs.StringVar(&cgroupParent, "cgroup-parent", "", "the pod's cgroup parent, as the kubelet gives it (cgroupfs: /kubepods/besteffort/podUID)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	conn, err := cripod.Dial(*endpoint)
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	switch sub {
	case "run":
		if pod == "" || uid == "" || name == "" || image == "" || fs.NArg() == 0 {
			return errors.New("run: -pod, -uid, -name, -image and a command are required")
		}
		sb := cripod.Sandbox(pod, ns, uid, "", nil)
		sb.Linux.CgroupParent = cgroupParent
		podID, ctrID, err := cripod.Run(ctx, rt, sb, cripod.Container(sb, name, image, fs.Args(), env, nil))
		if err != nil {
			if podID != "" {
				err = errors.Join(err, cripod.Remove(context.WithoutCancel(ctx), rt, podID))
			}
			return err
		}
		fmt.Println(podID, ctrID)
	case "stats":
		if fs.NArg() != 1 {
			return errors.New("stats: one container ID")
		}
		s, err := cripod.ContainerStats(ctx, rt, fs.Arg(0))
		if err != nil {
			return err
		}
		return json.NewEncoder(os.Stdout).Encode(s)
	case "rm":
		if fs.NArg() != 1 {
			return errors.New("rm: one pod sandbox ID")
		}
		return cripod.Remove(ctx, rt, fs.Arg(0))
	default:
		return fmt.Errorf("unknown subcommand %q: want run, stats or rm", sub)
	}
	return nil
}
