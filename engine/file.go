//go:build linux

package engine

import (
	"io"
	"io/fs"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/internal/stripe"
	"github.com/ringfs/ringfs/pagecache"
)

// File is an open handle of a host file. It satisfies io.Reader,
// io.Writer, io.ReaderAt, io.WriterAt, io.Seeker and io.Closer with their
// documented contracts: ReadAt and WriteAt do not use or move the offset
// Read, Write and Seek share, may be called in parallel, and never keep p;
// ReadAt returns a non-nil error whenever n < len(p) (io.EOF at end of
// file); Read at end of file returns 0, io.EOF.
//
// Every failure is an *fs.PathError wrapping a syscall.Errno (or
// fs.ErrClosed after Close), so errors.Is works with both. As with
// os.File, the methods of a nil *File fail with EINVAL (which matches
// fs.ErrInvalid); Name returns "" and Fd returns ^uintptr(0).
//
// Where os.File answers without a system call, File answers as the
// system call would: a read or write of zero bytes on a handle not
// opened for it fails with EBADF (os.File returns 0, nil), a negative
// offset fails with EINVAL (os.File returns an error wrapping no errno),
// and WriteAt on an O_APPEND handle fails with ErrWriteAtInAppendMode,
// which matches EINVAL. When a call has several faults, the first in the
// system call's order answers: a negative offset (EINVAL) before a
// handle of the wrong mode (EBADF). Two answers differ from the system
// call's: SeekData and SeekHole with a negative offset fail with EINVAL,
// as every negative offset does, where lseek answers ENXIO; and Truncate
// on a handle not open for writing fails with EBADF, as every write
// does, where ftruncate answers EINVAL.
//
// What the modes change: in Exclusive mode reads at or past the size the
// engine caches return io.EOF without I/O, and writes may stay in the
// cache until Sync, eviction or the last Close; in Writethrough mode every
// write reaches the host before it returns; in Shared mode nothing is
// cached and the host answers for the size.
type File struct {
	e    *Engine
	ino  *inode
	name string
	fd   int32 // the handle's own host descriptor (opened without O_APPEND)
	flag int

	readable, writable, append, direct, osync, dsync bool
	fsizeMax                                         int64 // RLIMIT_FSIZE at open
	// dioAlign is the offset and length alignment the host asks of the
	// direct writes of an O_DIRECT handle (statx STATX_DIOALIGN at open),
	// or 0 when it does not say.
	dioAlign int64

	gate gate

	// errMu guards errCursor, the handle's place in the file's writeback
	// error sequence.
	errMu     sync.Mutex
	errCursor uint64 // +checklocks:errMu

	// posMu serializes Read, Write and Seek on the shared offset.
	posMu sync.Mutex
	pos   int64 // +checklocks:posMu
}

// gate lets Close wait for the calls in flight on a handle, so a
// descriptor is never closed (and its number reused) under one.
//
// Calls are counted in n until two overlap; from then on each call counts
// itself in its stripe of spread, so that goroutines sharing a handle do
// not all write one word (two goroutines hitting the cache through one
// handle: 106 ns a read with the shared word, 90-97 with stripes, in
// BenchmarkReadAt/impl=ringfs/bs=4KiB/jobs=2). The memory for stripes is
// taken only by handles that are used concurrently. n keeps the closed
// bit either way: a call counts itself first and then looks at the bit,
// Close sets the bit first and then sums the counts, so one of them sees
// the other.
type gate struct {
	n        atomic.Int64 // calls counted here, plus gateClosed once closing
	spread   atomic.Pointer[stripe.Sharded[atomic.Int64]]
	signaled atomic.Bool
	done     chan struct{} // closed when the last call leaves a closing gate
}

const gateClosed = 1 << 62

// enter counts a call in; false when the gate is shut. The ticket goes
// to leave.
func (g *gate) enter() (ticket int, ok bool) {
	if sp := g.spread.Load(); sp != nil {
		h := stripe.Hint()
		sp.At(h).Add(1)
		if g.n.Load()&gateClosed != 0 {
			g.leave(h + 1)
			return 0, false
		}
		return h + 1, true
	}
	v := g.n.Add(1)
	if v&gateClosed != 0 {
		g.leave(0)
		return 0, false
	}
	if v > 1 {
		g.spread.CompareAndSwap(nil, new(stripe.Sharded[atomic.Int64]))
	}
	return 0, true
}

// leave counts a call out; the last one out of a closing gate lets Close
// go on.
func (g *gate) leave(ticket int) {
	if ticket == 0 {
		if g.n.Add(-1) != gateClosed {
			return
		}
	} else {
		g.spread.Load().At(ticket - 1).Add(-1)
		if g.n.Load() != gateClosed {
			return // open, or calls counted in n still inside
		}
	}
	if g.spreadCount() == 0 && g.signaled.CompareAndSwap(false, true) {
		close(g.done)
	}
}

// spreadCount sums the calls counted in stripes.
func (g *gate) spreadCount() int64 {
	if sp := g.spread.Load(); sp != nil {
		return stripe.Sum(sp)
	}
	return 0
}

// close shuts the gate and waits for the calls inside; false when it was
// already shut.
func (g *gate) close() bool {
	old := g.n.Or(gateClosed)
	if old&gateClosed != 0 {
		return false
	}
	if old != 0 || g.spreadCount() != 0 {
		<-g.done
	}
	return true
}

// Open flags ringfs accepts; others fail with EINVAL.
const openFlags = unix.O_ACCMODE | unix.O_CREAT | unix.O_EXCL | unix.O_TRUNC | unix.O_APPEND |
	unix.O_SYNC | unix.O_DSYNC | unix.O_DIRECT | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NOATIME |
	unix.O_LARGEFILE | unix.O_NOCTTY

// Open opens name with os.O_* flags (plus syscall.O_DIRECT, O_SYNC,
// O_DSYNC, O_NOFOLLOW) and perm for a new file, like os.OpenFile. Only
// regular files are served: a directory fails with EISDIR, other kinds
// with EINVAL. Unknown flag bits fail with EINVAL.
func (e *Engine) Open(name string, flag int, perm fs.FileMode) (*File, error) {
	if flag&^openFlags != 0 || flag&unix.O_ACCMODE == unix.O_ACCMODE {
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
	}
	if e.isClosed() {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrClosed}
	}
	if errno := notRegular(name, flag); errno != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errno}
	}
	hostFlags := (flag &^ unix.O_APPEND) | unix.O_CLOEXEC
	var hfd int
	var err error
	for {
		hfd, err = unix.Open(name, hostFlags, syscallMode(perm))
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	var st unix.Stat_t
	if err := fstat(int32(hfd), &st); err != nil {
		unix.Close(hfd)
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		unix.Close(hfd)
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	default:
		unix.Close(hfd)
		return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EINVAL}
	}
	acc := flag & unix.O_ACCMODE
	f := &File{
		e: e, name: name, fd: int32(hfd), flag: flag,
		readable: acc != unix.O_WRONLY, writable: acc != unix.O_RDONLY,
		append: flag&unix.O_APPEND != 0, direct: flag&unix.O_DIRECT != 0,
		osync: flag&unix.O_SYNC == unix.O_SYNC, dsync: flag&unix.O_DSYNC != 0,
		fsizeMax: fsizeLimit(),
	}
	if f.direct {
		f.dioAlign = dioOffsetAlign(hfd)
	}
	f.gate.done = make(chan struct{})
	ino, err := e.attach(f, inodeKey{dev: st.Dev, ino: st.Ino}, name, acc, &st)
	if err != nil {
		unix.Close(hfd)
		return nil, &fs.PathError{Op: "open", Path: name, Err: unwrapErrno(err)}
	}
	f.ino = ino
	if flag&unix.O_TRUNC != 0 && ino.cf != nil {
		// The host was truncated by open (Linux does so for O_RDONLY too,
		// given write permission); the cache must follow (and truncating
		// again orders it after any writeback in flight).
		if err := ino.cf.Truncate(0); err != nil {
			f.Close()
			return nil, &fs.PathError{Op: "open", Path: name, Err: unwrapErrno(err)}
		}
	}
	if flag&unix.O_TRUNC != 0 && ino.cf == nil && e.opts.HostMmap {
		ino.mmSize.Store(0)
	}
	return f, nil
}

// notRegular refuses, before it is opened, a path that names something
// other than a regular file: EISDIR for a directory, EINVAL for the rest.
// Opening a FIFO waits for its other end, and opening a device can act on
// it; Open serves regular files only, and says so without either. (The
// file's type is checked again on the open descriptor: the path may
// change in between.) A path that cannot be stat'ed is left to open,
// which creates it or reports why not, and so is O_CREAT|O_EXCL, which
// open refuses (EEXIST) for anything already there without opening it.
func notRegular(name string, flag int) syscall.Errno {
	if flag&(unix.O_CREAT|unix.O_EXCL) == unix.O_CREAT|unix.O_EXCL {
		return 0
	}
	var st unix.Stat_t
	stat := unix.Stat
	if flag&unix.O_NOFOLLOW != 0 {
		stat = unix.Lstat
	}
	if stat(name, &st) != nil {
		return 0
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFLNK: // a link: open's O_NOFOLLOW answer (ELOOP)
		return 0
	case unix.S_IFDIR:
		return syscall.EISDIR
	}
	return syscall.EINVAL
}

// attach finds or creates the inode for a new handle and registers it.
func (e *Engine) attach(f *File, key inodeKey, name string, acc int, st *unix.Stat_t) (*inode, error) {
	for {
		e.mu.Lock()
		if e.closed {
			e.mu.Unlock()
			return nil, fs.ErrClosed
		}
		ino := e.inodes[key]
		if ino != nil && ino.closing != nil {
			// Its last handle is writing it back; wait, then look again.
			ch := ino.closing
			e.mu.Unlock()
			<-ch
			continue
		}
		if ino == nil {
			var err error
			if ino, err = e.newInode(key, name, f.fd, acc); err != nil {
				e.mu.Unlock()
				return nil, err
			}
			e.inodes[key] = ino
		}
		ino.refs++
		ino.handles++
		ino.written = ino.written || acc != unix.O_RDONLY
		e.handles[f] = struct{}{}
		ino.mode.Store(st.Mode)
		e.mu.Unlock()
		ino.upgrade(f.fd, acc)
		f.errMu.Lock()
		f.errCursor = ino.errs.Sample()
		f.errMu.Unlock()
		return ino, nil
	}
}

func (e *Engine) isClosed() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closed
}

// syscallMode converts fs.FileMode permission and special bits.
func syscallMode(perm fs.FileMode) uint32 {
	m := uint32(perm.Perm())
	if perm&fs.ModeSetuid != 0 {
		m |= unix.S_ISUID
	}
	if perm&fs.ModeSetgid != 0 {
		m |= unix.S_ISGID
	}
	if perm&fs.ModeSticky != 0 {
		m |= unix.S_ISVTX
	}
	return m
}

// fsizeLimit returns the process's RLIMIT_FSIZE in bytes.
func fsizeLimit() int64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &rl); err != nil || rl.Cur >= 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(rl.Cur)
}

// Name returns the name the file was opened with.
func (f *File) Name() string {
	if f == nil {
		return ""
	}
	return f.name
}

// Fd returns the handle's host descriptor. It stays valid until Close;
// I/O on it bypasses the engine's cache.
func (f *File) Fd() uintptr {
	if f == nil {
		return ^uintptr(0)
	}
	return uintptr(f.fd)
}

// errNilFile is the failure of a method called on a nil *File.
func errNilFile(op string) error { return &fs.PathError{Op: op, Err: nilReceiverErr("*File")} }

// errNilMapping is the failure of a method called on a nil *Mapping.
func errNilMapping(op string) error { return &fs.PathError{Op: op, Err: nilReceiverErr("*Mapping")} }

// nilReceiverErr is the error inside errNilFile's and errNilMapping's: it
// matches syscall.EINVAL and, as os.File's answer to a nil receiver
// does, fs.ErrInvalid.
type nilReceiverErr string

func (e nilReceiverErr) Error() string      { return "invalid argument: nil " + string(e) }
func (nilReceiverErr) Unwrap() error        { return syscall.EINVAL }
func (nilReceiverErr) Is(target error) bool { return target == fs.ErrInvalid }

func (f *File) pathErr(op string, err error) error {
	if err != ErrWriteAtInAppendMode { // keep it: errors.Is must find it
		err = unwrapErrno(err)
	}
	return &fs.PathError{Op: op, Path: f.name, Err: err}
}

// RWF_* flags ReadAtFlags and WriteAtFlags accept.
const supportedRWF = unix.RWF_HIPRI | unix.RWF_DSYNC | unix.RWF_SYNC | unix.RWF_NOWAIT

// ErrWriteAtInAppendMode is returned by WriteAt on a handle opened with
// O_APPEND, as os.File does; it matches syscall.EINVAL with errors.Is.
var ErrWriteAtInAppendMode = errWriteAtInAppendMode{}

type errWriteAtInAppendMode struct{}

func (errWriteAtInAppendMode) Error() string {
	return "invalid use of WriteAt on file opened with O_APPEND"
}
func (errWriteAtInAppendMode) Unwrap() error { return syscall.EINVAL }

// ReadAt reads len(p) bytes at off. See File for the contract.
func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.readAt(p, off, 0, "read") }

// ReadAtFlags is ReadAt with RWF_* flags: RWF_NOWAIT serves the read only
// from the cache and fails with EAGAIN on a miss; RWF_HIPRI, RWF_DSYNC and
// RWF_SYNC are accepted (passed to direct reads; RWF_HIPRI is a hint,
// which the io_uring backend drops: its ring does not poll). Other bits
// fail with EOPNOTSUPP.
func (f *File) ReadAtFlags(p []byte, off int64, flags int) (int, error) {
	return f.readAt(p, off, flags, "read")
}

func (f *File) readAt(p []byte, off int64, flags int, op string) (int, error) {
	if f == nil {
		return 0, errNilFile(op)
	}
	ticket, ok := f.gate.enter()
	if !ok {
		return 0, f.pathErr(op, fs.ErrClosed)
	}
	defer f.gate.leave(ticket)
	// In the kernel's order: the offset, then the handle's mode, then
	// the flags (preadv2).
	switch {
	case off < 0:
		return 0, f.pathErr(op, syscall.EINVAL)
	case !f.readable:
		return 0, f.pathErr(op, syscall.EBADF)
	case flags&^supportedRWF != 0:
		return 0, f.pathErr(op, syscall.EOPNOTSUPP)
	case len(p) == 0:
		return 0, nil
	case int64(len(p)) > (1<<63-1)-off:
		// As pread: the range must fit in an int64, whatever the size.
		return 0, f.pathErr(op, syscall.EINVAL)
	}
	start := sampleStart(f.e.sampleMask)
	n, path, err := f.ino.read(f, p, off, flags)
	f.e.st.record(opRead, path, n, since(start), err)
	if err != nil {
		return n, f.pathErr(op, err)
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt writes p at off. It fails on a handle opened with O_APPEND
// (ErrWriteAtInAppendMode). With RLIMIT_FSIZE set, a write crossing the
// limit is short and returns EFBIG, one starting past it writes nothing.
func (f *File) WriteAt(p []byte, off int64) (int, error) {
	n, _, err := f.writeAt(p, off, 0, false, "write")
	return n, err
}

// WriteAtFlags is WriteAt with RWF_* flags: RWF_DSYNC and RWF_SYNC make
// this write durable before it returns; RWF_HIPRI and RWF_NOWAIT are
// passed to host writes, whose answer to RWF_NOWAIT may be EAGAIN, or
// EOPNOTSUPP where the host file system cannot tell (buffered writes on
// ext4). Other bits fail with EOPNOTSUPP.
func (f *File) WriteAtFlags(p []byte, off int64, flags int) (int, error) {
	n, _, err := f.writeAt(p, off, flags, false, "write")
	return n, err
}

// writeAt writes p at off, or at the end of file when atEnd, and returns
// the bytes written and the offset used. A write at an offset on an
// O_APPEND handle fails with ErrWriteAtInAppendMode, once the handle is
// known to be open: on a closed handle every call fails with
// fs.ErrClosed.
func (f *File) writeAt(p []byte, off int64, flags int, atEnd bool, op string) (int, int64, error) {
	if f == nil {
		return 0, off, errNilFile(op)
	}
	ticket, ok := f.gate.enter()
	if !ok {
		return 0, off, f.pathErr(op, fs.ErrClosed)
	}
	defer f.gate.leave(ticket)
	// In the kernel's order: the offset, then the handle's mode, then
	// the flags (pwritev2).
	switch {
	case f.append && !atEnd:
		return 0, off, f.pathErr("writeat", ErrWriteAtInAppendMode)
	case off < 0 && !atEnd:
		return 0, off, f.pathErr(op, syscall.EINVAL)
	case !f.writable:
		return 0, off, f.pathErr(op, syscall.EBADF)
	case flags&^supportedRWF != 0:
		return 0, off, f.pathErr(op, syscall.EOPNOTSUPP)
	case len(p) == 0:
		return 0, off, nil
	}
	if !atEnd && int64(len(p)) > (1<<63-1)-off {
		// As pwrite: a range past int64 is EINVAL, before any size limit.
		return 0, off, f.pathErr(op, syscall.EINVAL)
	}
	// RLIMIT_FSIZE: a write crossing the limit is short; past it, EFBIG.
	// An append learns its offset from the size, so under a limit the
	// writes to the file are serialized while it is checked.
	limited, end := false, off
	if f.fsizeMax < 1<<63-1 {
		f.ino.limitMu.Lock()
		defer f.ino.limitMu.Unlock()
		if atEnd {
			size, err := f.ino.size(f.fd)
			if err != nil {
				return 0, off, f.pathErr(op, err)
			}
			end = size
		}
	}
	if (!atEnd || f.fsizeMax < 1<<63-1) && end+int64(len(p)) > f.fsizeMax {
		if end >= f.fsizeMax {
			return 0, off, f.pathErr(op, syscall.EFBIG)
		}
		p, limited = p[:f.fsizeMax-end], true
	}
	// The largest file the host takes: a write the cache keeps would
	// otherwise be refused only at writeback. Like the limit above, and as
	// the kernel does, a write crossing it is short, one past it fails.
	if !atEnd {
		if fit := f.ino.fitWrite(off, len(p)); fit < len(p) {
			if fit == 0 {
				return 0, off, f.pathErr(op, syscall.EFBIG)
			}
			p, limited = p[:fit], true
		}
	}
	start := sampleStart(f.e.sampleMask)
	n, at, path, err := f.ino.write(f, p, off, flags, atEnd)
	f.e.st.record(opWrite, path, n, since(start), err)
	if n > 0 {
		f.ino.clearPrivileges()
	}
	if err == nil && n > 0 && (f.osync || f.dsync || flags&(unix.RWF_SYNC|unix.RWF_DSYNC) != 0) {
		mode := pagecache.SyncData
		if f.osync || flags&unix.RWF_SYNC != 0 {
			mode = pagecache.SyncFull
		}
		if serr := f.ino.syncRange(at, at+int64(n), mode); serr != nil {
			f.checkErrs()
			err = serr
		}
	}
	if err == nil && limited {
		err = syscall.EFBIG
	}
	if err != nil {
		return n, at, f.pathErr(op, err)
	}
	return n, at, nil
}

// Read reads from the handle's offset and advances it.
func (f *File) Read(p []byte) (int, error) {
	if f == nil {
		return 0, errNilFile("read")
	}
	f.posMu.Lock()
	defer f.posMu.Unlock()
	n, err := f.readAt(p, f.pos, 0, "read")
	f.pos += int64(n)
	if n > 0 && err == io.EOF {
		err = nil
	}
	return n, err
}

// Write writes at the handle's offset (at the end of file with O_APPEND)
// and advances it past the bytes written.
func (f *File) Write(p []byte) (int, error) {
	if f == nil {
		return 0, errNilFile("write")
	}
	f.posMu.Lock()
	defer f.posMu.Unlock()
	n, at, err := f.writeAt(p, f.pos, 0, f.append, "write")
	if f.append && n > 0 {
		f.pos = at + int64(n)
	} else {
		f.pos += int64(n)
	}
	return n, err
}

// Seek sets the offset for the next Read or Write: whence is io.SeekStart,
// io.SeekCurrent, io.SeekEnd, or SeekData (3) / SeekHole (4), which report
// the host's real extents merged with data only in the cache. A negative
// result, or one past the largest file the host's filesystem takes, fails
// with EINVAL, as lseek(2) does; SeekData/SeekHole at or past the end of
// file fail with ENXIO, and with a negative offset EINVAL (lseek answers
// ENXIO); other whence values fail with EINVAL.
func (f *File) Seek(offset int64, whence int) (int64, error) {
	if f == nil {
		return 0, errNilFile("seek")
	}
	ticket, ok := f.gate.enter()
	if !ok {
		return 0, f.pathErr("seek", fs.ErrClosed)
	}
	defer f.gate.leave(ticket)
	f.posMu.Lock()
	defer f.posMu.Unlock()
	var pos int64
	switch whence {
	case io.SeekStart:
		pos = offset
	case io.SeekCurrent:
		if (offset > 0 && f.pos > (1<<63-1)-offset) || (offset < 0 && f.pos+offset < 0) {
			return 0, f.pathErr("seek", syscall.EINVAL)
		}
		pos = f.pos + offset
	case io.SeekEnd:
		size, err := f.ino.size(f.fd)
		if err != nil {
			return 0, f.pathErr("seek", err)
		}
		if offset > 0 && size > (1<<63-1)-offset {
			return 0, f.pathErr("seek", syscall.EINVAL)
		}
		pos = size + offset
	case SeekData, SeekHole:
		var err error
		if pos, err = f.seekExtent(offset, whence); err != nil {
			return 0, f.pathErr("seek", err)
		}
	default:
		return 0, f.pathErr("seek", syscall.EINVAL)
	}
	if pos < 0 || !f.ino.seekable(pos) {
		return 0, f.pathErr("seek", syscall.EINVAL)
	}
	f.pos = pos
	return pos, nil
}

// Whence values for data and holes (lseek(2) SEEK_DATA, SEEK_HOLE).
const (
	SeekData = 3
	SeekHole = 4
)

// Stat returns the file's metadata from the host, with the size the
// engine holds (which includes cached writes not yet written back). Its
// Sys is a *syscall.Stat_t, as with os.File. Everything else is the
// host's: the modification time and the blocks allocated change when
// cached writes reach the host (writeback), not when they are made.
func (f *File) Stat() (fs.FileInfo, error) {
	if f == nil {
		return nil, errNilFile("stat")
	}
	ticket, ok := f.gate.enter()
	if !ok {
		return nil, f.pathErr("stat", fs.ErrClosed)
	}
	defer f.gate.leave(ticket)
	var st unix.Stat_t
	if err := fstat(f.fd, &st); err != nil {
		return nil, f.pathErr("stat", err)
	}
	size, err := f.ino.size(f.fd)
	if err != nil {
		return nil, f.pathErr("stat", err)
	}
	st.Size = size
	f.ino.mode.Store(st.Mode) // see a setuid bit set from outside (doc.go "Limits")
	return newFileInfo(f.name, &st), nil
}

// Sync writes the file's cached data back and fsyncs it. It reports each
// writeback error once to every handle that was open when it happened
// (and to a later handle if no handle had seen it); data whose writeback
// failed stays cached and dirty, and the next Sync writes it again.
func (f *File) Sync() error { return f.syncMode(pagecache.SyncFull, "sync") }

// Datasync is Sync with fdatasync.
func (f *File) Datasync() error { return f.syncMode(pagecache.SyncData, "datasync") }

func (f *File) syncMode(mode pagecache.SyncMode, op string) error {
	if f == nil {
		return errNilFile(op)
	}
	ticket, ok := f.gate.enter()
	if !ok {
		return f.pathErr(op, fs.ErrClosed)
	}
	defer f.gate.leave(ticket)
	start := monoNow()
	err := f.ino.sync(mode)
	if cerr := f.checkErrs(); cerr != nil {
		err = cerr
	}
	f.e.st.record(opSync, pathSync, 0, monoNow()-start, err)
	if err != nil {
		return f.pathErr(op, err)
	}
	return nil
}

// checkErrs returns the file's writeback error this handle has not seen.
func (f *File) checkErrs() error {
	f.errMu.Lock()
	defer f.errMu.Unlock()
	return f.ino.errs.Check(&f.errCursor)
}

// Truncate changes the file's size. Cached bytes past a smaller size are
// dropped without being written; the tail of a partial last page reads
// zero, as does everything a larger size adds.
func (f *File) Truncate(size int64) error {
	if f == nil {
		return errNilFile("truncate")
	}
	ticket, ok := f.gate.enter()
	if !ok {
		return f.pathErr("truncate", fs.ErrClosed)
	}
	defer f.gate.leave(ticket)
	switch {
	case size < 0:
		return f.pathErr("truncate", syscall.EINVAL)
	case !f.writable:
		return f.pathErr("truncate", syscall.EBADF) // ftruncate says EINVAL: see File
	case size > f.fsizeMax:
		return f.pathErr("truncate", syscall.EFBIG)
	}
	if err := f.ino.truncate(f.fd, size); err != nil {
		return f.pathErr("truncate", err)
	}
	return nil
}

// Allocate is fallocate(2). Supported modes: 0 (allocate and grow),
// FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE,
// FALLOC_FL_ZERO_RANGE (optionally with KEEP_SIZE); others fail with
// EOPNOTSUPP. Cached pages in punched or zeroed ranges read zero.
func (f *File) Allocate(mode uint32, off, length int64) error {
	if f == nil {
		return errNilFile("allocate")
	}
	ticket, ok := f.gate.enter()
	if !ok {
		return f.pathErr("allocate", fs.ErrClosed)
	}
	defer f.gate.leave(ticket)
	// In fallocate's order: the range, the mode, the handle's mode, then
	// the range's end.
	if off < 0 || length <= 0 {
		return f.pathErr("allocate", syscall.EINVAL)
	}
	switch mode {
	case 0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
		unix.FALLOC_FL_ZERO_RANGE, unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE:
	default:
		return f.pathErr("allocate", syscall.EOPNOTSUPP)
	}
	switch {
	case !f.writable:
		return f.pathErr("allocate", syscall.EBADF)
	case off > (1<<63-1)-length:
		return f.pathErr("allocate", syscall.EFBIG)
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && off+length > f.fsizeMax {
		return f.pathErr("allocate", syscall.EFBIG)
	}
	if err := f.ino.allocate(f.fd, mode, off, length); err != nil {
		return f.pathErr("allocate", err)
	}
	f.ino.clearPrivileges()
	return nil
}

// Close waits for the handle's calls in flight, closes its descriptor and,
// for the file's last handle, writes the cached data back (without
// fsync). It reports a writeback error this handle has not seen. A second
// Close fails with fs.ErrClosed.
func (f *File) Close() error {
	if f == nil {
		return errNilFile("close")
	}
	if !f.gate.close() {
		return f.pathErr("close", fs.ErrClosed)
	}
	f.e.mu.Lock()
	delete(f.e.handles, f)
	f.e.mu.Unlock()
	err := unix.Close(int(f.fd))
	f.e.dropRef(f.ino, true)
	if cerr := f.checkErrs(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		return f.pathErr("close", err)
	}
	return nil
}

// fileInfo implements fs.FileInfo from a stat buffer. Sys returns a
// *syscall.Stat_t, as the FileInfo of an os.File does, so that code
// written for one works with the other.
type fileInfo struct {
	name string
	st   syscall.Stat_t
}

func newFileInfo(name string, st *unix.Stat_t) *fileInfo {
	base := name
	for i := len(base) - 1; i >= 0; i-- {
		if base[i] == '/' {
			base = base[i+1:]
			break
		}
	}
	return &fileInfo{name: base, st: syscall.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: syscall.Timespec(st.Atim), Mtim: syscall.Timespec(st.Mtim), Ctim: syscall.Timespec(st.Ctim),
	}}
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.st.Size }
func (fi *fileInfo) ModTime() time.Time { return time.Unix(fi.st.Mtim.Unix()) }
func (fi *fileInfo) IsDir() bool        { return fi.st.Mode&syscall.S_IFMT == syscall.S_IFDIR }
func (fi *fileInfo) Sys() any           { return &fi.st }
func (fi *fileInfo) Mode() fs.FileMode {
	m := fs.FileMode(fi.st.Mode & 0o777)
	if fi.st.Mode&unix.S_ISUID != 0 {
		m |= fs.ModeSetuid
	}
	if fi.st.Mode&unix.S_ISGID != 0 {
		m |= fs.ModeSetgid
	}
	if fi.st.Mode&unix.S_ISVTX != 0 {
		m |= fs.ModeSticky
	}
	return m
}

var (
	_ io.ReadWriteSeeker = (*File)(nil)
	_ io.ReaderAt        = (*File)(nil)
	_ io.WriterAt        = (*File)(nil)
	_ io.Closer          = (*File)(nil)
	_ io.ReaderAt        = (*Mapping)(nil)
	_ io.WriterAt        = (*Mapping)(nil)
	_ fs.FileInfo        = (*fileInfo)(nil)
)
