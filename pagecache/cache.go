//go:build linux

package pagecache

import (
	"cmp"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/internal/stripe"
	"github.com/ringfs/ringfs/uring"
)

// PageSize is the cache's unit: frames, fills and dirty tracking are in
// 4 KiB pages.
const PageSize = 4096

const pageShift = 12

// MaxFileSize is the largest file a cache serves: 2^63 bytes less one
// page. Arithmetic on the last page of the offset space (its end, the
// page after it) would overflow an int64, so that page is never cached:
// writes, truncations and allocations reaching into it fail with EFBIG,
// and NewFile refuses a file already larger with EOVERFLOW.
const MaxFileSize = 1<<63 - PageSize

// MaxReadahead is the most a fill reads beyond what was asked for.
const MaxReadahead = 64 << 10

// DefaultMaxWrite is the largest write writeback coalesces dirty pages into.
const DefaultMaxWrite = 1 << 20

// DefaultDirectWriteback is the Options.DirectWriteback the engine uses:
// every run of the default MaxWrite or shorter, as on the virtio disk it
// was measured on O_DIRECT writeback was faster than buffered writeback
// and an fsync up to 256 KiB runs and level at 1 MiB (see Options).
const DefaultDirectWriteback = DefaultMaxWrite

// MinCapacity is the smallest cache: 16 pages.
const MinCapacity = 16 * PageSize

// maxBatch bounds the requests handed to the backend in one Submit.
const maxBatch = 1024

// evictBatch is how many frames an eviction that must write back frees at
// once, so that one fdatasync covers many pages.
const evictBatch = 64

// Options configures a Cache.
type Options struct {
	// Capacity is the cache memory in bytes, rounded down to pages; it is a
	// hard bound. At least MinCapacity, at most the machine's memory
	// (ENOMEM).
	Capacity int64
	// Readahead caps how far a fill reads past what was asked for; 0 means
	// MaxReadahead, larger values are clamped to it, smaller than a page
	// are raised to a page, others are rounded down to whole pages. Only
	// fills that look sequential read ahead (see the package doc).
	Readahead int64
	// MaxWrite caps one coalesced writeback write (0 = DefaultMaxWrite).
	MaxWrite int64
	// Backend runs every fill and writeback.
	Backend uring.Backend
	// NoRegister skips registering the arena as fixed buffers.
	NoRegister bool
	// DirectWriteback, when > 0, makes writebacks that end in an fsync or
	// fdatasync (SyncData, SyncFull: Sync, eviction) write each run of at
	// most that many bytes (whole pages) through an O_DIRECT descriptor of
	// the file, which the cache opens on first use and closes at Release
	// or Discard; longer runs stay buffered. Such a run then goes to the
	// device while the batch is submitted, at the queue depth of the
	// batch, instead of being copied into the kernel's page cache for the
	// fsync to write, and the kernel keeps no second copy.
	// How long a run still gains depends on the device. On the virtio
	// disk DefaultDirectWriteback was chosen on (BenchmarkWritebackRuns:
	// 64 MiB in runs of one size, then fsync; two runs each), O_DIRECT
	// took 76–90 ms against 160–165 for runs of one page, 31 against 60
	// at 16 KiB, 16–17 against 28 at 64 KiB, 13 against 18 at 256 KiB,
	// and 15–16 against 15 at 1 MiB. On an earlier virtio disk it was
	// level at 16 and 32 KiB and 1.65× slower at 1 MiB. Where the file
	// refuses O_DIRECT (open or the first write fails with EINVAL),
	// writeback stays buffered for that file. Writebacks without an fsync
	// stay buffered. Files given a directFd at NewFile use it for every
	// writeback instead. It pays only on a backend that keeps many writes
	// in flight: on psync, which runs them one at a time, each O_DIRECT
	// write waits for the device, and writeback is several times slower.
	DirectWriteback int64
	// MergeGap is how many bytes of clean cached data writeback may rewrite
	// to join two dirty runs of a file into one write (0: none). Clean
	// cached bytes equal the host's (see the package invariants), so the
	// rewrite gives the host what it has; it trades a little bandwidth for
	// fewer, larger writes, which devices complete and flush faster. The
	// joined bytes count as dirty from then until an fsync covers them.
	// Files on tmpfs and ramfs join no runs: a write there is a copy in
	// memory, and copying clean bytes costs more than the call it saves.
	MergeGap int64
	// Logger receives registration and writeback failures; nil discards.
	Logger *slog.Logger
	// RingOnly sends the host I/O of files on tmpfs and ramfs through the
	// backend's ring like any other file's. By default it runs there as
	// plain syscalls (uring.Request.Inline), since the kernel would hand
	// each ring request on such a file to a worker thread; tests set it to
	// run the ring's paths on tmpfs.
	RingOnly bool
}

// Cache is a page cache shared by many files.
//
// Lock order (outermost first):
//
//	File.wbMu   one writeback, truncate or allocate of the file at a time
//	  File.mu   the file's index, page states and size
//	    Cache.mu  free frames, replacement policy, frame ownership
type Cache struct {
	be        uring.Backend
	log       *slog.Logger
	arena     []byte // nil after Close
	nframes   int32
	fixed     bool // arena registered: fixed reads/writes may be used
	readahead int64
	maxWrite  int64
	mergeGap  int64
	directWB  int64
	ringOnly  bool // Options.RingOnly

	st counters

	// optimistic counts, per stripe, hits in progress without any lock
	// (File.readOptimistic); Close sets closing and waits for them to
	// end before it unmaps the arena they copy from.
	optimistic stripe.Sharded[atomic.Int64]
	closing    atomic.Bool

	mu sync.Mutex
	// free is a stack of free frames. +checklocks:mu
	free []int32
	// nfree is len(free), written with mu held, read anywhere: a hint for
	// misses that decide with no lock whether to go around the cache.
	nfree atomic.Int64
	// policy orders resident frames for eviction. +checklocks:mu (hit,
	// seenRecently and remember are lock-free)
	policy *s3fifo
	// claimed marks frames taken by an eviction in progress. +checklocks:mu
	claimed []bool
	// nextID numbers files for policy keys. +checklocks:mu
	nextID uint64
	// files counts files not yet released. +checklocks:mu
	files int
	// closed is set by Close. +checklocks:mu
	closed bool

	// meta describes each frame. owner and page change only with both
	// the owner's File.mu and Cache.mu held; the rest under File.mu.
	meta []frame
}

// frame is the state of one arena frame.
type frame struct {
	owner  *File
	page   int64
	lo, hi uint16 // dirty or unsynced byte span within the page; lo == hi: none
	state  uint8  // pageDirty, pageUnsynced
	pins   int32  // writebacks using the frame; a pinned frame is not freed
	gen    uint32 // bumped by every write into the page
}

// Page states. A page with neither bit is clean: the host holds its bytes
// durably, or the page was never written.
const (
	// pageDirty: the span [lo, hi) has bytes the host has not been given.
	pageDirty uint8 = 1 << iota
	// pageUnsynced: the span was written to the host but no fsync has
	// covered it yet; a failed fsync turns it dirty again.
	pageUnsynced
)

// New maps the arena and registers it with the backend.
func New(opts Options) (*Cache, error) {
	if opts.Backend == nil {
		return nil, fmt.Errorf("pagecache: no backend: %w", syscall.EINVAL)
	}
	capacity := opts.Capacity &^ (PageSize - 1)
	if capacity < MinCapacity {
		return nil, fmt.Errorf("pagecache: capacity %d below %d: %w", opts.Capacity, MinCapacity, syscall.EINVAL)
	}
	if capacity/PageSize > 1<<31-1 {
		return nil, fmt.Errorf("pagecache: capacity %d too large: %w", opts.Capacity, syscall.EINVAL)
	}
	// The arena is only reserved, but the bookkeeping of its frames is
	// allocated here and registering it pins it: a cache larger than the
	// machine's memory could never be used, and asking for one must fail
	// cleanly rather than exhaust memory.
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil && uint64(capacity) > uint64(si.Totalram)*uint64(si.Unit) {
		return nil, fmt.Errorf("pagecache: capacity %d exceeds the machine's memory (%d bytes): %w",
			opts.Capacity, uint64(si.Totalram)*uint64(si.Unit), syscall.ENOMEM)
	}
	ra := opts.Readahead
	switch {
	case ra == 0 || ra > MaxReadahead:
		ra = MaxReadahead
	case ra < PageSize:
		ra = PageSize
	}
	// Fills read whole pages: a cap that is not a multiple of the page
	// would be exceeded by the rounding up of the window's last page.
	ra &^= PageSize - 1
	mw := opts.MaxWrite
	if mw <= 0 {
		mw = DefaultMaxWrite
	}
	mw = max(mw&^(PageSize-1), PageSize)
	if opts.MergeGap < 0 || opts.DirectWriteback < 0 {
		return nil, fmt.Errorf("pagecache: negative merge gap %d or direct writeback %d: %w",
			opts.MergeGap, opts.DirectWriteback, syscall.EINVAL)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	arena, err := mapArena(capacity)
	if err != nil {
		return nil, fmt.Errorf("pagecache: mapping %d-byte arena: %w", capacity, err)
	}
	n := int32(capacity / PageSize)
	c := &Cache{
		be: opts.Backend, log: log, arena: arena, nframes: n, readahead: ra, maxWrite: mw,
		mergeGap: opts.MergeGap, directWB: opts.DirectWriteback, ringOnly: opts.RingOnly,
		free: make([]int32, n), policy: newS3FIFO(int(n)), claimed: make([]bool, n), meta: make([]frame, n),
	}
	for i := range c.free {
		c.free[i] = n - 1 - int32(i) // pop order is ascending: early fills get contiguous frames
	}
	c.nfree.Store(int64(n))
	if !opts.NoRegister {
		if err := c.be.RegisterBuffers(splitBuffers(arena)); err != nil {
			log.Info("ringfs: arena not registered; fills and writeback use plain reads and writes", "err", err)
		} else {
			c.fixed = true
		}
	}
	return c, nil
}

// transfer builds a request moving n bytes between the file at off and
// the frames of consecutive file pages, starting inFirst bytes into the
// first frame: one fixed transfer when the bytes are contiguous in a
// registered buffer, a plain one when contiguous otherwise, else a
// vectored one with an iovec per contiguous piece (kept in fc.vecs). It
// is marked Inline on files on tmpfs and ramfs.
func (f *File) transfer(fc *fillCtx, write bool, fd int32, off int64, frames []int32, inFirst, n int) uring.Request {
	c := f.c
	fixedOp, plainOp, vecOp := uring.OpReadFixed, uring.OpRead, uring.OpReadv
	if write {
		fixedOp, plainOp, vecOp = uring.OpWriteFixed, uring.OpWrite, uring.OpWritev
	}
	contiguous := true
	for i := 1; i < len(frames); i++ {
		if frames[i] != frames[i-1]+1 {
			contiguous = false
			break
		}
	}
	start := int(frames[0])*PageSize + inFirst
	if contiguous {
		buf := c.arena[start : start+n]
		if c.fixed && start/registeredBuffer == (start+n-1)/registeredBuffer {
			return uring.Request{Op: fixedOp, Fd: fd, Off: off, Buf: buf, BufIndex: uint16(start / registeredBuffer), Inline: f.inline}
		}
		return uring.Request{Op: plainOp, Fd: fd, Off: off, Buf: buf, Inline: f.inline}
	}
	first, left := len(fc.vecs), n
	for i := 0; i < len(frames) && left > 0; {
		j := i + 1
		for j < len(frames) && frames[j] == frames[j-1]+1 {
			j++
		}
		s := int(frames[i]) * PageSize
		if i == 0 {
			s += inFirst
		}
		l := min(int(frames[j-1]+1)*PageSize-s, left)
		fc.vecs = append(fc.vecs, c.arena[s:s+l])
		left -= l
		i = j
	}
	return uring.Request{Op: vecOp, Fd: fd, Off: off, Vecs: fc.vecs[first:len(fc.vecs):len(fc.vecs)], Inline: f.inline}
}

// hugePage is the transparent huge page size the arena is aligned to.
const hugePage = 2 << 20

// mapArena maps the arena: anonymous, MAP_NORESERVE, aligned to 2 MiB
// and advised MADV_HUGEPAGE, so that where the kernel allows it the arena
// is backed by huge pages: random hits then miss the TLB far less (it
// matters most in virtual machines, where a TLB miss walks two page
// tables), and registering it pins far fewer pages.
func mapArena(capacity int64) ([]byte, error) {
	size := uintptr(capacity)
	raw, err := unix.MmapPtr(-1, 0, nil, size+hugePage, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	start := uintptr(raw)
	aligned := (start + hugePage - 1) &^ (hugePage - 1)
	if head := aligned - start; head > 0 {
		unix.MunmapPtr(raw, head)
	}
	if tail := start + size + hugePage - (aligned + size); tail > 0 {
		unix.MunmapPtr(unsafe.Add(raw, aligned-start+size), tail)
	}
	arena := unsafe.Slice((*byte)(unsafe.Add(raw, aligned-start)), size)
	unix.Madvise(arena, unix.MADV_HUGEPAGE) // advice only; failure is harmless
	return arena, nil
}

// registeredBuffer is the size of each registered piece of the arena (the
// kernel's cap per buffer).
const registeredBuffer = 1 << 30

func splitBuffers(arena []byte) [][]byte {
	var bufs [][]byte
	for off := 0; off < len(arena); off += registeredBuffer {
		bufs = append(bufs, arena[off:min(off+registeredBuffer, len(arena))])
	}
	return bufs
}

// Close unregisters and unmaps the arena. Every File must have been
// released; otherwise Close fails with EBUSY and changes nothing.
func (c *Cache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return syscall.EINVAL
	}
	if c.files > 0 {
		return syscall.EBUSY
	}
	c.closed = true
	c.closing.Store(true)
	c.waitOptimistic()
	if c.fixed {
		c.be.UnregisterBuffers()
	}
	err := unix.MunmapPtr(unsafe.Pointer(&c.arena[0]), uintptr(len(c.arena)))
	c.arena = nil
	return err
}

// waitOptimistic waits until no optimistic hit is in progress. Once
// closing is set, new ones back off before they touch the arena, so the
// wait is as long as one copy out of the cache.
func (c *Cache) waitOptimistic() {
	for stripe.Sum(&c.optimistic) != 0 {
		runtime.Gosched()
	}
}

// Capacity returns the arena size in bytes.
func (c *Cache) Capacity() int64 { return int64(c.nframes) * PageSize }

// Fixed reports whether the arena is registered with the backend.
func (c *Cache) Fixed() bool { return c.fixed }

// frameBytes returns frame f's memory.
func (c *Cache) frameBytes(f int32) []byte {
	off := int(f) * PageSize
	return c.arena[off : off+PageSize : off+PageSize]
}

// takeFree pops up to n free frames onto dst without evicting, one at a
// time from the end of the free list, so that frames pushed in
// descending order come out ascending: a fill or write of consecutive
// pages then gets consecutive frames, which transfer sends as one
// buffer rather than a vector of pages.
//
// Preconditions: c.mu is held.
func (c *Cache) takeFree(dst []int32, n int) []int32 {
	k := min(n, len(c.free))
	for i := len(c.free) - 1; i >= len(c.free)-k; i-- {
		dst = append(dst, c.free[i])
	}
	c.free = c.free[:len(c.free)-k]
	c.nfree.Store(int64(len(c.free)))
	return dst
}

// putFree returns frames to the free list (see pushFree).
func (c *Cache) putFree(frames []int32) {
	if len(frames) == 0 {
		return
	}
	c.mu.Lock()
	c.pushFree(frames)
	c.mu.Unlock()
}

// pushFree appends frames to the free list last first, so that frames
// given in ascending order are taken again in ascending order.
//
// Preconditions: c.mu is held.
func (c *Cache) pushFree(frames []int32) {
	for i := len(frames) - 1; i >= 0; i-- {
		c.free = append(c.free, frames[i])
	}
	c.nfree.Store(int64(len(c.free)))
}

// victim is a frame claimed by an eviction in progress.
type victim struct {
	frame     int32
	owner     *File
	page      int64
	fromSmall bool
}

// reserve returns up to want frames for the caller's exclusive use,
// evicting as needed. It may write back dirty victims. It returns fewer
// than want only when the cache is under pressure (everything pinned, or
// writeback of dirty victims failed).
//
// Preconditions: the caller holds no File's locks.
func (c *Cache) reserve(dst []int32, want int) []int32 {
	// Buffers for the common eviction of a few clean pages, so that a miss
	// that evicts does not allocate; a larger claim spills to the heap.
	var vbuf [8]victim
	var fbuf [8]int32
	for round := 0; len(dst) < want && round < 4; round++ {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			break
		}
		dst = c.takeFree(dst, want-len(dst))
		short := want - len(dst)
		if short == 0 {
			c.mu.Unlock()
			break
		}
		victims := c.claim(vbuf[:0], max(short, 1))
		c.mu.Unlock()
		if len(victims) == 0 {
			break
		}
		freed := c.evict(victims, fbuf[:0])
		c.mu.Lock()
		k := min(len(freed), want-len(dst))
		dst = append(dst, freed[:k]...)
		c.pushFree(freed[k:])
		c.mu.Unlock()
	}
	if len(dst) < want {
		c.st.pressure.Add(1)
	}
	return dst
}

// reserveMiss is reserve for the fill of a random miss of f that may be
// read around the cache: pages [p0, r1) requested, [p0, p1) with
// readahead. While no frame is free it first asks admitLater, which takes
// no lock: a full cache reads most random misses around it, and they
// would otherwise all queue on c.mu. It returns the frames and the fill's
// end page: r1, or p1 when the pages before the miss were read recently
// (admitLater); around is true, with no frames, when the miss is to be
// read around the cache.
//
// Preconditions: the caller holds no File's locks; p0 < r1 ≤ p1.
func (c *Cache) reserveMiss(dst []int32, f *File, p0, r1, p1 int64) (frames []int32, end int64, around bool) {
	end = r1
	if c.nfree.Load() == 0 {
		var trail bool
		if around, trail = c.admitLater(f, p0, r1); around {
			return dst, r1, true
		}
		if trail {
			end = p1
		}
	}
	return c.reserve(dst, int(end-p0)), end, false
}

// claim appends up to n victims taken out of the policy to victims. Dirty
// victims widen the claim to evictBatch so that their writeback amortises
// its fdatasync.
//
// Preconditions: c.mu is held.
func (c *Cache) claim(victims []victim, n int) []victim {
	n += len(victims)
	for len(victims) < n {
		e, small := c.policy.victim()
		if e < 0 {
			break
		}
		m := &c.meta[e]
		c.claimed[e] = true
		victims = append(victims, victim{frame: e, owner: m.owner, page: m.page, fromSmall: small})
		if n < evictBatch && victimDirty(m) {
			n = min(evictBatch, int(c.nframes)/2)
		}
	}
	return victims
}

// victimDirty reports whether a claimed frame looks dirty, as a hint for
// widening the claim. The state is guarded by the owner's File.mu, which
// ranks above Cache.mu: it is only tried, and a busy owner counts as clean.
//
// Preconditions: c.mu is held.
func victimDirty(m *frame) bool {
	f := m.owner
	if f == nil || !f.mu.TryRLock() {
		return false
	}
	defer f.mu.RUnlock()
	return m.state != 0
}

// evict frees claimed victims where it can and appends the frames freed
// to freed; the rest go back to the policy.
//
// Preconditions: the caller holds no locks.
func (c *Cache) evict(victims []victim, freed []int32) []int32 {
	slices.SortFunc(victims, func(a, b victim) int {
		if a.owner != b.owner {
			return cmp.Compare(a.owner.id, b.owner.id)
		}
		return cmp.Compare(a.page, b.page)
	})
	for i := 0; i < len(victims); {
		j := i + 1
		for j < len(victims) && victims[j].owner == victims[i].owner {
			j++
		}
		freed = victims[i].owner.evictPages(victims[i:j], freed)
		i = j
	}
	return freed
}

// finishEviction updates the policy for victims of one file: the freed
// ones leave it, the others return.
//
// Preconditions: c.mu is held.
func (c *Cache) finishEviction(vs []victim, kept []bool) {
	for i, v := range vs {
		c.claimed[v.frame] = false
		if kept[i] {
			c.policy.reinsert(v.frame)
			continue
		}
		c.policy.evicted(policyKey(v.owner.id, v.page), v.fromSmall)
	}
}

func policyKey(file uint64, page int64) uint64 { return file<<40 ^ uint64(page) }

// admitLater reports whether a random miss of pages [p0, p1) of f should
// be read around the cache: when no frame is free, a page enters the
// cache only if it was missed (or evicted from S3-FIFO's small queue)
// recently, that is while its key is in the ghost queue. A page missed
// for the first time is read straight into the caller's buffer and its
// key goes to the ghost queue, so that a second miss soon after admits it
// (into the main queue, as a ghost hit does). When every miss of a
// working set larger than the cache would evict a page for one that is
// not read again before it is evicted in turn, this reads the miss the
// way pread does, with one copy instead of a read into a cold frame, a
// copy out and an eviction; pages read twice still get in, so a hot
// subset still becomes resident.
//
// trail reports a miss that is admitted because the pages before it were
// read recently (File.trail, counting pages read around the cache): a
// sequential reader whose reads went around the cache, which is let in
// with its readahead. Sequential readers that continue the file's last
// fill, or read behind cached pages, are never random (File.continues);
// this is for several reading one file at once. The trail is twice as
// long as continues asks of cached pages, since the ghost queue holds
// random misses' pages too. Random 4 KiB reads of a 1 GiB file through a
// 64 MiB cache (go test -run '^$' -bench 'ReadMiss//io=buffered'
// ./engine/, two runs each, alternated with the code that had no such
// trail): with a trail as long as continues asks, 0.9 KiB of readahead a
// read instead of 0.19 KiB, and 5–12 % slower; with twice, 0.33 KiB, and
// level with it.
//
// It takes no lock: the ghost set is atomic, and the caller saw no free
// frame (Cache.nfree; a frame freed meanwhile only means one more miss
// read around).
func (c *Cache) admitLater(f *File, p0, p1 int64) (around, trail bool) {
	if f.trail(p0, 2*(p1-p0+1), c.policy) {
		return false, true
	}
	for p := p0; p < p1; p++ {
		if c.policy.seenRecently(policyKey(f.id, p)) {
			return false, false
		}
	}
	for p := p0; p < p1; p++ {
		c.policy.remember(policyKey(f.id, p))
	}
	c.st.admissionSkips.Add(uint64(p1 - p0))
	return true, false
}

// aroundFd is File.hostFd for a file with descriptors fd and directFd:
// files with an O_DIRECT descriptor read no miss around the cache through
// the buffered one (File.readAround reads into aligned buffers through
// File.fillFd).
func aroundFd(fd, directFd int32) int32 {
	if directFd >= 0 {
		return -1
	}
	return fd
}

// fillFd is File.fillFd for a file with descriptors fd and directFd.
func fillFd(fd, directFd int32) int32 {
	if directFd >= 0 {
		return directFd
	}
	return fd
}

// NewFile starts caching a host file. fd is used for fills and writeback;
// directFd, when ≥ 0, is an O_DIRECT descriptor of the same file used for
// whole-page transfers (the cache's frames are page-aligned). size is the
// file's current size. The caller keeps both descriptors open until
// Release returns.
func (c *Cache) NewFile(fd, directFd int32, size int64) (*File, error) {
	if size < 0 || size > MaxFileSize {
		return nil, syscall.EOVERFLOW
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, syscall.EBADF
	}
	c.nextID++
	c.files++
	f := &File{c: c, id: c.nextID, fd: fd, directFd: directFd, syncFd: -1, inline: !c.ringOnly && uring.InlineFile(int(fd))}
	f.mu.st = &c.st
	f.fillDone.L = &f.mu
	f.aroundDone.L = &f.aroundMu
	f.hostFd.Store(aroundFd(fd, directFd))
	f.fillFd.Store(fillFd(fd, directFd))
	f.size.Store(size)
	return f, nil
}
