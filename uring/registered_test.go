//go:build linux

package uring

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRegisteredBuffersParity: every backend answers buffer registration
// and fixed reads and writes as the kernel does, through Submit, Do and
// Submit of Inline requests alike: a second registration is EBUSY, an empty list or buffer EINVAL,
// unregistering nothing ENXIO, and a fixed request whose bytes are not in
// the registered buffer it names fails with EFAULT. (psync accepted all
// of these, and a ring's Do ran fixed requests it would refuse in
// Submit: a program with a wrong buffer index worked on one backend and
// failed on another.)
func TestRegisteredBuffersParity(t *testing.T) {
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			be := openBackend(t, name, Options{})
			fd := int32(tempFile(t, "f", randomBytes(3, 8192), syscall.O_RDWR).Fd())
			mem, other := mmapBuffer(t, 8192), mmapBuffer(t, 4096)
			steps := []struct {
				name string
				call func() error
				want syscall.Errno
			}{
				{"unregister none", be.UnregisterBuffers, syscall.ENXIO},
				{"register no buffers", func() error { return be.RegisterBuffers(nil) }, syscall.EINVAL},
				{"register an empty buffer", func() error { return be.RegisterBuffers([][]byte{mem[:4096], mem[:0]}) }, syscall.EFAULT},
				{"register", func() error { return be.RegisterBuffers([][]byte{mem[:4096], mem[4096:]}) }, 0},
				{"register again", func() error { return be.RegisterBuffers([][]byte{other}) }, syscall.EBUSY},
			}
			for _, s := range steps {
				if got := errnoOfErr(s.call()); got != s.want {
					t.Fatalf("%s: %v, want %v", s.name, got, s.want)
				}
			}
			reqs := []struct {
				name string
				r    Request
				want syscall.Errno
			}{
				{"read in buffer 0", Request{Op: OpReadFixed, Fd: fd, Buf: mem[100:200]}, 0},
				{"write all of buffer 1", Request{Op: OpWriteFixed, Fd: fd, Buf: mem[4096:], BufIndex: 1}, 0},
				{"read of buffer 1's bytes naming 0", Request{Op: OpReadFixed, Fd: fd, Buf: mem[4096:4196]}, syscall.EFAULT},
				{"read across buffer 0's end", Request{Op: OpReadFixed, Fd: fd, Buf: mem[4000:4196]}, syscall.EFAULT},
				{"write from unregistered memory", Request{Op: OpWriteFixed, Fd: fd, Buf: other[:100], BufIndex: 1}, syscall.EFAULT},
				{"read naming buffer 2 of 2", Request{Op: OpReadFixed, Fd: fd, Buf: mem[:100], BufIndex: 2}, syscall.EFAULT},
			}
			check := func(when string) {
				for _, c := range reqs {
					one := []Request{c.r}
					if err := be.Submit(one); err != nil {
						t.Fatal(err)
					}
					n, err := Do(be, c.r)
					in := []Request{c.r}
					in[0].Inline = true
					if err := be.Submit(in); err != nil {
						t.Fatal(err)
					}
					for how, got := range map[string]struct {
						n   int
						err error
					}{"Submit": {one[0].N, one[0].Err}, "Do": {n, err}, "Submit (Inline)": {in[0].N, in[0].Err}} {
						wantN := 0
						if c.want == 0 {
							wantN = len(c.r.Buf)
						}
						if errnoOfErr(got.err) != c.want || got.n != wantN {
							t.Errorf("%s: %s %s: %d, %v; want %d, %v", when, how, c.name, got.n, got.err, wantN, c.want)
						}
					}
				}
			}
			check("registered")
			if err := be.UnregisterBuffers(); err != nil {
				t.Fatal(err)
			}
			for i := range reqs {
				reqs[i].want = syscall.EFAULT
			}
			check("after UnregisterBuffers")
			if got := errnoOfErr(be.UnregisterBuffers()); got != syscall.ENXIO {
				t.Fatalf("unregister again: %v, want ENXIO", got)
			}
			t.Logf("%d registration steps and %d fixed requests, twice each of three ways", len(steps), len(reqs))
		})
	}
}

// TestRegisteredFilesParity: every backend keeps a registered file table
// as the kernel keeps a ring's: the same errnos for a missing, empty,
// second or out-of-range table and for descriptors that are not open (an
// update stops at the first one, failing only when it is the first), and
// a slot keeps naming the file registered in it after the caller closes
// its descriptor, even when that number is reused by another file. No
// descriptor is left behind. (psync and iouringgo kept descriptor
// numbers, so that a slot whose descriptor was closed and reused read
// the other file.)
func TestRegisteredFilesParity(t *testing.T) {
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			dir := t.TempDir()
			write := func(name string, b []byte) string {
				path := filepath.Join(dir, name)
				if err := os.WriteFile(path, b, 0o644); err != nil {
					t.Fatal(err)
				}
				return path
			}
			first, second := randomBytes(1, 4096), randomBytes(2, 4096)
			firstPath, secondPath := write("first", first), write("second", second)
			before := snapshotResources(t)
			be := openBackend(t, name, Options{})
			fd, err := unix.Open(firstPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			steps := []struct {
				name string
				call func() error
				want syscall.Errno
			}{
				{"unregister none", be.UnregisterFiles, syscall.ENXIO},
				{"update none", func() error { return be.UpdateFiles(0, []int32{int32(fd)}) }, syscall.ENXIO},
				{"register no slots", func() error { return be.RegisterFiles(nil) }, syscall.EINVAL},
				{"register a closed descriptor", func() error { return be.RegisterFiles([]int32{int32(fd), 1 << 20}) }, syscall.EBADF},
				{"register", func() error { return be.RegisterFiles([]int32{int32(fd), -1, -1}) }, 0},
				{"register again", func() error { return be.RegisterFiles([]int32{int32(fd)}) }, syscall.EBUSY},
				{"update past the end", func() error { return be.UpdateFiles(2, []int32{int32(fd), int32(fd)}) }, syscall.EINVAL},
				{"update at a negative slot", func() error { return be.UpdateFiles(-1, []int32{int32(fd)}) }, syscall.EINVAL},
				{"update with a closed descriptor", func() error { return be.UpdateFiles(1, []int32{1 << 20}) }, syscall.EBADF},
				{"update stopping at a closed descriptor", func() error { return be.UpdateFiles(1, []int32{int32(fd), 1 << 20}) }, 0},
			}
			for _, s := range steps {
				if got := errnoOfErr(s.call()); got != s.want {
					t.Fatalf("%s: %v, want %v", s.name, got, s.want)
				}
			}
			// The caller's descriptor goes, and its number is reused.
			unix.Close(fd)
			fd2, err := unix.Open(secondPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd2)
			if fd2 != fd {
				t.Logf("descriptor %d not reused (got %d): the slot is still checked", fd, fd2)
			}
			for _, c := range []struct {
				slot int32
				want []byte
				err  syscall.Errno
			}{{0, first, 0}, {1, first, 0}, {2, nil, syscall.EBADF}, {3, nil, syscall.EBADF}} {
				one := []Request{{Op: OpRead, Fd: c.slot, Fixed: true, Buf: make([]byte, 4096)}}
				if err := be.Submit(one); err != nil {
					t.Fatal(err)
				}
				p := make([]byte, 4096)
				n, err := Do(be, Request{Op: OpRead, Fd: c.slot, Fixed: true, Buf: p})
				for how, got := range map[string]struct {
					n   int
					err error
					b   []byte
				}{"Submit": {one[0].N, one[0].Err, one[0].Buf}, "Do": {n, err, p}} {
					if errnoOfErr(got.err) != c.err || (c.want != nil && (got.n != len(c.want) || !bytes.Equal(got.b, c.want))) {
						t.Errorf("%s slot %d: %d bytes, %v; want the first file's bytes, errno %v", how, c.slot, got.n, got.err, c.err)
					}
				}
			}
			if err := be.UnregisterFiles(); err != nil {
				t.Fatal(err)
			}
			if err := be.RegisterFiles([]int32{int32(fd2)}); err != nil {
				t.Fatal(err)
			}
			unix.Close(fd2)
			be.Close() // with a table registered
			if after := snapshotResources(t); after.fds != before.fds {
				t.Errorf("descriptors: %d before, %d after unregistering, a table left at Close and closing ours", before.fds, after.fds)
			}
		})
	}
}

// TestRegisteredFilesUpdateRace: while one goroutine keeps replacing
// slot 0 of the table with one file or another (and closing its own
// descriptors), readers through the slot always get one of the two
// files' bytes, whole: a replaced descriptor is never closed under a
// request that uses it, and never names a third file.
func TestRegisteredFilesUpdateRace(t *testing.T) {
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			dir := t.TempDir()
			contents := [2][]byte{randomBytes(11, 4096), randomBytes(12, 4096)}
			var paths [2]string
			for i, b := range contents {
				paths[i] = filepath.Join(dir, fmt.Sprint(i))
				if err := os.WriteFile(paths[i], b, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			open := func(i int) int32 {
				fd, err := unix.Open(paths[i], unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					t.Error(err)
					return -1
				}
				return int32(fd)
			}
			be := openBackend(t, name, Options{})
			fd := open(0)
			if err := be.RegisterFiles([]int32{fd}); err != nil {
				t.Fatal(err)
			}
			unix.Close(int(fd))
			var stop atomic.Bool
			var wg sync.WaitGroup
			updates := 0
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; !stop.Load(); i++ {
					fd := open(i % 2)
					if err := be.UpdateFiles(0, []int32{fd}); err != nil {
						t.Errorf("UpdateFiles: %v", err)
					}
					unix.Close(int(fd)) // the table keeps its own
					updates++
				}
			}()
			var reads atomic.Int64
			for range 4 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					reqs := []Request{{Op: OpRead, Fd: 0, Fixed: true, Buf: make([]byte, 4096)}}
					for !stop.Load() {
						if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || reqs[0].N != 4096 {
							t.Errorf("read through slot 0: %d, %v, %v", reqs[0].N, err, reqs[0].Err)
							return
						}
						if !bytes.Equal(reqs[0].Buf, contents[0]) && !bytes.Equal(reqs[0].Buf, contents[1]) {
							t.Errorf("read through slot 0: bytes of neither file")
							return
						}
						reads.Add(1)
					}
				}()
			}
			time.Sleep(200 * time.Millisecond)
			stop.Store(true)
			wg.Wait()
			t.Logf("%d reads through the slot during %d updates", reads.Load(), updates)
		})
	}
}
