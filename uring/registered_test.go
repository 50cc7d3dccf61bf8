//go:build linux

package uring

import (
	"syscall"
	"testing"
)

// TestRegisteredBuffersParity: every backend answers buffer registration
// and fixed reads and writes as the kernel does, through Submit and Do
// alike: a second registration is EBUSY, an empty list or buffer EINVAL,
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
				{"register an empty buffer", func() error { return be.RegisterBuffers([][]byte{mem[:4096], mem[:0]}) }, syscall.EINVAL},
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
					for how, got := range map[string]struct {
						n   int
						err error
					}{"Submit": {one[0].N, one[0].Err}, "Do": {n, err}} {
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
			t.Logf("%d registration steps and %d fixed requests, twice each way", len(steps), len(reqs))
		})
	}
}
