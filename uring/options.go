//go:build linux

package uring

import (
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"time"
)

// Backend names accepted by Options.Backend.
const (
	BackendAuto      = ""
	BackendUring     = "uring"
	BackendPsync     = "psync"
	BackendIouringgo = "iouringgo"
)

// DefaultEntries is the submission queue size used when Options.Entries is 0.
const DefaultEntries = 256

// MaxEntries is the largest submission queue ringfs asks for.
const MaxEntries = 4096

// Options configures New.
type Options struct {
	// Backend selects the implementation: "" (uring, falling back to psync
	// when io_uring is unavailable), "uring" (no fallback), "psync",
	// "iouringgo" (only in builds with the iouringgo tag).
	Backend string
	// Entries is the submission queue size, rounded up to a power of two;
	// 0 means DefaultEntries. The completion queue is twice as large and
	// bounds the requests in flight.
	Entries uint32
	// SQPoll starts a kernel thread that polls the submission queue, so
	// submissions need no syscall while it is awake.
	SQPoll bool
	// SQPollIdle is how long the poll thread spins before sleeping
	// (default 50ms).
	SQPollIdle time.Duration
	// Injector, when set, alters operations and completions (tests only).
	Injector Injector
	// Logger receives the fallback notice and ring errors; nil discards.
	Logger *slog.Logger

	// maxInflight overrides the in-flight cap (tests of CQ overflow only).
	maxInflight int
	// setupHook replaces io_uring_setup (tests of the fallback only).
	setupHook func() error
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// New returns the backend Options asks for. With Backend "" it tries the
// native ring and, when io_uring_setup fails with EPERM, EACCES or ENOSYS
// (seccomp profiles, kernel.io_uring_disabled, old kernels), falls back to
// psync and logs why; Stats().FallbackReason records it too.
func New(opts Options) (Backend, error) {
	switch opts.Backend {
	case BackendUring:
		return newRing(opts)
	case BackendPsync:
		return newPsync(opts, ""), nil
	case BackendIouringgo:
		return newIouringgo(opts)
	case BackendAuto:
		r, err := newRing(opts)
		if err == nil {
			return r, nil
		}
		if !Unavailable(err) {
			return nil, err
		}
		reason := fmt.Sprintf("io_uring unavailable (%v)", err)
		opts.logger().Warn("ringfs: falling back to psync backend", "reason", reason)
		return newPsync(opts, reason), nil
	}
	return nil, fmt.Errorf("uring: unknown backend %q: %w", opts.Backend, syscall.EINVAL)
}

// Unavailable reports whether err from ring setup means io_uring is blocked
// or absent on this host (as opposed to a transient failure).
func Unavailable(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) ||
		errors.Is(err, syscall.ENOSYS)
}

// Injector alters what backends report, so that every layer above can be
// tested against faults. Implementations must be safe for concurrent use.
// Package fault provides one driven by predicates.
type Injector interface {
	// Enter is consulted before each io_uring_enter (each syscall in psync);
	// a non-zero errno is reported as that call's failure and the call is
	// not made.
	Enter() syscall.Errno
	// Issue is consulted before an operation reaches the kernel. When fail
	// is true the operation is not run and completes with res (bytes, or
	// -errno).
	Issue(r *Request) (res int32, fail bool)
	// Complete sees each completion's result (bytes or -errno) and returns
	// the result to use in its place. It may sleep to delay completion.
	Complete(r *Request, res int32) int32
}
