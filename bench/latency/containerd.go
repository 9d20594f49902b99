package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd"
	apievents "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/oci"
	"github.com/containerd/typeurl/v2"
)

// containerdEngine runs the containers on a containerd, in a namespace of the
// bench's own, through the containerd client. Its event times are the envelope
// timestamps of containerd's /tasks/start and /tasks/exit events (the init
// process's exit: the "die"). agentd exports a containerd container with its
// containerd ID as container.id (and the namespace as containerd.namespace),
// so the IDs made here match the sink's records as they are.
type containerdEngine struct {
	cli    *containerd.Client
	ns     string
	image  containerd.Image
	labels map[string]string
	prefix string // of the container IDs, random per run

	mu   sync.Mutex
	live map[string]containerd.Container // made and not deleted yet
}

var _ engine = (*containerdEngine)(nil)

func newContainerd(ctx context.Context, cfg config) (*containerdEngine, error) {
	cli, err := containerd.New(cfg.address, containerd.WithDefaultNamespace(cfg.namespace))
	if err != nil {
		return nil, fmt.Errorf("containerd at %s: %w", cfg.address, err)
	}
	img, err := cli.GetImage(ctx, cfg.image)
	if err != nil {
		cli.Close()
		return nil, fmt.Errorf("containerd at %s, namespace %s: image %s (bench/storm.sh imports it): %w", cfg.address, cfg.namespace, cfg.image, err)
	}
	if ok, err := img.IsUnpacked(ctx, ""); err != nil || !ok {
		if err := img.Unpack(ctx, ""); err != nil {
			cli.Close()
			return nil, fmt.Errorf("containerd at %s, namespace %s: unpack image %s: %w", cfg.address, cfg.namespace, cfg.image, err)
		}
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &containerdEngine{cli: cli, ns: cfg.namespace, image: img,
		labels: map[string]string{cfg.labelKey: cfg.labelValue},
		prefix: "storm-" + hex.EncodeToString(b) + "-", live: map[string]containerd.Container{}}, nil
}

func (c *containerdEngine) watch(ctx context.Context, tr *tracker) error {
	msgs, errs := c.cli.Subscribe(ctx,
		fmt.Sprintf("namespace==%q,topic==%q", c.ns, "/tasks/start"),
		fmt.Sprintf("namespace==%q,topic==%q", c.ns, "/tasks/exit"))
	err := follow(ctx, msgs, errs, func(env *events.Envelope) error {
		ev, err := typeurl.UnmarshalAny(env.Event)
		if err != nil {
			return fmt.Errorf("event %s: %w", env.Topic, err)
		}
		switch e := ev.(type) {
		case *apievents.TaskStart:
			tr.setEngine(key{e.ContainerID, "start"}, env.Timestamp)
		case *apievents.TaskExit:
			if e.ID == e.ContainerID { // the init process, not an exec
				tr.setEngine(key{e.ContainerID, "die"}, env.Timestamp)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("containerd events, namespace %s: %w", c.ns, err)
	}
	return nil
}

func (c *containerdEngine) lifecycle(ctx context.Context, i int, life time.Duration, started func(pid int)) (string, error) {
	id := fmt.Sprintf("%s%d", c.prefix, i)
	ctr, err := c.cli.NewContainer(ctx, id,
		containerd.WithNewSnapshot(id, c.image),
		containerd.WithNewSpec(oci.WithImageConfig(c.image), oci.WithProcessArgs("sleep", "1d")),
		containerd.WithContainerLabels(c.labels))
	if err != nil {
		return "", fmt.Errorf("create container %s: %w", id, err)
	}
	c.mu.Lock()
	c.live[id] = ctr
	c.mu.Unlock()
	task, err := ctr.NewTask(ctx, cio.NullIO)
	if err != nil {
		return id, fmt.Errorf("create task of container %s: %w", id, err)
	}
	exited, err := task.Wait(ctx)
	if err != nil {
		return id, fmt.Errorf("wait for task of container %s: %w", id, err)
	}
	if err := task.Start(ctx); err != nil {
		return id, fmt.Errorf("start task of container %s: %w", id, err)
	}
	if started != nil {
		started(int(task.Pid()))
	}
	time.Sleep(life)
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		return id, fmt.Errorf("kill task of container %s: %w", id, err)
	}
	select {
	case <-ctx.Done():
		return id, ctx.Err()
	case <-exited:
	}
	if _, err := task.Delete(ctx); err != nil {
		return id, fmt.Errorf("delete task of container %s: %w", id, err)
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		return id, fmt.Errorf("delete container %s: %w", id, err)
	}
	c.mu.Lock()
	delete(c.live, id)
	c.mu.Unlock()
	return id, nil
}

func (c *containerdEngine) close(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for id, ctr := range c.live {
		if task, err := ctr.Task(ctx, nil); err == nil {
			// Kill and delete in one: a task that still runs is killed.
			if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
				errs = append(errs, fmt.Errorf("delete task of container %s: %w", id, err))
			}
		}
		if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
			errs = append(errs, fmt.Errorf("delete container %s: %w", id, err))
			continue
		}
		delete(c.live, id)
	}
	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "latency: %d containers left in containerd namespace %s\n", len(c.live), c.ns)
	}
	if err := c.cli.Close(); err != nil {
		errs = append(errs, fmt.Errorf("containerd client: %w", err))
	}
	return errors.Join(errs...)
}
