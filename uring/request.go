//go:build linux

package uring

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// Op is the kind of operation a Request performs.
type Op uint8

// Operations. Each maps to one io_uring opcode (and one syscall in psync).
const (
	OpNop           Op = iota // no operation; N = 0
	OpRead                    // pread(Fd, Buf, Off)
	OpWrite                   // pwrite(Fd, Buf, Off)
	OpReadv                   // preadv(Fd, Vecs, Off)
	OpWritev                  // pwritev(Fd, Vecs, Off)
	OpReadFixed               // OpRead into registered buffer BufIndex; Buf lies inside it
	OpWriteFixed              // OpWrite from registered buffer BufIndex
	OpFsync                   // fsync; fdatasync with Flags = FsyncDatasync; ranged when Len > 0
	OpFallocate               // fallocate(Fd, Flags (mode), Off, Len)
	OpSyncFileRange           // sync_file_range(Fd, Off, Len, Flags)
	OpCancel                  // cancel every in-flight request on Fd
	OpFtruncate               // ftruncate(Fd, Off): Off is the new size
	numOps
)

var opNames = [numOps]string{"nop", "read", "write", "readv", "writev", "read_fixed",
	"write_fixed", "fsync", "fallocate", "sync_file_range", "cancel", "ftruncate"}

func (o Op) String() string {
	if o < numOps {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// IsRead reports whether o moves bytes from a file into memory.
func (o Op) IsRead() bool { return o == OpRead || o == OpReadv || o == OpReadFixed }

// IsWrite reports whether o moves bytes from memory into a file.
func (o Op) IsWrite() bool { return o == OpWrite || o == OpWritev || o == OpWriteFixed }

// kernelOp is the io_uring opcode for each Op.
var kernelOp = [numOps]uint8{opNop, opRead, opWrite, opReadv, opWritev, opReadFixed,
	opWriteFixed, opFsync, opFallocate, opSyncFileRange, opAsyncCancel, opFtruncate}

// Request is one operation and, after Submit returns, its result.
//
// The caller owns a Request. From Submit until Submit returns, the backend
// reads the input fields and writes N and Err; the caller must not touch the
// Request or the memory its Buf and Vecs refer to in that time. Submit keeps
// a reference to every buffer until the kernel has completed the operation,
// so heap buffers cannot be freed or moved under the kernel.
//
// The Flags of a read or write are RWF_* flags, as preadv2 and pwritev2
// take them. RWF_HIPRI is a hint there, and the io_uring backends drop it:
// their rings do not poll for completions, and the kernel would refuse
// it on them. A buffered write with RWF_NOWAIT on a file system that
// cannot write without blocking (ext4) gets the answer of the kernel's
// path: EAGAIN through a ring, EOPNOTSUPP from pwritev2 (psync, Inline).
//
// Inline asks a ring to run the request with a plain syscall in the
// calling goroutine, as Do does, instead of submitting it: for files on
// which the kernel would hand every ring request to a worker thread
// (InlineFile). It changes where the request runs, not its result; psync
// runs every request that way, and iouringgo and requests on registered
// files (Fixed) ignore it.
type Request struct {
	Op       Op
	Fixed    bool     // Fd is an index into the registered file table
	BufIndex uint16   // registered buffer index for OpReadFixed/OpWriteFixed
	Flags    uint32   // RWF_* for reads and writes, FsyncDatasync, fallocate mode, sync_file_range flags
	Fd       int32    // file descriptor (or registered index when Fixed)
	Inline   bool     // run with a plain syscall, not through a ring (see InlineFile)
	Off      int64    // file offset
	Len      int64    // OpFallocate, OpSyncFileRange, ranged OpFsync
	Buf      []byte   // OpRead, OpWrite, OpReadFixed, OpWriteFixed
	Vecs     [][]byte // OpReadv, OpWritev

	// N is the number of bytes transferred. Short transfers are resumed
	// until the request is complete, so for writes N < length only with
	// Err != nil, and for reads N < length with Err == nil means end of file
	// at Off+N.
	N int
	// Err is nil or a syscall.Errno (or ErrClosed/ErrBroken wrapping one).
	Err error
}

// length is the number of bytes a read or write asks for.
func (r *Request) length() int {
	switch r.Op {
	case OpRead, OpWrite, OpReadFixed, OpWriteFixed:
		return len(r.Buf)
	case OpReadv, OpWritev:
		n := 0
		for _, v := range r.Vecs {
			n += len(v)
		}
		return n
	}
	return 0
}

// validate rejects requests the kernel would misread; it runs before
// anything is handed to a backend.
func (r *Request) validate() syscall.Errno {
	if r.Op >= numOps {
		return syscall.EINVAL
	}
	switch r.Op {
	case OpRead, OpWrite, OpReadv, OpWritev, OpReadFixed, OpWriteFixed:
		if r.Off < 0 {
			return syscall.EINVAL
		}
		if int64(r.length()) > (1<<63-1)-r.Off {
			return syscall.EINVAL
		}
	case OpFtruncate:
		if r.Off < 0 {
			return syscall.EINVAL
		}
	case OpFallocate, OpSyncFileRange, OpFsync:
		if r.Off < 0 || r.Len < 0 {
			return syscall.EINVAL
		}
		if r.Len > (1<<63-1)-r.Off {
			if r.Op == OpFallocate {
				return syscall.EFBIG // as fallocate(2) answers a range past int64
			}
			return syscall.EINVAL
		}
	}
	if r.Op != OpNop && r.Fd < 0 {
		return syscall.EBADF
	}
	return 0
}

// Errors reported for whole backends.
var (
	// ErrClosed is returned (wrapped with EBADF) by a closed backend.
	ErrClosed = &BackendError{Reason: "backend closed", Errno: syscall.EBADF}
	// ErrBroken is returned (wrapped with EIO) after the ring detected a lost
	// completion or could not make progress; the ring must be replaced.
	ErrBroken = &BackendError{Reason: "ring broken", Errno: syscall.EIO}
)

// BackendError is a failure of the backend as a whole. errors.Is matches
// both the error itself and its Errno.
type BackendError struct {
	Reason string
	Errno  syscall.Errno
}

func (e *BackendError) Error() string { return "uring: " + e.Reason + ": " + e.Errno.Error() }

// Unwrap returns the errno, so errors.Is(err, syscall.EIO) works.
func (e *BackendError) Unwrap() error { return e.Errno }

// Backend runs Requests. All implementations are safe for concurrent use.
type Backend interface {
	// Name is "uring", "psync" or "iouringgo".
	Name() string
	// Submit runs every request and returns when all are complete. Each
	// request's own result is in its N and Err. Submit returns a non-nil
	// error only when the backend itself failed (closed, broken); every
	// request's Err is then set too.
	Submit(reqs []Request) error
	// RegisterBuffers registers memory for OpReadFixed/OpWriteFixed. The
	// memory must stay mapped until UnregisterBuffers or Close. Each buffer
	// is at most 1 GiB, and not empty (EFAULT otherwise).
	RegisterBuffers(bufs [][]byte) error
	UnregisterBuffers() error
	// RegisterFiles sets the registered file table; -1 marks an empty slot.
	RegisterFiles(fds []int32) error
	// UpdateFiles replaces table entries starting at off.
	UpdateFiles(off int, fds []int32) error
	UnregisterFiles() error
	// Supports reports whether the backend can run op natively.
	Supports(op Op) bool
	// Stats returns a snapshot of the counters.
	Stats() Stats
	// Close waits for in-flight requests (cancelling them) and releases
	// the backend. Later calls return ErrClosed.
	Close() error
}

// ringRWFlags is what the rings put in a read's or write's SQE of the RWF_*
// flags asked for: all but RWF_HIPRI. It asks for completion by polling,
// which a ring does only when set up for it (IORING_SETUP_IOPOLL, which
// none of ours is): any other ring refuses the request with EINVAL, where
// preadv2 and pwritev2 (and so the psync backend) take it as a hint and
// complete the I/O as usual when the device cannot poll.
func ringRWFlags(flags uint32) uint32 { return flags &^ unix.RWF_HIPRI }

// maxRegBuffers is the most buffers one registration may hold (the
// kernel's IORING_MAX_REG_BUFFERS), and maxRegBuffer the size of one.
const (
	maxRegBuffers = 1 << 14
	maxRegBuffer  = 1 << 30
)

// checkRegBuffers refuses a buffer registration as the kernel does: with
// EINVAL when it has no buffers or too many, with EFAULT when a buffer is
// empty or larger than 1 GiB. (The kernel takes a nil buffer as an empty
// slot, to be filled by an update; this package has no such updates and
// refuses it as empty.)
func checkRegBuffers(bufs [][]byte) syscall.Errno {
	if len(bufs) == 0 || len(bufs) > maxRegBuffers {
		return syscall.EINVAL
	}
	for _, b := range bufs {
		if len(b) == 0 || len(b) > maxRegBuffer {
			return syscall.EFAULT
		}
	}
	return 0
}
