//go:build linux

package hostmap

import (
	"runtime/debug"
	"syscall"
	"unsafe"
)

// SafeCopy copies min(len(dst), len(src)) bytes from src to dst like copy,
// but a memory fault on either side (SIGBUS from a page of a file mapping
// that lies past the file's end or failed to read, SIGSEGV from memory
// that is no longer mapped) ends the copy with syscall.EFAULT instead of
// crashing the process.
//
// The copy proceeds in pieces that never cross a page boundary of src or
// dst, so on a fault n is exact: bytes [0, n) were copied, and the page
// holding byte n of src or dst is inaccessible. Bytes of dst past n are
// unspecified (part of the faulting piece may have been written).
//
// SafeCopy does not allocate. It changes debug.SetPanicOnFault only for
// the calling goroutine and only for the duration of the call.
func SafeCopy(dst, src []byte) (n int, err error) {
	total := min(len(dst), len(src))
	if total == 0 {
		return 0, nil
	}
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			if _, ok := r.(interface{ Addr() uintptr }); !ok {
				panic(r) // not a memory fault: not ours to hide
			}
			err = syscall.EFAULT
		}
	}()
	for n < total {
		k := min(total-n, pageRest(unsafe.Pointer(&src[n])), pageRest(unsafe.Pointer(&dst[n])))
		copy(dst[n:n+k], src[n:n+k])
		n += k
	}
	return n, nil
}

// pageRest returns the number of bytes from p to the next page boundary.
func pageRest(p unsafe.Pointer) int {
	return int(pageSize - int64(uintptr(p))&(pageSize-1))
}
