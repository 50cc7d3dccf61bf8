//go:build linux

package engine

import (
	"errors"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/hostmap"
	"github.com/ringfs/ringfs/pagecache"
	"github.com/ringfs/ringfs/uring"
)

// The I/O paths of an inode. Each returns which path served it, for the
// stats.

// read serves a read of p at off for handle f.
func (ino *inode) read(f *File, p []byte, off int64, flags int) (int, ioPath, error) {
	switch {
	case f.direct:
		n, err := ino.readDirect(f, p, off, flags)
		return n, pathDirect, err
	case ino.cf != nil && flags&unix.RWF_NOWAIT != 0:
		n, hit := ino.cf.ReadCached(p, off)
		if !hit {
			return n, pathHit, syscall.EAGAIN
		}
		return n, pathHit, nil
	case ino.cf != nil:
		n, hit, err := ino.cf.ReadAtHit(p, off)
		if hit {
			return n, pathHit, err
		}
		return n, pathFill, err
	case ino.e.opts.HostMmap && ino.e.opts.Mode != Shared:
		n, err := ino.mmapRead(p, off)
		return n, pathMmap, err
	}
	// A plain pread: the kernel serves a buffered read inside the call
	// whether it comes from the ring or not, and the ring's queueing and
	// waking cost more than the call (BenchmarkSharedRead).
	n, err := uring.Do(ino.e.be, uring.Request{Op: uring.OpRead, Fd: f.fd, Buf: p, Off: off, Flags: uint32(flags)})
	return n, pathHost, err
}

// write serves a write of p at off (at the end of file when atEnd) and
// returns the bytes written and the offset used.
func (ino *inode) write(f *File, p []byte, off int64, flags int, atEnd bool) (int, int64, ioPath, error) {
	switch {
	case f.direct:
		n, at, err := ino.writeDirect(f, p, off, flags, atEnd)
		return n, at, pathDirect, err
	case ino.cf != nil:
		var fl pagecache.WriteFlags
		if atEnd {
			fl |= pagecache.Append
		}
		if ino.e.opts.Mode == Writethrough {
			fl |= pagecache.Through
		}
		n, at, err := ino.cf.WriteAt(p, off, fl)
		return n, at, pathCache, err
	case ino.e.opts.HostMmap && ino.e.opts.Mode != Shared:
		n, at, err := ino.mmapWrite(p, off, atEnd)
		return n, at, pathMmap, err
	}
	rw := uint32(flags) &^ (unix.RWF_SYNC | unix.RWF_DSYNC) // durability is handled by the caller
	n, at, err := ino.hostWrite(f.fd, p, off, rw, atEnd)
	return n, at, pathHost, err
}

// hostWrite writes p to the host at off, or at the end of file when
// atEnd (RWF_APPEND), and returns the bytes written and the offset used.
// An append's offset is the kernel's choice, read back from the size the
// write left (a write appended by another process in between moves it).
func (ino *inode) hostWrite(fd int32, p []byte, off int64, rw uint32, atEnd bool) (int, int64, error) {
	if atEnd {
		rw |= unix.RWF_APPEND
	}
	n, err := ino.hostIO(uring.OpWrite, fd, p, off, rw)
	if atEnd && n > 0 {
		var st unix.Stat_t
		if serr := fstat(fd, &st); serr == nil {
			off = st.Size - int64(n)
		}
	}
	return n, off, err
}

// reqPool recycles single-request arrays, which escape to the heap when
// submitted.
var reqPool = sync.Pool{New: func() any { return new([1]uring.Request) }}

// hostIO runs one read or write of the file on the host through the
// backend: a write as a plain syscall (uring.Do: a lone buffered write
// would go to a kernel worker thread from the ring), a read through the
// ring. Reads come here only on O_DIRECT descriptors, where direct reads
// of concurrent callers share enters and wait for the device together
// (buffered host reads are plain syscalls, see inode.read); on tmpfs and
// ramfs (inode.inline) they are plain syscalls too.
func (ino *inode) hostIO(op uring.Op, fd int32, p []byte, off int64, flags uint32) (int, error) {
	e := ino.e
	if op.IsWrite() || ino.inline {
		return uring.Do(e.be, uring.Request{Op: op, Fd: fd, Buf: p, Off: off, Flags: flags})
	}
	r := reqPool.Get().(*[1]uring.Request)
	r[0] = uring.Request{Op: op, Fd: fd, Buf: p, Off: off, Flags: flags}
	if err := e.be.Submit(r[:]); err != nil {
		r[0] = uring.Request{}
		reqPool.Put(r)
		return 0, err
	}
	n, err := r[0].N, r[0].Err
	r[0] = uring.Request{}
	reqPool.Put(r)
	return n, err
}

// directAlign is the alignment the engine gives O_DIRECT transfers:
// buffers that are not aligned to it are bounced, and bounced reads cover
// whole aligned blocks of it. Offsets and lengths of direct writes are
// the caller's and need only the host's alignment (File.dioAlign). A
// transfer that needs no bounce is pagecache.DirectAligned.
const directAlign = pagecache.PageSize

// alignedBuf returns n bytes aligned to directAlign.
func alignedBuf(n int) []byte {
	b := make([]byte, n+directAlign)
	skip := int(-uintptr(unsafe.Pointer(&b[0])) & (directAlign - 1))
	return b[skip : skip+n : skip+n]
}

// readDirect serves a read on an O_DIRECT handle: dirty cached bytes in
// the range are written back first, then the host is read directly,
// through an aligned bounce buffer when p or off is not aligned.
func (ino *inode) readDirect(f *File, p []byte, off int64, flags int) (int, error) {
	size := ino.cachedSize()
	if ino.cf != nil {
		if err := ino.cf.FlushRange(pagecache.Range{Start: off, End: off + int64(len(p))}); err != nil {
			return 0, err
		}
	}
	n, err := ino.directHostRead(f, p, off, flags)
	n, err = ino.directReadRest(f, p, n, off, flags, err)
	return ino.clampDirect(p, n, off, err, size), err
}

// cachedSize returns the file's cached size, or the largest int64 when
// the file is not cached.
func (ino *inode) cachedSize() int64 {
	if ino.cf == nil {
		return 1<<63 - 1
	}
	return ino.cf.Size()
}

// directHostRead reads p at off from the host through the handle's
// O_DIRECT descriptor, bouncing through an aligned buffer when p or off
// is not aligned.
func (ino *inode) directHostRead(f *File, p []byte, off int64, flags int) (int, error) {
	if pagecache.DirectAligned(p, off) {
		return ino.hostIO(uring.OpRead, f.fd, p, off, uint32(flags))
	}
	a0 := off &^ (directAlign - 1)
	a1 := (off + int64(len(p)) + directAlign - 1) &^ (directAlign - 1)
	buf := alignedBuf(int(a1 - a0))
	n, err := ino.hostIO(uring.OpRead, f.fd, buf, a0, uint32(flags))
	// Cut short at the host's end and refused when resumed there (see
	// directReadRest): read the rest again from the aligned offset at or
	// below where it stopped. This must happen here, not only in
	// directReadRest: the end may lie below off, so that none of the
	// bytes read so far are p's. Bounded: the file may keep moving.
	for try := 0; try < directRetries && n > 0 && n < len(buf) && errors.Is(err, syscall.EINVAL); try++ {
		at := n &^ (directAlign - 1)
		var m int
		m, err = ino.hostIO(uring.OpRead, f.fd, buf[at:], a0+int64(at), uint32(flags))
		n = at + m
	}
	got := max(min(n-int(off-a0), len(p)), 0)
	copy(p[:got], buf[off-a0:])
	return got, err
}

// directRetries bounds the aligned re-reads of one bounced direct read
// whose host end keeps moving.
const directRetries = 4

// directReadRest finishes a direct read that came back with n bytes and
// EINVAL. The backend resumes a short read where it stopped; a direct
// read stops short at the host's end of file, at an offset that need not
// be aligned, and when the file grew meanwhile (this engine's writeback,
// another writer) the resumed read is refused as unaligned. The rest is
// read again from an aligned offset.
func (ino *inode) directReadRest(f *File, p []byte, n int, off int64, flags int, err error) (int, error) {
	for n > 0 && n < len(p) && errors.Is(err, syscall.EINVAL) {
		var m int
		m, err = ino.directHostRead(f, p[n:], off+int64(n), flags)
		n += m
		if m == 0 {
			break
		}
	}
	return n, err
}

// clampDirect fits the count n of a direct read of p at off to the
// engine's size: the host may hold bytes past it (after a failed write),
// and it may end before it, when the cache extended the file and has not
// written the end back; the bytes between the host's end and the
// engine's are a hole (the range's dirty pages were flushed before the
// read), so they read as zeros. size0 is the cached size from before the
// flush (cachedSize): a write that extended the file after the flush
// reached only the cache, and its bytes are not a hole, so the read ends
// at the smaller of the two sizes, as if it ran before that write.
func (ino *inode) clampDirect(p []byte, n int, off int64, err error, size0 int64) int {
	if ino.cf == nil {
		return n
	}
	want := int(max(0, min(int64(len(p)), min(size0, ino.cf.Size())-off)))
	if n < want && err == nil {
		clear(p[n:want])
		return want
	}
	return min(n, want)
}

// writeDirect serves a write on an O_DIRECT handle: cached pages in the
// range are written back and dropped, then the host is written directly.
// An unaligned buffer is bounced; an unaligned offset or length fails
// with EINVAL (directMisaligned).
func (ino *inode) writeDirect(f *File, p []byte, off int64, flags int, atEnd bool) (int, int64, error) {
	if f.directMisaligned(off, len(p), atEnd) {
		return 0, off, syscall.EINVAL
	}
	buf := p
	if uintptr(unsafe.Pointer(unsafe.SliceData(p)))%directAlign != 0 {
		buf = alignedBuf(len(p))
		copy(buf, p)
	}
	if ino.cf != nil {
		var fl pagecache.WriteFlags
		if atEnd {
			fl = pagecache.Append
		}
		return ino.cf.DirectWrite(buf, off, fl, f.fd)
	}
	rw := uint32(flags) &^ (unix.RWF_SYNC | unix.RWF_DSYNC)
	if ino.e.opts.HostMmap && ino.e.opts.Mode != Shared {
		// The engine keeps the size: serialize with mmapWrite and
		// truncate, and grow the size by what was written.
		ino.mu.Lock()
		defer ino.mu.Unlock()
		if atEnd {
			off = ino.mmSize.Load()
		}
		n, err := ino.hostIO(uring.OpWrite, f.fd, buf, off, rw)
		if n > 0 && off+int64(n) > ino.mmSize.Load() {
			ino.mmSize.Store(off + int64(n))
		}
		return n, off, err
	}
	return ino.hostWrite(f.fd, buf, off, rw, atEnd)
}

// directMisaligned reports whether a direct write of n bytes at off (at
// the end of file when atEnd, where the host picks the offset) breaks the
// host's alignment, which is then refused before anything is written:
// the kernel checks it one extent of the file at a time, so a write
// spanning extents whose unaligned tail it refuses has already written
// the extents before it, and fails with EINVAL all the same.
func (f *File) directMisaligned(off int64, n int, atEnd bool) bool {
	a := f.dioAlign
	return a > 1 && ((!atEnd && off%a != 0) || int64(n)%a != 0)
}

// dioOffsetAlign returns the alignment of file offsets and lengths the
// host asks of direct I/O on fd (statx STATX_DIOALIGN, Linux 6.1), or 0
// when it does not say.
func dioOffsetAlign(fd int) int64 {
	var stx unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx); err != nil || stx.Mask&unix.STATX_DIOALIGN == 0 {
		return 0
	}
	return int64(stx.Dio_offset_align)
}

// mmapRead reads through the host mapping, clamped to the size.
func (ino *inode) mmapRead(p []byte, off int64) (int, error) {
	end := min(off+int64(len(p)), ino.mmSize.Load())
	if off >= end {
		return 0, nil
	}
	hm, err := ino.mapRefs(end)
	if err != nil {
		return 0, err
	}
	n, err := hm.ReadAt(p[:end-off], off)
	if errors.Is(err, syscall.EFAULT) {
		// A Truncate may have shrunk the host under the copy: then the
		// size it set (read under the lock it holds) ends the read. If
		// the file has grown back past the fault since, the rest is read
		// holding that lock, so that no Truncate can shrink it again
		// meanwhile: a fault then is not the engine's doing.
		ino.mu.Lock()
		defer ino.mu.Unlock()
		size := ino.mmSize.Load()
		if off+int64(n) >= size {
			return int(max(min(int64(n), size-off), 0)), nil
		}
		var m int
		m, err = hm.ReadAt(p[n:min(end, size)-off], off+int64(n))
		n += m
	}
	return n, err
}

// mmapWrite writes through the host mapping, growing the host file first
// when the write extends it.
func (ino *inode) mmapWrite(p []byte, off int64, atEnd bool) (int, int64, error) {
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if atEnd {
		off = ino.mmSize.Load()
	}
	end := off + int64(len(p))
	// cutBack undoes a growth of the host when the write fails: the host
	// may have grown all the same; it is cut back to the size served.
	cutBack := func() {
		var st unix.Stat_t
		if fstat(ino.fd, &st) == nil && st.Size > ino.mmSize.Load() {
			ino.e.ftruncate(ino.fd, ino.mmSize.Load())
		}
	}
	grown := false
	if end > ino.mmSize.Load() {
		if end > maxMmapSize {
			return 0, off, syscall.EFBIG // an append: writes at an offset were cut to fit
		}
		if err := ino.e.ftruncate(ino.fd, end); err != nil {
			cutBack()
			return 0, off, err
		}
		grown = true
	}
	hm, err := ino.mapRefsLocked(end)
	if err != nil {
		if grown {
			cutBack()
		}
		return 0, off, err
	}
	if grown {
		ino.mmSize.Store(end)
	}
	n, err := hm.WriteAt(p, off)
	return n, off, err
}

// mapRefs makes sure the mapper holds references on [0, end) and returns
// it.
func (ino *inode) mapRefs(end int64) (*hostmap.Mapper, error) {
	if end <= ino.mmRef.Load() {
		return ino.hm, nil
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	return ino.mapRefsLocked(end)
}

// Preconditions: ino.mu is held.
func (ino *inode) mapRefsLocked(end int64) (*hostmap.Mapper, error) {
	if ino.hm == nil {
		ino.hm = hostmap.NewMapperCounting(int(ino.fd), &ino.e.mmStats)
	}
	have := ino.mmRef.Load()
	if end <= have {
		return ino.hm, nil
	}
	want := (end + hostmap.ChunkSize - 1) &^ (hostmap.ChunkSize - 1)
	if err := ino.hm.IncRef(hostmap.Range{Start: have, End: want}); err != nil {
		return nil, err
	}
	ino.mmRef.Store(want)
	return ino.hm, nil
}

// ftruncate sets a host file's size through the backend (so that fault
// injection and recording backends see it).
func (e *Engine) ftruncate(fd int32, size int64) error {
	_, err := uring.Do(e.be, uring.Request{Op: uring.OpFtruncate, Fd: fd, Off: size})
	return err
}

// syncRange makes [a, b) durable (O_SYNC/O_DSYNC writes).
func (ino *inode) syncRange(a, b int64, mode pagecache.SyncMode) error {
	if ino.cf != nil {
		return ino.cf.Writeback(pagecache.Range{Start: a, End: b}, mode)
	}
	return ino.sync(mode)
}

// truncate sets the size, through the cache when there is one.
func (ino *inode) truncate(hfd int32, size int64) error {
	switch {
	case ino.cf != nil:
		return ino.cf.Truncate(size)
	case ino.e.opts.HostMmap && ino.e.opts.Mode != Shared:
		if size > maxMmapSize {
			return syscall.EFBIG
		}
		ino.mu.Lock()
		defer ino.mu.Unlock()
		err := ino.e.ftruncate(ino.fd, size)
		if err != nil {
			// The call may have run, only its result failing: when the
			// host has the new size, the engine must serve it too.
			var st unix.Stat_t
			if fstat(ino.fd, &st) != nil || st.Size != size {
				return err
			}
		}
		ino.mmSize.Store(size)
		return err
	}
	return ino.e.ftruncate(hfd, size)
}

// allocate runs fallocate, through the cache when there is one.
func (ino *inode) allocate(hfd int32, mode uint32, off, length int64) error {
	if ino.cf != nil {
		return ino.cf.Allocate(mode, off, length)
	}
	mm := ino.e.opts.HostMmap && ino.e.opts.Mode != Shared
	if mm {
		if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && off+length > maxMmapSize {
			return syscall.EFBIG
		}
		ino.mu.Lock()
		defer ino.mu.Unlock()
	}
	if _, err := uring.Do(ino.e.be, uring.Request{Op: uring.OpFallocate, Fd: hfd, Off: off, Len: length, Flags: mode}); err != nil {
		if mm && mode&unix.FALLOC_FL_KEEP_SIZE == 0 {
			// A failed fallocate may still have grown the host file: cut
			// it back to the size the engine serves.
			var st unix.Stat_t
			if fstat(ino.fd, &st) == nil && st.Size > ino.mmSize.Load() {
				ino.e.ftruncate(ino.fd, ino.mmSize.Load())
			}
		}
		return err
	}
	if mm && mode&unix.FALLOC_FL_KEEP_SIZE == 0 && off+length > ino.mmSize.Load() {
		ino.mmSize.Store(off + length)
	}
	return nil
}

// clearPrivileges drops setuid, and setgid when group-execute is set,
// after the file was written or allocated (as the kernel does for
// unprivileged writers; ringfs does it for every writer, since cached
// writes reach the host later).
func (ino *inode) clearPrivileges() {
	mode := ino.mode.Load()
	kill := uint32(0)
	if mode&unix.S_ISUID != 0 {
		kill |= unix.S_ISUID
	}
	if mode&unix.S_ISGID != 0 && mode&unix.S_IXGRP != 0 {
		kill |= unix.S_ISGID
	}
	if kill == 0 {
		return
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	mode = ino.mode.Load()
	if err := unix.Fchmod(int(ino.fd), (mode&^kill)&0o7777); err != nil {
		ino.e.log.Warn("ringfs: cannot clear setuid/setgid", "path", ino.path, "err", err)
		return
	}
	ino.mode.Store(mode &^ kill)
}

// seekExtent answers SEEK_DATA and SEEK_HOLE from the host's extents
// merged with pages that hold data only in the cache. No writeback of the
// file runs between the two looks (pagecache File.HoldWriteback).
func (f *File) seekExtent(offset int64, whence int) (int64, error) {
	if offset < 0 {
		return 0, syscall.EINVAL
	}
	ino := f.ino
	if ino.cf != nil {
		ino.cf.HoldWriteback()
		defer ino.cf.ReleaseWriteback()
	}
	size, err := ino.size(f.fd)
	if err != nil {
		return 0, err
	}
	if offset >= size {
		return 0, syscall.ENXIO
	}
	if whence == SeekData {
		hd, err := lseek(f.fd, offset, SeekData)
		if err == syscall.ENXIO {
			hd = size
		} else if err != nil {
			return 0, err
		}
		if testHookSeekHost != nil {
			testHookSeekHost()
		}
		if ino.cf != nil {
			if cd := ino.cf.NextDirty(offset); cd >= 0 && cd < hd {
				hd = cd
			}
		}
		if hd >= size {
			return 0, syscall.ENXIO
		}
		return hd, nil
	}
	for pos := offset; ; {
		hh, err := lseek(f.fd, pos, SeekHole)
		if err == syscall.ENXIO {
			hh = pos // past the host's end: a hole
		} else if err != nil {
			return 0, err
		}
		if testHookSeekHost != nil {
			testHookSeekHost()
		}
		if hh >= size {
			return size, nil
		}
		if ino.cf == nil {
			return hh, nil
		}
		end := ino.cf.DirtyRunEnd(hh)
		if end == hh {
			return hh, nil
		}
		pos = end
		if pos >= size {
			return size, nil
		}
	}
}

// testHookSeekHost, when set by tests, runs in seekExtent between the
// host's answer and the look at the cache.
var testHookSeekHost func()

func lseek(fd int32, off int64, whence int) (int64, error) {
	for {
		n, err := unix.Seek(int(fd), off, whence)
		if err != syscall.EINTR {
			return n, err
		}
	}
}
