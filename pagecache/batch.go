//go:build linux

package pagecache

import (
	"cmp"
	"slices"
	"syscall"

	"github.com/ringfs/ringfs/uring"
)

// ReadOp is one read of a ReadBatch.
type ReadOp struct {
	File *File
	Buf  []byte
	Off  int64
	// N is the bytes read: fewer than len(Buf) at end of file (Err nil) or
	// with an error.
	N   int
	Err error
	// Hit reports that the read was served from the cache alone.
	Hit bool
}

// batchMiss is a read of a batch that did not hit.
type batchMiss struct {
	op     *ReadOp
	done   int // bytes already copied from the cache
	fc     *fillCtx
	req    Range
	dst    []byte
	p0, p1 int64 // pages planned
	r1     int64
	size   int64
	first  int // index of its first request in the combined batch
}

// ReadBatch serves reads of cached files together: hits are copied out at
// once (File.copyHit), and the fills of every miss go to the backend in
// one Submit, with extra (requests the caller wants in the same
// submission, such as direct reads) appended. Results land in each op's
// N and Err and in extra's requests. Reads in one batch run in no
// particular order relative to each other. Misses whose fills overlap one
// planned earlier in the batch on the same file are served by a further
// submission. An op without a File, or with a File of another Cache
// (whose frames this cache's could not hold), fails with EINVAL.
func (c *Cache) ReadBatch(ops []ReadOp, extra []uring.Request) {
	var misses []batchMiss
	for i := range ops {
		op := &ops[i]
		op.N, op.Err, op.Hit = 0, nil, false
		f := op.File
		if op.Off < 0 || f == nil || f.c != c {
			op.Err = syscall.EINVAL
			continue
		}
		n, _, hit, ok := f.copyHit(op.Buf, op.Off)
		if !ok {
			op.Err = syscall.EBADF
			continue
		}
		op.N, op.Hit = n, hit
		if hit {
			continue
		}
		c.st.misses.Add(1)
		misses = append(misses, batchMiss{op: op, done: n})
	}
	for first := true; len(misses) > 0 || (first && len(extra) > 0); first = false {
		if !first {
			extra = nil
			misses = hitsNow(misses)
		}
		misses = c.fillBatch(misses, extra)
	}
}

// hitsNow serves from the cache the misses that the last fillBatch
// deferred and whose pages the fills before them brought in (the misses
// of one readahead window wait for its first), and returns the others.
// Without it every further submission would fill one window for one
// miss, and n reads of one window would take n submissions.
func hitsNow(misses []batchMiss) []batchMiss {
	rest := misses[:0]
	for _, m := range misses {
		op := m.op
		n, _, hit, ok := op.File.copyLocked(op.Buf[m.done:], op.Off+int64(m.done))
		switch {
		case !ok:
			op.Err = syscall.EBADF
		case hit:
			op.N = m.done + n
		default:
			m.done += n
			op.N = m.done
			rest = append(rest, m)
		}
	}
	return rest
}

// fillBatch fills as many misses as it can in one submission and returns
// the ones deferred to another.
func (c *Cache) fillBatch(misses []batchMiss, extra []uring.Request) []batchMiss {
	// Frames first: reserving may evict, which needs file locks.
	for i := range misses {
		m := &misses[i]
		f := m.op.File
		size := f.size.Load()
		off := m.op.Off + int64(m.done)
		// Within this size: the pages planned below are those below it,
		// and a size grown before the lock is taken must not leave
		// required pages past them unplanned (the read ends at this
		// size, as if it ran before the growth).
		m.req = Range{off, max(off, min(m.op.Off+int64(len(m.op.Buf)), size))}
		fr := FillRange(m.req, Range{off, size}, c.readahead)
		m.p0, m.p1 = pageOf(fr.Start), min(pageEnd(fr.End), pageEnd(size))
		m.fc = getFillCtx()
		m.p1 = f.reserveFill(m.fc, m.req, m.p0, m.p1, false) // misses read around here go through f.fd
	}
	slices.SortStableFunc(misses, func(a, b batchMiss) int { return cmp.Compare(a.op.File.id, b.op.File.id) })
	var files []*File
	for i := range misses {
		if f := misses[i].op.File; len(files) == 0 || files[len(files)-1] != f {
			files = append(files, f)
			f.mu.Lock()
			// Before planning anything of f: waiting lets go of f.mu.
			// The files locked before stay locked; a fill in flight
			// needs only its own file's lock to finish.
			f.drain()
		}
	}
	var reqs []uring.Request
	var planned, deferred []batchMiss
	for i := range misses {
		m := misses[i]
		f := m.op.File
		if f.released {
			m.op.Err = syscall.EBADF
			c.putFree(m.fc.frames)
			putFillCtx(m.fc)
			continue
		}
		if overlapsPlanned(planned, f, m.p0, m.p1) {
			c.putFree(m.fc.frames)
			putFillCtx(m.fc)
			m.fc = nil
			deferred = append(deferred, m)
			continue
		}
		m.size = f.size.Load()
		if m.req.End > m.size {
			m.req.End = max(m.size, m.req.Start)
		}
		m.dst = m.op.Buf[m.done : m.done+int(m.req.End-m.req.Start)]
		m.p1 = min(m.p1, pageEnd(m.size))
		m.r1 = pageEnd(m.req.End)
		if f.uncached {
			c.putFree(m.fc.frames)
			m.fc.frames = m.fc.frames[:0]
		}
		f.planFill(m.fc, m.p0, m.p1, m.r1, m.req, m.dst)
		m.first = len(reqs)
		reqs = append(reqs, m.fc.reqs...)
		planned = append(planned, m)
	}
	nfill := len(reqs)
	reqs = append(reqs, extra...)
	if len(reqs) > 0 {
		c.be.Submit(reqs)
		if nfill > 0 {
			c.st.fillBatches.Add(1)
			c.st.fillSQEs.Add(uint64(nfill))
		}
	}
	copy(extra, reqs[nfill:])
	for i := range planned {
		m := &planned[i]
		copy(m.fc.reqs, reqs[m.first:m.first+len(m.fc.reqs)])
		n, err := m.op.File.completeFill(m.fc, m.size, m.r1, m.req, m.dst)
		m.op.N, m.op.Err = m.done+n, err
		putFillCtx(m.fc)
	}
	clear(reqs)
	for _, f := range files {
		f.mu.Unlock()
	}
	return deferred
}

// overlapsPlanned reports whether pages [p0, p1) of f were planned by an
// earlier miss of the batch.
func overlapsPlanned(planned []batchMiss, f *File, p0, p1 int64) bool {
	for i := range planned {
		if m := &planned[i]; m.op.File == f && m.p0 < p1 && p0 < m.p1 {
			return true
		}
	}
	return false
}
