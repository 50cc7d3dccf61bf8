//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/engine"
)

// Limits of a conversation with a stats server: fsctl never waits or
// reads without bound, whatever is listening on the socket.
const (
	maxResponseBytes = 8 << 20  // body of one response
	maxHeaderBytes   = 64 << 10 // headers of one response
	maxErrorBody     = 512      // bytes of an error response quoted back
	defaultTimeout   = 5 * time.Second
	maxTimeout       = 5 * time.Minute
)

// statsClient talks HTTP to an engine's stats server over a Unix socket.
type statsClient struct {
	socket string
	http   *http.Client
}

// newStatsClient checks that path is a Unix socket, not a symlink to
// one, and returns a client for it. A socket owned by another user is
// reported on warn: it may not be the engine you think it is.
func newStatsClient(path string, timeout time.Duration, s *streams) (*statsClient, error) {
	st, err := checkSocket(path)
	if err != nil {
		return nil, err
	}
	if st.Uid != uint32(os.Geteuid()) {
		s.warnf("warning: socket %s belongs to uid %d, not to you (uid %d)", safe(path), st.Uid, os.Geteuid())
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialSocket(ctx, path)
		},
		MaxResponseHeaderBytes: maxHeaderBytes,
		ResponseHeaderTimeout:  timeout,
		MaxIdleConns:           1,
		IdleConnTimeout:        10 * time.Second,
		DisableCompression:     true,
	}
	return &statsClient{socket: path, http: &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("the stats server answered with a redirect")
		},
	}}, nil
}

// checkSocket lstats path: it must exist and be a socket itself, never a
// symlink, which fsctl refuses rather than follow.
func checkSocket(path string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("no socket at %s: is the engine running and serving stats there?", safe(path))
		}
		return nil, fmt.Errorf("socket %s: %w", safe(path), err)
	}
	return &st, socketType(path, &st)
}

func socketType(path string, st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFSOCK:
		return nil
	case unix.S_IFLNK:
		return fmt.Errorf("refusing %s: it is a symbolic link, and fsctl does not follow symlinks to a stats socket; give the socket's own path", safe(path))
	}
	return fmt.Errorf("%s is not a Unix socket", safe(path))
}

// dialSocket connects to the socket at path without following a symlink
// there, even one planted after checkSocket: it opens the path itself
// with O_PATH|O_NOFOLLOW, checks that is a socket, and connects through
// /proc/self/fd. Without /proc it checks the path again and connects to it.
func dialSocket(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("no socket at %s (the engine went away?)", safe(path))
		}
		return nil, fmt.Errorf("open %s: %w", safe(path), err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", safe(path), err)
	}
	if err := socketType(path, &st); err != nil {
		return nil, err
	}
	byFd := "/proc/self/fd/" + strconv.Itoa(fd)
	c, err := d.DialContext(ctx, "unix", byFd)
	if err == nil {
		return c, nil
	}
	if _, statErr := os.Stat("/proc/self/fd"); statErr == nil {
		return nil, fmt.Errorf("connect %s: %w", safe(path), unwrapOpError(err))
	}
	if _, err := checkSocket(path); err != nil {
		return nil, err
	}
	c, err = d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", safe(path), unwrapOpError(err))
	}
	return c, nil
}

// unwrapOpError drops net.OpError's restatement of the address, which
// would name /proc/self/fd/N instead of the socket.
func unwrapOpError(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		return oe.Err
	}
	return err
}

// maxQuotedAnswer is how much of an answer that is not an engine's is
// quoted back.
const maxQuotedAnswer = 120

// get fetches path from the server and decodes its JSON body into v.
// check, when not nil, then says whether v is an engine's answer: a
// server that answers with some other JSON is not the engine.
func (c *statsClient) get(ctx context.Context, path string, v any, check func() error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ringfs"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			if ue.Timeout() {
				return fmt.Errorf("GET %s on %s: no answer within the timeout", path, safe(c.socket))
			}
			err = ue.Err
		}
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
		return fmt.Errorf("GET %s on %s: server answered %s: %s", path, safe(c.socket), resp.Status,
			safe(strings.TrimSpace(string(msg))))
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: reading the response: %w", path, err)
	}
	if len(body) > maxResponseBytes {
		return fmt.Errorf("GET %s: response larger than %s, refused", path, ibytes(maxResponseBytes))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: malformed response: %v", path, err)
	}
	if check != nil {
		if err := check(); err != nil {
			quoted := strings.TrimSpace(string(body[:min(len(body), maxQuotedAnswer)]))
			if len(body) > maxQuotedAnswer {
				quoted += "…"
			}
			return fmt.Errorf("GET %s on %s: not a ringfs engine's answer (%v): %s", path, safe(c.socket), err, safe(quoted))
		}
	}
	return nil
}

// checkStats says whether st is an engine's: engine.Stats always names
// the mode and the backend and gives the engine's start time.
func checkStats(st *engine.Stats) error {
	var bad []string
	if st.Mode == "" {
		bad = append(bad, "no mode")
	}
	if st.Backend == "" {
		bad = append(bad, "no backend")
	}
	if st.StartedUnixNs <= 0 {
		bad = append(bad, "no started_unix_ns")
	}
	if st.UptimeNs < 0 || st.OpenFiles < 0 || st.OpenHandles < 0 {
		bad = append(bad, "negative uptime or count")
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, ", "))
	}
	return nil
}

// checkFiles says whether files is an engine's list: a JSON array (the
// engine never sends null, even holding no files) of files with a path
// and no negative size or count.
func checkFiles(files []engine.FileStats) error {
	if files == nil {
		return errors.New("null, not a list of files")
	}
	for i, f := range files {
		if f.Path == "" {
			return fmt.Errorf("file %d has no path", i)
		}
		if f.SizeBytes < 0 || f.ResidentBytes < 0 || f.DirtyBytes < 0 || f.Handles < 0 || f.Mappings < 0 {
			return fmt.Errorf("file %d has a negative size or count", i)
		}
	}
	return nil
}

// getStats fetches an engine's stats, refusing an answer that is not one.
func (c *statsClient) getStats(ctx context.Context) (engine.Stats, error) {
	var st engine.Stats
	err := c.get(ctx, "/stats", &st, func() error { return checkStats(&st) })
	return st, err
}

// getFiles fetches the files an engine holds, refusing an answer that is
// not an engine's list.
func (c *statsClient) getFiles(ctx context.Context) ([]engine.FileStats, error) {
	var files []engine.FileStats
	err := c.get(ctx, "/files", &files, func() error { return checkFiles(files) })
	return files, err
}

// close releases idle connections.
func (c *statsClient) close() { c.http.CloseIdleConnections() }

// socketFlags are the flags of the commands that talk to an engine.
type socketFlags struct {
	socket  string
	timeout time.Duration
	json    bool
}

func (f *socketFlags) register(fs interface {
	StringVar(*string, string, string, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	BoolVar(*bool, string, bool, string)
}) {
	fs.StringVar(&f.socket, "socket", "", "`PATH` of the engine's stats socket (engine.ListenStats); required")
	fs.DurationVar(&f.timeout, "timeout", defaultTimeout, "give up on a request after `DURATION`")
	fs.BoolVar(&f.json, "json", false, "print a JSON document instead of the human view")
}

func (f *socketFlags) client(args []string, s *streams) (*statsClient, error) {
	if len(args) > 0 {
		return nil, usageErrorf("unexpected argument %q", args[0])
	}
	if f.socket == "" {
		return nil, usageErrorf("--socket PATH is required")
	}
	if f.timeout <= 0 || f.timeout > maxTimeout {
		return nil, usageErrorf("--timeout must be between 0 and %v, got %v", maxTimeout, f.timeout)
	}
	return newStatsClient(f.socket, f.timeout, s)
}
