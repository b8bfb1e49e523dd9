package rdsclient

import (
	"context"
	"log/slog"
	"time"
)

// Option tunes a Client. Most callers need none.
type Option func(*options)

type options struct {
	maxSessions    int
	dialTimeout    time.Duration
	commandTimeout time.Duration
	attempts       int
	baseDelay      time.Duration
	logger         *slog.Logger
	observer       Observer
	location       *time.Location
	coalesce       int
}

func defaultOptions() options {
	return options{
		maxSessions:    8,
		dialTimeout:    10 * time.Second,
		commandTimeout: 30 * time.Second,
		attempts:       3,
		baseDelay:      100 * time.Millisecond,
		logger:         slog.New(slog.DiscardHandler),
		observer:       nopObserver{},
		location:       time.UTC,
		coalesce:       DefaultCoalescedReads,
	}
}

// WithMaxSessions bounds the number of commands running at the same time
// over the one connection (default 8). Values below 1 mean 1.
func WithMaxSessions(n int) Option {
	return func(o *options) { o.maxSessions = max(n, 1) }
}

// DefaultCoalescedReads is how many reads one print answers at most
// unless WithCoalescedReads says otherwise.
const DefaultCoalescedReads = 32

// WithCoalescedReads sets how many concurrent reads of disks by slot
// (Disk, and the read-backs of other calls) and of pools (Capacity) one
// "/disk print detail" may answer (default DefaultCoalescedReads). Such
// prints use at most half the sessions (WithMaxSessions) at once; reads
// that arrive while they all run wait for one to end and are then
// answered together by one print whose condition joins theirs with "or".
// A read that finds a print free is sent at once, alone, as it would be
// without coalescing. Each caller still gets its own result or error, and
// its context ends only its own wait. Values of 1 or less turn coalescing
// off: every read sends its own command, as soon as a session is free.
func WithCoalescedReads(max int) Option {
	return func(o *options) { o.coalesce = max }
}

// WithDialTimeout bounds one TCP dial plus SSH handshake, by Dial and by
// every re-dial (default 10s). Values of zero or less keep the default:
// a dial is never unbounded.
func WithDialTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.dialTimeout = d
		}
	}
}

// WithCommandTimeout sets the deadline applied to each command when the
// caller's context has none (default 30s). Zero or less disables it.
func WithCommandTimeout(d time.Duration) Option {
	return func(o *options) { o.commandTimeout = d }
}

// WithRetry sets how often a command is tried when a transient transport
// fault occurs (default 3 attempts in total) and the first backoff delay
// (default 100ms), which doubles per attempt and is jittered. attempts
// below 1 mean 1 (no retry).
func WithRetry(attempts int, baseDelay time.Duration) Option {
	return func(o *options) {
		o.attempts = max(attempts, 1)
		o.baseDelay = max(baseDelay, 0)
	}
}

// WithLogger sets the logger; commands are logged at debug level. The
// default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.logger = l
		}
	}
}

// WithObserver reports commands and connection events, usually to a
// metrics.Recorder.
func WithObserver(obs Observer) Option {
	return func(o *options) {
		if obs != nil {
			o.observer = obs
		}
	}
}

// WithLocation sets the time zone of the RDS, used to read timestamps
// such as File.LastModified (default UTC).
func WithLocation(loc *time.Location) Option {
	return func(o *options) {
		if loc != nil {
			o.location = loc
		}
	}
}

type nopObserver struct{}

func (nopObserver) RDSCommand(context.Context, string, string, time.Duration) {}
func (nopObserver) RDSConnectionState(context.Context, string, bool)          {}
func (nopObserver) RDSReconnect(context.Context, string)                      {}
