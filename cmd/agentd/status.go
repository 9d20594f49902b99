package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentd-dev/agentd/config"
	"github.com/agentd-dev/agentd/status"
)

// runStatus implements `agentd status`: it asks a running agent over its status
// socket and prints the health and engine tree.
func runStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	socket := fs.String("socket", config.Default().Status.Socket, "status socket of the running agent")
	asJSON := fs.Bool("json", false, "print the raw JSON report")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rep, err := status.Fetch(ctx, *socket)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	health := "healthy"
	if !rep.Healthy {
		health = "UNHEALTHY: " + strings.Join(rep.Problems, "; ")
	}
	fmt.Fprintf(stdout, "agentd %s, up since %s, %s\n", rep.Version, rep.Since.Format(time.RFC3339), health)
	printTree(stdout, rep.Engines, "")
	return nil
}

// printTree writes the engine tree, nested engines indented under their container.
func printTree(w io.Writer, nodes []status.EngineNode, indent string) {
	if len(nodes) == 0 && indent == "" {
		fmt.Fprintln(w, "no container engines found")
	}
	for _, n := range nodes {
		pid := "-"
		if n.PID > 0 {
			pid = fmt.Sprint(n.PID)
		}
		extra := ""
		if n.Unit != "" {
			extra += " unit=" + n.Unit
		}
		if n.State != "" {
			extra += " state=" + n.State
		}
		fmt.Fprintf(w, "%s%-10s %-10s pid=%-7s containers=%-4d %s%s\n", indent, n.Type, n.Version, pid, n.Containers, n.Endpoint, extra)
		for _, g := range n.Nested {
			fmt.Fprintf(w, "%s  └ container %s (%s)\n", indent, g.ContainerName, shortID(g.ContainerID))
			printTree(w, g.Engines, indent+"      ")
		}
	}
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
