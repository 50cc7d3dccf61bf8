//go:build linux

package pagecache

import (
	"bytes"
	"os"
	"testing"

	"github.com/ringfs/ringfs/uring"
)

// TestInlineFiles: the host I/O of a file on tmpfs (fills with and
// without readahead, reads around the full cache, writes to uncached
// pages, batched fills, writeback) runs as plain syscalls, none of it
// through the ring, unless Options.RingOnly; the bytes are the same
// either way.
func TestInlineFiles(t *testing.T) {
	if !shmUsable() {
		t.Skip("no writable tmpfs at /dev/shm")
	}
	for _, ringOnly := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "RingOnly"}[ringOnly], func(t *testing.T) {
			be := openBackend(t, uring.BackendUring, nil)
			c, err := New(Options{Capacity: MinCapacity, Backend: be, RingOnly: ringOnly})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const size = 1024 * PageSize // larger than the cache: reads around it too
			data := pattern(7, size)
			h := newHostFileIn(t, shmDir(t), data, false)
			f, err := c.NewFile(h.fd(), -1, size)
			if err != nil {
				t.Fatal(err)
			}
			before := be.Stats()
			m := &model{data: append([]byte(nil), data...)}
			buf := make([]byte, 3*PageSize)
			check := func(what string, off int64, n int) {
				t.Helper()
				got, err := f.ReadAt(buf[:n], off)
				if err != nil || got != n || !bytes.Equal(buf[:n], m.read(off, n)) {
					t.Fatalf("%s: read at %d: %d, %v (equal %v)", what, off, got, err, bytes.Equal(buf[:got], m.read(off, got)))
				}
			}
			for off := int64(0); off < 60*PageSize; off += 3 * PageSize {
				check("sequential", off, 3*PageSize) // fills that read ahead
			}
			for i := int64(0); i < 2000; i++ {
				check("random", (i*7919%(size/PageSize))*PageSize, PageSize) // misses around the full cache
			}
			p := bytes.Repeat([]byte{0x5a}, 2*PageSize)
			for _, off := range []int64{PageSize / 2, size - 3*PageSize, 40 * PageSize} {
				if _, _, err := f.WriteAt(p, off, 0); err != nil {
					t.Fatal(err)
				}
				m.write(p, off)
			}
			ops := []ReadOp{{File: f, Buf: make([]byte, PageSize), Off: 900 * PageSize}, {File: f, Buf: make([]byte, 2*PageSize), Off: 700 * PageSize}}
			c.ReadBatch(ops, nil)
			for _, op := range ops {
				if op.Err != nil || op.N != len(op.Buf) || !bytes.Equal(op.Buf, m.read(op.Off, len(op.Buf))) {
					t.Fatalf("batch read at %d: %d, %v", op.Off, op.N, op.Err)
				}
			}
			if err := f.Writeback(Range{0, size}, SyncData); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.bytes(t), m.data) {
				t.Fatal("host file differs from the model after writeback")
			}
			d := be.Stats().Sub(before)
			t.Logf("%d SQEs, %d requests inline", d.SQEs, d.Inline)
			if ringOnly != (d.SQEs > 0) || d.Inline == 0 {
				t.Errorf("RingOnly %v: %d SQEs and %d inline requests", ringOnly, d.SQEs, d.Inline)
			}
			if err := f.Release(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// shmDir returns a new directory on /dev/shm, removed at cleanup.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "pagecache-inline-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// TestInlineFilesJoinNoRuns: writeback joins no dirty runs across clean
// cached pages (Options.MergeGap) of a file on tmpfs, where the joined
// bytes would only be copied again; with the ring forced it does.
func TestInlineFilesJoinNoRuns(t *testing.T) {
	if !shmUsable() {
		t.Skip("no writable tmpfs at /dev/shm")
	}
	for _, tt := range []struct {
		ringOnly   bool
		wantWrites int
	}{{false, 2}, {true, 1}} {
		data := pattern(31, 8*PageSize)
		h := newHostFileIn(t, shmDir(t), data, false)
		rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
		c, err := New(Options{Capacity: MinCapacity, Backend: rb, MergeGap: 4 * PageSize, Readahead: PageSize, RingOnly: tt.ringOnly})
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.NewFile(h.fd(), -1, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		m := &model{data: append([]byte(nil), data...)}
		for p := int64(0); p < 8; p++ {
			mustRead(t, f, m, p*PageSize, PageSize)
		}
		mustWrite(t, f, m, pattern(32, PageSize), 0)
		mustWrite(t, f, m, pattern(33, PageSize), 2*PageSize)
		s0, o0 := rb.mark()
		if err := f.Writeback(Range{0, 1 << 40}, SyncData); err != nil {
			t.Fatal(err)
		}
		_, ops := rb.since(s0, o0)
		if writes := filterOps(ops, isWrite); len(writes) != tt.wantWrites {
			t.Errorf("RingOnly %v: %d writes %v, want %d", tt.ringOnly, len(writes), writes, tt.wantWrites)
		}
		if !bytes.Equal(h.bytes(t), m.data) {
			t.Errorf("RingOnly %v: host differs from the model", tt.ringOnly)
		}
		if err := f.Release(); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
