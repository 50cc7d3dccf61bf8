//go:build linux

package engine

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/hostmap"
	"github.com/ringfs/ringfs/pagecache"
	"github.com/ringfs/ringfs/uring"
)

// inodeKey identifies a host file.
type inodeKey struct{ dev, ino uint64 }

// inode is the state every handle of one host file shares: its cache
// entry, the engine's own descriptors for it, its mappings.
type inode struct {
	e    *Engine
	key  inodeKey
	path string // the name it was first opened by

	// refs counts handles and temporary references; handles counts
	// handles only; closing is non-nil while the last reference's
	// writeback runs. +checklocks:Engine.mu
	refs, handles int
	closing       chan struct{}
	// written is set once a handle open for writing has been attached:
	// Engine.Close fsyncs the file. +checklocks:Engine.mu
	written bool

	// inline is set for a file on tmpfs or ramfs (uring.InlineFile),
	// unless the engine is ring-only: its host reads and writes run as
	// plain syscalls, since the kernel would hand each ring request on it
	// to a worker thread. Set by newInode.
	inline bool

	cf   *pagecache.File   // nil when not caching
	errs *pagecache.ErrSeq // cf.Errs, or ownErrs without a cache
	// ownErrs records fsync errors when there is no cache.
	ownErrs pagecache.ErrSeq
	// mmSize is the logical size in HostMmap mode.
	mmSize atomic.Int64

	// limitMu serializes the writes of handles under RLIMIT_FSIZE, so
	// that an append's offset is known when the limit is checked.
	limitMu sync.Mutex

	mu sync.Mutex
	// fd is the engine's descriptor for cache I/O and mappings (O_RDWR
	// when the file allows); access is its O_ACCMODE. +checklocks:mu
	fd     int32
	access int
	// dfd is an O_DIRECT descriptor for cache I/O (Options.DirectIO), or
	// -1. +checklocks:mu
	dfd int32
	// mode is the file's mode bits, for clearing setuid/setgid: stored
	// from the host at Open and Stat, and by clearPrivileges with mu held.
	mode atomic.Uint32
	// mmRef is how far (bytes, chunk-rounded) the HostMmap mapper holds
	// references; raised with mu held.
	mmRef atomic.Int64
	// fitEnd is a file size the host is known to take (see fitWrite);
	// raised with mu held.
	fitEnd atomic.Int64
	// hm maps the file (created on first use). +checklocks:mu
	hm *hostmap.Mapper
	// maps counts open user mappings. +checklocks:mu
	maps int
	// retired holds descriptors replaced by upgrade while a mapper still
	// uses them; closed with the inode. +checklocks:mu
	retired []int32
}

// newInode opens the engine's own descriptors for the file behind the
// handle descriptor hfd. The file is stat'ed again: the caller's stat may
// predate the write-back of a previous inode of the same file.
func (e *Engine) newInode(key inodeKey, name string, hfd int32, access int) (*inode, error) {
	var st unix.Stat_t
	if err := fstat(hfd, &st); err != nil {
		return nil, err
	}
	ino := &inode{e: e, key: key, path: name, dfd: -1}
	ino.mode.Store(st.Mode)
	ino.fitEnd.Store(min(st.Size, e.maxFileSize()))
	fd, acc, err := reopen(hfd, unix.O_RDWR, access)
	if err != nil {
		return nil, err
	}
	ino.fd, ino.access = fd, acc
	ino.inline = !e.ringOnly && uring.InlineFile(int(fd))
	if e.opts.DirectIO && e.cache != nil {
		if dfd, _, err := reopen(hfd, acc|unix.O_DIRECT, -1); err == nil {
			ino.dfd = dfd
		} else {
			e.log.Info("ringfs: no O_DIRECT descriptor; cache uses buffered I/O", "path", name, "err", err)
		}
	}
	ino.errs = &ino.ownErrs
	switch {
	case e.cache != nil:
		ino.cf, err = e.cache.NewFile(ino.fd, ino.dfd, st.Size)
		if err != nil {
			ino.closeFds()
			return nil, err
		}
		ino.errs = &ino.cf.Errs
	case e.opts.HostMmap:
		ino.mmSize.Store(st.Size)
	}
	return ino, nil
}

// reopen opens the file behind fd again with flags. When that is refused
// (the caller lacks the access) it falls back to a dup of fd, whose access
// is fallback (-1: no fallback).
func reopen(fd int32, flags, fallback int) (int32, int, error) {
	path := fmt.Sprintf("/proc/self/fd/%d", fd)
	for {
		nfd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if err == nil {
			return int32(nfd), flags & unix.O_ACCMODE, nil
		}
		if err == syscall.EINTR {
			continue
		}
		if fallback < 0 {
			return -1, 0, err
		}
		break
	}
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, 0, err
	}
	return int32(nfd), fallback, nil
}

// upgrade gives the inode a descriptor with write access when a writable
// handle arrives and the inode only had read access (or read access for a
// readable handle after a write-only one).
func (ino *inode) upgrade(hfd int32, access int) {
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.access == unix.O_RDWR || ino.access == access {
		return
	}
	fd, acc, err := reopen(hfd, unix.O_RDWR, -1)
	if err != nil {
		ino.e.log.Warn("ringfs: cannot reopen file read-write", "path", ino.path, "err", err)
		return
	}
	old := ino.fd
	ino.fd, ino.access = fd, acc
	if ino.cf != nil {
		ino.cf.SetFd(fd, ino.dfd)
	}
	if ino.hm == nil {
		unix.Close(int(old))
	} else {
		// The mapper keeps using the descriptor it was made with.
		ino.retired = append(ino.retired, old)
	}
}

// maxMmapSize is the largest file HostMmap mode serves: the mapper holds
// references on every chunk below the end of the data accessed, and one
// call covers at most hostmap.MaxRangeLength (2 TiB).
const maxMmapSize = hostmap.MaxRangeLength

// maxFileSize is the largest file the engine itself serves (the host may
// take less): with a cache, pagecache.MaxFileSize.
func (e *Engine) maxFileSize() int64 {
	switch {
	case e.cache != nil:
		return pagecache.MaxFileSize
	case e.opts.HostMmap && e.opts.Mode != Shared:
		return maxMmapSize
	}
	return 1<<63 - 1
}

// fitWrite returns how many of n bytes written at off fit below the
// largest file the host's filesystem takes (its s_maxbytes) and the
// engine serves (maxFileSize): n, or fewer. lseek(SEEK_SET) accepts
// offsets up to s_maxbytes and fails with EINVAL past it, so it answers
// without changing the file; sizes are probed ahead, doubling, so that a
// file growing by small writes asks rarely.
func (ino *inode) fitWrite(off int64, n int) int {
	end := off + int64(n)
	if end <= ino.fitEnd.Load() {
		return n
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	defer keepOffset(ino.fd)()
	limit := ino.e.maxFileSize()
	takes := func(size int64) bool {
		if size > limit {
			return false
		}
		if size <= ino.fitEnd.Load() {
			return true
		}
		_, err := lseek(ino.fd, size, io.SeekStart)
		if err == syscall.EINVAL {
			return false
		}
		ino.fitEnd.Store(size) // or the host cannot tell: let it answer itself
		return true
	}
	if end <= (1<<63-1)/2 && takes(2*end) || takes(end) {
		return n
	}
	lo, hi := ino.fitEnd.Load(), end // lo taken, hi not
	for hi-lo > 1 {
		if mid := lo + (hi-lo)/2; takes(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return int(max(0, lo-off))
}

// seekable reports whether the host's filesystem takes pos as a file
// offset: lseek(2) fails with EINVAL past its s_maxbytes, and Seek answers
// as lseek does. Every filesystem takes offsets below 2 GiB, and fitEnd
// holds one the host took; past both, lseek is asked once and a size the
// engine serves is remembered in fitEnd.
func (ino *inode) seekable(pos int64) bool {
	if pos < 1<<31 || pos <= ino.fitEnd.Load() {
		return true
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	defer keepOffset(ino.fd)()
	if _, err := lseek(ino.fd, pos, io.SeekStart); err == syscall.EINVAL {
		return false
	}
	if pos <= ino.e.maxFileSize() && pos > ino.fitEnd.Load() {
		ino.fitEnd.Store(pos)
	}
	return true
}

// keepOffset returns a func that puts fd's offset back where it is now:
// the descriptor may be shared by a dup, so probing it with lseek must
// leave no trace.
func keepOffset(fd int32) func() {
	pos, err := lseek(fd, 0, io.SeekCurrent)
	if err != nil {
		return func() {}
	}
	return func() { lseek(fd, pos, io.SeekStart) }
}

// size returns the file's size as the engine knows it: the cache's or
// mapping's logical size, or the host's.
func (ino *inode) size(hfd int32) (int64, error) {
	switch {
	case ino.cf != nil:
		return ino.cf.Size(), nil
	case ino.e.opts.HostMmap:
		return ino.mmSize.Load(), nil
	}
	var st unix.Stat_t
	if err := fstat(hfd, &st); err != nil {
		return 0, err
	}
	return st.Size, nil
}

func fstat(fd int32, st *unix.Stat_t) error {
	for {
		err := unix.Fstat(int(fd), st)
		if err != syscall.EINTR {
			return err
		}
	}
}

// sync writes back and fsyncs (mode) the file. Errors are recorded for
// per-handle reporting and returned.
func (ino *inode) sync(mode pagecache.SyncMode) error {
	if ino.cf != nil {
		return ino.cf.Writeback(pagecache.Range{Start: 0, End: 1<<63 - 1}, mode)
	}
	ino.mu.Lock()
	fd, hm := ino.fd, ino.hm
	ino.mu.Unlock()
	if hm != nil {
		// (A file opened larger than maxMmapSize is mapped below it only.)
		if err := hm.Sync(hostmap.Range{Start: 0, End: min(ino.mmSize.Load(), maxMmapSize)}); err != nil {
			ino.ownErrs.Record(err)
			return err
		}
	}
	req := uring.Request{Op: uring.OpFsync, Fd: fd}
	if mode == pagecache.SyncData {
		req.Flags = uring.FsyncDatasync
	}
	_, err := uring.Do(ino.e.be, req)
	ino.ownErrs.Record(err)
	return err
}

// flushForClose writes back the file when its last reference goes and
// reports whether the inode must be kept (dirty data or an error nobody
// has seen yet).
func (ino *inode) flushForClose() (keep bool) {
	if ino.cf == nil {
		return ino.errs.Pending()
	}
	if err := ino.cf.Writeback(pagecache.Range{Start: 0, End: 1<<63 - 1}, pagecache.SyncNone); err != nil {
		return true
	}
	return ino.errs.Pending() || ino.cf.HasDirty()
}

// destroy releases everything the inode holds. Dirty data that could not
// be written back is dropped: the caller has reported it.
//
// Preconditions: no handle or reference remains.
func (ino *inode) destroy() {
	if ino.cf != nil {
		if err := ino.cf.Release(); err != nil {
			ino.cf.Discard()
		}
	}
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.hm != nil {
		ino.hm.Close()
		ino.hm = nil
	}
	ino.closeFds()
}

// closeFds closes the engine's descriptors.
//
// Preconditions: ino.mu is held or the inode is not shared yet.
func (ino *inode) closeFds() {
	for _, fd := range append(ino.retired, ino.fd, ino.dfd) {
		if fd >= 0 {
			unix.Close(int(fd))
		}
	}
	ino.fd, ino.dfd, ino.retired = -1, -1, nil
}

// unref drops a temporary reference taken by Engine.liveInodes.
func (ino *inode) unref() { ino.e.dropRef(ino, false) }

// dropRef drops a reference (a handle's when handle is set). The last
// one writes the file back and, unless something must be kept, releases
// the inode.
func (e *Engine) dropRef(ino *inode, handle bool) {
	e.mu.Lock()
	if handle {
		ino.handles--
	}
	ino.refs--
	if ino.refs > 0 || e.inodes[ino.key] != ino {
		e.mu.Unlock()
		return
	}
	done := make(chan struct{})
	ino.closing = done
	e.mu.Unlock()

	keep := ino.flushForClose()

	e.mu.Lock()
	ino.closing = nil
	release := !keep && ino.refs == 0
	if release {
		delete(e.inodes, ino.key)
	}
	e.mu.Unlock()
	close(done)
	if release {
		ino.destroy()
	}
}
