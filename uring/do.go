//go:build linux

package uring

import "sync"

// Doer is implemented by backends that can run one request with a plain
// syscall in the calling goroutine.
type Doer interface {
	// Do runs r at once, synchronously, with the same result rules as
	// Submit (short transfers resumed, EINTR/EAGAIN retried, injector
	// consulted), and returns its N and Err. The error of the backend
	// itself (closed) is returned as Err.
	Do(r Request) (int, error)
}

// Do runs one request, through b's Do when it has one and Submit
// otherwise, and returns its N and Err. Use it for a lone request the
// kernel would hand to a worker thread from a ring anyway — a buffered
// write, say: measured on ext4, a lone 4 KiB buffered write through the
// ring costs about twice the time of pwrite, while reads of cached data
// complete inline in the ring and gain nothing. r is copied, so the
// caller's request never escapes to the heap.
func Do(b Backend, r Request) (int, error) {
	if d, ok := b.(Doer); ok {
		return d.Do(r)
	}
	return submitOne(b, r)
}

// submitOne submits r alone from pooled storage.
func submitOne(b Backend, r Request) (int, error) {
	one := onePool.Get().(*[1]Request)
	one[0] = r
	b.Submit(one[:])
	n, err := one[0].N, one[0].Err
	one[0] = Request{}
	onePool.Put(one)
	return n, err
}

var onePool = sync.Pool{New: func() any { return new([1]Request) }}

// Do runs r with a plain syscall (psync does nothing else).
func (p *psync) Do(r Request) (int, error) {
	if p.closed.Load() {
		return 0, ErrClosed
	}
	p.c.submits.Add(1)
	p.c.requests.Add(1)
	return p.runOne(r)
}

// runOne runs r from pooled storage and returns its result.
func (p *psync) runOne(r Request) (int, error) {
	one := onePool.Get().(*[1]Request)
	one[0] = r
	if r.Op == OpReadv || r.Op == OpWritev || r.Flags != 0 {
		// preadv2/pwritev2 want iovecs.
		ip := getIovecs()
		putIovecs(ip, p.run(&one[0], *ip))
	} else {
		p.run(&one[0], nil)
	}
	n, err := one[0].N, one[0].Err
	one[0] = Request{}
	onePool.Put(one)
	return n, err
}

// Do runs r with a plain syscall in the calling goroutine instead of the
// ring (counted in Stats.Inline). A fixed read or write is checked against
// the registered buffers as the kernel checks it. Requests on registered
// files go through the ring, whose kernel holds the table.
func (r *Ring) Do(req Request) (int, error) {
	if req.Fixed || req.Op == OpCancel { // (see runsInline)
		return submitOne(r, req)
	}
	if err := r.usable(); err != nil {
		return 0, err
	}
	r.c.submits.Add(1)
	r.c.requests.Add(1)
	return r.inline.runOne(req)
}
