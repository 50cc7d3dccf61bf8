//go:build linux

package engine

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestCacheMaxFileSize: on tmpfs, which takes files up to 2^63-1 bytes,
// a caching engine serves files up to pagecache.MaxFileSize (HostMmap
// 2 TiB) and answers
// calls past it as a host with that limit would (EFBIG; a write across
// it is short), and refuses to open a larger file (EOVERFLOW); engines
// without a cache serve such a file. No call panics.
func TestCacheMaxFileSize(t *testing.T) {
	if !tmpfsUsable() {
		t.Skip("no tmpfs at /dev/shm")
	}
	const top = 1<<63 - 1
	for _, m := range closeModes {
		t.Run(m.name, func(t *testing.T) {
			e := newEngine(t, m.opts)
			limit := e.maxFileSize()
			dir, err := os.MkdirTemp("/dev/shm", "ringfs-maxsize-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(dir) })
			f := openFile(t, e, filepath.Join(dir, "f"), os.O_RDWR|os.O_CREATE)
			if limit < top {
				if n, err := f.WriteAt(make([]byte, 50), top-100); n != 0 || !errors.Is(err, syscall.EFBIG) {
					t.Errorf("write in the last page: %d, %v; want 0, EFBIG", n, err)
				}
				if n, err := f.WriteAt(make([]byte, 200), limit-100); n != 100 || !errors.Is(err, syscall.EFBIG) {
					t.Errorf("write across the limit: %d, %v; want 100, EFBIG", n, err)
				}
				if err := f.Truncate(top); !errors.Is(err, syscall.EFBIG) {
					t.Errorf("Truncate(2^63-1): %v, want EFBIG", err)
				}
				if n, err := f.ReadAt(make([]byte, 200), limit-150); n != 150 || err == nil {
					t.Errorf("read of the last 150 bytes: %d, %v; want 150, EOF", n, err)
				}
			}
			big := filepath.Join(dir, "big")
			if err := os.WriteFile(big, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(big, top); err != nil {
				t.Skipf("tmpfs refused a file of 2^63-1 bytes: %v", err)
			}
			g, err := e.Open(big, os.O_RDWR, 0)
			if e.cache != nil {
				if !errors.Is(err, syscall.EOVERFLOW) {
					t.Fatalf("Open of a file past the cache's limit: %v, want EOVERFLOW", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open of a 2^63-1-byte file without a cache: %v", err)
			}
			if limit < top {
				return // HostMmap serves the first 2 TiB of it
			}
			p := make([]byte, 100)
			if n, err := g.ReadAt(p, top-100); n != 100 || err != nil {
				t.Fatalf("read of its last 100 bytes: %d, %v", n, err)
			}
		})
	}
}
