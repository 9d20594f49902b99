package main

import (
	"bytes"
	"strings"
	"testing"
)

// A govulncheck JSON stream with one called vulnerability in stdlib, the same
// ID called in golang.org/x/net, and one that is only imported.
const stream = `{"config":{"scanner_version":"v1.9.0","db":"file:///db","go_version":"go1.26.8","scan_level":"symbol"}}
{"osv":{"id":"GO-1","summary":"a bug"}}
{"finding":{"osv":"GO-1","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Do","receiver":"*Client"},{"module":"m","package":"m/p","function":"F","position":{"filename":"p/f.go","line":3}}]}}
{"finding":{"osv":"GO-1","fixed_version":"v0.60.0","trace":[{"module":"golang.org/x/net","version":"v0.59.0","package":"golang.org/x/net/http2","function":"Read"},{"module":"m","package":"m/p","function":"G"}]}}
{"finding":{"osv":"GO-2","trace":[{"module":"example.com/only","version":"v1.0.0","package":"example.com/only/imported"}]}}
`

func TestRun(t *testing.T) {
	cases := []struct {
		name    string
		allow   string
		in      string
		wantErr bool
		want    []string
	}{
		{name: "a called vulnerability not in the allowlist fails",
			allow: "", in: stream, wantErr: true,
			want: []string{"FAIL  stdlib@v1.26.8 (fixed in v1.26.9): GO-1", "p/f.go:3 m/p.F calls net/http.Client.Do", "2 called vulnerabilities, 0 accepted"}},
		{name: "an entry accepts its ID in its module only",
			allow: "GO-1 stdlib needs a newer Go", in: stream, wantErr: true,
			want: []string{"accepted (allow.txt)  stdlib@v1.26.8", "FAIL  golang.org/x/net@v0.59.0 (fixed in v0.60.0): GO-1"}},
		{name: "all called vulnerabilities allowed pass, and imported-only ones are ignored",
			allow: "GO-1 stdlib why\nGO-1 golang.org/x/net why", in: stream,
			want: []string{"2 called vulnerabilities, 2 accepted by allow.txt, 0 not"}},
		{name: "an entry that matches nothing is stale but does not fail",
			allow: "GO-9 stdlib fixed long ago", in: stream[:strings.Index(stream, `{"finding"`)],
			want: []string{"stale allow.txt entry (no longer found, remove it): GO-9 stdlib", "0 called vulnerabilities"}},
		{name: "a stream without govulncheck's config message fails",
			in: "", wantErr: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			allow, err := parseAllowlist(strings.NewReader(c.allow))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = run(strings.NewReader(c.in), &out, allow)
			if (err != nil) != c.wantErr {
				t.Fatalf("run: error %v, want error %v\n%s", err, c.wantErr, out.String())
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

func TestParseAllowlistWantsAReason(t *testing.T) {
	if _, err := parseAllowlist(strings.NewReader("# comment\n\nGO-1 stdlib\n")); err == nil {
		t.Fatal("an entry without a reason was accepted")
	}
}
