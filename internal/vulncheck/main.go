package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	allow := flag.String("allow", "internal/vulncheck/allow.txt", "allowlist: lines of `ID MODULE REASON`, # starts a comment")
	flag.Parse()
	f, err := os.Open(*allow)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(2)
	}
	list, err := parseAllowlist(f)
	f.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "vulncheck: %s: %v\n", *allow, err)
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout, list); err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(1)
	}
}

// key names one vulnerability in one module ("stdlib" for the standard library).
type key struct{ ID, Module string }

// The parts of govulncheck's JSON messages (protocol v1.0.0) read here.
type message struct {
	Config *struct {
		ScannerVersion string `json:"scanner_version"`
		DB             string `json:"db"`
		GoVersion      string `json:"go_version"`
		ScanLevel      string `json:"scan_level"`
	} `json:"config"`
	OSV *struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	} `json:"osv"`
	Finding *finding `json:"finding"`
}

type finding struct {
	OSV          string  `json:"osv"`
	FixedVersion string  `json:"fixed_version"`
	Trace        []frame `json:"trace"`
}

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
	Receiver string `json:"receiver"`
	Position *struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
	} `json:"position"`
}

func (f frame) symbol() string {
	name := f.Function
	if f.Receiver != "" {
		name = strings.TrimPrefix(f.Receiver, "*") + "." + name
	}
	return f.Package + "." + name
}

// parseAllowlist reads lines of "ID MODULE REASON..."; blank lines and lines
// starting with # are skipped. Every entry must give a reason.
func parseAllowlist(r io.Reader) (map[key]bool, error) {
	list := map[key]bool{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 3 {
			return nil, fmt.Errorf("line %d: want `ID MODULE REASON`, got %q", n, line)
		}
		list[key{fields[0], fields[1]}] = true
	}
	return list, sc.Err()
}

// run reads govulncheck's JSON stream from in, reports to out, and returns an
// error when a called vulnerability is not in allow.
func run(in io.Reader, out io.Writer, allow map[key]bool) error {
	dec := json.NewDecoder(in)
	var configured bool
	summaries := map[string]string{}
	called := map[key]finding{} // the first finding of each, for its example trace
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return fmt.Errorf("reading govulncheck's JSON: %w", err)
		}
		switch {
		case m.Config != nil:
			configured = true
			if m.Config.ScanLevel != "symbol" {
				return fmt.Errorf("govulncheck scanned at level %q: only %q tells called vulnerabilities", m.Config.ScanLevel, "symbol")
			}
			fmt.Fprintf(out, "govulncheck %s, %s, database %s\n", m.Config.ScannerVersion, m.Config.GoVersion, m.Config.DB)
		case m.OSV != nil:
			summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil:
			f := *m.Finding
			if len(f.Trace) == 0 || f.Trace[0].Function == "" {
				continue // imported or required only: not called
			}
			k := key{f.OSV, f.Trace[0].Module}
			if _, seen := called[k]; !seen {
				called[k] = f
			}
		}
	}
	if !configured {
		return errors.New("govulncheck's JSON has no config message: did it run?")
	}

	keys := make([]key, 0, len(called))
	for k := range called {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].Module != keys[j].Module {
			return keys[i].Module < keys[j].Module
		}
		return keys[i].ID < keys[j].ID
	})
	var failed int
	for _, k := range keys {
		f := called[k]
		verdict := "accepted (allow.txt)"
		if !allow[k] {
			verdict = "FAIL"
			failed++
		}
		fixed := "none"
		if f.FixedVersion != "" {
			fixed = f.FixedVersion
		}
		vuln, entry := f.Trace[0], f.Trace[len(f.Trace)-1]
		where := entry.symbol()
		if entry.Position != nil {
			where = fmt.Sprintf("%s:%d %s", entry.Position.Filename, entry.Position.Line, where)
		}
		fmt.Fprintf(out, "%s  %s@%s (fixed in %s): %s\n    %s\n    e.g. %s calls %s\n",
			verdict, k.Module, vuln.Version, fixed, k.ID, summaries[k.ID], where, vuln.symbol())
	}
	var stale []string
	for k := range allow {
		if _, ok := called[k]; !ok {
			stale = append(stale, k.ID+" "+k.Module)
		}
	}
	sort.Strings(stale)
	for _, s := range stale {
		fmt.Fprintf(out, "stale allow.txt entry (no longer found, remove it): %s\n", s)
	}
	fmt.Fprintf(out, "%d called vulnerabilities, %d accepted by allow.txt, %d not\n", len(keys), len(keys)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d called vulnerabilities not in allow.txt: upgrade the module (or Go), or add ID MODULE REASON to allow.txt when no fix exists", failed)
	}
	return nil
}
