//go:build linux

package pagecache

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

const KiB = 1 << 10

// TestFillRange is the readahead rule, one row per branch.
func TestFillRange(t *testing.T) {
	const L = 64 * KiB
	tests := []struct {
		name               string
		required, optional Range
		limit              int64
		want               Range
	}{
		{"required at the cap is read as is", Range{0, L}, Range{0, 1 << 30}, L, Range{0, L}},
		{"required over the cap is read as is", Range{100, 100 + 200*KiB}, Range{0, 1 << 30}, L, Range{100, 100 + 200*KiB}},
		{"required over the cap ignores a short optional", Range{0, 128 * KiB}, Range{0, 4 * KiB}, L, Range{0, 128 * KiB}},
		{"optional within the cap is read whole", Range{4 * KiB, 8 * KiB}, Range{4 * KiB, 40 * KiB}, L, Range{4 * KiB, 40 * KiB}},
		{"optional within the cap may start before required", Range{8 * KiB, 12 * KiB}, Range{0, 60 * KiB}, L, Range{0, 60 * KiB}},
		{"optional exactly the cap", Range{0, 1}, Range{0, L}, L, Range{0, L}},
		{"gap at EOF: optional ends at size", Range{1<<20 - 100, 1 << 20}, Range{1<<20 - 100, 1 << 20}, L, Range{1<<20 - 100, 1 << 20}},
		{"gap at EOF: short file read whole", Range{0, 10}, Range{0, 5000}, L, Range{0, 5000}},
		{"optional over the cap fits once started at required", Range{40 * KiB, 44 * KiB}, Range{0, 100 * KiB}, L, Range{40 * KiB, 100 * KiB}},
		{"optional over the cap is cut at required.Start+cap", Range{0, 4 * KiB}, Range{0, 1 << 30}, L, Range{0, L}},
		{"cut from an unaligned start", Range{100, 101}, Range{100, 1 << 30}, L, Range{100, 100 + L}},
		{"unbounded optional at the last gap", Range{5 << 20, 5<<20 + 1}, Range{0, math.MaxInt64}, L, Range{5 << 20, 5<<20 + L}},
		{"no read-behind when cut", Range{1 << 20, 1<<20 + 4*KiB}, Range{0, 4 << 20}, L, Range{1 << 20, 1<<20 + L}},
		{"smaller cap", Range{0, 1}, Range{0, 1 << 20}, 16 * KiB, Range{0, 16 * KiB}},
		{"required just under the cap gets the cap", Range{0, L - 1}, Range{0, 1 << 20}, L, Range{0, L}},
		{"empty required at EOF", Range{4096, 4096}, Range{4096, 4096}, L, Range{4096, 4096}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FillRange(tt.required, tt.optional, tt.limit)
			if got != tt.want {
				t.Fatalf("FillRange(%v, %v, %d) = %v, want %v", tt.required, tt.optional, tt.limit, got, tt.want)
			}
			// Properties every answer has: it covers required, and it
			// extends at most limit past required.Start unless required
			// alone is that long.
			if got.Start > tt.required.Start || got.End < tt.required.End {
				t.Fatalf("result %v does not cover required %v", got, tt.required)
			}
			if tt.required.Len() < tt.limit && got.End-tt.required.Start > tt.limit {
				t.Fatalf("result %v reaches %d past required.Start, cap %d", got, got.End-tt.required.Start, tt.limit)
			}
		})
	}
}

// TestReadahead drives fills through the cache and checks, from the
// requests the backend saw, that readahead stays under the cap (K6), never
// reads behind the request, never caches a page wholly past EOF, and that
// the tail of the last page past EOF reads zero.
func TestReadahead(t *testing.T) {
	const fileSize = 64*PageSize + 1000 // last page partial
	data := pattern(1, fileSize)
	tests := []struct {
		name      string
		readahead int64 // Options.Readahead
		cached    []int64
		off, n    int64
		// random: the read does not start where the file's last fill
		// ended, so it reads ahead only after a trail of cached pages
		// (or at the file's start): trail says it does.
		random, trail bool
	}{
		{"1 byte at 0", 0, nil, 0, 1, false, false},
		{"1 byte mid-page", 0, nil, 5*PageSize + 7, 1, false, false},
		{"last byte of a page", 0, nil, 6*PageSize - 1, 1, false, false},
		{"page-aligned 4 KiB", 0, nil, 10 * PageSize, PageSize, false, false},
		{"64 KiB request: no readahead", 0, nil, 3 * PageSize, 64 * KiB, false, false},
		{"200 KiB request", 0, nil, 100, 200 * KiB, false, false},
		{"near EOF: stops at the last page", 0, nil, 60*PageSize + 5, 10, false, false},
		{"last partial page", 0, nil, 64*PageSize + 10, 100, false, false},
		{"read across EOF", 0, nil, 63 * PageSize, 3 * PageSize, false, false},
		{"gaps around cached pages", 0, []int64{21, 23, 24, 30}, 20 * PageSize, 1, false, false},
		{"cached first page", 0, []int64{40}, 40*PageSize + 100, 5000, false, false},
		{"cap 16 KiB", 16 * KiB, nil, 2*PageSize + 1, 1, false, false},
		{"cap 8 KiB aligned", 8 * KiB, nil, 8 * PageSize, 1, false, false},
		{"cap of 1 page", PageSize, nil, 33*PageSize + 4000, 200, false, false},
		{"cap not a multiple of the page", 10000, nil, 4095, 1, false, false},
		{"cap not a multiple of the page, aligned start", 10000, nil, 8 * PageSize, 1, false, false},
		{"cap above the maximum is clamped", 1 << 20, nil, 0, 1, false, false},
		{"random 1 byte mid-page: no readahead", 0, nil, 5*PageSize + 7, 1, true, false},
		{"random 1 byte, cap 16 KiB: no readahead", 16 * KiB, nil, 2*PageSize + 1, 1, true, false},
		{"random 4 KiB, a cached page before: no readahead", 0, []int64{19}, 20 * PageSize, PageSize, true, false},
		{"random 4 KiB, two cached pages before: a trail", 0, []int64{18, 19}, 20 * PageSize, PageSize, true, true},
		{"random 8 KiB, two cached pages before: no readahead", 0, []int64{18, 19}, 20 * PageSize, 2 * PageSize, true, false},
		{"random 4 KiB, cached pages from the start: a trail", 0, []int64{0}, PageSize, PageSize, true, true},
		{"random at the file's start", 0, nil, 0, 1, true, true},
		{"random 64 KiB request: no readahead", 0, nil, 3 * PageSize, 64 * KiB, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostFile(t, data, false)
			rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
			c := newCache(t, rb, Options{Capacity: 256 * PageSize, Readahead: tt.readahead})
			f := openFile(t, c, h, fileSize)
			m := &model{data: append([]byte(nil), data...)}
			for _, p := range tt.cached {
				mustRead(t, f, m, p*PageSize, PageSize) // may read ahead; made exact below
			}
			// Keep exactly the listed pages: drop the rest.
			for _, p := range residentPages(f) {
				if !containsPage(tt.cached, p) {
					if err := f.Invalidate(Range{p * PageSize, (p + 1) * PageSize}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tt.random {
				f.fillEnd.Store(-1)
			} else {
				// The next step of a sequential read: its fill starts where
				// the last one ended.
				start := tt.off
				for containsPage(tt.cached, pageOf(start)) {
					start = (pageOf(start) + 1) * PageSize
				}
				f.fillEnd.Store(start)
			}
			before := c.Stats()
			s0, o0 := rb.mark()
			mustRead(t, f, m, tt.off, int(tt.n))
			_, ops := rb.since(s0, o0)
			st := c.Stats().Sub(before)
			cap := c.readahead
			reqEnd := min(tt.off+tt.n, fileSize)
			lo, hi := int64(math.MaxInt64), int64(0)
			for _, o := range filterOps(ops, isRead) {
				lo, hi = min(lo, o.off), max(hi, o.off+o.length)
			}
			// No read-behind: nothing before the request's first page.
			if lo < pageOf(tt.off)*PageSize {
				t.Errorf("read at %d, before the request's page %d", lo, pageOf(tt.off))
			}
			// Readahead: bytes read past the request's last page, which
			// ReadaheadBytes must count exactly.
			past := int64(0)
			for _, o := range filterOps(ops, isRead) {
				past += max(o.off+o.length-max(o.off, pageEnd(reqEnd)*PageSize), 0)
			}
			if past > cap || int64(st.ReadaheadBytes) != past {
				t.Errorf("read %d bytes past the request (ReadaheadBytes %d), cap %d", past, st.ReadaheadBytes, cap)
			}
			if tt.n < cap && hi > max(pageEnd(tt.off+cap), pageEnd(reqEnd))*PageSize {
				t.Errorf("read up to %d, beyond the window [%d, %d)", hi, tt.off, tt.off+cap)
			}
			// Exactly the pages of the window are cached, none past EOF.
			win := FillRange(Range{tt.off, reqEnd}, Range{tt.off, fileSize}, cap)
			if tt.random && !tt.trail {
				win = Range{tt.off, reqEnd} // a random miss reads its own pages only
			}
			for _, p := range residentPages(f) {
				if p*PageSize >= fileSize {
					t.Errorf("page %d cached wholly past EOF %d", p, fileSize)
				}
				inWindow := p >= pageOf(win.Start) && p < pageEnd(win.End)
				if !inWindow && !containsPage(tt.cached, p) {
					t.Errorf("page %d cached, outside the window %v", p, win)
				}
			}
			for p := pageOf(win.Start); p < min(pageEnd(win.End), pageEnd(fileSize)); p++ {
				if _, ok := pageState(f, p); !ok {
					t.Errorf("page %d of the window %v not cached", p, win)
				}
			}
			checkInvariants(t, c, true, f)
			t.Logf("read [%d,%d): %d read requests, %d bytes past the request page, ReadaheadBytes=%d, cap=%d",
				tt.off, reqEnd, len(filterOps(ops, isRead)), past, st.ReadaheadBytes, cap)
		})
	}
}

// TestReadaheadStreams: sequential readers keep their readahead, also
// when several read one file at once and none continues the file's last
// fill; random reads of the same size seldom read ahead. Each stream reads 4 KiB
// at a time from its own start in the middle of the file; the streams
// take turns, one read each.
func TestReadaheadStreams(t *testing.T) {
	const pages, perStream = 1024, 192
	data := pattern(7, pages*PageSize)
	tests := []struct {
		name    string
		streams int
		random  bool
		full    bool // a cache of 64 pages, full of another file's
	}{
		{"one stream", 1, false, false},
		{"two streams", 2, false, false},
		{"four streams", 4, false, false},
		{"random reads", 1, true, false},
		{"one stream, full cache", 1, false, true},
		{"two streams, full cache", 2, false, true},
		{"four streams, full cache", 4, false, true},
		{"random reads, full cache", 1, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostFile(t, data, false)
			capPages := int64(pages)
			if tt.full {
				capPages = 64
			}
			c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: capPages * PageSize})
			files := []*File{}
			if tt.full {
				other := openFile(t, c, newHostFile(t, pattern(8, 64*PageSize), false), 64*PageSize)
				if _, err := other.ReadAt(make([]byte, 64*PageSize), 0); err != nil {
					t.Fatal(err)
				}
				files = append(files, other)
			}
			f := openFile(t, c, h, pages*PageSize)
			files = append(files, f)
			m := &model{data: append([]byte(nil), data...)}
			rng := rand.New(rand.NewPCG(7, 0))
			before := c.Stats()
			for i := range perStream {
				for s := range tt.streams {
					page := int64(100+s*200+i) % pages
					if tt.random {
						page = rng.Int64N(pages)
					}
					mustRead(t, f, m, page*PageSize, PageSize)
				}
			}
			st := c.Stats().Sub(before)
			reads := int64(perStream * tt.streams)
			if tt.random {
				// Only where the pages before happen to be cached (or at
				// the file's start) does a random read read ahead: here at
				// most one read in 16 (each reading ahead at most 64 KiB).
				if limit := uint64(reads/16) * MaxReadahead; st.ReadaheadBytes > limit {
					t.Errorf("random reads: %d bytes of readahead, want at most %d", st.ReadaheadBytes, limit)
				}
			} else {
				// A stream reads ahead from its third miss on (two random
				// reads leave the trail that makes it sequential): then a
				// fill of 17 pages serves 17 reads.
				maxFills := int64(tt.streams) * (2 + perStream/17 + 1)
				if int64(st.Fills) > maxFills || st.ReadaheadBytes == 0 {
					t.Errorf("%d fills for %d reads (at most %d), %d bytes of readahead", st.Fills, reads, maxFills, st.ReadaheadBytes)
				}
			}
			checkInvariants(t, c, true, files...)
			t.Logf("%d reads: %d fills, %d bytes of readahead, %d pages read around the cache", reads, st.Fills, st.ReadaheadBytes, st.AdmissionSkips)
		})
	}
}

func containsPage(pages []int64, p int64) bool {
	for _, q := range pages {
		if q == p {
			return true
		}
	}
	return false
}

// TestEOFTailZero reads the last page of a file whose frames held other
// data, and checks the bytes past EOF are zero in the cache and in what a
// later extension exposes.
func TestEOFTailZero(t *testing.T) {
	be := openBackend(t, uring.BackendUring, nil)
	c := newCache(t, be, Options{Capacity: MinCapacity})
	poisonFrames(t, c)
	const size = 3*PageSize + 123
	data := pattern(2, size)
	h := newHostFile(t, data, false)
	f := openFile(t, c, h, size)
	m := &model{data: append([]byte(nil), data...)}
	p := make([]byte, 2*PageSize)
	n, err := f.ReadAt(p, 3*PageSize)
	if err != nil || n != 123 {
		t.Fatalf("ReadAt at the last page = %d, %v; want 123", n, err)
	}
	checkInvariants(t, c, true, f) // includes: bytes past size in the frame are zero
	// Extend by writing past EOF: the gap reads zero.
	mustWrite(t, f, m, []byte("end"), 4*PageSize+10)
	mustRead(t, f, m, 0, int(f.Size()))
	if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
		t.Fatal(err)
	}
	checkHost(t, h, m)
	t.Logf("tail [%d,%d) of the last page read as zeros from a frame that held 0xAA", size, 4*PageSize)
}

// poisonFrames fills every frame of c with 0xAA by caching a junk file and
// releasing it.
func poisonFrames(t testing.TB, c *Cache) {
	t.Helper()
	n := int(c.Capacity())
	junk := bytes.Repeat([]byte{0xAA}, n)
	h := newHostFile(t, junk, false)
	f, err := c.NewFile(h.fd(), -1, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	for off := 0; off < n; off += 64 * KiB {
		p := make([]byte, 64*KiB)
		if _, err := f.ReadAt(p, int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Release(); err != nil {
		t.Fatal(err)
	}
	free := c.Stats().FreeBytes
	if free != c.Capacity() {
		t.Fatalf("after releasing the junk file %d of %d bytes free", free, c.Capacity())
	}
}

// TestFillBatching checks that a fill with k gaps reaches the backend in
// exactly one Submit carrying one request per gap.
func TestFillBatching(t *testing.T) {
	const pages = 64
	data := pattern(3, pages*PageSize)
	tests := []struct {
		name     string
		cached   []int64 // pages cached before the read
		off, n   int64
		wantGaps int
	}{
		{"one gap", nil, 0, 16 * PageSize, 1},
		{"two gaps", []int64{5}, 0, 16 * PageSize, 2},
		{"eight gaps", []int64{1, 3, 5, 7, 9, 11, 13, 15}, 0, 16 * PageSize, 8},
		{"gaps in the readahead part", []int64{2, 4, 6}, 0, 1, 5}, // [0] [1] [3] [5] [7,16)
		{"required/readahead boundary splits a gap", nil, 0, 2 * PageSize, 2},
		{"k=16 single pages", []int64{0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30}, PageSize, 31 * PageSize, 16},
	}
	for _, backend := range testBackends {
		for _, tt := range tests {
			t.Run(backend+"/"+tt.name, func(t *testing.T) {
				h := newHostFile(t, data, false)
				rb := &recBackend{Backend: openBackend(t, backend, nil)}
				c := newCache(t, rb, Options{Capacity: 256 * PageSize})
				f := openFile(t, c, h, pages*PageSize)
				m := &model{data: append([]byte(nil), data...)}
				// Cache the listed pages by whole-page writes (no host read),
				// then make them clean.
				for _, p := range tt.cached {
					mustWrite(t, f, m, data[p*PageSize:(p+1)*PageSize], p*PageSize)
				}
				if err := f.Writeback(Range{0, 1 << 40}, SyncNone); err != nil {
					t.Fatal(err)
				}
				s0, o0 := rb.mark()
				mustRead(t, f, m, tt.off, int(tt.n))
				submits, ops := rb.since(s0, o0)
				reads := filterOps(ops, isRead)
				if submits != 1 || len(reads) != tt.wantGaps {
					t.Fatalf("fill: %d Submits, %d read requests %v; want 1 Submit, %d requests", submits, len(reads), reads, tt.wantGaps)
				}
				mustRead(t, f, m, 0, pages*PageSize)
				checkInvariants(t, c, true, f)
				t.Logf("%d gaps -> %d Submit, %d requests", tt.wantGaps, submits, len(reads))
			})
		}
	}
}

// TestFillReadaheadEIO fails only the readahead part of fills: the
// foreground read succeeds with the right bytes, and no page whose read
// failed becomes valid (F12).
func TestFillReadaheadEIO(t *testing.T) {
	const pages = 48
	data := pattern(4, pages*PageSize)
	tests := []struct {
		name  string
		off   int64
		n     int
		stage fault.Stage
	}{
		{"issue EIO after 1 page", 0, 1, fault.StageIssue},
		{"issue EIO after an unaligned read", 3*PageSize + 5, 6000, fault.StageIssue},
		{"completion EIO", 8 * PageSize, PageSize, fault.StageComplete},
		{"issue EIO near EOF", 40*PageSize + 1, 10, fault.StageIssue},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostFile(t, data, false)
			inj := fault.New()
			rb := &recBackend{Backend: openBackend(t, uring.BackendUring, inj)}
			c := newCache(t, rb, Options{Capacity: 64 * PageSize})
			poisonFrames(t, c)
			f := openFile(t, c, h, pages*PageSize)
			m := &model{data: append([]byte(nil), data...)}
			f.fillEnd.Store(tt.off) // the next step of a sequential read: it reads ahead
			reqPagesEnd := pageEnd(tt.off+int64(tt.n)) * PageSize
			inj.Add(fault.Rule{Name: "readahead-eio", Stage: tt.stage, Do: fault.Effect{Errno: syscall.EIO},
				When: fault.And(fault.Reads(), fault.OnFd(h.fd()), fault.InRange(reqPagesEnd, 1<<40))})
			before := c.Stats()
			mustRead(t, f, m, tt.off, tt.n)
			st := c.Stats().Sub(before)
			if inj.Fired() == 0 {
				t.Fatal("no readahead read failed: the test did not exercise anything")
			}
			for _, p := range residentPages(f) {
				if p*PageSize >= reqPagesEnd {
					t.Errorf("page %d cached although its read failed", p)
				}
			}
			inj.Heal()
			mustRead(t, f, m, 0, pages*PageSize) // readahead pages now come from the host
			checkInvariants(t, c, true, f)
			t.Logf("faults=%d fill errors=%d; required bytes right, failed readahead pages not cached, later reads match host",
				inj.Fired(), st.FillErrors)
		})
	}
}

// TestFillRequiredEIO fails the required part: the read reports the error
// and a short count, and the poisoned frames never become visible.
func TestFillRequiredEIO(t *testing.T) {
	const pages = 32
	data := pattern(5, pages*PageSize)
	h := newHostFile(t, data, false)
	inj := fault.New()
	be := openBackend(t, uring.BackendUring, inj)
	c := newCache(t, be, Options{Capacity: 64 * PageSize})
	poisonFrames(t, c)
	f := openFile(t, c, h, pages*PageSize)
	m := &model{data: append([]byte(nil), data...)}
	// Page 2 is required and fails.
	inj.Add(fault.Rule{Name: "required-eio", Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EIO},
		When: fault.And(fault.Reads(), fault.InRange(2*PageSize, 3*PageSize))})
	p := make([]byte, 4*PageSize)
	n, err := f.ReadAt(p, 0)
	if !errors.Is(err, syscall.EIO) {
		t.Fatalf("ReadAt over a failing page: n=%d err=%v, want EIO", n, err)
	}
	if n > 2*PageSize || !bytes.Equal(p[:n], data[:n]) {
		t.Fatalf("ReadAt returned %d bytes (must stop at 8192, and match)", n)
	}
	inj.Heal()
	mustRead(t, f, m, 0, pages*PageSize)
	checkInvariants(t, c, true, f)
	t.Logf("required EIO: n=%d err=%v; after healing all %d bytes match", n, err, pages*PageSize)
}

// zeroReads turns every read completion into 0 bytes (end of file) and
// counts completions.
type zeroReads struct{ completions, reads atomic.Int64 }

func (z *zeroReads) Enter() syscall.Errno                 { return 0 }
func (z *zeroReads) Issue(r *uring.Request) (int32, bool) { return 0, false }
func (z *zeroReads) Complete(r *uring.Request, res int32) int32 {
	z.completions.Add(1)
	if r.Op.IsRead() {
		z.reads.Add(1)
		return 0
	}
	return res
}

// TestFillZeroByteRead: a read the host answers with 0 bytes is end of
// file; the fill does not loop and the bytes read as zeros.
func TestFillZeroByteRead(t *testing.T) {
	for _, backend := range testBackends {
		t.Run(backend, func(t *testing.T) {
			data := pattern(6, 8*PageSize)
			h := newHostFile(t, data, false)
			z := &zeroReads{}
			rb := &recBackend{Backend: openBackend(t, backend, z)}
			c := newCache(t, rb, Options{Capacity: MinCapacity})
			f := openFile(t, c, h, 8*PageSize)
			p := bytes.Repeat([]byte{0xEE}, 3*PageSize)
			n, err := f.ReadAt(p, 100)
			if err != nil || n != len(p) {
				t.Fatalf("ReadAt = %d, %v", n, err)
			}
			if i := bytes.IndexFunc(p, func(r rune) bool { return r != 0 }); i >= 0 {
				t.Fatalf("byte %d is %#x, want zero past the host's end of file", i, p[i])
			}
			_, ops := rb.since(0, 0)
			reads := filterOps(ops, isRead)
			if z.reads.Load() != int64(len(reads)) {
				t.Fatalf("%d read completions for %d read requests: a 0-byte read was retried", z.reads.Load(), len(reads))
			}
			t.Logf("%d read requests, %d completions: 0-byte reads ended the fill", len(reads), z.reads.Load())
		})
	}
}

// growOnShortRead grows the host file to 1 MiB at the first read that
// completes short, before the backend resumes it (as a writeback of other
// pages extending the host may).
type growOnShortRead struct {
	path  string
	grown atomic.Bool
}

func (g *growOnShortRead) Enter() syscall.Errno               { return 0 }
func (g *growOnShortRead) Issue(*uring.Request) (int32, bool) { return 0, false }
func (g *growOnShortRead) Complete(r *uring.Request, res int32) int32 {
	if r.Op.IsRead() && res > 0 && int(res) < len(r.Buf) && g.grown.CompareAndSwap(false, true) {
		if err := os.Truncate(g.path, 1<<20); err != nil {
			panic(err)
		}
	}
	return res
}

// TestDirectFillFileGrows fills the last page of a 10000-byte file through
// the O_DIRECT descriptor; the read stops at the host's end, and the host
// grows before the rest is read, so the backend's resumption at the
// unaligned end is refused with EINVAL. The fill must succeed as one that
// reached the end of file: the file's bytes, then zeros (the growth is a
// hole), on every backend.
func TestDirectFillFileGrows(t *testing.T) {
	data := pattern(40, 10000)
	for _, backend := range testBackends {
		t.Run(backend, func(t *testing.T) {
			h := newHostFileIn(t, t.TempDir(), data, true)
			inj := &growOnShortRead{path: h.path}
			c := newCache(t, openBackend(t, backend, inj), Options{Capacity: 64 * PageSize})
			f := openFile(t, c, h, int64(len(data)))
			p := make([]byte, 3*PageSize)
			n, err := f.ReadAt(p, 2*PageSize)
			if !inj.grown.Load() {
				t.Skip("the fill's read did not come back short")
			}
			if err != nil || n != len(data)-2*PageSize || !bytes.Equal(p[:n], data[2*PageSize:]) {
				t.Fatalf("ReadAt = %d, %v; want %d bytes of the file", n, err, len(data)-2*PageSize)
			}
			// The page is cached with zeros past the old end.
			if got, hit := f.ReadCached(p[:PageSize], 2*PageSize); !hit || got != len(data)-2*PageSize {
				t.Fatalf("ReadCached = %d, %v; want a hit of %d bytes", got, hit, len(data)-2*PageSize)
			}
		})
	}
}

// TestConsecutivePagesGetConsecutiveFrames: fills of consecutive pages on
// a cache with free frames take frames in ascending order, so each fill
// is one buffer (READ_FIXED or READ, not a vector of pages), and so is
// the writeback of those pages as one run: a 1 MiB run written with one
// buffer goes to the device in a few large segments instead of 256 small
// ones. The second round reads a new file into the frames the first one
// gave back.
func TestConsecutivePagesGetConsecutiveFrames(t *testing.T) {
	const size = 1 << 20
	rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
	c := newCache(t, rb, Options{Capacity: 512 * PageSize, MaxWrite: size})
	for round := range 2 {
		h := newHostFile(t, pattern(uint64(40+round), size), false)
		f := openFile(t, c, h, size)
		s0, o0 := rb.mark()
		p := make([]byte, PageSize)
		for off := int64(0); off < size; off += PageSize {
			if _, err := f.ReadAt(p, off); err != nil {
				t.Fatal(err)
			}
		}
		for off := int64(0); off < size; off += PageSize {
			p[0] = byte(off >> 12)
			if _, _, err := f.WriteAt(p, off, 0); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Writeback(Range{0, size}, SyncNone); err != nil {
			t.Fatal(err)
		}
		_, ops := rb.since(s0, o0)
		reads, writes := filterOps(ops, isRead), filterOps(ops, isWrite)
		if len(reads) == 0 || len(writes) != 1 {
			t.Fatalf("round %d: %d reads and %d writes, want some reads and one write:\n%v", round, len(reads), len(writes), ops)
		}
		for _, o := range append(reads, writes...) {
			if o.op == uring.OpReadv || o.op == uring.OpWritev {
				t.Errorf("round %d: %v: a vector of pages, not one buffer", round, o)
			}
		}
		if writes[0].length != size {
			t.Errorf("round %d: writeback %v, want one write of %d bytes", round, writes[0], size)
		}
		if err := f.Release(); err != nil {
			t.Fatal(err)
		}
	}
}
