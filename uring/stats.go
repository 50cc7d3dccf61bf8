//go:build linux

package uring

import (
	"sync/atomic"

	"github.com/ringfs/ringfs/internal/stripe"
)

// Stats are a backend's counters. All counts are totals since New; use Sub
// for the difference between two snapshots.
type Stats struct {
	Backend        string `json:"backend"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	SQEntries      uint32 `json:"sq_entries"`
	CQEntries      uint32 `json:"cq_entries"`
	Features       uint32 `json:"features"`

	Submits     uint64 `json:"submits"`     // Submit calls
	Requests    uint64 `json:"requests"`    // requests passed to Submit
	Enters      uint64 `json:"enters"`      // io_uring_enter calls (syscalls in psync)
	SQEs        uint64 `json:"sqes"`        // SQEs handed to the kernel
	Completions uint64 `json:"completions"` // CQEs consumed
	Waits       uint64 `json:"waits"`       // enters that waited for completions

	RetryEnterEINTR  uint64 `json:"retry_enter_eintr"`   // io_uring_enter interrupted, retried
	RetryEnterBusy   uint64 `json:"retry_enter_busy"`    // io_uring_enter EAGAIN/EBUSY, reaped and retried
	RetryCQEEINTR    uint64 `json:"retry_cqe_eintr"`     // completion -EINTR, resubmitted
	RetryCQEAgain    uint64 `json:"retry_cqe_eagain"`    // completion -EAGAIN, resubmitted
	RetryCQECanceled uint64 `json:"retry_cqe_canceled"`  // completion -ECANCELED nobody asked for, resubmitted
	ShortResubmits   uint64 `json:"short_resubmits"`     // short read/write, remainder resubmitted
	CQOverflows      uint64 `json:"cq_overflows"`        // times the kernel held back CQEs (NODROP backlog)
	DroppedCQEs      uint64 `json:"dropped_cqes"`        // CQEs the kernel reported lost
	Errors           uint64 `json:"errors"`              // requests completed with an error
	Inline           uint64 `json:"inline"`              // requests run with a plain syscall (Do) instead of the ring
	InflightHighMark uint64 `json:"inflight_high_water"` // most requests in flight at once
	Inflight         uint64 `json:"inflight"`            // requests in flight now
}

// SQEsPerEnter is the mean number of SQEs per io_uring_enter, counting
// every enter, including those that only waited for completions.
func (s Stats) SQEsPerEnter() float64 {
	if s.Enters == 0 {
		return 0
	}
	return float64(s.SQEs) / float64(s.Enters)
}

// Sub returns s minus prev for every counter; identity and gauges
// (Inflight, InflightHighMark) are taken from s.
func (s Stats) Sub(prev Stats) Stats {
	d := s
	d.Submits -= prev.Submits
	d.Requests -= prev.Requests
	d.Enters -= prev.Enters
	d.SQEs -= prev.SQEs
	d.Completions -= prev.Completions
	d.Waits -= prev.Waits
	d.RetryEnterEINTR -= prev.RetryEnterEINTR
	d.RetryEnterBusy -= prev.RetryEnterBusy
	d.RetryCQEEINTR -= prev.RetryCQEEINTR
	d.RetryCQEAgain -= prev.RetryCQEAgain
	d.RetryCQECanceled -= prev.RetryCQECanceled
	d.ShortResubmits -= prev.ShortResubmits
	d.CQOverflows -= prev.CQOverflows
	d.DroppedCQEs -= prev.DroppedCQEs
	d.Errors -= prev.Errors
	d.Inline -= prev.Inline
	return d
}

// counters is the live, atomically updated form of Stats.
type counters struct {
	// Every call and request adds to these, from as many goroutines as
	// call at once, so they are striped: with 32 goroutines of inline
	// reads (Do) on one ring, four shared counters a read cost a fifth
	// of the CPU of a Shared-mode read of the kernel's cache (engine
	// BenchmarkSharedRead).
	submits, requests, enters, completions, inline stripe.Counter

	sqes, waits                                                   atomic.Uint64
	retryEnterEINTR, retryEnterBusy, retryCQEEINTR, retryCQEAgain atomic.Uint64
	retryCQECanceled                                              atomic.Uint64
	shortResubmits, cqOverflows, droppedCQEs, errors              atomic.Uint64
	inflight, inflightHigh                                        atomic.Uint64
	// cancels counts OpCancel requests handed to the kernel (counted as
	// each is prepared), so that a request can tell a cancellation it
	// may have been the target of (see retryCanceled).
	cancels atomic.Uint64
}

func (c *counters) snapshot(s *Stats) {
	s.Submits = c.submits.Load()
	s.Requests = c.requests.Load()
	s.Enters = c.enters.Load()
	s.SQEs = c.sqes.Load()
	s.Completions = c.completions.Load()
	s.Waits = c.waits.Load()
	s.RetryEnterEINTR = c.retryEnterEINTR.Load()
	s.RetryEnterBusy = c.retryEnterBusy.Load()
	s.RetryCQEEINTR = c.retryCQEEINTR.Load()
	s.RetryCQEAgain = c.retryCQEAgain.Load()
	s.RetryCQECanceled = c.retryCQECanceled.Load()
	s.ShortResubmits = c.shortResubmits.Load()
	s.CQOverflows = c.cqOverflows.Load()
	s.DroppedCQEs = c.droppedCQEs.Load()
	s.Errors = c.errors.Load()
	s.Inline = c.inline.Load()
	s.Inflight = c.inflight.Load()
	s.InflightHighMark = c.inflightHigh.Load()
}

// addInflight adjusts the in-flight gauge by n and raises the high-water
// mark when it is passed.
func (c *counters) addInflight(n int) {
	v := c.inflight.Add(uint64(n))
	if n > 0 {
		for {
			h := c.inflightHigh.Load()
			if v <= h || c.inflightHigh.CompareAndSwap(h, v) {
				return
			}
		}
	}
}
