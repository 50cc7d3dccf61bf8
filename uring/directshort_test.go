//go:build linux

package uring

import (
	"errors"
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
