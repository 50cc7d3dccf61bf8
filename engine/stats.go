//go:build linux

package engine

import (
	"math/bits"
	"math/rand/v2"
	"sort"
	"sync/atomic"
	"time"

	"github.com/ringfs/ringfs/hostmap"
	"github.com/ringfs/ringfs/internal/stripe"
	"github.com/ringfs/ringfs/pagecache"
	"github.com/ringfs/ringfs/uring"
)

// monoBase is the origin of monoNow.
var monoBase = time.Now()

// monoNow reads the monotonic clock only: time.Since costs one clock read
// where time.Now costs two (wall and monotonic), and on a virtual machine
// whose vDSO clock is slow (kvm-clock here: about 60 ns a read) the third
// read is a tenth of a cached 4 KiB ReadAt.
func monoNow() time.Duration { return time.Since(monoBase) }

// DefaultLatencySampling times one read or write in 16 for the latency
// histograms. A clock read costs about a tenth of a cached 4 KiB read on
// a virtual machine, so timing every call would cost a fifth of it; a
// random sample keeps the percentiles unbiased.
const DefaultLatencySampling = 16

// sampleStart returns the time a sampled call starts, or -1 when the
// call is not timed. mask is the sampling interval minus one (a power of
// two minus one).
func sampleStart(mask uint32) time.Duration {
	if mask != 0 && rand.Uint32()&mask != 0 {
		return -1
	}
	return monoNow()
}

// since returns the time since start, or -1 when start is -1.
func since(start time.Duration) time.Duration {
	if start < 0 {
		return -1
	}
	return monoNow() - start
}

// ioPath is the way an operation was served.
type ioPath uint8

const (
	pathHit    ioPath = iota // read entirely from the page cache
	pathFill                 // read that filled the cache from the host
	pathCache                // write into the page cache (and host gaps)
	pathDirect               // O_DIRECT handle
	pathMmap                 // through host mappings
	pathHost                 // straight to the host (Shared, no cache, mapped files)
	pathSync                 // Sync/Datasync
	numPaths
)

type opKind uint8

const (
	opRead opKind = iota
	opWrite
	opSync
	numOpKinds
)

// latencyBuckets is the number of power-of-two latency buckets: bucket i
// holds latencies in [2^i, 2^(i+1)) ns (bucket 0 also holds 0).
const latencyBuckets = 40

// stats are the engine's live counters, one copy per stripe: every call
// adds to them, from as many goroutines as call at once.
type stats struct {
	shards stripe.Sharded[statShard]
}

// statShard is one stripe's counters.
type statShard struct {
	ops    [numOpKinds][numPaths]atomic.Uint64
	bytes  [numOpKinds][numPaths]atomic.Uint64
	errors atomic.Uint64
	lat    [numOpKinds]histogram
}

type histogram struct {
	buckets [latencyBuckets]atomic.Uint64
	maxNs   atomic.Int64
}

func (h *histogram) add(d time.Duration) {
	ns := int64(d)
	b := 0
	if ns > 0 {
		b = min(bits.Len64(uint64(ns))-1, latencyBuckets-1)
	}
	h.buckets[b].Add(1)
	for {
		m := h.maxNs.Load()
		if ns <= m || h.maxNs.CompareAndSwap(m, ns) {
			return
		}
	}
}

// record counts one call. It counts the operation before it adds the
// latency; Engine.Stats reads them in the other order and relies on this.
func (st *stats) record(op opKind, path ioPath, n int, d time.Duration, err error) {
	s := st.shards.At(stripe.Hint())
	s.ops[op][path].Add(1)
	if n > 0 {
		s.bytes[op][path].Add(uint64(n))
	}
	if err != nil {
		s.errors.Add(1)
	}
	if d >= 0 {
		s.lat[op].add(d)
	}
}

// path sums the operations and bytes of op served by path.
func (st *stats) path(op opKind, path ioPath) PathStats {
	var ps PathStats
	st.shards.Each(func(s *statShard) {
		ps.Ops += s.ops[op][path].Load()
		ps.Bytes += s.bytes[op][path].Load()
	})
	return ps
}

// errorCount sums the failed calls.
func (st *stats) errorCount() uint64 {
	var n uint64
	st.shards.Each(func(s *statShard) { n += s.errors.Load() })
	return n
}

// latency sums the histograms of op into l.
func (st *stats) latency(op opKind, l *Latency) {
	st.shards.Each(func(s *statShard) {
		h := &s.lat[op]
		for b := range l.Buckets {
			l.Buckets[b] += h.buckets[b].Load()
		}
		l.MaxNs = max(l.MaxNs, h.maxNs.Load())
	})
	l.finish()
}

// PathStats counts operations and bytes served one way.
type PathStats struct {
	Ops   uint64 `json:"ops"`
	Bytes uint64 `json:"bytes"`
}

// IOStats splits reads or writes by the path that served them.
type IOStats struct {
	CacheHit PathStats `json:"cache_hit"` // reads served from the page cache
	Fill     PathStats `json:"fill"`      // reads that filled the cache
	Cache    PathStats `json:"cache"`     // writes into the cache
	Direct   PathStats `json:"direct"`    // O_DIRECT handles
	Mmap     PathStats `json:"mmap"`      // through host mappings
	Host     PathStats `json:"host"`      // straight to the host
}

// Ops returns the operations over all paths.
func (s IOStats) Ops() uint64 {
	return s.CacheHit.Ops + s.Fill.Ops + s.Cache.Ops + s.Direct.Ops + s.Mmap.Ops + s.Host.Ops
}

// Bytes returns the bytes over all paths.
func (s IOStats) Bytes() uint64 {
	return s.CacheHit.Bytes + s.Fill.Bytes + s.Cache.Bytes + s.Direct.Bytes + s.Mmap.Bytes + s.Host.Bytes
}

// Latency is a latency distribution: Buckets[i] counts operations that
// took [2^i, 2^(i+1)) ns. Reads and writes are sampled (one call in
// Options.LatencySampling, at random), so Count is that share of the calls
// and MaxNs the largest sampled; syncs are all timed.
type Latency struct {
	Count   uint64                 `json:"count"`
	P50Ns   int64                  `json:"p50_ns"`
	P99Ns   int64                  `json:"p99_ns"`
	MaxNs   int64                  `json:"max_ns"`
	Buckets [latencyBuckets]uint64 `json:"buckets"`
}

// quantile estimates the q-quantile as the upper bound of the bucket it
// falls in.
func (l *Latency) quantile(q float64) int64 {
	if l.Count == 0 {
		return 0
	}
	rank := uint64(q*float64(l.Count-1)) + 1
	var seen uint64
	for i, c := range l.Buckets {
		if seen += c; seen >= rank {
			return int64(1)<<(i+1) - 1
		}
	}
	return l.MaxNs
}

func (l *Latency) finish() {
	l.Count = 0
	for _, c := range l.Buckets {
		l.Count += c
	}
	l.P50Ns, l.P99Ns = l.quantile(0.50), l.quantile(0.99)
	if l.MaxNs > 0 {
		// A bucket's upper bound may pass the largest value seen.
		l.P50Ns, l.P99Ns = min(l.P50Ns, l.MaxNs), min(l.P99Ns, l.MaxNs)
	}
}

// Stats is a snapshot of an engine's counters. Counters are totals since
// New; Sub gives the difference of two snapshots. The counters are not
// read at one instant: calls that run while Stats reads them may show in
// some counters and not yet in others. One order holds: a call's latency
// never shows before the call itself, so ReadLatency.Count <= Reads.Ops()
// (and likewise for writes and syncs) in every snapshot; a difference of
// two snapshots taken while calls run may miss or gain the calls in
// flight at either end.
type Stats struct {
	Mode           string `json:"mode"`
	Backend        string `json:"backend"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	StartedUnixNs  int64  `json:"started_unix_ns"` // identifies the engine instance
	UptimeNs       int64  `json:"uptime_ns"`
	OpenHandles    int    `json:"open_handles"`
	OpenFiles      int    `json:"open_files"`

	Reads  IOStats `json:"reads"`
	Writes IOStats `json:"writes"`
	Syncs  uint64  `json:"syncs"`
	Errors uint64  `json:"errors"`

	ReadLatency  Latency `json:"read_latency"`
	WriteLatency Latency `json:"write_latency"`
	SyncLatency  Latency `json:"sync_latency"`

	CacheEnabled bool            `json:"cache_enabled"`
	Cache        pagecache.Stats `json:"cache"`
	Ring         uring.Stats     `json:"ring"`
	SQEsPerEnter float64         `json:"sqes_per_enter"`
	Mmap         hostmap.Stats   `json:"mmap"`
}

// Stats returns a snapshot.
func (e *Engine) Stats() Stats {
	s := Stats{
		Mode: e.opts.Mode.String(), Backend: e.be.Name(),
		StartedUnixNs: e.started.UnixNano(), UptimeNs: int64(time.Since(e.started)),
		Errors: e.st.errorCount(),
	}
	s.Ring = e.be.Stats()
	s.FallbackReason = s.Ring.FallbackReason
	s.SQEsPerEnter = s.Ring.SQEsPerEnter()
	if e.cache != nil {
		s.CacheEnabled = true
		s.Cache = e.cache.Stats()
	}
	// The histograms are read before the operation counters: record
	// counts a call before it adds its latency, so every timed call seen
	// here is also counted, and a snapshot never holds more timed calls
	// than calls (Latency.Count <= Ops), even while calls run.
	e.st.latency(opRead, &s.ReadLatency)
	e.st.latency(opWrite, &s.WriteLatency)
	e.st.latency(opSync, &s.SyncLatency)
	fill := func(dst *IOStats, op opKind) {
		*dst = IOStats{CacheHit: e.st.path(op, pathHit), Fill: e.st.path(op, pathFill),
			Cache: e.st.path(op, pathCache), Direct: e.st.path(op, pathDirect),
			Mmap: e.st.path(op, pathMmap), Host: e.st.path(op, pathHost)}
	}
	fill(&s.Reads, opRead)
	fill(&s.Writes, opWrite)
	s.Syncs = e.st.path(opSync, pathSync).Ops
	e.mu.Lock()
	s.OpenHandles = len(e.handles)
	s.OpenFiles = len(e.inodes)
	e.mu.Unlock()
	s.Mmap = e.mmStats.Stats()
	return s
}

// Sub returns s minus prev for every counter (gauges and identity come
// from s); latency percentiles are recomputed from the bucket deltas.
// prev is an earlier snapshot of the same engine, or the zero Stats. A
// snapshot of another engine (another StartedUnixNs) has nothing in
// common with s: Sub then returns s, the counts since s's engine started.
func (s Stats) Sub(prev Stats) Stats {
	if prev.StartedUnixNs != 0 && prev.StartedUnixNs != s.StartedUnixNs {
		return s
	}
	d := s
	sub := func(a, b IOStats) IOStats {
		p := func(x, y PathStats) PathStats { return PathStats{x.Ops - y.Ops, x.Bytes - y.Bytes} }
		return IOStats{p(a.CacheHit, b.CacheHit), p(a.Fill, b.Fill), p(a.Cache, b.Cache),
			p(a.Direct, b.Direct), p(a.Mmap, b.Mmap), p(a.Host, b.Host)}
	}
	d.Reads, d.Writes = sub(s.Reads, prev.Reads), sub(s.Writes, prev.Writes)
	d.Syncs -= prev.Syncs
	d.Errors -= prev.Errors
	d.UptimeNs -= prev.UptimeNs
	for _, pair := range [][2]*Latency{{&d.ReadLatency, &prev.ReadLatency},
		{&d.WriteLatency, &prev.WriteLatency}, {&d.SyncLatency, &prev.SyncLatency}} {
		for b := range pair[0].Buckets {
			pair[0].Buckets[b] -= pair[1].Buckets[b]
		}
		pair[0].finish()
	}
	d.Cache = s.Cache.Sub(prev.Cache)
	d.Ring = s.Ring.Sub(prev.Ring)
	d.SQEsPerEnter = d.Ring.SQEsPerEnter()
	d.Mmap = s.Mmap.Sub(prev.Mmap)
	return d
}

// FileStats describes one file the engine holds.
type FileStats struct {
	Path          string `json:"path"`
	SizeBytes     int64  `json:"size_bytes"`
	ResidentBytes int64  `json:"resident_bytes"`
	DirtyBytes    int64  `json:"dirty_bytes"`
	Handles       int    `json:"handles"`
	Mappings      int    `json:"mappings"`
	PendingError  bool   `json:"pending_writeback_error"`
}

// Files describes every file the engine holds, most resident first.
func (e *Engine) Files() []FileStats { return e.FilesTop(0) }

// FilesTop is Files limited to the n most resident files (n ≤ 0: all).
func (e *Engine) FilesTop(n int) []FileStats {
	e.mu.Lock()
	out := make([]FileStats, 0, len(e.inodes))
	inos := make([]*inode, 0, len(e.inodes))
	for _, ino := range e.inodes {
		out = append(out, FileStats{Path: ino.path, Handles: ino.handles})
		inos = append(inos, ino)
	}
	e.mu.Unlock()
	for i, ino := range inos {
		fs := &out[i]
		fs.PendingError = ino.errs.Pending()
		ino.mu.Lock()
		fs.Mappings = ino.maps
		ino.mu.Unlock()
		switch {
		case ino.cf != nil:
			fs.SizeBytes, fs.ResidentBytes, fs.DirtyBytes = ino.cf.Size(), ino.cf.ResidentBytes(), ino.cf.DirtyBytes()
		case e.opts.HostMmap:
			fs.SizeBytes = ino.mmSize.Load()
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ResidentBytes != out[j].ResidentBytes {
			return out[i].ResidentBytes > out[j].ResidentBytes
		}
		return out[i].Path < out[j].Path
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}
