//go:build linux

package uring

import (
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// psync runs each request with the equivalent synchronous syscall in the
// calling goroutine. It is the fallback where io_uring is blocked and the
// reference the native ring is tested against.
type psync struct {
	inj    Injector
	reason string
	c      *counters // own, or the native ring's for its inline requests
	own    counters
	inline bool // count syscalls as inline requests of a ring
	closed atomic.Bool

	// files is the registered file table.
	files fileTable

	mu sync.RWMutex
	// bufs are the registered buffers' address ranges, which fixed reads
	// and writes are checked against as the kernel checks them (nil: none
	// registered). +checklocks:mu
	bufs []memRange
}

// memRange is the address range [start, end) of a registered buffer.
type memRange struct{ start, end uintptr }

var _ Backend = (*psync)(nil)

func newPsync(opts Options, reason string) *psync {
	p := &psync{inj: opts.Injector, reason: reason}
	p.c = &p.own
	return p
}

func (p *psync) Name() string { return BackendPsync }

func (p *psync) Submit(reqs []Request) error {
	p.c.submits.Add(1)
	p.c.requests.Add(uint64(len(reqs)))
	if p.closed.Load() {
		failAll(reqs, ErrClosed)
		return ErrClosed
	}
	ip := getIovecs()
	iov := *ip
	for i := range reqs {
		iov = p.run(&reqs[i], iov)
	}
	putIovecs(ip, iov)
	return nil
}

// iovecPool recycles the iovec arrays that vectored requests run with
// plain syscalls need, so that running them allocates nothing.
var iovecPool = sync.Pool{New: func() any { iov := make([]unix.Iovec, 0, 8); return &iov }}

// getIovecs returns an empty iovec array from the pool.
func getIovecs() *[]unix.Iovec { return iovecPool.Get().(*[]unix.Iovec) }

// putIovecs returns ip to the pool with iov, the array as run grew it.
func putIovecs(ip *[]unix.Iovec, iov []unix.Iovec) {
	*ip = iov[:0]
	iovecPool.Put(ip)
}

// failAll sets err on every request.
func failAll(reqs []Request, err error) {
	for i := range reqs {
		reqs[i].N, reqs[i].Err = 0, err
	}
}

func (p *psync) run(r *Request, iov []unix.Iovec) []unix.Iovec {
	r.N, r.Err = 0, nil
	if errno := r.validate(); errno != 0 {
		finish(r, 0, errno, p.c)
		return iov
	}
	if (r.Op.IsRead() || r.Op.IsWrite()) && r.length() == 0 {
		return iov
	}
	var pr progress
	for {
		var res int32
		iov, res = p.once(r, &pr, iov)
		p.c.completions.Add(1)
		if !retryCanceled(r, &pr, res, p.c) && settle(r, &pr, res, p.c) {
			return iov
		}
	}
}

// fdOpen reports whether fd is an open descriptor.
func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}

// once makes one attempt at the remainder of r and returns its result as
// the kernel would report it in a CQE.
func (p *psync) once(r *Request, pr *progress, iov []unix.Iovec) ([]unix.Iovec, int32) {
	if p.inj != nil {
		if errno := p.enterFault(); errno != 0 {
			return iov, -int32(errno)
		}
		if res, fail := p.inj.Issue(r); fail {
			return iov, res
		}
	}
	fd, errno := int(r.Fd), syscall.Errno(0)
	if r.Fixed && r.Op != OpNop { // (the kernel looks up no file for a NOP)
		// The table's descriptor must stay open until the syscall is done.
		p.files.mu.RLock()
		defer p.files.mu.RUnlock()
		var tfd int32
		tfd, errno = p.files.resolveLocked(r.Fd)
		fd = int(tfd)
	}
	if errno == 0 && (r.Op == OpReadFixed || r.Op == OpWriteFixed) {
		if errno = p.checkFixedBuf(r); errno != 0 && !fdOpen(fd) {
			errno = syscall.EBADF // the kernel looks at the file first
		}
	}
	if errno != 0 {
		return iov, -int32(errno)
	}
	if p.inline {
		p.c.inline.Add(1)
	} else {
		p.c.enters.Add(1)
	}
	var n int
	var err error
	off := r.Off + int64(pr.done)
	flags := int(r.Flags)
	switch r.Op {
	case OpNop:
	case OpCancel:
		// Nothing of psync's is in flight to cancel; the kernel still
		// looks up the file.
		if !fdOpen(fd) {
			err = syscall.EBADF
		}
	case OpRead, OpReadFixed:
		b := chunk(r.Buf, pr.done)
		if flags != 0 {
			iov = append(iov[:0], unix.Iovec{Base: &b[0], Len: uint64(len(b))})
			n, err = rwv(true, fd, iov, off, flags)
		} else {
			n, err = unix.Pread(fd, b, off)
		}
	case OpWrite, OpWriteFixed:
		b := chunk(r.Buf, pr.done)
		if flags != 0 {
			iov = append(iov[:0], unix.Iovec{Base: &b[0], Len: uint64(len(b))})
			n, err = rwv(false, fd, iov, off, flags)
		} else {
			n, err = unix.Pwrite(fd, b, off)
		}
	case OpReadv, OpWritev:
		iov = fillIovecs(iov, r.Vecs, pr.done)
		n, err = rwv(r.Op == OpReadv, fd, iov, off, flags)
	case OpFsync:
		if r.Flags&FsyncDatasync != 0 {
			err = unix.Fdatasync(fd)
		} else {
			err = unix.Fsync(fd)
		}
	case OpFallocate:
		err = unix.Fallocate(fd, r.Flags, r.Off, r.Len)
	case OpSyncFileRange:
		err = unix.SyncFileRange(fd, r.Off, r.Len, int(r.Flags))
	case OpFtruncate:
		err = unix.Ftruncate(fd, r.Off)
	}
	res := int32(n)
	if err != nil {
		res = -int32(errnoOf(err))
	}
	if p.inj != nil {
		res = p.inj.Complete(r, res)
	}
	return iov, res
}

// enterFault consults the injector's Enter before a syscall. In psync
// the fault is the syscall's own failure (settle retries EINTR and EAGAIN
// as it would a completion's). The inline requests of a ring stand in for
// its io_uring_enter and follow its policy (injectedEnter).
func (p *psync) enterFault() syscall.Errno {
	if !p.inline {
		return p.inj.Enter()
	}
	return injectedEnter(p.inj, p.c)
}

// injectedEnter consults inj before an io_uring_enter, or what stands in
// for one, with the ring's policy: EINTR is retried, EAGAIN and EBUSY are
// retried with backoff up to maxBusyRetries times, and any other errno
// (or the last EAGAIN) is returned.
func injectedEnter(inj Injector, c *counters) syscall.Errno {
	for attempt := 0; ; attempt++ {
		switch errno := inj.Enter(); errno {
		case syscall.EINTR:
			c.retryEnterEINTR.Add(1)
		case syscall.EAGAIN, syscall.EBUSY:
			c.retryEnterBusy.Add(1)
			if attempt >= maxBusyRetries {
				return errno
			}
			backoff(attempt)
		default:
			return errno
		}
	}
}

// rwv is preadv2/pwritev2 on prepared iovecs (x/sys takes [][]byte and
// would allocate its own).
func rwv(read bool, fd int, iov []unix.Iovec, off int64, flags int) (int, error) {
	trap := uintptr(unix.SYS_PWRITEV2)
	if read {
		trap = unix.SYS_PREADV2
	}
	if len(iov) == 0 {
		return 0, nil
	}
	n, _, e := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)),
		uintptr(off), 0, uintptr(flags))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// checkFixedBuf fails a fixed read or write whose bytes do not lie in the
// registered buffer it names with EFAULT, as the kernel does. A ring's
// inline psync holds the ranges the ring registered (setBuffers).
func (p *psync) checkFixedBuf(r *Request) syscall.Errno {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if int(r.BufIndex) >= len(p.bufs) {
		return syscall.EFAULT
	}
	b, start := p.bufs[r.BufIndex], uintptr(unsafe.Pointer(unsafe.SliceData(r.Buf)))
	if start < b.start || start+uintptr(len(r.Buf)) > b.end {
		return syscall.EFAULT
	}
	return 0
}

// RegisterBuffers keeps the buffers' ranges to check fixed requests
// against; psync reads and writes the memory directly. It refuses what
// the kernel refuses: no buffers or too many, an empty or oversized one
// (EINVAL), and a second registration (EBUSY).
func (p *psync) RegisterBuffers(bufs [][]byte) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if errno := checkRegBuffers(bufs); errno != 0 {
		return errno
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bufs != nil {
		return syscall.EBUSY
	}
	p.setBuffersLocked(bufs)
	return nil
}

// setBuffers replaces the registered buffers' ranges with bufs' (none for
// nil), for a ring's inline psync, which mirrors what the ring's kernel
// accepted.
func (p *psync) setBuffers(bufs [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setBuffersLocked(bufs)
}

// setBuffersLocked sets the registered buffers' ranges to bufs'.
//
// Preconditions: p.mu is held.
func (p *psync) setBuffersLocked(bufs [][]byte) {
	if bufs == nil {
		p.bufs = nil
		return
	}
	p.bufs = make([]memRange, len(bufs))
	for i, b := range bufs {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		p.bufs[i] = memRange{start, start + uintptr(len(b))}
	}
}

// UnregisterBuffers drops the registered buffers (ENXIO when there are
// none, as from the kernel).
func (p *psync) UnregisterBuffers() error {
	if p.closed.Load() {
		return ErrClosed
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bufs == nil {
		return syscall.ENXIO
	}
	p.bufs = nil
	return nil
}

// RegisterFiles, UpdateFiles and UnregisterFiles keep the registered
// file table as the kernel keeps a ring's (fileTable).
func (p *psync) RegisterFiles(fds []int32) error {
	if p.closed.Load() {
		return ErrClosed
	}
	return p.files.register(fds)
}

func (p *psync) UpdateFiles(off int, fds []int32) error {
	if p.closed.Load() {
		return ErrClosed
	}
	return p.files.update(off, fds)
}

func (p *psync) UnregisterFiles() error {
	if p.closed.Load() {
		return ErrClosed
	}
	return p.files.unregister()
}

func (p *psync) Supports(op Op) bool { return op < numOps }

func (p *psync) Stats() Stats {
	s := Stats{Backend: BackendPsync, FallbackReason: p.reason}
	p.c.snapshot(&s)
	return s
}

func (p *psync) Close() error {
	if p.closed.Swap(true) {
		return ErrClosed
	}
	p.files.close() // after every request on a registered file
	p.mu.Lock()
	p.bufs = nil
	p.mu.Unlock()
	return nil
}

// errnoOf extracts the errno from a syscall error.
func errnoOf(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}
