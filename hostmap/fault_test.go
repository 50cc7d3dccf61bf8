//go:build linux

package hostmap

import (
	"bytes"
	"os"
	"runtime/debug"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTruncateBelowLiveMapping: another descriptor truncates the file
// below live chunk and span mappings; accesses past the new end through
// the mapper fail with EFAULT after exactly the readable bytes, the end
// page's tail reads zero, and the process lives on.
func TestTruncateBelowLiveMapping(t *testing.T) {
	needPage4K(t)
	const newSize = mib + 100
	f := newFile(t, 4*mib, os.O_RDWR)
	m := newMapper(t, f)
	if err := m.IncRef(Range{0, 4 * mib}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4*mib)
	if n, err := m.ReadAt(buf, 0); n != len(buf) || err != nil {
		t.Fatalf("ReadAt before truncate: %d, %v", n, err)
	}
	span, err := m.Map(mib, 2*mib, true)
	if err != nil {
		t.Fatal(err)
	}
	defer span.Close()
	win, err := m.Map(mib+8*kib, 8*kib, false)
	if err != nil {
		t.Fatal(err)
	}
	defer win.Close()

	other, err := os.OpenFile(f.Name(), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Truncate(newSize); err != nil {
		t.Fatal(err)
	}

	dst := make([]byte, 3*4*kib)
	tests := []struct {
		name  string
		do    func() (int, error)
		wantN int
	}{
		{"ReadAt across the new end", func() (int, error) { return m.ReadAt(dst, mib) }, 4 * kib},
		{"ReadAt past the end page", func() (int, error) { return m.ReadAt(dst, mib+8*kib) }, 0},
		{"ReadAt from inside the end page", func() (int, error) { return m.ReadAt(dst, mib+50) }, 4*kib - 50},
		{"WriteAt past the end page", func() (int, error) { return m.WriteAt(dst, mib+4*kib) }, 0},
		{"WriteAt across the new end", func() (int, error) { return m.WriteAt(make([]byte, 8*kib), mib-4*kib) }, 8 * kib},
		{"SafeCopy from a span", func() (int, error) { return SafeCopy(dst, span.Bytes()) }, 4 * kib},
		{"SafeCopy into a span", func() (int, error) { return SafeCopy(span.Bytes()[4*kib:], dst) }, 0},
		{"SafeCopy from a window past the end", func() (int, error) { return SafeCopy(dst, win.Bytes()) }, 0},
	}
	for _, tc := range tests {
		n, err := tc.do()
		if n != tc.wantN {
			t.Errorf("%s: n = %d, want %d", tc.name, n, tc.wantN)
		}
		if tc.wantN == 4*kib && tc.name == "ReadAt across the new end" {
			if !bytes.Equal(dst[100:4*kib], make([]byte, 4*kib-100)) {
				t.Errorf("tail of the end page is not zero")
			}
		}
		if tc.name == "WriteAt across the new end" {
			// The write ends inside the end page, so it succeeds.
			wantErrno(t, tc.name, err, 0)
			continue
		}
		wantErrno(t, tc.name, err, syscall.EFAULT)
		t.Logf("%s: n=%d, %v", tc.name, n, err)
	}
	s := m.Stats()
	if s.FaultsCaught != 4 {
		t.Errorf("faults_caught %d, want 4 (ReadAt/WriteAt only)", s.FaultsCaught)
	}
	// Growing the file again makes the pages readable, as zeros.
	if err := other.Truncate(4 * mib); err != nil {
		t.Fatal(err)
	}
	if n, err := m.ReadAt(dst, mib+8*kib); n != len(dst) || err != nil || !bytes.Equal(dst, make([]byte, len(dst))) {
		t.Errorf("after regrowing: %d, %v, zero %v", n, err, bytes.Equal(dst, make([]byte, len(dst))))
	}
	t.Logf("%d faults past EOF turned into EFAULT, process alive; %+v", s.FaultsCaught, s)
}

// TestSafeCopy: SafeCopy copies like copy, stops with EFAULT and an exact
// count at the first inaccessible page of either side, restores the
// goroutine's panic-on-fault setting, and does not allocate.
func TestSafeCopy(t *testing.T) {
	ps := int(pageSize)
	mem, err := unix.Mmap(-1, 0, 4*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := range mem {
		mem[i] = byte(i)
	}
	// Page 2 is inaccessible.
	if err := unix.Mprotect(mem[2*ps:3*ps], unix.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	heap := make([]byte, 4*ps)
	tests := []struct {
		name     string
		dst, src []byte
		wantN    int
		errno    syscall.Errno
	}{
		{"plain", heap[:100], mem[:100], 100, 0},
		{"dst shorter", heap[:10], mem[:100], 10, 0},
		{"src shorter", heap[:100], mem[5:15], 10, 0},
		{"empty", heap[:0], mem, 0, 0},
		{"unaligned, two pages", heap[3 : 3+2*ps-7], mem[7 : 2*ps], 2*ps - 7, 0},
		{"src fault at a page boundary", heap, mem, 2 * ps, syscall.EFAULT},
		{"src fault unaligned", heap[1:], mem[ps+10:], ps - 10, syscall.EFAULT},
		{"src fault on the first byte", heap, mem[2*ps:], 0, syscall.EFAULT},
		{"dst fault", mem[ps+1:], heap, ps - 1, syscall.EFAULT},
	}
	for _, tc := range tests {
		before := debug.SetPanicOnFault(false)
		n, err := SafeCopy(tc.dst, tc.src)
		after := debug.SetPanicOnFault(before)
		if after != false {
			t.Errorf("%s: panic-on-fault left set", tc.name)
		}
		if n != tc.wantN {
			t.Errorf("%s: n = %d, want %d", tc.name, n, tc.wantN)
		}
		wantErrno(t, tc.name, err, tc.errno)
		if tc.errno == 0 && !bytes.Equal(tc.dst[:n], tc.src[:n]) {
			t.Errorf("%s: bytes differ", tc.name)
		} else if tc.errno != 0 && n > 0 && !bytes.Equal(tc.dst[:n], tc.src[:n]) {
			t.Errorf("%s: the %d bytes reported copied differ", tc.name, n)
		}
		t.Logf("%s: n=%d err=%v", tc.name, n, err)
	}
	// A goroutine that had panic-on-fault set keeps it.
	debug.SetPanicOnFault(true)
	SafeCopy(heap, mem)
	if !debug.SetPanicOnFault(false) {
		t.Errorf("SafeCopy cleared a panic-on-fault setting it did not make")
	}
}

// TestNoAllocs: the hot paths do not allocate.
func TestNoAllocs(t *testing.T) {
	f := newFile(t, 4*mib, os.O_RDWR)
	m := newMapper(t, f)
	if err := m.IncRef(Range{0, 4 * mib}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4*kib)
	if _, err := m.WriteAt(buf, 0); err != nil { // map chunk 0 read-write
		t.Fatal(err)
	}
	if _, err := m.ReadAt(buf, 2*mib); err != nil { // map chunk 1
		t.Fatal(err)
	}
	var mp Mapping
	var slices [2][]byte
	tests := []struct {
		name string
		fn   func()
	}{
		{"ReadAt 4KiB", func() { m.ReadAt(buf, 8*kib) }},
		{"ReadAt across chunks", func() { m.ReadAt(buf, 2*mib-100) }},
		{"WriteAt 4KiB", func() { m.WriteAt(buf, 8*kib) }},
		{"MapInto+Close window", func() { m.MapInto(&mp, 12*kib, 4*kib, true); mp.Close() }},
		{"AppendMapInternal one chunk", func() { m.AppendMapInternal(slices[:0], Range{4 * kib, 8 * kib}, false) }},
		{"AppendMapInternal two chunks", func() { m.AppendMapInternal(slices[:0], Range{2*mib - 1, 2*mib + 1}, false) }},
		{"SafeCopy", func() { SafeCopy(buf, slices[0]) }},
		{"Stats", func() { _ = m.Stats() }},
	}
	for _, tc := range tests {
		if a := testing.AllocsPerRun(200, tc.fn); a != 0 {
			t.Errorf("%s: %v allocs per call, want 0", tc.name, a)
		} else {
			t.Logf("%s: 0 allocs", tc.name)
		}
	}
}

// TestSync: Sync flushes exactly the parts of r that are mapped (chunks
// and spans), and a chunk whose references drop to zero during the Sync
// stays mapped until the Sync is done, then is unmapped.
func TestSync(t *testing.T) {
	f := newFile(t, 8*mib, os.O_RDWR)
	m := newMapper(t, f)
	var synced []Range
	var duringSync struct {
		decErr   error
		chunk2At uintptr
	}
	m.hook = func(ev event, r Range) {
		if ev != evSync {
			return
		}
		synced = append(synced, r)
		if len(synced) == 1 {
			// Drop every IncRef reference of chunk 2 mid-Sync.
			duringSync.decErr = m.DecRef(Range{4 * mib, 6 * mib})
			duringSync.chunk2At = m.chunkAddr(2)
		}
	}
	if err := m.IncRef(Range{0, 6 * mib}); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 4 * mib} { // chunk 1 referenced but never mapped
		if _, err := m.WriteAt([]byte("x"), off+mib); err != nil {
			t.Fatal(err)
		}
	}
	span, err := m.Map(5*mib, 2*mib, true)
	if err != nil {
		t.Fatal(err)
	}
	span.Bytes()[0] = 'y'
	if err := m.Sync(Range{mib + 100, 6*mib - 1}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	want := []Range{{mib, 2 * mib}, {4 * mib, 6 * mib}, {5 * mib, 6 * mib}}
	if len(synced) != len(want) {
		t.Fatalf("synced %v, want %v", synced, want)
	}
	for i := range want {
		if synced[i] != want[i] {
			t.Errorf("synced %v, want %v", synced, want)
		}
	}
	if duringSync.decErr != nil || duringSync.chunk2At == 0 {
		t.Errorf("chunk 2 during Sync: DecRef %v, mapped at %#x; want nil and still mapped", duringSync.decErr, duringSync.chunk2At)
	}
	if m.chunkAddr(2) != 0 || mappedAt(t, f, duringSync.chunk2At, ChunkSize, 4*mib) != "" {
		t.Errorf("chunk 2 still mapped after the Sync that pinned it")
	}
	if _, _, pins, _ := m.counts(0); pins != 0 {
		t.Errorf("chunk 0 keeps %d pins", pins)
	}
	if err := span.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.DecRef(Range{0, 4 * mib}); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.MappedBytes != 0 || s.LiveRefs != 0 || s.ChunksMapped != s.ChunksUnmapped {
		t.Errorf("after releasing all: %+v", s)
	}
	t.Logf("Sync flushed %v; chunk 2 unmapped only after its pin dropped", synced)
}

// TestFarOffsets: chunks past the lock-free table (512 GiB and beyond, in
// a sparse file) work through the locked lookup, and offsets the kernel
// cannot map fail with an errno, not a panic.
func TestFarOffsets(t *testing.T) {
	const far int64 = tableChunks * ChunkSize // first chunk past the table
	f := newFile(t, 4096, os.O_RDWR)
	if err := f.Truncate(far + 2*ChunkSize); err != nil {
		t.Skipf("file system refuses a %d GiB sparse file: %v", (far+2*ChunkSize)>>30, err)
	}
	m := newMapper(t, f)
	r := Range{far - ChunkSize, far + 2*ChunkSize} // last table chunk and two past it
	if err := m.IncRef(r); err != nil {
		t.Fatal(err)
	}
	src := []byte("hello across the table edge")
	off := far - 10
	if n, err := m.WriteAt(src, off); n != len(src) || err != nil {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
	got := make([]byte, len(src))
	if _, err := f.ReadAt(got, off); err != nil || !bytes.Equal(got, src) {
		t.Fatalf("pread after WriteAt: %q, %v", got, err)
	}
	clear(got)
	if n, err := m.ReadAt(got, off); n != len(src) || err != nil || !bytes.Equal(got, src) {
		t.Fatalf("ReadAt: %q, %v", got, err)
	}
	mp, err := m.Map(far+ChunkSize+5, 100, false)
	if err != nil || mp.Bytes()[0] != 0 {
		t.Fatalf("Map past the table: %v", err)
	}
	if err := mp.Close(); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.ChunksLive != 3 || s.Upgrades != 0 {
		t.Errorf("3 chunks should be mapped read-write: %+v", s)
	}
	if err := m.DecRef(r); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.ChunksLive != 0 || s.ChunksUnmapped != 3 || mappedBytesOf(t, f) != 0 {
		t.Errorf("after DecRef: %+v", s)
	}

	// The last page MaxOffset allows: far past the end of the file, so
	// the kernel maps it but every access faults; an errno, no panic,
	// nothing left behind.
	edge := Range{MaxOffset - 4096, MaxOffset}
	if err := m.IncRef(edge); err != nil {
		t.Fatal(err)
	}
	_, rerr := m.ReadAt(make([]byte, 10), edge.Start)
	wantErrno(t, "ReadAt at the edge", rerr, syscall.EFAULT)
	var merr error
	if mp, err := m.Map(edge.Start, 10, false); err == nil {
		_, merr = SafeCopy(make([]byte, 10), mp.Bytes())
		mp.Close()
	} else {
		merr = err // an errno from mmap is as good
	}
	if merr == nil {
		t.Errorf("Map at the edge: the page could be read")
	}
	if err := m.DecRef(edge); err != nil {
		t.Fatal(err)
	}
	if s := m.Stats(); s.LiveRefs != 0 || s.MappedBytes != 0 {
		t.Errorf("after the edge: %+v", s)
	}
	t.Logf("chunks %d..%d mapped, written, read and unmapped past the table; at MaxOffset: ReadAt %v, Map+SafeCopy %v", r.Start>>chunkShift, (r.End-1)>>chunkShift, rerr, merr)
}
