//go:build linux

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/ringfs/ringfs/engine"
)

// hubClient is an HTTP client of the hub's socket that keeps its
// connection open between requests, as fsctl and curl do, and counts the
// connections it makes.
type hubClient struct {
	t     *testing.T
	c     *http.Client
	dials atomic.Int64
}

func newHubClient(t *testing.T, socket string) *hubClient {
	hc := &hubClient{t: t}
	hc.c = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			hc.dials.Add(1)
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}
	t.Cleanup(hc.c.CloseIdleConnections)
	return hc
}

// get fetches path into v and returns the status code.
func (hc *hubClient) get(path string, v any) int {
	hc.t.Helper()
	resp, err := hc.c.Get("http://bench" + path)
	if err != nil {
		hc.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	defer io.Copy(io.Discard, resp.Body) // read to the end, to reuse the connection
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			hc.t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

func newTestEngine(t *testing.T, mode engine.Mode) *engine.Engine {
	t.Helper()
	e, err := engine.New(engine.Options{Mode: mode, Backend: "psync", CacheSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// TestStatsHub: every request is answered by the engine of the round
// running then, also on a connection opened during an earlier round;
// between rounds GET /stats and GET /files both describe the last engine
// as its round ended; before any round both answer 503.
func TestStatsHub(t *testing.T) {
	dir := t.TempDir()
	h, err := newStatsHub(filepath.Join(dir, "stats.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	hc := newHubClient(t, filepath.Join(dir, "stats.sock"))
	var st engine.Stats
	var files []engine.FileStats
	if code := hc.get("/stats", &st); code != http.StatusServiceUnavailable {
		t.Errorf("GET /stats before any round: %d", code)
	}
	if code := hc.get("/files", &files); code != http.StatusServiceUnavailable {
		t.Errorf("GET /files before any round: %d", code)
	}

	first, second := newTestEngine(t, engine.Exclusive), newTestEngine(t, engine.Writethrough)
	f, err := first.Open(filepath.Join(dir, "data"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// check fetches both routes and compares them with the engine
	// started at startedUnixNs holding n files.
	check := func(when string, startedUnixNs int64, n int) {
		t.Helper()
		if code := hc.get("/stats", &st); code != http.StatusOK || st.StartedUnixNs != startedUnixNs {
			t.Errorf("%s: GET /stats %d: engine started at %d (%s), want the one started at %d",
				when, code, st.StartedUnixNs, st.Mode, startedUnixNs)
		}
		files = nil
		if code := hc.get("/files", &files); code != http.StatusOK || len(files) != n || st.OpenFiles != n {
			t.Errorf("%s: GET /files %d: %d files, GET /stats %d open, want %d", when, code, len(files), st.OpenFiles, n)
		}
	}

	h.attach(first)
	check("first round", first.Stats().StartedUnixNs, 1)
	h.detach(first)
	check("between rounds", first.Stats().StartedUnixNs, 1)
	h.attach(second)
	check("second round", second.Stats().StartedUnixNs, 0)
	h.detach(second)
	check("after the second round", second.Stats().StartedUnixNs, 0)
	if n := hc.dials.Load(); n != 1 {
		t.Errorf("the client connected %d times; the test means one connection across the rounds", n)
	}
	var limited []engine.FileStats
	h.attach(first)
	if code := hc.get("/files?limit=x", &limited); code != http.StatusBadRequest {
		t.Errorf("GET /files?limit=x: %d", code)
	}
}
