package rdsclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/internal/routeros"
)

// abortGrace is how long a command may take to end after its session was
// closed because its context ended. Past it the connection is considered
// broken and closed, which ends every session on it.
const abortGrace = 500 * time.Millisecond

// maxBackoff caps one retry delay.
const maxBackoff = 5 * time.Second

// Client runs RouterOS commands on one RDS over a single SSH connection.
// It is safe for concurrent use. It starts goroutines (connection watcher,
// re-dials); Close stops them.
type Client struct {
	addr  string
	user  string // Config.User as given, without the flags Dial adds
	cfg   Config
	ssh   *ssh.ClientConfig
	opts  options
	log   *slog.Logger
	obs   Observer
	width int // console width print detail is wrapped at

	sem   chan struct{} // bounds concurrent sessions
	reads *coalescer    // nil when reads are not coalesced

	base   context.Context // ends at Close; bounds background re-dials
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool
	conn    *conn // nil while disconnected
	gen     uint64
	up      bool         // the last state reported to the Observer
	dialing *dialAttempt // non-nil while a re-dial runs

	calls sync.WaitGroup // public calls in flight
	bg    sync.WaitGroup // watcher and re-dial goroutines
}

// conn is one SSH connection. gen identifies it so that a failure seen on
// an old connection never tears down a newer one.
type conn struct {
	gen    uint64
	client *ssh.Client
	dead   chan struct{} // closed once the connection has ended
}

// dialAttempt is one re-dial that concurrent callers wait for.
type dialAttempt struct {
	done chan struct{}
	conn *conn
	err  error
}

// Dial connects to the RDS at addr ("host" or "host:port", port 22 by
// default) and returns a Client. It honours ctx and WithDialTimeout and
// retries transient dial faults per WithRetry. cfg.HostKeyCallback and
// cfg.User are required (ErrInvalid otherwise). A transport failure wraps
// ErrUnavailable; a refused host key is a *HostKeyError and a refused
// login an *AuthError, neither of which is retried nor wraps
// ErrUnavailable, because only a change of configuration fixes them.
func Dial(ctx context.Context, addr string, cfg *Config, opts ...Option) (*Client, error) {
	if cfg == nil {
		return nil, invalidf("nil config")
	}
	conf := *cfg
	conf.Auth = append([]ssh.AuthMethod(nil), cfg.Auth...)
	conf.HostKeyAlgorithms = append([]string(nil), cfg.HostKeyAlgorithms...)
	if conf.HostKeyCallback == nil {
		return nil, invalidf("config has no HostKeyCallback")
	}
	if conf.User == "" || strings.ContainsFunc(conf.User, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return nil, invalidf("user name %q", conf.User)
	}
	if !strings.Contains(conf.User, "+") {
		// Colours off and no terminal detection: plain text on exec channels.
		conf.User += "+ct"
	}
	if addr == "" {
		return nil, invalidf("empty address")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), "22")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, invalidf("address: %w", err)
		}
	}

	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	c := &Client{
		addr:  addr,
		user:  cfg.User,
		cfg:   conf,
		opts:  o,
		log:   o.logger,
		obs:   o.observer,
		sem:   make(chan struct{}, o.maxSessions),
		width: routeros.ConsoleWidth(conf.User),
	}
	if o.coalesce > 1 {
		c.reads = &coalescer{c: c, maxTerms: o.coalesce, maxPrints: max(o.maxSessions/2, 1)}
	}
	c.ssh = &ssh.ClientConfig{
		User:              conf.User,
		Auth:              conf.Auth,
		HostKeyCallback:   conf.HostKeyCallback,
		HostKeyAlgorithms: conf.HostKeyAlgorithms,
		Timeout:           o.dialTimeout,
	}
	c.base, c.cancel = context.WithCancel(context.Background())

	for attempt := 1; ; attempt++ {
		cn, err := c.dialOnce(ctx)
		if err == nil {
			c.mu.Lock()
			c.installLocked(cn)
			c.mu.Unlock()
			c.log.LogAttrs(ctx, slog.LevelDebug, "rdsclient: connected", slog.String("address", c.addr))
			return c, nil
		}
		if !retryable(err, false) || attempt >= c.opts.attempts {
			c.cancel()
			return nil, err
		}
		if werr := c.backoff(ctx, "dial", attempt); werr != nil {
			c.cancel()
			return nil, werr
		}
	}
}

// Close closes the connection and waits until calls in flight have
// returned and background goroutines have ended. Calls in flight fail with
// ErrClosed; later calls return ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	already := c.closed
	c.closed = true
	cn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if !already {
		c.cancel()
		if cn != nil {
			_ = cn.client.Close()
		}
	}
	c.calls.Wait()
	c.bg.Wait()
	return nil
}

// enter registers a public call; leave must follow when it returns nil.
func (c *Client) enter(op string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return closedError(op)
	}
	c.calls.Add(1)
	return nil
}

func (c *Client) leave() { c.calls.Done() }

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// dialOnce makes one TCP dial and SSH handshake, bounded by ctx and the
// dial timeout. A refused host key or login comes back typed
// (*HostKeyError, *AuthError); every other failure is a *dialError.
func (c *Client) dialOnce(parent context.Context) (*conn, error) {
	ctx, cancel := context.WithTimeout(parent, c.opts.dialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", c.addr)
	if err != nil {
		if parent.Err() != nil {
			return nil, newCtxError("dial", parent)
		}
		return nil, &dialError{addr: c.addr, transient: true, err: err}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	// Abort the handshake when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })

	// The callback runs on the handshake goroutine and records its
	// verdict: a refusal is reported as such, and only after an accepted
	// key can the login have been refused.
	var (
		hostKeyErr atomic.Pointer[HostKeyError]
		keyOK      atomic.Bool
	)
	conf := *c.ssh
	conf.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		if err := c.ssh.HostKeyCallback(host, remote, key); err != nil {
			he := newHostKeyError(c.addr, key, err)
			hostKeyErr.Store(he)
			return he
		}
		keyOK.Store(true)
		return nil
	}
	sc, chans, reqs, err := ssh.NewClientConn(nc, c.addr, &conf)
	if !stop() {
		if err == nil {
			_ = sc.Close()
		}
		if parent.Err() != nil {
			return nil, newCtxError("dial", parent)
		}
		if err == nil {
			err = context.DeadlineExceeded
		}
		return nil, &dialError{addr: c.addr, transient: true, err: err}
	}
	if err != nil {
		switch he := hostKeyErr.Load(); {
		case he != nil:
			return nil, he
		case keyOK.Load() && authRefused(err):
			return nil, &AuthError{Addr: c.addr, User: c.user, Err: err}
		}
		return nil, &dialError{addr: c.addr, transient: transientNetErr(err), err: err}
	}
	_ = nc.SetDeadline(time.Time{})
	return &conn{client: ssh.NewClient(sc, chans, reqs), dead: make(chan struct{})}, nil
}

// authRefused reports a handshake that ended because the server accepted
// none of the authentication methods offered. x/crypto/ssh has no error
// type for it, only this text (stable since the package's first release;
// TestAuthError notices a change).
func authRefused(err error) bool {
	return strings.Contains(err.Error(), "ssh: unable to authenticate")
}

// transientNetErr reports transport faults that a re-dial may fix.
// Authentication and host key refusals are not among them.
func transientNetErr(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// installLocked makes cn the current connection. c.mu must be held:
// state reports are made under it so that the Observer, often a gauge
// that keeps the last value, sees up and down strictly alternate. The end
// of the previous connection is reported here when its watcher has not
// done so yet; otherwise a late "down" would follow this "up".
func (c *Client) installLocked(cn *conn) {
	c.gen++
	cn.gen = c.gen
	c.conn = cn
	if c.up {
		c.obs.RDSConnectionState(context.Background(), c.addr, false)
	}
	c.up = true
	c.obs.RDSConnectionState(context.Background(), c.addr, true)
	c.bg.Add(1)
	go c.watch(cn)
}

// watch notices the end of a connection, however it ends.
func (c *Client) watch(cn *conn) {
	defer c.bg.Done()
	err := cn.client.Wait()
	close(cn.dead)
	c.mu.Lock()
	if c.conn == cn {
		c.conn = nil
	}
	// A newer connection already reported this one's end.
	if cn.gen == c.gen && c.up {
		c.up = false
		c.obs.RDSConnectionState(context.Background(), c.addr, false)
	}
	closing := c.closed
	c.mu.Unlock()
	level := slog.LevelWarn
	if closing {
		level = slog.LevelDebug
	}
	c.log.LogAttrs(context.Background(), level, "rdsclient: connection ended",
		slog.String("address", c.addr), slog.Uint64("generation", cn.gen), slog.Any("error", err))
}

// breakConn closes cn after a failure seen on it. A newer connection is
// left alone.
func (c *Client) breakConn(cn *conn, reason string) {
	c.mu.Lock()
	if c.conn != nil && c.conn.gen == cn.gen {
		c.conn = nil
	}
	c.mu.Unlock()
	c.log.LogAttrs(context.Background(), slog.LevelDebug, "rdsclient: dropping connection",
		slog.Uint64("generation", cn.gen), slog.String("reason", reason))
	_ = cn.client.Close()
}

// getConn returns the live connection, re-dialling if there is none. One
// re-dial runs at a time; concurrent callers wait for it (or their ctx).
func (c *Client) getConn(ctx context.Context, op string) (*conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, closedError(op)
	}
	if cn := c.conn; cn != nil {
		select {
		case <-cn.dead:
			c.conn = nil
		default:
			c.mu.Unlock()
			return cn, nil
		}
	}
	a := c.dialing
	if a == nil {
		a = &dialAttempt{done: make(chan struct{})}
		c.dialing = a
		c.bg.Add(1)
		go c.redial(a)
	}
	c.mu.Unlock()
	select {
	case <-a.done:
		return a.conn, a.err
	case <-ctx.Done():
		return nil, newCtxError(op, ctx)
	}
}

// redial runs one dial on behalf of every waiting caller. It is bounded by
// the dial timeout and Close, not by any one caller's context. It makes
// one attempt: a caller's retry budget decides whether to try again, and
// a refused host key or login is not retried at all (see retryable).
func (c *Client) redial(a *dialAttempt) {
	defer c.bg.Done()
	cn, err := c.dialOnce(c.base)
	c.mu.Lock()
	c.dialing = nil
	if c.closed {
		if cn != nil {
			_ = cn.client.Close()
			cn = nil
		}
		err = closedError("dial")
	}
	if err == nil {
		c.installLocked(cn)
	}
	a.conn, a.err = cn, err
	c.mu.Unlock()
	// Report before releasing the waiters, so that an observer has seen
	// the re-dial by the time a caller sees its outcome.
	defer close(a.done)

	ctx := context.Background()
	if err != nil {
		c.obs.RDSReconnect(ctx, "error")
		level := slog.LevelWarn
		if misconfigured(err) {
			level = slog.LevelError // an operator must act
		}
		c.log.LogAttrs(ctx, level, "rdsclient: re-dial failed", slog.String("address", c.addr), slog.Any("error", err))
		return
	}
	c.obs.RDSReconnect(ctx, "ok")
	c.log.LogAttrs(ctx, slog.LevelInfo, "rdsclient: reconnected", slog.String("address", c.addr), slog.Uint64("generation", cn.gen))
}

// retryable reports whether err may be fixed by trying again. A command
// that may have been sent is repeated only when it is a read. A refused
// host key or login is not a *dialError, so it is never retried.
func retryable(err error, mutation bool) bool {
	var te *transportError
	if errors.As(err, &te) {
		return !te.sent || !mutation
	}
	var de *dialError
	if errors.As(err, &de) {
		return de.transient
	}
	return false
}

// outcomeUnknown reports whether a mutation may or may not have run.
func outcomeUnknown(err error) bool {
	var te *transportError
	return errors.As(err, &te) && te.sent
}

// backoff sleeps before attempt+1: exponential from the base delay, with
// jitter in [d/2, d].
func (c *Client) backoff(ctx context.Context, op string, attempt int) error {
	d := c.opts.baseDelay << (attempt - 1)
	if d > maxBackoff || d < 0 {
		d = maxBackoff
	}
	if half := int64(d / 2); half > 0 {
		d = time.Duration(half + rand.Int64N(half+1))
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return newCtxError(op, ctx)
	case <-c.base.Done():
		return closedError(op)
	}
}

// run executes a command, retrying transient faults: always when the
// command was not sent, and also after it was sent when it is a read.
func (c *Client) run(ctx context.Context, op, line string, mutation bool) (string, error) {
	for attempt := 1; ; attempt++ {
		out, err := c.exec(ctx, op, line)
		if err == nil || !retryable(err, mutation) || attempt >= c.opts.attempts {
			return out, err
		}
		if werr := c.backoff(ctx, op, attempt); werr != nil {
			return "", werr
		}
	}
}

// exec runs one command in one session and classifies its answer. A
// RouterOS failure becomes a *CommandError.
func (c *Client) exec(ctx context.Context, op, line string) (string, error) {
	if _, ok := ctx.Deadline(); !ok && c.opts.commandTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.commandTimeout)
		defer cancel()
	}
	start := time.Now()
	stdout, stderr, exit, err := c.session(ctx, op, line)
	if err == nil {
		if class, _ := routeros.Classify(stdout, stderr, exit); class != routeros.ClassOK {
			err = &CommandError{Command: line, Stdout: stdout, Stderr: stderr, ExitStatus: exit, Class: printClass(op, classError(class))}
		}
	}
	d := time.Since(start)
	st := status(err)
	c.obs.RDSCommand(ctx, op, st, d)
	if c.log.Enabled(ctx, slog.LevelDebug) {
		attrs := []slog.Attr{slog.String("command", line), slog.String("status", st), slog.Duration("duration", d)}
		if err != nil {
			attrs = append(attrs, slog.Any("error", err))
		}
		c.log.LogAttrs(ctx, slog.LevelDebug, "rdsclient: command", attrs...)
	}
	return stdout, err
}

// printClass keeps a failing print from reading as "not found": only a
// print that succeeds with no entries means that
// (rdsclient/docs/device.md, "Output format"), so that a caller such as
// DeleteDisk never takes an error for "already gone". Syntax errors stay
// ErrInvalid; any other failure text on a print, "no such item"
// included, is ErrUnexpectedOutput.
func printClass(op string, class error) error {
	if strings.HasSuffix(op, " print") && class != ErrInvalid {
		return ErrUnexpectedOutput
	}
	return class
}

// session opens a session, runs line and collects its output and exit
// status. Errors are transport, context or closed errors only.
func (c *Client) session(ctx context.Context, op, line string) (stdout, stderr string, exit int, err error) {
	select {
	case c.sem <- struct{}{}:
	default:
		c.log.LogAttrs(ctx, slog.LevelDebug, "rdsclient: waiting for a session",
			slog.String("command", op), slog.Int("max_sessions", cap(c.sem)))
		select {
		case c.sem <- struct{}{}:
		case <-ctx.Done():
			return "", "", 0, newCtxError(op, ctx)
		}
	}
	defer func() { <-c.sem }()

	cn, err := c.getConn(ctx, op)
	if err != nil {
		return "", "", 0, err
	}
	w := &watchdog{c: c, cn: cn}
	stop := context.AfterFunc(ctx, w.abort)
	defer func() {
		w.finish()
		stop()
	}()

	ch, reqs, err := cn.client.OpenChannel("session", nil)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return "", "", 0, newCtxError(op, ctx)
		case c.isClosed():
			return "", "", 0, closedError(op)
		}
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) {
			// Not a refusal by a live server: the connection is gone.
			c.breakConn(cn, "session open failed")
		}
		return "", "", 0, &transportError{op: op, sent: false, err: err}
	}
	defer ch.Close()
	if !w.setChannel(ch) {
		return "", "", 0, newCtxError(op, ctx)
	}
	stdout, stderr, exit, err = runOnChannel(ch, reqs, line)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return "", "", 0, newCtxError(op, ctx)
		case c.isClosed():
			return "", "", 0, closedError(op)
		}
		// No exit status: the command may or may not have run.
		c.breakConn(cn, "session ended without exit status")
		return "", "", 0, &transportError{op: op, sent: true, err: err}
	}
	return stdout, stderr, exit, nil
}

// errNoExitStatus reports a session that ended without an exit status,
// which is how a dropped connection looks from inside a session.
var errNoExitStatus = errors.New("session ended without exit status")

// runOnChannel runs line on an open session channel and waits for its
// output and exit status. Compared with ssh.Session it sends the exec
// request without asking for a reply (one round trip less). Stdout and
// stderr share the channel's flow-control window, so they are drained at
// the same time: reading one to its end before the other would stall a
// command that fills the window with the other until its deadline.
// Stderr is read on a goroutine that has ended when runOnChannel returns:
// both reads end together, at the end of the output or when the channel
// or connection is closed (which the watchdog of a command whose context
// ended sees to).
func runOnChannel(ch ssh.Channel, reqs <-chan *ssh.Request, line string) (stdout, stderr string, exit int, err error) {
	if _, err := ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{line})); err != nil {
		return "", "", 0, err
	}
	// No input: RouterOS gets end-of-file on stdin as with ssh.Session.
	_ = ch.CloseWrite()
	var out, errOut bytes.Buffer
	errRead := make(chan error, 1)
	go func() {
		_, err := errOut.ReadFrom(ch.Stderr())
		errRead <- err
	}()
	_, outErr := out.ReadFrom(ch)
	if err := errors.Join(outErr, <-errRead); err != nil {
		return "", "", 0, err
	}
	exit, got := 0, false
	for req := range reqs { // until the server closes the channel
		switch req.Type {
		case "exit-status":
			if len(req.Payload) >= 4 {
				exit, got = int(binary.BigEndian.Uint32(req.Payload)), true
			}
		case "exit-signal":
			exit, got = 128, true
		}
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
	if !got {
		return "", "", 0, errNoExitStatus
	}
	return out.String(), errOut.String(), exit, nil
}

// watchdog ends a command whose context ended: it closes the session,
// and if the command still has not returned after abortGrace, the
// connection. It costs no goroutine unless the context ends first.
type watchdog struct {
	c  *Client
	cn *conn

	mu      sync.Mutex
	ch      ssh.Channel
	done    bool
	aborted bool
	timer   *time.Timer
}

func (w *watchdog) abort() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	w.aborted = true
	ch := w.ch
	w.timer = time.AfterFunc(abortGrace, w.expire)
	w.mu.Unlock()
	if ch != nil {
		_ = ch.Close()
	}
}

func (w *watchdog) expire() {
	w.mu.Lock()
	done := w.done
	w.mu.Unlock()
	if !done {
		w.c.breakConn(w.cn, "command did not end after its context ended")
	}
}

// setChannel records the open session channel; false when ctx already
// ended.
func (w *watchdog) setChannel(ch ssh.Channel) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.aborted {
		return false
	}
	w.ch = ch
	return true
}

func (w *watchdog) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	if w.timer != nil {
		w.timer.Stop()
	}
}
