//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ringfs/ringfs/engine"
)

// scripted answers GET /stats with snapshots in turn, and the last one
// from then on, and GET /files with an empty list.
func scripted(t *testing.T, snapshots ...engine.Stats) http.Handler {
	t.Helper()
	answers := make([][]byte, len(snapshots))
	for i, st := range snapshots {
		b, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		answers[i] = b
	}
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Write(answers[min(int(n.Add(1))-1, len(answers)-1)])
	})
	mux.HandleFunc("GET /files", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("[]")) })
	return mux
}

// watchInProcess runs "fsctl stats --watch 50ms --json" on socket until it
// has printed frames documents, then interrupts it, and returns them
// with what it wrote on stderr.
func watchInProcess(t *testing.T, socket string, frames int) ([]statsDoc, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	pr, pw := io.Pipe()
	var stderr strings.Builder
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"stats", "--socket", socket, "--watch", "50ms", "--json"}, &streams{out: pw, err: &stderr})
		pw.Close()
		done <- code
	}()
	sc := bufio.NewScanner(pr)
	var docs []statsDoc
	for len(docs) < frames && sc.Scan() {
		var d statsDoc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("document %d: %v: %s", len(docs)+1, err, sc.Text())
		}
		docs = append(docs, d)
	}
	cancel()
	for sc.Scan() { // drain until the watch ends
	}
	if code := <-done; code != 0 || len(docs) < frames {
		t.Fatalf("watch: exit %d after %d documents; stderr:\n%s", code, len(docs), stderr.String())
	}
	return docs, stderr.String()
}

// snapshot is an engine's stats with the given start time and syncs.
func snapshot(startedUnixNs int64, uptimeNs int64, syncs uint64) engine.Stats {
	st := fixtureLater()
	st.StartedUnixNs, st.UptimeNs, st.Syncs = startedUnixNs, uptimeNs, syncs
	st.SyncLatency = engine.Latency{}
	return st
}

// TestWatchCounterWentDown: a counter that goes down between two
// snapshots of one engine is taken as a restart: the frame has no
// interval (no difference is taken), stderr says which counter went
// down, and no frame holds an underflowed count.
func TestWatchCounterWentDown(t *testing.T) {
	const started = 1.7e18
	s := startFakeServer(t, scripted(t, snapshot(started, 1e9, 99), snapshot(started, 2e9, 98), snapshot(started, 3e9, 100)))
	docs, stderr := watchInProcess(t, s.path, 3)
	if docs[1].Interval != nil {
		t.Errorf("frame after syncs went 99 → 98 has an interval: %+v", *docs[1].Interval)
	}
	if docs[1].Totals.Syncs != 98 {
		t.Errorf("frame after the reset: %d syncs in total, want 98", docs[1].Totals.Syncs)
	}
	if iv := docs[2].Interval; iv == nil || iv.Syncs != 2 || iv.IntervalNs != 1e9 {
		t.Errorf("the frame after the reset does not follow it: interval %+v", iv)
	}
	if !strings.Contains(stderr, "counter syncs went down, from 99 to 98") {
		t.Errorf("stderr %q does not say which counter went down", stderr)
	}
	for i, d := range docs {
		if b, _ := json.Marshal(d); strings.Contains(string(b), "18446744073709551") {
			t.Errorf("frame %d holds an underflowed count: %s", i+1, b)
		}
	}
}

// TestDiscontinuity: any counter of one engine that goes down, wherever
// it is in the snapshot, breaks the watch's differences, and is named.
func TestDiscontinuity(t *testing.T) {
	base := fixtureLater()
	base.StartedUnixNs = 1.7e18
	for _, tc := range []struct {
		want   string
		change func(*engine.Stats)
	}{
		{"", func(*engine.Stats) {}},
		{"", func(s *engine.Stats) { s.Ring.Inflight = 0 }}, // a gauge
		{"", func(s *engine.Stats) { s.Cache.ResidentBytes = 0 }},
		{"counter syncs went down", func(s *engine.Stats) { s.Syncs-- }},
		{"counter reads.bytes went down", func(s *engine.Stats) { s.Reads.CacheHit.Bytes-- }},
		{"counter writes.ops went down", func(s *engine.Stats) { s.Writes.Cache.Ops-- }},
		{"counter cache.evictions went down", func(s *engine.Stats) { s.Cache.Evictions-- }},
		{"counter cache.file_lock_wait_ns went down", func(s *engine.Stats) { s.Cache.FileLockWaitNs-- }},
		{"counter ring.sqes went down", func(s *engine.Stats) { s.Ring.SQEs-- }},
		{"counter ring.plain_syscalls went down", func(s *engine.Stats) { s.Ring.Inline-- }},
		{"counter errors.io went down", func(s *engine.Stats) { s.Errors-- }},
		{"counter errors.eviction_writeback went down", func(s *engine.Stats) { s.Cache.EvictionWritebackErrors-- }},
		{"counter read_latency.buckets[17] went down", func(s *engine.Stats) { s.ReadLatency.Buckets[17]-- }},
		{"uptime went back", func(s *engine.Stats) { s.UptimeNs-- }},
		{"another engine", func(s *engine.Stats) { s.StartedUnixNs++ }},
		{"another engine", func(s *engine.Stats) { s.Backend = "psync" }},
	} {
		prev := base
		prev.Syncs, prev.Errors, prev.Ring.Inline, prev.Cache.EvictionWritebackErrors = 5, 5, 5, 5
		prev.Cache.FileLockWaitNs = 5
		cur := prev
		tc.change(&cur)
		got := discontinuity(prev, cur)
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("%s: discontinuity %q", tc.want, got)
		}
	}
}

type connKey struct{}

// TestWatchFollowsEngines: a server that hands each connection to the
// engine running when it was made (as bench's stats socket once did) is
// followed from engine to engine, since the watch connects anew for every
// snapshot, and a change of engine is taken as a restart, never as an
// interval across two engines.
func TestWatchFollowsEngines(t *testing.T) {
	var conns atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		n := r.Context().Value(connKey{}).(int64) // the engine bound to this connection
		st := snapshot(1.7e18+n, 1e9, 10)
		st.Backend = []string{"uring", "psync"}[n%2]
		b, _ := json.Marshal(st)
		w.Write(b)
	})
	mux.HandleFunc("GET /files", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("[]")) })
	path := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, conns.Add(1))
	}}
	go srv.Serve(l)
	defer srv.Close()

	docs, stderr := watchInProcess(t, path, 3)
	for i := 1; i < len(docs); i++ {
		if docs[i].Engine.Backend == docs[i-1].Engine.Backend {
			t.Errorf("frames %d and %d both from the %s engine: the watch kept its first connection", i, i+1, docs[i].Engine.Backend)
		}
		if docs[i].Interval != nil {
			t.Errorf("frame %d has an interval across two engines", i+1)
		}
	}
	if !strings.Contains(stderr, "another engine answers on the socket") {
		t.Errorf("stderr %q does not say the engine changed", stderr)
	}
}
