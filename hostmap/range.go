//go:build linux

package hostmap

import (
	"math"
	"os"
)

const (
	// ChunkSize is the unit in which a host file is mapped: every chunk
	// mapping covers [i*ChunkSize, (i+1)*ChunkSize) of the file.
	ChunkSize = 2 << 20

	chunkShift = 21
	chunkMask  = ChunkSize - 1

	// MaxOffset is the largest End a Range may have: the last chunk-aligned
	// int64, so that rounding any accepted offset up to a page or chunk
	// boundary cannot overflow.
	MaxOffset int64 = math.MaxInt64 &^ chunkMask

	// MaxRangeLength bounds the length of one IncRef, DecRef, MapInternal
	// or Map call (2 TiB, 2^20 chunks), so that a single call cannot make
	// the Mapper walk or allocate without bound.
	MaxRangeLength int64 = 1 << 41

	// maxCount bounds each per-chunk counter; counts are sums of pages, so
	// one counter holds about 4 million references to a whole chunk.
	maxCount = math.MaxInt32
)

// pageSize is the host page size; chunk boundaries are page boundaries
// for every page size Linux uses (4 KiB to 64 KiB).
var pageSize = int64(os.Getpagesize())

// PageSize returns the host page size in bytes.
func PageSize() int64 { return pageSize }

// Range is the byte range [Start, End) of a file.
type Range struct {
	Start, End int64
}

// Length returns End - Start.
func (r Range) Length() int64 { return r.End - r.Start }

// Valid reports whether 0 <= Start <= End <= MaxOffset and the range is at
// most MaxRangeLength long: the ranges every method of this package accepts.
func (r Range) Valid() bool {
	return r.Start >= 0 && r.Start <= r.End && r.End <= MaxOffset && r.End-r.Start <= MaxRangeLength
}

// RoundOut returns r widened to page boundaries (Start rounded down, End
// rounded up). An empty range stays empty. Preconditions: r.Valid().
func (r Range) RoundOut() Range {
	if r.Start == r.End {
		return r
	}
	return Range{r.Start &^ (pageSize - 1), (r.End + pageSize - 1) &^ (pageSize - 1)}
}

// Intersect returns the overlap of r and o, or an empty range at r.Start
// when they do not overlap.
func (r Range) Intersect(o Range) Range {
	s, e := max(r.Start, o.Start), min(r.End, o.End)
	if s >= e {
		return Range{r.Start, r.Start}
	}
	return Range{s, e}
}

// chunkRange returns the file range of chunk ci.
func chunkRange(ci int64) Range {
	return Range{ci << chunkShift, (ci + 1) << chunkShift}
}

// pagesIn returns the number of pages of the page-aligned range r that lie
// in chunk ci.
func pagesIn(r Range, ci int64) int64 {
	return r.Intersect(chunkRange(ci)).Length() / pageSize
}
