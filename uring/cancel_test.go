//go:build linux

package uring

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cancelPipe returns a pipe whose read end nothing writes to until the
// test ends, so that a read of it waits until cancelled.
func cancelPipe(t *testing.T) (r, w int) {
	t.Helper()
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Close(p[0])
		syscall.Close(p[1])
	})
	return p[0], p[1]
}

// TestCancelInBatchOrInline: an OpCancel cancels a read of its fd handed
// to the ring before it, also when both are in one Submit and when the
// cancel asks to run inline (a cancel has no syscall of its own); the
// read ends with ECANCELED and is not resubmitted. Where the read never
// ended, the pipe is written after 3 s so that the test ends.
func TestCancelInBatchOrInline(t *testing.T) {
	for _, how := range []string{"same batch", "inline", "Do"} {
		t.Run(how, func(t *testing.T) {
			be := openBackend(t, BackendUring, Options{})
			rfd, wfd := cancelPipe(t)
			rescue := time.AfterFunc(3*time.Second, func() { syscall.Write(wfd, []byte("late data!")) })
			defer rescue.Stop()
			read := Request{Op: OpRead, Fd: int32(rfd), Buf: make([]byte, 10)}
			cancel := Request{Op: OpCancel, Fd: int32(rfd)}
			if how == "same batch" {
				reqs := []Request{read, cancel}
				be.Submit(reqs)
				read, cancel = reqs[0], reqs[1]
			} else {
				done := make(chan Request)
				go func() {
					reqs := []Request{read}
					be.Submit(reqs)
					done <- reqs[0]
				}()
				time.Sleep(50 * time.Millisecond) // the read waits in the kernel
				if how == "inline" {
					cancel.Inline = true
					reqs := []Request{cancel}
					be.Submit(reqs)
					cancel = reqs[0]
				} else {
					cancel.N, cancel.Err = Do(be, cancel)
				}
				read = <-done
			}
			if !errors.Is(read.Err, syscall.ECANCELED) || cancel.Err != nil {
				t.Fatalf("read N=%d Err=%v; cancel Err=%v: want the read cancelled", read.N, read.Err, cancel.Err)
			}
		})
	}
}

// TestUpdateFilesOffsetRange: UpdateFiles with an offset past the table,
// even one that overflows an int when added to the length or does not fit
// the kernel's 32 bits, fails with EINVAL on every backend and leaves the
// table as it was.
func TestUpdateFilesOffsetRange(t *testing.T) {
	f := tempFile(t, "f", []byte("hello"), os.O_RDONLY)
	for _, name := range testBackends() {
		for _, off := range []int{2, 1 << 32, int(^uint(0) >> 1)} {
			b := openBackend(t, name, Options{})
			if err := b.RegisterFiles([]int32{int32(f.Fd()), -1}); err != nil {
				t.Fatal(err)
			}
			if err := b.UpdateFiles(off, []int32{-1}); !errors.Is(err, syscall.EINVAL) {
				t.Errorf("%s: UpdateFiles(%d, one slot) = %v, want EINVAL", name, off, err)
			}
			reqs := []Request{{Op: OpRead, Fixed: true, Fd: 0, Buf: make([]byte, 5)}}
			b.Submit(reqs)
			if reqs[0].N != 5 || reqs[0].Err != nil {
				t.Errorf("%s: after UpdateFiles(%d): read of slot 0: %d, %v", name, off, reqs[0].N, reqs[0].Err)
			}
		}
	}
}

// TestRegisterLimitsAsKernel: registrations the kernel refuses are refused
// with its errno by every backend, whether the ring asks the kernel or
// the backend checks itself: a file table larger than RLIMIT_NOFILE or
// than the kernel's most (EMFILE), an empty or oversized buffer (EFAULT).
func TestRegisterLimitsAsKernel(t *testing.T) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	mem := mmapBuffer(t, 4096)
	huge, err := unix.Mmap(-1, 0, maxRegBuffer+4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(huge)
	empty := func(n int) []int32 {
		fds := make([]int32, n)
		for i := range fds {
			fds[i] = -1
		}
		return fds
	}
	tests := []struct {
		name string
		call func(Backend) error
		want syscall.Errno
	}{
		{"files past RLIMIT_NOFILE", func(b Backend) error { return b.RegisterFiles(empty(int(min(rl.Cur, maxRegFiles)) + 1)) }, syscall.EMFILE},
		{"files past the kernel's most", func(b Backend) error { return b.RegisterFiles(empty(maxRegFiles + 1)) }, syscall.EMFILE},
		{"an empty buffer", func(b Backend) error { return b.RegisterBuffers([][]byte{mem[:0]}) }, syscall.EFAULT},
		{"a buffer over 1 GiB", func(b Backend) error { return b.RegisterBuffers([][]byte{huge}) }, syscall.EFAULT},
	}
	for _, tt := range tests {
		for _, name := range testBackends() {
			if err := tt.call(openBackend(t, name, Options{})); !errors.Is(err, tt.want) {
				t.Errorf("%s: %s: %v, want %v", name, tt.name, err, tt.want)
			}
		}
	}
}

// TestBackendsAgreeOnBadRequests: requests with two things wrong, or with
// a file the kernel does not look at, get the same answer from every
// backend, the kernel's: it looks up the file before the registered
// buffer, looks up none for a NOP, and looks up a cancel's.
func TestBackendsAgreeOnBadRequests(t *testing.T) {
	const closed = 9999
	tests := []struct {
		name  string
		req   Request
		files bool // register a table of one empty slot first
		want  syscall.Errno
	}{
		{"cancel on a closed fd", Request{Op: OpCancel, Fd: closed}, false, syscall.EBADF},
		{"NOP on a slot past the table", Request{Op: OpNop, Fd: 77, Fixed: true}, true, 0},
		{"fixed read: closed fd and a buffer not registered", Request{Op: OpReadFixed, Fd: closed, Buf: make([]byte, 10)}, false, syscall.EBADF},
		{"fixed read: closed fd and a bad buffer index", Request{Op: OpReadFixed, Fd: closed, Buf: make([]byte, 10), BufIndex: 5}, false, syscall.EBADF},
	}
	for _, tt := range tests {
		for _, name := range testBackends() {
			b := openBackend(t, name, Options{})
			if err := b.RegisterBuffers([][]byte{mmapBuffer(t, 4096)}); err != nil {
				t.Fatal(err)
			}
			if tt.files {
				if err := b.RegisterFiles([]int32{-1}); err != nil {
					t.Fatal(err)
				}
			}
			reqs := []Request{tt.req}
			b.Submit(reqs)
			if got := errnoOfErr(reqs[0].Err); got != tt.want || reqs[0].N != 0 {
				t.Errorf("%s: %s: %d, %v; want 0, %v", name, tt.name, reqs[0].N, reqs[0].Err, tt.want)
			}
		}
	}
}
