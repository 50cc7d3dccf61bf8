//go:build linux

package pagecache

// Queries and adjustments the engine needs beyond reads and writes.

// ReadCached copies the cached bytes of [off, off+len(p)) below the size
// into p and reports how many it copied and whether that was all of the
// readable range (a hit). It never does I/O.
func (f *File) ReadCached(p []byte, off int64) (n int, hit bool) {
	if off < 0 {
		return 0, false
	}
	n, _, hit, ok := f.copyHit(p, off)
	if !ok {
		return 0, false
	}
	return n, hit
}

// HoldWriteback keeps writeback of the file, and so any of its pages
// from becoming clean, from running until ReleaseWriteback. It is for
// callers that compare the host's extents with the cached dirty pages
// (SEEK_DATA, SEEK_HOLE): a writeback between the two looks, as an
// eviction in another goroutine runs, would move dirty bytes to the host
// after the host was looked at and clean them before the cache was, and
// the data would be in neither answer.
//
// Preconditions: the caller holds no lock of f.
func (f *File) HoldWriteback() { f.wbMu.Lock() }

// ReleaseWriteback ends HoldWriteback.
func (f *File) ReleaseWriteback() { f.wbMu.Unlock() }

// SetFd replaces the host descriptors the cache uses for the file (when
// the engine reopens the file with more access). The old descriptors stay
// the caller's to close.
func (f *File) SetFd(fd, directFd int32) {
	f.wbMu.Lock()
	defer f.wbMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waitIdle() // their reads use the old descriptors
	f.fd, f.directFd = fd, directFd
	if !f.released {
		f.hostFd.Store(aroundFd(fd, directFd))
		f.fillFd.Store(fillFd(fd, directFd))
	}
	f.closeSyncFd(-1) // reopened from the new descriptor when needed
}

// NextDirty returns the start of the first page at or after byte off
// whose bytes are not yet durable on the host in their latest form (dirty
// pages: the host may still hold a hole there), or -1.
func (f *File) NextDirty(off int64) int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	found := int64(-1)
	f.index.each(pageOf(off), pageEnd(f.size.Load()), func(page int64, fr int32) {
		if found < 0 && f.c.meta[fr].state&pageDirty != 0 {
			found = max(page<<pageShift, off)
		}
	})
	return found
}

// DirtyRunEnd returns the end of the run of consecutive dirty pages that
// contains byte off (off itself when its page is not dirty).
func (f *File) DirtyRunEnd(off int64) int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	page := pageOf(off)
	for {
		fr := f.index.get(page)
		if fr < 0 || f.c.meta[fr].state&pageDirty == 0 {
			break
		}
		page++
	}
	return max(off, page<<pageShift)
}

// HasDirty reports whether any page of the file is dirty.
func (f *File) HasDirty() bool { return f.NextDirty(0) >= 0 }

// Released reports whether Release has run.
func (f *File) Released() bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.released
}

// SetUncached makes the cache stop holding the file's data (true) or
// resume (false). While uncached, reads of missing pages go straight to
// the host and writes cache nothing new; callers drop the pages already
// cached with Invalidate. The engine uses this while the file is mapped by
// its users, so that the mapping and the host are the only copies.
func (f *File) SetUncached(on bool) {
	f.mu.Lock()
	f.uncached = on
	f.mu.Unlock()
}

// Discard drops every page, dirty ones included, and releases the file.
// It is for owners that have already reported the loss (a final writeback
// that failed).
func (f *File) Discard() {
	f.wbMu.Lock()
	defer f.wbMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.waitIdle()
	if f.released {
		return
	}
	f.releaseLocked()
}

// lockAll takes the file's writeback and page locks, for calls that
// change the file's structure; it fails (holding nothing) once the file
// is released.
func (f *File) lockAll() bool {
	f.wbMu.Lock()
	f.mu.Lock()
	f.waitIdle()
	if f.released {
		f.mu.Unlock()
		f.wbMu.Unlock()
		return false
	}
	return true
}

// unlockAll releases what lockAll took.
func (f *File) unlockAll() {
	f.mu.Unlock()
	f.wbMu.Unlock()
}
