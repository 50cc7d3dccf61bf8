//go:build linux

package hostmap

import (
	"io/fs"
	"syscall"
)

// ErrClosed is returned by every method of a closed Mapper and by the
// second Close of a Mapping. It matches both syscall.EBADF and fs.ErrClosed
// with errors.Is.
var ErrClosed error = closedError{}

type closedError struct{}

func (closedError) Error() string        { return "hostmap: closed" }
func (closedError) Unwrap() error        { return syscall.EBADF }
func (closedError) Is(target error) bool { return target == fs.ErrClosed }

// errnoOf returns err as a syscall.Errno; x/sys/unix returns Errno values,
// so anything else is reported as EIO.
func errnoOf(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}
