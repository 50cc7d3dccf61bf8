//go:build linux

package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Limits of the stats server: it answers small GET requests only, and a
// slow or crowded client cannot hold it.
const (
	statsMaxConns     = 16
	statsMaxHeader    = 8 << 10
	statsReadTimeout  = 5 * time.Second
	statsWriteTimeout = 10 * time.Second
	statsIdleTimeout  = 30 * time.Second
)

// ServeStats serves the engine's stats over HTTP on l until l is closed
// or the engine is: GET /stats returns Stats as JSON, GET /files the
// FileStats list (GET /files?limit=N: the N most resident). At most statsMaxConns connections are served at once;
// reads, writes and idle connections time out. It returns nil when the
// engine closed it, and fails with fs.ErrClosed on a closed engine.
func (e *Engine) ServeStats(l net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, e.Stats()) })
	mux.HandleFunc("GET /files", func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if v := r.URL.Query().Get("limit"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil || n < 0 {
				http.Error(w, "limit must be a non-negative integer", http.StatusBadRequest)
				return
			}
		}
		writeJSON(w, e.FilesTop(n))
	})
	srv := &http.Server{
		Handler:           http.MaxBytesHandler(mux, 1<<10),
		ReadHeaderTimeout: statsReadTimeout,
		ReadTimeout:       statsReadTimeout,
		WriteTimeout:      statsWriteTimeout,
		IdleTimeout:       statsIdleTimeout,
		MaxHeaderBytes:    statsMaxHeader,
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return &fs.PathError{Op: "serve", Path: "engine", Err: fs.ErrClosed}
	}
	e.servers[srv] = struct{}{}
	e.mu.Unlock()
	err := srv.Serve(&limitListener{Listener: l, sem: make(chan struct{}, statsMaxConns)})
	e.mu.Lock()
	delete(e.servers, srv)
	e.mu.Unlock()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// limitListener accepts at most cap(sem) connections at a time.
type limitListener struct {
	net.Listener
	sem chan struct{}
}

func (l *limitListener) Accept() (net.Conn, error) {
	l.sem <- struct{}{}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

type limitConn struct {
	net.Conn
	release func()
	// done makes the release happen once: http.Server.Close and the
	// connection's own goroutine may close it at the same time.
	done atomic.Bool
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	if c.done.CompareAndSwap(false, true) {
		c.release()
	}
	return err
}

// ListenStats creates a Unix socket for ServeStats at path, readable and
// writable by the owner only (mode 0600). The directory must belong to
// the caller and not be writable by others. A symlink at path is refused,
// never followed; a stale socket of the caller's is replaced; a directory
// at path is refused with EISDIR, anything else with EEXIST, and an empty
// path with ENOENT. The socket is made in a private
// directory and renamed into place, so it is never reachable with a wider
// mode. Closing the listener removes the socket.
func ListenStats(path string) (net.Listener, error) {
	if path == "" {
		return nil, &fs.PathError{Op: "listen", Path: path, Err: syscall.ENOENT}
	}
	dir := filepath.Dir(path)
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return nil, &fs.PathError{Op: "listen", Path: dir, Err: err}
	}
	if st.Uid != uint32(os.Geteuid()) || st.Mode&0o022 != 0 {
		return nil, &fs.PathError{Op: "listen", Path: dir,
			Err: fmt.Errorf("directory must be owned by uid %d and not group/world-writable: %w", os.Geteuid(), syscall.EPERM)}
	}
	if err := unix.Lstat(path, &st); err == nil {
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
			return nil, &fs.PathError{Op: "listen", Path: path, Err: fmt.Errorf("refusing symlink: %w", syscall.ELOOP)}
		case st.Mode&unix.S_IFMT == unix.S_IFSOCK && st.Uid == uint32(os.Geteuid()):
			// A stale socket of ours: replaced by the rename below.
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			return nil, &fs.PathError{Op: "listen", Path: path, Err: syscall.EISDIR}
		default:
			return nil, &fs.PathError{Op: "listen", Path: path, Err: syscall.EEXIST}
		}
	}
	tmp, err := os.MkdirTemp(dir, ".ringfs-sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	sock := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	if err := os.Rename(sock, path); err != nil {
		l.Close()
		return nil, err
	}
	return &statsListener{UnixListener: l, path: path}, nil
}

type statsListener struct {
	*net.UnixListener
	path string
}

func (l *statsListener) Close() error {
	err := l.UnixListener.Close()
	os.Remove(l.path)
	return err
}
