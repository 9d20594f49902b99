package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/docker/api/types/container"

	"github.com/agentd-dev/agentd/model"
	"github.com/agentd-dev/agentd/stats"
)

// StatsAPI is the part of the Docker client Fallback uses;
// *client.Client satisfies it.
type StatsAPI interface {
	ContainerStatsOneShot(ctx context.Context, containerID string) (container.StatsResponseReader, error)
}

// Fallback reads stats through Docker's one-shot stats endpoint
// (GET /containers/{id}/stats?stream=false&one-shot=true). It is safe for
// concurrent use as far as the client is.
type Fallback struct {
	// Client talks to the container's Docker engine.
	Client StatsAPI
}

var _ stats.Fallback = (*Fallback)(nil)

// Stats implements stats.Fallback.
func (d *Fallback) Stats(ctx context.Context, c model.Container) (stats.Stats, error) {
	resp, err := d.Client.ContainerStatsOneShot(ctx, c.ID)
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			err = fmt.Errorf("%w: %w", stats.ErrGone, err)
		}
		return stats.Stats{}, fmt.Errorf("docker stats of %s: %w", c.ID, err)
	}
	defer resp.Body.Close()
	s, err := DecodeStats(resp.Body)
	if err != nil {
		return stats.Stats{}, fmt.Errorf("docker stats of %s: %w", c.ID, err)
	}
	return s, nil
}

// DecodeStats decodes one stats document of the Docker Engine API
// (GET /containers/{id}/stats?stream=false), which podman's compatible API
// answers too.
func DecodeStats(r io.Reader) (stats.Stats, error) {
	var doc container.StatsResponse
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return stats.Stats{}, fmt.Errorf("decode stats: %w", err)
	}
	return fromDocker(&doc), nil
}

// fromDocker converts Docker's stats document. Docker reports v1's
// total_rss/total_inactive_file or v2's anon/inactive_file in memory_stats.stats.
func fromDocker(r *container.StatsResponse) stats.Stats {
	s := stats.Stats{Time: r.Read, Source: stats.SourceEngineAPI}
	cpu := r.CPUStats.CPUUsage
	if cpu.TotalUsage > 0 {
		s.CPUTotalNanos = cpu.TotalUsage
		s.CPUUserNanos = cpu.UsageInUsermode
		s.CPUSystemNanos = cpu.UsageInKernelmode
		s.Has |= stats.FieldCPUTotal | stats.FieldCPUModes
	}
	m := r.MemoryStats
	if m.Usage > 0 {
		s.MemoryUsage = m.Usage
		s.Has |= stats.FieldMemoryUsage
		inactive, ok := m.Stats["total_inactive_file"]
		if !ok {
			inactive, ok = m.Stats["inactive_file"]
		}
		if ok {
			s.MemoryWorkingSet = stats.Sub0(m.Usage, inactive)
			s.Has |= stats.FieldMemoryWorkingSet
		}
		rss, ok := m.Stats["total_rss"]
		if !ok {
			rss, ok = m.Stats["anon"]
		}
		if ok {
			s.MemoryRSS = rss
			s.Has |= stats.FieldMemoryRSS
		}
		// Docker reports the host's memory as the limit of an unlimited
		// container; it cannot be told apart here, so it is passed on.
		if m.Limit > 0 && m.Limit < stats.UnlimitedThreshold {
			s.MemoryLimit = m.Limit
			s.Has |= stats.FieldMemoryLimit
		}
	}
	if rows := r.BlkioStats.IoServiceBytesRecursive; rows != nil {
		for _, e := range rows {
			switch strings.ToLower(e.Op) {
			case "read":
				s.DiskReadBytes += e.Value
			case "write":
				s.DiskWriteBytes += e.Value
			}
		}
		s.Has |= stats.FieldDisk
	}
	if r.PidsStats.Current > 0 {
		s.Pids = r.PidsStats.Current
		s.Has |= stats.FieldPids
	}
	if len(r.Networks) > 0 {
		names := make([]string, 0, len(r.Networks))
		for n := range r.Networks {
			if n != "lo" {
				names = append(names, n)
			}
		}
		sort.Strings(names)
		for _, n := range names {
			ns := r.Networks[n]
			s.Networks = append(s.Networks, stats.Interface{Name: n, RxBytes: ns.RxBytes, TxBytes: ns.TxBytes})
		}
		s.Has |= stats.FieldNetwork
	}
	return s
}
