// Command vulncheck is the judge of make vulncheck: it reads govulncheck's
// JSON stream (-format json) on standard input, prints each vulnerability
// whose vulnerable code agentd calls, and exits 1 when one of them is not in
// the allowlist (allow.txt beside this file), so anything new fails.
//
// Only called vulnerabilities count, as in govulncheck's default text mode: a
// finding whose first trace frame names a function. Findings in packages that
// are only imported, or in modules that are only required, are ignored.
//
// An allowlist entry accepts one vulnerability ID in one module ("stdlib" for
// the standard library), so the same ID turning up in another module still
// fails. Entries that no longer match a finding are reported as stale (the
// fix arrived: remove them) without failing the run.
//
// It does not run govulncheck nor fetch any database: the Makefile does.
package main
