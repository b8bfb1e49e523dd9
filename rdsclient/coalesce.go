package rdsclient

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// Coalesced reads. Reads of one disk by slot (Disk, and the read-backs of
// other calls) and of a pool by mount point (Capacity) are all
// "/disk print detail where <key>=<value>". Up to maxPrints such prints
// run at once (half the session limit, at least one), so that reads never
// take every session from mutations. A read that finds fewer in flight is
// sent at once, alone, as the single-read command: a lone caller waits
// for nothing and sends what it always did. A read that finds maxPrints
// in flight queues; when one of them ends, one print answers every queued
// read at once with a combined condition ("where slot=a or slot=b or
// mount-point=p"), at most maxTerms conditions. A print that hangs
// delays only the reads it carries: later reads go out on the other
// prints.
//
// Each caller gets its own answer: the entry that matches its condition,
// parsed for it alone, or ErrNotFound when the print listed no such entry.
// An error of the print itself (transport, failure text, output that does
// not parse, an entry that matches no condition asked) is every caller's
// error. A caller whose context ends stops waiting at once; the print goes
// on for the others and is cancelled only when every caller it serves has
// gone, or at Close.

// read is one caller's read, queued or in a print.
type read struct {
	key, value string // "slot" or "mount-point", and the value wanted
	done       chan struct{}

	// Set before done is closed.
	line  string
	out   string
	entry routeros.Entry
	found bool
	err   error

	b *readBatch // the print it is in; nil while queued (guarded by coalescer.mu)
}

// readBatch is one print answering several reads.
type readBatch struct {
	reads  []*read
	left   int // reads whose caller still waits
	ctx    context.Context
	cancel context.CancelCauseFunc
}

// coalescer queues reads for the next print. Its fields are guarded by mu.
type coalescer struct {
	c         *Client
	maxTerms  int
	maxPrints int

	mu       sync.Mutex
	queued   []*read
	inflight int // prints running
}

// readDisks answers one read: the entry of a /disk print that matches
// key=value, or an error wrapping ErrNotFound when the print listed none.
func (c *Client) readDisks(ctx context.Context, key, value string) (routeros.Entry, error) {
	if c.reads == nil {
		r := &read{key: key, value: value}
		line := batchLine([]*read{r})
		out, err := c.run(ctx, "disk print", line, false)
		deliver([]*read{r}, line, out, err, c.width)
		return r.entry, r.result()
	}
	return c.reads.read(ctx, key, value)
}

// result is the error of a delivered read.
func (r *read) result() error {
	if r.err != nil {
		return r.err
	}
	if !r.found {
		// A successful print without this entry: the only "not found".
		return &CommandError{Command: r.line, Stdout: r.out, Class: ErrNotFound}
	}
	return nil
}

func (co *coalescer) read(ctx context.Context, key, value string) (routeros.Entry, error) {
	r := &read{key: key, value: value, done: make(chan struct{})}
	co.mu.Lock()
	co.queued = append(co.queued, r)
	if co.inflight < co.maxPrints {
		co.inflight++
		b := co.takeLocked()
		co.c.bg.Add(1)
		go co.run(b)
	}
	co.mu.Unlock()
	select {
	case <-r.done:
		return r.entry, r.result()
	case <-ctx.Done():
	}
	co.mu.Lock()
	select {
	case <-r.done:
		// Answered while it gave up: the answer is as good.
		co.mu.Unlock()
		return r.entry, r.result()
	default:
	}
	if b := r.b; b == nil {
		co.queued = slices.DeleteFunc(co.queued, func(x *read) bool { return x == r })
	} else if b.left--; b.left == 0 {
		// No one waits for this print any more. The cause keeps a
		// deadline a deadline for the Observer.
		b.cancel(ctx.Err())
	}
	co.mu.Unlock()
	return routeros.Entry{}, newCtxError("disk print", ctx)
}

// takeLocked moves queued reads into a new batch, in arrival order, up to
// maxTerms distinct conditions; reads of a condition already taken ride
// along. The rest stay queued for the next print.
func (co *coalescer) takeLocked() *readBatch {
	b := &readBatch{}
	terms := map[[2]string]bool{}
	var rest []*read
	for _, r := range co.queued {
		k := [2]string{r.key, r.value}
		if !terms[k] && len(terms) == co.maxTerms {
			rest = append(rest, r)
			continue
		}
		terms[k] = true
		r.b = b
		b.reads = append(b.reads, r)
	}
	co.queued = rest
	b.left = len(b.reads)
	// Ends at Close, or when every caller has gone; exec adds the
	// command timeout.
	b.ctx, b.cancel = context.WithCancelCause(co.c.base)
	return b
}

// run sends the print of b, then of every batch queued meanwhile, one
// after the other, and ends when none is queued.
func (co *coalescer) run(b *readBatch) {
	defer co.c.bg.Done()
	for b != nil {
		line := batchLine(b.reads)
		out, err := co.c.run(b.ctx, "disk print", line, false)
		if err != nil && co.c.isClosed() {
			// Cut short by Close, which ends the print's context.
			err = closedError("disk print")
		}
		// A caller that gave up may still read a delivered answer, so
		// answers are written before done is closed and then only read.
		deliver(b.reads, line, out, err, co.c.width)
		b.cancel(nil)
		co.mu.Lock()
		b = nil
		if len(co.queued) > 0 {
			b = co.takeLocked()
		} else {
			co.inflight--
		}
		co.mu.Unlock()
	}
}

// batchLine is the print answering reads: the single-read command for
// one distinct condition, else their conditions joined by "or".
func batchLine(reads []*read) string {
	var b strings.Builder
	b.WriteString("/disk print detail where ")
	seen := map[[2]string]bool{}
	for _, r := range reads {
		k := [2]string{r.key, r.value}
		if seen[k] {
			continue
		}
		if len(seen) > 0 {
			b.WriteString(" or ")
		}
		seen[k] = true
		q, _ := routeros.Quote(r.value) // validated by every caller
		b.WriteString(r.key + "=" + q)
	}
	return b.String()
}

// deliver hands every read its answer from one print and closes done.
func deliver(reads []*read, line, out string, err error, width int) {
	var entries []routeros.Entry
	if err == nil {
		var perr error
		if entries, perr = routeros.ParseDetail(out, width); perr != nil {
			err = unexpectedf("%s: %w", line, perr)
		}
	}
	if err == nil {
		// Every entry must answer a condition that was asked: one that
		// answers none means the filter did not do what it says, and
		// then no absence is proven either.
		for _, e := range entries {
			if !answersAny(e, reads) {
				slot, _ := e.Get("slot")
				err = unexpectedf("%s: entry %d (slot %q) matches no condition", line, e.Index, slot)
				break
			}
		}
	}
	for _, r := range reads {
		r.line, r.out, r.err = line, out, err
		if err == nil {
			for _, e := range entries {
				if v, _ := e.Get(r.key); v == r.value {
					r.entry, r.found = e, true
					break
				}
			}
		}
		if r.done != nil {
			close(r.done)
		}
	}
}

func answersAny(e routeros.Entry, reads []*read) bool {
	for _, r := range reads {
		if v, _ := e.Get(r.key); v == r.value {
			return true
		}
	}
	return false
}
