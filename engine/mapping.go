//go:build linux

package engine

import (
	"errors"
	"io"
	"io/fs"
	"sync/atomic"
	"syscall"

	"github.com/ringfs/ringfs/hostmap"
	"github.com/ringfs/ringfs/pagecache"
)

// Mapping is a mapping of a range of a file into memory (MAP_SHARED):
// stores to a writable mapping change the file, and the engine's reads and
// writes of the file see the mapping's contents and vice versa. While any
// mapping of a file is open, the engine does not cache the file's data.
//
// ReadAt and WriteAt copy through the mapping, with the file's
// faults turned into errors; ReadAt follows io.ReaderAt's contract. The
// methods of a nil *Mapping fail with EINVAL (or return zero values).
//
// Caveats: Bytes is valid from Map until Close and must not be used
// after. Touching a page of Bytes past the file's end (after a truncation,
// by this or another process) raises SIGBUS, which a Go program does not
// survive; ReadAt and WriteAt on the Mapping turn that into an error
// instead. Writing to a read-only mapping's Bytes faults the same way. A
// Mapping stays valid after its File is closed; the file's state is kept
// until the Mapping is closed too. Close waits for the Mapping's ReadAt
// and WriteAt calls in flight, and calls after it fail with fs.ErrClosed.
type Mapping struct {
	ino *inode
	m   *hostmap.Mapping
	// gate counts ReadAt and WriteAt in flight, so that Close does not
	// unmap the memory under a copy; closed is set once Close has begun.
	gate   gate
	closed atomic.Bool
}

// Map maps [off, off+length) of the file. writable needs a handle opened
// for writing (EACCES otherwise); a negative off or length fails with
// EINVAL; a length of 0 gives an empty Mapping. Dirty cached data in the
// file is written back first.
func (f *File) Map(off, length int64, writable bool) (*Mapping, error) {
	if f == nil {
		return nil, errNilFile("mmap")
	}
	ticket, ok := f.gate.enter()
	if !ok {
		return nil, f.pathErr("mmap", fs.ErrClosed)
	}
	defer f.gate.leave(ticket)
	switch {
	case off < 0 || length < 0 || off > (1<<63-1)-length:
		return nil, f.pathErr("mmap", syscall.EINVAL)
	case !f.readable || (writable && !f.writable):
		return nil, f.pathErr("mmap", syscall.EACCES)
	}
	ino := f.ino
	f.e.mu.Lock()
	ino.refs++ // the mapping keeps the inode
	f.e.mu.Unlock()
	mp, err := ino.openMapping(off, length, writable)
	if err != nil {
		f.e.dropRef(ino, false)
		return nil, f.pathErr("mmap", err)
	}
	m := &Mapping{ino: ino, m: mp}
	m.gate.done = make(chan struct{})
	return m, nil
}

// openMapping maps a range, switching the file out of the cache on its
// first mapping.
func (ino *inode) openMapping(off, length int64, writable bool) (*hostmap.Mapping, error) {
	ino.mu.Lock()
	defer ino.mu.Unlock()
	if ino.maps == 0 && ino.cf != nil {
		ino.cf.SetUncached(true)
		if err := ino.cf.Invalidate(pagecache.Range{Start: 0, End: 1<<63 - 1}); err != nil {
			ino.cf.SetUncached(false)
			return nil, err
		}
	}
	if ino.hm == nil {
		ino.hm = hostmap.NewMapperCounting(int(ino.fd), &ino.e.mmStats)
	}
	mp, err := ino.hm.Map(off, length, writable)
	if err != nil {
		if ino.maps == 0 && ino.cf != nil {
			ino.cf.SetUncached(false)
		}
		return nil, err
	}
	ino.maps++
	return mp, nil
}

// Bytes returns the mapped memory (see the caveats on Mapping).
func (m *Mapping) Bytes() []byte {
	if m == nil || m.closed.Load() {
		return nil
	}
	return m.m.Bytes()
}

// Offset returns the file offset the mapping starts at.
func (m *Mapping) Offset() int64 {
	if m == nil {
		return 0
	}
	return m.m.Offset()
}

// Len returns the mapping's length.
func (m *Mapping) Len() int {
	if m == nil {
		return 0
	}
	return m.m.Len()
}

// Writable reports whether the mapping may be written.
func (m *Mapping) Writable() bool { return m != nil && m.m.Writable() }

// ReadAt copies from the mapping at off (relative to its start), as an
// io.ReaderAt does: a read that reaches the mapping's end returns the
// bytes before it with io.EOF. A negative off, or one whose range
// overflows, fails with EINVAL; a page that cannot be read (past the
// file's end) gives EFAULT, not a crash.
func (m *Mapping) ReadAt(p []byte, off int64) (int, error) {
	if m == nil {
		return 0, errNilMapping("read")
	}
	ticket, ok := m.gate.enter()
	if !ok {
		return 0, m.pathErr("read", fs.ErrClosed)
	}
	defer m.gate.leave(ticket)
	b := m.m.Bytes()
	switch {
	case off < 0 || int64(len(p)) > (1<<63-1)-off:
		return 0, m.pathErr("read", syscall.EINVAL)
	case len(p) == 0:
		return 0, nil
	case off >= int64(len(b)):
		return 0, io.EOF
	}
	n, err := hostmap.SafeCopy(p, b[off:min(int64(len(b)), off+int64(len(p)))])
	switch {
	case err != nil:
		return n, m.pathErr("read", err)
	case n < len(p):
		return n, io.EOF
	}
	return n, nil
}

// WriteAt copies into a writable mapping at off (relative to its start),
// with the same fault handling as ReadAt.
func (m *Mapping) WriteAt(p []byte, off int64) (int, error) {
	if m == nil {
		return 0, errNilMapping("write")
	}
	ticket, ok := m.gate.enter()
	if !ok {
		return 0, m.pathErr("write", fs.ErrClosed)
	}
	defer m.gate.leave(ticket)
	if !m.m.Writable() {
		return 0, m.pathErr("write", syscall.EACCES)
	}
	b, err := m.window(off, len(p))
	if err != nil {
		return 0, m.pathErr("write", err)
	}
	n, err := hostmap.SafeCopy(b, p)
	return n, m.pathErr("write", err)
}

// pathErr wraps a failure as every error of the package is: an
// *fs.PathError naming the file (nil stays nil).
func (m *Mapping) pathErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if !errors.Is(err, fs.ErrClosed) {
		err = unwrapErrno(err)
	}
	return &fs.PathError{Op: op, Path: m.ino.path, Err: err}
}

// window returns the n bytes of the mapping at off.
//
// Preconditions: the caller is inside m.gate.
func (m *Mapping) window(off int64, n int) ([]byte, error) {
	b := m.m.Bytes()
	if off < 0 || off > int64(len(b)) || int64(n) > int64(len(b))-off {
		return nil, syscall.EINVAL
	}
	return b[off : off+int64(n)], nil
}

// Close unmaps the range. A second Close fails with fs.ErrClosed and
// changes nothing.
func (m *Mapping) Close() error {
	if m == nil {
		return errNilMapping("close")
	}
	if m.closed.Swap(true) || !m.gate.close() {
		return m.pathErr("close", fs.ErrClosed)
	}
	err := m.pathErr("close", m.m.Close())
	ino := m.ino
	ino.mu.Lock()
	ino.maps--
	if ino.maps == 0 && ino.cf != nil {
		ino.cf.SetUncached(false)
	}
	ino.mu.Unlock()
	ino.e.dropRef(ino, false)
	return err
}
