// Package stripe spreads state that many goroutines update at once over
// separate cache lines, so that goroutines running on different CPUs do
// not take the same line from each other on every update.
//
// # Basics
//
// A Sharded[T] holds Stripes copies of T, each followed by padding so that
// no two copies share a cache line. A caller updates the copy of its
// stripe (Hint) and a reader sums all copies. Hint is a hash of the
// calling goroutine's stack address: the same for every call from one
// place in one goroutine while its stack stays put, and different for two
// goroutines except by chance (one pair in Stripes). It is a hint only:
// any goroutine may use any stripe, so correctness never depends on it,
// only how often two CPUs write the same line.
//
// # Invariants
//
//   - Every copy of T starts at least lineSize bytes after the start of the
//     previous one.
//   - Hint returns a value in [0, Stripes) and never allocates.
//
// # Lock order
//
// The package takes no locks; T's fields are updated with atomics by the
// callers.
//
// # Memory ownership
//
// A Sharded[T] is plain memory owned by whatever embeds it; At returns a
// pointer into it, valid as long as the Sharded[T] is.
package stripe
