package rdstest

import (
	"regexp"
	"time"
)

type faultKind int

const (
	faultFail faultKind = iota
	faultLatency
	faultHang
	faultDrop
)

// Fault is a misbehaviour injected with Server.Inject. Build one with
// FailNth, FailAlways, AnswerNth, StderrNth, Latency, Hang or
// DropAfterRun.
type Fault struct {
	kind    faultKind
	re      *regexp.Regexp
	n       int // 1-based match number for FailNth and DropAfterRun; 0 = every match
	output  string
	stderr  bool // a faultFail answer goes to stderr
	status  int  // exit status of a faultFail answer
	latency time.Duration
}

// faultEntry is an injected fault with its own match counter.
type faultEntry struct {
	Fault
	seen int
}

// compilePattern compiles a fault pattern. An invalid pattern is a bug in
// the calling test, so it panics like regexp.MustCompile.
func compilePattern(pattern string) *regexp.Regexp {
	return regexp.MustCompile(pattern)
}

// FailNth makes the n-th (1-based) command matching the Go regexp pattern
// print output on stdout (lines ending in CRLF) with exit status 1, without
// executing it. Matches are counted from injection. It panics if pattern
// is not a valid regexp.
func FailNth(pattern string, n int, output string) Fault {
	return Fault{kind: faultFail, re: compilePattern(pattern), n: max(n, 1), output: output, status: 1}
}

// FailAlways makes every command matching pattern fail like FailNth.
func FailAlways(pattern, output string) Fault {
	return Fault{kind: faultFail, re: compilePattern(pattern), output: output, status: 1}
}

// AnswerNth makes the n-th (1-based) command matching pattern print
// output on stdout (lines ending in CRLF) with the given exit status,
// without executing it. With status 0 it fakes a command that claims
// success but did nothing, or a print whose output is odd. It panics if
// pattern is not a valid regexp.
func AnswerNth(pattern string, n int, output string, status int) Fault {
	return Fault{kind: faultFail, re: compilePattern(pattern), n: max(n, 1), output: output, status: status}
}

// StderrNth makes the n-th (1-based) command matching pattern print
// output on stderr (lines ending in CRLF) with the given exit status,
// without executing it. The device prints its errors on stdout; this
// stands for a misbehaving device or an SSH front end that does not, and
// for output too large for the channel's flow-control window. It panics
// if pattern is not a valid regexp.
func StderrNth(pattern string, n int, output string, status int) Fault {
	return Fault{kind: faultFail, re: compilePattern(pattern), n: max(n, 1), output: output, stderr: true, status: status}
}

// Latency makes commands matching pattern wait d before running. The
// command is abandoned if the session closes while it waits.
func Latency(pattern string, d time.Duration) Fault {
	return Fault{kind: faultLatency, re: compilePattern(pattern), latency: d}
}

// Hang makes commands matching pattern never answer, until the client
// closes the session or connection or the server closes.
func Hang(pattern string) Fault {
	return Fault{kind: faultHang, re: compilePattern(pattern)}
}

// DropAfterRun executes the n-th (1-based) command matching pattern and
// then drops the whole SSH connection without output or exit status, so
// the client cannot know the outcome.
func DropAfterRun(pattern string, n int) Fault {
	return Fault{kind: faultDrop, re: compilePattern(pattern), n: max(n, 1)}
}

// Inject adds f to the server's faults; faults compose. The returned func
// removes f and may be called more than once.
func (s *Server) Inject(f Fault) (remove func()) {
	if f.re == nil { // the zero Fault does nothing
		return func() {}
	}
	e := &faultEntry{Fault: f}
	s.mu.Lock()
	s.faults = append(s.faults, e)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, x := range s.faults {
			if x == e {
				s.faults = append(s.faults[:i:i], s.faults[i+1:]...)
				return
			}
		}
	}
}

// faultPlan is what the faults decided for one command.
type faultPlan struct {
	latency time.Duration // sum of every matching Latency
	hang    bool
	fail    *string // output of the first failing fault
	stderr  bool    // which goes to stderr
	status  int     // its exit status
	drop    bool
}

// planFaults records line and counts it against every fault whose pattern
// matches, in injection order, whatever the other faults decide.
func (s *Server) planFaults(line string) faultPlan {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commands = append(s.commands, line)
	s.notifyLocked()
	var p faultPlan
	for _, f := range s.faults {
		if !f.re.MatchString(line) {
			continue
		}
		f.seen++
		hit := f.n == 0 || f.seen == f.n
		switch f.kind {
		case faultLatency:
			p.latency += f.latency
		case faultHang:
			p.hang = true
		case faultFail:
			if hit && p.fail == nil {
				out := f.output
				p.fail, p.stderr, p.status = &out, f.stderr, f.status
			}
		case faultDrop:
			if hit {
				p.drop = true
			}
		}
	}
	return p
}
