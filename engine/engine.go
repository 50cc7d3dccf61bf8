//go:build linux

package engine

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/bits"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringfs/ringfs/hostmap"
	"github.com/ringfs/ringfs/pagecache"
	"github.com/ringfs/ringfs/uring"
)

// Mode says who else may change the files an Engine serves.
type Mode uint8

const (
	// Exclusive: the engine is the only writer. Data and size are cached
	// and written back lazily: on Sync, eviction, Close of a file's last
	// handle, and Engine.Close.
	Exclusive Mode = iota
	// Writethrough: cached, but every write reaches the host before it
	// returns (fsynced only with O_SYNC/O_DSYNC or Sync).
	Writethrough
	// Shared: other processes change the files too. No data is cached and
	// the size is asked of the host when it matters.
	Shared
)

func (m Mode) String() string {
	switch m {
	case Exclusive:
		return "exclusive"
	case Writethrough:
		return "writethrough"
	case Shared:
		return "shared"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// DefaultCacheSize is the page cache size when Options.CacheSize is 0.
const DefaultCacheSize = 256 << 20

// mergeGap is how many bytes of clean cached data a writeback may rewrite
// to join two dirty runs into one write (pagecache.Options.MergeGap):
// four pages. On the virtio disk this was chosen on, a durable
// writeback's O_DIRECT write costs about 4.3 µs plus 0.17 µs a KiB
// (pagecache BenchmarkWritebackRuns: 64 MiB in 16,384 writes of 4 KiB
// took about 83 ms, in 2,048 of 32 KiB 20 ms), so two one-page runs
// four pages apart cost more as two writes (about 10 µs) than as one of
// 24 KiB (about 8.4 µs); at eight pages apart one write would cost a
// tenth more. N writes + Sync (BenchmarkWriteSync, two runs each) took
// 16.7–17.3 ms with a gap of one page (2,191 writes), 14.2–14.7 ms with
// two, 11.6–12.3 ms with four (1,038 writes) and 10.3–10.4 ms with eight,
// its pages being dense. (With O_DIRECT writes only up to 16 KiB, as
// before, one page had been fastest.)
const mergeGap = 16 << 10

// directWriteback is the longest run a durable writeback writes with
// O_DIRECT (pagecache.Options.DirectWriteback): none on psync, which runs
// one write at a time, each then waiting for the device.
func directWriteback(be uring.Backend) int64 {
	if be.Name() == uring.BackendPsync {
		return 0
	}
	return pagecache.DefaultDirectWriteback
}

// Options configures an Engine.
type Options struct {
	Mode Mode
	// CacheSize is the page cache in bytes: 0 means DefaultCacheSize, a
	// negative value means no cache (every read and write goes to the
	// host). Shared mode never caches.
	CacheSize int64
	// Readahead caps how far a cache fill reads past the request: 0 means
	// 64 KiB; larger values are clamped to 64 KiB. Only misses that look
	// sequential read ahead (see the pagecache package).
	Readahead int
	// RingEntries is the io_uring submission queue size (0 = 256).
	RingEntries int
	// Backend is "" or "uring" (io_uring, falling back to psync when the
	// host blocks io_uring; "uring" alone refuses the fallback), "psync",
	// or "iouringgo" (builds with the iouringgo tag).
	Backend string
	// DirectIO opens the host descriptors used for cache fills and
	// writeback with O_DIRECT, so data is not cached twice. Filesystems
	// without O_DIRECT (tmpfs) silently use buffered descriptors. Without
	// it, writeback followed by an fsync is O_DIRECT anyway (see the
	// package documentation) and the rest is buffered.
	DirectIO bool
	// HostMmap serves reads and writes from mmap'd regions of the host
	// files (hostmap) instead of the page cache: no syscall per access.
	HostMmap bool
	// Logger receives the backend fallback notice and writeback failures;
	// nil discards.
	Logger *slog.Logger
	// Injector, when set, is handed to the backend to inject faults
	// (tests; see package uring/fault).
	Injector uring.Injector
	// LatencySampling times one read or write in this many (rounded up
	// to a power of two) for the latency percentiles in Stats: 0 means
	// DefaultLatencySampling, 1 times every call.
	LatencySampling int
	// WrapBackend, when set, wraps the backend before the engine uses it
	// (tests: recording hosts for crash simulation). The wrapper must
	// forward every method.
	WrapBackend func(uring.Backend) uring.Backend
}

// ringOnlyForTests makes engines created while it is set send the host
// I/O of files on tmpfs and ramfs through the ring like any other file's.
// The package's tests set it: their files are on /dev/shm, and the ring's
// paths are what most of them test.
var ringOnlyForTests atomic.Bool

// Engine serves files. All methods are safe for concurrent use.
//
// Lock order (outermost first):
//
//	Engine.mu        the inode table, handle counts, servers
//	  inode.mu       the inode's descriptors, mappings, mode bits
//	    pagecache and hostmap locks
//
// File I/O never holds Engine.mu.
type Engine struct {
	opts Options
	be   uring.Backend
	// sampleMask is LatencySampling-1 (see sampleStart).
	sampleMask uint32
	cache      *pagecache.Cache // nil when not caching
	// ringOnly keeps the host I/O of files on tmpfs and ramfs on the ring
	// (ringOnlyForTests when New ran).
	ringOnly bool
	log      *slog.Logger
	started  time.Time
	st       stats
	// mmStats counts for every host mapper of the engine's files, also
	// those of files since released (hostmap.NewMapperCounting).
	mmStats hostmap.Counters

	// holders counts Sync calls holding inodes (holdInodes); Close waits
	// for them before it releases the inodes.
	holders sync.WaitGroup

	mu sync.Mutex
	// inodes maps device+inode to the state shared by a file's handles.
	// +checklocks:mu
	inodes map[inodeKey]*inode
	// handles lists the open handles, for Close. +checklocks:mu
	handles map[*File]struct{}
	// servers are the stats servers started by ServeStats. +checklocks:mu
	servers map[*http.Server]struct{}
	// closed is set by Close. +checklocks:mu
	closed bool
}

// New creates an Engine: its backend (io_uring unless told otherwise or
// unavailable) and, unless disabled, its page cache.
func New(opts Options) (*Engine, error) {
	if opts.Mode > Shared {
		return nil, fmt.Errorf("engine: unknown mode %d: %w", opts.Mode, syscall.EINVAL)
	}
	if opts.Readahead < 0 || opts.RingEntries < 0 || opts.LatencySampling < 0 {
		return nil, fmt.Errorf("engine: negative readahead or ring entries: %w", syscall.EINVAL)
	}
	if opts.Readahead > pagecache.MaxReadahead {
		opts.Readahead = pagecache.MaxReadahead
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	be, err := uring.New(uring.Options{
		Backend: opts.Backend, Entries: uint32(opts.RingEntries), Injector: opts.Injector, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("engine: backend: %w", err)
	}
	if opts.WrapBackend != nil {
		be = opts.WrapBackend(be)
	}
	sampling := opts.LatencySampling
	if sampling == 0 {
		sampling = DefaultLatencySampling
	}
	e := &Engine{
		opts: opts, be: be, log: log, started: time.Now(), ringOnly: ringOnlyForTests.Load(),
		sampleMask: uint32(1)<<bits.Len32(uint32(sampling-1)) - 1,
		inodes:     make(map[inodeKey]*inode), handles: make(map[*File]struct{}),
		servers: make(map[*http.Server]struct{}),
	}
	if opts.Mode != Shared && opts.CacheSize >= 0 && !opts.HostMmap {
		size := opts.CacheSize
		if size == 0 {
			size = DefaultCacheSize
		}
		e.cache, err = pagecache.New(pagecache.Options{
			Capacity: size, Readahead: int64(opts.Readahead), Backend: be, Logger: log,
			DirectWriteback: directWriteback(be), MergeGap: mergeGap, RingOnly: e.ringOnly,
		})
		if err != nil {
			be.Close()
			return nil, fmt.Errorf("engine: cache: %w", err)
		}
	}
	return e, nil
}

// Mode returns the engine's interop mode.
func (e *Engine) Mode() Mode { return e.opts.Mode }

// BackendName returns the backend in use ("uring", "psync", "iouringgo").
func (e *Engine) BackendName() string { return e.be.Name() }

// Sync writes back and fsyncs every file the engine holds and returns
// every failure, joined. After Close it fails with fs.ErrClosed; a Sync
// running when Close begins finishes first.
func (e *Engine) Sync() error {
	inos, ok := e.holdInodes()
	if !ok {
		return &fs.PathError{Op: "sync", Path: "engine", Err: fs.ErrClosed}
	}
	defer e.holders.Done()
	var errs []error
	for _, ino := range inos {
		if err := ino.sync(pagecache.SyncFull); err != nil {
			errs = append(errs, &fs.PathError{Op: "sync", Path: ino.path, Err: unwrapErrno(err)})
		}
		ino.unref()
	}
	return errors.Join(errs...)
}

// holdInodes returns the inodes with a reference taken on each, and
// counts the caller in e.holders (it calls e.holders.Done when it has
// dropped them); false once the engine is closed.
func (e *Engine) holdInodes() ([]*inode, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, false
	}
	e.holders.Add(1)
	out := make([]*inode, 0, len(e.inodes))
	for _, ino := range e.inodes {
		ino.refs++
		out = append(out, ino)
	}
	return out, true
}

// Close closes every open handle (waiting for their in-flight calls),
// writes back and fsyncs every file it holds that was open for writing,
// and releases the cache, the backend and the stats servers. It
// returns every failure joined, including writeback errors that no handle
// has reported yet; data whose writeback failed is lost only here, after
// being reported. A file the engine no longer holds (its handles and
// mappings all closed, its data written back) is not fsynced here: the
// last Close wrote it back without fsync, as os.File's Close does.
func (e *Engine) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return &fs.PathError{Op: "close", Path: "engine", Err: fs.ErrClosed}
	}
	e.closed = true
	handles := make([]*File, 0, len(e.handles))
	for f := range e.handles {
		handles = append(handles, f)
	}
	// Held, the inodes outlive their handles' Close (which then does not
	// write them back) until they are synced below.
	held := make([]*inode, 0, len(e.inodes))
	for _, ino := range e.inodes {
		ino.refs++
		held = append(held, ino)
	}
	servers := e.servers
	e.servers = nil
	e.mu.Unlock()

	var errs []error
	for srv := range servers {
		srv.Close()
	}
	for _, f := range handles {
		if err := f.Close(); err != nil && !errors.Is(err, fs.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for _, ino := range held {
		if err := e.closeInode(ino); err != nil {
			errs = append(errs, &fs.PathError{Op: "close", Path: ino.path, Err: unwrapErrno(err)})
		}
	}
	// Sync calls begun before Close hold inodes too.
	e.holders.Wait()
	e.mu.Lock()
	e.inodes = map[inodeKey]*inode{}
	e.mu.Unlock()
	for _, ino := range held {
		ino.destroy()
	}
	if e.cache != nil {
		if err := e.cache.Close(); err != nil {
			errs = append(errs, fmt.Errorf("engine: closing cache: %w", err))
		}
	}
	if err := e.be.Close(); err != nil {
		errs = append(errs, fmt.Errorf("engine: closing backend: %w", err))
	}
	return errors.Join(errs...)
}

// closeInode writes back and fsyncs ino for Close if it was open for
// writing. It returns the error of that, or else one recorded before
// that no handle has seen.
//
// Preconditions: Close holds a reference on ino.
func (e *Engine) closeInode(ino *inode) error {
	e.mu.Lock()
	written, closing := ino.written, ino.closing
	e.mu.Unlock()
	if closing != nil {
		<-closing // the last handle's Close, begun before, is writing it back
	}
	cursor := ino.errs.Sample()
	var err error
	if written { // (a file never open for writing has nothing to write back)
		err = ino.sync(pagecache.SyncFull)
	}
	if err == nil {
		err = ino.errs.Check(&cursor)
	}
	return err
}

// unwrapErrno returns the syscall.Errno inside err, or err.
func unwrapErrno(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
}
