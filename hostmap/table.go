//go:build linux

package hostmap

import (
	"sync/atomic"
	"unsafe"
)

// The chunk table lets ReadAt, WriteAt and MapInternal find a mapped
// chunk with two dependent loads after the Mapper's own fields, and no
// lock, so that concurrent readers of a hot file neither contend on nor
// bounce the cache line of a mutex, and a lookup costs few cache misses
// next to the copy it serves. It is a two-level radix table over the first
// tableChunks chunks (512 GiB of file); chunks past it are found in
// Mapper.chunks under mapsMu. A leaf is allocated when its first chunk is
// mapped and kept until the Mapper is garbage.
const (
	tableBits   = 9
	tableFanout = 1 << tableBits
	tableChunks = tableFanout * tableFanout
)

// A slot holds a chunk's base address, plus 1 if the mapping is writable;
// nil means not mapped. Chunk addresses are page-aligned, so bit 0 is
// free. The address is outside the Go heap, so the garbage collector
// ignores it.
type (
	tableLeaf [tableFanout]atomic.Pointer[byte]
	tableDir  [tableFanout]atomic.Pointer[tableLeaf]
)

type chunkTable struct {
	dir atomic.Pointer[tableDir]
}

// load returns chunk ci's address and whether it is writable, or nil if
// it is not mapped or not covered by the table. It may be called without
// locks.
func (t *chunkTable) load(ci int64) (unsafe.Pointer, bool) {
	if uint64(ci) >= tableChunks {
		return nil, false
	}
	d := t.dir.Load()
	if d == nil {
		return nil, false
	}
	l := d[ci>>tableBits].Load()
	if l == nil {
		return nil, false
	}
	p := unsafe.Pointer(l[ci&(tableFanout-1)].Load())
	w := uintptr(p) & 1
	return unsafe.Add(p, -int(w)), w != 0
}

// store publishes chunk ci's address (nil: unmapped) and protection.
// Chunks past the table are ignored.
// Preconditions: Mapper.mapsMu is held for writing.
func (t *chunkTable) store(ci int64, base unsafe.Pointer, writable bool) {
	if uint64(ci) >= tableChunks {
		return
	}
	d := t.dir.Load()
	if d == nil {
		if base == nil {
			return
		}
		d = new(tableDir)
		t.dir.Store(d)
	}
	l := d[ci>>tableBits].Load()
	if l == nil {
		if base == nil {
			return
		}
		l = new(tableLeaf)
		d[ci>>tableBits].Store(l)
	}
	if writable && base != nil {
		base = unsafe.Add(base, 1)
	}
	l[ci&(tableFanout-1)].Store((*byte)(base))
}
