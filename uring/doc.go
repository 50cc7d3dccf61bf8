//go:build linux

// Package uring runs file I/O requests in batches: on a native io_uring
// ring built on golang.org/x/sys/unix raw syscalls (no cgo, no linkname),
// on synchronous syscalls (psync) where io_uring is blocked, or, in builds
// with the iouringgo tag, on github.com/iceber/iouring-go.
//
// # Basics
//
// A caller fills a []Request and calls Backend.Submit, which returns when
// every request is complete; each Request carries its own N and Err. The
// native ring writes all of one call's requests as SQEs and submits them
// with one io_uring_enter (several only when the call holds more requests
// than the submission queue has room for). A call with more requests than
// the ring has slots keeps the kernel's queue full: it queues more each
// time an eighth of the slots' worth of its own have completed, rather
// than after all of them. Concurrent callers with single requests share
// enters: whoever is submitting flushes every queued SQE, its own and the
// others'. Because a read of cached data completes inside io_uring_enter,
// a small submission made while other Submit calls are in progress first
// yields briefly (holding the submit lock) so that the others can queue
// their requests, as long as most of what recent enters submitted was
// complete when they returned; where completions come later, from a
// device (O_DIRECT), callers wait for each other anyway and it does not
// pause; there, a caller queueing requests while the completion leader
// (the one caller that reaps CQEs for all) is running outside a kernel
// wait leaves them to it, and the leader submits all such requests with
// one enter before it waits in the kernel or stops leading.
// Stats().SQEsPerEnter shows how well that works. Under GOMAXPROCS 1 a
// yielding goroutine can wait tens of milliseconds for the P while other
// goroutines run, and every caller of the ring would wait with it: there
// the submitter does not pause, and the leader stops yielding for a
// while after a slow yield.
//
// A request marked Inline is not submitted: the ring runs it with a plain
// syscall in the calling goroutine, as Do does, before returning. That is
// for files on tmpfs and ramfs (InlineFile), on which the kernel hands
// every ring request to a worker thread. Requests on registered files
// always go to the ring; a fixed read or write run inline is checked
// against the registered buffers as the kernel checks it.
//
// Short reads and writes are resumed until the request is complete; a read
// that returns 0 bytes ends at end of file (N < length, Err nil). An
// O_DIRECT read cut short by the end of file is resumed at an unaligned
// offset: if the file grew meanwhile the kernel refuses that, and the read
// ends with N bytes and EINVAL (callers that know the read was direct
// read the rest again from an aligned offset, or end it there). A
// completion of -EINTR, or -EAGAIN without RWF_NOWAIT, is resubmitted, at
// most maxRetries times in a row, and so is one of -ECANCELED that nobody
// asked for (the kernel cancels work it could not start, as when it fails
// to create an io-wq worker while the submitting thread keeps receiving
// signals, or when that thread has exited). io_uring_enter failing with EINTR is
// retried; EAGAIN/EBUSY reap completions, back off and retry, and past
// maxBusyRetries break the ring. SQEs once published are never taken back.
//
// # Invariants
//
//   - At most len(slots) requests are in flight (the CQ size by default),
//     so the completion queue cannot overflow; if the kernel still reports
//     dropped CQEs, the ring is marked broken and the affected requests
//     fail with ErrBroken (EIO) once an IO_DRAIN NOP proves the kernel is
//     done with them. Nothing hangs and no completion is invented.
//   - A request's user_data is its slot index and the slot's generation, so
//     a stale completion can never be applied to a reused slot.
//   - No allocation per request in steady state: slots, waiters and their
//     wake channels are allocated once and reused.
//
// # Lock order
//
//	Ring.cqMu        completion leader (CQ head, waiting in the kernel)
//	  Ring.sqMu      submitter (SQEs, SQ tail)
//	    Ring.mu      slots, pending queue, waiter list, state
//
// cqMu and sqMu are taken with TryLock on the hot paths; only a broken
// ring's drain and Close block on them, in the order above. The state is
// also mirrored in an atomic (stateNow) that Do and the leader read
// without Ring.mu; it changes only under Ring.mu. The per-request
// counters are striped (stripe.Counter) and need no lock.
//
// psync's locks are independent of each other: fileTable.mu (held for
// reading across the syscall of a request on a registered file) and
// psync.mu (the registered buffers' ranges). iouringgo's are in its file
// comment.
//
// # Memory ownership
//
// Buffers named by a Request (Buf, Vecs) belong to the kernel from Submit
// until Submit returns: the caller must not read, write or reuse them in
// that time. The ring keeps the Request (and so the buffers) reachable from
// its slot until the CQE arrives, and Go's heap does not move objects, so
// the address in the SQE stays valid; a buffer on the caller's stack escapes
// to the heap because Submit stores a pointer to it. Registered buffers
// (RegisterBuffers) must stay mapped until UnregisterBuffers or Close; use
// mmap'd memory. A registered file table holds the files, not their
// descriptor numbers: the caller may close its descriptors after
// RegisterFiles. The kernel holds a reference to each file of a ring's
// table; psync and iouringgo, which keep the table themselves
// (fileTable), hold a duplicate of each descriptor until its slot is
// replaced, the table unregistered or the backend closed. If the kernel never completes a request (a broken kernel),
// the request is failed after drainDeadline and kept reachable forever
// rather than risk a use after free.
//
// # Limits
//
// Entries is capped at MaxEntries; one read or write moves at most
// 0x7ffff000 bytes per SQE and at most 1024 iovecs (larger requests are
// resumed in pieces); a registered buffer is at most 1 GiB; a wait in the
// kernel lasts at most waitTimeout before the leader re-checks the ring.
package uring
