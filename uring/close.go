//go:build linux

package uring

import (
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Broken rings and Close.
//
// A ring breaks when the kernel reports lost CQEs or io_uring_enter fails
// in a way that retries do not cure. From then on it takes no new work:
// requests not yet handed to the kernel fail with ErrBroken at once, and a
// NOP with IOSQE_IO_DRAIN is submitted. The kernel starts that NOP only
// after every earlier request has completed, so when its CQE arrives every
// request still without a completion is one whose CQE was lost; those fail
// with ErrBroken. Nothing the kernel may still touch is released early.

// drainDeadline bounds how long a broken or closing ring waits for the
// kernel to finish requests when it cannot use a drain NOP.
const drainDeadline = 10 * time.Second

// leaked keeps requests the kernel never completed reachable forever, so
// that the garbage collector cannot free buffers the kernel may still use.
var leaked struct {
	sync.Mutex
	reqs []*Request
}

// currentState returns the ring's state without r.mu. A caller that acts
// on it under r.mu reads r.state there instead.
func (r *Ring) currentState() ringState { return ringState(r.stateNow.Load()) }

// setState changes the ring's state.
//
// Preconditions: r.mu is held.
func (r *Ring) setState(s ringState) {
	r.state = s
	r.stateNow.Store(uint32(s))
}

// breakRing stops the ring taking work and fails what was never submitted.
func (r *Ring) breakRing(why string, errno syscall.Errno) {
	r.mu.Lock()
	if r.state != ringOpen {
		r.mu.Unlock()
		return
	}
	r.setState(ringBroken)
	var woken wakeList
	r.failPendingLocked(ErrBroken, &woken)
	r.freeCond.Broadcast()
	r.mu.Unlock()
	woken.wake()
	r.log.Error("ringfs: io_uring ring broken", "why", why, "errno", errno)
}

// failPendingLocked fails every request that has no SQE yet.
//
// Preconditions: r.mu is held.
func (r *Ring) failPendingLocked(err error, woken *wakeList) {
	for r.pendLn > 0 {
		idx := r.popPending()
		s := &r.slots[idx]
		s.req.N, s.req.Err = s.prog.done, err
		r.c.errors.Add(1)
		r.releaseSlotLocked(idx, woken)
	}
}

// failInflightLocked fails every request still in a slot. It is called
// once the kernel can no longer complete them (after the drain NOP, or
// past the deadline, when the requests are also pinned in leaked).
//
// Preconditions: r.mu is held.
func (r *Ring) failInflightLocked(woken *wakeList) {
	r.failInflightAs(ErrBroken, false, woken)
}

func (r *Ring) failInflightAs(err error, pin bool, woken *wakeList) {
	for i := range r.slots {
		s := &r.slots[i]
		if s.req == nil {
			continue
		}
		if pin {
			leaked.Lock()
			leaked.reqs = append(leaked.reqs, s.req)
			leaked.Unlock()
		}
		s.req.N, s.req.Err = s.prog.done, err
		r.c.errors.Add(1)
		r.releaseSlotLocked(uint32(i), woken)
	}
	r.pendHead, r.pendLn = 0, 0
	r.pendingN.Store(0)
}

// checkOverflow looks for CQEs the kernel dropped or holds back.
//
// Preconditions: r.cqMu is held.
func (r *Ring) checkOverflow() {
	if atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0 {
		// The kernel kept CQEs that did not fit (NODROP); an enter with
		// GETEVENTS moves them into the ring.
		r.c.cqOverflows.Add(1)
		r.enter(0, 0, enterGetEvents, nil)
	}
	ov := atomic.LoadUint32(r.cqOver) + r.dropped
	if ov != r.lastOverflow {
		r.c.droppedCQEs.Add(uint64(ov - r.lastOverflow))
		r.lastOverflow = ov
		r.breakRing("completion queue dropped CQEs", syscall.EIO)
	}
}

// finishBroken submits the drain NOP of a broken ring once.
//
// Preconditions: r.cqMu is held.
func (r *Ring) finishBroken() {
	r.mu.Lock()
	sent := r.drainSent
	r.drainSent = true
	r.mu.Unlock()
	if sent {
		return
	}
	r.sqMu.Lock()
	defer r.sqMu.Unlock()
	if r.sqes == nil || r.sqTailLocal-atomic.LoadUint32(r.sqHead) == r.sqEntries {
		r.drainByDeadline()
		return
	}
	e := &r.sqes[r.sqTailLocal&r.sqMask]
	*e = sqe{opcode: opNop, flags: sqeIODrain, fd: -1, userData: drainUserData}
	r.sqTailLocal++
	atomic.StoreUint32(r.sqTail, r.sqTailLocal)
	for attempt := 0; attempt < 100; attempt++ {
		_, errno := r.enter(r.sqTailLocal-atomic.LoadUint32(r.sqHead), 0, 0, nil)
		if errno == 0 {
			return
		}
		if errno != syscall.EINTR && errno != syscall.EAGAIN && errno != syscall.EBUSY {
			break
		}
		backoff(attempt)
	}
	r.drainByDeadline()
}

// drainByDeadline is the last resort when the drain NOP cannot be
// submitted: completions are polled for drainDeadline, then whatever is
// left fails and stays pinned.
//
// Preconditions: r.cqMu is held.
func (r *Ring) drainByDeadline() {
	deadline := time.Now().Add(drainDeadline)
	for r.inUse() > 0 && time.Now().Before(deadline) {
		r.reap(nil)
		time.Sleep(time.Millisecond)
	}
	var woken wakeList
	r.mu.Lock()
	r.failInflightAs(ErrBroken, true, &woken)
	r.mu.Unlock()
	woken.wake()
}

func (r *Ring) inUse() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.used
}

// Close waits for requests in flight, then releases the ring. Requests not
// yet submitted fail with ErrClosed.
func (r *Ring) Close() error {
	r.mu.Lock()
	if r.state == ringClosed {
		r.mu.Unlock()
		return ErrClosed
	}
	broken := r.state == ringBroken
	r.setState(ringClosed)
	var woken wakeList
	r.failPendingLocked(ErrClosed, &woken)
	r.freeCond.Broadcast()
	r.mu.Unlock()
	woken.wake()

	// Take leadership for good: nobody reaps or submits after this.
	r.cqMu.Lock()
	if broken {
		r.finishBroken()
	}
	r.waitIdle()
	r.sqMu.Lock()
	r.closeMu.Lock()
	r.unmapRings()
	err := unix.Close(r.fd)
	r.fd = -1
	r.closeMu.Unlock()
	return err
}

// waitIdle reaps until no request is in flight. Past half the deadline it
// asks the kernel to cancel everything; past the deadline the rest fail
// and stay pinned.
//
// Preconditions: r.cqMu is held.
func (r *Ring) waitIdle() {
	ts := unix.NsecToTimespec(int64(waitTimeout))
	start := time.Now()
	cancelled := false
	for {
		r.reap(nil)
		if r.inUse() == 0 {
			return
		}
		elapsed := time.Since(start)
		if elapsed > drainDeadline {
			var woken wakeList
			r.mu.Lock()
			r.failInflightAs(ErrClosed, true, &woken)
			r.mu.Unlock()
			woken.wake()
			return
		}
		if elapsed > drainDeadline/2 && !cancelled {
			cancelled = true
			r.cancelAll()
		}
		if _, errno := r.enter(0, 1, enterGetEvents, &ts); errno != 0 && errno != syscall.EINTR && errno != syscall.ETIME {
			time.Sleep(time.Millisecond)
		}
	}
}

// cancelAll asks the kernel to cancel every request in flight.
//
// Preconditions: r.cqMu is held.
func (r *Ring) cancelAll() {
	r.sqMu.Lock()
	defer r.sqMu.Unlock()
	if r.sqTailLocal-atomic.LoadUint32(r.sqHead) == r.sqEntries {
		return
	}
	e := &r.sqes[r.sqTailLocal&r.sqMask]
	*e = sqe{opcode: opAsyncCancel, fd: -1, opFlags: cancelAny | cancelAll, userData: cancelUserData}
	r.sqTailLocal++
	atomic.StoreUint32(r.sqTail, r.sqTailLocal)
	r.enter(1, 0, 0, nil)
}
