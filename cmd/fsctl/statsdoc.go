//go:build linux

package main

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/ringfs/ringfs/engine"
)

// The JSON document of "fsctl stats". Keys are stable under
// schema_version 1: integers only, units last in the name. Counters
// ("totals", "interval") are separate from gauges, which describe the
// moment of the snapshot.

type statsDoc struct {
	SchemaVersion int          `json:"schema_version"`
	Kind          string       `json:"kind"` // "stats"
	Engine        engineDoc    `json:"engine"`
	Gauges        gaugesDoc    `json:"gauges"`
	Totals        countersDoc  `json:"totals"`
	Interval      *intervalDoc `json:"interval,omitempty"` // --watch, after the first snapshot
}

type engineDoc struct {
	Mode           string `json:"mode"`
	Backend        string `json:"backend"`
	FallbackReason string `json:"fallback_reason"` // "" unless io_uring was unavailable
	UptimeNs       int64  `json:"uptime_ns"`
	OpenFiles      int    `json:"open_files"`
	OpenHandles    int    `json:"open_handles"`
}

type gaugesDoc struct {
	CacheEnabled       bool   `json:"cache_enabled"`
	CacheCapacityBytes int64  `json:"cache_capacity_bytes"`
	CacheResidentBytes int64  `json:"cache_resident_bytes"`
	CacheFreeBytes     int64  `json:"cache_free_bytes"`
	CacheDirtyBytes    *int64 `json:"cache_dirty_bytes"`             // null when GET /files failed
	FilesPendingError  *int   `json:"files_pending_writeback_error"` // null when GET /files failed
	RingInflight       uint64 `json:"ring_inflight"`
	RingInflightHigh   uint64 `json:"ring_inflight_high_water"`
	MappedBytes        int64  `json:"mapped_bytes"`
	MappingsOpen       int64  `json:"mappings_open"`
}

type intervalDoc struct {
	IntervalNs int64 `json:"interval_ns"` // engine uptime between the two snapshots
	countersDoc
}

type countersDoc struct {
	Reads   ioDoc         `json:"reads"`
	Writes  ioDoc         `json:"writes"`
	Syncs   uint64        `json:"syncs"`
	Cache   cacheCounters `json:"cache"`
	Ring    ringCounters  `json:"ring"`
	Errors  errorsDoc     `json:"errors"`
	Latency latencyDocs   `json:"latency"`
}

type ioDoc struct {
	Ops      uint64           `json:"ops"`
	Bytes    uint64           `json:"bytes"`
	CacheHit engine.PathStats `json:"cache_hit"`
	Fill     engine.PathStats `json:"fill"`
	Cache    engine.PathStats `json:"cache"`
	Direct   engine.PathStats `json:"direct"`
	Mmap     engine.PathStats `json:"mmap"`
	Host     engine.PathStats `json:"host"`
}

type cacheCounters struct {
	Hits             uint64 `json:"hits"`
	Misses           uint64 `json:"misses"`
	HitBytes         uint64 `json:"hit_bytes"`
	Fills            uint64 `json:"fills"`
	FillBytes        uint64 `json:"fill_bytes"`
	ReadaheadBytes   uint64 `json:"readahead_bytes"`
	BypassBytes      uint64 `json:"bypass_bytes"`
	AdmissionSkips   uint64 `json:"admission_skips"` // pages a full cache read around and kept out
	WriteBytes       uint64 `json:"write_bytes"`
	WritebackBytes   uint64 `json:"writeback_bytes"`
	WritebackBatches uint64 `json:"writeback_batches"`
	WritebackSQEs    uint64 `json:"writeback_sqes"`
	Evictions        uint64 `json:"evictions"`
	EvictionsDirty   uint64 `json:"evictions_dirty"`
	FileLockWaits    uint64 `json:"file_lock_waits"`   // acquisitions of a file's lock that waited
	FileLockWaitNs   uint64 `json:"file_lock_wait_ns"` // their time waiting, in total
}

type ringCounters struct {
	Submits     uint64 `json:"submits"`
	Requests    uint64 `json:"requests"`
	Enters      uint64 `json:"enters"`
	SQEs        uint64 `json:"sqes"`
	Completions uint64 `json:"completions"`
	Waits       uint64 `json:"waits"`
	Retries     uint64 `json:"retries"` // EINTR/EAGAIN/EBUSY retries and short-I/O resubmits
	CQOverflows uint64 `json:"cq_overflows"`
	DroppedCQEs uint64 `json:"dropped_cqes"`
	// PlainSyscalls counts requests a ring ran as plain syscalls instead
	// (Do, and everything on files on tmpfs and ramfs).
	PlainSyscalls uint64 `json:"plain_syscalls"`
}

type errorsDoc struct {
	IO                uint64 `json:"io"`   // engine calls that failed
	Ring              uint64 `json:"ring"` // backend requests that failed
	CacheFill         uint64 `json:"cache_fill"`
	CacheWriteback    uint64 `json:"cache_writeback"`
	EvictionWriteback uint64 `json:"eviction_writeback"`
}

type latencyDocs struct {
	Read  latencyDoc `json:"read"`
	Write latencyDoc `json:"write"`
	Sync  latencyDoc `json:"sync"`
}

// latencyDoc: percentiles are upper bounds of the engine's power-of-two
// buckets, capped at max_ns. In an interval, max_ns is the upper bound of
// the slowest bucket that moved (capped by the all-time maximum).
type latencyDoc struct {
	Count uint64 `json:"count"`
	P50Ns int64  `json:"p50_ns"`
	P99Ns int64  `json:"p99_ns"`
	MaxNs int64  `json:"max_ns"`
}

// filesSummary is what the stats view takes from GET /files.
type filesSummary struct {
	DirtyBytes    int64
	PendingErrors int
}

func summarizeFiles(files []engine.FileStats) *filesSummary {
	var f filesSummary
	for _, fs := range files {
		f.DirtyBytes += fs.DirtyBytes
		if fs.PendingError {
			f.PendingErrors++
		}
	}
	return &f
}

// newStatsDoc builds the document for cur; prev, when not nil, is the
// previous snapshot of the same engine and adds the interval counters.
func newStatsDoc(cur engine.Stats, prev *engine.Stats, files *filesSummary) statsDoc {
	d := statsDoc{
		SchemaVersion: schemaVersion, Kind: "stats",
		Engine: engineDoc{Mode: cur.Mode, Backend: cur.Backend, FallbackReason: cur.FallbackReason,
			UptimeNs: cur.UptimeNs, OpenFiles: cur.OpenFiles, OpenHandles: cur.OpenHandles},
		Gauges: gaugesDoc{CacheEnabled: cur.CacheEnabled, CacheCapacityBytes: cur.Cache.CapacityBytes,
			CacheResidentBytes: cur.Cache.ResidentBytes, CacheFreeBytes: cur.Cache.FreeBytes,
			RingInflight: cur.Ring.Inflight, RingInflightHigh: cur.Ring.InflightHighMark,
			MappedBytes: cur.Mmap.MappedBytes, MappingsOpen: cur.Mmap.MappingsOpen},
		Totals: newCounters(cur, false),
	}
	if files != nil {
		d.Gauges.CacheDirtyBytes = &files.DirtyBytes
		d.Gauges.FilesPendingError = &files.PendingErrors
	}
	if prev != nil {
		delta := cur.Sub(*prev)
		d.Interval = &intervalDoc{IntervalNs: delta.UptimeNs, countersDoc: newCounters(delta, true)}
	}
	return d
}

func newCounters(s engine.Stats, interval bool) countersDoc {
	io := func(x engine.IOStats) ioDoc {
		return ioDoc{Ops: x.Ops(), Bytes: x.Bytes(), CacheHit: x.CacheHit, Fill: x.Fill, Cache: x.Cache,
			Direct: x.Direct, Mmap: x.Mmap, Host: x.Host}
	}
	c, r := s.Cache, s.Ring
	return countersDoc{
		Reads: io(s.Reads), Writes: io(s.Writes), Syncs: s.Syncs,
		Cache: cacheCounters{Hits: c.Hits, Misses: c.Misses, HitBytes: c.HitBytes, Fills: c.Fills,
			FillBytes: c.FillBytes, ReadaheadBytes: c.ReadaheadBytes, BypassBytes: c.BypassBytes,
			AdmissionSkips: c.AdmissionSkips,
			WriteBytes:     c.WriteBytes, WritebackBytes: c.WritebackBytes, WritebackBatches: c.WritebackBatches,
			WritebackSQEs: c.WritebackSQEs, Evictions: c.Evictions, EvictionsDirty: c.EvictionsDirty,
			FileLockWaits: c.FileLockWaits, FileLockWaitNs: c.FileLockWaitNs},
		Ring: ringCounters{Submits: r.Submits, Requests: r.Requests, Enters: r.Enters, SQEs: r.SQEs,
			Completions: r.Completions, Waits: r.Waits,
			Retries:     r.RetryEnterEINTR + r.RetryEnterBusy + r.RetryCQEEINTR + r.RetryCQEAgain + r.ShortResubmits,
			CQOverflows: r.CQOverflows, DroppedCQEs: r.DroppedCQEs, PlainSyscalls: r.Inline},
		Errors: errorsDoc{IO: s.Errors, Ring: r.Errors, CacheFill: c.FillErrors,
			CacheWriteback: c.WritebackErrors, EvictionWriteback: c.EvictionWritebackErrors},
		Latency: latencyDocs{Read: newLatency(s.ReadLatency, interval),
			Write: newLatency(s.WriteLatency, interval), Sync: newLatency(s.SyncLatency, interval)},
	}
}

// newLatency converts l; percentiles, which are bucket upper bounds, are
// capped at the maximum, itself a bound.
func newLatency(l engine.Latency, interval bool) latencyDoc {
	d := latencyDoc{Count: l.Count, P50Ns: l.P50Ns, P99Ns: l.P99Ns, MaxNs: l.MaxNs}
	if interval {
		d.MaxNs = 0
		for i := len(l.Buckets) - 1; i >= 0; i-- {
			if l.Buckets[i] != 0 {
				d.MaxNs = min(int64(1)<<(i+1)-1, l.MaxNs)
				break
			}
		}
	}
	if d.MaxNs > 0 {
		d.P50Ns, d.P99Ns = min(d.P50Ns, d.MaxNs), min(d.P99Ns, d.MaxNs)
	}
	return d
}

// discontinuity says why cur cannot follow prev, or "" when it can: a
// different engine (or a restarted one) answers on the socket, which its
// start time, mode or backend says, or a counter went down, which no
// counter of one engine does. The difference of the two would be
// meaningless, and in unsigned arithmetic enormous. (Documents without a
// start time are compared by their counters alone.)
func discontinuity(prev, cur engine.Stats) string {
	switch {
	case prev.StartedUnixNs != 0 && cur.StartedUnixNs != 0 && prev.StartedUnixNs != cur.StartedUnixNs,
		cur.Mode != prev.Mode, cur.Backend != prev.Backend:
		return "another engine answers on the socket (or the engine restarted)"
	case cur.UptimeNs < prev.UptimeNs:
		return "the engine's uptime went back"
	}
	for _, c := range []struct {
		name      string
		prev, cur any
	}{
		{"", newCounters(prev, false), newCounters(cur, false)},
		{"read_latency", prev.ReadLatency, cur.ReadLatency},
		{"write_latency", prev.WriteLatency, cur.WriteLatency},
		{"sync_latency", prev.SyncLatency, cur.SyncLatency},
	} {
		if name, was, now := wentDown(reflect.ValueOf(c.prev), reflect.ValueOf(c.cur), c.name); name != "" {
			return fmt.Sprintf("the engine's counter %s went down, from %d to %d", name, was, now)
		}
	}
	return ""
}

// wentDown finds a counter (an unsigned integer) of cur below its value in
// prev, two values of one type, and names it by its JSON keys under path.
func wentDown(prev, cur reflect.Value, path string) (name string, was, now uint64) {
	switch cur.Kind() {
	case reflect.Uint64:
		if cur.Uint() < prev.Uint() {
			return path, prev.Uint(), cur.Uint()
		}
	case reflect.Array:
		for i := range cur.Len() {
			if name, was, now := wentDown(prev.Index(i), cur.Index(i), fmt.Sprintf("%s[%d]", path, i)); name != "" {
				return name, was, now
			}
		}
	case reflect.Struct:
		for i := range cur.NumField() {
			f := cur.Type().Field(i)
			sub := path
			if key, _, _ := strings.Cut(f.Tag.Get("json"), ","); key != "" && !f.Anonymous {
				sub = strings.TrimPrefix(path+"."+key, ".")
			}
			if name, was, now := wentDown(prev.Field(i), cur.Field(i), sub); name != "" {
				return name, was, now
			}
		}
	}
	return "", 0, 0
}
