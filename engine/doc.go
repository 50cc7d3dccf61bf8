//go:build linux

// Package engine is ringfs's public API: an Engine serves host files
// through a batched io_uring backend (package uring), a user-space page
// cache (pagecache) and mappings of the host files (hostmap).
//
// # Basics
//
//	e, err := engine.New(engine.Options{Mode: engine.Exclusive, CacheSize: 256 << 20})
//	f, err := e.Open(path, os.O_RDWR|os.O_CREATE, 0o644)
//	n, err := f.WriteAt(p, off)
//	n, err = f.ReadAt(p, off)
//	err = f.Sync()
//	err = f.Close()
//	err = e.Close()
//
// *File behaves like *os.File for regular files (io.Reader, io.Writer,
// io.ReaderAt, io.WriterAt, io.Seeker, io.Closer) and adds Sync, Datasync,
// Allocate, Truncate, Stat, ReadAtFlags/WriteAtFlags (RWF_*), Map, and
// SEEK_DATA/SEEK_HOLE. Engine.Submit runs a batch of reads and writes with
// one submission to the kernel (an operation on a handle of another
// engine is handed to that engine, which runs it by itself).
//
// # Modes
//
// One engine serves all its files in one mode. Exclusive: the engine is
// the only writer, so data and size are cached and written back lazily (on
// Sync, eviction, Close of a file's last handle, Engine.Close).
// Writethrough: cached, and every write reaches the host (not fsynced)
// before it returns, so another process sees it. Shared: others change the
// files too; nothing is cached and O_APPEND appends atomically on the host
// (RWF_APPEND). Handles of one file in one engine share one cache entry,
// keyed by device and inode number.
//
// # Paths of a read or write
//
//   - O_DIRECT handles go to the host directly, after the cache's dirty
//     bytes in the range are written back (reads) or the cached pages are
//     written back and dropped (writes). Unaligned buffers are bounced;
//     direct writes whose offset or length the host's alignment refuses
//     fail with EINVAL before anything is written, where the host states
//     it (statx STATX_DIOALIGN; elsewhere the kernel answers, and Linux
//     may have written the extents before an unaligned tail when it
//     refuses a write).
//   - With a cache: hits are copied out; misses are filled in one batch,
//     with readahead of at most Options.Readahead (≤ 64 KiB) when they
//     look sequential (a small random miss reads its own pages only, as
//     with the kernel's readahead). A full cache reads a small random
//     miss of pages it has not missed recently straight into the
//     caller's buffer, and admits them at a second miss (see the
//     pagecache package). Writes go into cached pages (dirtying exactly
//     the bytes written) or, for bytes in pages not cached, straight to
//     the host; whole new pages are cached without reading the host.
//   - With Options.HostMmap: reads and writes copy to and from 2 MiB
//     MAP_SHARED chunks of the file; no syscall per access.
//   - Otherwise (Shared, CacheSize < 0): straight to the host, one plain
//     pread or pwrite per call (the kernel serves them inside the call;
//     the ring carries O_DIRECT reads, fills and writeback batches, and
//     Submit).
//   - While a user Mapping of a file is open, the file's data is not
//     cached: the mapping and the host are the only copies, and engine
//     reads and writes go to the host.
//   - On tmpfs and ramfs (uring.InlineFile) the kernel would hand every
//     ring request to a worker thread, so everything above that goes to
//     the ring (direct reads, fills, writeback, Submit's host
//     operations) runs as plain syscalls for such files instead.
//
// # Errors and durability
//
// Every error of a call on an Engine, File or Mapping is an *fs.PathError
// wrapping a syscall.Errno (or fs.ErrClosed once closed; the path is
// "engine" for calls that name no file); Engine.Sync and Engine.Close
// join one per failing file, and Close adds the cache's and backend's
// own. New's errors wrap a syscall.Errno without a path. errors.Is finds
// the errno in all of them. Writeback errors follow Linux errseq: each handle
// samples the file's error sequence at open, and Sync, Datasync and Close
// report each writeback error once to every handle open when it happened
// (and to the next handle opened if no handle saw it). Data whose writeback
// failed stays cached and dirty, and the next Sync writes it again; a
// file with such data or an unreported error is kept (descriptors and
// pages) after its last Close, until a later handle syncs it or
// Engine.Close. Acknowledged data (a Sync that returned nil, an O_SYNC or
// O_DSYNC write that returned) is never dropped by the engine. Bytes
// written straight to the host (Shared mode, direct I/O, bytes of a write
// that missed the cache) are as durable as the kernel's page cache makes
// them until an fsync succeeds.
//
// Writeback that ends in an fsync or fdatasync (Sync, Datasync, O_SYNC and
// O_DSYNC writes, eviction of dirty pages) writes its runs (up to 1 MiB,
// pagecache.DefaultDirectWriteback, which is also the longest write it
// makes) as whole cached pages with O_DIRECT, through a descriptor the
// cache opens on the file's first such writeback and closes with the
// file: the pages go to the device as they are submitted rather than
// being copied to the kernel's page cache for the fsync to write, and the
// kernel keeps no second copy (its cached copies of those pages are
// dropped). The partial page at the end of the host file and pages past
// it (a buffered extension zeroes what a mapping left past the old end),
// writeback without an fsync (the last Close of a file), files that
// refuse O_DIRECT, and everything on the psync backend (one write in
// flight at a time) stay buffered. Two dirty runs separated by at most
// four pages of clean cached data are written as one write, the clean
// bytes included: they equal the host's.
//
// # Lock order
//
//	File.posMu       Read, Write, Seek on the handle's offset
//	  Engine.mu      inode table, handle set, servers
//	    inode.mu     the inode's descriptors, mapper, mapping count
//	      pagecache and hostmap locks
//
// A handle's gate (not a lock) counts its calls in flight so that Close
// waits for them before it closes the descriptor: a descriptor number is
// never reused under a call. Once two calls on a handle overlap, the gate
// counts per stripe (see gate), so goroutines sharing a handle do not
// write one word. The counters behind Stats are atomics kept
// per stripe (internal/stripe), so concurrent calls do not write one
// cache line; Stats sums the stripes. Engine.mu is never held across I/O except
// where noted: the last Close of a file writes it back with Engine.mu
// released, and other opens of the file wait for that to finish.
//
// # Memory ownership
//
// Buffers passed to ReadAt, WriteAt and Submit belong to the engine until
// the call returns and are never kept. Mapping.Bytes is valid from Map
// until the Mapping's Close; see Mapping for the caveats.
//
// # Limits
//
// Regular files only. The page cache holds at most CacheSize bytes. The
// stats server serves at most 16 connections, with read, write and idle
// timeouts. RLIMIT_FSIZE is read when a file is opened. Writes are held to
// the largest file the host's filesystem takes (a write crossing it is
// short and fails with EFBIG, as under RLIMIT_FSIZE), also those the cache
// keeps. With a cache, files are limited to 2^63 bytes less one page
// (pagecache.MaxFileSize; only tmpfs-like filesystems take more): writes,
// truncates and allocations past it fail with EFBIG, and Open of a file
// already larger with EOVERFLOW. With HostMmap, files are limited to 2 TiB
// (hostmap.MaxRangeLength): writes, truncates and allocations past it fail
// with EFBIG. A write of n > 0 bytes (and Allocate) clears setuid, and
// setgid when group-execute is set, for every writer (cached writes reach
// the host later, as another writer); the engine knows the file's mode
// from the last Open or Stat of one of its handles, so a setuid bit set
// from outside after that is cleared only by writes after the next Open or
// Stat.
package engine
