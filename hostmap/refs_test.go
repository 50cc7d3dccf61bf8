//go:build linux

package hostmap

import (
	"errors"
	"io/fs"
	"maps"
	"math"
	"os"
	"syscall"
	"testing"
)

// TestIncRefCountsPerChunk: IncRef adds the pages of each range to the
// chunks it overlaps, maps nothing, MapInternal maps exactly the chunks it
// touches, and DecRef to zero unmaps them (as /proc/self/maps shows).
func TestIncRefCountsPerChunk(t *testing.T) {
	needPage4K(t)
	const p = 4 * kib
	tests := []struct {
		name   string
		ranges []Range
		want   map[int64]int32
	}{
		{"three chunks, unaligned ends", []Range{{1*mib + 100, 5*mib + 1}}, map[int64]int32{0: 256, 1: 512, 2: 257}},
		{"exactly three chunks", []Range{{0, 6 * mib}}, map[int64]int32{0: 512, 1: 512, 2: 512}},
		{"one byte is one page", []Range{{5, 6}}, map[int64]int32{0: 1}},
		{"two ranges in one page", []Range{{0, 100}, {100, 200}}, map[int64]int32{0: 2}},
		{"ends at a chunk boundary", []Range{{2*mib - p, 2 * mib}}, map[int64]int32{0: 1}},
		{"starts at a chunk boundary", []Range{{2 * mib, 2*mib + 1}}, map[int64]int32{1: 1}},
		{"empty range", []Range{{3 * mib, 3 * mib}}, map[int64]int32{}},
		{"overlapping ranges over three chunks", []Range{{0, 6 * mib}, {2*mib - p, 4*mib + p}}, map[int64]int32{0: 513, 1: 1024, 2: 513}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFile(t, 6*mib, os.O_RDWR)
			m := newMapper(t, f)
			var pages int64
			for _, r := range tc.ranges {
				if err := m.IncRef(r); err != nil {
					t.Fatalf("IncRef(%v): %v", r, err)
				}
			}
			if got := m.refTable(); !maps.Equal(got, tc.want) {
				t.Fatalf("counts %v, want %v", got, tc.want)
			}
			for _, n := range tc.want {
				pages += int64(n)
			}
			s := m.Stats()
			if s.LiveRefs != pages || s.ChunksLive != 0 || s.ChunksMapped != 0 {
				t.Errorf("after IncRef: live_refs %d (want %d), chunks_live %d, chunks_mapped %d (want 0)", s.LiveRefs, pages, s.ChunksLive, s.ChunksMapped)
			}
			if n := mappedBytesOf(t, f); n != 0 {
				t.Errorf("IncRef mapped %d bytes of the file", n)
			}
			// MapInternal maps exactly the referenced chunks, once each.
			for _, r := range tc.ranges {
				bs, err := m.MapInternal(r, false)
				if err != nil {
					t.Fatalf("MapInternal(%v): %v", r, err)
				}
				var total int64
				for _, b := range bs {
					total += int64(len(b))
				}
				if total != r.Length() {
					t.Errorf("MapInternal(%v) covers %d bytes", r, total)
				}
			}
			for ci := range tc.want {
				a := m.chunkAddr(ci)
				if a == 0 || mappedAt(t, f, a, ChunkSize, ci*ChunkSize) == "" {
					t.Errorf("chunk %d not in /proc/self/maps after MapInternal", ci)
				}
			}
			if s := m.Stats(); s.ChunksMapped != uint64(len(tc.want)) || s.MappedBytes != int64(len(tc.want))*ChunkSize {
				t.Errorf("chunks_mapped %d, mapped_bytes %d; want %d chunks", s.ChunksMapped, s.MappedBytes, len(tc.want))
			}
			for i := len(tc.ranges) - 1; i >= 0; i-- {
				if err := m.DecRef(tc.ranges[i]); err != nil {
					t.Fatalf("DecRef(%v): %v", tc.ranges[i], err)
				}
			}
			s = m.Stats()
			if n := mappedBytesOf(t, f); n != 0 || s.ChunksLive != 0 || s.ChunksUnmapped != s.ChunksMapped || s.LiveRefs != 0 {
				t.Errorf("after DecRef to zero: %d bytes in /proc/self/maps, stats %+v", n, s)
			}
			t.Logf("per-chunk counts %v (%d pages), %d chunks mapped by MapInternal and unmapped by DecRef", tc.want, pages, s.ChunksMapped)
		})
	}
}

// TestDecRefUnmapsAtZero: a chunk is unmapped by the DecRef that drops its
// count to zero, not before, and the others stay mapped.
func TestDecRefUnmapsAtZero(t *testing.T) {
	f := newFile(t, 6*mib, os.O_RDWR)
	m := newMapper(t, f)
	all := Range{0, 6 * mib}
	if err := m.IncRef(all); err != nil {
		t.Fatal(err)
	}
	if err := m.IncRef(Range{2 * mib, 3 * mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.MapInternal(all, false); err != nil {
		t.Fatal(err)
	}
	addr := [3]uintptr{m.chunkAddr(0), m.chunkAddr(1), m.chunkAddr(2)}
	steps := []struct {
		dec    Range
		mapped [3]bool
	}{
		{Range{0, 2 * mib}, [3]bool{false, true, true}},
		{Range{2 * mib, 6 * mib}, [3]bool{false, true, false}}, // chunk 1 keeps the second reference
		{Range{2 * mib, 3 * mib}, [3]bool{false, false, false}},
	}
	for i, st := range steps {
		if err := m.DecRef(st.dec); err != nil {
			t.Fatalf("step %d: DecRef(%v): %v", i, st.dec, err)
		}
		for ci, want := range st.mapped {
			inMaps := mappedAt(t, f, addr[ci], ChunkSize, int64(ci)*ChunkSize) != ""
			if inMaps != want || (m.chunkAddr(int64(ci)) != 0) != want {
				t.Errorf("step %d: chunk %d mapped=%v (in /proc/self/maps %v), want %v", i, ci, m.chunkAddr(int64(ci)) != 0, inMaps, want)
			}
		}
	}
	s := m.Stats()
	if s.ChunksMapped != 3 || s.ChunksUnmapped != 3 {
		t.Errorf("chunks mapped %d, unmapped %d; want 3 and 3", s.ChunksMapped, s.ChunksUnmapped)
	}
	t.Logf("3 chunks each unmapped by the DecRef that zeroed it: %+v", s)
}

// TestAdjacentRanges: ranges that touch an existing referenced range (at a
// chunk boundary, across it, or inside one page) are counted exactly, in
// each chunk, at every step.
func TestAdjacentRanges(t *testing.T) {
	needPage4K(t)
	const p = 4 * kib
	f := newFile(t, 8*mib, os.O_RDWR)
	m := newMapper(t, f)
	type step struct {
		inc  bool
		r    Range
		want map[int64]int32
	}
	steps := []step{
		{true, Range{0, 2 * mib}, map[int64]int32{0: 512}},
		{true, Range{2 * mib, 4 * mib}, map[int64]int32{0: 512, 1: 512}},
		{true, Range{2*mib - p, 2*mib + p}, map[int64]int32{0: 513, 1: 513}},
		{true, Range{4 * mib, 4*mib + p}, map[int64]int32{0: 513, 1: 513, 2: 1}},
		{true, Range{3 * mib, 4 * mib}, map[int64]int32{0: 513, 1: 769, 2: 1}},
		{true, Range{4*mib + p, 4*mib + 2*p}, map[int64]int32{0: 513, 1: 769, 2: 2}},
		{true, Range{4*mib + 2*p - 1, 4*mib + 2*p}, map[int64]int32{0: 513, 1: 769, 2: 3}},
		{false, Range{2*mib - p, 2*mib + p}, map[int64]int32{0: 512, 1: 768, 2: 3}},
		{false, Range{0, 2 * mib}, map[int64]int32{1: 768, 2: 3}},
		{false, Range{2 * mib, 4 * mib}, map[int64]int32{1: 256, 2: 3}},
		{false, Range{4*mib + p, 4*mib + 2*p}, map[int64]int32{1: 256, 2: 2}},
		{false, Range{3 * mib, 4 * mib}, map[int64]int32{2: 2}},
		{false, Range{4*mib + 1, 4*mib + 2}, map[int64]int32{2: 1}},
		{false, Range{4*mib + 2*p - 1, 4*mib + 2*p}, map[int64]int32{}},
	}
	for i, st := range steps {
		var err error
		if st.inc {
			err = m.IncRef(st.r)
		} else {
			err = m.DecRef(st.r)
		}
		if err != nil {
			t.Fatalf("step %d (%v, inc=%v): %v", i, st.r, st.inc, err)
		}
		if got := m.refTable(); !maps.Equal(got, st.want) {
			t.Fatalf("step %d (%v, inc=%v): counts %v, want %v", i, st.r, st.inc, got, st.want)
		}
		// Every referenced chunk maps and reads back the file.
		for ci := range st.want {
			var one [1][]byte
			bs, err := m.AppendMapInternal(one[:0], Range{ci * ChunkSize, ci*ChunkSize + p}, false)
			if err != nil || len(bs) != 1 || bs[0][0] != pattern(ci*ChunkSize) {
				t.Fatalf("step %d: chunk %d: %v", i, ci, err)
			}
		}
		if i == 2 {
			bs, err := m.MapInternal(Range{2*mib - p, 2*mib + p}, false)
			if err != nil || len(bs) != 2 || len(bs[0]) != p || len(bs[1]) != p || bs[1][0] != pattern(2*mib) {
				t.Fatalf("MapInternal across the boundary: %d slices, %v", len(bs), err)
			}
		}
	}
	if n := mappedBytesOf(t, f); n != 0 {
		t.Errorf("%d bytes still mapped", n)
	}
	t.Logf("%d adjacent/overlapping steps counted exactly; %+v", len(steps), m.Stats())
}

// TestRefErrors: bad input and unbalanced calls fail with the documented
// errno and change nothing.
func TestRefErrors(t *testing.T) {
	needPage4K(t)
	const p = 4 * kib
	tests := []struct {
		name  string
		call  func(m *Mapper, mp *Mapping) error
		errno syscall.Errno
	}{
		{"IncRef negative start", func(m *Mapper, _ *Mapping) error { return m.IncRef(Range{-1, 10}) }, syscall.EINVAL},
		{"IncRef start after end", func(m *Mapper, _ *Mapping) error { return m.IncRef(Range{10, 5}) }, syscall.EINVAL},
		{"IncRef end past MaxOffset", func(m *Mapper, _ *Mapping) error { return m.IncRef(Range{0, math.MaxInt64}) }, syscall.EINVAL},
		{"IncRef longer than MaxRangeLength", func(m *Mapper, _ *Mapping) error { return m.IncRef(Range{0, MaxRangeLength + 1}) }, syscall.EINVAL},
		{"IncRef overflow", func(m *Mapper, _ *Mapping) error {
			m.refsMu.Lock()
			m.chunks[1].refs = maxCount - 1 // chunk 1 holds one page from setup
			m.refsMu.Unlock()
			err := m.IncRef(Range{0, 2*mib + 2*p})
			m.refsMu.Lock()
			m.chunks[1].refs = 1
			m.refsMu.Unlock()
			return err
		}, syscall.EOVERFLOW},
		{"DecRef of an unreferenced chunk", func(m *Mapper, _ *Mapping) error { return m.DecRef(Range{4 * mib, 4*mib + 1}) }, syscall.EINVAL},
		{"DecRef underflow in the second chunk only", func(m *Mapper, _ *Mapping) error { return m.DecRef(Range{0, 2*mib + 2*p}) }, syscall.EINVAL},
		{"DecRef cannot take a Mapping's references", func(m *Mapper, _ *Mapping) error { return m.DecRef(Range{6 * mib, 6*mib + p}) }, syscall.EINVAL},
		{"DecRef negative", func(m *Mapper, _ *Mapping) error { return m.DecRef(Range{-4096, 0}) }, syscall.EINVAL},
		{"MapInternal unreferenced", func(m *Mapper, _ *Mapping) error {
			_, err := m.MapInternal(Range{4 * mib, 4*mib + 1}, false)
			return err
		}, syscall.EINVAL},
		{"MapInternal invalid", func(m *Mapper, _ *Mapping) error { _, err := m.MapInternal(Range{5, 4}, false); return err }, syscall.EINVAL},
		{"ReadAt unreferenced", func(m *Mapper, _ *Mapping) error { _, err := m.ReadAt(make([]byte, 10), 4*mib); return err }, syscall.EINVAL},
		{"ReadAt negative offset", func(m *Mapper, _ *Mapping) error { _, err := m.ReadAt(make([]byte, 10), -1); return err }, syscall.EINVAL},
		{"WriteAt overflowing", func(m *Mapper, _ *Mapping) error { _, err := m.WriteAt(make([]byte, 10), MaxOffset-5); return err }, syscall.EINVAL},
		{"Map negative length", func(m *Mapper, _ *Mapping) error { _, err := m.Map(0, -1, false); return err }, syscall.EINVAL},
		{"Map negative offset", func(m *Mapper, _ *Mapping) error { _, err := m.Map(-p, p, false); return err }, syscall.EINVAL},
		{"Map overflowing", func(m *Mapper, _ *Mapping) error { _, err := m.Map(math.MaxInt64-10, 20, false); return err }, syscall.EINVAL},
		{"MapInto nil", func(m *Mapper, _ *Mapping) error { return m.MapInto(nil, 0, 10, false) }, syscall.EINVAL},
		{"MapInto an open Mapping", func(m *Mapper, mp *Mapping) error { return m.MapInto(mp, 0, 10, false) }, syscall.EBUSY},
		{"Sync invalid", func(m *Mapper, _ *Mapping) error { return m.Sync(Range{-1, 1}) }, syscall.EINVAL},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFile(t, 8*mib, os.O_RDWR)
			m := newMapper(t, f)
			// Setup: chunk 0 fully referenced, one page of chunk 1,
			// and an open Mapping in chunk 3.
			for _, r := range []Range{{0, 2 * mib}, {2 * mib, 2*mib + p}} {
				if err := m.IncRef(r); err != nil {
					t.Fatal(err)
				}
			}
			mp, err := m.Map(6*mib, p, false)
			if err != nil {
				t.Fatal(err)
			}
			defer mp.Close()
			refs, users, stats := m.refTable(), m.userTable(), m.Stats()
			err = tc.call(m, mp)
			wantErrno(t, tc.name, err, tc.errno)
			if got := m.refTable(); !maps.Equal(got, refs) {
				t.Errorf("IncRef counts changed: %v, were %v", got, refs)
			}
			if got := m.userTable(); !maps.Equal(got, users) {
				t.Errorf("Mapping counts changed: %v, were %v", got, users)
			}
			if got := m.Stats(); got.LiveRefs != stats.LiveRefs || got.ChunksLive != stats.ChunksLive || got.MappingsOpen != stats.MappingsOpen {
				t.Errorf("stats changed: %+v, were %+v", got, stats)
			}
			if mp.Bytes() == nil || mp.Bytes()[0] != pattern(6*mib) {
				t.Errorf("the open Mapping was disturbed")
			}
			t.Logf("%s: %v, counts unchanged (%d live page refs)", tc.name, err, stats.LiveRefs)
		})
	}
}

// TestClosedMapper: after Close every method fails with ErrClosed, which
// matches fs.ErrClosed and EBADF.
func TestClosedMapper(t *testing.T) {
	f := newFile(t, 4*mib, os.O_RDWR)
	m := newMapper(t, f)
	if err := m.IncRef(Range{0, 4 * mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadAt(make([]byte, 10), 0); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if n := mappedBytesOf(t, f); n != 0 {
		t.Errorf("%d bytes still mapped after Close", n)
	}
	calls := []struct {
		name string
		call func() error
	}{
		{"IncRef", func() error { return m.IncRef(Range{0, 1}) }},
		{"DecRef", func() error { return m.DecRef(Range{0, 1}) }},
		{"MapInternal", func() error { _, err := m.MapInternal(Range{0, 1}, false); return err }},
		{"ReadAt", func() error { _, err := m.ReadAt(make([]byte, 1), 0); return err }},
		{"WriteAt", func() error { _, err := m.WriteAt(make([]byte, 1), 0); return err }},
		{"Map window", func() error { _, err := m.Map(0, 1, false); return err }},
		{"Map span", func() error { _, err := m.Map(0, 3*mib, false); return err }},
		{"Map empty", func() error { _, err := m.Map(0, 0, false); return err }},
		{"Sync", func() error { return m.Sync(Range{0, 1}) }},
		{"Close", m.Close},
	}
	for _, c := range calls {
		err := c.call()
		if err != ErrClosed || !errors.Is(err, fs.ErrClosed) || !errors.Is(err, syscall.EBADF) {
			t.Errorf("%s after Close: %v, want ErrClosed (fs.ErrClosed, EBADF)", c.name, err)
		}
	}
	if s := m.Stats(); s.LiveRefs != 0 || s.MappedBytes != 0 || s.ChunksMapped != s.ChunksUnmapped {
		t.Errorf("after Close: %+v", s)
	}
	t.Logf("%d methods refused after Close; %+v", len(calls), m.Stats())
}
