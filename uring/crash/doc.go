//go:build linux

// Package crash simulates power loss under a uring.Backend. A Host wraps a
// backend and records, for the files it tracks, every completed operation
// that changes them — writes (with the bytes written), ftruncates,
// fallocates — and every successful fsync. From that record it builds the
// content a file could have after a crash at any recorded point: the bytes
// made durable by the last fsync before the point, plus a chosen share of
// the 4 KiB blocks changed since (the others as they were, or garbage).
//
// Only operations that went through the backend are seen; tests that use a
// Host must route every change of a tracked file through it (ringfs's
// engine and cache do, except writes through mmap'd mappings). Operations
// are recorded in the order their Submit (or Do) returned, so overlapping
// writes of one file must not run concurrently if the record is to be
// exact. Writes with RWF_APPEND (offset chosen by the kernel) and requests
// on registered files are not recorded.
//
// # Invariants
//
//   - Every recorded operation has a sequence number (Op.Seq), from 1, in
//     the order it was recorded, over all tracked files; crash points are
//     0 (nothing recorded) to Seq().
//   - A write is recorded with the bytes it wrote (N of them, not the
//     whole buffer); a failed ftruncate, fallocate or fsync is not
//     recorded at all.
//   - The content at tracking time (Track) is taken as durable: every
//     image is built from it by applying recorded operations, and an
//     image before the first recorded fsync keeps it as its durable part.
//
// # Lock order
//
//	Host.mu  tracked files, their records, the sequence, the fd → file cache
//
// The wrapped backend runs without Host.mu: a Submit or Do completes
// first, then its requests are recorded under it.
//
// # Memory ownership
//
// A Host copies the base content of every tracked file and the bytes of
// every recorded write, and keeps them for as long as the Host lives; it
// is for tests with bounded workloads. It keeps no caller's buffer: Ops
// returns a copy of the record, and the crash images (Durable, Current,
// Crash) are new slices the caller owns.
package crash
