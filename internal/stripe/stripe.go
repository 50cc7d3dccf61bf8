package stripe

import (
	"sync/atomic"
	"unsafe"
)

// Stripes is the number of copies a Sharded holds (a power of two).
const Stripes = 32

// lineSize separates the copies: two 64-byte lines, because CPUs that
// prefetch the adjacent line pair them.
const lineSize = 128

// hashMul is 2^64 divided by the golden ratio (Fibonacci hashing).
const hashMul = 0x9e3779b97f4a7c15

// Hint returns the calling goroutine's stripe, in [0, Stripes).
func Hint() int {
	var mark byte
	// Goroutine stacks are 2 KiB or larger, aligned to their size: the
	// address above 2 KiB tells stacks apart, the bits below move with
	// the call depth and would only add noise.
	sp := uint64(uintptr(unsafe.Pointer(&mark))) >> 11
	return int(sp * hashMul >> (64 - log2Stripes))
}

// log2Stripes is log2(Stripes).
const log2Stripes = 5

// Sharded holds Stripes copies of T, none sharing a cache line with
// another.
type Sharded[T any] struct {
	cells [Stripes]struct {
		v T
		_ [lineSize]byte
	}
}

// At returns copy i (any int: it is reduced modulo Stripes).
func (s *Sharded[T]) At(i int) *T { return &s.cells[i&(Stripes-1)].v }

// Each calls fn with every copy, for a reader that sums them.
func (s *Sharded[T]) Each(fn func(*T)) {
	for i := range s.cells {
		fn(&s.cells[i].v)
	}
}

// Sum adds up a Sharded counter.
func Sum(s *Sharded[atomic.Int64]) int64 {
	var n int64
	s.Each(func(c *atomic.Int64) { n += c.Load() })
	return n
}

// Counter is a count that many goroutines add to at once: each adds to
// the copy of its stripe, and Load sums the copies. A Load that runs
// alongside Adds sees some of them.
type Counter struct{ s Sharded[atomic.Uint64] }

// Add adds n to the calling goroutine's stripe.
func (c *Counter) Add(n uint64) { c.s.At(Hint()).Add(n) }

// Load returns the sum of every stripe.
func (c *Counter) Load() uint64 {
	var n uint64
	c.s.Each(func(v *atomic.Uint64) { n += v.Load() })
	return n
}
