//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func statsJSON(t *testing.T, socket string) statsDoc {
	t.Helper()
	r := runFsctl(t, "stats", "--socket", socket, "--json")
	if r.code != 0 {
		t.Fatalf("fsctl stats --json: exit %d: %s", r.code, r.stderr)
	}
	var d statsDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("fsctl stats --json: %v\n%s", err, r.stdout)
	}
	return d
}

func cacheJSON(t *testing.T, socket string) cacheDoc {
	t.Helper()
	r := runFsctl(t, "cache", "--socket", socket, "--json")
	if r.code != 0 {
		t.Fatalf("fsctl cache --json: exit %d: %s", r.code, r.stderr)
	}
	var d cacheDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("fsctl cache --json: %v\n%s", err, r.stdout)
	}
	return d
}

// TestStatsFollowIO: the counters fsctl shows move exactly as the
// engine's I/O does.
func TestStatsFollowIO(t *testing.T) {
	p := startEngine(t)
	const mib = 1 << 20

	a := statsJSON(t, p.socket)
	if a.SchemaVersion != 1 || a.Kind != "stats" || a.Engine.Mode != "exclusive" || a.Interval != nil {
		t.Fatalf("first snapshot: %+v", a)
	}
	if b := a.Engine.Backend; b != "uring" && b != "psync" {
		t.Errorf("backend %q", b)
	}
	if !a.Gauges.CacheEnabled || a.Gauges.CacheCapacityBytes != helperCacheSize {
		t.Errorf("cache gauges %+v, want enabled with %d bytes", a.Gauges, helperCacheSize)
	}
	if a.Engine.OpenFiles != 1 || a.Engine.OpenHandles != 1 {
		t.Errorf("open files/handles %d/%d, want 1/1", a.Engine.OpenFiles, a.Engine.OpenHandles)
	}

	p.do("write 0 %d", mib)
	b := statsJSON(t, p.socket)
	if got := b.Totals.Writes.Bytes - a.Totals.Writes.Bytes; got != mib {
		t.Errorf("write bytes moved by %d, want %d", got, mib)
	}
	if got := b.Totals.Writes.Ops - a.Totals.Writes.Ops; got != 1 {
		t.Errorf("write ops moved by %d, want 1", got)
	}
	// Exclusive mode writes back lazily: the write is (at least partly)
	// dirty in the cache until Sync.
	dirty := b.Gauges.CacheDirtyBytes
	if dirty == nil || *dirty <= 0 || *dirty > mib {
		t.Fatalf("dirty bytes after an unsynced 1 MiB write: %v, want (0, %d]", dirty, mib)
	}
	if b.Gauges.CacheResidentBytes < *dirty {
		t.Errorf("resident %d < dirty %d", b.Gauges.CacheResidentBytes, *dirty)
	}
	if b.Engine.UptimeNs <= a.Engine.UptimeNs {
		t.Errorf("uptime did not move: %d then %d", a.Engine.UptimeNs, b.Engine.UptimeNs)
	}

	c := cacheJSON(t, p.socket)
	if len(c.Files) != 1 {
		t.Fatalf("cache lists %d files, want 1: %+v", len(c.Files), c.Files)
	}
	f := c.Files[0]
	if f.Path != p.file || f.SizeBytes != mib || f.DirtyBytes != *dirty || f.ResidentBytes < f.DirtyBytes ||
		f.Handles != 1 || f.PendingError {
		t.Errorf("cache entry %+v, want %s of 1 MiB with the %d dirty bytes stats showed, 1 handle", f, p.file, *dirty)
	}
	if c.Total.Files != 1 || c.Total.DirtyBytes != *dirty || c.Total.ResidentBytes != f.ResidentBytes {
		t.Errorf("cache total %+v", c.Total)
	}

	p.do("sync")
	s := statsJSON(t, p.socket)
	if *s.Gauges.CacheDirtyBytes != 0 {
		t.Errorf("dirty bytes after Sync: %d", *s.Gauges.CacheDirtyBytes)
	}
	if got := s.Totals.Cache.WritebackBytes - b.Totals.Cache.WritebackBytes; got < uint64(*dirty) {
		t.Errorf("writeback moved by %d on Sync of %d dirty bytes", got, *dirty)
	}
	if got := s.Totals.Syncs - b.Totals.Syncs; got != 1 {
		t.Errorf("syncs moved by %d, want 1", got)
	}
	if s.Totals.Latency.Sync.Count != b.Totals.Latency.Sync.Count+1 {
		t.Errorf("sync latency count %d then %d", b.Totals.Latency.Sync.Count, s.Totals.Latency.Sync.Count)
	}

	p.do("read 0 %d", mib)
	r := statsJSON(t, p.socket)
	if got := r.Totals.Reads.Bytes - s.Totals.Reads.Bytes; got != mib {
		t.Errorf("read bytes moved by %d, want %d", got, mib)
	}
	if got := r.Totals.Reads.CacheHit.Ops - s.Totals.Reads.CacheHit.Ops; got != 1 {
		t.Errorf("cache-hit reads moved by %d: a read of resident data is a hit", got)
	}
	if r.Totals.Latency.Read.Count != s.Totals.Latency.Read.Count+1 || r.Totals.Latency.Read.P99Ns <= 0 {
		t.Errorf("read latency %+v", r.Totals.Latency.Read)
	}

	h := runFsctl(t, "stats", "--socket", p.socket)
	if h.code != 0 || !strings.Contains(h.stdout, "exclusive mode") || !regexp.MustCompile(`(?m)^reads +[1-9]`).MatchString(h.stdout) {
		t.Errorf("human stats: exit %d\n%s%s", h.code, h.stdout, h.stderr)
	}
	hc := runFsctl(t, "cache", "--socket", p.socket)
	if hc.code != 0 || !strings.Contains(hc.stdout, p.file) || !strings.Contains(hc.stdout, "1.0 MiB") {
		t.Errorf("human cache: exit %d\n%s%s", hc.code, hc.stdout, hc.stderr)
	}
}

// startWatch runs fsctl stats --watch and returns its stdout lines.
func startWatch(t *testing.T, args ...string) (*exec.Cmd, *bufio.Scanner, *strings.Builder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, fsctlBinary(t), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(stdout), &stderr
}

// stopWatch signals the watcher and checks that it ends cleanly.
func stopWatch(t *testing.T, cmd *exec.Cmd, sc *bufio.Scanner, stderr *strings.Builder, sig syscall.Signal) {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	for sc.Scan() { // drain, so that it never blocks on a full pipe
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("fsctl stats --watch after %v: %v (want exit 0)\n%s", sig, err, stderr)
	}
}

// TestWatchJSON: each line after the first carries the interval's counts,
// which are the differences of consecutive totals, and they move while
// the engine works; read latencies keep up with reads. SIGINT ends the
// watch with exit status 0.
func TestWatchJSON(t *testing.T) {
	p := startEngine(t)
	p.do("busy")
	defer p.do("calm")
	cmd, sc, stderr := startWatch(t, "stats", "--socket", p.socket, "--watch", "200ms", "--json")
	var docs []statsDoc
	for len(docs) < 3 && sc.Scan() {
		var d statsDoc
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("line %d: %v: %s", len(docs)+1, err, sc.Text())
		}
		docs = append(docs, d)
	}
	stopWatch(t, cmd, sc, stderr, syscall.SIGINT)
	if len(docs) < 3 {
		t.Fatalf("got %d documents before the watch ended\n%s", len(docs), stderr)
	}
	if docs[0].Interval != nil {
		t.Errorf("the first document has an interval")
	}
	for i := 1; i < 3; i++ {
		prev, cur := docs[i-1], docs[i]
		iv := cur.Interval
		if iv == nil {
			t.Fatalf("document %d has no interval", i+1)
		}
		if iv.IntervalNs != cur.Engine.UptimeNs-prev.Engine.UptimeNs {
			t.Errorf("interval %d ns, uptimes %d → %d", iv.IntervalNs, prev.Engine.UptimeNs, cur.Engine.UptimeNs)
		}
		if iv.IntervalNs < int64(100*time.Millisecond) || iv.IntervalNs > int64(5*time.Second) {
			t.Errorf("interval of %v for --watch 200ms", time.Duration(iv.IntervalNs))
		}
		for _, c := range []struct {
			name            string
			delta, cur, old uint64
		}{
			{"read ops", iv.Reads.Ops, cur.Totals.Reads.Ops, prev.Totals.Reads.Ops},
			{"write bytes", iv.Writes.Bytes, cur.Totals.Writes.Bytes, prev.Totals.Writes.Bytes},
			{"ring enters", iv.Ring.Enters, cur.Totals.Ring.Enters, prev.Totals.Ring.Enters},
		} {
			if c.delta != c.cur-c.old {
				t.Errorf("interval %d %s = %d, totals moved %d → %d", i, c.name, c.delta, c.old, c.cur)
			}
			if c.name != "ring enters" && c.delta == 0 {
				t.Errorf("interval %d: %s did not move while the engine was busy", i, c.name)
			}
		}
		// Every call is timed (LatencySampling 1). A snapshot never
		// shows a call's latency before the call, and the one busy
		// goroutine has at most one read in flight at either end of an
		// interval, so the two counts differ by at most one.
		if tot := cur.Totals; tot.Latency.Read.Count > tot.Reads.Ops || tot.Reads.Ops > tot.Latency.Read.Count+1 {
			t.Errorf("document %d: %d read latencies for %d reads", i+1, tot.Latency.Read.Count, tot.Reads.Ops)
		}
		if d := int64(iv.Latency.Read.Count) - int64(iv.Reads.Ops); d < -1 || d > 1 {
			t.Errorf("interval %d: %d read latencies for %d reads", i, iv.Latency.Read.Count, iv.Reads.Ops)
		}
	}
}

// TestWatchHuman: the human watch prints a frame per interval with that
// interval's rates, and SIGTERM ends it with exit status 0.
func TestWatchHuman(t *testing.T) {
	p := startEngine(t)
	p.do("busy")
	defer p.do("calm")
	cmd, sc, stderr := startWatch(t, "stats", "--socket", p.socket, "--watch", "200ms")
	var frames []string
	var cur strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "engine ") && cur.Len() > 0 {
			frames = append(frames, cur.String())
			cur.Reset()
			if len(frames) == 3 {
				break
			}
		}
		cur.WriteString(line + "\n")
	}
	stopWatch(t, cmd, sc, stderr, syscall.SIGTERM)
	if len(frames) < 3 {
		t.Fatalf("got %d frames\n%s", len(frames), stderr)
	}
	if !strings.Contains(frames[0], "totals since start") {
		t.Errorf("first frame is not the totals:\n%s", frames[0])
	}
	readsRe := regexp.MustCompile(`(?m)^reads +([0-9,]+) .* ([0-9,.]+)/s +\S+ \S+/s$`)
	for _, f := range frames[1:] {
		if !strings.Contains(f, "showing  the last") {
			t.Errorf("frame is not an interval:\n%s", f)
		}
		m := readsRe.FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("no reads row in frame:\n%s", f)
		}
		n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
		if n == 0 || m[2] == "0" {
			t.Errorf("reads did not move in an interval of a busy engine: %q", m[0])
		}
	}
}
