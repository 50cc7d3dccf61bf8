//go:build linux

package hostmap

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

type mappingKind uint8

const (
	kindEmpty mappingKind = iota + 1 // length 0: nothing mapped or referenced
	kindChunk                        // inside one chunk: a window of the chunk's mapping
	kindSpan                         // across chunks: a mapping of its own
)

// Mapping states. A zero Mapping is idle; Map and MapInto open it; Close
// closes it. MapInto may reopen an idle or closed Mapping.
const (
	mappingIdle uint32 = iota
	mappingOpen
	mappingClosed
)

// A Mapping is a user's view of a range of the file, from Map or MapInto:
// one contiguous slice, valid from Map until Close, independently of every
// other Mapping or reference of the same chunks.
//
// A range inside one chunk is served by that chunk's mapping (shared with
// other users of the chunk, and referenced so it stays mapped); a range
// across chunks gets a contiguous mapping of its own, of the range rounded
// out to page boundaries (counted as a span in Stats).
type Mapping struct {
	state atomic.Uint32

	m        *Mapper
	data     []byte
	off      int64
	pages    Range // the page-rounded range referenced (chunk) or mapped (span)
	span     unsafe.Pointer
	kind     mappingKind
	writable bool

	// Links in Mapper.spans (span Mappings only).
	// +checklocks:m.refsMu
	prev, next *Mapping
}

// Map maps length bytes of the file at off, read-write if writable, and
// returns the Mapping. It allocates the Mapping; MapInto does not.
func (m *Mapper) Map(off, length int64, writable bool) (*Mapping, error) {
	mp := new(Mapping)
	if err := m.MapInto(mp, off, length, writable); err != nil {
		return nil, err
	}
	return mp, nil
}

// MapInto is Map into a Mapping the caller provides (a zero Mapping, or
// one closed before); the caller keeps it from being reused until Close
// and must not call MapInto on it concurrently with other methods on it.
// A Mapping of length 0 maps nothing and has empty Bytes.
//
// The file's size is not checked: bytes past the end of the file in the
// last page read as zeros and are not stored, and touching a page wholly
// past the end raises SIGBUS (use SafeCopy).
//
// Errors: EINVAL for a nil Mapping, a negative off or length, off+length
// past MaxOffset or length over MaxRangeLength; EBUSY if mp is open;
// EACCES for writable on a file not open read-write; EOVERFLOW if a
// chunk's count would overflow; ErrClosed after Close; or the errno of a
// failed mmap. On error mp is unchanged.
func (m *Mapper) MapInto(mp *Mapping, off, length int64, writable bool) error {
	if mp == nil || off < 0 || length < 0 || length > MaxRangeLength || off > MaxOffset-length {
		return syscall.EINVAL
	}
	if mp.state.Load() == mappingOpen {
		return syscall.EBUSY
	}
	r := Range{off, off + length}
	switch {
	case length == 0:
		return m.mapEmpty(mp, r, writable)
	case off>>chunkShift == (r.End-1)>>chunkShift:
		return m.mapChunk(mp, r, writable)
	default:
		return m.mapSpan(mp, r, writable)
	}
}

func (m *Mapper) mapEmpty(mp *Mapping, r Range, writable bool) error {
	m.refsMu.Lock()
	closed := m.closed
	m.refsMu.Unlock()
	if closed {
		return ErrClosed
	}
	mp.open(m, kindEmpty, r, r, nil, []byte{}, writable)
	return nil
}

func (m *Mapper) mapChunk(mp *Mapping, r Range, writable bool) error {
	ci := r.Start >> chunkShift
	pr := r.RoundOut()
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := m.addLocked(pr, userRefs); err != nil {
		return err
	}
	c := m.chunks[ci]
	m.mapsMu.RLock()
	p := c.base
	if !c.writable && writable {
		p = nil
	}
	m.mapsMu.RUnlock()
	if p == nil {
		var err error
		m.mapsMu.Lock()
		p, err = m.mapLocked(ci, c, writable)
		m.mapsMu.Unlock()
		if err != nil {
			if uerr := m.subLocked(pr, userRefs); uerr != nil {
				panic(fmt.Sprintf("hostmap: undoing the references of a failed Map: %v", uerr))
			}
			return err
		}
	}
	m.openMappings++
	m.stats.mappingsOpen.Add(1)
	data := unsafe.Slice((*byte)(unsafe.Add(p, r.Start&chunkMask)), r.Length())
	mp.open(m, kindChunk, r, pr, nil, data, writable)
	return nil
}

func (m *Mapper) mapSpan(mp *Mapping, r Range, writable bool) error {
	pr := r.RoundOut()
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.fdErr != 0 {
		return m.fdErr
	}
	if writable && m.fdMode != unix.O_RDWR {
		return syscall.EACCES
	}
	// Mapped under refsMu so that Close cannot return (and the caller
	// close the fd) in between.
	p, err := unix.MmapPtr(m.fd, pr.Start, nil, uintptr(pr.Length()), prot, unix.MAP_SHARED)
	if err != nil {
		return errnoOf(err)
	}
	mp.next = m.spans
	mp.prev = nil
	if m.spans != nil {
		m.spans.prev = mp
	}
	m.spans = mp
	m.openMappings++
	m.stats.mappingsOpen.Add(1)
	m.stats.spansMapped.Add(1)
	m.stats.spansLive.Add(1)
	m.stats.mappedBytes.Add(pr.Length())
	data := unsafe.Slice((*byte)(unsafe.Add(p, r.Start-pr.Start)), r.Length())
	mp.open(m, kindSpan, r, pr, p, data, writable)
	return nil
}

// open fills mp and publishes it as open.
func (mp *Mapping) open(m *Mapper, kind mappingKind, r, pages Range, span unsafe.Pointer, data []byte, writable bool) {
	mp.m = m
	mp.kind = kind
	mp.off = r.Start
	mp.pages = pages
	mp.span = span
	mp.data = data
	mp.writable = writable
	mp.state.Store(mappingOpen)
}

// Bytes returns the mapped bytes, Len() long, starting at file offset
// Offset(). They are valid until Close; after Close Bytes returns nil.
// They must not be written through a read-only Mapping (it faults with
// SIGSEGV, or, where the chunk's shared mapping was made writable by
// another user, silently changes the file). Touching a page past the end
// of the file faults (SIGBUS): callers that cannot rule that out copy
// with SafeCopy.
func (mp *Mapping) Bytes() []byte {
	if mp.state.Load() != mappingOpen {
		return nil
	}
	return mp.data
}

// Writable reports whether the Mapping was made writable.
func (mp *Mapping) Writable() bool { return mp.writable }

// Offset returns the file offset of Bytes()[0].
func (mp *Mapping) Offset() int64 { return mp.off }

// Len returns the length the Mapping was made with.
func (mp *Mapping) Len() int { return len(mp.data) }

// Close releases the Mapping: its references (a chunk is unmapped when
// nothing else references it) or its own mapping. Only the first Close of
// an open Mapping does anything; every other returns ErrClosed. Close
// works after the Mapper's Close, and waits for a Sync flushing the
// Mapping's span.
func (mp *Mapping) Close() error {
	if !mp.state.CompareAndSwap(mappingOpen, mappingClosed) {
		return ErrClosed
	}
	m := mp.m
	switch mp.kind {
	case kindChunk:
		m.refsMu.Lock()
		defer m.refsMu.Unlock()
		if err := m.subLocked(mp.pages, userRefs); err != nil {
			panic(fmt.Sprintf("hostmap: Mapping of %v lost its references: %v", mp.pages, err))
		}
		m.openMappings--
		m.stats.mappingsOpen.Add(-1)
	case kindSpan:
		m.syncMu.Lock()
		defer m.syncMu.Unlock()
		m.refsMu.Lock()
		defer m.refsMu.Unlock()
		if mp.prev != nil {
			mp.prev.next = mp.next
		} else {
			m.spans = mp.next
		}
		if mp.next != nil {
			mp.next.prev = mp.prev
		}
		mp.prev, mp.next = nil, nil
		if m.unmap(mp.span, uintptr(mp.pages.Length())) {
			m.stats.spansUnmapped.Add(1)
		}
		m.openMappings--
		m.stats.mappingsOpen.Add(-1)
		m.stats.spansLive.Add(-1)
	}
	return nil
}
