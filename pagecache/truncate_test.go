//go:build linux

package pagecache

import (
	"bytes"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// TestTruncateZeros truncates down to an unaligned size and back up: the
// bytes past the old end read zero, in the cache and on the host after a
// full writeback (S4).
func TestTruncateZeros(t *testing.T) {
	const size0 = 6*PageSize + 700
	tests := []struct {
		name   string
		setup  func(t *testing.T, f *File, m *model)
		sizes  []int64
		extend span // a write after the truncations (n == 0: none)
	}{
		{"cached clean, down inside a page, up", readAll, []int64{3*PageSize + 123, 8 * PageSize}, span{}},
		{"dirty pages, down inside a dirty page, up", dirtyAll, []int64{3*PageSize + 123, 8*PageSize + 5}, span{}},
		{"uncached, down, up", nil, []int64{2*PageSize + 1, 7 * PageSize}, span{}},
		{"dirty, down to zero, up", dirtyAll, []int64{0, 5 * PageSize}, span{}},
		{"dirty, down to a page boundary, up", dirtyAll, []int64{4 * PageSize, 6*PageSize + 1}, span{}},
		{"cached, down, extend by a write past EOF", readAll, []int64{PageSize + 10}, span{5*PageSize + 3, 100}},
		{"dirty, down, extend by a write in the EOF page", dirtyAll, []int64{PageSize + 10}, span{PageSize + 2000, 10}},
		{"down twice then up", dirtyAll, []int64{5*PageSize + 9, 2*PageSize + 300, 9 * PageSize}, span{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(80, size0)
			h := newHostFile(t, data, false)
			c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 64 * PageSize})
			f := openFile(t, c, h, size0)
			m := &model{data: append([]byte(nil), data...)}
			if tt.setup != nil {
				tt.setup(t, f, m)
			}
			for _, s := range tt.sizes {
				if err := f.Truncate(s); err != nil {
					t.Fatal(err)
				}
				m.truncate(s)
				checkInvariants(t, c, true, f)
			}
			if tt.extend.n > 0 {
				mustWrite(t, f, m, pattern(81, int(tt.extend.n)), tt.extend.off)
			}
			if f.Size() != int64(len(m.data)) {
				t.Fatalf("size %d, want %d", f.Size(), len(m.data))
			}
			mustRead(t, f, m, 0, len(m.data)+PageSize)
			checkInvariants(t, c, true, f)
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
				t.Fatal(err)
			}
			checkHost(t, h, m)
			// And once more from the host alone.
			if err := f.Invalidate(Range{0, 1 << 40}); err != nil {
				t.Fatal(err)
			}
			mustRead(t, f, m, 0, len(m.data))
			t.Logf("sizes %v: zeros past each old end in cache and host (%d bytes)", tt.sizes, len(m.data))
		})
	}
}

func readAll(t *testing.T, f *File, m *model) { mustRead(t, f, m, 0, len(m.data)) }

// dirtyAll caches every page and dirties most bytes of it.
func dirtyAll(t *testing.T, f *File, m *model) {
	readAll(t, f, m)
	for p := int64(0); p*PageSize < int64(len(m.data)); p++ {
		n := min(PageSize-200, int64(len(m.data))-p*PageSize-100)
		if n > 0 {
			mustWrite(t, f, m, pattern(uint64(p+90), int(n)), p*PageSize+100)
		}
	}
}

// TestAllocate punches holes and zeroes ranges over cached and dirty
// pages: reads return zeros and the host ends equal to the model,
// size included.
func TestAllocate(t *testing.T) {
	const (
		punch = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
		zero  = unix.FALLOC_FL_ZERO_RANGE
		keep  = unix.FALLOC_FL_KEEP_SIZE
	)
	tests := []struct {
		name      string
		hostSize  int64 // the file's bytes on the host at open
		dirty     []span
		mode      uint32
		off, n    int64
		cacheHost bool // read the host part into the cache first
	}{
		{"punch a partial range of dirty pages", 8 * PageSize, adjacentPages(0, 8), punch, PageSize + 100, 3 * PageSize, true},
		{"punch whole cached clean pages", 8 * PageSize, nil, punch, 2 * PageSize, 4 * PageSize, true},
		{"punch uncached and cached pages", 8 * PageSize, pagesSpans(3), punch, PageSize, 5 * PageSize, false},
		{"punch dirty pages not yet on the host, at EOF", 0, adjacentPages(0, 4), punch, 2 * PageSize, 2 * PageSize, false},
		{"punch the dirty tail past the host's end", 2 * PageSize, adjacentPages(2, 3), punch, 3*PageSize + 10, 2 * PageSize, true},
		{"punch past EOF changes nothing", 4 * PageSize, adjacentPages(1, 2), punch, 6 * PageSize, PageSize, true},
		{"zero range inside dirty pages", 8 * PageSize, adjacentPages(0, 8), zero, 100, 5000, true},
		{"zero range growing the file", 4 * PageSize, pagesSpans(3), zero, 3*PageSize + 10, 4 * PageSize, true},
		{"zero range keep size over the dirty tail", 0, []span{{0, 3*PageSize + 50}}, zero | keep, PageSize, 10 * PageSize, false},
		{"zero range keep size inside", 8 * PageSize, adjacentPages(2, 2), zero | keep, 2*PageSize + 1, PageSize, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(100, int(tt.hostSize))
			dir := t.TempDir()
			if tt.mode&zero != 0 && !zeroRangeSupported(t, dir) {
				t.Skipf("%s has no FALLOC_FL_ZERO_RANGE (tmpfs)", dir)
			}
			h := newHostFileIn(t, dir, data, false)
			c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 64 * PageSize})
			f := openFile(t, c, h, tt.hostSize)
			m := &model{data: append([]byte(nil), data...)}
			if tt.cacheHost {
				readAll(t, f, m)
			}
			for i, s := range tt.dirty {
				mustWrite(t, f, m, pattern(uint64(i+110), int(s.n)), s.off)
			}
			if err := f.Allocate(tt.mode, tt.off, tt.n); err != nil {
				t.Fatalf("Allocate(%#x, %d, %d): %v", tt.mode, tt.off, tt.n, err)
			}
			m.zero(tt.off, tt.n, tt.mode&keep == 0)
			if f.Size() != int64(len(m.data)) {
				t.Fatalf("size %d after Allocate, want %d", f.Size(), len(m.data))
			}
			p := make([]byte, tt.n)
			if n, err := f.ReadAt(p, tt.off); err != nil || !bytes.Equal(p[:n], zeroBytes(n)) {
				t.Fatalf("ReadAt of the allocated range = %d, %v; not all zeros", n, err)
			}
			mustRead(t, f, m, 0, len(m.data)+PageSize)
			checkInvariants(t, c, true, f)
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
				t.Fatal(err)
			}
			checkHost(t, h, m)
			t.Logf("mode %#x [%d,+%d): reads zero, host equals model (%d bytes)", tt.mode, tt.off, tt.n, len(m.data))
		})
	}
}

func zeroBytes(n int) []byte { return make([]byte, n) }

// TestReusedFramesNeverLeak cycles a junk file full of 0xAA through the
// cache and then reads sparse, partial and extended pages of other files
// sharing it, also through failed writes: never a 0xAA byte (S5, S6).
func TestReusedFramesNeverLeak(t *testing.T) {
	for _, backend := range testBackends {
		t.Run(backend, func(t *testing.T) {
			be := openBackend(t, backend, nil)
			c := newCache(t, be, Options{Capacity: MinCapacity})
			checked := 0
			for round := range 6 {
				poisonFrames(t, c)
				// A sparse file: holes, a few data bytes, a partial last page.
				h := newHostFile(t, nil, false)
				size := int64(37*PageSize + 100 + round*777)
				if err := h.fh.Truncate(size); err != nil {
					t.Fatal(err)
				}
				m := &model{data: make([]byte, size)}
				for _, off := range []int64{5, 9*PageSize + 4000, size - 3} {
					b := []byte{1, 2, 3}
					if _, err := h.fh.WriteAt(b, off); err != nil {
						t.Fatal(err)
					}
					m.write(b, off)
				}
				f := openFile(t, c, h, size)
				step := func(what string, off int64, n int) {
					t.Helper()
					p := make([]byte, n)
					got, err := f.ReadAt(p, off)
					if err != nil {
						t.Fatal(err)
					}
					if i := bytes.IndexByte(p[:got], 0xAA); i >= 0 {
						t.Fatalf("round %d %s: byte %d of ReadAt(%d, %d) is 0xAA: another file's data leaked", round, what, off+int64(i), off, n)
					}
					mustRead(t, f, m, off, n)
					checked += got
				}
				step("sparse page", 20*PageSize+5, 100)
				step("partial EOF page", size-50, 4000)
				step("whole file", 0, int(size))
				poisonFrames(t, c) // evicts f's pages; frames hold 0xAA again
				// Write-allocated pages past EOF, then extension by truncate.
				mustWrite(t, f, m, []byte{7, 7}, size+PageSize+9)
				if err := f.Truncate(f.Size() + 3*PageSize); err != nil {
					t.Fatal(err)
				}
				m.truncate(f.Size())
				step("after extension", size-10, int(f.Size()-size+10))
				poisonFrames(t, c)
				step("whole file again", 0, int(f.Size()))
				if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
					t.Fatal(err)
				}
				checkHost(t, h, m)
				checkInvariants(t, c, true, f)
				releaseFile(t, f)
			}
			t.Logf("%d bytes read from reused frames, 0 bytes of 0xAA", checked)
		})
	}
}

// TestSetSizeDuringWriteback shrinks the size with SetSize while a
// writeback of the file's pages is in flight.
func TestSetSizeDuringWriteback(t *testing.T) {
	h := newHostFile(t, nil, false)
	rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
	c := newCache(t, rb, Options{Capacity: 64 * PageSize})
	f := openFile(t, c, h, 0)
	m := &model{}
	mustWrite(t, f, m, pattern(120, 8*PageSize), 0)
	entered := make(chan struct{})
	release := make(chan struct{})
	var once bool
	rb.setBefore(func(reqs []uring.Request) {
		if !once && len(reqs) > 0 && reqs[0].Op.IsWrite() {
			once = true
			close(entered)
			<-release
		}
	})
	done := make(chan error)
	go func() { done <- f.Writeback(Range{0, 1 << 40}, SyncNone) }()
	<-entered
	shrunk := make(chan any)
	go func() {
		defer func() { shrunk <- recover() }()
		f.SetSize(2*PageSize + 10)
	}()
	// Give SetSize time to run into the pinned pages if it does not wait
	// for the writeback (a sleep, not a timing assertion: either outcome
	// is checked below).
	var panicked any
	select {
	case panicked = <-shrunk:
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if panicked == nil {
		panicked = <-shrunk
	}
	if panicked != nil {
		t.Fatalf("SetSize during a writeback panicked: %v", panicked)
	}
	m.truncate(2*PageSize + 10)
	mustRead(t, f, m, 0, 3*PageSize)
	checkInvariants(t, c, true, f)
	t.Logf("SetSize waited for the writeback in flight; size %d", f.Size())
}

// zeroRangeSupported reports whether the file system of dir takes
// FALLOC_FL_ZERO_RANGE.
func zeroRangeSupported(t *testing.T, dir string) bool {
	f, err := os.CreateTemp(dir, "zero-range-probe")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE, 0, 4096) != unix.EOPNOTSUPP
}
