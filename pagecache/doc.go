//go:build linux

// Package pagecache is ringfs's user-space page cache: it keeps pages of
// host files in one arena, absorbs reads and writes, fills misses with
// readahead and writes dirty data back in coalesced batches, all through a
// uring.Backend. The requests of a file on tmpfs or ramfs are marked
// Inline (uring.InlineFile): a ring runs them as plain syscalls rather
// than handing each to a kernel worker thread (Options.RingOnly turns
// that off).
//
// # What is cached
//
// A Cache owns an arena: one anonymous mmap (MAP_NORESERVE) of Capacity
// bytes carved into 4 KiB frames, registered with the backend as fixed
// buffers when the kernel allows (RLIMIT_MEMLOCK may refuse; then plain
// reads and writes are used). Capacity is a hard bound: the cache never
// holds more pages than the arena has frames. Each File has an index from
// page number to frame (a two-level radix table: O(1) lookup, no
// allocation on a hit).
//
// Pages enter the cache in two ways. A read that misses fills the missing
// pages of the requested range, plus readahead when it looks sequential:
// FillRange widens the request to at most Readahead (≤ 64 KiB) bytes from
// its start, never backwards, and every gap of that range goes to the
// backend in one Submit. A miss looks sequential when its fill starts
// where the file's last fill ended, or at the file's start, or behind
// more cached pages than it asks for (all pages from the file's start,
// when there are fewer); as the kernel's readahead does, a small miss
// (at most 64 KiB) elsewhere counts as random and reads its own pages
// only. A write caches a page it does not find only when it can do so
// without reading the host: when the write covers the page, or the rest
// of the page lies past the old end of file (zeros). Other bytes of a
// write that miss the cache go straight to the host, batched; nothing is
// ever read to be modified.
//
// While no frame is free, a small random miss is admitted only if its
// pages were missed recently: their keys are in S3-FIFO's ghost queue.
// Otherwise it is read around the cache, straight into the caller's
// buffer, and its keys enter the ghost queue, so that a second miss soon
// after admits the pages (Cache.admitLater). A miss behind a long enough
// trail of pages read recently, cached or read around, is admitted with
// its readahead: several sequential readers of one file, whose reads do
// not continue the file's last fill, keep their readahead this way. A working set larger than
// the cache then costs a read of the host per miss, as pread does,
// instead of a read into a frame, a copy out and an eviction that the
// next miss undoes; pages read twice still enter, so its hot part still
// becomes resident. Files with an O_DIRECT descriptor read around the
// cache only into buffers aligned for O_DIRECT, through that descriptor
// (the kernel then caches nothing of the read either); their other
// misses fill through frames.
//
// # Invariants
//
//   - Every cached page is valid: its bytes equal the host's, except the
//     page's dirty span, which is newer. Bytes of a page at or past the
//     file's size are zero (fills zero what the host did not return,
//     truncation zeroes the tail), so extending a file never exposes old
//     bytes. Frames reused from other files are always overwritten or
//     zeroed before they are indexed.
//   - A page is dirty (span [lo, hi) not yet on the host), unsynced (span
//     written, no fsync since) or clean. Writeback moves dirty pages to
//     unsynced; only a successful fsync/fdatasync afterwards makes them
//     clean, and a failed one makes them dirty again. So no page is clean
//     before its bytes are durable, and eviction of a dirty or unsynced
//     page writes it back and fdatasyncs first. When that fails the page
//     stays, the error is recorded in File.Errs, and the cache reports
//     pressure: fills then read around the cache instead of failing.
//   - Dirty spans are exact for a single write; two disjoint writes into
//     one page are tracked as the span covering both (the bytes between
//     are valid cached data equal to the host's, so rewriting them is
//     harmless). DirtyBytes counts span bytes once.
//   - Writeback never writes at or past the size; truncation drops dirty
//     bytes past the new size without writing them. Besides dirty bytes
//     it writes only clean cached bytes that join two dirty runs
//     (Options.MergeGap) or widen a run to whole pages for O_DIRECT, which
//     gives the host the bytes it has; those bytes are made dirty first,
//     because a failed write or fsync may leave anything there and only
//     the cache's copy can restore them (a later buffered writeback
//     writes only dirty bytes).
//   - With Options.DirectWriteback, a writeback followed by an fsync or
//     fdatasync writes its runs of at most that many bytes as whole
//     pages through the File's O_DIRECT descriptor (not the partial page
//     at the host file's end or past it: those go through the caller's
//     descriptor); longer runs and other writebacks are buffered. The O_DIRECT writes make the kernel
//     drop its cached copies of those pages.
//   - A page pinned by an in-flight writeback is never freed or evicted.
//   - A File's index, size and the bytes of its indexed frames change only
//     with its mu held for writing (fills read into frames before they are
//     indexed), which is what lets hits take no lock (see Lock order).
//
// # Replacement
//
// Eviction uses S3-FIFO across all files (see s3fifo): a small FIFO for
// new pages, a main FIFO for pages hit again, and a ghost set so a page
// evicted young comes back straight into main (the ghost set also
// remembers misses a full cache kept out: see Cache.admitLater). A
// one-time scan passes through the small queue without displacing the
// hot set. Hits only bump an atomic counter of their frame (and the hit
// counters of their stripe, see internal/stripe). The ghost set is a
// table of atomic fingerprints, so a miss of a full cache decides with no
// lock whether to go around it. Eviction runs in the goroutine that needs frames,
// holding no file lock, and frees victims in batches (evictBatch when they
// must be written back, so one fdatasync covers many pages).
//
// # Lock order
//
//	File.wbMu          writeback, truncate, allocate, direct write of one file
//	  File.mu          the file's index, page states and size (RWMutex; most hits take no lock)
//	    Cache.mu       free frames, replacement policy, frame ownership
//	    File.aroundMu  only the sleep of waitArounds (takes nothing else)
//
// A goroutine needing frames (Cache.reserve) holds none of these; it may
// then take any file's wbMu and mu to evict. A fill plans under the file's
// mu, records its page range in File.filling, and reads the host with mu
// released, so that hits, writes of other pages and fills of other ranges
// of the same file run meanwhile; it takes mu again to index the pages.
// Everything that would write or restructure pages of a range in flight
// (writes, truncate, allocate, direct writes, invalidation, SetSize, SetFd,
// Release, Discard) waits for it on File.fillDone first, so a fill and a
// write of the same page never interleave and no fill installs bytes older
// than a write. Those that wait for every fill and write of the file
// (truncate, SetFd, Release, a batch locking it), and writeback waiting
// for writes, count themselves in File.draining meanwhile, and no new
// fill or write starts until they are done: otherwise misses or writes
// arriving faster than the ones in flight end could keep them waiting
// forever. A write that writes the host (all of a write-through write;
// the partial pages it does not hold, of a cached write) and ends within
// the file's size likewise records its pages in File.filling and writes the
// host with mu released; fills, writes, truncate and the rest wait for it
// as for a fill, and so does writeback, which would otherwise collect a
// page's dirty bytes before the write's copy lands in them. Eviction keeps
// the pages of such a write: a cached write's bytes for them go to the
// cache alone once its host part is done. A write that extends the file
// keeps mu across its host write. A write-through write of pages holding
// unsynced bytes takes wbMu first: a writeback in flight writes from the
// frames with mu released, and could otherwise carry their older bytes to
// the host after the write. A batch of fills (Cache.ReadBatch) instead
// holds the mu of every file it fills across its one submission, after
// waiting for the fills in flight of each file as it locks it. Writeback
// drops mu during its I/O and relies on wbMu and page pins, re-checking
// each page's write generation before it marks the page unsynced.
//
// A hit of pages that are all cached, below the size, takes no lock at all
// on amd64 (File.readOptimistic): File.mu carries a sequence that is odd
// while mu is held for writing, and every change to a file's index, size
// or cached bytes is made with mu held for writing. The hit notes the
// sequence, looks its pages up in the index (whose dense part is read and
// written with atomics, and whose table is replaced, never resized in
// place), copies them, and keeps the copy only if the sequence did not
// move; otherwise it clears what it copied (a frame may have gone to
// another file meanwhile) and takes the read lock. So hits of one file
// from many goroutines share no lock and no counter: the in-progress
// count it keeps for Close and its hit counters are per stripe (a page's
// own hit count, kept for replacement, is written only until it reaches
// its small maximum). The check needs
// loads kept in order, which amd64 gives; on other architectures every
// hit takes the read lock. Cache.Close waits for hits in progress before
// it unmaps the arena.
//
// A miss is found with no lock too: the same look at the index that serves
// hits reports a page absent below the size. Whether a full cache reads
// it around takes no lock to decide (Cache.admitLater asks the atomic
// ghost set), and a miss read around takes no lock of its file either
// (File.readAround): the locked path would take mu for writing twice,
// around a host read into the caller's buffer, and many goroutines missing
// one file would queue there. It counts itself in File.arounds, then
// checks, between two loads of mu's sequence, that no writer holds mu,
// that no write's host part is in flight (File.hostWrites, raised before
// such a write lets go of mu), that the file is not released (File.hostFd)
// and that none of its pages is cached, and reads the host; otherwise it
// takes the locked path. Whoever could change what a missing page reads as
// (a write that reaches the host or caches pages, truncate, allocate,
// direct writes, invalidation, SetSize, SetFd, Release, Discard) waits,
// holding mu for writing, until no such read is in flight (waitArounds): a
// read that counted itself after the writer took mu sees the odd sequence
// and backs off, so the wait ends. A write of cached pages within the size
// changes no missing page and does not wait. Like a locked fill, a read
// around the cache thus never overlaps a change of its pages, and returns
// them as the host held them when it looked, which is the file's content:
// a page leaves the index only once the host has its bytes. A miss given
// frames whose pages are all missing reads into them the same way
// (File.fillUnlocked; through the file's O_DIRECT descriptor when it has
// one, File.fillFd, as frames are aligned; a read around the cache uses
// that descriptor only when the caller's buffer is aligned too), copies
// the caller's bytes out, and takes mu once,
// to index the pages, unless something changed the file after the read
// ended (File.changes moved: every caller of waitArounds moves it), a page
// got indexed meanwhile, or a locked fill of one is in flight; then it
// frees the frames and indexes nothing. Other fills plan under mu, as
// described above.
//
// # Memory ownership
//
// The arena belongs to the Cache from New until Close; the backend may
// read or write frames only inside a Submit the cache made. The host
// descriptors given to NewFile and SetFd stay the caller's. The O_DIRECT
// writeback descriptor (Options.DirectWriteback) is the File's: opened from
// the caller's descriptor on the first durable writeback, closed by SetFd
// (reopened when next needed), Release and Discard; File.wbMu guards it. Slices passed
// to ReadAt, WriteAt and DirectWrite belong to the caller again when the
// call returns; the cache copies, it never keeps them.
//
// # Limits
//
// Capacity ≥ 16 pages and < 2^31 pages; readahead ≤ 64 KiB; coalesced
// writes ≤ MaxWrite (1 MiB by default); at most maxBatch requests per
// Submit.
package pagecache
