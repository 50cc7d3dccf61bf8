//go:build linux

package uring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// growAfterFirstRead is an injector that, at the first read's completion,
// grows the file to size, as another writer may between a short read and
// its resumption.
type growAfterFirstRead struct {
	fd   int
	size int64
	done atomic.Bool
}

func (g *growAfterFirstRead) Enter() syscall.Errno         { return 0 }
func (g *growAfterFirstRead) Issue(*Request) (int32, bool) { return 0, false }
func (g *growAfterFirstRead) Complete(r *Request, res int32) int32 {
	if r.Op.IsRead() && g.done.CompareAndSwap(false, true) {
		if err := unix.Ftruncate(g.fd, g.size); err != nil {
			panic(err)
		}
	}
	return res
}

// TestDirectReadShortAtEOF reads an O_DIRECT page that the file's end cuts
// short (881 of 4096 bytes). Without growth the remainder reads 0 bytes:
// end of file, N = 881, Err nil. When the file grows before the remainder
// is read, the remainder's offset is unaligned and the kernel refuses it:
// N = 881 with EINVAL, which callers that can tell a direct read use to
// read the rest again from an aligned offset (or to end it there).
func TestDirectReadShortAtEOF(t *testing.T) {
	const tail = 881
	content := randomBytes(7, 4096+tail)
	for _, grow := range []bool{false, true} {
		for _, name := range testBackends() {
			t.Run(map[bool]string{false: "still", true: "grows"}[grow]+"/backend="+name, func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "f")
				if err := os.WriteFile(path, content, 0o644); err != nil {
					t.Fatal(err)
				}
				fd, err := unix.Open(path, unix.O_RDWR|unix.O_DIRECT, 0)
				if err != nil {
					t.Skipf("O_DIRECT not supported here: %v", err)
				}
				defer unix.Close(fd)
				if grow && !refusesUnalignedDirect(fd) {
					t.Skip("this file system serves unaligned O_DIRECT reads (tmpfs), so a resumed read is not refused")
				}
				var opts Options
				if grow {
					opts.Injector = &growAfterFirstRead{fd: fd, size: 64 << 10}
				}
				be := openBackend(t, name, opts)
				buf := mmapBuffer(t, 4096)
				reqs := []Request{{Op: OpRead, Fd: int32(fd), Off: 4096, Buf: buf}}
				if err := be.Submit(reqs); err != nil {
					t.Fatal(err)
				}
				var want error
				if grow {
					want = syscall.EINVAL
				}
				if r := reqs[0]; r.N != tail || !errors.Is(r.Err, want) && r.Err != want {
					t.Fatalf("read = %d, %v; want %d, %v", r.N, r.Err, tail, want)
				}
				if string(buf[:tail]) != string(content[4096:]) {
					t.Fatal("bytes read differ from the file's")
				}
			})
		}
	}
}

// refusesUnalignedDirect reports whether an O_DIRECT read at an unaligned
// offset of fd fails with EINVAL, as on block-device file systems (tmpfs
// serves it).
func refusesUnalignedDirect(fd int) bool {
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		panic(err)
	}
	defer unix.Munmap(buf)
	_, err = unix.Pread(fd, buf, 1)
	return err == unix.EINVAL
}

// TestRWFlags: reads and writes with each RWF_* flag a caller may pass
// (RWF_HIPRI, RWF_DSYNC, RWF_SYNC, RWF_NOWAIT and combinations) complete
// on every backend, through buffered and O_DIRECT descriptors, with the
// bytes written read back. RWF_HIPRI once made the rings' reads and
// writes fail with EINVAL: a ring not set up for polling refuses it,
// where preadv2 and pwritev2 take it as a hint.
func TestRWFlags(t *testing.T) {
	flags := []struct {
		name string
		v    uint32
	}{
		{"HIPRI", unix.RWF_HIPRI},
		{"DSYNC", unix.RWF_DSYNC},
		{"SYNC", unix.RWF_SYNC},
		{"HIPRI|DSYNC", unix.RWF_HIPRI | unix.RWF_DSYNC},
		{"NOWAIT", unix.RWF_NOWAIT},
	}
	for _, name := range testBackends() {
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("backend=%s/direct=%v", name, direct), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "f")
				if err := os.WriteFile(path, make([]byte, 64<<10), 0o644); err != nil {
					t.Fatal(err)
				}
				flag := unix.O_RDWR
				if direct {
					flag |= unix.O_DIRECT
				}
				fd, err := unix.Open(path, flag, 0)
				if err != nil {
					t.Skipf("open with %#x: %v", flag, err)
				}
				defer unix.Close(fd)
				be := openBackend(t, name, Options{})
				buf := mmapBuffer(t, 8192) // page-aligned, for O_DIRECT
				for i, fl := range flags {
					off := int64(i) * 8192
					want := randomBytes(uint64(i+1), 4096)
					copy(buf[:4096], want)
					for _, op := range []Op{OpWrite, OpRead, OpWritev, OpReadv} {
						if op == OpRead || op == OpReadv {
							clear(buf[:4096])
						}
						req := Request{Op: op, Fd: int32(fd), Off: off, Flags: fl.v}
						if op == OpRead || op == OpWrite {
							req.Buf = buf[:4096]
						} else {
							req.Vecs = [][]byte{buf[:4096]}
						}
						reqs := []Request{req}
						if err := be.Submit(reqs); err != nil {
							t.Fatalf("%s %s: Submit: %v", fl.name, op, err)
						}
						if r := reqs[0]; r.Err != nil || r.N != 4096 {
							// RWF_NOWAIT: the host may answer that the I/O
							// would wait, or that it cannot tell (buffered
							// writes on some file systems). The reads then
							// check the bytes of a plain write.
							refused := errors.Is(r.Err, syscall.EAGAIN) || op.IsWrite() && errors.Is(r.Err, syscall.EOPNOTSUPP)
							if fl.v&unix.RWF_NOWAIT == 0 || !refused {
								t.Fatalf("%s %s at %d: %d, %v", fl.name, op, off, r.N, r.Err)
							}
							reqs[0].Flags = 0
							if err := be.Submit(reqs); err != nil || reqs[0].Err != nil {
								t.Fatalf("%s %s at %d without flags: %v, %v", fl.name, op, off, err, reqs[0].Err)
							}
						}
						if op.IsRead() && !bytes.Equal(buf[:4096], want) {
							t.Fatalf("%s %s at %d: read other bytes than were written", fl.name, op, off)
						}
					}
				}
			})
		}
	}
}
