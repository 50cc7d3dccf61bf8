//go:build linux

// Package hostmap maps regions of a host file into memory in 2 MiB chunks
// and counts references to them, so that the engine can serve reads and
// writes of hot files from shared mappings (no system call per access) and
// hand out user mappings of file ranges.
//
// # Basics
//
// A Mapper serves one file, open as a descriptor the caller owns. The file
// is mapped MAP_SHARED in ChunkSize (2 MiB) chunks aligned to 2 MiB of
// file offset. A chunk is mapped lazily, on the first access (MapInternal,
// ReadAt, WriteAt, Map), never by IncRef, and read-only unless a writable
// access asked for more.
//
// References are taken on pages (IncRef/DecRef round byte ranges out to
// pages) and counted per chunk: a chunk's count is the sum of the page
// references in it. A chunk is unmapped exactly when its count drops to
// zero. A chunk's count has three parts: references of IncRef callers,
// references of open Mappings, and short-lived pins taken by Sync while it
// flushes the chunk. DecRef can take back only IncRef references, so an
// unbalanced DecRef is refused (EINVAL) rather than allowed to unmap a
// chunk under a user's Mapping; underflow is still caught per chunk only
// (a DecRef of the wrong page of a referenced chunk goes unnoticed).
//
// A read-only chunk is upgraded in place on its first writable access:
// mmap with MAP_FIXED at the same address replaces it, so every slice
// already handed out stays valid. It is never downgraded.
//
// A Mapping (Map/MapInto) is one contiguous slice of the file. A range
// inside one chunk is a window of the chunk's mapping, holding user
// references on its pages; a range across chunks gets its own mapping of
// the page-rounded range (a "span"). Either way the Mapping is valid until
// its own Close, whatever else happens to the same chunks, and its second
// Close is an error that changes nothing.
//
// Copies through mappings (ReadAt, WriteAt, SafeCopy) run with
// debug.SetPanicOnFault, so touching a page past the end of the file
// (SIGBUS, e.g. after another process truncated it) or an unreadable page
// becomes EFAULT, not a crash. The Mapper does not know the file's size;
// the engine clamps accesses to it.
//
// # Invariants
//
//   - A chunk record exists in Mapper.chunks exactly while one of its
//     counts is non-zero; a chunk is mapped only while its record exists,
//     and each mmap of a chunk is followed by exactly one munmap (when the
//     counts reach zero, or at Close), unless the kernel refuses it (see
//     Limits).
//   - No count is ever negative or above 2^31-1: IncRef/Map that would
//     overflow fail with EOVERFLOW, DecRef that would underflow fails with
//     EINVAL, and in both cases nothing changes. A Mapping's or a Sync's
//     own count underflowing is a bug in this package and panics.
//   - A chunk's address never changes while it is mapped.
//   - The fd is used (mmap) only with refsMu held and the Mapper open, so
//     after Close returns it is never used again.
//
// # Lock order
//
//	Mapper.syncMu    Sync (read) vs closing span Mappings (write)
//	  Mapper.refsMu  counts, open Mappings, span list, closed
//	    Mapper.mapsMu  chunk addresses and protections, closed
//
// The hot paths (ReadAt, WriteAt, MapInternal of chunks already mapped as
// needed) take no lock: they find the chunk's address in a table of
// atomic pointers that mapsMu's holders keep in step (chunks past the
// first 512 GiB of the file are looked up under mapsMu, for reading).
// Map and Mapping.Close of a chunk window take refsMu and, briefly, mapsMu
// for reading.
//
// # Memory ownership
//
// The Mapper owns every mapping it makes and unmaps it; the caller owns
// the fd and must keep it open until Close returns.
//
//   - Slices from MapInternal/AppendMapInternal are valid while the caller
//     holds references on their pages (until its DecRef, or Close). The
//     caller must not keep them past that: the memory is unmapped and its
//     addresses may be reused by anything.
//   - ReadAt and WriteAt hold no references of their own: the caller must
//     hold references on the range for the whole call.
//   - Mapping.Bytes is valid from Map until that Mapping's Close, and then
//     Bytes returns nil. A Mapping may outlive its Mapper's Close.
//
// # Caveats
//
// Bytes from a mapping are valid only while it is open. Writing through a
// read-only mapping faults (SIGSEGV), and touching a page wholly past the
// end of the file faults (SIGBUS); Go turns such a fault into a crash
// unless the access runs under debug.SetPanicOnFault, as SafeCopy does.
// A read-only Mapping inside one chunk shares the chunk's mapping, which
// another user may have made writable: there a write does not fault but
// changes the file. Never write through a read-only Mapping.
// Bytes past the end of the file inside its last page read as zeros, and
// what is written there is not part of the file. Writes through a mapping
// never change the file's size. Accesses through a mapping are not
// synchronised with other readers and writers of the file: they see and
// make the same page-cache bytes as read(2) and write(2), byte by byte.
//
// # Limits
//
// Offsets and ends are at most MaxOffset (2^63 - 2 MiB); one IncRef,
// DecRef, MapInternal, Map or Sync covers at most MaxRangeLength (2 TiB).
// Each chunk counts at most 2^31-1 page references of each kind. Each
// chunk and span mapping may take a VMA of its own (the kernel merges
// neighbours with contiguous file offsets): vm.max_map_count (65530 by
// default) bounds how much a process can map at once; past it mmap fails
// with ENOMEM, and so can munmap, which then leaves the memory mapped and
// counts an unmap failure in Stats rather than crash. Up to 64 released
// chunk records are kept for reuse per Mapper.
package hostmap
