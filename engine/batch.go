//go:build linux

package engine

import (
	"io"
	"io/fs"
	"sync"
	"syscall"
	"time"

	"github.com/ringfs/ringfs/pagecache"
	"github.com/ringfs/ringfs/uring"
)

// Op is one read or write of a Submit batch.
type Op struct {
	File  *File
	Write bool
	Buf   []byte
	Off   int64
	// N and Err are the result, as ReadAt/WriteAt would return them (a
	// short read ends with io.EOF).
	N   int
	Err error
}

// Submit runs a batch of reads and writes. Reads the page cache holds are
// copied at once; the cache fills of every read that misses, and every
// read or write that goes to the host directly (O_DIRECT handles with
// aligned buffers, Shared mode, no cache), are handed to the backend
// together in one submission. Writes to cached files are applied to the
// cache in order. The operations of one batch have no order among
// themselves: overlapping ones may be applied in any order. Where no
// cache stands between them (Shared mode), a buffered and an O_DIRECT
// write of the same pages in one batch reach the kernel together, as
// from two goroutines: Linux may then fail to drop its cached copy of
// those pages, and report EIO to the file's next fsync. An operation
// on a handle of another Engine is run by itself, by that engine, as
// ReadAt or WriteAt would run it. Each result is in its Op; Submit itself
// fails only when the engine is closed.
func (e *Engine) Submit(ops []Op) error {
	if e.isClosed() {
		err := &fs.PathError{Op: "submit", Path: "engine", Err: fs.ErrClosed}
		for i := range ops {
			ops[i].N, ops[i].Err = 0, err
		}
		return err
	}
	b := batchPool.Get().(*batch)
	b.e, b.start = e, monoNow()
	for i := range ops {
		b.add(&ops[i])
	}
	b.run()
	b.reset()
	batchPool.Put(b)
	return nil
}

// batchPool recycles batches, so that Submit does not allocate its
// bookkeeping on every call.
var batchPool = sync.Pool{New: func() any { return new(batch) }}

// reset empties b, dropping every reference to callers' memory.
func (b *batch) reset() {
	clear(b.reads)
	clear(b.readOf)
	clear(b.host)
	clear(b.hostOf)
	clear(b.open)
	b.e, b.reads, b.readOf, b.host, b.hostOf, b.open = nil, b.reads[:0], b.readOf[:0], b.host[:0], b.hostOf[:0], b.open[:0]
	b.hostSize = b.hostSize[:0]
}

// batch sorts the operations of a Submit by how they are served.
type batch struct {
	e      *Engine
	start  time.Duration      // monoNow at the start
	reads  []pagecache.ReadOp // reads of cached files
	readOf []*Op
	host   []uring.Request // direct and uncached operations
	hostOf []*Op
	// hostSize is, for each of host, the cached size before its range
	// was written back (see clampDirect).
	hostSize []int64
	open     []entered // handles whose gate was entered
}

func (b *batch) add(op *Op) {
	op.N, op.Err = 0, nil
	f := op.File
	verb := "read"
	if op.Write {
		verb = "write"
	}
	if f == nil {
		op.Err = errNilFile(verb)
		return
	}
	if f.e != b.e {
		// A handle of another engine, whose cache and ring this batch
		// must not mix with its own: that engine serves it.
		b.single(op)
		return
	}
	ticket, ok := f.gate.enter()
	if !ok {
		op.Err = f.pathErr(verb, fs.ErrClosed)
		return
	}
	b.open = append(b.open, entered{f, ticket})
	// In the order of ReadAt and WriteAt.
	switch {
	case op.Write && f.append:
		op.Err = f.pathErr("writeat", ErrWriteAtInAppendMode)
		return
	case op.Off < 0:
		op.Err = f.pathErr(verb, syscall.EINVAL)
		return
	case op.Write && !f.writable, !op.Write && !f.readable:
		op.Err = f.pathErr(verb, syscall.EBADF)
		return
	case len(op.Buf) == 0:
		return
	case int64(len(op.Buf)) > (1<<63-1)-op.Off:
		// As ReadAt and WriteAt: the range must fit in an int64.
		op.Err = f.pathErr(verb, syscall.EINVAL)
		return
	}
	ino := f.ino
	uncached := ino.cf == nil && !(b.e.opts.HostMmap && b.e.opts.Mode != Shared)
	// A direct write to a file whose size and pages the engine keeps runs
	// alone, under the file's locks: in the batch, a fill's readahead
	// could cache the range's old bytes around it, and the size would not
	// grow.
	direct := f.direct && pagecache.DirectAligned(op.Buf, op.Off) && (!op.Write || uncached)
	switch {
	case !op.Write && ino.cf != nil && !f.direct:
		b.reads = append(b.reads, pagecache.ReadOp{File: ino.cf, Buf: op.Buf, Off: op.Off})
		b.readOf = append(b.readOf, op)
	case direct || (uncached && !f.direct):
		if direct && op.Write && f.directMisaligned(op.Off, len(op.Buf), false) {
			op.Err = f.pathErr(verb, syscall.EINVAL)
			return
		}
		size := ino.cachedSize()
		if direct && ino.cf != nil {
			// Dirty cached bytes must reach the host before a direct
			// read, and cached pages must go before a direct write.
			r := pagecache.Range{Start: op.Off, End: op.Off + int64(len(op.Buf))}
			var err error
			if op.Write {
				err = ino.cf.Invalidate(r)
			} else {
				err = ino.cf.FlushRange(r)
			}
			if err != nil {
				op.Err = f.pathErr(verb, err)
				return
			}
		}
		kind := uring.OpRead
		if op.Write {
			kind = uring.OpWrite
			if op.Off+int64(len(op.Buf)) > f.fsizeMax {
				b.single(op) // the limit makes it short
				return
			}
		}
		b.host = append(b.host, uring.Request{Op: kind, Fd: f.fd, Buf: op.Buf, Off: op.Off, Inline: ino.inline})
		b.hostOf = append(b.hostOf, op)
		b.hostSize = append(b.hostSize, size)
	default:
		b.single(op)
	}
}

// single runs an operation by itself (cached writes, mmap, unaligned
// direct I/O).
func (b *batch) single(op *Op) {
	if op.Write {
		op.N, _, op.Err = op.File.writeAt(op.Buf, op.Off, 0, false, "write")
	} else {
		op.N, op.Err = op.File.readAt(op.Buf, op.Off, 0, "read")
	}
}

func (b *batch) run() {
	e := b.e
	switch {
	case len(b.reads) > 0:
		e.cache.ReadBatch(b.reads, b.host)
	case len(b.host) > 0:
		e.be.Submit(b.host)
	}
	d := monoNow() - b.start
	for i := range b.reads {
		r, op := &b.reads[i], b.readOf[i]
		op.N, op.Err = r.N, r.Err
		path := pathFill
		if r.Hit {
			path = pathHit
		}
		e.st.record(opRead, path, r.N, d, r.Err)
		b.finish(op)
		r.Buf = nil
	}
	for i := range b.host {
		r, op := &b.host[i], b.hostOf[i]
		op.N, op.Err = r.N, r.Err
		kind, path := opRead, pathHost
		if op.Write {
			kind = opWrite
		}
		if op.File.direct {
			path = pathDirect
		}
		if !op.Write {
			if op.File.direct {
				op.N, op.Err = op.File.ino.directReadRest(op.File, op.Buf, op.N, op.Off, 0, op.Err)
			}
			op.N = op.File.ino.clampDirect(op.Buf, op.N, op.Off, op.Err, b.hostSize[i])
		}
		e.st.record(kind, path, r.N, d, r.Err)
		if op.Write && op.N > 0 {
			op.File.ino.clearPrivileges()
			if op.Err == nil && (op.File.osync || op.File.dsync) {
				mode := pagecache.SyncData
				if op.File.osync {
					mode = pagecache.SyncFull
				}
				if err := op.File.ino.syncRange(op.Off, op.Off+int64(op.N), mode); err != nil {
					op.File.checkErrs() // reported here, as by WriteAt: not again by Sync
					op.Err = err
				}
			}
		}
		b.finish(op)
		r.Buf = nil
	}
	for _, en := range b.open {
		en.f.gate.leave(en.ticket)
	}
}

// entered is a handle whose gate a batch entered, with its ticket.
type entered struct {
	f      *File
	ticket int
}

// finish turns a raw result into the ReadAt/WriteAt form.
func (b *batch) finish(op *Op) {
	if op.Err != nil {
		if _, ok := op.Err.(*fs.PathError); !ok {
			verb := "read"
			if op.Write {
				verb = "write"
			}
			op.Err = op.File.pathErr(verb, op.Err)
		}
		return
	}
	if !op.Write && op.N < len(op.Buf) {
		op.Err = io.EOF
	}
}
