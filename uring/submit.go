//go:build linux

package uring

import (
	"runtime"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Submission and completion.
//
// A Submit call takes free slots for its requests (blocking only when every
// slot is in use), puts them on the pending queue and then tries to flush
// the queue: whoever holds sqMu writes every pending SQE, its own and other
// callers', and submits them with one io_uring_enter. Callers that find
// sqMu taken leave their requests to the holder, which re-checks the queue
// before it lets go; this is how concurrent single requests share enters.
//
// Completions are reaped by one leader at a time (cqMu). The leader delivers
// every CQE it finds, waking the callers whose requests are all done, and
// waits in the kernel only while its own requests are outstanding. When it
// is done and requests remain in flight, it hands leadership to the oldest
// other waiting caller by a token on that caller's wake channel. Every
// caller with outstanding requests is thus either the leader, or parked
// with a leader (or a token) on the way, or running towards its next await
// (a call with more requests than slots, which leads only until a refill's
// worth of its own are done, then queues more); a caller sleeps for a free
// slot only when none of its own requests is outstanding.

// Submit runs reqs and returns when every one is complete.
//
// A call with more requests than free slots keeps the kernel's queue full:
// once its first slots are in flight, it waits only for a refill's worth
// of them (refillStep) before it queues more, rather than for all.
func (r *Ring) Submit(reqs []Request) error {
	r.c.submits.Add(1)
	r.c.requests.Add(uint64(len(reqs)))
	if inlineOnly(reqs) {
		if err := r.usable(); err != nil {
			failAll(reqs, err)
			return err
		}
		ip := getIovecs()
		iov := *ip
		for i := range reqs {
			iov = r.inline.run(&reqs[i], iov)
		}
		putIovecs(ip, iov)
		return nil
	}
	r.submitters.Add(1)
	defer r.submitters.Add(-1)
	var w *waiter
	var err error
	stop := len(reqs) // where queueing failed
	for i := 0; i < len(reqs); {
		var queued int
		w, queued, i, err = r.enqueue(w, reqs, i)
		if err != nil {
			failAll(reqs[i:], err)
			stop = i
			break
		}
		if queued > 0 && !r.leaveToLeader() {
			if queued < combineBelow && r.submitters.Load() > 1 && r.inlineRate.Load() >= inlineOne/2 && r.sqMu.TryLock() {
				r.gather()
				r.submitLocked()
				r.sqMu.Unlock()
			}
			r.flush()
		}
		if i < len(reqs) && w != nil {
			// More to queue: wait until some of ours are done.
			r.await(w, max(int32(0), w.remaining.Load()-r.refillStep()))
		}
	}
	if w != nil {
		// Every request queued must be complete before the call returns,
		// also when queueing the rest failed: the kernel may still be
		// using their buffers.
		r.await(w, 0)
		r.releaseWaiter(w)
	}
	if err != nil {
		// The ring refuses work from now on: what enqueue left for
		// runLeft before it failed fails with it.
		r.eachLeft(reqs[:stop], func(req *Request) { req.N, req.Err = 0, err })
		return err
	}
	r.runLeft(reqs)
	for i := range reqs {
		if be, ok := reqs[i].Err.(*BackendError); ok {
			return be
		}
	}
	return nil
}

// eachLeft calls fn for each request of reqs that enqueue left alone, to
// be run with a plain syscall (runsInline; valid, and moving bytes if a
// read or write).
func (r *Ring) eachLeft(reqs []Request, fn func(*Request)) {
	for i := range reqs {
		req := &reqs[i]
		if req.Op < numOps && r.runsInline(req) && req.validate() == 0 && !((req.Op.IsRead() || req.Op.IsWrite()) && req.length() == 0) {
			fn(req)
		}
	}
}

// runLeft runs, with plain syscalls, the requests enqueue left alone:
// those asking to run inline and those whose opcode this kernel lacks.
func (r *Ring) runLeft(reqs []Request) {
	var ip *[]unix.Iovec
	var iov []unix.Iovec
	r.eachLeft(reqs, func(req *Request) {
		if ip == nil {
			ip = getIovecs()
			iov = *ip
		}
		iov = r.inline.run(req, iov)
	})
	if ip != nil {
		putIovecs(ip, iov)
	}
}

// enqueue puts requests from reqs[i:] on the pending queue, as many as
// there are free slots (waiting for at least one), and returns the waiter,
// how many were queued and the index of the first request not queued.
// Requests that fail validation complete at once without a slot.
func (r *Ring) enqueue(w *waiter, reqs []Request, i int) (*waiter, int, int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.free) == 0 && r.state == ringOpen {
		if w != nil && w.remaining.Load() > 0 {
			// Our own requests hold slots: Submit reaps them (await)
			// rather than sleep here while nobody might be reaping.
			return w, 0, i, nil
		}
		r.freeCond.Wait()
	}
	switch r.state {
	case ringClosed:
		return w, 0, i, ErrClosed
	case ringBroken:
		return w, 0, i, ErrBroken
	}
	if w == nil {
		w = r.takeWaiter()
	}
	queued := 0
	for ; i < len(reqs) && len(r.free) > 0; i++ {
		req := &reqs[i]
		req.N, req.Err = 0, nil
		if errno := req.validate(); errno != 0 {
			finish(req, 0, errno, &r.c)
			continue
		}
		if (req.Op.IsRead() || req.Op.IsWrite()) && req.length() == 0 {
			continue
		}
		if r.runsInline(req) {
			continue // run by Submit with a plain syscall (runLeft)
		}
		idx := r.free[len(r.free)-1]
		r.free = r.free[:len(r.free)-1]
		s := &r.slots[idx]
		s.req, s.w, s.prog = req, w, progress{}
		s.gen++
		r.pushPending(idx)
		queued++
	}
	if queued > 0 {
		r.used += queued
		w.remaining.Add(int32(queued))
		r.c.addInflight(queued)
		if !w.listed {
			r.listWaiter(w)
		}
	}
	return w, queued, i, nil
}

// pushPending appends a slot to the pending queue.
//
// Preconditions: r.mu is held.
func (r *Ring) pushPending(idx uint32) {
	r.pend[(r.pendHead+r.pendLn)%len(r.pend)] = idx
	r.pendLn++
	r.pendingN.Store(int32(r.pendLn))
}

// popPending removes the oldest slot from the pending queue.
//
// Preconditions: r.mu is held; r.pendLn > 0.
func (r *Ring) popPending() uint32 {
	idx := r.pend[r.pendHead]
	r.pendHead = (r.pendHead + 1) % len(r.pend)
	r.pendLn--
	r.pendingN.Store(int32(r.pendLn))
	return idx
}

// flush submits the pending queue unless another goroutine is already
// doing so; that goroutine re-checks the queue before it stops, so the
// requests are never stranded.
func (r *Ring) flush() {
	for r.pendingN.Load() > 0 && r.sqMu.TryLock() {
		r.submitLocked()
		r.sqMu.Unlock()
	}
}

// submitLocked writes pending requests as SQEs and enters the kernel until
// the queue is empty (several enters only when it exceeds the SQ space).
//
// Preconditions: r.sqMu is held.
func (r *Ring) submitLocked() {
	for {
		r.fillSQ()
		unsubmitted := r.sqTailLocal - atomic.LoadUint32(r.sqHead)
		if unsubmitted == 0 {
			if r.pendingN.Load() == 0 {
				return
			}
			continue // every pending request failed at issue
		}
		if !r.enterSubmit(unsubmitted) {
			return
		}
		if r.pendingN.Load() == 0 && r.sqTailLocal == atomic.LoadUint32(r.sqHead) {
			return
		}
	}
}

// fillSQ moves pending requests into free SQ entries and publishes them.
//
// Preconditions: r.sqMu is held.
func (r *Ring) fillSQ() {
	space := r.sqEntries - (r.sqTailLocal - atomic.LoadUint32(r.sqHead))
	if space == 0 {
		return
	}
	r.mu.Lock()
	var woken wakeList
	for space > 0 && r.pendLn > 0 {
		idx := r.popPending()
		s := &r.slots[idx]
		if r.inj != nil {
			if res, fail := r.inj.Issue(s.req); fail {
				r.completeLocked(idx, s.gen, res, &woken)
				continue
			}
		}
		r.prepSQE(&r.sqes[r.sqTailLocal&r.sqMask], idx, s)
		r.sqTailLocal++
		space--
		if r.sqpoll {
			r.c.sqes.Add(1)
		}
	}
	r.mu.Unlock()
	woken.wake()
	// The SQEs must be visible before the tail that publishes them; the
	// atomic store orders them.
	atomic.StoreUint32(r.sqTail, r.sqTailLocal)
}

// prepSQE writes the SQE for the remainder of slot s.
//
// Preconditions: r.mu and r.sqMu are held.
func (r *Ring) prepSQE(e *sqe, idx uint32, s *slot) {
	req := s.req
	if req.Op == OpCancel {
		// Counted as its SQE is written: the requests written before
		// it may be its targets, those after it are not.
		r.c.cancels.Add(1)
	}
	s.prog.cancels = r.c.cancels.Load()
	*e = sqe{opcode: kernelOp[req.Op], fd: req.Fd, userData: uint64(s.gen)<<32 | uint64(idx)}
	if req.Fixed {
		e.flags |= sqeFixedFile
	}
	done := s.prog.done
	switch req.Op {
	case OpRead, OpWrite, OpReadFixed, OpWriteFixed:
		b := chunk(req.Buf, done)
		e.addr = uint64(uintptr(unsafe.Pointer(&b[0])))
		e.len = uint32(len(b))
		e.off = uint64(req.Off + int64(done))
		e.opFlags = ringRWFlags(req.Flags)
		e.bufIndex = req.BufIndex
	case OpReadv, OpWritev:
		s.iov = fillIovecs(s.iov, req.Vecs, done)
		e.addr = uint64(uintptr(unsafe.Pointer(&s.iov[0])))
		e.len = uint32(len(s.iov))
		e.off = uint64(req.Off + int64(done))
		e.opFlags = ringRWFlags(req.Flags)
	case OpFsync:
		e.opFlags = req.Flags & FsyncDatasync
		if req.Len > 0 && req.Len <= 1<<32-1 {
			e.off, e.len = uint64(req.Off), uint32(req.Len)
		}
	case OpFallocate:
		e.off, e.addr, e.len = uint64(req.Off), uint64(req.Len), req.Flags
	case OpSyncFileRange:
		e.off, e.opFlags = uint64(req.Off), req.Flags
		if req.Len <= 1<<32-1 {
			e.len = uint32(req.Len) // longer ranges sync to end of file
		}
	case OpFtruncate:
		e.off = uint64(req.Off)
	case OpCancel:
		e.opFlags = cancelFD | cancelAll
		if req.Fixed {
			e.flags &^= sqeFixedFile
			e.opFlags |= 1 << 3 // IORING_ASYNC_CANCEL_FD_FIXED
		}
	}
}

// enterSubmit submits n published SQEs. It returns false when the ring
// broke and nothing more can be submitted.
//
// Preconditions: r.sqMu is held.
func (r *Ring) enterSubmit(n uint32) bool {
	for attempt := 0; ; attempt++ {
		var flags uint32
		if r.sqpoll {
			// The poll thread consumes the SQ; enter only to wake it or,
			// when the SQ is full, to wait for space.
			switch {
			case atomic.LoadUint32(r.sqFlags)&sqNeedWakeup != 0:
				flags = enterSQWakeup
			case r.sqTailLocal-atomic.LoadUint32(r.sqHead) == r.sqEntries:
				flags = enterSQWait
			default:
				return true
			}
		}
		tail := atomic.LoadUint32(r.cqTail)
		_, errno := r.enter(n, 0, flags, nil)
		switch errno {
		case 0:
			if !r.sqpoll {
				r.noteInline(n, atomic.LoadUint32(r.cqTail)-tail)
			}
			return true
		case syscall.EINTR:
			r.c.retryEnterEINTR.Add(1)
		case syscall.EAGAIN, syscall.EBUSY:
			r.c.retryEnterBusy.Add(1)
			if attempt >= maxBusyRetries {
				r.breakRing("io_uring_enter keeps failing", errno)
				return false
			}
			if r.cqMu.TryLock() {
				r.reap(nil)
				r.cqMu.Unlock()
			}
			backoff(attempt)
		default:
			r.breakRing("io_uring_enter", errno)
			return false
		}
		n = r.sqTailLocal - atomic.LoadUint32(r.sqHead)
		if n == 0 && !r.sqpoll {
			return true
		}
	}
}

// combineBelow is the size under which a submission, when other Submit
// calls are in progress and recent requests completed inside their
// enters, waits for their requests (see gather); larger ones fill an
// enter by themselves.
const combineBelow = 8

// inlineOne is the unit of Ring.inlineRate: all of an enter's requests
// complete when it returns.
const inlineOne = 1024

// noteInline folds one enter into Ring.inlineRate: n SQEs submitted,
// done completions posted while it ran (its own or, rarely, others').
//
// Preconditions: r.sqMu is held.
func (r *Ring) noteInline(n, done uint32) {
	if n == 0 {
		return
	}
	sample := int32(min(done, n) * inlineOne / n)
	rate := r.inlineRate.Load()
	r.inlineRate.Store(rate + (sample-rate)/8)
}

// combineYields bounds the yields of one submission waiting for others;
// it yields again only while the pending queue keeps growing.
const combineYields = 2

// leaderYields is how many times a leader with nothing to reap yields to
// the submitting callers before it waits in the kernel (it yields for as
// long as a submission is gathering): the completion is usually one flush
// away, and a wait in io_uring_enter blocks the thread. With one P it
// stops yielding for a while after a slow yield (leaderYield).
const leaderYields = 2

// gather lets other callers queue their requests before the holder of
// sqMu submits: a read of cached data completes inside io_uring_enter, so
// without a pause every caller would run its own enter from start to end
// before the next one is scheduled. It yields while the pending queue
// grows, at most combineYields times; meanwhile leaders yield instead of
// waiting in the kernel, and the other callers park. Where requests
// complete later, from a device (O_DIRECT), callers are already waiting
// for each other's completions and the pause only adds to every
// request's latency, so Submit gathers only while most of what recent
// enters submitted was complete when they returned (inlineRate).
// Measured with go test -run '^$' -bench 'DirectRead/backend=uring/jobs|
// ParallelRead/file=64MiB/backend=uring' ./uring/ (three runs each): 32
// goroutines of single O_DIRECT reads took 5.7–6.2 µs a read and 2.9–3.1
// µs of CPU without the pause, 6.7–7.2 µs and 3.4–3.5 µs with it; 32
// goroutines of single reads of cached data spent 0.97–1.09 µs of CPU a
// read with it and 1.29–1.30 µs without. With one P it does not pause
// (yieldsHelp).
//
// Preconditions: r.sqMu is held.
func (r *Ring) gather() {
	if !yieldsHelp() {
		return
	}
	r.gathering.Store(true)
	for n, seen := 0, int32(-1); n < combineYields; n++ {
		p := r.pendingN.Load()
		if p == seen {
			break // nobody joined
		}
		seen = p
		r.gatherYields.Add(1)
		runtime.Gosched()
	}
	r.gathering.Store(false)
}

// maxBusyRetries bounds consecutive EAGAIN/EBUSY answers from
// io_uring_enter (with backoff, about ten seconds) before the ring is
// declared broken.
const maxBusyRetries = 1000

// backoff sleeps a little longer on each attempt, up to 10ms. The first
// attempts only yield, except under one P (yieldsHelp), where they sleep
// 50µs: callers may hold sqMu.
func backoff(attempt int) {
	if attempt < 4 && yieldsHelp() {
		runtime.Gosched()
		return
	}
	d := time.Duration(max(attempt, 1)) * 50 * time.Microsecond
	if d > 10*time.Millisecond {
		d = 10 * time.Millisecond
	}
	time.Sleep(d)
}

// enter calls io_uring_enter, through the injector when one is set. A wait
// is bounded by waitTimeout when the kernel supports EXT_ARG.
func (r *Ring) enter(toSubmit, minComplete, flags uint32, ts *unix.Timespec) (int, syscall.Errno) {
	r.c.enters.Add(1)
	if minComplete > 0 {
		r.c.waits.Add(1)
	}
	if r.inj != nil {
		if errno := r.inj.Enter(); errno != 0 {
			return 0, errno
		}
	}
	var arg unsafe.Pointer
	var argSize uintptr
	var ext getEventsArg
	if ts != nil && r.features&FeatExtArg != 0 {
		ext.ts = uint64(uintptr(unsafe.Pointer(ts)))
		arg, argSize = unsafe.Pointer(&ext), unsafe.Sizeof(ext)
		flags |= enterExtArg
	}
	n, _, e := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit),
		uintptr(minComplete), uintptr(flags), uintptr(arg), argSize)
	runtime.KeepAlive(ts)
	if e != 0 {
		return 0, e
	}
	if toSubmit > 0 && !r.sqpoll {
		// With SQPOLL the kernel answers a wakeup with to_submit, not
		// with what it consumed; fillSQ counts those SQEs instead.
		r.c.sqes.Add(uint64(n))
	}
	return int(n), 0
}

// refillStep is how many of its requests in flight a Submit call with more
// to queue waits for before it queues more: an eighth of the slots, so
// that the kernel's queue stays at least seven eighths full and each
// refill still fills an enter with many SQEs.
func (r *Ring) refillStep() int32 { return int32(max(1, len(r.slots)/8)) }

// await returns when at most target requests of w are incomplete. A
// caller that is not leading waits for a token, which comes when all of
// its requests are complete or when it is to lead; only a leader returns
// with requests still in flight.
func (r *Ring) await(w *waiter, target int32) {
	for w.remaining.Load() > target {
		if r.cqMu.TryLock() {
			r.lead(w, target)
			r.cqMu.Unlock()
			if w.remaining.Load() > target && r.currentState() == ringClosed {
				<-w.wake // Close reaps from now on and wakes us
				continue
			}
			r.handoff(w)
			continue
		}
		<-w.wake
	}
}

// lead reaps completions until at most target requests of w are
// incomplete, waiting in the kernel when none are ready.
//
// While it runs outside a kernel wait, leaderAwake tells Submit callers
// that their requests will go out with the leader's next flush, so they
// do not enter the kernel themselves: the callers its completions woke
// queue their next requests while it yields, and one enter then carries
// them all. Before it waits or returns it clears the flag and flushes
// again; a caller stores to pendingN before it loads the flag, the
// leader stores the flag before it loads pendingN, so either the leader
// sees the request or the caller sees the flag clear and flushes.
//
// Preconditions: r.cqMu is held.
func (r *Ring) lead(w *waiter, target int32) {
	r.leaderAwake.Store(true)
	r.leadLoop(w, target)
	r.leaderAwake.Store(false)
	r.flush()
}

// leaveToLeader reports whether a caller that has just queued requests
// may leave their submission to the completion leader: the leader is
// awake (see lead) and recent requests completed from a device, after
// their enters returned. Where they complete inside the enter (data in
// the kernel's cache), gather batches them instead: leaving them to the
// leader there measured 8 SQEs an enter against 13–14, and no less CPU.
// With 32 goroutines of single O_DIRECT reads (go test -run '^$' -bench
// 'DirectRead/backend=uring/jobs' ./uring/, six runs each, alternated
// with the code that always flushed): 3.8–4.4 SQEs an enter against
// 1.9, and 2.61–3.00 µs of CPU a read against 2.72–3.05, which is
// within this machine's noise.
func (r *Ring) leaveToLeader() bool {
	return r.leaderAwake.Load() && r.inlineRate.Load() < inlineOne/2
}

// leadLoop is lead's loop.
//
// Preconditions: r.cqMu is held; r.leaderAwake is set.
func (r *Ring) leadLoop(w *waiter, target int32) {
	ts := unix.NsecToTimespec(int64(waitTimeout))
	yields, busy := 0, 0
	for {
		r.reap(w)
		if w.remaining.Load() <= target {
			return
		}
		r.flush()
		if w.remaining.Load() <= target {
			return
		}
		switch r.currentState() {
		case ringBroken:
			r.finishBroken()
		case ringClosed:
			// Close waits for cqMu to reap (and, past a deadline, cancel)
			// what is left; a leader waiting on a request that never
			// completes would keep it out forever.
			return
		}
		if atomic.LoadUint32(r.cqTail) != atomic.LoadUint32(r.cqHead) {
			continue
		}
		if w.remaining.Load() <= target {
			return
		}
		if (r.gathering.Load() || (yields < leaderYields && r.submitters.Load() > 1)) && r.leaderYield() {
			yields++
			continue
		}
		r.leaderAwake.Store(false)
		r.flush()
		_, errno := r.enter(0, r.waitFor(w, target), enterGetEvents, &ts)
		r.leaderAwake.Store(true)
		switch errno {
		case 0, syscall.ETIME:
			busy = 0
		case syscall.EINTR:
			r.c.retryEnterEINTR.Add(1)
		case syscall.EAGAIN, syscall.EBUSY:
			r.c.retryEnterBusy.Add(1)
			if busy++; busy > maxBusyRetries {
				r.breakRing("io_uring_enter wait keeps failing", errno)
			}
			backoff(8 + busy)
		default:
			r.breakRing("io_uring_enter wait", errno)
			time.Sleep(time.Millisecond)
		}
	}
}

// waitFor is how many completions the leader waits for in one enter: up
// to maxWaitBatch of its own requests in the kernel beyond the target of
// its await when it is the only
// caller waiting (a big batch then costs few enters, where the kernel
// completes buffered writes one by one), else one, so that other callers'
// completions are delivered as they come. A caller arriving during a wait
// is delayed by at most maxWaitBatch completions.
func (r *Ring) waitFor(w *waiter, target int32) uint32 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.waitHead != w || w.next != nil {
		return 1
	}
	inKernel := r.used - r.pendLn
	return uint32(max(min(int(w.remaining.Load()-target), inKernel, maxWaitBatch), 1))
}

// maxWaitBatch bounds the completions one wait asks for.
const maxWaitBatch = 16

// stateErr is the error for work refused in the ring's current state.
//
// Preconditions: r.mu is held.
func (r *Ring) stateErr() error {
	if r.state == ringClosed {
		return ErrClosed
	}
	return ErrBroken
}

// handoff passes completion leadership to the oldest caller other than
// self still waiting, when requests remain in flight. (self, back from
// leading, is running: it leads again at its next await if nobody does.)
func (r *Ring) handoff(self *waiter) {
	r.mu.Lock()
	if r.used > 0 {
		for w := r.waitHead; w != nil; w = w.next {
			if w != self && w.remaining.Load() > 0 {
				select {
				case w.wake <- struct{}{}:
				default: // already has a token
				}
				break
			}
		}
	}
	r.mu.Unlock()
}

// reap consumes every ready CQE. self is the leader's own waiter (nil when
// reaping from the submit side); it is never sent a token.
//
// Preconditions: r.cqMu is held.
func (r *Ring) reap(self *waiter) {
	var batch [64]cqe
	for {
		head := atomic.LoadUint32(r.cqHead)
		tail := atomic.LoadUint32(r.cqTail)
		n := 0
		for ; head != tail && n < len(batch); head++ {
			batch[n] = r.cqes[head&r.cqMask]
			n++
		}
		if n == 0 {
			break
		}
		atomic.StoreUint32(r.cqHead, head)
		r.c.completions.Add(uint64(n))
		r.deliver(batch[:n], self)
	}
	r.checkOverflow()
}

// deliver applies completions to their slots and wakes finished callers.
//
// Preconditions: r.cqMu is held.
func (r *Ring) deliver(batch []cqe, self *waiter) {
	if r.inj != nil {
		r.injectCompletions(batch)
	}
	var woken wakeList
	resubmit := false
	r.mu.Lock()
	for i := range batch {
		c := &batch[i]
		if r.testDrop.Load() > 0 && c.userData != drainUserData {
			r.testDrop.Add(-1)
			r.dropped++
			continue
		}
		switch c.userData {
		case drainUserData:
			r.failInflightLocked(&woken)
			continue
		case cancelUserData:
			continue
		}
		if !r.completeLocked(uint32(c.userData), uint32(c.userData>>32), c.res, &woken) {
			resubmit = true
		}
	}
	r.mu.Unlock()
	woken.wakeExcept(self)
	if resubmit {
		r.flush()
	}
}

// injectCompletions lets the injector rewrite results. It runs without
// r.mu held because the injector may sleep.
//
// Preconditions: r.cqMu is held.
func (r *Ring) injectCompletions(batch []cqe) {
	var reqs [64]*Request
	r.mu.Lock()
	for i := range batch {
		idx, gen := uint32(batch[i].userData), uint32(batch[i].userData>>32)
		if int(idx) < len(r.slots) && r.slots[idx].gen == gen {
			reqs[i] = r.slots[idx].req
		}
	}
	r.mu.Unlock()
	for i := range batch {
		if reqs[i] != nil {
			batch[i].res = r.inj.Complete(reqs[i], batch[i].res)
		}
	}
}

// completeLocked applies one result to a slot. It returns false when the
// request was queued again for its remainder.
//
// Preconditions: r.mu is held.
func (r *Ring) completeLocked(idx, gen uint32, res int32, woken *wakeList) bool {
	if int(idx) >= len(r.slots) || r.slots[idx].gen != gen || r.slots[idx].req == nil {
		r.log.Error("ringfs: completion for unknown request", "user_data", uint64(gen)<<32|uint64(idx))
		return true
	}
	s := &r.slots[idx]
	if r.state == ringOpen && retryCanceled(s.req, &s.prog, res, &r.c) {
		r.pushPending(idx)
		return false
	}
	if !settle(s.req, &s.prog, res, &r.c) {
		if r.state == ringOpen {
			r.pushPending(idx)
			return false
		}
		// A broken or closing ring submits nothing more.
		s.req.N, s.req.Err = s.prog.done, r.stateErr()
		r.c.errors.Add(1)
	}
	r.releaseSlotLocked(idx, woken)
	return true
}

// releaseSlotLocked frees a finished slot and counts it off its waiter.
//
// Preconditions: r.mu is held.
func (r *Ring) releaseSlotLocked(idx uint32, woken *wakeList) {
	s := &r.slots[idx]
	w := s.w
	s.req, s.w = nil, nil
	r.free = append(r.free, idx)
	r.used--
	r.c.addInflight(-1)
	r.freeCond.Signal()
	if w.remaining.Add(-1) == 0 {
		woken.add(w)
	}
}

// wakeList collects waiters to wake after r.mu is released.
type wakeList struct {
	n     int
	ws    [32]*waiter
	extra []*waiter
}

func (l *wakeList) add(w *waiter) {
	if l.n < len(l.ws) {
		l.ws[l.n] = w
		l.n++
		return
	}
	l.extra = append(l.extra, w)
}

func (l *wakeList) wake() { l.wakeExcept(nil) }

func (l *wakeList) wakeExcept(self *waiter) {
	for _, w := range l.ws[:l.n] {
		if w != self {
			w.signal()
		}
	}
	for _, w := range l.extra {
		if w != self {
			w.signal()
		}
	}
}

func (w *waiter) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// takeWaiter returns an idle waiter.
//
// Preconditions: r.mu is held.
func (r *Ring) takeWaiter() *waiter {
	if n := len(r.spare); n > 0 {
		w := r.spare[n-1]
		r.spare = r.spare[:n-1]
		return w
	}
	return &waiter{wake: make(chan struct{}, 1)}
}

// listWaiter appends w to the waiter list.
//
// Preconditions: r.mu is held.
func (r *Ring) listWaiter(w *waiter) {
	w.listed = true
	w.next = nil
	if r.waitHead == nil {
		w.prev = nil
		r.waitHead, r.waitTail = w, w
		return
	}
	r.waitTail.next, w.prev = w, r.waitTail
	r.waitTail = w
}

// releaseWaiter unlists w and keeps it for reuse.
func (r *Ring) releaseWaiter(w *waiter) {
	r.mu.Lock()
	if w.listed {
		if w.prev != nil {
			w.prev.next = w.next
		} else {
			r.waitHead = w.next
		}
		if w.next != nil {
			w.next.prev = w.prev
		} else {
			r.waitTail = w.prev
		}
		w.prev, w.next, w.listed = nil, nil, false
	}
	select {
	case <-w.wake: // a stale token
	default:
	}
	r.spare = append(r.spare, w)
	r.mu.Unlock()
}

// yieldsHelp reports whether gather and backoff may yield with
// runtime.Gosched: not with one P (GOMAXPROCS 1). Gosched puts its caller
// on the scheduler's global queue, which one P serves only now and then
// while the goroutines it runs wake each other (through mutexes, as
// cache hits and writes do), and their callers hold sqMu: every request
// of the ring waited for them, for up to tens of milliseconds a yield
// (TestOnePNoStarvation). With one P gather's pause measured no gain
// (engine BenchmarkSharedRead and ReadMiss/io=buffered under
// GOMAXPROCS=1: the same figures with and without it). GOMAXPROCS is
// read each time, because the runtime may change it.
func yieldsHelp() bool { return runtime.GOMAXPROCS(0) > 1 }

// The completion leader's yields (see leaderYields) are worth keeping with
// one P: there a wait in io_uring_enter holds the only P until the
// runtime's monitor takes it back (tens of microseconds), so 32
// goroutines of O_DIRECT reads under GOMAXPROCS=1 made 2.5–2.7× the reads
// of os.File with them and 0.8–0.9× without (go test -run '^$' -bench
// DirectRead ./engine/). But a yield can also take tens of milliseconds
// there (see yieldsHelp). So with one P the leader times each yield, and
// after one slower than slowYield it does not yield for yieldPause times
// as long: at most a twenty-first of the time goes to slow yields
// (TestOnePNoStarvation checks the bound). Timed once with a histogram
// not kept in the code: in that benchmark all of some 16,000 yields
// returned within 100µs; in reliability row K4 (readers of cached data
// beside writeback and Truncate), 20 of 197 took 10–100 ms.
const (
	slowYield  = time.Millisecond
	yieldPause = 20
)

// leaderYield yields the leader's P once, unless there is one P and the
// leader is pausing its yields, and reports whether it yielded. With one
// P it times the yield (see slowYield).
func (r *Ring) leaderYield() bool {
	if runtime.GOMAXPROCS(0) > 1 {
		r.leadYields.Add(1)
		runtime.Gosched()
		return true
	}
	t0 := time.Since(ringEpoch)
	if t0 < time.Duration(r.noYieldUntil.Load()) {
		return false
	}
	r.leadYields.Add(1)
	runtime.Gosched()
	if d := time.Since(ringEpoch) - t0; d > slowYield {
		r.noYieldUntil.Store(int64(t0 + d + yieldPause*d))
		r.slowYields.Add(1)
		r.slowYieldNs.Add(int64(d))
		if int64(d) > r.maxSlowYieldNs.Load() {
			r.maxSlowYieldNs.Store(int64(d))
		}
	}
	return true
}

// ringEpoch is the origin of Ring.noYieldUntil (monotonic clock).
var ringEpoch = time.Now()
