//go:build linux

package hostmap

import "sync/atomic"

// Stats are a Mapper's counters and gauges (of all the Mappers sharing
// its Counters, see NewMapperCounting). Counters are totals since the
// Counters were made, with NewMapper or by the caller; gauges describe the
// moment of the snapshot.
type Stats struct {
	// Gauges.
	MappedBytes  int64 `json:"mapped_bytes"`  // bytes of address space mapped now: chunks and spans
	ChunksLive   int64 `json:"chunks_live"`   // chunk mappings now
	SpansLive    int64 `json:"spans_live"`    // span mappings (Mappings across chunks) now
	LiveRefs     int64 `json:"live_refs"`     // page references held now: IncRef'd pages plus pages of open Mappings
	MappingsOpen int64 `json:"mappings_open"` // Mappings returned by Map/MapInto and not yet closed

	// Counters.
	ChunksMapped   uint64 `json:"chunks_mapped"`   // chunk mmaps
	ChunksUnmapped uint64 `json:"chunks_unmapped"` // chunk munmaps
	SpansMapped    uint64 `json:"spans_mapped"`    // span mmaps
	SpansUnmapped  uint64 `json:"spans_unmapped"`  // span munmaps
	Upgrades       uint64 `json:"upgrades"`        // read-only chunks remapped read-write in place
	FaultsCaught   uint64 `json:"faults_caught"`   // faults turned into errors by ReadAt and WriteAt
	UnmapFailures  uint64 `json:"unmap_failures"`  // munmaps refused (ENOMEM at vm.max_map_count); the memory stays mapped
}

// Sub returns s minus prev for every counter; gauges are taken from s.
func (s Stats) Sub(prev Stats) Stats {
	d := s
	d.ChunksMapped -= prev.ChunksMapped
	d.ChunksUnmapped -= prev.ChunksUnmapped
	d.SpansMapped -= prev.SpansMapped
	d.SpansUnmapped -= prev.SpansUnmapped
	d.Upgrades -= prev.Upgrades
	d.FaultsCaught -= prev.FaultsCaught
	d.UnmapFailures -= prev.UnmapFailures
	return d
}

// Counters is the live, atomically updated form of Stats, of one Mapper
// or shared by several (NewMapperCounting). The gauges are changed under
// the Mappers' locks but read without them. The zero value is ready.
type Counters struct {
	mappedBytes, chunksLive, spansLive, liveRefs, mappingsOpen atomic.Int64
	chunksMapped, chunksUnmapped, spansMapped, spansUnmapped   atomic.Uint64
	upgrades, faultsCaught, unmapFailures                      atomic.Uint64
}

// Stats returns a snapshot of m's counters (of all the Mappers sharing
// them, see NewMapperCounting).
func (m *Mapper) Stats() Stats { return m.stats.Stats() }

// Stats returns a snapshot of c. Each field is read atomically; the
// snapshot as a whole is not taken at one instant.
func (c *Counters) Stats() Stats {
	return Stats{
		MappedBytes:    c.mappedBytes.Load(),
		ChunksLive:     c.chunksLive.Load(),
		SpansLive:      c.spansLive.Load(),
		LiveRefs:       c.liveRefs.Load(),
		MappingsOpen:   c.mappingsOpen.Load(),
		ChunksMapped:   c.chunksMapped.Load(),
		ChunksUnmapped: c.chunksUnmapped.Load(),
		SpansMapped:    c.spansMapped.Load(),
		SpansUnmapped:  c.spansUnmapped.Load(),
		Upgrades:       c.upgrades.Load(),
		FaultsCaught:   c.faultsCaught.Load(),
		UnmapFailures:  c.unmapFailures.Load(),
	}
}
