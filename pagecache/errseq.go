//go:build linux

package pagecache

import "sync"

// ErrSeq reports writeback errors the way Linux's errseq_t does: every
// handle samples the sequence when it opens; each later error is reported
// once to every handle that was open when it happened, and an error that
// no handle has seen is reported to the next handle that samples.
type ErrSeq struct {
	mu sync.Mutex
	// seq counts recorded errors; err is the latest; seen says whether
	// any handle has been told of it. +checklocks:mu
	seq  uint64
	err  error
	seen bool
}

// Record notes a writeback error.
func (e *ErrSeq) Record(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	e.seq++
	e.err, e.seen = err, false
	e.mu.Unlock()
}

// Sample returns the cursor a new handle starts from: the current
// sequence, or the one before it when the latest error is still unseen.
func (e *ErrSeq) Sample() uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seq > 0 && !e.seen {
		return e.seq - 1
	}
	return e.seq
}

// Check returns the latest error if it was recorded after *cursor, and
// advances the cursor; each error is thus returned once per handle.
func (e *ErrSeq) Check(cursor *uint64) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if *cursor == e.seq {
		return nil
	}
	*cursor = e.seq
	e.seen = true
	return e.err
}

// Pending reports whether an error has been recorded that no handle has
// seen yet.
func (e *ErrSeq) Pending() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seq > 0 && !e.seen
}
