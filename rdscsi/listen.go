package rdscsi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ListenOption configures Listen.
type ListenOption func(*listenOptions)

type listenOptions struct {
	mode fs.FileMode
}

// DefaultSocketMode is the permission of a unix socket made by Listen:
// the CO's sidecars run as root or in the owning group.
const DefaultSocketMode fs.FileMode = 0o660

// WithSocketMode sets the permission bits of a unix socket.
func WithSocketMode(mode fs.FileMode) ListenOption {
	return func(o *listenOptions) { o.mode = mode.Perm() }
}

// Listen opens a CSI endpoint: "unix:///path/csi.sock" (also
// "unix:/path/csi.sock") or "tcp://host:port". A unix socket file left
// over by a previous run is replaced, but only when it is a socket that
// nobody listens on; any other file there is an error, never removed.
// The socket gets DefaultSocketMode unless WithSocketMode says otherwise.
func Listen(endpoint string, opts ...ListenOption) (net.Listener, error) {
	o := listenOptions{mode: DefaultSocketMode}
	for _, opt := range opts {
		opt(&o)
	}
	scheme, addr, ok := strings.Cut(endpoint, ":")
	if !ok {
		return nil, errorf(ErrInvalidArgument, "endpoint %q: want unix:///path or tcp://host:port", clipInput(endpoint))
	}
	switch strings.ToLower(scheme) {
	case "unix":
		// unix:///abs/path, unix:/abs/path; unix://rel is not a path.
		path := strings.TrimPrefix(addr, "//")
		if !strings.HasPrefix(path, "/") {
			return nil, errorf(ErrInvalidArgument, "endpoint %q: unix socket path must be absolute", clipInput(endpoint))
		}
		return listenUnix(path, o.mode)
	case "tcp":
		host := strings.TrimPrefix(addr, "//")
		if host == "" || strings.Contains(host, "/") {
			return nil, errorf(ErrInvalidArgument, "endpoint %q: want tcp://host:port", clipInput(endpoint))
		}
		l, err := net.Listen("tcp", host)
		if err != nil {
			return nil, fmt.Errorf("rdscsi: listen %s: %w", endpoint, err)
		}
		return l, nil
	}
	return nil, errorf(ErrInvalidArgument, "endpoint %q: unsupported scheme %q", clipInput(endpoint), clipInput(scheme))
}

// listenUnix binds the socket in a private directory, sets its mode and
// only then renames it into place, so it is never reachable with wider
// permissions than asked for.
func listenUnix(path string, mode fs.FileMode) (net.Listener, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".csi-socket-")
	if err != nil {
		return nil, fmt.Errorf("rdscsi: listen unix %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("rdscsi: listen unix %s: %w", path, err)
	}
	l.SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		l.Close()
		return nil, fmt.Errorf("rdscsi: listen unix %s: %w", path, err)
	}
	if err := os.Chmod(tmpPath, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &unixListener{UnixListener: l, path: path, file: fi}, nil
}

// unixListener removes its socket file on Close, unless the file was
// replaced meanwhile (by another server that now owns the path).
type unixListener struct {
	*net.UnixListener
	path string
	file fs.FileInfo
	once sync.Once
}

// Addr reports the final socket path, not the temporary one it was
// bound at.
func (l *unixListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

// Close stops listening and removes the socket file it created.
func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.file) {
			os.Remove(l.path)
		}
	})
	return err
}

// removeStaleSocket removes path if it is a socket no process accepts on.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("rdscsi: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return errorf(ErrFailedPrecondition, "%s exists and is not a socket; not removing it", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return errorf(ErrFailedPrecondition, "%s is in use by a running server", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rdscsi: remove stale socket: %w", err)
	}
	return nil
}
