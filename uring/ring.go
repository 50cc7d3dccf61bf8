//go:build linux

package uring

import (
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ring is the native io_uring backend.
//
// Lock order (outermost first):
//
//	Ring.cqMu   completion leadership: reading the CQ and waiting in the kernel
//	  Ring.sqMu submission: writing SQEs and publishing the SQ tail
//	    Ring.mu slots, pending queue, waiters
//
// sqMu and cqMu are only ever taken with TryLock while another lock is held,
// except by breakRing and Close, which take them in the order above.
type Ring struct {
	fd       int
	features uint32
	sqpoll   bool
	inj      Injector
	log      *slog.Logger
	probe    Probe

	sqRing, cqRing, sqeMem []byte // the kernel's mmaps; nil after Close

	sqHead, sqTail, sqFlags *uint32
	sqMask, sqEntries       uint32
	sqes                    []sqe
	cqHead, cqTail, cqOver  *uint32
	cqMask, cqEntries       uint32
	cqes                    []cqe

	c counters
	// inline runs requests given to Do with plain syscalls, counting into c.
	inline psync

	// cqMu is held by the goroutine that reaps completions (the leader).
	cqMu sync.Mutex
	// lastOverflow is the kernel's dropped-CQE count last seen. +checklocks:cqMu
	lastOverflow uint32
	// testDrop makes the reaper discard this many CQEs, as a kernel that
	// dropped them would (tests of broken-ring handling).
	testDrop atomic.Int32
	// dropped counts CQEs discarded by testDrop. +checklocks:cqMu
	dropped uint32

	// sqMu is held while SQEs are written and submitted.
	sqMu sync.Mutex
	// sqTailLocal is the SQ tail including SQEs not yet published. +checklocks:sqMu
	sqTailLocal uint32

	// pendingN mirrors len of the pending queue for lock-free checks.
	pendingN atomic.Int32
	// submitters counts Submit calls in progress; when there are several,
	// small submissions wait a moment for each other (see Submit).
	submitters atomic.Int32
	// gathering is set while the holder of sqMu waits for other callers'
	// requests (see gather).
	gathering atomic.Bool
	// gatherYields and leadYields count the runtime.Gosched calls of
	// gather and lead; slowYields, slowYieldNs and maxSlowYieldNs count
	// the leader's slow ones under one P (for tests, see leaderYield).
	gatherYields, leadYields                atomic.Int64
	slowYields, slowYieldNs, maxSlowYieldNs atomic.Int64
	// noYieldUntil is when (ns since ringEpoch) the leader may yield
	// again under one P. Written by the holder of cqMu.
	noYieldUntil atomic.Int64
	// inlineRate is how much of what recent enters submitted was already
	// complete when the enter returned, in 1/inlineOne units, averaged
	// over a few enters; gather pays only when it is high. Written by the
	// holder of sqMu.
	inlineRate atomic.Int32
	// leaderAwake is set while the completion leader runs in lead outside
	// a kernel wait: it flushes the pending queue before it waits or
	// returns, so a caller that queued requests may leave them to it
	// (see Submit). Written by the holder of cqMu.
	leaderAwake atomic.Bool

	mu sync.Mutex
	// slots holds one entry per request the ring may have in flight; a
	// request's user_data is its slot index and the slot's generation.
	// Each slot's fields are guarded by mu while the slot is in use.
	slots []slot
	// free is a stack of free slot indices. +checklocks:mu
	free []uint32
	// freeCond is signalled when slots are freed or the ring closes.
	freeCond sync.Cond
	// pend is a FIFO (ring buffer) of slot indices whose SQEs are not
	// written yet: new requests and resubmissions. +checklocks:mu
	pend             []uint32
	pendHead, pendLn int // +checklocks:mu
	// waiters lists the Submit calls with requests outstanding, oldest
	// first; leadership is handed to one of them. +checklocks:mu
	waitHead, waitTail *waiter
	// spare holds idle waiters for reuse. +checklocks:mu
	spare []*waiter
	// used is the number of slots not free. +checklocks:mu
	used int
	// state is open, broken or closed. +checklocks:mu
	state ringState
	// stateNow mirrors state for reads without r.mu (usable,
	// currentState): stored under mu with every change of state.
	stateNow atomic.Uint32
	// closeMu is held for writing while Close releases the fd, and for
	// reading by io_uring_register calls, so none runs on a stale fd.
	closeMu sync.RWMutex
	// drainSent is set once the drain NOP of a broken ring is queued. +checklocks:mu
	drainSent bool
}

type ringState uint8

const (
	ringOpen ringState = iota
	ringBroken
	ringClosed
)

// slot is one request in flight.
type slot struct {
	req  *Request
	w    *waiter
	prog progress
	gen  uint32
	iov  []unix.Iovec // readv/writev vectors; kept across uses
}

// waiter is one Submit call waiting for its requests.
type waiter struct {
	// remaining counts the call's queued requests not yet complete; it is
	// changed under Ring.mu and read atomically.
	remaining atomic.Int32
	// wake carries a token when remaining reaches zero or when the waiter
	// is asked to take over reaping.
	wake       chan struct{}
	prev, next *waiter // Ring.waitHead list; +checklocks:Ring.mu
	listed     bool    // +checklocks:Ring.mu
}

// User data of the ring's own SQEs (never slot indices).
const (
	drainUserData  = 1<<64 - 1 // the IO_DRAIN NOP of a broken ring
	cancelUserData = 1<<64 - 2 // the cancel-everything of Close
)

// waitTimeout bounds one wait in the kernel, so that a leader re-checks the
// ring's state (broken, closing) at least this often.
const waitTimeout = 100 * time.Millisecond

var _ Backend = (*Ring)(nil)

// newRing sets up an io_uring instance.
func newRing(opts Options) (*Ring, error) {
	entries := opts.Entries
	if entries == 0 {
		entries = DefaultEntries
	}
	if entries > MaxEntries {
		entries = MaxEntries
	}
	entries = 1 << bits.Len32(entries-1)

	if opts.setupHook != nil {
		if err := opts.setupHook(); err != nil {
			return nil, err
		}
	}
	var p params
	p.flags = setupCQSize | setupClamp | setupSubmitAll
	p.cqEntries = 2 * entries
	if opts.SQPoll {
		p.flags |= setupSQPoll
		idle := opts.SQPollIdle
		if idle == 0 {
			idle = 50 * time.Millisecond
		}
		p.sqThreadIdle = uint32(idle / time.Millisecond)
	}
	fd, err := setup(entries, &p)
	if err == syscall.EINVAL {
		// Kernels before 5.18 refuse SUBMIT_ALL.
		flags := p.flags &^ setupSubmitAll
		p = params{flags: flags, cqEntries: 2 * entries, sqThreadIdle: p.sqThreadIdle}
		fd, err = setup(entries, &p)
	}
	if err != nil {
		return nil, &BackendError{Reason: "io_uring_setup", Errno: err.(syscall.Errno)}
	}
	r := &Ring{fd: fd, features: p.features, sqpoll: opts.SQPoll, inj: opts.Injector, log: opts.logger()}
	r.inline = psync{inj: opts.Injector, c: &r.c, inline: true}
	r.inlineRate.Store(inlineOne)
	if err := r.mapRings(&p); err != nil {
		unix.Close(fd)
		return nil, err
	}
	nslots := int(r.cqEntries)
	if opts.maxInflight > 0 {
		nslots = opts.maxInflight
	}
	r.slots = make([]slot, nslots)
	r.free = make([]uint32, nslots)
	for i := range r.free {
		r.free[i] = uint32(nslots - 1 - i)
	}
	r.pend = make([]uint32, nslots+1)
	r.freeCond.L = &r.mu
	r.probe = r.doProbe()
	return r, nil
}

func setup(entries uint32, p *params) (int, error) {
	fd, _, e := unix.RawSyscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// mapRings maps the SQ and CQ rings and the SQE array.
func (r *Ring) mapRings(p *params) error {
	sqSize := int(p.sqOff.array) + int(p.sqEntries)*4
	cqSize := int(p.cqOff.cqes) + int(p.cqEntries)*int(unsafe.Sizeof(cqe{}))
	single := p.features&FeatSingleMmap != 0
	if single && cqSize > sqSize {
		sqSize = cqSize
	}
	var err error
	prot, flags := unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE
	if r.sqRing, err = unix.Mmap(r.fd, offSQRing, sqSize, prot, flags); err != nil {
		return &BackendError{Reason: "mmap SQ ring", Errno: errnoOf(err)}
	}
	r.cqRing = r.sqRing
	if !single {
		if r.cqRing, err = unix.Mmap(r.fd, offCQRing, cqSize, prot, flags); err != nil {
			r.unmapRings()
			return &BackendError{Reason: "mmap CQ ring", Errno: errnoOf(err)}
		}
	}
	if r.sqeMem, err = unix.Mmap(r.fd, offSQEs, int(p.sqEntries)*int(unsafe.Sizeof(sqe{})), prot, flags); err != nil {
		r.unmapRings()
		return &BackendError{Reason: "mmap SQEs", Errno: errnoOf(err)}
	}
	u32 := func(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }
	r.sqHead = u32(r.sqRing, p.sqOff.head)
	r.sqTail = u32(r.sqRing, p.sqOff.tail)
	r.sqFlags = u32(r.sqRing, p.sqOff.flags)
	r.sqMask = *u32(r.sqRing, p.sqOff.ringMask)
	r.sqEntries = *u32(r.sqRing, p.sqOff.ringEntries)
	r.cqHead = u32(r.cqRing, p.cqOff.head)
	r.cqTail = u32(r.cqRing, p.cqOff.tail)
	r.cqOver = u32(r.cqRing, p.cqOff.overflow)
	r.cqMask = *u32(r.cqRing, p.cqOff.ringMask)
	r.cqEntries = *u32(r.cqRing, p.cqOff.ringEntries)
	r.sqes = unsafe.Slice((*sqe)(unsafe.Pointer(&r.sqeMem[0])), r.sqEntries)
	r.cqes = unsafe.Slice((*cqe)(unsafe.Pointer(&r.cqRing[p.cqOff.cqes])), r.cqEntries)
	// SQE i always sits in array slot i, so the indirection array is the
	// identity and is written once.
	array := unsafe.Slice(u32(r.sqRing, p.sqOff.array), r.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.sqTailLocal = atomic.LoadUint32(r.sqTail)
	r.lastOverflow = atomic.LoadUint32(r.cqOver)
	return nil
}

func (r *Ring) unmapRings() {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
	}
	if r.cqRing != nil && &r.cqRing[0] != &r.sqRing[0] {
		unix.Munmap(r.cqRing)
	}
	if r.sqRing != nil {
		unix.Munmap(r.sqRing)
	}
	r.sqeMem, r.cqRing, r.sqRing, r.sqes, r.cqes = nil, nil, nil, nil, nil
}

// Name returns "uring".
func (r *Ring) Name() string { return BackendUring }

// Features returns the IORING_FEAT_* bits the kernel reported.
func (r *Ring) Features() uint32 { return r.features }

// Stats returns a snapshot of the ring's counters.
func (r *Ring) Stats() Stats {
	s := Stats{Backend: BackendUring, SQEntries: r.sqEntries, CQEntries: r.cqEntries, Features: r.features}
	r.c.snapshot(&s)
	return s
}

func (r *Ring) register(op uintptr, arg unsafe.Pointer, n int) error {
	r.closeMu.RLock()
	defer r.closeMu.RUnlock()
	if r.fd < 0 {
		return ErrClosed
	}
	for {
		_, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), op, uintptr(arg), uintptr(n), 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return e
		}
		return nil
	}
}

// usable returns ErrClosed or ErrBroken when the ring cannot take work.
// It takes no lock: Do calls it for every request it runs inline, from
// as many goroutines as read at once.
func (r *Ring) usable() error {
	switch r.currentState() {
	case ringClosed:
		return ErrClosed
	case ringBroken:
		return ErrBroken
	}
	return nil
}

// RegisterBuffers registers bufs for OpReadFixed/OpWriteFixed. The memory
// must stay valid until UnregisterBuffers or Close; mmap'd memory is the
// natural choice. Registration pins the pages, so it may fail with ENOMEM
// or EPERM under RLIMIT_MEMLOCK.
func (r *Ring) RegisterBuffers(bufs [][]byte) error {
	if err := r.usable(); err != nil {
		return err
	}
	if errno := checkRegBuffers(bufs); errno != 0 {
		return errno
	}
	iov := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		iov[i] = unix.Iovec{Base: &b[0], Len: uint64(len(b))}
	}
	if err := r.register(regBuffers, unsafe.Pointer(&iov[0]), len(iov)); err != nil {
		return err
	}
	// Fixed-buffer reads and writes run inline (Do, Request.Inline) are
	// checked against the same ranges, as the kernel checks those it runs.
	r.inline.setBuffers(bufs)
	return nil
}

// UnregisterBuffers drops the registered buffers.
func (r *Ring) UnregisterBuffers() error {
	if err := r.usable(); err != nil {
		return err
	}
	if err := r.register(unregBuffers, nil, 0); err != nil {
		return err
	}
	r.inline.setBuffers(nil)
	return nil
}

// RegisterFiles sets the registered file table; -1 marks an empty slot.
func (r *Ring) RegisterFiles(fds []int32) error {
	if err := r.usable(); err != nil {
		return err
	}
	if len(fds) == 0 {
		return syscall.EINVAL
	}
	return r.register(regFiles, unsafe.Pointer(&fds[0]), len(fds))
}

// UpdateFiles replaces registered file table entries from off.
func (r *Ring) UpdateFiles(off int, fds []int32) error {
	if err := r.usable(); err != nil {
		return err
	}
	if off < 0 || len(fds) == 0 || off > math.MaxUint32 {
		return syscall.EINVAL // (the kernel takes a 32-bit offset, as no table is larger)
	}
	u := rsrcUpdate{offset: uint32(off), data: uint64(uintptr(unsafe.Pointer(&fds[0])))}
	err := r.register(regFilesUpdate, unsafe.Pointer(&u), len(fds))
	// fds is referenced only through u.data; keep it alive past the call.
	runtime.KeepAlive(fds)
	return err
}

// UnregisterFiles drops the registered file table.
func (r *Ring) UnregisterFiles() error {
	if err := r.usable(); err != nil {
		return err
	}
	return r.register(unregFiles, nil, 0)
}

// Probe lists the opcodes the kernel supports.
type Probe struct {
	LastOp    uint8
	Supported [probeOps]bool // by kernel opcode
}

// Supports reports whether the kernel runs op.
func (p *Probe) Supports(op Op) bool { return op < numOps && p.Supported[kernelOp[op]] }

// Probe returns the kernel's opcode support as registered at setup.
func (r *Ring) Probe() Probe { return r.probe }

// Supports reports whether the kernel supports op.
func (r *Ring) Supports(op Op) bool { return r.probe.Supports(op) }

func (r *Ring) doProbe() Probe {
	var abi probeABI
	var p Probe
	if err := r.register(regProbe, unsafe.Pointer(&abi), probeOps); err != nil {
		r.log.Warn("ringfs: IORING_REGISTER_PROBE failed", "err", err)
		return p
	}
	p.LastOp = abi.lastOp
	for i := 0; i < int(abi.opsLen) && i < probeOps; i++ {
		if abi.ops[i].flags&opSupported != 0 {
			p.Supported[abi.ops[i].op] = true
		}
	}
	return p
}

// String describes the ring for logs.
func (r *Ring) String() string {
	return fmt.Sprintf("uring(fd=%d sq=%d cq=%d features=%#x)", r.fd, r.sqEntries, r.cqEntries, r.features)
}
