//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ringfs/ringfs/engine"
	"github.com/ringfs/ringfs/pagecache"
	"github.com/ringfs/ringfs/uring"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if bytes.Equal(got, want) {
		return
	}
	g, w := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("%s differs at line %d (run go test -update if the change is meant):\ngot:  %q\nwant: %q\n\nfull output:\n%s",
				path, i+1, gl, wl, got)
		}
	}
}

// latency builds a distribution with count operations in each of the
// given buckets, and percentiles computed as the engine does.
func latency(maxNs int64, buckets map[int]uint64) engine.Latency {
	var l engine.Latency
	for b, n := range buckets {
		l.Buckets[b] = n
		l.Count += n
	}
	l.MaxNs = maxNs
	q := func(q float64) int64 {
		rank := uint64(q*float64(l.Count-1)) + 1
		var seen uint64
		for i, c := range l.Buckets {
			if seen += c; seen >= rank {
				return int64(1)<<(i+1) - 1
			}
		}
		return maxNs
	}
	if l.Count > 0 {
		l.P50Ns, l.P99Ns = q(0.5), q(0.99)
	}
	return l
}

const mib = 1 << 20

// fixtureStats is a busy engine two minutes after New.
func fixtureStats() engine.Stats {
	s := engine.Stats{
		Mode: "exclusive", Backend: "uring", UptimeNs: int64(125*time.Second + 500*time.Millisecond),
		OpenHandles: 4, OpenFiles: 3,
		Reads: engine.IOStats{CacheHit: engine.PathStats{Ops: 12000, Bytes: 48 * mib},
			Fill: engine.PathStats{Ops: 345, Bytes: 22 * mib}},
		Writes: engine.IOStats{Cache: engine.PathStats{Ops: 5000, Bytes: 20 * mib},
			Host: engine.PathStats{Ops: 12, Bytes: 48 << 10}},
		Syncs: 12, Errors: 1,
		ReadLatency:  latency(int64(1200*time.Microsecond), map[int]uint64{11: 9000, 12: 3000, 16: 340, 20: 5}),
		WriteLatency: latency(int64(800*time.Microsecond), map[int]uint64{12: 4000, 13: 1000, 19: 12}),
		SyncLatency:  latency(int64(9*time.Millisecond), map[int]uint64{21: 10, 23: 2}),
		CacheEnabled: true,
		Cache: pagecache.Stats{CapacityBytes: 256 * mib, ResidentBytes: 12 * mib, FreeBytes: 244 * mib,
			Hits: 12000, HitBytes: 48 * mib, Misses: 345, Fills: 345, FillBatches: 300, FillSQEs: 345,
			FillBytes: 22 * mib, ReadaheadBytes: 3 * mib, BypassBytes: 256 << 10, AdmissionSkips: 64,
			WriteBytes: 20 * mib, WritebackBytes: 8 * mib,
			WritebackBatches: 40, WritebackSQEs: 130, Evictions: 1024, EvictionsDirty: 12, WritebackErrors: 1,
			FileLockWaits: 40, FileLockWaitNs: 2_400_000},
		Ring: uring.Stats{Backend: "uring", SQEntries: 256, CQEntries: 512, Features: 0x1fff,
			Submits: 1200, Requests: 10203, Enters: 1290, SQEs: 10203, Completions: 10200, Waits: 90,
			RetryCQEAgain: 2, Errors: 1, InflightHighMark: 64, Inflight: 3, Inline: 5000},
	}
	s.SQEsPerEnter = s.Ring.SQEsPerEnter()
	return s
}

// fixtureLater is fixtureStats one second later.
func fixtureLater() engine.Stats {
	s := fixtureStats()
	s.UptimeNs += int64(time.Second)
	s.Reads.CacheHit.Ops += 900
	s.Reads.CacheHit.Bytes += 3600 << 10
	s.Reads.Fill.Ops += 10
	s.Reads.Fill.Bytes += 640 << 10
	s.Writes.Cache.Ops += 300
	s.Writes.Cache.Bytes += 1200 << 10
	s.Syncs++
	s.ReadLatency.Buckets[11] += 700
	s.ReadLatency.Buckets[12] += 200
	s.ReadLatency.Buckets[17] += 10
	s.WriteLatency.Buckets[12] += 300
	s.SyncLatency.Buckets[21]++
	for _, l := range []*engine.Latency{&s.ReadLatency, &s.WriteLatency, &s.SyncLatency} {
		b := map[int]uint64{}
		for i, n := range l.Buckets {
			if n > 0 {
				b[i] = n
			}
		}
		*l = latency(l.MaxNs, b)
	}
	s.Cache.ResidentBytes += 640 << 10
	s.Cache.FreeBytes -= 640 << 10
	s.Cache.Hits += 900
	s.Cache.Misses += 10
	s.Cache.ReadaheadBytes += 256 << 10
	s.Cache.WritebackBytes += 1200 << 10
	s.Cache.WritebackBatches += 2
	s.Cache.Evictions += 5
	s.Cache.FileLockWaits += 3
	s.Cache.FileLockWaitNs += 90_000
	s.Ring.Enters += 30
	s.Ring.SQEs += 310
	s.Ring.Inflight = 7
	return s
}

func fixtureFiles() *filesSummary { return &filesSummary{DirtyBytes: mib + 512<<10, PendingErrors: 1} }

// fixtureFallback: io_uring refused, no cache, no /files.
func fixtureFallback() statsDoc {
	s := engine.Stats{Mode: "shared", Backend: "psync",
		FallbackReason: "io_uring unavailable (uring: io_uring_setup: operation not permitted)",
		UptimeNs:       int64(3 * time.Second), OpenFiles: 1, OpenHandles: 1,
		Reads: engine.IOStats{Host: engine.PathStats{Ops: 3, Bytes: 12 << 10}},
		Ring:  uring.Stats{Backend: "psync", Enters: 3, SQEs: 3, Completions: 3, Requests: 3, Submits: 3},
	}
	s.ReadLatency = latency(40000, map[int]uint64{14: 2, 15: 1})
	return newStatsDoc(s, nil, nil)
}

func TestGoldenStats(t *testing.T) {
	cur, later := fixtureStats(), fixtureLater()
	for _, tc := range []struct {
		name string
		doc  statsDoc
	}{
		{"stats", newStatsDoc(cur, nil, fixtureFiles())},
		{"stats_interval", newStatsDoc(later, &cur, fixtureFiles())},
		{"stats_fallback", fixtureFallback()},
	} {
		var h, j bytes.Buffer
		if err := renderStats(&h, tc.doc); err != nil {
			t.Fatal(err)
		}
		golden(t, tc.name+".golden", h.Bytes())
		writeJSON(&j, tc.doc)
		golden(t, tc.name+".json.golden", j.Bytes())
	}
}

// TestIntervalDoc: the interval holds exactly the differences of the two
// snapshots, over the engine's own clock.
func TestIntervalDoc(t *testing.T) {
	cur, later := fixtureStats(), fixtureLater()
	d := newStatsDoc(later, &cur, nil)
	iv := d.Interval
	if iv.IntervalNs != int64(time.Second) || iv.Reads.Ops != 910 || iv.Reads.Bytes != 4240<<10 ||
		iv.Writes.Ops != 300 || iv.Syncs != 1 || iv.Cache.Hits != 900 || iv.Ring.Enters != 30 || iv.Ring.SQEs != 310 {
		t.Errorf("interval %+v", iv)
	}
	if iv.Latency.Read.Count != 910 || iv.Latency.Sync.Count != 1 {
		t.Errorf("interval latency counts %+v", iv.Latency)
	}
	// The slowest read of the interval fell in bucket 17: [128 µs, 256 µs).
	if iv.Latency.Read.MaxNs != 1<<18-1 {
		t.Errorf("interval read max %d, want %d", iv.Latency.Read.MaxNs, 1<<18-1)
	}
	if d.Totals.Latency.Read.MaxNs != later.ReadLatency.MaxNs || d.Gauges.RingInflight != 7 {
		t.Errorf("totals and gauges come from the later snapshot: %+v %+v", d.Totals.Latency.Read, d.Gauges)
	}
	if discontinuity(later, cur) == "" || discontinuity(cur, later) != "" {
		t.Errorf("restart detection")
	}
	other := later
	other.Backend = "psync"
	if discontinuity(cur, other) == "" {
		t.Errorf("a different backend on the socket is another engine")
	}
	// An engine started since, which has already done more than the
	// one before had and been up longer: only its start time tells.
	prev, next := cur, later
	prev.StartedUnixNs, next.StartedUnixNs = 1.7e18, 1.7e18
	if discontinuity(prev, next) != "" {
		t.Errorf("snapshots of one engine")
	}
	again := next
	again.StartedUnixNs += int64(time.Hour)
	again.UptimeNs += int64(time.Minute)
	if discontinuity(prev, again) == "" {
		t.Errorf("an engine started later on the socket is another engine")
	}
	if discontinuity(cur, again) != "" {
		t.Errorf("a document without a start time is compared by its counters")
	}
}

func fixtureCache() []engine.FileStats {
	return []engine.FileStats{
		{Path: "/srv/data/small.log", SizeBytes: 12 << 10, ResidentBytes: 12 << 10, Handles: 1},
		{Path: "/srv/data/index.db", SizeBytes: 3 << 30, ResidentBytes: 96 * mib, DirtyBytes: 2 * mib, Handles: 3, Mappings: 1},
		{Path: "/srv/data/evil\tname\x1b[2J", SizeBytes: 4096, Handles: 1},
		{Path: "/srv/data/failed.bin", SizeBytes: 8 * mib, ResidentBytes: 12 << 10, DirtyBytes: 12 << 10, PendingError: true},
	}
}

func TestGoldenCache(t *testing.T) {
	doc := newCacheDoc(fixtureCache())
	var h, j bytes.Buffer
	if err := renderCache(&h, doc); err != nil {
		t.Fatal(err)
	}
	h.WriteString("\n")
	renderCache(&h, newCacheDoc(nil))
	golden(t, "cache.golden", h.Bytes())
	writeJSON(&j, doc)
	golden(t, "cache.json.golden", j.Bytes())
	if strings.Contains(h.String(), "\x1b") {
		t.Errorf("an escape sequence from a path reached the terminal")
	}
}

func fixtureInspect() inspectDoc {
	i64 := func(v int64) *int64 { return &v }
	ps := int64(4096)
	sparse := &Details{SizeBytes: 64*mib + 4096, AllocatedBytes: 20 * 4096, BlockSizeBytes: 4096,
		Filesystem: fsDoc{Type: "ext4", Magic: 0xef53},
		DirectIO:   dioDoc{Alignment: "reported", MemoryAlignmentBytes: 4, OffsetAlignmentBytes: 512},
		Extents:    extentsDoc{Method: "seek"},
	}
	for i := range int64(20) { // data blocks every 3 MiB with holes between
		e := extent{"data", i * 3 * mib, 4096}
		sparse.Extents.List = append(sparse.Extents.List, e, extent{"hole", e.OffsetBytes + 4096, 3*mib - 4096})
	}
	sparse.Extents.List = sparse.Extents.List[:39]
	sparse.Extents.List[38].LengthBytes = sparse.SizeBytes - sparse.Extents.List[38].OffsetBytes
	for _, e := range sparse.Extents.List {
		if e.Type == "data" {
			sparse.Extents.DataExtents++
			sparse.Extents.DataBytes += e.LengthBytes
		} else {
			sparse.Extents.Holes++
			sparse.Extents.HoleBytes += e.LengthBytes
		}
	}
	sparse.PageCache = pageCacheDoc{Method: "cachestat", PageSizeBytes: ps, Pages: sparse.SizeBytes / ps,
		DirtyPages: i64(3), WritebackPages: i64(0), EvictedPages: i64(120), RecentlyEvictedPages: i64(4)}
	sparse.PageCache.Map = cells(sparse.PageCache.Pages, ps)
	for i := range sparse.PageCache.Map {
		c := &sparse.PageCache.Map[i]
		switch {
		case i < 20:
			c.ResidentPages = c.Pages
		case i%7 == 0:
			c.ResidentPages = 1
		}
		sparse.PageCache.ResidentPages += c.ResidentPages
	}
	sparse.PageCache.ResidentBytes = sparse.PageCache.ResidentPages * ps

	small := &Details{SizeBytes: 10000, AllocatedBytes: 12288, BlockSizeBytes: 4096,
		Filesystem: fsDoc{Type: "tmpfs", Magic: 0x1021994, PlainSyscalls: true},
		DirectIO:   dioDoc{Alignment: "unknown"},
		Extents:    extentsDoc{Method: "seek", DataExtents: 1, DataBytes: 10000, List: []extent{{"data", 0, 10000}}},
		PageCache: pageCacheDoc{Method: "mincore", PageSizeBytes: ps, Pages: 3, ResidentPages: 2, ResidentBytes: 8192,
			Map: []residencyCell{{0, 1, 1}, {4096, 1, 0}, {8192, 1, 1}}},
	}
	empty := &Details{BlockSizeBytes: 4096, Filesystem: fsDoc{Type: "unknown", Magic: 0x12345678},
		DirectIO:  dioDoc{Alignment: "unsupported"},
		Extents:   extentsDoc{Method: "none", List: []extent{}},
		PageCache: pageCacheDoc{Method: "none", PageSizeBytes: ps, Map: []residencyCell{}}}
	huge := &Details{SizeBytes: 1 << 40, AllocatedBytes: 1 << 40, BlockSizeBytes: 4096,
		Filesystem: fsDoc{Type: "xfs", Magic: 0x58465342},
		DirectIO:   dioDoc{Alignment: "reported", MemoryAlignmentBytes: 4, OffsetAlignmentBytes: 4096, ReadOffsetAlignBytes: 512},
		Extents:    extentsDoc{Method: "seek", DataExtents: 10000, DataBytes: 1 << 39, Truncated: true},
		PageCache:  pageCacheDoc{Method: "unavailable", Error: "mincore: cannot allocate memory", PageSizeBytes: ps, Pages: 1 << 28, Map: []residencyCell{}},
	}
	return inspectDoc{SchemaVersion: schemaVersion, Kind: "inspect", Files: []fileReport{
		{Path: "/data/sparse.img", Details: sparse},
		{Path: "/dev/shm/small", Details: small},
		{Path: "/mnt/x/empty", Details: empty},
		{Path: "/missing", Error: "stat: no such file or directory"},
		{Path: "/big/volume", Details: huge},
	}}
}

func TestGoldenInspect(t *testing.T) {
	doc := fixtureInspect()
	var h, j bytes.Buffer
	if err := renderInspect(&h, doc); err != nil {
		t.Fatal(err)
	}
	golden(t, "inspect.golden", h.Bytes())
	doc.Files = doc.Files[1:4] // the big one's map is long
	writeJSON(&j, doc)
	golden(t, "inspect.json.golden", j.Bytes())
}

func fixtureProbe(works bool) probeDoc {
	d := probeDoc{SchemaVersion: schemaVersion, Kind: "probe",
		Kernel:          kernelDoc{Release: "6.8.0-45-generic", Version: "#45-Ubuntu SMP PREEMPT_DYNAMIC", Machine: "x86_64"},
		IOUringDisabled: "0", IOUringGroup: "-1", Seccomp: "disabled",
		Memlock: memlockDoc{SoftBytes: 8 * mib, HardBytes: -1},
	}
	var p uring.Probe
	if works {
		d.Setup.Works = true
		p.LastOp = 52
		for i := range 53 {
			p.Supported[i] = i != 17 // pretend FALLOCATE is missing
		}
		d.Opcodes, d.Features = probeRing(p, 0x1fff|1<<15)
		d.Backend = backendDoc{Selected: "uring"}
		d.Fix = advice(&d, 0)
		return d
	}
	d.Seccomp = "filter"
	d.Setup = setupDoc{Errno: "EPERM", Error: "uring: io_uring_setup: operation not permitted"}
	d.Opcodes, d.Features = probeRing(p, 0)
	d.Backend = backendDoc{Selected: "psync", FallbackReason: "io_uring unavailable (uring: io_uring_setup: operation not permitted)"}
	d.Fix = advice(&d, 1)
	return d
}

func TestGoldenProbe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		works bool
	}{{"probe", true}, {"probe_blocked", false}} {
		var h, j bytes.Buffer
		d := fixtureProbe(tc.works)
		if err := renderProbe(&h, d); err != nil {
			t.Fatal(err)
		}
		golden(t, tc.name+".golden", h.Bytes())
		writeJSON(&j, d)
		golden(t, tc.name+".json.golden", j.Bytes())
	}
}

func TestGoldenHelp(t *testing.T) {
	var b bytes.Buffer
	writeUsage(&b)
	for _, c := range commands {
		b.WriteString("\n---\n\n")
		writeCommandHelp(&b, c)
	}
	golden(t, "help.golden", b.Bytes())
}

// TestInspectUnknownResidencyIsNull: where the residency is unavailable,
// --json gives null resident pages and bytes, as for every value fsctl
// could not learn, not 0, which would read as nothing resident.
func TestInspectUnknownResidencyIsNull(t *testing.T) {
	for _, method := range []string{"unavailable", "cachestat"} {
		b, err := json.Marshal(pageCacheDoc{Method: method, PageSizeBytes: 4096, Pages: 3, Map: []residencyCell{}})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"resident_pages", "resident_bytes"} {
			v, ok := m[k]
			if !ok || (method == "unavailable") != (v == nil) {
				t.Errorf("%s: %s is %v (present %v) in %s", method, k, v, ok, b)
			}
		}
		if m["pages"] != float64(3) || m["method"] != method {
			t.Errorf("%s: other fields lost: %s", method, b)
		}
	}
}
