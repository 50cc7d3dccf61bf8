//go:build linux

package uring

import (
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileTable is a registered file table kept in Go, for the backends that
// resolve Fixed requests themselves (psync has no kernel table; the
// iouringgo library cannot express empty slots). It behaves as a ring's
// kernel table does: it holds a duplicate of each registered descriptor,
// so that closing the caller's descriptor does not change what a slot
// names (the kernel holds a reference to each file likewise), and it
// refuses what the kernel refuses, with the same errnos.
//
// Memory: the duplicates belong to the table from register or update
// until the slot is replaced, unregister, or close.
type fileTable struct {
	// mu is held for reading by a caller that uses a slot's descriptor,
	// from resolveLocked until the descriptor has been handed to the
	// kernel, so that no update closes it meanwhile.
	mu sync.RWMutex
	// fds are the slots: a duplicate owned by the table, or -1 for an
	// empty slot; nil when no table is registered. +checklocks:mu
	fds []int32
}

// maxRegFiles is the most slots a registered file table may have (the
// kernel's IORING_MAX_FIXED_FILES); regFilesSkip, in an update, keeps a
// slot as it is (IORING_REGISTER_FILES_SKIP).
const (
	maxRegFiles  = 1 << 20
	regFilesSkip = -2
)

// register sets the table: -1 leaves a slot empty. It refuses, in the
// kernel's order, a second table (EBUSY), an empty one (EINVAL), one
// larger than maxRegFiles or RLIMIT_NOFILE (EMFILE) and a descriptor that
// is not open (EBADF).
func (t *fileTable) register(fds []int32) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var rl unix.Rlimit
	switch {
	case t.fds != nil:
		return syscall.EBUSY
	case len(fds) == 0:
		return syscall.EINVAL
	case len(fds) > maxRegFiles || unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && uint64(len(fds)) > rl.Cur:
		return syscall.EMFILE
	}
	table := make([]int32, len(fds))
	for i, fd := range fds {
		table[i] = -1
		if fd == -1 {
			continue
		}
		dup, errno := dupFile(fd)
		if errno != 0 {
			closeFiles(table[:i])
			return errno
		}
		table[i] = dup
	}
	t.fds = table
	return nil
}

// update replaces the slots from off: -1 empties a slot, regFilesSkip
// keeps it. Like the kernel, it stops at the first descriptor that is not
// open and fails with EBADF only when that is the first; it refuses a
// range outside the table (EINVAL) and a missing table (ENXIO).
func (t *fileTable) update(off int, fds []int32) error {
	if off < 0 || len(fds) == 0 {
		return syscall.EINVAL
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fds == nil {
		return syscall.ENXIO
	}
	if off > len(t.fds) || len(fds) > len(t.fds)-off { // (off+len(fds) may overflow)
		return syscall.EINVAL
	}
	for i, fd := range fds {
		if fd == regFilesSkip {
			continue
		}
		next := int32(-1)
		if fd != -1 {
			dup, errno := dupFile(fd)
			if errno != 0 {
				if i == 0 {
					return errno
				}
				return nil
			}
			next = dup
		}
		closeFiles(t.fds[off+i : off+i+1])
		t.fds[off+i] = next
	}
	return nil
}

// unregister drops the table (ENXIO when there is none).
func (t *fileTable) unregister() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fds == nil {
		return syscall.ENXIO
	}
	closeFiles(t.fds)
	t.fds = nil
	return nil
}

// close drops the table, if any, once no caller uses a slot.
func (t *fileTable) close() {
	t.mu.Lock()
	closeFiles(t.fds)
	t.fds = nil
	t.mu.Unlock()
}

// resolveLocked returns the descriptor in slot i (EBADF for an empty or
// missing slot, as from the kernel).
//
// Preconditions: t.mu is held.
func (t *fileTable) resolveLocked(i int32) (int32, syscall.Errno) {
	if i < 0 || int(i) >= len(t.fds) || t.fds[i] < 0 {
		return -1, syscall.EBADF
	}
	return t.fds[i], 0
}

// dupFile returns a close-on-exec duplicate of fd.
func dupFile(fd int32) (int32, syscall.Errno) {
	if fd < 0 {
		return -1, syscall.EBADF
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, errnoOf(err)
	}
	return int32(dup), 0
}

// closeFiles closes the descriptors in a table's slots.
func closeFiles(slots []int32) {
	for _, fd := range slots {
		if fd >= 0 {
			unix.Close(int(fd))
		}
	}
}
