package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/events"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/client"
)

// dockerEngine runs the containers on the Docker of DOCKER_HOST (the host's
// by default). Its event times are Docker's timeNano of the container's start
// and die events.
type dockerEngine struct {
	cli    *client.Client
	image  string
	label  string // key=value
	labels map[string]string
	// remove: each container is removed after its exit (a storm); without it
	// the containers stay until close.
	remove bool

	mu   sync.Mutex
	live map[string]struct{} // made and not removed yet
}

var _ engine = (*dockerEngine)(nil)

func newDocker(cfg config) (*dockerEngine, error) {
	cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, fmt.Errorf("docker client: %w", err)
	}
	return &dockerEngine{cli: cli, image: cfg.image, label: cfg.label, labels: map[string]string{cfg.labelKey: cfg.labelValue},
		remove: cfg.remove, live: map[string]struct{}{}}, nil
}

func (d *dockerEngine) watch(ctx context.Context, tr *tracker) error {
	msgs, errs := d.cli.Events(ctx, events.ListOptions{Filters: filters.NewArgs(
		filters.Arg("type", "container"), filters.Arg("label", d.label),
		filters.Arg("event", "start"), filters.Arg("event", "die"))})
	err := follow(ctx, msgs, errs, func(m events.Message) error {
		tr.setEngine(key{m.Actor.ID, string(m.Action)}, time.Unix(0, m.TimeNano))
		return nil
	})
	if err != nil {
		return fmt.Errorf("docker events: %w", err)
	}
	return nil
}

func (d *dockerEngine) lifecycle(ctx context.Context, i int, life time.Duration, started func(pid int)) (string, error) {
	c, err := d.cli.ContainerCreate(ctx, &container.Config{
		Image: d.image, Cmd: []string{"sleep", "1d"}, Labels: d.labels,
	}, &container.HostConfig{}, nil, nil, "")
	if err != nil {
		return "", fmt.Errorf("create container %d: %w", i, err)
	}
	d.mu.Lock()
	d.live[c.ID] = struct{}{}
	d.mu.Unlock()
	if err := d.cli.ContainerStart(ctx, c.ID, container.StartOptions{}); err != nil {
		return c.ID, fmt.Errorf("start container %s: %w", c.ID, err)
	}
	if started != nil {
		// Only asked of one container: an inspect is work for dockerd.
		j, err := d.cli.ContainerInspect(ctx, c.ID)
		if err != nil {
			return c.ID, fmt.Errorf("inspect container %s: %w", c.ID, err)
		}
		if j.State != nil {
			started(j.State.Pid)
		}
	}
	time.Sleep(life)
	if !d.remove {
		if err := d.cli.ContainerKill(ctx, c.ID, "KILL"); err != nil {
			return c.ID, fmt.Errorf("kill container %s: %w", c.ID, err)
		}
		return c.ID, nil
	}
	if err := d.cli.ContainerKill(ctx, c.ID, "KILL"); err != nil {
		return c.ID, fmt.Errorf("kill container %s: %w", c.ID, err)
	}
	// Not running, rather than the next exit: that may be over already.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	waitC, waitErr := d.cli.ContainerWait(wctx, c.ID, container.WaitConditionNotRunning)
	select {
	case <-waitC:
	case err := <-waitErr:
		return c.ID, fmt.Errorf("wait for container %s: %w", c.ID, err)
	}
	if err := d.cli.ContainerRemove(ctx, c.ID, container.RemoveOptions{}); err != nil {
		return c.ID, fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	d.mu.Lock()
	delete(d.live, c.ID)
	d.mu.Unlock()
	return c.ID, nil
}

func (d *dockerEngine) close(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for id := range d.live {
		if err := d.cli.ContainerRemove(ctx, id, container.RemoveOptions{Force: true}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s: %w", id, err))
			continue
		}
		delete(d.live, id)
	}
	if err := d.cli.Close(); err != nil {
		errs = append(errs, fmt.Errorf("docker client: %w", err))
	}
	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "latency: %d containers left on docker\n", len(d.live))
	}
	return errors.Join(errs...)
}
