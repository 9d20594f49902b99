package stats

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/docker/docker/api/types/container"

	"github.com/agentd-dev/agentd/model"
)

// DockerStatsAPI is the part of the Docker client DockerFallback uses;
// *client.Client satisfies it.
type DockerStatsAPI interface {
	ContainerStatsOneShot(ctx context.Context, containerID string) (container.StatsResponseReader, error)
}

// DockerFallback reads stats through Docker's one-shot stats endpoint
// (GET /containers/{id}/stats?stream=false&one-shot=true). It is safe for
// concurrent use as far as the client is.
type DockerFallback struct {
	// Client talks to the container's Docker engine.
	Client DockerStatsAPI
}

var _ Fallback = (*DockerFallback)(nil)

// Stats implements Fallback.
func (d *DockerFallback) Stats(ctx context.Context, c model.Container) (Stats, error) {
	resp, err := d.Client.ContainerStatsOneShot(ctx, c.ID)
	if err != nil {
		return Stats{}, fmt.Errorf("docker stats of %s: %w", c.ID, err)
	}
	defer resp.Body.Close()
	s, err := DecodeDockerStats(resp.Body)
	if err != nil {
		return Stats{}, fmt.Errorf("docker stats of %s: %w", c.ID, err)
	}
	return s, nil
}

// DecodeDockerStats decodes one stats document of the Docker Engine API
// (GET /containers/{id}/stats?stream=false), which podman's compatible API
// answers too.
func DecodeDockerStats(r io.Reader) (Stats, error) {
	var doc container.StatsResponse
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return Stats{}, fmt.Errorf("decode stats: %w", err)
	}
	return fromDocker(&doc), nil
}

// fromDocker converts Docker's stats document. Docker reports v1's
// total_rss/total_inactive_file or v2's anon/inactive_file in memory_stats.stats.
func fromDocker(r *container.StatsResponse) Stats {
	s := Stats{Time: r.Read, Source: SourceEngineAPI}
	cpu := r.CPUStats.CPUUsage
	if cpu.TotalUsage > 0 {
		s.CPUTotalNanos = cpu.TotalUsage
		s.CPUUserNanos = cpu.UsageInUsermode
		s.CPUSystemNanos = cpu.UsageInKernelmode
		s.Has |= FieldCPUTotal | FieldCPUModes
	}
	m := r.MemoryStats
	if m.Usage > 0 {
		s.MemoryUsage = m.Usage
		s.Has |= FieldMemoryUsage
		inactive, ok := m.Stats["total_inactive_file"]
		if !ok {
			inactive, ok = m.Stats["inactive_file"]
		}
		if ok {
			s.MemoryWorkingSet = sub0(m.Usage, inactive)
			s.Has |= FieldMemoryWorkingSet
		}
		rss, ok := m.Stats["total_rss"]
		if !ok {
			rss, ok = m.Stats["anon"]
		}
		if ok {
			s.MemoryRSS = rss
			s.Has |= FieldMemoryRSS
		}
		// Docker reports the host's memory as the limit of an unlimited
		// container; it cannot be told apart here, so it is passed on.
		if m.Limit > 0 && m.Limit < unlimitedThreshold {
			s.MemoryLimit = m.Limit
			s.Has |= FieldMemoryLimit
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
		s.Has |= FieldDisk
	}
	if r.PidsStats.Current > 0 {
		s.Pids = r.PidsStats.Current
		s.Has |= FieldPids
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
			s.Networks = append(s.Networks, Interface{Name: n, RxBytes: ns.RxBytes, TxBytes: ns.TxBytes})
		}
		s.Has |= FieldNetwork
	}
	return s
}
