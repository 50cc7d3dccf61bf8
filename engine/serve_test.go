//go:build linux

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The stats server (reliability row S3, in reliability_coherence_test.go):
// a Unix socket of mode 0600 that refuses a planted symlink, serving
// Stats and Files as JSON.

func unixClient(sock string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			DisableKeepAlives: true,
		},
	}
}

func getJSON(t testing.TB, c *http.Client, url string, v any) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: Content-Type %q", url, ct)
	}
	dec := json.NewDecoder(resp.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("GET %s: decoding: %v", url, err)
	}
}

// serveStats: the socket is 0600, /stats and /files answer and move with
// the engine's work, other methods and paths are refused, 40 parallel
// clients are answered, and Engine.Close stops the server and removes
// the socket. It returns the requests answered.
func serveStats(t *testing.T) int {
	e := newEngine(t, Options{Mode: Exclusive, LatencySampling: 1})
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "stats.sock")
	l, err := ListenStats(sock)
	if err != nil {
		t.Fatalf("ListenStats: %v", err)
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket of mode 0600", fi.Mode())
	}
	served := make(chan error, 1)
	go func() { served <- e.ServeStats(l) }()
	c := unixClient(sock)

	var s0 Stats
	getJSON(t, c, "http://ringfs/stats", &s0)
	if s0.Mode != "exclusive" || s0.Backend != e.BackendName() || !s0.CacheEnabled {
		t.Fatalf("stats identity: mode %q backend %q cache %v", s0.Mode, s0.Backend, s0.CacheEnabled)
	}
	path := filepath.Join(t.TempDir(), "data")
	f := openFile(t, e, path, os.O_RDWR|os.O_CREATE)
	p := pattern(256<<10, 21, 0)
	if _, err := f.WriteAt(p, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := f.ReadAt(p[:4096], 8192); err != nil {
			t.Fatal(err)
		}
	}
	var s1 Stats
	getJSON(t, c, "http://ringfs/stats", &s1)
	d := s1.Sub(s0)
	switch {
	case d.Writes.Ops() < 1 || d.Writes.Bytes() < uint64(len(p)):
		t.Fatalf("writes did not move: %+v", d.Writes)
	case d.Reads.CacheHit.Ops < 10 || d.Reads.CacheHit.Bytes < 10*4096:
		t.Fatalf("cache hits did not move: %+v", d.Reads)
	case d.Syncs < 1 || d.Ring.Enters == 0 || d.Ring.SQEs == 0:
		t.Fatalf("syncs %d, enters %d, SQEs %d", d.Syncs, d.Ring.Enters, d.Ring.SQEs)
	case d.Cache.WritebackBytes < uint64(len(p)) || s1.Cache.ResidentBytes == 0:
		t.Fatalf("cache: writeback %d, resident %d", d.Cache.WritebackBytes, s1.Cache.ResidentBytes)
	case s1.OpenHandles != 1 || s1.OpenFiles != 1:
		t.Fatalf("open handles %d, files %d", s1.OpenHandles, s1.OpenFiles)
	case s1.ReadLatency.Count < 10 || s1.ReadLatency.P50Ns <= 0 || s1.ReadLatency.MaxNs <= 0:
		t.Fatalf("read latency: %+v", s1.ReadLatency)
	}
	var files []FileStats
	getJSON(t, c, "http://ringfs/files", &files)
	if len(files) != 1 || files[0].Path != path || files[0].SizeBytes != int64(len(p)) || files[0].Handles != 1 || files[0].ResidentBytes == 0 {
		t.Fatalf("/files: %+v", files)
	}
	// Other methods and paths are refused.
	if resp, err := c.Post("http://ringfs/stats", "application/json", nil); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /stats: %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
	if resp, err := c.Get("http://ringfs/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /nope: %v, %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Many clients at once are all answered.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("http://ringfs/stats")
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- errors.New(resp.Status)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent GET: %v", err)
	}
	f.Close()
	// Engine.Close stops the server and removes the socket.
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("ServeStats returned %v after Engine.Close", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("ServeStats still running after Engine.Close")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket left behind: %v", err)
	}
	t.Logf("stats socket 0600; /stats moved by %d writes, %d hits, %d syncs, %d SQEs; /files listed the file; 40 parallel clients answered; server stopped by Engine.Close",
		d.Writes.Ops(), d.Reads.CacheHit.Ops, d.Syncs, d.Ring.SQEs)
	return 5 + 40
}

// listenStatsRefuses: a symlink planted at the path is refused and not
// followed, anything else there is refused, a directory others can write
// is refused; a stale socket of ours is replaced. It returns the planted
// paths refused.
func listenStatsRefuses(t *testing.T) int {
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	target := filepath.Join(dir, "target")
	writeHost(t, target, []byte("keep"))
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if l, err := ListenStats(link); err == nil {
		l.Close()
		t.Fatalf("ListenStats on a symlink succeeded")
	} else {
		wantPathErr(t, "ListenStats on a symlink", err, syscall.ELOOP)
	}
	if got := string(readHost(t, target)); got != "keep" {
		t.Fatalf("symlink target changed: %q", got)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v, %v", fi, err)
	}
	dangling := filepath.Join(dir, "dangling.sock")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	if l, err := ListenStats(dangling); err == nil {
		l.Close()
		t.Fatalf("ListenStats on a dangling symlink succeeded")
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a dangling symlink was followed: %v", err)
	}
	if l, err := ListenStats(target); err == nil {
		l.Close()
		t.Fatalf("ListenStats over a regular file succeeded")
	} else {
		wantPathErr(t, "ListenStats over a regular file", err, syscall.EEXIST)
	}
	for _, c := range []struct {
		name, path string
		want       error
	}{
		{"a directory", dir, syscall.EISDIR},
		{"a directory, with a slash", dir + "/", syscall.EISDIR},
		{"an empty path", "", syscall.ENOENT},
	} {
		if l, err := ListenStats(c.path); err == nil {
			l.Close()
			t.Fatalf("ListenStats on %s succeeded", c.name)
		} else {
			wantPathErr(t, "ListenStats on "+c.name, err, c.want)
		}
	}
	if left, _ := filepath.Glob(".ringfs-sock-*"); len(left) != 0 {
		t.Fatalf("refused ListenStats calls left %v in the working directory", left)
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if l, err := ListenStats(filepath.Join(open, "s.sock")); err == nil {
		l.Close()
		t.Fatalf("ListenStats in a world-writable directory succeeded")
	} else {
		wantPathErr(t, "ListenStats in a world-writable directory", err, syscall.EPERM)
	}
	// A stale socket of ours is replaced.
	stale := filepath.Join(dir, "stale.sock")
	sl, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	sl.(*net.UnixListener).SetUnlinkOnClose(false)
	sl.Close()
	l, err := ListenStats(stale)
	if err != nil {
		t.Fatalf("ListenStats over a stale socket: %v", err)
	}
	l.Close()
	t.Logf("refused: symlink (ELOOP, target untouched), dangling symlink, regular file (EEXIST), directory (EISDIR), empty path (ENOENT), world-writable directory (EPERM); stale socket replaced")
	return 7
}

// limitConnCloseOnce: a stats connection closed by two goroutines at
// once (http.Server.Close and the connection's own goroutine) gives its
// slot back exactly once; a double release would take another
// connection's slot (or block on an empty semaphore). It returns the
// connections closed twice.
func limitConnCloseOnce(t *testing.T) int {
	const rounds = 2000
	sem := make(chan struct{}, 8)
	sem <- struct{}{} // held by another connection throughout
	for range rounds {
		sem <- struct{}{} // this connection's slot
		a, b := net.Pipe()
		c := &limitConn{Conn: a, release: func() { <-sem }}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				c.Close()
			}()
		}
		close(start)
		wg.Wait()
		b.Close()
		if len(sem) != 1 {
			t.Fatalf("after racing Closes %d slots are held, want 1 (the other connection's)", len(sem))
		}
	}
	t.Logf("%d connections closed twice at once: each slot released once", rounds)
	return rounds
}
