//go:build linux

package pagecache

import (
	"bytes"
	"fmt"
	"testing"
)

// TestWritesIntoFrameRuns checks the bytes that writes leave in the cache
// where a write's pages sit in runs of consecutive frames (copied as one)
// and where they do not, with frames that held another file's bytes
// before: every byte a write covers reads back as written, and the rest
// of a page it brings into the cache reads as zeros, also once a later
// write past the end of file has brought that rest inside the file.
func TestWritesIntoFrameRuns(t *testing.T) {
	const size = 40 * PageSize
	tests := []struct {
		name     string
		warm     [][2]int64 // reads that bring [off, off+n) into the cache first
		off, n   int64
		through  bool
		scramble bool // cache the file's pages in reverse order, one at a time
	}{
		{name: "whole cached run", warm: [][2]int64{{0, size}}, off: 0, n: size},
		{name: "unaligned inside cached run", warm: [][2]int64{{0, size}}, off: 100, n: 10*PageSize + 7},
		{name: "reverse-cached pages", off: 3*PageSize + 5, n: 20 * PageSize, scramble: true},
		{name: "half cached, half new past EOF", warm: [][2]int64{{0, size}}, off: size - 3*PageSize + 11, n: 8 * PageSize},
		{name: "new pages past EOF, partial both ends", off: size + 300, n: 5*PageSize + 900},
		{name: "one byte past EOF", off: size + 2*PageSize + 17, n: 1},
		{name: "through, cached run", warm: [][2]int64{{0, size}}, off: PageSize / 2, n: 30 * PageSize, through: true},
		{name: "through, reverse-cached", off: 1, n: 12 * PageSize, through: true, scramble: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := staleCache(t, 128)

			data := pattern(uint64(500+i), size)
			h := newHostFile(t, data, false)
			f := openFile(t, c, h, size)
			m := &model{data: append([]byte(nil), data...)}
			for _, w := range tc.warm {
				if _, err := f.ReadAt(make([]byte, w[1]), w[0]); err != nil {
					t.Fatal(err)
				}
			}
			if tc.scramble {
				for pg := int64(size/PageSize) - 1; pg >= 0; pg-- {
					if _, err := f.ReadAt(make([]byte, 1), pg*PageSize); err != nil {
						t.Fatal(err)
					}
				}
			}
			p := pattern(uint64(900+i), int(tc.n))
			var fl WriteFlags
			if tc.through {
				fl = Through
			}
			if n, _, err := f.WriteAt(p, tc.off, fl); err != nil || n != len(p) {
				t.Fatalf("WriteAt(%d bytes at %d) = %d, %v", len(p), tc.off, n, err)
			}
			m.write(p, tc.off)
			// Grow the file past the write: the rest of its last page is
			// now inside the file and must read as zeros.
			tail := []byte("tail")
			tailOff := tc.off + tc.n + 3*PageSize
			if n, _, err := f.WriteAt(tail, tailOff, fl); err != nil || n != len(tail) {
				t.Fatalf("WriteAt(tail at %d) = %d, %v", tailOff, n, err)
			}
			m.write(tail, tailOff)
			if got, want := f.Size(), int64(len(m.data)); got != want {
				t.Fatalf("size %d, want %d", got, want)
			}
			got := make([]byte, len(m.data))
			if n, err := f.ReadAt(got, 0); n != len(got) {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if !bytes.Equal(got, m.data) {
				i := firstDiff(got, m.data)
				t.Fatalf("byte %d (page %d): %#x, want %#x", i, i/PageSize, got[i], m.data[i])
			}
			// The host holds the same after writeback.
			if err := f.Writeback(Range{0, 1 << 40}, SyncNone); err != nil {
				t.Fatal(err)
			}
			if hb := h.bytes(t); !bytes.Equal(hb, m.data) {
				t.Fatalf("host byte %d differs", firstDiff(hb, m.data))
			}
		})
	}
}

// TestArenaCopyJoins: a piece that continues the pending copy in both
// the arena and the buffer joins it (nothing is copied yet); any other
// piece copies the pending one first.
func TestArenaCopyJoins(t *testing.T) {
	tests := []struct {
		pieces  [][3]int // at, from, n
		pending int      // bytes still pending before the last flush
		copied  int      // bytes in the arena before the last flush
	}{
		{[][3]int{{0, 0, 10}, {10, 10, 5}, {15, 15, 1}}, 16, 0},
		{[][3]int{{0, 0, 10}, {20, 10, 5}}, 5, 10},          // gap in the arena
		{[][3]int{{0, 0, 10}, {10, 11, 5}}, 5, 10},          // gap in the buffer
		{[][3]int{{30, 0, 10}, {0, 10, 30}}, 30, 10},        // arena order reversed
		{[][3]int{{5, 3, 4}, {9, 7, 4}, {40, 20, 2}}, 2, 8}, // a join, then a jump
		{[][3]int{{0, 0, 4}, {4, 4, 4}, {8, 8, 4}, {12, 12, 4}}, 16, 0},
	}
	for i, tc := range tests {
		for _, out := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/out=%v", i, out), func(t *testing.T) {
				arena := make([]byte, 64)
				buf := make([]byte, 64)
				src, dst := buf, arena // a write copies into the arena
				if out {
					src, dst = arena, buf // a read copies out of it
				}
				for j := range src {
					src[j] = byte(j + 1)
				}
				want := make([]byte, 64)
				ac := arenaCopy{out: out}
				for _, pc := range tc.pieces {
					ac.add(arena, buf, pc[0], pc[1], pc[2])
					if out {
						copy(want[pc[1]:pc[1]+pc[2]], arena[pc[0]:pc[0]+pc[2]])
					} else {
						copy(want[pc[0]:pc[0]+pc[2]], buf[pc[1]:pc[1]+pc[2]])
					}
				}
				if got := 64 - bytes.Count(dst, []byte{0}); got != tc.copied || ac.n != tc.pending {
					t.Errorf("before flush: %d bytes copied and %d pending, want %d and %d", got, ac.n, tc.copied, tc.pending)
				}
				ac.flush(arena, buf)
				if !bytes.Equal(dst, want) {
					t.Errorf("copied %v, want %v", dst, want)
				}
			})
		}
	}
}

// TestReadsFromFrameRuns reads ranges of a file whose pages sit in runs
// of consecutive frames (copied as one) and in scattered frames, through
// the lock-free hit path and, for reads that reach the end of file, the
// locked one: every read must return the file's bytes, whatever the
// frames held before.
func TestReadsFromFrameRuns(t *testing.T) {
	const size = 40*PageSize - 123
	tests := []struct {
		name     string
		scramble bool // cache the pages in reverse order, one at a time
		off, n   int64
	}{
		{name: "whole run", off: 0, n: size},
		{name: "unaligned inside run", off: 100, n: 10*PageSize + 7},
		{name: "one page, two frames", off: PageSize - 10, n: PageSize},
		{name: "run to end of file", off: 7*PageSize + 1, n: size},
		{name: "scattered", scramble: true, off: 3*PageSize + 5, n: 20 * PageSize},
		{name: "scattered to end of file", scramble: true, off: 1, n: size},
		{name: "scattered, two pages", scramble: true, off: 5*PageSize + 1, n: 2 * PageSize},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := staleCache(t, 128)

			data := pattern(uint64(700+i), size)
			f := openFile(t, c, newHostFile(t, data, false), size)
			if tc.scramble {
				for pg := pageEnd(size) - 1; pg >= 0; pg-- {
					if _, err := f.ReadAt(make([]byte, 1), pg*PageSize); err != nil {
						t.Fatal(err)
					}
				}
			} else if _, err := f.ReadAt(make([]byte, size), 0); err != nil {
				t.Fatal(err)
			}
			before := c.Stats()
			got := make([]byte, tc.n)
			n, err := f.ReadAt(got, tc.off)
			want := data[tc.off:min(tc.off+tc.n, size)]
			if n != len(want) || (n < len(got) && err != nil) {
				t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d", tc.n, tc.off, n, err, len(want))
			}
			if !bytes.Equal(got[:n], want) {
				j := firstDiff(got[:n], want)
				t.Fatalf("byte %d (file offset %d): %#x, want %#x", j, tc.off+int64(j), got[j], want[j])
			}
			if d := c.Stats().Sub(before); d.Misses != 0 {
				t.Fatalf("%d misses: the read was to be served from the cache", d.Misses)
			}
		})
	}
}

// staleCache returns a cache of the given pages whose every frame holds
// stale bytes (0xAA): a file of such pages was cached in full and
// released.
func staleCache(t *testing.T, pages int64) *Cache {
	c := newCache(t, openBackend(t, "uring", nil), Options{Capacity: pages * PageSize})
	junk := newHostFile(t, bytes.Repeat([]byte{0xAA}, int(pages*PageSize)), false)
	jf := openFile(t, c, junk, pages*PageSize)
	if _, err := jf.ReadAt(make([]byte, pages*PageSize), 0); err != nil {
		t.Fatal(err)
	}
	releaseFile(t, jf)
	return c
}
