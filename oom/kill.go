package oom

import (
	"strconv"
	"strings"
	"time"
)

// Kill is one process killed by the kernel's OOM killer.
type Kill struct {
	// Time is when the kernel logged the kill, in wall-clock time (the
	// record's time since boot plus the boot time).
	Time time.Time
	// SinceBoot is the record's own timestamp.
	SinceBoot time.Duration
	// Seq is the sequence number of the "Killed process" record.
	Seq uint64
	// PID is the killed process in the host (initial) PID namespace.
	PID int
	// Task is the killed process's command name (comm, at most 15 bytes).
	Task string
	// TaskMemcg is the memory cgroup of the killed task, relative to the
	// memory controller's root ("/docker/<id>"); "" when the kernel's summary
	// line was rate-limited away.
	TaskMemcg string
	// OOMMemcg is the memory cgroup whose limit was hit; "" for a system-wide
	// OOM (Constraint CONSTRAINT_NONE, the kernel says "global_oom") or when
	// unknown.
	OOMMemcg string
	// Constraint is the kernel's reason: CONSTRAINT_MEMCG for a cgroup limit,
	// CONSTRAINT_NONE for the whole machine, CONSTRAINT_CPUSET,
	// CONSTRAINT_MEMORY_POLICY; "" on kernels before 4.19.
	Constraint string
}

// Parser turns a stream of kernel log records into Kills. The OOM killer
// reports over several records; the ones that matter are, by kernel:
//
//	4.19 and later, one summary line before the kill (rate-limited together
//	with the rest of the report, 10 reports per 5 s):
//	  oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=<name>,mems_allowed=0,
//	    oom_memcg=/docker/<id>,task_memcg=/docker/<id>,task=sh,pid=1234,uid=0
//	  (global_oom in place of oom_memcg=... for a system-wide OOM)
//	before 4.19:
//	  Task in /docker/<id> killed as a result of limit of /docker/<id>
//	every kernel, never rate-limited:
//	  Memory cgroup out of memory: Killed process 1234 (sh) total-vm:...
//	  Out of memory: Killed process 1234 (sh) total-vm:...      (system-wide)
//	  Killed process 1234 (sh) total-vm:...                     (before 4.x)
//
// A Kill is produced at the "Killed process" record, with the cgroups of the
// summary (or of the older "Task in" line) when that names the same PID or
// came right before it. Lines like "Kill process 1234 (sh) score 1000 or
// sacrifice child" (victim selection on old kernels) and "oom_reaper: reaped
// process" are not kills and are ignored.
//
// The zero Parser is ready to use. It is not safe for concurrent use.
type Parser struct {
	summary *Kill // from the last oom-kill: line
	legacy  *Kill // from the last "Task in ... killed as a result of limit of ..." line
}

// Feed consumes one record. It returns the Kill that the record completes and
// true, or false when the record completes none.
func (p *Parser) Feed(r Record) (Kill, bool) {
	msg := r.Message
	switch {
	case strings.Contains(msg, " invoked oom-killer:"):
		// A new report starts: forget a previous one's leftovers.
		p.summary, p.legacy = nil, nil
	case strings.HasPrefix(msg, "oom-kill:"):
		if k, ok := parseSummary(msg); ok {
			p.summary = &k
		}
	case strings.HasPrefix(msg, "Task in "):
		if k, ok := parseLegacy(msg); ok {
			p.legacy = &k
		}
	default:
		pid, task, ok := parseKilled(msg)
		if !ok {
			return Kill{}, false
		}
		var k Kill
		switch {
		case p.summary != nil && p.summary.PID == pid:
			k = *p.summary
		case p.legacy != nil:
			k = *p.legacy
		}
		p.summary, p.legacy = nil, nil
		k.PID = pid
		if task != "" || k.Task == "" {
			k.Task = task
		}
		k.SinceBoot = r.SinceBoot
		k.Seq = r.Seq
		return k, true
	}
	return Kill{}, false
}

// parseSummary parses the kernel's one-line summary (mm/oom_kill.c
// dump_oom_victim). Its values are not escaped and may contain commas (a
// nodemask or mems_allowed like "0,2", a cgroup name with a comma), so it is
// taken apart from the right, where the fields are fixed: ",task=", ",pid="
// and ",uid=" end it, and the cgroups come before them.
func parseSummary(msg string) (Kill, bool) {
	s := strings.TrimPrefix(msg, "oom-kill:")
	i := strings.LastIndex(s, ",uid=")
	if i < 0 {
		return Kill{}, false
	}
	s = s[:i]
	i = strings.LastIndex(s, ",pid=")
	if i < 0 {
		return Kill{}, false
	}
	pid, err := strconv.Atoi(s[i+len(",pid="):])
	if err != nil || pid <= 0 {
		return Kill{}, false
	}
	s = s[:i]
	k := Kill{PID: pid}
	if t := strings.LastIndex(s, ",task_memcg="); t >= 0 {
		rest := s[t+len(",task_memcg="):]
		if j := strings.Index(rest, ",task="); j >= 0 {
			k.TaskMemcg, k.Task = rest[:j], rest[j+len(",task="):]
		} else {
			k.TaskMemcg = rest
		}
		s = s[:t]
	} else if j := strings.LastIndex(s, ",task="); j >= 0 {
		k.Task = s[j+len(",task="):]
		s = s[:j]
	}
	if o := strings.LastIndex(s, ",oom_memcg="); o >= 0 {
		k.OOMMemcg = s[o+len(",oom_memcg="):]
	}
	if c, ok := strings.CutPrefix(s, "constraint="); ok {
		k.Constraint, _, _ = strings.Cut(c, ",")
	}
	return k, true
}

// parseLegacy parses "Task in /a killed as a result of limit of /b"
// (mem_cgroup_print_oom_info, kernels before 4.19).
func parseLegacy(msg string) (Kill, bool) {
	s := strings.TrimPrefix(msg, "Task in ")
	task, limit, ok := strings.Cut(s, " killed as a result of limit of ")
	if !ok {
		return Kill{}, false
	}
	return Kill{TaskMemcg: task, OOMMemcg: strings.TrimSpace(limit)}, true
}

// parseKilled finds "Killed process PID (comm)" in a message. The comm may
// hold spaces and parentheses; it ends at the last ')' before " total-vm:",
// ", UID" or the end of the message.
func parseKilled(msg string) (pid int, task string, ok bool) {
	i := strings.Index(msg, "Killed process ")
	if i < 0 || strings.Contains(msg[:i], "reaped") {
		return 0, "", false
	}
	s := msg[i+len("Killed process "):]
	j := 0
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	pid, err := strconv.Atoi(s[:j])
	if err != nil || pid <= 0 {
		return 0, "", false
	}
	s = s[j:]
	if !strings.HasPrefix(s, " (") {
		return pid, "", true
	}
	s = s[2:]
	if e := strings.Index(s, ") total-vm:"); e >= 0 {
		return pid, s[:e], true
	}
	if e := strings.LastIndexByte(s, ')'); e >= 0 {
		return pid, s[:e], true
	}
	return pid, "", true
}
