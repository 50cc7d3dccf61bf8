//go:build linux

package pagecache

import (
	"sync/atomic"

	"github.com/ringfs/ringfs/internal/stripe"
)

// Stats are the cache's counters (totals since New) and gauges.
type Stats struct {
	CapacityBytes int64 `json:"capacity_bytes"`
	ResidentBytes int64 `json:"resident_bytes"`
	FreeBytes     int64 `json:"free_bytes"`
	Fixed         bool  `json:"fixed_buffers"`

	Hits           uint64 `json:"hits"`
	HitBytes       uint64 `json:"hit_bytes"`
	Misses         uint64 `json:"misses"`
	Fills          uint64 `json:"fills"`
	FillBatches    uint64 `json:"fill_batches"`
	FillSQEs       uint64 `json:"fill_sqes"`
	FillBytes      uint64 `json:"fill_bytes"`
	ReadaheadBytes uint64 `json:"readahead_bytes"`
	FillErrors     uint64 `json:"fill_errors"`
	BypassBytes    uint64 `json:"bypass_bytes"`
	// AdmissionSkips counts pages a random miss read around the full
	// cache because they had not been missed recently (see Cache.admitLater);
	// their bytes are in BypassBytes.
	AdmissionSkips  uint64 `json:"admission_skips"`
	WriteBytes      uint64 `json:"write_bytes"`
	DirectWrites    uint64 `json:"direct_write_bytes"`
	WriteAllocPages uint64 `json:"write_alloc_pages"`

	WritebackBytes   uint64 `json:"writeback_bytes"`
	WritebackBatches uint64 `json:"writeback_batches"`
	WritebackSQEs    uint64 `json:"writeback_sqes"`
	WritebackErrors  uint64 `json:"writeback_errors"`
	// WritebackDirectBytes of WritebackBytes went through the O_DIRECT
	// descriptor; WritebackMergedBytes are clean bytes rewritten to join
	// two dirty runs into one write (Options.MergeGap).
	WritebackDirectBytes uint64 `json:"writeback_direct_bytes"`
	WritebackMergedBytes uint64 `json:"writeback_merged_bytes"`
	Syncs                uint64 `json:"syncs"`

	// FileLockWaits counts acquisitions of a file's lock (File.mu, for
	// reading or writing) that found it taken and waited for it;
	// FileLockWaitNs is the time they waited, in total. Many waits, or
	// long ones, mean goroutines contend for one file: many goroutines
	// missing the cache of one file, for instance (README, reads that
	// miss).
	FileLockWaits  uint64 `json:"file_lock_waits"`
	FileLockWaitNs uint64 `json:"file_lock_wait_ns"`

	Evictions               uint64 `json:"evictions"`
	EvictionsDirty          uint64 `json:"evictions_dirty"`
	EvictionWritebackErrors uint64 `json:"eviction_writeback_errors"`
	Pressure                uint64 `json:"pressure_events"`
}

// Sub returns the counters of s minus those of prev; gauges come from s.
func (s Stats) Sub(prev Stats) Stats {
	d := s
	d.Hits -= prev.Hits
	d.HitBytes -= prev.HitBytes
	d.Misses -= prev.Misses
	d.Fills -= prev.Fills
	d.FillBatches -= prev.FillBatches
	d.FillSQEs -= prev.FillSQEs
	d.FillBytes -= prev.FillBytes
	d.ReadaheadBytes -= prev.ReadaheadBytes
	d.FillErrors -= prev.FillErrors
	d.BypassBytes -= prev.BypassBytes
	d.AdmissionSkips -= prev.AdmissionSkips
	d.WriteBytes -= prev.WriteBytes
	d.DirectWrites -= prev.DirectWrites
	d.WriteAllocPages -= prev.WriteAllocPages
	d.WritebackBytes -= prev.WritebackBytes
	d.WritebackBatches -= prev.WritebackBatches
	d.WritebackSQEs -= prev.WritebackSQEs
	d.WritebackErrors -= prev.WritebackErrors
	d.WritebackDirectBytes -= prev.WritebackDirectBytes
	d.WritebackMergedBytes -= prev.WritebackMergedBytes
	d.Syncs -= prev.Syncs
	d.FileLockWaits -= prev.FileLockWaits
	d.FileLockWaitNs -= prev.FileLockWaitNs
	d.Evictions -= prev.Evictions
	d.EvictionsDirty -= prev.EvictionsDirty
	d.EvictionWritebackErrors -= prev.EvictionWritebackErrors
	d.Pressure -= prev.Pressure
	return d
}

type counters struct {
	// hits are counted per stripe: every hit adds to them, from as many
	// goroutines as read at once.
	hits                                                stripe.Sharded[hitCounts]
	misses, fills, fillBatches, fillSQEs, fillBytes     atomic.Uint64
	readaheadBytes, fillErrors, bypassBytes, writeBytes atomic.Uint64
	directWriteBytes, writeAllocPages                   atomic.Uint64
	writebackBytes, writebackBatches, writebackSQEs     atomic.Uint64
	writebackErrors, syncs, evictions, evictedDirty     atomic.Uint64
	evictionWritebackErrors, pressure, admissionSkips   atomic.Uint64
	writebackDirectBytes, writebackMergedBytes          atomic.Uint64
	lockWaits, lockWaitNs                               atomic.Uint64
	// aroundUnlocked counts reads around the cache that took no lock
	// (File.readAround); for tests.
	aroundUnlocked atomic.Uint64
	// fillsUnlocked counts fills whose host read took no lock
	// (File.fillUnlocked) and that indexed their pages; fillsNotIndexed
	// those that found the file changed and only returned what they
	// read. For tests.
	fillsUnlocked, fillsNotIndexed atomic.Uint64
}

// hitCounts are the hits of one stripe.
type hitCounts struct{ n, bytes atomic.Uint64 }

// addHit counts a hit of n bytes.
func (st *counters) addHit(n int) { st.addHitAt(stripe.Hint(), n) }

// addHitAt counts a hit of n bytes in stripe h (a caller that has the
// goroutine's stripe at hand).
func (st *counters) addHitAt(h, n int) {
	c := st.hits.At(h)
	c.n.Add(1)
	c.bytes.Add(uint64(n))
}

// hitTotals sums the hits of every stripe.
func (st *counters) hitTotals() (n, bytes uint64) {
	st.hits.Each(func(h *hitCounts) {
		n += h.n.Load()
		bytes += h.bytes.Load()
	})
	return n, bytes
}

// Stats returns a snapshot of the counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	free := int64(len(c.free))
	c.mu.Unlock()
	st := &c.st
	hits, hitBytes := st.hitTotals()
	return Stats{
		CapacityBytes: c.Capacity(), FreeBytes: free * PageSize,
		ResidentBytes: c.Capacity() - free*PageSize, Fixed: c.fixed,
		Hits: hits, HitBytes: hitBytes, Misses: st.misses.Load(),
		Fills: st.fills.Load(), FillBatches: st.fillBatches.Load(), FillSQEs: st.fillSQEs.Load(),
		FillBytes: st.fillBytes.Load(), ReadaheadBytes: st.readaheadBytes.Load(),
		FillErrors: st.fillErrors.Load(), BypassBytes: st.bypassBytes.Load(),
		AdmissionSkips: st.admissionSkips.Load(),
		WriteBytes:     st.writeBytes.Load(), DirectWrites: st.directWriteBytes.Load(),
		WriteAllocPages: st.writeAllocPages.Load(),
		WritebackBytes:  st.writebackBytes.Load(), WritebackBatches: st.writebackBatches.Load(),
		WritebackSQEs: st.writebackSQEs.Load(), WritebackErrors: st.writebackErrors.Load(),
		WritebackDirectBytes: st.writebackDirectBytes.Load(), WritebackMergedBytes: st.writebackMergedBytes.Load(),
		Syncs: st.syncs.Load(), Evictions: st.evictions.Load(), EvictionsDirty: st.evictedDirty.Load(),
		EvictionWritebackErrors: st.evictionWritebackErrors.Load(), Pressure: st.pressure.Load(),
		FileLockWaits: st.lockWaits.Load(), FileLockWaitNs: st.lockWaitNs.Load(),
	}
}
