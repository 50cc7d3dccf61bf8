//go:build linux

package pagecache

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/ringfs/ringfs/uring"
)

// TestFlushRangeClean: FlushRange, which runs before every direct read of
// a cached file, returns at once when nothing is dirty: it neither writes
// nor waits for the cache's host I/O in flight (before, every direct read
// took the file's locks and waited for fills, so that O_DIRECT readers of
// one file queued behind each other and the cache). With dirty bytes it
// writes them back, and on a released file it fails with EBADF.
func TestFlushRangeClean(t *testing.T) {
	data, h, rb, _, f := recordedFile(t, 5)
	m := &model{data: append([]byte(nil), data...)}

	entered, release := rb.blockFirst(func(r *uring.Request) bool { return r.Op.IsRead() && r.Off == 10*PageSize })
	filled := make(chan error, 1)
	go func() {
		_, err := f.ReadAt(make([]byte, PageSize), 10*PageSize)
		filled <- err
	}()
	<-entered
	s0, o0 := rb.mark()
	flushed := make(chan error, 1)
	go func() { flushed <- f.FlushRange(Range{0, int64(len(data))}) }()
	select {
	case err := <-flushed:
		if err != nil {
			t.Fatalf("FlushRange of a clean file: %v", err)
		}
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("FlushRange of a clean file waited for a fill in flight")
	}
	if _, ops := rb.since(s0, o0); len(ops) != 0 {
		t.Errorf("FlushRange of a clean file submitted %v", ops)
	}
	close(release)
	if err := <-filled; err != nil {
		t.Fatal(err)
	}

	p := pattern(6, 100)
	mustWrite(t, f, m, p, 3*PageSize+7)
	if err := f.FlushRange(Range{3 * PageSize, 4 * PageSize}); err != nil {
		t.Fatal(err)
	}
	if got := h.bytes(t); !bytes.Equal(got[3*PageSize:4*PageSize], m.data[3*PageSize:4*PageSize]) {
		t.Error("FlushRange left the dirty bytes off the host")
	}
	if err := f.Writeback(Range{0, 1 << 40}, SyncData); err != nil {
		t.Fatal(err)
	}
	if err := f.Release(); err != nil {
		t.Fatal(err)
	}
	if err := f.FlushRange(Range{0, PageSize}); !errors.Is(err, syscall.EBADF) {
		t.Errorf("FlushRange of a released file: %v, want EBADF", err)
	}
}
