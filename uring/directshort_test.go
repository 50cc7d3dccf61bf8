//go:build linux

package uring

import (
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
// short (881 of 4096 bytes), while the file grows before the remainder
// would be read: the remainder's offset is unaligned, which O_DIRECT
// refuses with EINVAL once the file is longer. The read must report the
// 881 bytes as end of file, as pread does, and not fail. Without the
// growth, the remainder reads 0 bytes (end of file) on every kernel.
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
				if r := reqs[0]; r.N != tail || r.Err != nil {
					t.Fatalf("read = %d, %v; want %d, nil (end of file when read)", r.N, r.Err, tail)
				}
				if string(buf[:tail]) != string(content[4096:]) {
					t.Fatal("bytes read differ from the file's")
				}
			})
		}
	}
}
