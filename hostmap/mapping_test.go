//go:build linux

package hostmap

import (
	"bytes"
	"math/rand/v2"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWriteUpgradeKeepsAddress: the first writable access remaps a
// read-only chunk read-write at the same address; later reads reuse the
// writable mapping; a file not open read-write refuses the upgrade and
// keeps the read-only mapping.
func TestWriteUpgradeKeepsAddress(t *testing.T) {
	t.Run("read-write file", func(t *testing.T) {
		f := newFile(t, 4*mib, os.O_RDWR)
		m := newMapper(t, f)
		r := Range{2 * mib, 4 * mib}
		if err := m.IncRef(r); err != nil {
			t.Fatal(err)
		}
		ro, err := m.MapInternal(r, false)
		if err != nil {
			t.Fatal(err)
		}
		addr := addrOf(ro[0])
		if perms := mappedAt(t, f, addr, ChunkSize, 2*mib); perms != "r--s" {
			t.Fatalf("read access mapped %q, want r--s", perms)
		}
		rw, err := m.MapInternal(r, true)
		if err != nil {
			t.Fatal(err)
		}
		if addrOf(rw[0]) != addr {
			t.Fatalf("upgrade moved the chunk from %#x to %#x", addr, addrOf(rw[0]))
		}
		if perms := mappedAt(t, f, addr, ChunkSize, 2*mib); perms != "rw-s" {
			t.Fatalf("after upgrade %q, want rw-s", perms)
		}
		// The slice taken before the upgrade still works and shares the memory.
		rw[0][123] = 0xA5
		if ro[0][123] != 0xA5 || ro[0][124] != pattern(2*mib+124) {
			t.Fatalf("old slice does not see the new mapping")
		}
		again, err := m.MapInternal(r, false)
		if err != nil {
			t.Fatal(err)
		}
		if addrOf(again[0]) != addr || mappedAt(t, f, addr, ChunkSize, 2*mib) != "rw-s" {
			t.Fatalf("a later read did not reuse the writable mapping")
		}
		if _, err := m.WriteAt([]byte{1, 2, 3}, 3*mib); err != nil {
			t.Fatal(err)
		}
		s := m.Stats()
		if s.Upgrades != 1 || s.ChunksMapped != 1 {
			t.Errorf("upgrades %d, chunks_mapped %d; want 1 and 1", s.Upgrades, s.ChunksMapped)
		}
		t.Logf("chunk at %#x upgraded in place r--s -> rw-s, %d upgrade, %d mmap; reads reuse it", addr, s.Upgrades, s.ChunksMapped)
	})
	t.Run("read-only file", func(t *testing.T) {
		f := newFile(t, 2*mib, os.O_RDONLY)
		m := newMapper(t, f)
		r := Range{0, 2 * mib}
		if err := m.IncRef(r); err != nil {
			t.Fatal(err)
		}
		ro, err := m.MapInternal(r, false)
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.MapInternal(r, true)
		wantErrno(t, "MapInternal(write)", err, syscall.EACCES)
		_, err = m.WriteAt([]byte{1}, 0)
		wantErrno(t, "WriteAt", err, syscall.EACCES)
		_, err = m.Map(0, 10, true)
		wantErrno(t, "Map(writable) window", err, syscall.EACCES)
		_, err = m.Map(mib, 2*mib, true)
		wantErrno(t, "Map(writable) span", err, syscall.EACCES)
		if perms := mappedAt(t, f, addrOf(ro[0]), ChunkSize, 0); perms != "r--s" {
			t.Errorf("after refused upgrade: %q, want r--s", perms)
		}
		buf := make([]byte, 100)
		if n, err := m.ReadAt(buf, 5); n != 100 || err != nil || buf[0] != pattern(5) {
			t.Errorf("ReadAt after refused upgrade: %d, %v", n, err)
		}
		if s := m.Stats(); s.Upgrades != 0 || s.LiveRefs != 512 {
			t.Errorf("refused upgrades changed stats: %+v", s)
		}
		t.Logf("O_RDONLY: 4 writable requests refused with EACCES, mapping intact")
	})
}

// TestCoherenceWithPread: bytes written through the mapper are what pread
// returns, and bytes written with pwrite are what the mapper reads, for
// ReadAt/WriteAt, chunk-window Mappings and span Mappings.
func TestCoherenceWithPread(t *testing.T) {
	const size = 6 * mib
	tests := []struct {
		name   string
		off, n int64
		write  func(m *Mapper, fd int, b []byte, off int64) error // through the mapper or pwrite
		read   func(m *Mapper, fd int, b []byte, off int64) error
	}{
		{"WriteAt then pread", 2*mib - 5000, 10000, mapperWrite, pread},
		{"pwrite then ReadAt", 4*mib - 1, 3, pwrite, mapperRead},
		{"window Mapping then pread", mib + 17, 4000, mappingWrite, pread},
		{"span Mapping then pread", 2*mib - 3, 2*mib + 6, mappingWrite, pread},
		{"pwrite then window Mapping", 5 * mib, 4096, pwrite, mappingRead},
		{"pwrite then span Mapping", mib, 3 * mib, pwrite, mappingRead},
		{"WriteAt then span Mapping", 3*mib + 1, 2 * mib, mapperWrite, mappingRead},
		{"span Mapping then ReadAt", 10, size - 20, mappingWrite, mapperRead},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFile(t, size, os.O_RDWR)
			m := newMapper(t, f)
			if err := m.IncRef(Range{0, size}); err != nil {
				t.Fatal(err)
			}
			want := make([]byte, tc.n)
			for i := range want {
				want[i] = byte(rand.Uint32())
			}
			fd := int(f.Fd())
			if err := tc.write(m, fd, want, tc.off); err != nil {
				t.Fatalf("write: %v", err)
			}
			got := make([]byte, tc.n)
			if err := tc.read(m, fd, got, tc.off); err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("read back differs at byte %d", firstDiff(got, want))
			}
			// Neighbours untouched.
			var edge [2]byte
			if err := pread(m, fd, edge[:1], tc.off-1); err != nil || edge[0] != pattern(tc.off-1) {
				t.Errorf("byte before the range changed")
			}
			if err := pread(m, fd, edge[1:], tc.off+tc.n); err != nil || edge[1] != pattern(tc.off+tc.n) {
				t.Errorf("byte after the range changed")
			}
			if err := m.DecRef(Range{0, size}); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d bytes at %d agree between the mapper and pread/pwrite", tc.n, tc.off)
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

func pread(_ *Mapper, fd int, b []byte, off int64) error {
	n, err := unix.Pread(fd, b, off)
	if err == nil && n != len(b) {
		err = syscall.EIO
	}
	return err
}

func pwrite(_ *Mapper, fd int, b []byte, off int64) error {
	n, err := unix.Pwrite(fd, b, off)
	if err == nil && n != len(b) {
		err = syscall.EIO
	}
	return err
}

func mapperRead(m *Mapper, _ int, b []byte, off int64) error {
	_, err := m.ReadAt(b, off)
	return err
}

func mapperWrite(m *Mapper, _ int, b []byte, off int64) error {
	_, err := m.WriteAt(b, off)
	return err
}

func mappingRead(m *Mapper, _ int, b []byte, off int64) error {
	mp, err := m.Map(off, int64(len(b)), false)
	if err != nil {
		return err
	}
	copy(b, mp.Bytes())
	return mp.Close()
}

func mappingWrite(m *Mapper, _ int, b []byte, off int64) error {
	mp, err := m.Map(off, int64(len(b)), true)
	if err != nil {
		return err
	}
	copy(mp.Bytes(), b)
	return mp.Close()
}

// TestMappingLifecycle: window and span Mappings, Bytes, double Close,
// independence from other references of the same chunks.
func TestMappingLifecycle(t *testing.T) {
	needPage4K(t)
	f := newFile(t, 8*mib, os.O_RDWR)
	m := newMapper(t, f)

	// A window shares the chunk's mapping and references its pages.
	w, err := m.Map(mib+10, 5000, false)
	if err != nil {
		t.Fatal(err)
	}
	if w.Offset() != mib+10 || w.Len() != 5000 || w.Writable() || len(w.Bytes()) != 5000 {
		t.Fatalf("window: off %d len %d writable %v", w.Offset(), w.Len(), w.Writable())
	}
	if _, user, _, _ := m.counts(0); user != 2 {
		t.Errorf("window holds %d page refs, want 2", user)
	}
	if addrOf(w.Bytes())-10-mib != m.chunkAddr(0) {
		t.Errorf("window is not inside chunk 0's mapping")
	}
	// A second window of the same chunk; IncRef/DecRef of the chunk by
	// others leave both alone.
	w2, err := m.Map(mib+4096, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.IncRef(Range{0, 2 * mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.DecRef(Range{0, 2 * mib}); err != nil {
		t.Fatal(err)
	}
	if m.chunkAddr(0) == 0 || w.Bytes()[0] != pattern(mib+10) {
		t.Fatalf("DecRef by another user disturbed the windows")
	}

	// A span gets one contiguous mapping of its own.
	sp, err := m.Map(2*mib-100, 4*mib+200, true)
	if err != nil {
		t.Fatal(err)
	}
	b := sp.Bytes()
	if len(b) != 4*mib+200 || b[0] != pattern(2*mib-100) || b[100] != pattern(2*mib) || b[len(b)-1] != pattern(6*mib+99) {
		t.Fatalf("span content wrong")
	}
	s := m.Stats()
	if s.SpansLive != 1 || s.MappedBytes != ChunkSize+4*mib+2*4096 || s.MappingsOpen != 3 {
		t.Errorf("with a span: %+v", s)
	}
	if perms := mappedAt(t, f, addrOf(b)-(4096-100), 4*mib+2*4096, 2*mib-4096); perms != "rw-s" {
		t.Errorf("span VMA %q, want rw-s", perms)
	}

	// Double Close: an error, nothing released twice.
	liveBefore := m.Stats().LiveRefs
	if err := w2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(); err != ErrClosed {
		t.Errorf("second Close: %v, want ErrClosed", err)
	}
	if got := m.Stats().LiveRefs; got != liveBefore-1 {
		t.Errorf("live refs %d after one real Close, want %d", got, liveBefore-1)
	}
	if w2.Bytes() != nil {
		t.Errorf("Bytes after Close not nil")
	}
	if w.Bytes()[0] != pattern(mib+10) {
		t.Errorf("other window disturbed")
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != ErrClosed {
		t.Errorf("second span Close: %v", err)
	}
	if s := m.Stats(); s.SpansLive != 0 || s.SpansUnmapped != 1 || s.MappedBytes != ChunkSize {
		t.Errorf("after span Close: %+v", s)
	}

	// Empty Mapping.
	var e Mapping
	if err := e.Close(); err != ErrClosed {
		t.Errorf("Close of a zero Mapping: %v", err)
	}
	if err := m.MapInto(&e, 7*mib, 0, false); err != nil {
		t.Fatal(err)
	}
	if e.Bytes() == nil || len(e.Bytes()) != 0 {
		t.Errorf("empty Mapping Bytes %v", e.Bytes())
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	// Reuse of a closed Mapping.
	if err := m.MapInto(&e, 7*mib, 1, false); err != nil || e.Bytes()[0] != pattern(7*mib) {
		t.Fatalf("MapInto reuse: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	s = m.Stats()
	if s.MappedBytes != 0 || s.LiveRefs != 0 || s.MappingsOpen != 0 || mappedBytesOf(t, f) != 0 {
		t.Errorf("after closing all: %+v, %d bytes in /proc/self/maps", s, mappedBytesOf(t, f))
	}
	t.Logf("windows, span, empty and reused Mappings; double Close refused; %+v", s)
}

// TestMapperCloseWithOpenMappings: Close with open Mappings drops the
// IncRef references and unmaps what they alone held, returns EBUSY, leaves
// the Mappings valid (even with the fd closed) and unmaps the rest when
// the last one closes.
func TestMapperCloseWithOpenMappings(t *testing.T) {
	f := newFile(t, 8*mib, os.O_RDWR)
	m := newMapper(t, f)
	w, err := m.Map(10, 100, true)
	if err != nil {
		t.Fatal(err)
	}
	sp, err := m.Map(3*mib, 2*mib, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.IncRef(Range{6 * mib, 8 * mib}); err != nil {
		t.Fatal(err)
	}
	if err := m.IncRef(Range{0, 2 * mib}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []Range{{0, 2 * mib}, {6 * mib, 8 * mib}} {
		if _, err := m.MapInternal(r, false); err != nil {
			t.Fatal(err)
		}
	}
	c3 := m.chunkAddr(3)
	err = m.Close()
	wantErrno(t, "Close with open Mappings", err, syscall.EBUSY)
	if m.chunkAddr(3) != 0 || mappedAt(t, f, c3, ChunkSize, 6*mib) != "" {
		t.Errorf("chunk held only by IncRef still mapped after Close")
	}
	if err := m.Close(); err != ErrClosed {
		t.Errorf("second Close: %v", err)
	}
	if _, err := m.Map(0, 1, false); err != ErrClosed {
		t.Errorf("Map after Close: %v", err)
	}
	if err := f.Close(); err != nil { // the Mapper no longer needs the fd
		t.Fatal(err)
	}
	if w.Bytes()[0] != pattern(10) || sp.Bytes()[mib] != pattern(4*mib) {
		t.Fatalf("Mappings unusable after Close")
	}
	w.Bytes()[0] = 1
	if s := m.Stats(); s.MappingsOpen != 2 || s.LiveRefs != 1 || s.ChunksLive != 1 || s.SpansLive != 1 {
		t.Errorf("after Close: %+v", s)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}
	s := m.Stats()
	if s.MappedBytes != 0 || s.LiveRefs != 0 || s.MappingsOpen != 0 || s.ChunksMapped != s.ChunksUnmapped {
		t.Errorf("after the last Mapping closed: %+v", s)
	}
	t.Logf("Close -> EBUSY with 2 Mappings open; they stayed valid past fd close; all released after: %+v", s)
}
