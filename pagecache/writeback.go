//go:build linux

package pagecache

import (
	"errors"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// wbRun is one coalesced write: consecutive dirty bytes of the file.
type wbRun struct {
	off, end int64 // file bytes [off, end)
	pages    int   // index of the run's first page in wbCtx.pages
	n        int   // pages in the run
	failed   bool  // a write of the run failed (finishWriteback)
}

// wbPage is a dirty page taken by a writeback.
type wbPage struct {
	page  int64
	frame int32
	gen   uint32
}

// wbCtx is the scratch state of one writeback.
type wbCtx struct {
	fillCtx
	runs  []wbRun
	pages []wbPage
	reqOf []int // for each request, its run (requests may split runs)
	gap   []wbPage
	dio   directIO
}

// directIO says which writes of a writeback go through O_DIRECT.
type directIO struct {
	fd  int32 // O_DIRECT descriptor, or -1: everything buffered
	end int64 // pages wholly below end may go through fd, the rest is buffered
	max int64 // runs longer than max (whole pages) are buffered; 0: no limit
}

// part returns the bytes [a, b) of run that go through the O_DIRECT
// descriptor (the run widened to whole pages, cut at the page holding
// end), or ok false when the whole run is buffered.
func (d directIO) part(run wbRun) (a, b int64, ok bool) {
	a = pageOf(run.off) << pageShift
	w := pageEnd(run.end) << pageShift
	if d.fd < 0 || d.max > 0 && w-a > d.max {
		return 0, 0, false
	}
	b = min(w, d.end&^(PageSize-1))
	return a, b, a < b
}

var wbPool = sync.Pool{New: func() any { return new(wbCtx) }}

// getWbCtx returns an empty context whose writes are all buffered.
func getWbCtx() *wbCtx {
	wc := wbPool.Get().(*wbCtx)
	wc.dio = directIO{fd: -1}
	return wc
}

func putWbCtx(wc *wbCtx) {
	clear(wc.reqs)
	clear(wc.vecs)
	wc.reqs, wc.vecs, wc.frames = wc.reqs[:0], wc.vecs[:0], wc.frames[:0]
	wc.runs, wc.pages, wc.reqOf, wc.gap = wc.runs[:0], wc.pages[:0], wc.reqOf[:0], wc.gap[:0]
	wbPool.Put(wc)
}

// Writeback writes the dirty pages overlapping r to the host, coalescing
// adjacent ones into writes of up to MaxWrite bytes submitted as one
// batch, and then, as mode asks, fdatasyncs or fsyncs the file. A page
// becomes clean only once its write and a later fsync both succeeded; on
// any failure it stays dirty, the error is returned and recorded in Errs,
// and a later Writeback writes it again. Bytes at or past the size are
// never written.
func (f *File) Writeback(r Range, mode SyncMode) error {
	f.wbMu.Lock()
	defer f.wbMu.Unlock()
	dio := directIO{fd: f.directFd, end: f.size.Load()}
	if dio.fd < 0 && mode != SyncNone {
		dio.fd, dio.end = f.openSyncFd()
		dio.max = f.c.directWB
	}
	f.mu.Lock()
	if f.released {
		f.mu.Unlock()
		return syscall.EBADF
	}
	// A write whose host part is in flight is about to copy its bytes
	// into pages that may be dirty: collect them once it has.
	f.waitWrites(pageOf(r.Start), pageEnd(r.End))
	wc := f.collectDirty(pageOf(r.Start), pageEnd(r.End), dio)
	f.mu.Unlock()
	err := f.submitWriteback(wc)
	f.mu.Lock()
	f.finishWriteback(wc)
	if err != nil && wc.dio.fd >= 0 && wc.dio.fd == f.syncFd && f.refusedDirect(wc) {
		// The file takes no O_DIRECT writes: write what failed, buffered.
		f.closeSyncFd(syncRefused)
		putWbCtx(wc)
		wc = f.collectDirty(pageOf(r.Start), pageEnd(r.End), directIO{fd: -1})
		f.mu.Unlock()
		err = f.submitWriteback(wc)
		f.mu.Lock()
		f.finishWriteback(wc)
	}
	f.mu.Unlock()
	putWbCtx(wc)
	if mode != SyncNone {
		if serr := f.sync(mode); err == nil {
			err = serr
		}
	}
	if err != nil {
		f.Errs.Record(err)
		f.c.st.writebackErrors.Add(1)
	}
	return err
}

// writebackLocked is Writeback without fsync for callers that hold the
// file's locks throughout (direct I/O, invalidation).
//
// Preconditions: f.wbMu and f.mu (for writing) are held.
func (f *File) writebackLocked(r Range) error {
	wc := f.collectDirty(pageOf(r.Start), pageEnd(r.End), directIO{fd: f.directFd, end: f.size.Load()})
	err := f.submitWriteback(wc)
	f.finishWriteback(wc)
	putWbCtx(wc)
	if err != nil {
		f.Errs.Record(err)
		f.c.st.writebackErrors.Add(1)
	}
	return err
}

// collectDirty gathers the dirty pages of [p0, p1) into runs and pins
// their frames. Runs separated by at most Options.MergeGap bytes of
// cached pages are joined, the clean pages between them included, except
// on tmpfs and ramfs (f.inline): there a write is a copy in memory, and
// copying the clean bytes costs more than the system call it saves. dio
// says which runs will be written with O_DIRECT (widened to whole pages).
//
// Preconditions: f.wbMu is held; f.mu is held for writing.
func (f *File) collectDirty(p0, p1 int64, dio directIO) *wbCtx {
	c := f.c
	mergeGap := c.mergeGap
	if f.inline {
		mergeGap = 0
	}
	wc := getWbCtx()
	wc.dio = dio
	size := f.size.Load()
	f.index.each(p0, p1, func(page int64, fr int32) {
		m := &c.meta[fr]
		ps := page << pageShift
		var run *wbRun
		if n := len(wc.runs); n > 0 {
			run = &wc.runs[n-1]
		}
		if m.state&pageDirty == 0 {
			// A clean page right after the last run (or after clean pages
			// that are) may join it to the next dirty page.
			if run != nil && mergeGap > 0 && ps < size &&
				pageEnd(run.end) == page-int64(len(wc.gap)) && ps-run.end < mergeGap {
				wc.gap = append(wc.gap, wbPage{page: page, frame: fr})
			} else {
				wc.gap = wc.gap[:0]
			}
			return
		}
		a, b := ps+int64(m.lo), min(ps+int64(m.hi), size)
		if a >= b {
			wc.gap = wc.gap[:0]
			return
		}
		joins := run != nil && b-run.off <= c.maxWrite &&
			(run.end == a || a-run.end <= mergeGap && pageEnd(run.end) == page-int64(len(wc.gap)))
		if !joins {
			wc.gap = wc.gap[:0]
			m.pins++
			wc.pages = append(wc.pages, wbPage{page: page, frame: fr, gen: m.gen})
			wc.runs = append(wc.runs, wbRun{off: a, end: b, pages: len(wc.pages) - 1, n: 1})
			return
		}
		// The clean bytes joined become dirty: the write puts them at risk
		// (a failed write or fsync may leave anything on the host there)
		// and only the cache's copy can restore them, so they must stay
		// dirty until the fsync covering them succeeds, like the rest.
		if a > run.end {
			c.st.writebackMergedBytes.Add(uint64(a - run.end))
			last := &wc.pages[len(wc.pages)-1]
			if in := run.end - last.page<<pageShift; in < PageSize {
				f.markDirty(last.frame, uint16(in), PageSize)
				last.gen = c.meta[last.frame].gen
			}
			for i := range wc.gap {
				g := &wc.gap[i]
				f.markDirty(g.frame, 0, PageSize)
				g.gen = c.meta[g.frame].gen
				c.meta[g.frame].pins++
			}
			if a > ps {
				f.markDirty(fr, 0, uint16(a-ps))
			}
		}
		wc.pages = append(wc.pages, wc.gap...)
		m.pins++
		wc.pages = append(wc.pages, wbPage{page: page, frame: fr, gen: m.gen})
		run.end = b
		run.n += len(wc.gap) + 1
		wc.gap = wc.gap[:0]
	})
	wc.gap = wc.gap[:0]
	f.widenDirect(wc)
	return wc
}

// widenDirect makes dirty the clean bytes an O_DIRECT write of a run
// covers around its dirty bytes (the rest of its first and last pages):
// like joined bytes, they are at risk once written, and a later writeback
// of the page may be buffered and write only its dirty span.
//
// Preconditions: f.mu is held for writing.
func (f *File) widenDirect(wc *wbCtx) {
	for _, run := range wc.runs {
		a, b, ok := wc.dio.part(run)
		if !ok {
			continue
		}
		if a < run.off {
			p := &wc.pages[run.pages]
			f.markDirty(p.frame, 0, uint16(run.off-a))
			p.gen = f.c.meta[p.frame].gen
		}
		if run.end < b {
			p := &wc.pages[run.pages+run.n-1]
			f.markDirty(p.frame, uint16(run.end-p.page<<pageShift), PageSize)
			p.gen = f.c.meta[p.frame].gen
		}
	}
}

// syncRefused marks a file whose O_DIRECT descriptor could not be opened
// or was refused by the filesystem.
const syncRefused = -2

// openSyncFd returns the file's O_DIRECT descriptor for durable
// writebacks, opening it on first use, or -1 (Options.DirectWriteback
// off, or the file refuses O_DIRECT), and the offset below which it may
// be used: the host file's size (or the cache's, if smaller). Writes that
// extend the host file stay buffered, because a buffered extension zeroes
// whatever a mapping left past the old end in the kernel's copy of the
// last page, and an O_DIRECT one leaves it to become file data.
//
// Preconditions: f.wbMu is held.
func (f *File) openSyncFd() (int32, int64) {
	if f.c.directWB <= 0 || f.syncFd == syncRefused {
		return -1, 0
	}
	if f.syncFd < 0 {
		path := "/proc/self/fd/" + strconv.Itoa(int(f.fd))
		for {
			fd, err := unix.Open(path, unix.O_WRONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
			if err == syscall.EINTR {
				continue
			}
			if err != nil {
				f.c.log.Info("ringfs: no O_DIRECT descriptor for writeback; it stays buffered", "err", err)
				f.syncFd = syncRefused
				return -1, 0
			}
			f.syncFd = int32(fd)
			break
		}
	}
	var st unix.Stat_t
	for {
		err := unix.Fstat(int(f.fd), &st)
		if err == nil {
			return f.syncFd, min(st.Size, f.size.Load())
		}
		if err != syscall.EINTR {
			return -1, 0 // the buffered writes will report what is wrong
		}
	}
}

// closeSyncFd closes the O_DIRECT writeback descriptor, if open, and
// leaves syncFd at next (-1: open again when needed; syncRefused).
//
// Preconditions: f.wbMu is held.
func (f *File) closeSyncFd(next int32) {
	if f.syncFd >= 0 {
		unix.Close(int(f.syncFd))
	}
	f.syncFd = next
}

// refusedDirect reports whether a write of wc through its O_DIRECT
// descriptor failed with EINVAL: the filesystem does not take O_DIRECT
// transfers of whole pages.
func (f *File) refusedDirect(wc *wbCtx) bool {
	for i := range wc.reqs {
		if wc.reqs[i].Fd == wc.dio.fd && errors.Is(wc.reqs[i].Err, syscall.EINVAL) {
			return true
		}
	}
	return false
}

// submitWriteback writes the runs, at most maxBatch requests per submit,
// and returns the first error.
func (f *File) submitWriteback(wc *wbCtx) error {
	c := f.c
	if len(wc.runs) == 0 {
		return nil
	}
	for i := range wc.runs {
		f.runRequests(wc, i)
	}
	var first error
	for lo := 0; lo < len(wc.reqs); lo += maxBatch {
		batch := wc.reqs[lo:min(lo+maxBatch, len(wc.reqs))]
		c.be.Submit(batch)
		c.st.writebackBatches.Add(1)
		c.st.writebackSQEs.Add(uint64(len(batch)))
		for i := range batch {
			c.st.writebackBytes.Add(uint64(batch[i].N))
			if wc.dio.fd >= 0 && batch[i].Fd == wc.dio.fd {
				c.st.writebackDirectBytes.Add(uint64(batch[i].N))
			}
			if batch[i].Err != nil && first == nil {
				first = batch[i].Err
			}
		}
	}
	return first
}

// runRequests appends the requests that write run i: its O_DIRECT part
// (wc.dio.part), and the rest, exactly its dirty bytes, buffered.
func (f *File) runRequests(wc *wbCtx, i int) {
	run := wc.runs[i]
	frames := wc.fillCtx.frames[:0]
	for _, p := range wc.pages[run.pages : run.pages+run.n] {
		frames = append(frames, p.frame)
	}
	wc.fillCtx.frames = frames
	firstPage := pageOf(run.off)
	a, b, ok := wc.dio.part(run)
	if !ok {
		wc.reqs = append(wc.reqs, f.framesRequest(wc, f.fd, run.off, run.end, firstPage, frames))
		wc.reqOf = append(wc.reqOf, i)
		return
	}
	wc.reqs = append(wc.reqs, f.framesRequest(wc, wc.dio.fd, a, b, firstPage, frames))
	wc.reqOf = append(wc.reqOf, i)
	if tail := max(b, run.off); tail < run.end {
		wc.reqs = append(wc.reqs, f.framesRequest(wc, f.fd, tail, run.end, firstPage, frames))
		wc.reqOf = append(wc.reqOf, i)
	}
}

// framesRequest builds a write of file bytes [a, b) from the frames of
// consecutive pages starting at firstPage.
func (f *File) framesRequest(wc *wbCtx, fd int32, a, b, firstPage int64, frames []int32) uring.Request {
	sub := frames[pageOf(a)-firstPage : pageEnd(b)-firstPage]
	return f.transfer(&wc.fillCtx, true, fd, a, sub, int(a&(PageSize-1)), int(b-a))
}

// finishWriteback unpins the pages and moves those whose runs were
// written in full, and not written to since, from dirty to unsynced.
//
// Preconditions: f.mu is held for writing.
func (f *File) finishWriteback(wc *wbCtx) {
	c := f.c
	for i := range wc.reqs {
		if wc.reqs[i].Err != nil {
			wc.runs[wc.reqOf[i]].failed = true
		}
	}
	for _, run := range wc.runs {
		for _, p := range wc.pages[run.pages : run.pages+run.n] {
			m := &c.meta[p.frame]
			m.pins--
			if run.failed || m.gen != p.gen {
				continue
			}
			if m.state&pageUnsynced == 0 {
				f.unsynced++
			}
			m.state = pageUnsynced
		}
	}
}

// sync fsyncs or fdatasyncs the host file. On success every unsynced
// page is clean; on failure every unsynced page is dirty again, so that
// the next Writeback writes it once more.
//
// Preconditions: f.wbMu is held.
func (f *File) sync(mode SyncMode) error {
	req := uring.Request{Op: uring.OpFsync, Fd: f.fd}
	if mode == SyncData {
		req.Flags = uring.FsyncDatasync
	}
	_, err := uring.Do(f.c.be, req)
	f.c.st.syncs.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.unsynced == 0 {
		return err
	}
	f.index.each(0, 1<<62, func(_ int64, fr int32) {
		m := &f.c.meta[fr]
		if m.state&pageUnsynced == 0 {
			return
		}
		if err != nil {
			m.state = pageDirty
			f.unsynced--
			return
		}
		if m.state&pageDirty != 0 {
			m.state = pageDirty // rewritten since: still dirty
			f.unsynced--
			return
		}
		f.dirtyBytes.Add(-(int64(m.hi) - int64(m.lo)))
		f.setClean(m)
	})
	return err
}

// DirectWrite writes p at off (at the size with Append) through the
// O_DIRECT descriptor directFd, after writing back and dropping the
// cached pages it covers, so that the cache never holds stale bytes. The
// caller supplies an aligned buffer and offset.
func (f *File) DirectWrite(p []byte, off int64, fl WriteFlags, directFd int32) (int, int64, error) {
	if !f.lockAll() {
		return 0, off, syscall.EBADF
	}
	defer f.unlockAll()
	if fl&Append != 0 {
		off = f.size.Load()
	}
	switch {
	case off < 0 || int64(len(p)) > (1<<63-1)-off:
		return 0, off, syscall.EINVAL
	case int64(len(p)) > MaxFileSize-off:
		return 0, off, syscall.EFBIG
	}
	r := Range{off, off + int64(len(p))}
	if err := f.dropRange(r); err != nil {
		return 0, off, err
	}
	n, err := uring.Do(f.c.be, uring.Request{Op: uring.OpWrite, Fd: directFd, Off: off, Buf: p})
	if n > 0 && off+int64(n) > f.size.Load() {
		f.size.Store(off + int64(n))
	}
	f.c.st.directWriteBytes.Add(uint64(n))
	return n, off, err
}

// Invalidate writes back the dirty pages overlapping r and drops every
// cached page there, so later reads come from the host.
func (f *File) Invalidate(r Range) error {
	if !f.lockAll() {
		return syscall.EBADF
	}
	defer f.unlockAll()
	return f.dropRange(r)
}

// dropRange writes back and drops the pages overlapping r.
//
// Preconditions: f.wbMu and f.mu (for writing) are held.
func (f *File) dropRange(r Range) error {
	if err := f.writebackLocked(r); err != nil {
		return err
	}
	var gone []int32
	f.index.each(pageOf(r.Start), pageEnd(r.End), func(page int64, fr int32) {
		gone = f.detach(page, fr, gone)
	})
	f.releaseFrames(gone)
	return nil
}

// FlushRange writes back (without fsync) the dirty pages overlapping r,
// so that a direct read of the host sees them. A file with no dirty or
// unsynced bytes (the usual case for a file read with O_DIRECT) returns
// at once, taking no lock: a write that returned before the call counted
// its bytes in dirtyBytes, which only a writeback ending in an fsync (or
// dropping the pages) takes back.
func (f *File) FlushRange(r Range) error {
	if f.dirtyBytes.Load() == 0 {
		if f.hostFd.Load() == hostFdReleased {
			return syscall.EBADF
		}
		return nil
	}
	if !f.lockAll() {
		return syscall.EBADF
	}
	defer f.unlockAll()
	return f.writebackLocked(r)
}
