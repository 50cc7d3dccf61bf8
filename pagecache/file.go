//go:build linux

package pagecache

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/internal/stripe"
	"github.com/ringfs/ringfs/uring"
)

// File is the cached state of one host file: its pages, their dirty
// spans, and its size. All methods are safe for concurrent use; writes are
// serialized by File.mu, hits run in parallel (with no lock on amd64, see
// readOptimistic; under its read lock elsewhere), and fills of different
// ranges read the host in parallel (see File.filling).
type File struct {
	c        *Cache
	id       uint64
	fd       int32 // buffered host descriptor
	directFd int32 // O_DIRECT host descriptor, or -1
	// inline is set for a file on tmpfs or ramfs (uring.InlineFile): its
	// host I/O runs as plain syscalls, never through the ring, which would
	// hand every request to a kernel worker thread (Request.Inline).
	inline bool

	// size is the file's logical size. Written with mu held for writing;
	// read anywhere.
	size atomic.Int64
	// resident counts cached pages; dirtyBytes the bytes in dirty or
	// unsynced spans. Written with mu held; read anywhere.
	resident   atomic.Int64
	dirtyBytes atomic.Int64
	// fillEnd is where the last fill of the file ended: its readahead
	// included, or the end of the request for a read around the cache. A
	// fill that starts there continues a sequential read. Read and
	// written anywhere; a hint only.
	fillEnd atomic.Int64

	// hostFd is fd while misses may be read with no lock (readAround,
	// fillUnlocked): -1 when the file has an O_DIRECT descriptor,
	// hostFdReleased once it is released. Written with mu held for
	// writing (and no such read in flight); read anywhere.
	hostFd atomic.Int32
	// fillFd is the descriptor fills read into frames with no lock
	// (fillUnlocked): the O_DIRECT one when the file has it (frames are
	// page-aligned), else fd; hostFdReleased once the file is released.
	// Written with hostFd.
	fillFd atomic.Int32
	// arounds counts host reads in flight with no lock (readAround,
	// fillUnlocked); hostWrites counts writes whose host part is in
	// flight with mu released (the writing ranges of filling). Read and
	// written anywhere.
	arounds, hostWrites atomic.Int32
	// changes counts the holds of mu by callers that could change what a
	// missing page reads as (waitArounds): a fill that read the host with
	// no lock installs its pages only if it did not move meanwhile
	// (fillUnlocked). Written with mu held for writing; read anywhere.
	changes atomic.Uint64
	// aroundWaiters counts callers of waitArounds that may sleep on
	// aroundDone; read and written anywhere.
	aroundWaiters atomic.Int32
	// aroundMu guards only the sleep on aroundDone (whose L it is), which
	// the last host read with no lock to finish broadcasts.
	aroundMu   sync.Mutex
	aroundDone sync.Cond

	// Errs records writeback errors for per-handle reporting.
	Errs ErrSeq

	// wbMu serializes writeback, truncate, allocate and direct writes of
	// the file, so that no write of old data lands after a truncate or a
	// hole punch.
	wbMu sync.Mutex
	// syncFd is the O_DIRECT descriptor durable writebacks use
	// (Options.DirectWriteback): -1 until opened, syncRefused once the
	// file refused O_DIRECT. The File owns it. +checklocks:wbMu
	syncFd int32

	mu fileMu
	// index maps pages to frames (its dense part is also read with no
	// lock, see readOptimistic). +checklocks:mu
	index pageIndex
	// unsynced counts pages in state pageUnsynced. +checklocks:mu
	unsynced int
	// released is set by Release. +checklocks:mu
	released bool
	// uncached stops fills and writes from adding pages. +checklocks:mu
	uncached bool
	// filling holds the page ranges of host I/O in flight with mu
	// released: fills (their pages are not in the index yet) and writes
	// whose host part lies inside the file (writing set). Anything that
	// would write, restructure or fill those pages waits on fillDone
	// (whose L is &mu) until the range is gone; writeback waits only for
	// the writes, and eviction keeps their pages. +checklocks:mu
	filling  []pageRange
	fillDone sync.Cond
	// draining counts callers waiting for every fill and write of the
	// file to end (drain), or for writes (waitWrites); while it is not
	// zero no new fill or write starts (waitFills), so that a stream of
	// misses or writes cannot keep them waiting. +checklocks:mu
	draining int
}

// fileMu is a File's RWMutex with a sequence count for readers that take
// no lock: seq is odd exactly while the mutex is held for writing, and
// grows by two with each such hold. Every change to the File's index,
// size, and the bytes of its cached frames is made with mu held for
// writing, so a reader that saw the same even seq before and after it read
// them read a state no writer changed in between (File.readOptimistic).
//
// An acquisition that finds the mutex taken is counted, with the time it
// waited, in st (the cache's FileLockWaits and FileLockWaitNs); one that
// finds it free costs what the RWMutex's costs.
type fileMu struct {
	rw  sync.RWMutex
	seq atomic.Uint64
	st  *counters // set by NewFile, before the File is shared
}

func (m *fileMu) Lock() {
	if !m.rw.TryLock() {
		t := time.Now()
		m.rw.Lock()
		m.waited(t)
	}
	m.seq.Add(1)
}

func (m *fileMu) Unlock() { m.seq.Add(1); m.rw.Unlock() }

func (m *fileMu) RLock() {
	if !m.rw.TryRLock() {
		t := time.Now()
		m.rw.RLock()
		m.waited(t)
	}
}

func (m *fileMu) RUnlock()       { m.rw.RUnlock() }
func (m *fileMu) TryRLock() bool { return m.rw.TryRLock() }

// waited counts an acquisition that waited from t.
func (m *fileMu) waited(t time.Time) {
	m.st.lockWaits.Add(1)
	m.st.lockWaitNs.Add(uint64(time.Since(t)))
}

// pageRange is the pages [p0, p1); writing marks a host write in flight
// rather than a fill.
type pageRange struct {
	p0, p1  int64
	writing bool
}

// fillingOverlaps reports whether host I/O in flight covers any page of
// [p0, p1): a fill or a write, or only a write when fills is false.
//
// Preconditions: f.mu is held.
func (f *File) fillingOverlaps(p0, p1 int64, fills bool) bool {
	for _, r := range f.filling {
		if r.p0 < p1 && p0 < r.p1 && (fills || r.writing) {
			return true
		}
	}
	return false
}

// waitFills waits until no fill or write in flight covers a page of
// [p0, p1), and no caller is draining the file, and reports whether it
// had to wait: f.mu was then released meanwhile, and the caller must look
// at the file's state afresh. Callers are about to start a fill or write
// of their own.
//
// Preconditions: f.mu is held for writing; the caller has no fill or
// write in flight.
func (f *File) waitFills(p0, p1 int64) bool {
	waited := false
	for f.draining > 0 || f.fillingOverlaps(p0, p1, true) {
		f.fillDone.Wait()
		waited = true
	}
	return waited
}

// drain waits until no fill or write of the file is in flight. Fills and
// writes that would start meanwhile wait for it (waitFills): with f.mu
// released while it waits, misses could otherwise start new fills
// faster than the old ones end, and keep it waiting forever (as they
// did a Truncate, with one P and two goroutines reading in a loop).
//
// Preconditions: f.mu is held for writing.
func (f *File) drain() { f.holdOffUntilIdle(0, allPages, true) }

// allPages is every page a file can have, for drain.
const allPages = 1 << 62

// holdOffUntilIdle waits until no fill or write in flight (only writes
// unless fills) covers a page of [p0, p1), counted in f.draining
// meanwhile so that no new fill or write starts (waitFills).
//
// Preconditions: f.mu is held for writing.
func (f *File) holdOffUntilIdle(p0, p1 int64, fills bool) {
	if !f.fillingOverlaps(p0, p1, fills) {
		return
	}
	f.draining++
	for f.fillingOverlaps(p0, p1, fills) {
		f.fillDone.Wait()
	}
	if f.draining--; f.draining == 0 {
		f.fillDone.Broadcast() // the fills and writes held off
	}
}

// hostFdReleased is File.hostFd once the file is released.
const hostFdReleased = -2

// waitArounds waits until no host read with no lock (readAround,
// fillUnlocked) is in flight. Such reads start only while mu is free and
// no write's host part is in flight, so that a caller holding mu waits at
// most for the reads already started: for callers that could change what
// a missing page reads as (the host's bytes, the size, the descriptors,
// or a page cached with bytes the host lacks), once they hold mu for good
// (after waitFills).
//
// Preconditions: f.mu is held for writing.
func (f *File) waitArounds() {
	f.changes.Add(1)
	// f.mu's sequence went odd before this load; a read that counted
	// itself in arounds after this load sees it odd, or changed, and
	// backs off (see lookAround).
	if f.arounds.Load() == 0 {
		return
	}
	f.aroundWaiters.Add(1)
	f.aroundMu.Lock()
	for f.arounds.Load() != 0 {
		f.aroundDone.Wait()
	}
	f.aroundMu.Unlock()
	f.aroundWaiters.Add(-1)
}

// waitIdle waits until no fill, write or host read with no lock of the
// file is in flight, for callers that change the whole file.
//
// Preconditions: f.mu is held for writing.
func (f *File) waitIdle() {
	f.drain()
	f.waitArounds()
}

// waitWrites waits until no write whose host part is in flight covers a
// page of [p0, p1). Like drain, it holds off new fills and writes while
// it waits, so that a stream of writes cannot keep it waiting.
//
// Preconditions: f.mu is held for writing.
func (f *File) waitWrites(p0, p1 int64) { f.holdOffUntilIdle(p0, p1, false) }

// Range is a byte range [Start, End).
type Range struct{ Start, End int64 }

// Len returns the number of bytes in r.
func (r Range) Len() int64 { return r.End - r.Start }

// FillRange widens required for readahead the way gVisor's maxFillRange
// does, with the cap limit: a required range of at least limit bytes is
// read as is; otherwise optional is used when it is at most limit long;
// otherwise optional is started at required.Start (no read-behind) and cut
// to limit bytes.
func FillRange(required, optional Range, limit int64) Range {
	switch {
	case required.Len() >= limit:
		return required
	case optional.Len() <= limit:
		return optional
	}
	optional.Start = required.Start
	if optional.Len() > limit {
		optional.End = required.Start + limit
	}
	return optional
}

// Size returns the file's logical size.
func (f *File) Size() int64 { return f.size.Load() }

// SetSize replaces the logical size without touching the host or the
// pages (for callers that learned the host size changed, as in Shared
// mode). Pages past the new size are dropped. A size past MaxFileSize
// is taken as MaxFileSize. A page cached across the old end keeps its
// bytes past it (zeros) when the size grows: Invalidate it if the host
// may hold data there.
func (f *File) SetSize(size int64) {
	size = min(size, MaxFileSize)
	// wbMu: a writeback in flight pins pages that a shrink would drop.
	f.wbMu.Lock()
	defer f.wbMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waitIdle()
	if size < f.size.Load() {
		f.dropFrom(size)
	}
	f.size.Store(size)
}

// ResidentBytes returns the bytes of the file held in the cache.
func (f *File) ResidentBytes() int64 { return f.resident.Load() * PageSize }

// DirtyBytes returns the bytes written to the cache and not yet durable
// on the host (dirty or written but not fsynced).
func (f *File) DirtyBytes() int64 { return f.dirtyBytes.Load() }

func pageOf(off int64) int64 { return off >> pageShift }

// pageEnd returns the number of the first page wholly at or past off
// (written so that off near MaxInt64 does not overflow).
func pageEnd(off int64) int64 {
	p := off >> pageShift
	if off&(PageSize-1) != 0 {
		p++
	}
	return p
}

// ReadAt reads the bytes of [off, off+len(p)) that lie below the file's
// size into p and returns how many were read (fewer than len(p) only at
// end of file, or with an error). Cached pages are copied out; missing
// ones are filled in one batch with readahead.
func (f *File) ReadAt(p []byte, off int64) (int, error) {
	n, _, err := f.ReadAtHit(p, off)
	return n, err
}

// ReadAtHit is ReadAt that also reports whether the cache held all of
// the readable range (a hit: no host I/O).
func (f *File) ReadAtHit(p []byte, off int64) (n int, hit bool, err error) {
	if off < 0 || int64(len(p)) > (1<<63-1)-off {
		return 0, false, syscall.EINVAL // as pread
	}
	n, end, hit, ok := f.copyHit(p, off)
	switch {
	case !ok:
		return 0, false, syscall.EBADF
	case hit:
		return n, true, nil
	}
	f.c.st.misses.Add(1)
	m, err := f.fill(p[n:end-off], off+int64(n))
	return n + m, false, err
}

// copyHit copies the cached bytes of [off, off+len(p)) below the size into
// p, from off up to the first page that is not cached: with no lock when
// readOptimistic can, under the read lock otherwise. It returns how many
// it copied, end (the end of the readable range: off when off is at or
// past the size), and whether that was all of it (a hit, counted unless
// it is empty); ok is false when the file is released.
//
// Preconditions: off ≥ 0; the caller holds no lock of f.
func (f *File) copyHit(p []byte, off int64) (n int, end int64, hit, ok bool) {
	switch n, hit, miss := f.readOptimistic(p, off); {
	case hit:
		return n, off + int64(n), true, true
	case miss:
		return n, off + int64(len(p)), false, true
	}
	n, end, hit, ok = f.copyLocked(p, off)
	if hit && n > 0 {
		f.c.st.addHit(n)
	}
	return n, end, hit, ok
}

// copyLocked is copyHit under the read lock, without counting a hit.
//
// Preconditions: off ≥ 0; the caller holds no lock of f.
func (f *File) copyLocked(p []byte, off int64) (n int, end int64, hit, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.released {
		return 0, off, false, false
	}
	size := f.size.Load()
	if off >= size {
		return 0, off, true, true
	}
	end = off + min(int64(len(p)), size-off) // (off+len(p) may overflow)
	n = f.copyOut(p[:end-off], off)
	return n, end, off+int64(n) == end, true
}

// optimisticHits says whether hits may be served with no lock
// (readOptimistic). Its check of the sequence after the copy relies on
// loads not passing earlier loads, which amd64 guarantees and weaker
// memory models do not; elsewhere every hit takes the read lock.
const optimisticHits = runtime.GOARCH == "amd64"

// readOptimistic serves a read that the cache holds entirely, below the
// size, without taking mu: it notes mu's sequence, copies the pages it
// finds in the index, and keeps the result only if the sequence did not
// move (no writer held mu meanwhile). Hits of one file from many
// goroutines then share no lock and no counter (see doc.go). It reports
// miss when it found, that way, the read below the size and a page of it
// absent from the index's dense part: the n bytes before that page are
// copied, and the caller fills from there without taking the lock to
// look again. Anything else (the end of file, a writer active or
// arriving, a page in the sparse part of the index) reports neither, and
// the caller takes the locked path, which decides.
//
// While it copies, a frame it found may be evicted and refilled for
// another file; it then throws the copy away, and clears the bytes it
// copied so that none of another file's bytes stay in p.
//
// Preconditions: off ≥ 0; the caller holds no lock of f.
func (f *File) readOptimistic(p []byte, off int64) (n int, hit, miss bool) {
	if !optimisticHits || len(p) == 0 {
		return 0, false, false
	}
	c := f.c
	h := stripe.Hint()
	inProgress := c.optimistic.At(h)
	inProgress.Add(1)
	defer inProgress.Add(-1)
	if c.closing.Load() {
		return 0, false, false // the arena may be unmapped
	}
	seq := f.mu.seq.Load()
	if seq&1 != 0 {
		return 0, false, false // a writer holds mu
	}
	end := off + int64(len(p))
	if size := f.size.Load(); end > size || end < off {
		return 0, false, false // reaches the end of file (or overflows)
	}
	done := 0
	cp := arenaCopy{out: true}
	for done < len(p) {
		pos := off + int64(done)
		fr := f.index.getUnlocked(pageOf(pos))
		if fr < 0 || fr >= c.nframes {
			miss = fr < 0 && pageOf(pos)>>leafShift < denseLeaves // absent, not sparse
			break
		}
		c.policy.hit(fr)
		done += c.copyFrame(&cp, p, done, fr, pos)
	}
	cp.flush(c.arena, p)
	if f.mu.seq.Load() != seq {
		clear(p[:done]) // may hold another file's bytes
		return 0, false, false
	}
	if done < len(p) {
		return done, false, miss
	}
	c.st.addHitAt(h, done)
	return done, true, false
}

// copyOut copies cached pages into dst from off until the first page that
// is not cached, and returns the bytes copied.
//
// Preconditions: f.mu is held (for reading at least); off+len(dst) ≤ size.
func (f *File) copyOut(dst []byte, off int64) int {
	done := 0
	cp := arenaCopy{out: true}
	for done < len(dst) {
		pos := off + int64(done)
		fr := f.index.get(pageOf(pos))
		if fr < 0 {
			break
		}
		f.c.policy.hit(fr)
		done += f.c.copyFrame(&cp, dst, done, fr, pos)
	}
	cp.flush(f.c.arena, dst)
	return done
}

// copyFrame copies the bytes of frame fr from file offset pos on (to the
// frame's end or dst's) into dst[done:], and returns how many. Reads of
// more than a page join the copies of consecutive frames in cp, which the
// caller flushes; smaller ones copy at once (there is nothing to join).
func (c *Cache) copyFrame(cp *arenaCopy, dst []byte, done int, fr int32, pos int64) int {
	in := int(pos & (PageSize - 1))
	n := min(PageSize-in, len(dst)-done)
	if len(dst) <= PageSize {
		return copy(dst[done:done+n], c.frameBytes(fr)[in:])
	}
	cp.add(c.arena, dst, int(fr)*PageSize+in, done, n)
	return n
}

// fill reads dst from off (below size) through the cache: the missing
// pages of the required range and its readahead are read in one batch.
// When frames run short, required pages are read straight into dst.
func (f *File) fill(dst []byte, off int64) (int, error) {
	c := f.c
	size := f.size.Load()
	req := Range{off, off + int64(len(dst))}
	fr := FillRange(req, Range{off, size}, c.readahead)
	p0, p1 := pageOf(fr.Start), min(pageEnd(fr.End), pageEnd(size))
	if f.hostFd.Load() == hostFdReleased {
		return 0, syscall.EBADF // before reserving frames it would not use
	}
	fc := getFillCtx()
	defer putFillCtx(fc)
	aligned := DirectAligned(dst, off)
	p1 = f.reserveFill(fc, req, p0, p1, aligned)
	if len(fc.frames) == 0 {
		// Read around the cache (or no frame was free): the locked path
		// would only read the missing pages of req into dst.
		if n, done, err := f.readAround(fc, dst, req, aligned); done {
			return n, err
		}
	} else if n, done, err := f.fillUnlocked(fc, dst, req, p0, p1); done {
		return n, err
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	var r1 int64
	for {
		if f.released {
			c.putFree(fc.frames)
			return 0, syscall.EBADF
		}
		// The size may have changed while frames were reserved.
		size = f.size.Load()
		if req.End > size {
			req.End = max(size, req.Start)
			dst = dst[:req.End-req.Start]
		}
		p1 = min(p1, pageEnd(size))
		r1 = pageEnd(req.End)
		if !f.waitFills(p0, p1) {
			break
		}
	}
	if f.uncached {
		// Read around the cache: no frames, so planFill bypasses.
		c.putFree(fc.frames)
		fc.frames = fc.frames[:0]
	}
	f.planFill(fc, p0, p1, r1, req, dst)
	if len(fc.reqs) > 0 {
		// Read with mu released, so that hits, writes elsewhere and other
		// fills of the file go on; whatever would write these pages waits.
		// Cached pages of the request are copied now: they may be evicted
		// meanwhile, and completeFill copies only what is still cached.
		f.copyPresent(dst, req.Start)
		f.outside(pageRange{p0: p0, p1: p1}, func() { f.readHost(fc.reqs) })
		c.st.fillBatches.Add(1)
		c.st.fillSQEs.Add(uint64(len(fc.reqs)))
	}
	return f.completeFill(fc, size, r1, req, dst)
}

// reserveFill reserves the frames of a fill of pages [p0, p1) for req,
// or none when a small random miss is to be read around the full cache
// (Cache.admitLater), and returns the fill's end page. A small miss that
// does not continue a sequential read (continues) is random: as the
// kernel's readahead does for such a read, it reads its own pages only.
// Reading 64 KiB for each random 4 KiB miss read and evicted 16 times the
// pages it needed: go test -run '^$' -bench 'ReadMiss' ./engine/ (random
// 4 KiB reads of a 1 GiB file through a 64 MiB cache, default options),
// two runs of each build alternated: 0.27–0.28× os.File before, 0.61–
// 0.62× after with one goroutine, 0.18× and 0.39× with 16 (the file in
// the kernel's cache); with Options.DirectIO, 47–48 µs a read before and
// 22 µs after with one goroutine, 0.29× and 1.03–1.10× an O_DIRECT
// os.File with 16.
//
// aligned says that the caller's buffer suits an O_DIRECT read (see
// readAround).
//
// Preconditions: the caller holds no File's locks.
func (f *File) reserveFill(fc *fillCtx, req Range, p0, p1 int64, aligned bool) int64 {
	// A fill starts at its request (FillRange reads no further back), so
	// the request's pages are [p0, r1).
	r1 := pageEnd(req.End)
	var around bool
	switch {
	case r1-p0 > MaxReadahead/PageSize || f.continues(req.Start, p0, r1-p0):
		fc.frames = f.c.reserve(fc.frames[:0], int(max(p1-p0, 0)))
	case f.hostFd.Load() >= 0 || aligned && f.fillFd.Load() >= 0:
		fc.frames, p1, around = f.c.reserveMiss(fc.frames[:0], f, p0, r1, p1)
	default:
		p1 = r1
		fc.frames = f.c.reserve(fc.frames[:0], int(p1-p0))
	}
	if around {
		f.fillEnd.Store(req.End)
		return p1
	}
	f.fillEnd.Store(p1 << pageShift)
	return p1
}

// readAround reads req from the host straight into dst, as the locked path
// does for a miss that goes around the cache, but without taking f.mu: the
// misses of a working set larger than the cache would otherwise queue on
// the file's lock twice for each host read (BenchmarkReadMiss,
// io=buffered, jobs=16). It reports done = false, having read nothing,
// unless every page of req is absent from the index (and in its dense
// part), req ends within the size, the file is not released, and no writer
// held f.mu and no write's host part was in flight while it looked; the
// caller then takes the locked path. A read it does is counted in
// f.arounds from before it looks until it ends, and everything that could
// change what a missing page reads as waits for those counted reads
// holding f.mu (waitArounds), so a read around never overlaps such a
// change: it returns the host's bytes as they were when it looked, which
// are the file's (a page absent from the index holds no byte the host
// lacks: see evictPages).
//
// A file with an O_DIRECT descriptor reads around the cache only into a
// buffer aligned for it (aligned: DirectAligned), through that
// descriptor and the ring, where such reads wait for the disk together:
// its other misses fill through frames, and none goes through the
// buffered descriptor, which would cache the file in the kernel too.
//
// Preconditions: the caller holds no lock of f; req is dst's range; fc
// holds no request.
func (f *File) readAround(fc *fillCtx, dst []byte, req Range, aligned bool) (n int, done bool, err error) {
	if len(dst) == 0 {
		return 0, false, nil
	}
	fd, _, ok := f.lookAround(pageOf(req.Start), pageEnd(req.End), req.End, aligned)
	if !ok {
		return 0, false, nil
	}
	if fd == f.hostFd.Load() {
		n, err = uring.Do(f.c.be, uring.Request{Op: uring.OpRead, Fd: fd, Off: req.Start, Buf: dst})
	} else {
		// The O_DIRECT descriptor (nothing changes the descriptors
		// before endAround).
		fc.reqs = append(fc.reqs[:0], uring.Request{Op: uring.OpRead, Fd: fd, Off: req.Start, Buf: dst, Inline: f.inline})
		f.c.be.Submit(fc.reqs)
		r := &fc.reqs[0]
		n, err = r.N, r.Err
		if directEnded(r) {
			err = nil // cut short by the host's end of file
		}
	}
	f.endAround()
	c := f.c
	c.st.fillBatches.Add(1)
	c.st.fillSQEs.Add(1)
	c.st.aroundUnlocked.Add(1)
	if err != nil {
		return 0, true, err
	}
	clear(dst[n:]) // past the host's end of file: zeros
	c.st.bypassBytes.Add(uint64(len(dst)))
	return len(dst), true, nil
}

// DirectAligned reports whether a transfer of p at off may go to an
// O_DIRECT descriptor as it is: p's address, its length and off are
// multiples of the page size (any device's logical block divides it).
func DirectAligned(p []byte, off int64) bool {
	return off%PageSize == 0 && len(p)%PageSize == 0 && uintptr(unsafe.Pointer(unsafe.SliceData(p)))%PageSize == 0
}

// lookAround starts a read of the host with no lock of f for pages
// [p0, p1), the bytes below end of which are wanted: it counts the read
// in f.arounds and checks, between two loads of mu's sequence, that no
// writer holds mu, that no write's host part is in flight, that the file
// is not released, that end is within the size and p1 within its pages,
// and that every page of [p0, p1) is absent from the index (and in its
// dense part). It returns the host descriptor to read with, the buffered
// one (File.hostFd) or, for a read into frames or an aligned buffer
// (aligned), File.fillFd, and the file's change count, or ok = false,
// having ended the read, when a check fails. The caller ends the read
// (endAround) once the host I/O is done.
//
// Preconditions: the caller holds no lock of f; p0 < p1.
func (f *File) lookAround(p0, p1, end int64, aligned bool) (fd int32, changes uint64, ok bool) {
	f.arounds.Add(1)
	seq := f.mu.seq.Load()
	changes = f.changes.Load()
	if seq&1 == 0 && f.hostWrites.Load() == 0 {
		fd = f.hostFd.Load()
		if aligned {
			fd = f.fillFd.Load()
		}
		size := f.size.Load()
		ok = fd >= 0 && end <= size && p1 <= pageEnd(size) && f.index.absentUnlocked(p0, p1) &&
			f.mu.seq.Load() == seq
	}
	if !ok {
		f.endAround()
	}
	return fd, changes, ok
}

// fillUnlocked is fill's path for a miss whose pages [p0, p1) are all
// missing and have a reserved frame each: it reads them into their
// frames and copies req out as a read around the cache does
// (lookAround), with no lock of f, and takes f.mu once, to index them.
// It reads through the file's O_DIRECT descriptor when it has one
// (File.fillFd): frames are page-aligned, and such reads wait for the
// disk together in the ring, as a locked fill's do (readHost). Taking
// the file's lock once rather than three times (around a locked fill's
// host read, and to index) matters most there, where many goroutines'
// misses wait for the disk at once: go test -run '^$' -bench
// 'ReadMiss/impl=ringfs/io=direct' ./engine/, 16 goroutines, took 8.2 µs
// and 6.2 µs of CPU a read with locked fills, 0.8 waits for the lock a
// read of 54 µs each; 6.7 µs, 5.5 µs and 0.3 waits of 9 µs with these
// (measured before aligned misses of such files were read around the
// cache too, readAround, which the benchmark's are).
// The bytes it returns are the host's while the read was counted, when
// nothing changed the file. Whatever changes the file after the read
// ends and before f.mu is taken moves f.changes, and the fill then
// indexes nothing, so that no page is indexed with bytes older than a
// write; nor does it when a page of the range was indexed meanwhile by
// another fill, or is in flight in a locked one (which is to index it).
// It reports done = false, having read nothing, when lookAround says no;
// fill then takes the locked path.
//
// Preconditions: the caller holds no lock of f; fc holds the frames
// reserveFill reserved and no plan; req is dst's range.
func (f *File) fillUnlocked(fc *fillCtx, dst []byte, req Range, p0, p1 int64) (n int, done bool, err error) {
	c := f.c
	r1 := pageEnd(req.End)
	if len(dst) == 0 || p1 < r1 || int(p1-p0) > len(fc.frames) {
		return 0, false, nil
	}
	fd, changes, ok := f.lookAround(p0, p1, req.End, true)
	if !ok {
		return 0, false, nil
	}
	// What lookAround saw: nothing changes the size or the descriptors
	// before endAround. fd is the O_DIRECT descriptor when it is not the
	// one reads around the cache use.
	size, direct := f.size.Load(), fd != f.hostFd.Load()
	// Planned with no lock: every page is missing, so the plan is
	// planFill's for them.
	for _, sg := range [2]fillSeg{{p0: p0, p1: r1, required: true}, {p0: r1, p1: p1, frames: int(r1 - p0)}} {
		if k := int(sg.p1 - sg.p0); k > 0 {
			fc.segs = append(fc.segs, sg)
			fc.reqs = append(fc.reqs, f.transfer(fc, false, fd, sg.p0<<pageShift, fc.frames[sg.frames:sg.frames+k], 0, PageSize*k))
		}
	}
	if direct {
		c.be.Submit(fc.reqs) // waits for the disk together with other misses (readHost)
	} else {
		runHost(c.be, fc.reqs)
	}
	f.endAround()
	c.st.fillBatches.Add(1)
	c.st.fillSQEs.Add(uint64(len(fc.reqs)))
	// The frames stay fc's until indexed.
	for i, sg := range fc.segs {
		r := &fc.reqs[i]
		if r.Err != nil && !directEnded(r) {
			c.st.fillErrors.Add(1)
			if sg.required {
				c.putFree(fc.frames)
				return 0, true, r.Err
			}
			fc.segs = fc.segs[:i] // readahead only: index the required pages
			break
		}
		c.zeroFrames(fc.frames[sg.frames:sg.frames+int(sg.p1-sg.p0)], sg.p0, r.N, size)
	}
	cp := arenaCopy{out: true}
	for n < len(dst) {
		pos := req.Start + int64(n)
		n += c.copyFrame(&cp, dst, n, fc.frames[pageOf(pos)-p0], pos)
	}
	cp.flush(c.arena, dst)
	fc.used = int(fc.segs[len(fc.segs)-1].p1 - p0)
	if testHookFillRead != nil {
		testHookFillRead(f)
	}
	f.mu.Lock()
	if f.changes.Load() == changes && !f.released && !f.uncached && f.index.absent(p0, p1) &&
		!f.fillingOverlaps(p0, p1, true) {
		f.indexFill(fc, r1)
		c.st.fillsUnlocked.Add(1)
	} else {
		fc.used = 0
		c.st.fillsNotIndexed.Add(1)
	}
	f.mu.Unlock()
	c.putFree(fc.frames[fc.used:])
	return n, true, nil
}

// testHookFillRead, when set (by tests, with no fill running), runs in
// fillUnlocked between the host read and the taking of f.mu.
var testHookFillRead func(f *File)

// endAround ends a host read with no lock (lookAround) and wakes
// waitArounds when it was the last one.
func (f *File) endAround() {
	if f.arounds.Add(-1) == 0 && f.aroundWaiters.Load() != 0 {
		f.aroundMu.Lock()
		f.aroundDone.Broadcast()
		f.aroundMu.Unlock()
	}
}

// continues reports whether a fill at off, of the n pages from p0 on,
// looks like the next step of a sequential read: it starts where the last
// fill of the file ended, or at the file's start, or more pages than it
// asks for are cached right before it (n+1, or all from the start of the
// file): the trail a sequential reader leaves, as the kernel's readahead
// reads it. One cached page before a miss is not enough: random misses
// meet one often in a cache of readahead windows, and reading ahead then
// caches more such windows. Sequential fills read ahead and are never
// read around the cache (admitLater).
func (f *File) continues(off, p0, n int64) bool {
	return off == f.fillEnd.Load() || f.trail(p0, n+1, nil)
}

// trail reports whether the k pages before p0 (all of them from the
// file's start, when there are fewer: none before page 0) were read
// recently: each is cached or, when g is not nil, in g's ghost queue (read
// around the full cache, or evicted from its small queue, recently).
// It takes no lock: the index and the ghost set are read with atomics.
func (f *File) trail(p0, k int64, g *s3fifo) bool {
	for p := p0 - 1; p >= max(p0-k, 0); p-- {
		if f.index.getUnlocked(p) < 0 && (g == nil || !g.seenRecently(policyKey(f.id, p))) {
			return false
		}
	}
	return true
}

// readHost runs the reads of a fill. A lone buffered read goes out as a
// plain syscall (uring.Do): the data is usually in the kernel's cache,
// and pread then costs less than a trip through the ring
// (BenchmarkReadMiss, io=buffered, one goroutine: 1.30-1.43 us a miss in
// several runs against 1.60 us through the ring, on the machine of the
// README's figures). O_DIRECT reads, and several reads, go to the ring,
// where they wait for the disk together.
func (f *File) readHost(reqs []uring.Request) {
	if f.directFd >= 0 {
		f.c.be.Submit(reqs)
		return
	}
	runHost(f.c.be, reqs)
}

// runHost runs requests on buffered descriptors: a lone one as a plain
// syscall (uring.Do), several in one Submit.
func runHost(be uring.Backend, reqs []uring.Request) {
	if len(reqs) == 1 {
		r := &reqs[0]
		r.N, r.Err = uring.Do(be, *r)
		return
	}
	be.Submit(reqs)
}

// outside runs io, the host I/O of a fill or write of rg, with f.mu
// released and rg in f.filling meanwhile, then takes f.mu again and wakes
// whoever waits for rg.
//
// Preconditions: f.mu is held for writing; no fill or write in flight
// overlaps rg.
func (f *File) outside(rg pageRange, io func()) {
	f.filling = append(f.filling, rg)
	if rg.writing {
		f.hostWrites.Add(1) // before mu is free: see readAround
	}
	f.mu.Unlock()
	io()
	f.mu.Lock()
	if rg.writing {
		f.hostWrites.Add(-1)
	}
	f.endFill(rg)
}

// endFill removes the fill or write rg from f.filling and wakes the
// waiters.
//
// Preconditions: f.mu is held for writing.
func (f *File) endFill(rg pageRange) {
	for i, r := range f.filling {
		if r == rg {
			last := len(f.filling) - 1
			f.filling[i] = f.filling[last]
			f.filling = f.filling[:last]
			break
		}
	}
	f.fillDone.Broadcast()
}

// completeFill installs a fill's pages after its requests ran, copies the
// requested bytes out, frees unused frames and returns the bytes read
// (stopping at the first failed required page) and that failure.
//
// Preconditions: f.mu is held for writing.
func (f *File) completeFill(fc *fillCtx, size, r1 int64, req Range, dst []byte) (int, error) {
	c := f.c
	failed := f.finishFill(fc, size, r1, dst, req.Start)
	n := len(dst)
	var err error
	if failed >= 0 {
		n = int(max(failed-req.Start, 0))
		err = fc.err
	}
	// Copy out what the cache now holds; bypassed pages are already in dst.
	f.copyPresent(dst[:n], req.Start)
	c.putFree(fc.frames[fc.used:])
	return n, err
}

// copyPresent copies into dst the bytes from off of the pages that are
// cached, and leaves dst's bytes of absent pages as they are.
//
// Preconditions: f.mu is held.
func (f *File) copyPresent(dst []byte, off int64) {
	end := off + int64(len(dst))
	for pos := off; pos < end; {
		page := pageOf(pos)
		next := min((page+1)<<pageShift, end)
		if frm := f.index.get(page); frm >= 0 {
			copy(dst[pos-off:next-off], f.c.frameBytes(frm)[pos&(PageSize-1):])
		}
		pos = next
	}
}

// fillSeg is one run of missing pages read by one request.
type fillSeg struct {
	p0, p1   int64 // pages [p0, p1)
	frames   int   // index of the first frame in fillCtx.frames; -1 when bypassing into dst
	required bool
}

// fillCtx is the scratch state of one fill, pooled so misses do not
// allocate in steady state.
type fillCtx struct {
	frames  []int32
	used    int
	segs    []fillSeg
	reqs    []uring.Request
	vecs    [][]byte
	install []placed
	err     error
}

var fillPool = sync.Pool{New: func() any { return new(fillCtx) }}

func getFillCtx() *fillCtx { return fillPool.Get().(*fillCtx) }

func putFillCtx(fc *fillCtx) {
	fc.dropPlan()
	fc.frames = fc.frames[:0]
	fillPool.Put(fc)
}

// dropPlan forgets fc's plan and its results, keeping its frames.
func (fc *fillCtx) dropPlan() {
	clear(fc.reqs) // drop buffer references
	clear(fc.vecs)
	fc.segs, fc.reqs, fc.vecs, fc.install = fc.segs[:0], fc.reqs[:0], fc.vecs[:0], fc.install[:0]
	fc.used, fc.err = 0, nil
}

// planFill finds the missing pages of [p0, p1), splits them into
// segments (at the end of the required pages r1 too), gives each segment
// frames or, for required pages without frames, a bypass into dst, and
// prepares one request per segment.
//
// Preconditions: f.mu is held for writing.
func (f *File) planFill(fc *fillCtx, p0, p1, r1 int64, req Range, dst []byte) {
	for p := p0; p < p1; {
		if f.index.get(p) >= 0 {
			p++
			continue
		}
		q := p + 1
		for q < p1 && q != r1 && f.index.get(q) < 0 {
			q++
		}
		required := p < r1
		k := int(q - p)
		if avail := len(fc.frames) - fc.used; avail < k {
			if !required {
				if avail == 0 {
					break
				}
				q, k = p+int64(avail), avail
			} else if avail > 0 {
				q, k = p+int64(avail), avail
			} else {
				fc.segs = append(fc.segs, fillSeg{p0: p, p1: q, frames: -1, required: true})
				p = q
				continue
			}
		}
		fc.segs = append(fc.segs, fillSeg{p0: p, p1: q, frames: fc.used, required: required})
		fc.used += k
		p = q
	}
	fd := f.fd
	if f.directFd >= 0 {
		fd = f.directFd
	}
	for _, s := range fc.segs {
		if s.frames < 0 {
			// Bypass: read the caller's part of these pages into dst.
			a, b := max(s.p0<<pageShift, req.Start), min(s.p1<<pageShift, req.End)
			fc.reqs = append(fc.reqs, uring.Request{Op: uring.OpRead, Fd: f.fd, Off: a, Buf: dst[a-req.Start : b-req.Start], Inline: f.inline})
			continue
		}
		fc.reqs = append(fc.reqs, f.transfer(fc, false, fd, s.p0<<pageShift,
			fc.frames[s.frames:s.frames+int(s.p1-s.p0)], 0, PageSize*int(s.p1-s.p0)))
	}
}

// finishFill installs the pages of successful segments, frees the frames
// of failed ones, and returns the file offset of the first failed
// required segment (or -1).
//
// Preconditions: f.mu is held for writing.
func (f *File) finishFill(fc *fillCtx, size, r1 int64, dst []byte, reqStart int64) int64 {
	c := f.c
	failed := int64(-1)
	for i, s := range fc.segs {
		r := &fc.reqs[i]
		if s.frames < 0 {
			if r.Err != nil {
				if failed < 0 || r.Off < failed {
					failed, fc.err = r.Off, r.Err
				}
				continue
			}
			clear(r.Buf[r.N:]) // past the host's end of file: zeros
			c.st.bypassBytes.Add(uint64(len(r.Buf)))
			continue
		}
		frames := fc.frames[s.frames : s.frames+int(s.p1-s.p0)]
		if r.Err != nil && !directEnded(r) {
			if s.required && (failed < 0 || s.p0<<pageShift < failed) {
				failed, fc.err = max(s.p0<<pageShift, reqStart), r.Err
			}
			c.st.fillErrors.Add(1)
			c.putFree(frames)
			fc.segs[i].frames = -1 // nothing to index
			continue
		}
		c.zeroFrames(frames, s.p0, r.N, size)
	}
	f.indexFill(fc, r1)
	return failed
}

// zeroFrames zeroes, in frames holding the pages from p0 on, what the host
// did not return (past the n bytes read) and anything past the size.
func (c *Cache) zeroFrames(frames []int32, p0 int64, n int, size int64) {
	for k, fr := range frames {
		pageStart := (p0 + int64(k)) << pageShift
		valid := min(max(int64(n)-int64(k)*PageSize, 0), PageSize)
		valid = min(valid, max(size-pageStart, 0))
		clear(c.frameBytes(fr)[valid:])
	}
}

// indexFill indexes the pages of the fill's segments that have frames
// (the pages past r1 are readahead) and hands them to the policy.
//
// Preconditions: f.mu is held for writing; the segments' pages are absent.
func (f *File) indexFill(fc *fillCtx, r1 int64) {
	c := f.c
	var filled, ahead int64
	install := fc.install[:0]
	for _, s := range fc.segs {
		if s.frames < 0 {
			continue
		}
		for k, fr := range fc.frames[s.frames : s.frames+int(s.p1-s.p0)] {
			f.index.set(s.p0+int64(k), fr)
			install = append(install, placed{page: s.p0 + int64(k), frame: fr})
		}
		filled += s.p1 - s.p0
		if s.p1 > r1 {
			ahead += s.p1 - max(s.p0, r1)
		}
	}
	if len(install) > 0 {
		f.install(install)
	}
	fc.install = install
	c.st.fills.Add(1)
	c.st.fillBytes.Add(uint64(filled * PageSize))
	c.st.readaheadBytes.Add(uint64(ahead * PageSize))
}

// directEnded reports whether r, a fill read through the O_DIRECT
// descriptor, failed only because it was cut short by the host's end of
// file and the file grew before the backend resumed it at the unaligned
// offset where it stopped, which O_DIRECT refuses (uring's doc). The host
// ended at r.Off+r.N when it was read; the fill then reads like one that
// reached the end of file, and its pages past it are zeros. That is what
// the file holds there: whatever grew it (a writeback of other pages,
// which extends the host with a hole) did not write the fill's pages,
// since writes to them wait for the fill.
//
// Fills start at a page and read whole pages, so a resumption the kernel
// may refuse starts inside a page.
func directEnded(r *uring.Request) bool {
	return r.N > 0 && errors.Is(r.Err, syscall.EINVAL) && (r.Off+int64(r.N))&(PageSize-1) != 0
}

// placed is a page given a frame.
type placed struct {
	page  int64
	frame int32
}

// install hands newly indexed pages' frames to f and the policy.
//
// Preconditions: f.mu is held for writing; the pages are in the index.
func (f *File) install(ps []placed) {
	c := f.c
	c.mu.Lock()
	for _, p := range ps {
		c.meta[p.frame] = frame{owner: f, page: p.page}
		c.policy.insert(p.frame, policyKey(f.id, p.page))
	}
	c.mu.Unlock()
	f.resident.Add(int64(len(ps)))
}

// dropFrom removes every page at or past byte offset size and zeros the
// tail of a partial last page. Dirty bytes past size are forgotten.
//
// Preconditions: f.mu is held for writing.
func (f *File) dropFrom(size int64) {
	var gone []int32
	f.index.each(pageEnd(size), 1<<62, func(page int64, fr int32) {
		gone = f.detach(page, fr, gone)
	})
	f.releaseFrames(gone)
	if tail := size & (PageSize - 1); tail != 0 {
		if fr := f.index.get(pageOf(size)); fr >= 0 {
			clear(f.c.frameBytes(fr)[tail:])
			f.clipSpan(fr, 0, uint16(tail))
		}
	}
}

// clipSpan limits frame fr's dirty span to [lo, hi); an emptied span
// makes the page clean.
//
// Preconditions: f.mu is held for writing.
func (f *File) clipSpan(fr int32, lo, hi uint16) {
	m := &f.c.meta[fr]
	if m.state == 0 {
		return
	}
	old := int64(m.hi) - int64(m.lo)
	m.lo, m.hi = max(m.lo, lo), min(m.hi, hi)
	if m.lo >= m.hi {
		f.setClean(m)
		f.dirtyBytes.Add(-old)
		return
	}
	f.dirtyBytes.Add(int64(m.hi) - int64(m.lo) - old)
}

// setClean clears a page's state.
//
// Preconditions: f.mu is held for writing.
func (f *File) setClean(m *frame) {
	if m.state&pageUnsynced != 0 {
		f.unsynced--
	}
	m.state, m.lo, m.hi = 0, 0, 0
}

// detach removes a page from the index and forgets its state; its frame
// is appended to gone for releaseFrames.
//
// Preconditions: f.mu is held for writing; the frame is not pinned.
func (f *File) detach(page int64, fr int32, gone []int32) []int32 {
	f.index.remove(page)
	m := &f.c.meta[fr]
	if m.pins > 0 {
		panic("pagecache: detaching a pinned page")
	}
	if m.state != 0 {
		f.dirtyBytes.Add(-(int64(m.hi) - int64(m.lo)))
		f.setClean(m)
	}
	f.resident.Add(-1)
	return append(gone, fr)
}

// releaseFrames hands detached frames back: to the free list, or to the
// eviction that claimed them.
//
// Preconditions: f.mu is held for writing.
func (f *File) releaseFrames(gone []int32) {
	if len(gone) == 0 {
		return
	}
	c := f.c
	c.mu.Lock()
	for i := len(gone) - 1; i >= 0; i-- { // last first, as pushFree
		fr := gone[i]
		c.meta[fr].owner = nil
		if c.claimed[fr] {
			continue // the claiming eviction frees it
		}
		c.policy.remove(fr)
		c.free = append(c.free, fr)
	}
	c.nfree.Store(int64(len(c.free)))
	c.mu.Unlock()
}

// evictPages tries to evict claimed victims of f, writing back dirty ones
// first (with fdatasync, so nothing is dropped before it is durable). It
// appends the freed frames to freed.
//
// Preconditions: the caller holds no locks.
func (f *File) evictPages(vs []victim, freed []int32) []int32 {
	c := f.c
	// Buffers for the common eviction of a few pages (see Cache.reserve).
	var kbuf, dbuf [8]bool
	kept, wasDirty := kbuf[:0], dbuf[:0]
	if len(vs) > len(kbuf) {
		kept, wasDirty = make([]bool, 0, len(vs)), make([]bool, 0, len(vs))
	}
	kept, wasDirty = kept[:len(vs)], wasDirty[:len(vs)]
	// One hold of mu when every victim is clean, the common case.
	f.mu.Lock()
	needWB := false
	for i, v := range vs {
		if m := &c.meta[v.frame]; m.owner == f && m.state != 0 {
			needWB, wasDirty[i] = true, true
		}
	}
	if needWB {
		f.mu.Unlock()
		first, last := vs[0].page, vs[len(vs)-1].page
		if err := f.Writeback(Range{first << pageShift, (last + 1) << pageShift}, SyncData); err != nil {
			c.st.evictionWritebackErrors.Add(1)
			c.log.Warn("ringfs: writeback before eviction failed; pages kept", "err", err)
		}
		f.mu.Lock()
	}
	dirty := 0
	var gbuf [8]int32
	gone := gbuf[:0]
	for i, v := range vs {
		m := &c.meta[v.frame]
		switch {
		case m.owner != f:
			freed = append(freed, v.frame) // already detached
		case m.state != 0 || m.pins > 0 || f.fillingOverlaps(v.page, v.page+1, false):
			// Dirty, pinned, or written by a write in flight that will
			// copy into it (writeCached).
			kept[i] = true
		default:
			gone = f.detach(v.page, v.frame, gone)
			if wasDirty[i] {
				dirty++
			}
		}
	}
	c.mu.Lock()
	for _, fr := range gone {
		c.meta[fr].owner = nil
	}
	c.finishEviction(vs, kept)
	c.mu.Unlock()
	f.mu.Unlock()
	c.st.evictions.Add(uint64(len(gone)))
	c.st.evictedDirty.Add(uint64(dirty))
	return append(freed, gone...)
}

// Release drops every page of the file. Dirty pages must have been
// written back (EBUSY otherwise, and nothing is dropped). The File is
// unusable afterwards.
func (f *File) Release() error {
	f.wbMu.Lock()
	defer f.wbMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waitIdle()
	if f.released {
		return syscall.EINVAL
	}
	dirty := false
	f.index.each(0, 1<<62, func(_ int64, fr int32) {
		if f.c.meta[fr].state&pageDirty != 0 {
			dirty = true
		}
	})
	if dirty {
		return syscall.EBUSY
	}
	f.releaseLocked()
	return nil
}

// releaseLocked drops every page of the file, dirty or not, and marks it
// released.
//
// Preconditions: f.wbMu and f.mu (for writing) are held; the file is
// idle and not released.
func (f *File) releaseLocked() {
	f.dropFrom(0)
	f.released = true
	f.hostFd.Store(hostFdReleased)
	f.fillFd.Store(hostFdReleased)
	f.closeSyncFd(syncRefused)
	f.c.mu.Lock()
	f.c.files--
	f.c.mu.Unlock()
}

// Truncate sets the host file's size and the cache's: pages past the new
// end are dropped (dirty bytes there are never written), the tail of a
// partial last page is zeroed.
func (f *File) Truncate(size int64) error {
	switch {
	case size < 0:
		return syscall.EINVAL
	case size > MaxFileSize:
		return syscall.EFBIG
	}
	if !f.lockAll() {
		return syscall.EBADF
	}
	defer f.unlockAll()
	err := f.c.ftruncate(f.fd, size)
	if err != nil {
		// The call may have run, only its result failing. If the host
		// has the new size, the bytes past it are gone there: the cache
		// must follow, or it would serve clean pages the host no longer
		// holds and keep a size the host does not have.
		var st unix.Stat_t
		if unix.Fstat(int(f.fd), &st) != nil || st.Size != size {
			return err
		}
	}
	if size < f.size.Load() {
		f.dropFrom(size)
	}
	f.size.Store(size)
	return err
}

// extendHost grows the host file to size if it is shorter.
func (c *Cache) extendHost(fd int32, size int64) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		return err
	}
	if st.Size >= size {
		return nil
	}
	return c.ftruncate(fd, size)
}

// ftruncate sets the host file's size through the backend (so that fault
// injection and recording backends see it).
func (c *Cache) ftruncate(fd int32, size int64) error {
	_, err := uring.Do(c.be, uring.Request{Op: uring.OpFtruncate, Fd: fd, Off: size})
	return err
}

// Allocate runs fallocate(mode, off, length) on the host and brings the
// cache in line: punched or zeroed ranges read as zeros (whole cached
// pages in them are dropped, dirty bytes included; partial pages are
// zeroed in place), and the size grows unless mode has KEEP_SIZE.
func (f *File) Allocate(mode uint32, off, length int64) error {
	switch {
	case off < 0 || length <= 0:
		return syscall.EINVAL
	case off > MaxFileSize-length:
		return syscall.EFBIG // (fallocate's answer to a range past the largest file)
	}
	if !f.lockAll() {
		return syscall.EBADF
	}
	defer f.unlockAll()
	end := off + length
	if _, err := uring.Do(f.c.be, uring.Request{Op: uring.OpFallocate, Fd: f.fd, Off: off, Len: length, Flags: mode}); err != nil {
		// A failed fallocate may have done part of its work (or all of
		// it, only the result failing): the cache must not keep bytes
		// the host may no longer hold, nor the host a size the cache
		// does not have.
		if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
			f.unsureRange(off, min(end, f.size.Load()))
		}
		if mode&unix.FALLOC_FL_KEEP_SIZE == 0 {
			f.trimHost()
		}
		return err
	}
	if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
		size := f.size.Load()
		f.zeroRange(off, min(end, size))
		// Dirty pages dropped at the end of the file may have been the
		// only bytes that would have extended the host to the size.
		if end >= size {
			if err := f.c.extendHost(f.fd, size); err != nil {
				return err
			}
		}
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && end > f.size.Load() {
		f.size.Store(end)
	}
	return nil
}

// unsureRange is for a range the host may have changed under the cache
// (a failed punch or zero): clean cached pages there are dropped, to be
// read again, and pages holding dirty bytes become dirty whole, so that
// writeback puts the cache's copy back over whatever the host did.
//
// Preconditions: f.wbMu and f.mu (for writing) are held.
func (f *File) unsureRange(off, end int64) {
	if off >= end {
		return
	}
	size := f.size.Load()
	var gone []int32
	f.index.each(pageOf(off), pageEnd(end), func(page int64, fr int32) {
		if f.c.meta[fr].state == 0 {
			gone = f.detach(page, fr, gone)
			return
		}
		ps := page << pageShift
		f.markDirty(fr, 0, uint16(min(size-ps, PageSize)))
	})
	f.releaseFrames(gone)
}

// zeroRange makes [off, end) read as zeros in the cache.
//
// Preconditions: f.mu is held for writing.
func (f *File) zeroRange(off, end int64) {
	if off >= end {
		return
	}
	var gone []int32
	f.index.each(pageOf(off), pageEnd(end), func(page int64, fr int32) {
		ps := page << pageShift
		a, b := max(off, ps), min(end, ps+PageSize)
		if a == ps && b == ps+PageSize {
			gone = f.detach(page, fr, gone)
			return
		}
		clear(f.c.frameBytes(fr)[a-ps : b-ps])
		f.c.meta[fr].gen++
	})
	f.releaseFrames(gone)
}
