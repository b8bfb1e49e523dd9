package rdstest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/internal/routeros"
	"github.com/srvlab/rds-csi/rdsclient"
)

// Errors returned by the Server.
var (
	// ErrInvalidOption: an Option was given an unusable value.
	ErrInvalidOption = errors.New("rdstest: invalid option")
	// ErrNotFound: no disk matches the slot or NQN asked for.
	ErrNotFound = errors.New("rdstest: not found")
	// ErrClosed: the Server has been closed.
	ErrClosed = errors.New("rdstest: server closed")
)

// DefaultPool is the pool a Server has when no WithPool option is given.
const DefaultPool = "storage-pool"

// handshakeTimeout bounds a client's SSH handshake so that a silent TCP
// peer cannot hold a goroutine until Close.
const handshakeTimeout = 10 * time.Second

type poolSpec struct {
	name     string
	capacity int64
}

type options struct {
	dataDir    string
	pools      []poolSpec
	width      int
	identity   string
	hostSigner ssh.Signer
	logger     *slog.Logger
}

// Option configures a Server.
type Option func(*options)

// WithDataDir keeps the disks' backing files under dir instead of a
// temporary directory. The Server does not remove dir on Close. The disk
// table is saved in dir after every change (in .rdstest-state.json,
// which /file print does not show), so a Server started later on the same
// dir has the same disks, as a device keeps its disks across a restart;
// pools still come from the options. Only one Server may use dir at a
// time. The table is replaced atomically (a new file renamed over the old)
// but not fsynced, nor are the backing files: it survives the restart of
// a process, including a kill -9, not a power cut or a crash of the
// machine.
func WithDataDir(dir string) Option { return func(o *options) { o.dataDir = dir } }

// WithPool adds a storage pool (a btrfs mount point named name) with the
// given capacity. It may be given several times; without it the Server has
// one pool "storage-pool" of 1 TiB.
func WithPool(name string, capacityBytes int64) Option {
	return func(o *options) { o.pools = append(o.pools, poolSpec{name, capacityBytes}) }
}

// WithWidth sets the console width used to wrap print detail output
// (default 80). A login name flag such as "admin+c200w" overrides it for
// that connection.
func WithWidth(columns int) Option { return func(o *options) { o.width = columns } }

// WithIdentity sets the name printed by /system identity print (default
// "rds").
func WithIdentity(name string) Option { return func(o *options) { o.identity = name } }

// WithHostSigner sets the SSH host key (default: a fresh ed25519 key).
func WithHostSigner(s ssh.Signer) Option { return func(o *options) { o.hostSigner = s } }

// WithLogger sets the logger for connection-level events (default: none).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// Server is a fake ROSE Data Server: an SSH server on 127.0.0.1 speaking
// the subset of the RouterOS console a CSI driver uses, with file disks
// backed by real sparse files. It starts goroutines; Close stops them.
type Server struct {
	opts         options
	log          *slog.Logger
	ln           net.Listener
	hostSigner   ssh.Signer
	clientSigner ssh.Signer
	sshConfig    *ssh.ServerConfig
	dataDir      string
	ownsDataDir  bool
	started      time.Time

	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	mu         sync.Mutex // guards the fields below
	closed     bool
	conns      map[*serverConn]struct{}
	authorized [][]byte // marshalled accepted client keys
	refuse     bool
	rejectAuth bool
	commands   []string
	faults     []*faultEntry
	traffic    map[string]trafficStat
	sessions   int           // goroutines serving sessions, see WaitIdle
	changed    chan struct{} // closed and replaced when commands or sessions change

	st state // disks and pools; has its own lock
}

// serverConn is one client TCP connection.
type serverConn struct {
	net.Conn
	width int
}

// NewServer starts a fake RDS listening on 127.0.0.1 on a free port.
func NewServer(opts ...Option) (*Server, error) {
	o := options{width: 80, identity: "rds"}
	for _, opt := range opts {
		opt(&o)
	}
	if len(o.pools) == 0 {
		o.pools = []poolSpec{{DefaultPool, 1 << 40}}
	}
	if o.width <= 0 {
		return nil, fmt.Errorf("%w: width %d", ErrInvalidOption, o.width)
	}
	seen := map[string]bool{}
	for _, p := range o.pools {
		if routeros.ValidPool(p.name) != nil || p.capacity <= 0 || seen[p.name] {
			return nil, fmt.Errorf("%w: pool %q capacity %d", ErrInvalidOption, p.name, p.capacity)
		}
		seen[p.name] = true
	}
	log := o.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    o,
		log:     log,
		started: time.Now(),
		done:    make(chan struct{}),
		conns:   map[*serverConn]struct{}{},
		traffic: map[string]trafficStat{},
		changed: make(chan struct{}),
	}
	var err error
	if s.hostSigner = o.hostSigner; s.hostSigner == nil {
		if s.hostSigner, err = newSigner(); err != nil {
			return nil, err
		}
	}
	if s.clientSigner, err = newSigner(); err != nil {
		return nil, err
	}
	s.authorized = [][]byte{s.clientSigner.PublicKey().Marshal()}

	if s.dataDir = o.dataDir; s.dataDir == "" {
		if s.dataDir, err = os.MkdirTemp("", "rdstest-"); err != nil {
			return nil, fmt.Errorf("rdstest: data dir: %w", err)
		}
		s.ownsDataDir = true
	}
	// Only a caller's directory can outlive this Server; a temporary one
	// is removed on Close, so saving the disk table there is wasted work.
	s.st.persist = !s.ownsDataDir
	if err := s.st.init(s.dataDir, o.pools); err != nil {
		s.removeDataDir()
		return nil, err
	}
	missing, err := s.st.load()
	if err != nil {
		s.removeDataDir()
		return nil, err
	}
	for _, slot := range missing {
		s.log.Warn("rdstest: disk restored without its backing file", "slot", slot)
	}

	s.sshConfig = &ssh.ServerConfig{
		PublicKeyCallback: s.checkKey,
		ServerVersion:     "SSH-2.0-ROSSSH",
	}
	s.sshConfig.AddHostKey(s.hostSigner)

	s.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.removeDataDir()
		return nil, fmt.Errorf("rdstest: listen: %w", err)
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

func newSigner() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("rdstest: generate key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("rdstest: signer: %w", err)
	}
	return s, nil
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ClientConfig returns a fresh rdsclient.Config that authenticates as
// "admin" with the authorised client key and pins the host key.
func (s *Server) ClientConfig() *rdsclient.Config {
	return &rdsclient.Config{
		User:            "admin",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.clientSigner)},
		HostKeyCallback: rdsclient.FixedHostKey(s.hostSigner.PublicKey()),
	}
}

// HostKey returns the server's public host key.
func (s *Server) HostKey() ssh.PublicKey { return s.hostSigner.PublicKey() }

// ClientSigner returns the authorised client key.
func (s *Server) ClientSigner() ssh.Signer { return s.clientSigner }

// AuthorizeKey accepts k as another client key for user admin.
func (s *Server) AuthorizeKey(k ssh.PublicKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.authorized = append(s.authorized, k.Marshal())
}

// DataDir returns the directory holding the pools and their files: the
// file path /storage-pool/k8s/x.img lives at DataDir()/storage-pool/k8s/x.img.
func (s *Server) DataDir() string { return s.dataDir }

// Commands returns every command line received, in order, including
// refused and faulted ones.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// ResetCommands forgets the commands received so far.
func (s *Server) ResetCommands() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commands = nil
	s.notifyLocked()
}

// WaitCommands blocks until the command log (see Commands) holds at
// least n lines matching the Go regexp pattern, or ctx ends. Tests use it
// to act once a command has reached the server instead of polling. It
// panics if pattern is not a valid regexp.
func (s *Server) WaitCommands(ctx context.Context, pattern string, n int) error {
	re := compilePattern(pattern)
	return s.waitFor(ctx, func() bool {
		seen := 0
		for _, c := range s.commands {
			if re.MatchString(c) {
				seen++
			}
		}
		return seen >= n
	})
}

// WaitIdle blocks until no session is being served, or ctx ends: every
// command has ended, hung ones included, and its session's handlers have
// returned. A client that abandons a command closes its session; WaitIdle
// shows that the server noticed.
func (s *Server) WaitIdle(ctx context.Context) error {
	return s.waitFor(ctx, func() bool { return s.sessions == 0 })
}

// waitFor blocks until cond, evaluated under s.mu, holds or ctx ends.
func (s *Server) waitFor(ctx context.Context, cond func() bool) error {
	for {
		s.mu.Lock()
		ok, changed := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// notifyLocked wakes every waitFor; s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// sessionGoroutine counts a goroutine serving a session for WaitIdle;
// the returned func ends the count.
func (s *Server) sessionGoroutine() (done func()) {
	s.mu.Lock()
	s.sessions++
	s.notifyLocked()
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.sessions--
		s.notifyLocked()
		s.mu.Unlock()
	}
}

// DropConnections closes every live SSH connection now.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// RefuseConnections makes the server close new TCP connections at once
// (refuse true) or accept them again (false).
func (s *Server) RefuseConnections(refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = refuse
}

// RejectAuth makes every authentication attempt fail (reject true) or
// restores normal key checking (false).
func (s *Server) RejectAuth(reject bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectAuth = reject
}

// Close stops listening, closes every connection and waits until every
// goroutine, hung commands included, has ended. It forgets the hosts
// connected with ConnectInitiator (connections are live state; a Server
// started later on the same data directory has none) and removes the data
// directory when the Server created it. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.done)
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.ln.Close()
		s.wg.Wait()
		s.st.dropInitiators()
		s.closeErr = s.removeDataDir()
	})
	return s.closeErr
}

func (s *Server) removeDataDir() error {
	if !s.ownsDataDir {
		return nil
	}
	if err := os.RemoveAll(s.dataDir); err != nil {
		return fmt.Errorf("rdstest: remove data dir: %w", err)
	}
	return nil
}

func (s *Server) acceptLoop() {
	defer s.wg.Done()
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("rdstest: accept", "err", err)
			return
		}
		c := &serverConn{Conn: nc, width: s.opts.width}
		s.mu.Lock()
		if s.closed || s.refuse {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// checkKey authenticates user "admin" (console flags after '+' allowed)
// with an authorised key.
func (s *Server) checkKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	s.mu.Lock()
	reject := s.rejectAuth
	ok := false
	for _, k := range s.authorized {
		if bytes.Equal(k, key.Marshal()) {
			ok = true
		}
	}
	s.mu.Unlock()
	base, width, valid := parseLogin(meta.User())
	if reject || !ok || !valid || base != "admin" {
		return nil, errors.New("rdstest: authentication failed")
	}
	perms := &ssh.Permissions{Extensions: map[string]string{}}
	if width > 0 {
		perms.Extensions["width"] = strconv.Itoa(width)
	}
	return perms, nil
}

// parseLogin splits "admin+c250w" into the user name and the console width
// flag (0 when absent). Flags are letters, each optionally preceded by a
// number: c colours, t terminal detection, e dumb terminal, <n>w width,
// <n>h height.
func parseLogin(user string) (base string, width int, ok bool) {
	base, flags, has := strings.Cut(user, "+")
	if !has {
		return base, 0, true
	}
	num := ""
	for i := 0; i < len(flags); i++ {
		c := flags[i]
		switch {
		case c >= '0' && c <= '9':
			num += string(c)
		case strings.IndexByte("cteh", c) >= 0:
			num = ""
		case c == 'w':
			n, err := strconv.Atoi(num)
			if err != nil || n <= 0 || n > 10000 {
				return base, 0, false
			}
			width, num = n, ""
		default:
			return base, 0, false
		}
	}
	return base, width, num == ""
}

func (s *Server) serveConn(c *serverConn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	c.SetDeadline(time.Now().Add(handshakeTimeout))
	sc, chans, reqs, err := ssh.NewServerConn(c, s.sshConfig)
	if err != nil {
		s.log.Debug("rdstest: handshake", "err", err)
		return
	}
	c.SetDeadline(time.Time{})
	if w, err := strconv.Atoi(sc.Permissions.Extensions["width"]); err == nil {
		c.width = w
	}
	// RouterOS does not answer keepalive@openssh.com; DiscardRequests
	// replies false where a reply is wanted so clients do not hang.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs)
	}()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only session channels")
			continue
		}
		s.wg.Add(1)
		done := s.sessionGoroutine()
		go func() {
			defer done()
			s.serveSession(c, nch)
		}()
	}
	sc.Close()
}

type execRequest struct{ Command string }

// serveSession runs one exec request on a session channel.
func (s *Server) serveSession(c *serverConn, nch ssh.NewChannel) {
	defer s.wg.Done()
	ch, reqs, err := nch.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	closed := make(chan struct{}) // the channel or connection has gone
	execs := make(chan string, 1)
	s.wg.Add(1)
	reqsDone := s.sessionGoroutine()
	go func() {
		defer s.wg.Done()
		defer reqsDone()
		defer close(closed)
		got := false
		for req := range reqs {
			var p execRequest
			if req.Type == "exec" && !got && ssh.Unmarshal(req.Payload, &p) == nil {
				got = true
				req.Reply(true, nil)
				execs <- p.Command
				continue
			}
			// pty-req, shell, subsystem, env, a second exec: refused.
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}()
	var line string
	select {
	case line = <-execs:
	case <-closed:
		return
	case <-s.done:
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.wg.Add(1)
	watchDone := s.sessionGoroutine()
	go func() {
		defer s.wg.Done()
		defer watchDone()
		select {
		case <-closed:
		case <-s.done:
		case <-ctx.Done():
		}
		cancel()
	}()
	res, ok := s.run(ctx, c, line)
	if !ok {
		return
	}
	if res.drop {
		c.Close()
		return
	}
	if res.stdout != "" {
		ch.Write([]byte(res.stdout))
	}
	if res.stderr != "" {
		ch.Stderr().Write([]byte(res.stderr))
	}
	if res.stream {
		// A command that streams (monitor-traffic without once) keeps
		// the session until the client goes away.
		<-ctx.Done()
		return
	}
	ch.CloseWrite()
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(res.status)}))
}

// result is what a command produced.
type result struct {
	stdout, stderr string
	status         int
	drop           bool // drop the connection without an exit status
	stream         bool // keep the session open, no exit status
}

// run applies faults to one command line and executes it. ok is false when
// the command was abandoned (session closed while it waited).
func (s *Server) run(ctx context.Context, c *serverConn, line string) (result, bool) {
	plan := s.planFaults(line)
	if plan.latency > 0 {
		t := time.NewTimer(plan.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return result{}, false
		}
	}
	if plan.hang {
		<-ctx.Done()
		return result{}, false
	}
	if plan.fail != nil {
		if plan.stderr {
			return result{stderr: consoleText(*plan.fail), status: plan.status}, true
		}
		return result{stdout: consoleText(*plan.fail), status: plan.status}, true
	}
	res := s.execute(line, c.width)
	res.drop = plan.drop
	return res, true
}

// consoleText ends every line with CRLF, as the console does.
func consoleText(s string) string {
	if s == "" {
		return ""
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.TrimSuffix(s, "\n")
	return strings.ReplaceAll(s, "\n", crlf) + crlf
}

// DiskFile returns the host path of the backing file of the file disk in
// slot.
func (s *Server) DiskFile(slot string) (string, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	for _, d := range s.st.disks {
		if d.slot == slot && d.typ == "file" && d.filePath != "" {
			return s.st.hostPath(d.filePath), nil
		}
	}
	return "", fmt.Errorf("%w: file disk %q", ErrNotFound, slot)
}

// BackingFile returns the host path of the backing file of the disk
// exported with nqn.
func (s *Server) BackingFile(nqn string) (string, error) {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	for _, d := range s.st.disks {
		if d.export && d.nqn == nqn && d.filePath != "" {
			return s.st.hostPath(d.filePath), nil
		}
	}
	return "", fmt.Errorf("%w: exported disk with nqn %q", ErrNotFound, nqn)
}

// ForeignDisk is a disk that was not created through the console, such as
// a host's boot volume exported over NVMe/TCP.
type ForeignDisk struct {
	Slot     string
	Type     string // "file", "nvme" or "partition"
	FilePath string // for Type "file": absolute, e.g. /storage-pool/boot/host1.img
	// SizeBytes is the disk size; for a file disk whose backing file does
	// not exist yet, the size of the sparse file created for it.
	SizeBytes int64
	// NQN, when set, exports the disk over NVMe/TCP on port 4420.
	NQN string
}

// AddForeignDisk adds d to the disk list. A file disk under a pool gets a
// sparse backing file (an existing file is kept). Problems are logged.
func (s *Server) AddForeignDisk(d ForeignDisk) {
	if err := s.st.addForeign(d); err != nil {
		s.log.Error("rdstest: add foreign disk", "slot", d.Slot, "err", err)
	}
}

// Traffic holds the counters /disk monitor-traffic <slot> once reports.
// The fake keeps no I/O statistics of its own: counters not set are zero,
// and every *-time key prints 0ms.
type Traffic struct {
	ReadOps, ReadBytes, WriteOps, WriteBytes, InFlightOps int64
	ReadRateBits, WriteRateBits                           int64
	// Keys the device prints beyond the captured sample
	// (rdsclient/docs/device.md, "Commands used"): read-merges,
	// write-merges, discard-ops, discard-merges, discard-bytes and
	// flush-ops.
	ReadMerges, WriteMerges, DiscardOps, DiscardMerges, DiscardBytes, FlushOps int64
}

type trafficStat struct {
	Traffic
	readOpsPerSec, writeOpsPerSec int64
}

// SetTraffic sets the counters reported for slot.
func (s *Server) SetTraffic(slot string, t Traffic) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.traffic[slot]
	ts.Traffic = t
	s.traffic[slot] = ts
}

// setOpsPerSecond sets the per-second operation rates, which Traffic does
// not carry; for golden tests of the monitor layout.
func (s *Server) setOpsPerSecond(slot string, read, write int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := s.traffic[slot]
	ts.readOpsPerSec, ts.writeOpsPerSec = read, write
	s.traffic[slot] = ts
}

func (s *Server) trafficOf(slot string) trafficStat {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.traffic[slot]
}
