//go:build linux

package hostmap

import (
	"sync/atomic"
	"unsafe"
)

// The chunk table lets ReadAt, WriteAt and MapInternal find a mapped
// chunk with three atomic loads and no lock, so that concurrent readers
// of a hot file do not contend on (or bounce the cache line of) a mutex.
// It is a two-level radix table over the first tableChunks chunks
// (512 GiB of file); chunks past it are found in Mapper.chunks under
// mapsMu. A level is allocated when its first chunk is mapped and kept
// until the Mapper is garbage.
const (
	tableBits   = 9
	tableFanout = 1 << tableBits
	tableChunks = tableFanout * tableFanout
)

// A view is an immutable description of a chunk's mapping. A new view
// replaces the old on upgrade; nil means not mapped.
type view struct {
	base     unsafe.Pointer
	writable bool
}

type (
	tableLeaf [tableFanout]atomic.Pointer[view]
	tableDir  [tableFanout]atomic.Pointer[tableLeaf]
)

type chunkTable struct {
	dir atomic.Pointer[tableDir]
}

// load returns chunk ci's view, or nil if it is not mapped or not covered
// by the table. It may be called without locks.
func (t *chunkTable) load(ci int64) *view {
	if uint64(ci) >= tableChunks {
		return nil
	}
	d := t.dir.Load()
	if d == nil {
		return nil
	}
	l := d[ci>>tableBits].Load()
	if l == nil {
		return nil
	}
	return l[ci&(tableFanout-1)].Load()
}

// store publishes v as chunk ci's view (nil: unmapped). Chunks past the
// table are ignored.
// Preconditions: Mapper.mapsMu is held for writing.
func (t *chunkTable) store(ci int64, v *view) {
	if uint64(ci) >= tableChunks {
		return
	}
	d := t.dir.Load()
	if d == nil {
		if v == nil {
			return
		}
		d = new(tableDir)
		t.dir.Store(d)
	}
	l := d[ci>>tableBits].Load()
	if l == nil {
		if v == nil {
			return
		}
		l = new(tableLeaf)
		d[ci>>tableBits].Store(l)
	}
	l[ci&(tableFanout-1)].Store(v)
}
