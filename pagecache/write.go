//go:build linux

package pagecache

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// WriteFlags modify WriteAt.
type WriteFlags uint8

const (
	// Append writes at the file's size, whatever off says.
	Append WriteFlags = 1 << iota
	// Through writes the bytes to the host before returning; cached pages
	// are updated but not dirtied.
	Through
)

// SyncMode says what Writeback does after writing dirty pages.
type SyncMode uint8

const (
	SyncNone SyncMode = iota // write only
	SyncData                 // then fdatasync
	SyncFull                 // then fsync
)

// WriteAt writes p at off (or at the size with Append) and returns the
// bytes written and the offset used. Without Through, bytes landing in
// cached pages are copied there and marked dirty exactly; whole pages not
// yet cached (and pages that lie past the old end of file) are cached
// without reading the host; the remaining bytes go straight to the host in
// one batch. The size grows to the furthest byte written. When a host
// write fails, the count stops at the first byte not written and nothing
// past it enters the cache.
func (f *File) WriteAt(p []byte, off int64, fl WriteFlags) (int, int64, error) {
	if off < 0 {
		return 0, off, syscall.EINVAL
	}
	fc := getFillCtx()
	defer putFillCtx(fc)
	wbHeld := false // f.wbMu, taken by a write-through write of dirty pages
	defer func() {
		if wbHeld {
			f.wbMu.Unlock()
		}
	}()
	for attempt := 0; ; attempt++ {
		f.mu.Lock()
		if f.released {
			f.mu.Unlock()
			f.c.putFree(fc.frames)
			return 0, off, syscall.EBADF
		}
		if fl&Append != 0 {
			off = f.size.Load()
		}
		if int64(len(p)) > MaxFileSize-off {
			f.mu.Unlock()
			f.c.putFree(fc.frames)
			return 0, off, syscall.EFBIG
		}
		if len(p) == 0 {
			f.mu.Unlock()
			f.c.putFree(fc.frames)
			return 0, off, nil
		}
		if f.waitFills(pageOf(off), pageEnd(off+int64(len(p)))) {
			// A fill of these pages was reading the host: start over.
			f.mu.Unlock()
			attempt--
			continue
		}
		if fl&Through != 0 || !f.cachedWithin(off, int64(len(p))) {
			// The write may reach the host or index pages: host reads
			// with no lock must not overlap it (a write of cached pages
			// within the size changes neither the host nor which pages
			// are missing, and lets them be).
			f.waitArounds()
		}
		if fl&Through != 0 {
			if !wbHeld && f.dirtyIn(pageOf(off), pageEnd(off+int64(len(p)))) {
				// A writeback in flight may be writing older bytes of
				// these pages (it does with mu released): wait until none
				// is, or they could land on the host after this write.
				f.mu.Unlock()
				f.wbMu.Lock()
				wbHeld = true
				attempt--
				continue
			}
			n, err := f.writeThrough(p, off)
			f.mu.Unlock()
			return n, off, err
		}
		need := f.allocatable(p, off)
		if need > len(fc.frames) {
			f.c.mu.Lock()
			fc.frames = f.c.takeFree(fc.frames, need-len(fc.frames))
			f.c.mu.Unlock()
		}
		if need > len(fc.frames) && attempt == 0 {
			// Evicting needs other files' locks: let go of ours first.
			f.mu.Unlock()
			fc.frames = f.c.reserve(fc.frames, need)
			continue
		}
		n, err := f.writeCached(fc, p, off)
		f.mu.Unlock()
		f.c.putFree(fc.frames[fc.used:])
		return n, off, err
	}
}

// cachedWithin reports whether every page of [off, off+n) is cached and
// the range ends within the size: a write there stays in the cache.
//
// Preconditions: f.mu is held.
func (f *File) cachedWithin(off, n int64) bool {
	if off+n > f.size.Load() {
		return false
	}
	for p := pageOf(off); p < pageEnd(off+n); p++ {
		if f.index.get(p) < 0 {
			return false
		}
	}
	return true
}

// dirtyIn reports whether a cached page of [p0, p1) holds bytes not yet
// synced to the host.
//
// Preconditions: f.mu is held.
func (f *File) dirtyIn(p0, p1 int64) bool {
	dirty := false
	f.index.each(p0, p1, func(_ int64, fr int32) {
		dirty = dirty || f.c.meta[fr].state != 0
	})
	return dirty
}

// cacheable reports whether page, absent from the cache, may be cached by
// a write of [off, end) without reading the host: every byte of the page
// below the new size is either written or past the old size (a hole,
// hence zero).
func cacheable(page, off, end, oldSize int64) bool {
	ps := page << pageShift
	pe := min(ps+PageSize, max(oldSize, end))
	return (off <= ps || ps >= oldSize) && end >= pe
}

// allocatable counts the absent pages a write of p at off may cache.
//
// Preconditions: f.mu is held.
func (f *File) allocatable(p []byte, off int64) int {
	if f.uncached {
		return 0
	}
	end, size := off+int64(len(p)), f.size.Load()
	n := 0
	for page := pageOf(off); page < pageEnd(end); page++ {
		if f.index.get(page) < 0 && cacheable(page, off, end, size) {
			n++
		}
	}
	return n
}

// writeCached is the write-back path of WriteAt. It returns with f.mu
// held, but releases it across its host writes when the write ends
// within the file's size (see writeThrough).
//
// Preconditions: f.mu is held for writing; no fill or write in flight
// covers a page of [off, off+len(p)).
func (f *File) writeCached(fc *fillCtx, p []byte, off int64) (int, error) {
	c := f.c
	end, oldSize := off+int64(len(p)), f.size.Load()
	// Plan: pages to cache get frames; the rest of the absent bytes go to
	// the host, adjacent pieces merged into one request.
	for page := pageOf(off); page < pageEnd(end); page++ {
		if f.index.get(page) >= 0 {
			continue
		}
		if fc.used < len(fc.frames) && cacheable(page, off, end, oldSize) {
			fc.install = append(fc.install, placed{page: page, frame: fc.frames[fc.used]})
			fc.used++
			continue
		}
		a, b := max(page<<pageShift, off), min((page+1)<<pageShift, end)
		if n := len(fc.reqs); n > 0 && fc.reqs[n-1].Off+int64(len(fc.reqs[n-1].Buf)) == a {
			r := &fc.reqs[n-1]
			r.Buf = p[r.Off-off : b-off]
			continue
		}
		fc.reqs = append(fc.reqs, uring.Request{Op: uring.OpWrite, Fd: f.fd, Off: a, Buf: p[a-off : b-off], Inline: f.inline})
	}
	limit := end
	var err error
	if len(fc.reqs) > 0 {
		// Inside the file, the host writes run with mu released (see
		// writeThrough); the write's cached pages are kept from eviction
		// meanwhile (evictPages), since only the cache gets their bytes.
		f.hostWrite(off, end, func() { runHost(c.be, fc.reqs) })
		for i := range fc.reqs {
			r := &fc.reqs[i]
			c.st.directWriteBytes.Add(uint64(r.N))
			if r.Err != nil && r.Off+int64(r.N) < limit {
				limit, err = r.Off+int64(r.N), r.Err
			}
		}
	}
	// Apply to the cache the bytes below limit.
	next := 0 // fc.install cursor
	var installed []placed
	var grown int64 // dirty bytes added
	var cp arenaCopy
	for page := pageOf(off); page < pageEnd(min(limit, end)); page++ {
		ps := page << pageShift
		a, b := max(ps, off), min(ps+PageSize, limit)
		fr := f.index.get(page)
		if fr < 0 {
			if next == len(fc.install) || fc.install[next].page != page {
				continue // written to the host
			}
			fr = fc.install[next].frame
			next++
			// A new frame reads zeros where the write does not cover it.
			fb := c.frameBytes(fr)
			clear(fb[:a-ps])
			clear(fb[b-ps:])
			f.index.set(page, fr)
			installed = append(installed, placed{page: page, frame: fr})
		}
		if len(p) <= PageSize {
			copy(c.frameBytes(fr)[a-ps:b-ps], p[a-off:b-off]) // nothing to join
		} else {
			cp.add(c.arena, p, int(fr)*PageSize+int(a-ps), int(a-off), int(b-a))
		}
		if len(installed) > 0 && installed[len(installed)-1].frame == fr {
			continue // dirtied after install below
		}
		grown += f.widenSpan(fr, uint16(a-ps), uint16(b-ps))
	}
	cp.flush(c.arena, p)
	if len(installed) > 0 {
		f.install(installed)
		for _, pl := range installed {
			ps := pl.page << pageShift
			grown += f.widenSpan(pl.frame, uint16(max(ps, off)-ps), uint16(min(ps+PageSize, limit)-ps))
		}
		c.st.writeAllocPages.Add(uint64(len(installed)))
	}
	f.dirtyBytes.Add(grown)
	// Frames were planned in order (install[i] has frames[i]); those of
	// pages past limit were not used and go back with the unplanned ones.
	fc.used = next
	fc.install = fc.install[:0]
	n := int(limit - off)
	if n > 0 && off+int64(n) > oldSize {
		f.size.Store(off + int64(n))
	}
	if err != nil && end > f.size.Load() {
		f.trimHost()
	}
	c.st.writeBytes.Add(uint64(n))
	return n, err
}

// trimHost cuts the host file back to the size after a failed write: host
// pieces of the write past its returned count may have landed past the
// end of file, and a later extension of the file must read zeros there,
// not them. Bytes inside the file past the count stay as the host has
// them (a failed write's bytes past its count are unspecified).
//
// Preconditions: f.mu is held for writing.
func (f *File) trimHost() {
	var st unix.Stat_t
	if unix.Fstat(int(f.fd), &st) != nil {
		return
	}
	if size := f.size.Load(); st.Size > size {
		if err := f.c.ftruncate(f.fd, size); err != nil {
			f.c.log.Warn("ringfs: cannot trim the host file after a failed write", "err", err)
		}
	}
}

// markDirty adds [lo, hi) to frame fr's dirty span.
//
// Preconditions: f.mu is held for writing.
func (f *File) markDirty(fr int32, lo, hi uint16) {
	f.dirtyBytes.Add(f.widenSpan(fr, lo, hi))
}

// widenSpan is markDirty without the count: it returns by how much the
// dirty bytes grew, for the caller to add to f.dirtyBytes. A write of
// many pages adds once, because an atomic add per page would wait each
// time for the stores of that page's copy to reach the cache.
//
// Preconditions: f.mu is held for writing.
func (f *File) widenSpan(fr int32, lo, hi uint16) int64 {
	m := &f.c.meta[fr]
	m.gen++
	if lo >= hi {
		return 0
	}
	old := int64(m.hi) - int64(m.lo)
	if m.state == 0 {
		m.lo, m.hi = lo, hi
		old = 0
	} else {
		m.lo, m.hi = min(m.lo, lo), max(m.hi, hi)
	}
	m.state |= pageDirty
	return int64(m.hi) - int64(m.lo) - old
}

// hostWrite runs io, the host part of a write of [off, end): with f.mu
// released and its pages in f.filling (outside) when the write ends
// within the file's size, with f.mu held when it extends the file.
//
// Preconditions: f.mu is held for writing; no fill or write in flight
// covers a page of [off, end).
func (f *File) hostWrite(off, end int64, io func()) {
	if end <= f.size.Load() {
		f.outside(pageRange{p0: pageOf(off), p1: pageEnd(end), writing: true}, io)
		return
	}
	io()
}

// writeThrough writes p at off to the host, then into cached pages, and
// returns with f.mu held. A write that ends within the file's size runs
// with f.mu released, its pages in f.filling meanwhile so that fills,
// writes and writeback of them wait: hits and writes of other pages go
// on. A write that extends the file keeps f.mu throughout, so that no
// other write is in flight past the size when it sets the size or trims
// the host after a failure.
//
// Preconditions: f.mu is held for writing; no fill or write in flight
// covers a page of [off, off+len(p)).
func (f *File) writeThrough(p []byte, off int64) (int, error) {
	c := f.c
	req := uring.Request{Op: uring.OpWrite, Fd: f.fd, Off: off, Buf: p}
	var n int
	var err error
	f.hostWrite(off, off+int64(len(p)), func() { n, err = uring.Do(c.be, req) })
	f.copyIn(p[:n], off)
	if n > 0 && off+int64(n) > f.size.Load() {
		f.size.Store(off + int64(n))
	}
	if err != nil && off+int64(len(p)) > f.size.Load() {
		f.trimHost()
	}
	if err != nil {
		// The rest may have reached the host in part or in full, only the
		// result failing: cached pages there may now be older than the
		// host. They become dirty, so that reads keep the cache's copy
		// and writeback puts it back over whatever the host did.
		end := min(off+int64(len(p)), f.size.Load())
		for pos := off + int64(n); pos < end; {
			page := pageOf(pos)
			next := min((page+1)<<pageShift, end)
			if fr := f.index.get(page); fr >= 0 {
				ps := page << pageShift
				f.markDirty(fr, uint16(pos-ps), uint16(next-ps))
			}
			pos = next
		}
	}
	c.st.writeBytes.Add(uint64(n))
	c.st.directWriteBytes.Add(uint64(n))
	return n, err
}

// copyIn updates the cached pages that [off, off+len(p)) touches, without
// changing their state.
//
// Preconditions: f.mu is held for writing.
func (f *File) copyIn(p []byte, off int64) {
	if len(p) == 0 {
		return
	}
	var cp arenaCopy
	f.index.each(pageOf(off), pageEnd(off+int64(len(p))), func(page int64, fr int32) {
		ps := page << pageShift
		a, b := max(ps, off), min(ps+PageSize, off+int64(len(p)))
		cp.add(f.c.arena, p, int(fr)*PageSize+int(a-ps), int(a-off), int(b-a))
		f.c.meta[fr].gen++
	})
	cp.flush(f.c.arena, p)
}

// arenaCopy gathers the copies of one write into the arena, so that the
// bytes of consecutive pages held in consecutive frames move in one
// copy. Fills hand consecutive pages consecutive frames (takeFree), so a
// large write into pages read in together is a few large copies, and
// from 1 MiB on Go's copy uses non-temporal stores. go test -run '^$'
// -bench ArenaCopy -count 3 ./pagecache/: 1 MiB into frames took 31–32 µs as one copy
// and 41–44 µs as 256 page copies; followed by a 1 MiB pwrite of the
// same buffer (a Writethrough write), 128–129 µs against 151–160 µs.
//
// Reads gather their copies out of the arena the same way (out set):
// go test -run '^$' -bench 'Hit/bs=128KiB' ./pagecache/ took 2.64–2.65 µs
// a read with joined copies, 2.81 µs with page copies (the code before
// reads joined them); 4 and 16 KiB reads did not change.
type arenaCopy struct {
	at, from, n int  // arena offset, buffer offset and length of the pending copy
	out         bool // copy from the arena into p (a read), not into the arena
}

// add queues the copy between p[from:from+n] and arena[at:at+n], joining
// it to the pending copy when it continues it in both, else copying the
// pending one first.
func (ac *arenaCopy) add(arena, p []byte, at, from, n int) {
	if ac.n > 0 && ac.at+ac.n == at && ac.from+ac.n == from {
		ac.n += n
		return
	}
	ac.flush(arena, p)
	ac.at, ac.from, ac.n = at, from, n
}

// flush copies what is pending.
func (ac *arenaCopy) flush(arena, p []byte) {
	if ac.n == 0 {
		return
	}
	if ac.out {
		copy(p[ac.from:ac.from+ac.n], arena[ac.at:ac.at+ac.n])
	} else {
		copy(arena[ac.at:ac.at+ac.n], p[ac.from:ac.from+ac.n])
	}
	ac.n = 0
}
