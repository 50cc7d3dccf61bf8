//go:build linux

package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestInlineFiles: an engine runs the host I/O of a file on tmpfs (cache
// fills with and without readahead, reads around a full cache,
// writeback, direct reads and writes, Submit's misses and direct
// operations, Shared mode's reads and writes) as plain syscalls, none of
// it through the ring, where the kernel would hand every request to a
// worker thread; with the ring forced (as the other tests run), the same
// operations submit SQEs. The bytes are the same either way.
func TestInlineFiles(t *testing.T) {
	if !tmpfsUsable() {
		t.Skip("no writable tmpfs at /dev/shm")
	}
	defer ringOnlyForTests.Store(ringOnlyForTests.Load())
	const size = 1 << 20
	configs := []struct {
		name string
		opts Options
		flag int
	}{
		{"exclusive", Options{Mode: Exclusive, CacheSize: 256 << 10}, os.O_RDWR},
		{"exclusive/O_DIRECT", Options{Mode: Exclusive, CacheSize: 256 << 10}, os.O_RDWR | syscall.O_DIRECT},
		{"writethrough", Options{Mode: Writethrough, CacheSize: 256 << 10}, os.O_RDWR},
		{"shared", Options{Mode: Shared}, os.O_RDWR},
		{"no cache/O_DIRECT", Options{Mode: Exclusive, CacheSize: -1}, os.O_RDWR | syscall.O_DIRECT},
	}
	for _, ringOnly := range []bool{false, true} {
		ringOnlyForTests.Store(ringOnly)
		for _, c := range configs {
			t.Run(c.name+map[bool]string{false: "", true: "/ring-only"}[ringOnly], func(t *testing.T) {
				dir, err := os.MkdirTemp("/dev/shm", "ringfs-inline-")
				if err != nil {
					t.Fatal(err)
				}
				defer os.RemoveAll(dir)
				path := filepath.Join(dir, "f")
				want := pattern(size, 3, 1)
				writeHost(t, path, want)
				e := newEngine(t, c.opts)
				f, err := e.Open(path, c.flag, 0)
				if err != nil {
					t.Skipf("open %#x on tmpfs: %v", c.flag, err)
				}
				before := e.Stats().Ring
				buf := alignedBuf(3 * 4096)
				for off := int64(0); off < 48*4096; off += 3 * 4096 { // sequential: fills read ahead
					if n, err := f.ReadAt(buf, off); n != len(buf) || err != nil || !bytes.Equal(buf, want[off:off+int64(n)]) {
						t.Fatalf("read at %d: %d, %v", off, n, err)
					}
				}
				for i := int64(0); i < 300; i++ { // random: misses, around a full cache
					off := (i * 7919 % (size / 4096)) * 4096
					if n, err := f.ReadAt(buf[:4096], off); n != 4096 || err != nil || !bytes.Equal(buf[:4096], want[off:off+4096]) {
						t.Fatalf("read at %d: %d, %v", off, n, err)
					}
				}
				p := alignedBuf(2 * 4096)
				copy(p, bytes.Repeat([]byte{0xc3}, len(p)))
				for _, off := range []int64{8192, 100 * 4096, size - 2*4096} {
					if n, err := f.WriteAt(p, off); n != len(p) || err != nil {
						t.Fatalf("write at %d: %d, %v", off, n, err)
					}
					copy(want[off:], p)
				}
				ops := []Op{{File: f, Buf: alignedBuf(4096), Off: 200 * 4096}, {File: f, Buf: alignedBuf(4096), Off: 201 * 4096},
					{File: f, Write: true, Buf: p, Off: 150 * 4096}}
				copy(want[150*4096:], p)
				if err := e.Submit(ops); err != nil {
					t.Fatal(err)
				}
				for i, op := range ops {
					if op.Err != nil || op.N != len(op.Buf) || (!op.Write && !bytes.Equal(op.Buf, want[op.Off:op.Off+4096])) {
						t.Fatalf("Submit op %d: %d, %v", i, op.N, op.Err)
					}
				}
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				d := e.Stats().Ring.Sub(before)
				t.Logf("%d SQEs, %d requests inline", d.SQEs, d.Inline)
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				sameBytes(t, "host file", readHost(t, path), want)
				if d.Inline == 0 || (d.SQEs > 0) != ringOnly {
					t.Errorf("%d SQEs and %d requests inline; want SQEs only when the ring is forced", d.SQEs, d.Inline)
				}
			})
		}
	}
}
