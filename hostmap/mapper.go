//go:build linux

package hostmap

import (
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A chunk is the bookkeeping of one ChunkSize piece of the file: how many
// page references it carries and, once accessed, its mapping. A chunk
// exists (is in Mapper.chunks) exactly while one of its counts is
// non-zero, and is mapped only while it exists.
type chunk struct {
	// Counts, in pages, guarded by Mapper.refsMu.
	refs     int32 // from IncRef/DecRef          +checklocks:Mapper.refsMu
	userRefs int32 // held by open chunk Mappings +checklocks:Mapper.refsMu
	pins     int32 // held by Sync while flushing +checklocks:Mapper.refsMu

	// The mapping of [ci*ChunkSize, (ci+1)*ChunkSize), nil until the first
	// access. Guarded by Mapper.mapsMu.
	base     unsafe.Pointer // +checklocks:Mapper.mapsMu
	writable bool           // +checklocks:Mapper.mapsMu
}

// idle reports whether no reference of any kind is left.
// Preconditions: Mapper.refsMu is held.
func (c *chunk) idle() bool { return c.refs == 0 && c.userRefs == 0 && c.pins == 0 }

// counter selects one of a chunk's counts.
type counter uint8

const (
	internalRefs counter = iota
	userRefs
)

// count returns the address of the count k.
// Preconditions: Mapper.refsMu is held.
func (c *chunk) count(k counter) *int32 {
	if k == userRefs {
		return &c.userRefs
	}
	return &c.refs
}

// event is what a test hook is told about.
type event uint8

const (
	evMap     event = iota + 1 // a chunk was mmapped
	evUpgrade                  // a chunk was remapped read-write in place
	evUnmap                    // a chunk was munmapped
	evSync                     // a range of a chunk or span was msynced
)

// maxFree bounds the list of chunk records kept for reuse.
const maxFree = 64

// A Mapper maps one host file in ChunkSize chunks, counts references to
// them and unmaps each chunk when its count drops to zero. See the package
// documentation for the rules. A Mapper is safe for concurrent use.
type Mapper struct {
	fd     int           // owned by the caller; not used after Close returns
	fdMode int           // fd's O_ACCMODE bits
	fdErr  syscall.Errno // non-zero if F_GETFL failed: every mmap fails with it

	// syncMu keeps span mappings in place while Sync flushes them: Sync
	// holds it for reading, closing a span Mapping holds it for writing.
	syncMu sync.RWMutex

	refsMu sync.Mutex
	// spans lists the open span Mappings.
	// +checklocks:refsMu
	spans *Mapping
	// +checklocks:refsMu
	openMappings int64
	// free holds chunk records for reuse.
	// +checklocks:refsMu
	free []*chunk

	mapsMu sync.RWMutex

	// chunks maps a chunk index to its record. Entries are added and
	// removed only with refsMu held and mapsMu held for writing, so
	// holding either lock is enough to read the map; each record's fields
	// are guarded as chunk says.
	chunks map[int64]*chunk

	// closed is set with refsMu held and mapsMu held for writing; holding
	// either is enough to read it. shut mirrors it for lock-free readers.
	closed bool
	shut   atomic.Bool

	// table mirrors the mapped chunks' addresses for lock-free lookup;
	// written with mapsMu held for writing.
	table chunkTable

	// stats receives the Mapper's counts: its own, or the Counters given
	// to NewMapperCounting, shared with other Mappers.
	stats *Counters

	// hook, if set (by tests, before any use), is called with refsMu and
	// mapsMu held after each mmap, upgrade and munmap of a chunk (r is the
	// chunk's range), and without locks after each msync (r is the
	// flushed range).
	hook func(ev event, r Range)
}

// NewMapper returns a Mapper of the host file open as fd. The fd stays
// owned by the caller, who must keep it open until Close returns; the
// Mapper never closes it. Writable chunks and Mappings need fd open
// O_RDWR (otherwise EACCES); every mapping needs read access.
func NewMapper(fd int) *Mapper { return NewMapperCounting(fd, new(Counters)) }

// NewMapperCounting is NewMapper with the Mapper's counters and gauges
// kept in c, which several Mappers may share: then each of their Stats
// is the sum over all of them, and it keeps the counts of Mappers already
// closed.
func NewMapperCounting(fd int, c *Counters) *Mapper {
	m := &Mapper{
		stats:  c,
		fd:     fd,
		chunks: make(map[int64]*chunk),
		free:   make([]*chunk, 0, maxFree),
	}
	flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		m.fdErr = errnoOf(err)
	} else {
		m.fdMode = flags & unix.O_ACCMODE
	}
	return m
}

// IncRef adds a reference to every page of r (rounded out to page
// boundaries). It maps nothing: chunks are mapped on first access. An
// empty r is a no-op. Errors: EINVAL if r is not Valid, EOVERFLOW if a
// chunk's count would exceed 2^31-1 pages, ErrClosed after Close; on error
// nothing changed.
func (m *Mapper) IncRef(r Range) error {
	if !r.Valid() {
		return syscall.EINVAL
	}
	r = r.RoundOut()
	if r.Start == r.End {
		return nil
	}
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return m.addLocked(r, internalRefs)
}

// DecRef drops a reference to every page of r (rounded out to page
// boundaries) taken by IncRef; a chunk whose count reaches zero is
// unmapped before DecRef returns. An empty r is a no-op. Errors: EINVAL if
// r is not Valid or a chunk of r holds fewer IncRef references than r has
// pages in it (underflow), ErrClosed after Close; on error nothing changed.
//
// Counts are kept per chunk, so a DecRef of pages never referenced is
// caught only when the chunk's total cannot cover it. References of open
// Mappings are counted apart and can never be taken by DecRef.
func (m *Mapper) DecRef(r Range) error {
	if !r.Valid() {
		return syscall.EINVAL
	}
	r = r.RoundOut()
	if r.Start == r.End {
		return nil
	}
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	if m.closed {
		return ErrClosed
	}
	return m.subLocked(r, internalRefs)
}

// addLocked adds one reference per page of r to count k of every chunk r
// overlaps, creating chunk records as needed. On EOVERFLOW nothing
// changed.
// Preconditions: m.refsMu is held; r is valid, non-empty and page-aligned.
func (m *Mapper) addLocked(r Range, k counter) error {
	first, last := r.Start>>chunkShift, (r.End-1)>>chunkShift
	for ci := first; ci <= last; ci++ {
		if c := m.chunks[ci]; c != nil && int64(*c.count(k))+pagesIn(r, ci) > maxCount {
			return syscall.EOVERFLOW
		}
	}
	for ci := first; ci <= last; ci++ {
		c := m.chunks[ci]
		if c == nil {
			c = m.newChunkLocked(ci)
		}
		*c.count(k) += int32(pagesIn(r, ci))
	}
	m.stats.liveRefs.Add(r.Length() / pageSize)
	return nil
}

// subLocked drops one reference per page of r from count k of every chunk
// r overlaps and releases the chunks left idle. On EINVAL (underflow)
// nothing changed.
// Preconditions: m.refsMu is held; r is valid, non-empty and page-aligned.
func (m *Mapper) subLocked(r Range, k counter) error {
	first, last := r.Start>>chunkShift, (r.End-1)>>chunkShift
	for ci := first; ci <= last; ci++ {
		if c := m.chunks[ci]; c == nil || int64(*c.count(k)) < pagesIn(r, ci) {
			return syscall.EINVAL
		}
	}
	for ci := first; ci <= last; ci++ {
		c := m.chunks[ci]
		*c.count(k) -= int32(pagesIn(r, ci))
		if c.idle() {
			m.releaseLocked(ci, c)
		}
	}
	m.stats.liveRefs.Add(-r.Length() / pageSize)
	return nil
}

// newChunkLocked records chunk ci, unreferenced and unmapped.
// Preconditions: m.refsMu is held; m.chunks has no entry ci.
func (m *Mapper) newChunkLocked(ci int64) *chunk {
	var c *chunk
	if n := len(m.free); n > 0 {
		c, m.free = m.free[n-1], m.free[:n-1]
	} else {
		c = new(chunk)
	}
	m.mapsMu.Lock()
	m.chunks[ci] = c
	m.mapsMu.Unlock()
	return c
}

// releaseLocked unmaps chunk ci if it is mapped and forgets it.
// Preconditions: m.refsMu is held; c is m.chunks[ci] and c.idle().
func (m *Mapper) releaseLocked(ci int64, c *chunk) {
	m.mapsMu.Lock()
	defer m.mapsMu.Unlock()
	if c.base != nil {
		m.table.store(ci, nil, false)
		m.stats.chunksLive.Add(-1)
		if m.unmap(c.base, ChunkSize) {
			m.stats.chunksUnmapped.Add(1)
		}
		if m.hook != nil {
			m.hook(evUnmap, chunkRange(ci))
		}
	}
	delete(m.chunks, ci)
	*c = chunk{}
	if len(m.free) < cap(m.free) {
		m.free = append(m.free, c)
	}
}

// unmap munmaps [p, p+size) and reports whether it did. munmap can fail
// only with ENOMEM, when splitting a VMA would pass vm.max_map_count
// (the kernel merges adjacent chunk mappings of the file into one VMA);
// the memory then stays mapped, unused, and is counted in Stats as
// unmap_failures and in mapped_bytes. Any other error means the address
// was not ours: a bug.
func (m *Mapper) unmap(p unsafe.Pointer, size uintptr) bool {
	err := unix.MunmapPtr(p, size)
	if err == nil {
		m.stats.mappedBytes.Add(-int64(size))
		return true
	}
	if err != syscall.ENOMEM {
		panic(fmt.Sprintf("hostmap: munmap of %d bytes at %p: %v", size, p, err))
	}
	m.stats.unmapFailures.Add(1)
	return false
}

// base returns the address of chunk ci's mapping, first mapping the chunk
// or upgrading it to read-write if needed. The chunk must be referenced
// (EINVAL otherwise); the address stays valid while it is.
func (m *Mapper) base(ci int64, write bool) (unsafe.Pointer, error) {
	if p, w := m.table.load(ci); p != nil && (w || !write) && !m.shut.Load() {
		return p, nil
	}
	if uint64(ci) >= tableChunks {
		var p unsafe.Pointer
		m.mapsMu.RLock()
		if c := m.chunks[ci]; c != nil && !m.closed && (c.writable || !write) {
			p = c.base
		}
		m.mapsMu.RUnlock()
		if p != nil {
			return p, nil
		}
	}
	return m.baseSlow(ci, write)
}

// baseSlow is base when the chunk is not mapped as needed yet.
func (m *Mapper) baseSlow(ci int64, write bool) (unsafe.Pointer, error) {
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	c := m.chunks[ci]
	if c == nil {
		return nil, syscall.EINVAL
	}
	m.mapsMu.Lock()
	defer m.mapsMu.Unlock()
	return m.mapLocked(ci, c, write)
}

// mapLocked makes sure chunk ci is mapped, read-write if write, and
// returns its address. A read-only chunk is upgraded in place: the new
// read-write mapping replaces it at the same address (MAP_FIXED), so
// slices already handed out stay valid, and it is never downgraded.
// Preconditions: m.refsMu is held; m.mapsMu is held for writing; c is
// m.chunks[ci]; m is not closed.
func (m *Mapper) mapLocked(ci int64, c *chunk, write bool) (unsafe.Pointer, error) {
	if c.base != nil && (c.writable || !write) {
		return c.base, nil
	}
	if m.fdErr != 0 {
		return nil, m.fdErr
	}
	if write && m.fdMode != unix.O_RDWR {
		return nil, syscall.EACCES
	}
	off := ci << chunkShift
	if c.base == nil {
		prot := unix.PROT_READ
		if write {
			prot |= unix.PROT_WRITE
		}
		p, err := unix.MmapPtr(m.fd, off, nil, ChunkSize, prot, unix.MAP_SHARED)
		if err != nil {
			return nil, errnoOf(err)
		}
		c.base, c.writable = p, write
		m.table.store(ci, p, write)
		m.stats.chunksMapped.Add(1)
		m.stats.chunksLive.Add(1)
		m.stats.mappedBytes.Add(ChunkSize)
		if m.hook != nil {
			m.hook(evMap, chunkRange(ci))
		}
		return p, nil
	}
	p, err := unix.MmapPtr(m.fd, off, c.base, ChunkSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_FIXED)
	if err != nil {
		// Older kernels may leave the range unmapped when a MAP_FIXED
		// mmap fails. Put the read-only mapping back if so; EEXIST means
		// it is still there.
		if _, rerr := unix.MmapPtr(m.fd, off, c.base, ChunkSize, unix.PROT_READ, unix.MAP_SHARED|unix.MAP_FIXED_NOREPLACE); rerr != nil && rerr != syscall.EEXIST {
			panic(fmt.Sprintf("hostmap: chunk %d at %p lost after failed upgrade (%v): %v", ci, c.base, err, rerr))
		}
		return nil, errnoOf(err)
	}
	if p != c.base {
		panic(fmt.Sprintf("hostmap: MAP_FIXED upgrade of chunk %d moved it from %p to %p", ci, c.base, p))
	}
	c.writable = true
	m.table.store(ci, p, true)
	m.stats.upgrades.Add(1)
	if m.hook != nil {
		m.hook(evUpgrade, chunkRange(ci))
	}
	return p, nil
}

// MapInternal returns slices of the chunk mappings covering r exactly, in
// order, one per chunk r overlaps, mapping chunks and upgrading them to
// read-write (if write) as needed. Every page of r must be referenced by
// the caller (IncRef or an open Mapping); the slices are valid until those
// references are dropped. It allocates the returned [][]byte; use
// AppendMapInternal to avoid that.
//
// Errors: EINVAL if r is not Valid or a chunk of r has no references,
// EACCES for write on a file not open read-write, ErrClosed after Close,
// or the errno of a failed mmap.
func (m *Mapper) MapInternal(r Range, write bool) ([][]byte, error) {
	return m.AppendMapInternal(nil, r, write)
}

// AppendMapInternal is MapInternal appending the slices to dst; with room
// in dst it does not allocate. On error it returns dst unchanged.
func (m *Mapper) AppendMapInternal(dst [][]byte, r Range, write bool) ([][]byte, error) {
	if !r.Valid() {
		return dst, syscall.EINVAL
	}
	n0 := len(dst)
	for pos := r.Start; pos < r.End; {
		ci := pos >> chunkShift
		p, err := m.base(ci, write)
		if err != nil {
			return dst[:n0], err
		}
		in := pos & chunkMask
		k := min(r.End-pos, ChunkSize-in)
		dst = append(dst, unsafe.Slice((*byte)(unsafe.Add(p, in)), k))
		pos += k
	}
	return dst, nil
}

// ReadAt copies len(dst) bytes at off out of the chunk mappings, mapping
// chunks as needed; it makes no system call once they are mapped. The
// caller must hold references (IncRef or an open Mapping) on every page of
// [off, off+len(dst)) for the whole call: ReadAt neither takes nor drops
// references. It returns n < len(dst) only with an error: EINVAL for a
// negative or overflowing range or an unreferenced chunk, EFAULT where a
// page could not be read (past the file's end, or an I/O error behind the
// mapping; the file's size is not checked), ErrClosed after Close.
//
// The bytes of the file's last page past its end read as zeros. ReadAt
// does not allocate and may be called concurrently.
func (m *Mapper) ReadAt(dst []byte, off int64) (int, error) {
	return m.copyAt(dst, off, false)
}

// WriteAt copies src into the chunk mappings at off, upgrading chunks to
// read-write as needed, under the same rules as ReadAt. It does not extend
// the file: writing a page past the end faults (EFAULT), and bytes written
// past the end inside the last page are not part of the file. EACCES if
// the file is not open read-write.
func (m *Mapper) WriteAt(src []byte, off int64) (int, error) {
	return m.copyAt(src, off, true)
}

func (m *Mapper) copyAt(b []byte, off int64, write bool) (int, error) {
	if off < 0 || int64(len(b)) > MaxOffset-off {
		return 0, syscall.EINVAL
	}
	n := 0
	for n < len(b) {
		pos := off + int64(n)
		p, err := m.base(pos>>chunkShift, write)
		if err != nil {
			return n, err
		}
		in := pos & chunkMask
		k := min(len(b)-n, int(ChunkSize-in))
		mem := unsafe.Slice((*byte)(unsafe.Add(p, in)), k)
		var c int
		if write {
			c, err = SafeCopy(mem, b[n:n+k])
		} else {
			c, err = SafeCopy(b[n:n+k], mem)
		}
		n += c
		if err != nil {
			m.stats.faultsCaught.Add(1)
			return n, err
		}
	}
	return n, nil
}

// pinned is a chunk or span Sync flushes.
type pinned struct {
	ci    int64 // chunk index, or -1 for a span
	base  unsafe.Pointer
	pages Range // the file range mapped at base
}

// Sync flushes the mappings overlapping r (rounded out to page
// boundaries), chunks and spans, with msync(MS_SYNC), so that what was
// written through them in r is on the storage device. Ranges with no
// mapping are not touched. Errors: EINVAL if r is not Valid, ErrClosed
// after Close, or the first msync errno (the other mappings are flushed
// anyway).
//
// Chunks being flushed stay mapped (they hold a reference) until Sync
// returns; closing a span Mapping waits for a Sync flushing it.
func (m *Mapper) Sync(r Range) error {
	if !r.Valid() {
		return syscall.EINVAL
	}
	r = r.RoundOut()
	if r.Start == r.End {
		return nil
	}
	m.syncMu.RLock()
	defer m.syncMu.RUnlock()
	todo, err := m.pin(r)
	if err != nil {
		return err
	}
	var first error
	for _, p := range todo {
		fr := r.Intersect(p.pages)
		b := unsafe.Slice((*byte)(unsafe.Add(p.base, fr.Start-p.pages.Start)), fr.Length())
		if err := unix.Msync(b, unix.MS_SYNC); err != nil && first == nil {
			first = errnoOf(err)
		}
		if m.hook != nil {
			m.hook(evSync, fr)
		}
	}
	m.unpin(todo)
	return first
}

// pin lists the mapped chunks and the spans overlapping r, pinning each
// chunk so that it stays mapped.
// Preconditions: m.syncMu is held for reading (it keeps the spans).
func (m *Mapper) pin(r Range) ([]pinned, error) {
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var todo []pinned
	first, last := r.Start>>chunkShift, (r.End-1)>>chunkShift
	add := func(ci int64, c *chunk) {
		if c.base != nil && c.pins < maxCount {
			c.pins++
			todo = append(todo, pinned{ci, c.base, chunkRange(ci)})
		}
	}
	m.mapsMu.RLock()
	if last-first < int64(len(m.chunks)) {
		for ci := first; ci <= last; ci++ {
			if c := m.chunks[ci]; c != nil {
				add(ci, c)
			}
		}
	} else {
		for ci, c := range m.chunks {
			if ci >= first && ci <= last {
				add(ci, c)
			}
		}
	}
	m.mapsMu.RUnlock()
	for mp := m.spans; mp != nil; mp = mp.next {
		if r.Intersect(mp.pages).Length() > 0 {
			todo = append(todo, pinned{-1, mp.span, mp.pages})
		}
	}
	return todo, nil
}

// unpin drops the pins pin took, releasing chunks left idle.
func (m *Mapper) unpin(todo []pinned) {
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	for _, p := range todo {
		if p.ci < 0 {
			continue
		}
		c := m.chunks[p.ci]
		if c == nil || c.pins == 0 {
			panic(fmt.Sprintf("hostmap: chunk %d lost its Sync pin", p.ci))
		}
		c.pins--
		if c.idle() {
			m.releaseLocked(p.ci, c)
		}
	}
}

// Close ends the Mapper. The references taken with IncRef are dropped and
// every chunk not used by an open Mapping (or a Sync in progress) is
// unmapped. Open Mappings stay valid until each is closed; the last one
// closed unmaps what is left. Close returns EBUSY when Mappings are still
// open, after doing all of the above: the Mapper is closed either way.
//
// After Close returns, the Mapper never uses the fd again, so the caller
// may close it; every method but Stats returns ErrClosed (a second Close
// too), and Mapping.Close keeps working. Slices from MapInternal become
// invalid: Close must not run while such slices, ReadAt or WriteAt are in
// use.
func (m *Mapper) Close() error {
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.mapsMu.Lock()
	m.closed = true
	m.shut.Store(true)
	m.mapsMu.Unlock()
	var dropped int64
	for ci, c := range m.chunks {
		dropped += int64(c.refs)
		c.refs = 0
		if c.idle() {
			m.releaseLocked(ci, c)
		}
	}
	m.stats.liveRefs.Add(-dropped)
	m.free = nil
	if m.openMappings > 0 {
		return syscall.EBUSY
	}
	return nil
}
