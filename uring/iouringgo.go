//go:build linux && iouringgo

package uring

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	iouring "github.com/iceber/iouring-go"
	iosys "github.com/iceber/iouring-go/syscall"
	"golang.org/x/sys/unix"
)

// iouringgoRing is the backend built on github.com/iceber/iouring-go. It
// exists to be measured against the native ring; it allocates per request
// (the library's closures, user data, map entries and channel sends) and
// every completion travels eventfd → epoll goroutine → the library's
// completion goroutine → a channel.
//
// Semantics are those of the other backends: requests are checked with
// validate, short transfers, -EINTR and -EAGAIN are resolved by settle, and
// the Injector is consulted at the same points as in psync (Enter before
// each io_uring_enter, Issue before an SQE is prepared, Complete on each
// result).
//
// The library registers files by descriptor and compacts away empty slots,
// so the registered file table (where -1 marks a hole) cannot be expressed
// through it: Fixed requests are resolved against the table here, as psync
// does, and submitted with the plain descriptor. Registered buffers are
// registered with the kernel, and READ_FIXED/WRITE_FIXED are real.
//
// Lock order: closeMu (read by Submit and registration, written by Close)
// → files.mu (read from the preparation of a batch's SQEs to their
// submission, so that the descriptors of Fixed requests stay open).
type iouringgoRing struct {
	ring      *iouring.IOURing
	inj       Injector
	sqEntries uint32
	cqEntries uint32
	features  uint32
	// credits bounds the requests in flight (the CQ size by default):
	// a request holds one token from before its SQE is written until its
	// result is read.
	credits chan struct{}
	c       counters

	closing atomic.Bool
	broken  atomic.Bool
	// closeMu is held for reading while a Submit or a registration runs
	// and for writing by Close, which so waits for them.
	closeMu sync.RWMutex
	closed  bool // +checklocks:closeMu

	// files is the registered file table, resolved here (see above).
	files fileTable
}

var _ Backend = (*iouringgoRing)(nil)

func newIouringgo(opts Options) (Backend, error) {
	entries := opts.Entries
	if entries == 0 {
		entries = DefaultEntries
	}
	if entries > MaxEntries {
		entries = MaxEntries
	}
	for e := uint32(1); ; e <<= 1 {
		if e >= entries {
			entries = e
			break
		}
	}
	if opts.setupHook != nil {
		if err := opts.setupHook(); err != nil {
			return nil, err
		}
	}
	mk := func(flags uint32) *iosys.IOURingParams {
		// Options.SQPoll is not honoured: the library waits for SQ space
		// by spinning under its submit lock and wakes a sleeping poll
		// thread only after it has all its SQEs, so a full SQ whose poll
		// thread fell asleep never drains (TestSQPoll hung on it).
		return &iosys.IOURingParams{Flags: flags | iosys.IORING_SETUP_CQSIZE | iosys.IORING_SETUP_CLAMP, CQEntries: 2 * entries}
	}
	// SUBMIT_ALL keeps the kernel from stopping a batch at an SQE that
	// fails at submission (a bad buffer index, say); without it the rest
	// would stay in the SQ until some later enter.
	p := mk(iosys.IORING_SETUP_SUBMIT_ALL)
	ring, err := iouring.New(uint(entries), iouring.WithParams(p))
	if errors.Is(err, syscall.EINVAL) {
		p = mk(0) // kernels before 5.18
		ring, err = iouring.New(uint(entries), iouring.WithParams(p))
	}
	if err != nil {
		return nil, &BackendError{Reason: "io_uring_setup (iouring-go)", Errno: errnoIn(err)}
	}
	g := &iouringgoRing{
		ring:      ring,
		inj:       opts.Injector,
		sqEntries: uint32(ring.Size()),
		cqEntries: p.CQEntries,
		features:  ring.Features,
	}
	n := int(g.cqEntries)
	if opts.maxInflight > 0 {
		n = opts.maxInflight
	}
	g.credits = make(chan struct{}, n)
	return g, nil
}

// errnoIn finds the errno inside an error of the library.
func errnoIn(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.EIO
}

func (g *iouringgoRing) Name() string { return BackendIouringgo }

// gop is the state of one request of a Submit call.
type gop struct {
	req  *Request
	prog progress
	iov  []unix.Iovec
}

// gqueue is a FIFO of requests waiting for an SQE.
type gqueue struct {
	items []*gop
	head  int
}

func (q *gqueue) push(o *gop) { q.items = append(q.items, o) }
func (q *gqueue) len() int    { return len(q.items) - q.head }
func (q *gqueue) pop() *gop {
	o := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
	return o
}

// Submit runs reqs and returns when every one is complete. Batches larger
// than the SQ (the library refuses them) or than the free in-flight
// credits are submitted in pieces; results are consumed as they arrive and
// unfinished requests are queued again.
func (g *iouringgoRing) Submit(reqs []Request) error {
	g.c.submits.Add(1)
	g.c.requests.Add(uint64(len(reqs)))
	if g.closing.Load() {
		failAll(reqs, ErrClosed)
		return ErrClosed
	}
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if g.closed {
		failAll(reqs, ErrClosed)
		return ErrClosed
	}
	if g.broken.Load() {
		failAll(reqs, ErrBroken)
		return ErrBroken
	}
	ops := make([]gop, len(reqs))
	var q gqueue
	for i := range reqs {
		r := &reqs[i]
		r.N, r.Err = 0, nil
		if errno := r.validate(); errno != 0 {
			finish(r, 0, errno, &g.c)
			continue
		}
		if (r.Op.IsRead() || r.Op.IsWrite()) && r.length() == 0 {
			continue
		}
		ops[i].req = r
		q.push(&ops[i])
	}
	if q.len() == 0 {
		return nil
	}
	// The library's completion goroutine sends every result on ch and
	// blocks while ch is full; ch holds as many results as this call can
	// have in flight, so it never does.
	ch := make(chan iouring.Result, min(q.len(), cap(g.credits)))
	inflight := 0
	var err error
	for q.len() > 0 || inflight > 0 {
		if q.len() > 0 {
			if err != nil {
				for q.len() > 0 {
					o := q.pop()
					o.req.N, o.req.Err = o.prog.done, err
					g.c.errors.Add(1)
				}
				continue
			}
			n := g.acquire(min(q.len(), int(g.sqEntries)), inflight == 0)
			if n > 0 {
				var sent int
				sent, err = g.issue(&q, n, ch)
				inflight += sent
			}
		}
		if inflight == 0 {
			continue
		}
		g.reap(<-ch, &q)
		inflight--
		for inflight > 0 {
			select {
			case res := <-ch:
				g.reap(res, &q)
				inflight--
				continue
			default:
			}
			break
		}
	}
	if err == nil {
		for i := range reqs {
			if be, ok := reqs[i].Err.(*BackendError); ok {
				return be
			}
		}
	}
	return err
}

// acquire takes up to n in-flight credits, waiting for the first only
// when block is set (the caller then holds none, so it cannot deadlock
// against another caller).
func (g *iouringgoRing) acquire(n int, block bool) int {
	got := 0
	if block {
		g.credits <- struct{}{}
		got = 1
	}
	for got < n {
		select {
		case g.credits <- struct{}{}:
			got++
			continue
		default:
		}
		break
	}
	return got
}

func (g *iouringgoRing) release(n int) {
	for range n {
		<-g.credits
	}
}

// issue prepares up to n queued requests, holding n credits, and submits
// them with one io_uring_enter. It returns how many are in flight, and a
// non-nil error when the backend broke.
func (g *iouringgoRing) issue(q *gqueue, n int, ch chan iouring.Result) (int, error) {
	// The descriptors of Fixed requests must stay open until the kernel
	// has taken them (at submission).
	g.files.mu.RLock()
	defer g.files.mu.RUnlock()
	preps := make([]iouring.PrepRequest, 0, n)
	batch := make([]*gop, 0, n)
	for range n {
		o := q.pop()
		if g.inj != nil {
			if res, fail := g.inj.Issue(o.req); fail {
				g.settle(o, res, q)
				continue
			}
		}
		prep, errno := g.prep(o)
		if errno != 0 {
			g.settle(o, -int32(errno), q)
			continue
		}
		preps = append(preps, prep)
		batch = append(batch, o)
	}
	if unused := n - len(batch); unused > 0 {
		g.release(unused)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	if errno := g.enterFaults(); errno != 0 {
		// Nothing reached the kernel: the requests fail with the errno.
		g.release(len(batch))
		for _, o := range batch {
			finish(o.req, o.prog.done, errno, &g.c)
		}
		return 0, nil
	}
	g.c.enters.Add(1)
	if _, err := g.ring.SubmitRequests(preps, ch); err != nil {
		// If io_uring_enter itself failed, the SQEs are already published
		// and the library has forgotten them: the kernel may still run
		// them at a later enter, so their buffers are pinned for good and
		// the backend takes no more work.
		var se *os.SyscallError
		published := errors.As(err, &se) && se.Syscall == "iouring_enter"
		if published {
			g.broken.Store(true)
		}
		g.release(len(batch))
		errno := errnoIn(err)
		for _, o := range batch {
			if published {
				leaked.Lock()
				leaked.reqs = append(leaked.reqs, o.req)
				leaked.Unlock()
				o.req.N, o.req.Err = o.prog.done, ErrBroken
				g.c.errors.Add(1)
			} else {
				finish(o.req, o.prog.done, errno, &g.c)
			}
		}
		if published {
			return 0, ErrBroken
		}
		return 0, nil
	}
	g.c.sqes.Add(uint64(len(batch)))
	g.c.addInflight(len(batch))
	return len(batch), nil
}

// enterFaults consults the injector before an io_uring_enter, with the
// ring's policy (injectedEnter).
func (g *iouringgoRing) enterFaults() syscall.Errno {
	if g.inj == nil {
		return 0
	}
	return injectedEnter(g.inj, &g.c)
}

// reap applies one completion.
func (g *iouringgoRing) reap(res iouring.Result, q *gqueue) {
	o := res.GetRequestInfo().(*gop)
	raw, _ := res.(iouring.Request).GetRes()
	g.c.addInflight(-1) // before the credit is passed on
	g.release(1)
	g.c.completions.Add(1)
	v := int32(raw)
	if g.inj != nil {
		v = g.inj.Complete(o.req, v)
	}
	g.settle(o, v, q)
}

// settle applies a result and queues the request again when unfinished.
func (g *iouringgoRing) settle(o *gop, res int32, q *gqueue) {
	if !g.closing.Load() && retryCanceled(o.req, &o.prog, res, &g.c) {
		q.push(o)
		return
	}
	if !settle(o.req, &o.prog, res, &g.c) {
		q.push(o)
	}
}

// fd resolves the descriptor of r, through the registered table when
// r.Fixed is set.
//
// Preconditions: g.files.mu is held for reading (issue).
func (g *iouringgoRing) fd(r *Request) (int32, syscall.Errno) {
	if !r.Fixed {
		return r.Fd, 0
	}
	return g.files.resolveLocked(r.Fd)
}

// prep returns the library request for the remainder of o.
//
// Preconditions: g.files.mu is held for reading (issue).
func (g *iouringgoRing) prep(o *gop) (iouring.PrepRequest, syscall.Errno) {
	r := o.req
	if r.Op == OpCancel {
		g.c.cancels.Add(1) // as the ring counts it (prepSQE)
	}
	o.prog.cancels = g.c.cancels.Load()
	if r.Op == OpNop {
		return iouring.Nop().WithInfo(o), 0
	}
	fd, errno := g.fd(r)
	if errno != 0 {
		return nil, errno
	}
	done := o.prog.done
	off := uint64(r.Off + int64(done))
	var p iouring.PrepRequest
	switch r.Op {
	case OpRead:
		p = withOpFlags(iouring.Pread(int(fd), chunk(r.Buf, done), off), ringRWFlags(r.Flags))
	case OpWrite:
		p = withOpFlags(iouring.Pwrite(int(fd), chunk(r.Buf, done), off), ringRWFlags(r.Flags))
	case OpReadFixed, OpWriteFixed:
		p = fixedRW(kernelOp[r.Op], fd, chunk(r.Buf, done), off, ringRWFlags(r.Flags), r.BufIndex)
	case OpReadv, OpWritev:
		o.iov = fillIovecs(o.iov, r.Vecs, done)
		p = vectoredRW(kernelOp[r.Op], fd, o.iov, off, ringRWFlags(r.Flags))
	case OpFsync:
		switch {
		case r.Len > 0 && r.Len <= 1<<32-1:
			p = rawPrep(opFsync, fd, 0, uint32(r.Len), uint64(r.Off), r.Flags&FsyncDatasync)
		case r.Flags&FsyncDatasync != 0:
			p = iouring.Fdatasync(int(fd))
		default:
			p = iouring.Fsync(int(fd))
		}
	case OpFallocate:
		p = iouring.Fallocate(int(fd), r.Flags, r.Off, r.Len)
	case OpSyncFileRange:
		var n uint32
		if r.Len <= 1<<32-1 {
			n = uint32(r.Len) // longer ranges sync to end of file
		}
		p = rawPrep(opSyncFileRange, fd, 0, n, uint64(r.Off), r.Flags)
	case OpCancel:
		p = rawPrep(opAsyncCancel, fd, 0, 0, 0, cancelFD|cancelAll)
	case OpFtruncate:
		p = rawPrep(opFtruncate, fd, 0, 0, uint64(r.Off), 0)
	default:
		return nil, syscall.EINVAL
	}
	return p.WithInfo(o), 0
}

// withOpFlags adds RWF_* flags to a library read or write.
func withOpFlags(p iouring.PrepRequest, flags uint32) iouring.PrepRequest {
	if flags == 0 {
		return p
	}
	return func(e iosys.SubmissionQueueEntry, ud *iouring.UserData) {
		p(e, ud)
		e.SetOpFlags(flags)
	}
}

// rawPrep writes an SQE for an opcode the library has no helper for.
func rawPrep(op uint8, fd int32, addr uint64, n uint32, off uint64, opFlags uint32) iouring.PrepRequest {
	return func(e iosys.SubmissionQueueEntry, _ *iouring.UserData) {
		e.PrepOperation(op, fd, addr, n, off)
		e.SetOpFlags(opFlags)
	}
}

// fixedRW is READ_FIXED/WRITE_FIXED on registered buffer bufIndex; b lies
// inside it.
func fixedRW(op uint8, fd int32, b []byte, off uint64, flags uint32, bufIndex uint16) iouring.PrepRequest {
	return func(e iosys.SubmissionQueueEntry, ud *iouring.UserData) {
		e.PrepOperation(op, fd, uint64(uintptr(unsafe.Pointer(&b[0]))), uint32(len(b)), off)
		e.SetOpFlags(flags)
		e.SetBufIndex(bufIndex)
		ud.SetRequestBuffer(b, nil)
	}
}

// vectoredRW is READV/WRITEV on prepared iovecs, which the caller keeps
// until the completion.
func vectoredRW(op uint8, fd int32, iov []unix.Iovec, off uint64, flags uint32) iouring.PrepRequest {
	return func(e iosys.SubmissionQueueEntry, _ *iouring.UserData) {
		e.PrepOperation(op, fd, uint64(uintptr(unsafe.Pointer(&iov[0]))), uint32(len(iov)), off)
		e.SetOpFlags(flags)
	}
}

func (g *iouringgoRing) usable() error {
	if g.closed {
		return ErrClosed
	}
	if g.broken.Load() {
		return ErrBroken
	}
	return nil
}

// RegisterBuffers registers bufs with the kernel for READ_FIXED/WRITE_FIXED.
func (g *iouringgoRing) RegisterBuffers(bufs [][]byte) error {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if err := g.usable(); err != nil {
		return err
	}
	if errno := checkRegBuffers(bufs); errno != 0 {
		return errno
	}
	if err := g.ring.RegisterBuffers(bufs); err != nil {
		return errnoIn(err)
	}
	return nil
}

func (g *iouringgoRing) UnregisterBuffers() error {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if err := g.usable(); err != nil {
		return err
	}
	if err := g.ring.UnRegisterBuffers(); err != nil {
		return errnoIn(err)
	}
	return nil
}

func (g *iouringgoRing) RegisterFiles(fds []int32) error {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if err := g.usable(); err != nil {
		return err
	}
	return g.files.register(fds)
}

func (g *iouringgoRing) UpdateFiles(off int, fds []int32) error {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if err := g.usable(); err != nil {
		return err
	}
	return g.files.update(off, fds)
}

func (g *iouringgoRing) UnregisterFiles() error {
	g.closeMu.RLock()
	defer g.closeMu.RUnlock()
	if err := g.usable(); err != nil {
		return err
	}
	return g.files.unregister()
}

// Supports reports true for every Op: the library needs a kernel that has
// them all (5.6 and later) and offers no probe.
func (g *iouringgoRing) Supports(op Op) bool { return op < numOps }

func (g *iouringgoRing) Stats() Stats {
	s := Stats{Backend: BackendIouringgo, SQEntries: g.sqEntries, CQEntries: g.cqEntries, Features: g.features}
	g.c.snapshot(&s)
	return s
}

// Close waits for running Submit calls, asking the kernel to cancel what
// is in flight if that takes longer than half of drainDeadline, and closes
// the ring. Later calls return ErrClosed.
func (g *iouringgoRing) Close() error {
	if g.closing.Swap(true) {
		return ErrClosed
	}
	locked := make(chan struct{})
	go func() {
		g.closeMu.Lock()
		close(locked)
	}()
	select {
	case <-locked:
	case <-time.After(drainDeadline / 2):
		cancel := rawPrep(opAsyncCancel, -1, 0, 0, 0, cancelAny|cancelAll)
		g.ring.SubmitRequest(cancel, nil)
		<-locked
	}
	g.closed = true
	g.closeMu.Unlock()
	g.files.close()
	if err := g.ring.Close(); err != nil {
		return errnoIn(err)
	}
	return nil
}
