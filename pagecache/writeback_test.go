//go:build linux

package pagecache

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

// span is a write of n bytes at off, used to build dirty states.
type span struct{ off, n int64 }

func pagesSpans(pages ...int64) []span {
	var s []span
	for _, p := range pages {
		s = append(s, span{p * PageSize, PageSize})
	}
	return s
}

func adjacentPages(first, n int64) []span {
	return []span{{first * PageSize, n * PageSize}}
}

func scatteredPages(n int, seed uint64) []span {
	r := rand.New(rand.NewPCG(seed, 1))
	perm := r.Perm(4 * n)
	var pages []int64
	taken := map[int64]bool{}
	for _, p := range perm {
		if q := int64(p); !taken[q-1] && !taken[q+1] {
			pages = append(pages, q)
			taken[q] = true
		}
		if len(pages) == n {
			break
		}
	}
	return pagesSpans(pages...)
}

// TestWritebackCoalescing checks how dirty pages become write requests:
// adjacent dirty bytes are coalesced into writes of at most MaxWrite, all
// of one writeback go to the backend in one Submit (up to maxBatch), and
// exactly the dirty bytes are written.
func TestWritebackCoalescing(t *testing.T) {
	tests := []struct {
		name        string
		maxWrite    int64
		spans       []span
		wantWrites  int
		wantSubmits int
		wantBytes   int64 // bytes written (0: the sum of the spans)
	}{
		{"256 adjacent pages, MaxWrite 1 MiB", 1 << 20, adjacentPages(0, 256), 1, 1, 0},
		{"256 adjacent pages from page 1000", 1 << 20, adjacentPages(1000, 256), 1, 1, 0},
		{"257 adjacent pages", 1 << 20, adjacentPages(0, 257), 2, 1, 0},
		{"256 adjacent pages, MaxWrite 64 KiB", 64 * KiB, adjacentPages(0, 256), 16, 1, 0},
		{"256 adjacent pages, MaxWrite 4 KiB", PageSize, adjacentPages(0, 256), 256, 1, 0},
		{"256 adjacent pages written in reverse order", 1 << 20, reversePages(0, 256), 1, 1, 0},
		{"unaligned bytes across 256 pages", 1 << 20, []span{{100, 256*PageSize - 200}}, 1, 1, 0},
		{"100 scattered pages", 1 << 20, scatteredPages(100, 1), 100, 1, 0},
		{"1100 scattered pages: two batches", 1 << 20, scatteredPages(1100, 2), 1100, 2, 0},
		{"two spans in one page: their cover", 1 << 20, []span{{10, 10}, {100, 100}}, 1, 1, 190},
		{"partial spans on adjacent pages do not touch", 1 << 20, []span{{0, 100}, {PageSize, 100}}, 2, 1, 0},
		{"spans touching across a page boundary", 1 << 20, []span{{PageSize - 100, 100}, {PageSize, 100}}, 1, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostFile(t, nil, false)
			rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
			c := newCache(t, rb, Options{Capacity: 4096 * PageSize, MaxWrite: tt.maxWrite})
			f := openFile(t, c, h, 0)
			m := &model{}
			var sum int64
			for i, s := range tt.spans {
				mustWrite(t, f, m, pattern(uint64(i+10), int(s.n)), s.off)
				sum += s.n
			}
			if tt.wantBytes == 0 {
				tt.wantBytes = sum
			}
			s0, o0 := rb.mark()
			if err := f.Writeback(Range{0, 1 << 40}, SyncNone); err != nil {
				t.Fatal(err)
			}
			_, ops := rb.since(s0, o0)
			writes := filterOps(ops, isWrite)
			var written int64
			for _, w := range writes {
				written += w.length
				if w.length > tt.maxWrite {
					t.Errorf("write %v longer than MaxWrite %d", w, tt.maxWrite)
				}
				if w.off+w.length > f.Size() {
					t.Errorf("write %v reaches past size %d", w, f.Size())
				}
			}
			if len(writes) != tt.wantWrites || submitsOf(writes) != tt.wantSubmits || written != tt.wantBytes {
				t.Fatalf("%d writes in %d Submits, %d bytes; want %d writes in %d Submits, %d bytes",
					len(writes), submitsOf(writes), written, tt.wantWrites, tt.wantSubmits, tt.wantBytes)
			}
			checkHost(t, h, m)
			checkInvariants(t, c, true, f)
			t.Logf("%d dirty bytes -> %d writes in %d Submit(s)", sum, len(writes), submitsOf(writes))
		})
	}
}

func reversePages(first, n int64) []span {
	var s []span
	for p := first + n - 1; p >= first; p-- {
		s = append(s, span{p * PageSize, PageSize})
	}
	return s
}

// TestWritebackNeverPastSize truncates below dirty bytes (and below a
// dirty page's span) and checks that nothing at or past the size is
// written, and that the host ends equal to the model.
func TestWritebackNeverPastSize(t *testing.T) {
	tests := []struct {
		name  string
		spans []span
		trunc []int64 // successive truncations
	}{
		{"truncate inside a dirty page", adjacentPages(0, 8), []int64{5*PageSize + 77}},
		{"truncate at a page boundary", adjacentPages(0, 8), []int64{3 * PageSize}},
		{"truncate to zero then grow", adjacentPages(0, 8), []int64{0, 10 * PageSize}},
		{"truncate below the dirty span of the last page", []span{{4*PageSize + 1000, 2000}}, []int64{4*PageSize + 500}},
		{"shrink, grow, shrink", adjacentPages(2, 6), []int64{6*PageSize + 1, 20 * PageSize, 5*PageSize - 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostFile(t, nil, false)
			rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
			c := newCache(t, rb, Options{Capacity: 64 * PageSize})
			f := openFile(t, c, h, 0)
			m := &model{}
			for i, s := range tt.spans {
				mustWrite(t, f, m, pattern(uint64(i+20), int(s.n)), s.off)
			}
			for _, size := range tt.trunc {
				if err := f.Truncate(size); err != nil {
					t.Fatal(err)
				}
				m.truncate(size)
			}
			s0, o0 := rb.mark()
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
				t.Fatal(err)
			}
			_, ops := rb.since(s0, o0)
			for _, w := range filterOps(ops, isWrite) {
				if w.off+w.length > f.Size() {
					t.Errorf("write %v reaches past size %d", w, f.Size())
				}
			}
			mustRead(t, f, m, 0, int(f.Size())+PageSize)
			checkHost(t, h, m)
			checkInvariants(t, c, true, f)
			t.Logf("size %d: %d writes, none past the size; host equals model", f.Size(), len(filterOps(ops, isWrite)))
		})
	}
}

// TestWritebackDirect writes back through an O_DIRECT descriptor: every
// direct write is whole, aligned pages; only the EOF tail goes through the
// buffered descriptor; fills read whole pages directly; host bytes right.
func TestWritebackDirect(t *testing.T) {
	tests := []struct {
		name  string
		size  int64 // initial host size
		spans []span
	}{
		{"whole pages, aligned size", 16 * PageSize, adjacentPages(2, 5)},
		{"partial spans inside the file", 16 * PageSize, []span{{100, 50}, {3*PageSize + 7, 5000}, {10 * PageSize, 1}}},
		{"extending with an unaligned size", 4 * PageSize, []span{{3*PageSize + 5, 3*PageSize + 10}}},
		{"only the EOF page dirty", 4*PageSize + 300, []span{{4*PageSize + 10, 20}}},
		{"long run ending in the EOF page", 0, []span{{0, 300*PageSize + 1234}}},
		{"scattered pages then unaligned tail", 32 * PageSize, append(scatteredPages(6, 3), span{40*PageSize + 1, 99})},
	}
	dirs := []struct{ name, dir string }{{"tmp", ""}, {"testdir", "-"}}
	for _, d := range dirs {
		for _, tt := range tests {
			t.Run(d.name+"/"+tt.name, func(t *testing.T) {
				dir := t.TempDir() // the real disk file system
				if d.dir == "-" {
					dir = testDir(t)
				}
				testWritebackDirect(t, dir, tt.size, tt.spans)
			})
		}
	}
}

func testWritebackDirect(t *testing.T, dir string, size0 int64, spans []span) {
	t.Helper()
	data := pattern(30, int(size0))
	h := newHostFileIn(t, dir, data, true)
	rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
	c := newCache(t, rb, Options{Capacity: 1024 * PageSize})
	f := openFile(t, c, h, size0)
	m := &model{data: append([]byte(nil), data...)}
	// Cache what the spans touch inside the file, so that writes
	// into it are cached rather than sent to the host.
	for _, s := range spans {
		if s.off < size0 {
			mustRead(t, f, m, s.off, int(min(s.n, size0-s.off)))
		}
	}
	for i, s := range spans {
		mustWrite(t, f, m, pattern(uint64(i+40), int(s.n)), s.off)
	}
	if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
		t.Fatal(err)
	}
	_, ops := rb.since(0, 0)
	size := f.Size()
	direct, buffered := 0, 0
	for _, o := range ops {
		if !o.op.IsRead() && !o.op.IsWrite() {
			continue
		}
		switch o.fd {
		case h.directFd():
			direct++
			if o.off%PageSize != 0 || o.length%PageSize != 0 {
				t.Errorf("direct %v not whole pages", o)
			}
		case h.fd():
			if o.op.IsWrite() {
				buffered++
				if o.off < size&^(PageSize-1) || o.off+o.length > size {
					t.Errorf("buffered write %v outside the EOF tail [%d,%d)", o, size&^(PageSize-1), size)
				}
			}
		}
		if o.err != nil {
			t.Errorf("request failed: %v", o)
		}
	}
	checkHost(t, h, m)
	// Drop the cache and read everything back through direct fills.
	if err := f.Invalidate(Range{0, 1 << 40}); err != nil {
		t.Fatal(err)
	}
	mustRead(t, f, m, 0, int(size))
	checkInvariants(t, c, true, f)
	t.Logf("size %d: %d direct requests (all whole pages), %d buffered EOF-tail writes; host equals model", size, direct, buffered)

}

// TestWritebackWholeRange writes back with the widest ranges a caller may
// pass; every dirty byte must reach the host.
func TestWritebackWholeRange(t *testing.T) {
	ranges := []Range{{0, 1 << 40}, {0, 1 << 62}, {0, math.MaxInt64}, {-1, math.MaxInt64}}
	ops := []struct {
		name string
		do   func(f *File, r Range) error
	}{
		{"Writeback", func(f *File, r Range) error { return f.Writeback(r, SyncFull) }},
		{"FlushRange", func(f *File, r Range) error { return f.FlushRange(r) }},
		{"Invalidate", func(f *File, r Range) error { return f.Invalidate(r) }},
	}
	for _, op := range ops {
		for _, r := range ranges {
			t.Run(fmt.Sprintf("%s/%d-%d", op.name, r.Start, r.End), func(t *testing.T) {
				h := newHostFile(t, nil, false)
				c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 64 * PageSize})
				f := openFile(t, c, h, 0)
				m := &model{}
				mustWrite(t, f, m, pattern(50, 10*PageSize+5), 3)
				if err := op.do(f, r); err != nil {
					t.Fatal(err)
				}
				if op.name == "Writeback" && f.DirtyBytes() != 0 {
					t.Errorf("%d bytes still dirty after Writeback(%v, SyncFull)", f.DirtyBytes(), r)
				}
				if op.name == "Invalidate" && f.ResidentBytes() != 0 {
					t.Errorf("%d bytes still cached after Invalidate(%v)", f.ResidentBytes(), r)
				}
				checkHost(t, h, m)
				t.Logf("%s(%v): host equals model (%d bytes)", op.name, r, len(m.data))
			})
		}
	}
}

// TestWritebackFsyncEIO fails the fsync after good writes with ten handles
// sampling the error sequence: Writeback reports EIO, every written page
// goes back to dirty, each handle sees the error once, and the retry
// rewrites every page and succeeds (F4).
func TestWritebackFsyncEIO(t *testing.T) {
	for _, stage := range []fault.Stage{fault.StageIssue, fault.StageComplete} {
		t.Run(fmt.Sprintf("stage=%d", stage), func(t *testing.T) {
			h := newHostFile(t, nil, false)
			inj := fault.New()
			rb := &recBackend{Backend: openBackend(t, uring.BackendUring, inj)}
			c := newCache(t, rb, Options{Capacity: 64 * PageSize})
			f := openFile(t, c, h, 0)
			m := &model{}
			spans := append(scatteredPages(6, 5), span{40 * PageSize, 3*PageSize + 10})
			for i, s := range spans {
				mustWrite(t, f, m, pattern(uint64(i+60), int(s.n)), s.off)
			}
			handles := make([]uint64, 10)
			for i := range handles {
				handles[i] = f.Errs.Sample()
			}
			dirty := f.DirtyBytes()
			inj.Add(fault.Rule{Name: "fsync-eio", Stage: stage, Do: fault.Effect{Errno: syscall.EIO}, When: fault.Syncs()})
			err := f.Writeback(Range{0, 1 << 40}, SyncFull)
			if !errors.Is(err, syscall.EIO) {
				t.Fatalf("Writeback with a failing fsync = %v, want EIO", err)
			}
			if f.DirtyBytes() != dirty {
				t.Fatalf("DirtyBytes %d after a failed fsync, want %d (nothing may be clean)", f.DirtyBytes(), dirty)
			}
			for _, p := range residentPages(f) {
				if st, _ := pageState(f, p); st&pageDirty == 0 {
					t.Fatalf("page %d in state %d after a failed fsync, want dirty", p, st)
				}
			}
			for i := range handles {
				if err := f.Errs.Check(&handles[i]); !errors.Is(err, syscall.EIO) {
					t.Fatalf("handle %d: Check = %v, want EIO", i, err)
				}
				if err := f.Errs.Check(&handles[i]); err != nil {
					t.Fatalf("handle %d: second Check = %v, want nil", i, err)
				}
			}
			inj.Heal()
			s0, o0 := rb.mark()
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
				t.Fatal(err)
			}
			_, ops := rb.since(s0, o0)
			var rewritten int64
			for _, w := range filterOps(ops, isWrite) {
				rewritten += w.length
			}
			if rewritten != dirty || f.DirtyBytes() != 0 {
				t.Fatalf("retry rewrote %d bytes of %d dirty; %d still dirty", rewritten, dirty, f.DirtyBytes())
			}
			checkHost(t, h, m)
			checkInvariants(t, c, true, f)
			t.Logf("fsync EIO: 10 handles each saw it once; retry rewrote %d bytes; host equals model", rewritten)
		})
	}
}

// writebackFault is one kind of fault the sweep injects.
type writebackFault struct {
	name    string
	stage   fault.Stage
	effect  fault.Effect
	wantErr syscall.Errno // 0: the fault is absorbed (short transfers)
}

var writebackFaults = []writebackFault{
	{"EIO-issue", fault.StageIssue, fault.Effect{Errno: syscall.EIO}, syscall.EIO},
	{"EIO-complete", fault.StageComplete, fault.Effect{Errno: syscall.EIO}, syscall.EIO},
	{"ENOSPC-issue", fault.StageIssue, fault.Effect{Errno: syscall.ENOSPC}, syscall.ENOSPC},
	{"short-1000", fault.StageComplete, fault.Effect{Short: 1000}, 0},
	{"short-0", fault.StageComplete, fault.Effect{ShortWrite0: true}, 0},
}

// TestWritebackFaultSweep fails the k-th write or sync of a scripted
// sequence of writebacks, for every k until no fault fires, and checks
// after each writeback that errors are returned and recorded, that every
// page a failed request covered is still dirty (and every page if the
// fsync failed), that every clean page is on the host, and after healing
// that the host equals the model (F1, F3, F10 at the cache level).
func TestWritebackFaultSweep(t *testing.T) {
	total := 0
	for _, wf := range writebackFaults {
		for _, io := range []string{"buffered", "direct", "directwb"} {
			name := wf.name + "/" + io
			t.Run(name, func(t *testing.T) {
				inj := fault.New()
				be := openBackend(t, uring.BackendUring, inj)
				fired := uint64(0)
				k := 1
				for ; ; k++ {
					n, reached := runWritebackSweepCase(t, inj, be, wf, io, k)
					if t.Failed() {
						t.Fatalf("failed at k=%d", k)
					}
					fired += n
					if !reached {
						break
					}
				}
				total += int(fired)
				t.Logf("%s: %d positions swept, %d faults injected, acknowledged bytes lost = 0", name, k-1, fired)
			})
		}
	}
	t.Logf("faults injected: %d", total)
}

// runWritebackSweepCase runs the script with the k-th matching operation
// faulted; it returns the faults injected and whether a k-th operation
// existed. io is "buffered", "direct" (an O_DIRECT descriptor for every
// writeback) or "directwb" (Options.DirectWriteback, with MergeGap).
func runWritebackSweepCase(t *testing.T, inj *fault.Injector, be uring.Backend, wf writebackFault, io string, k int) (uint64, bool) {
	t.Helper()
	const pages = 40
	data := pattern(70, pages*PageSize-300)
	direct := io == "direct"
	h := newHostFile(t, data, direct)
	inj.Reset()
	rb := &recBackend{Backend: be}
	opts := Options{Capacity: 128 * PageSize, MaxWrite: 16 * KiB}
	if io == "directwb" {
		opts.DirectWriteback, opts.MergeGap = 2*PageSize, PageSize // longer runs buffered
	}
	c := newCache(t, rb, opts)
	f := openFile(t, c, h, int64(len(data)))
	m := &model{data: append([]byte(nil), data...)}
	mustRead(t, f, m, 0, len(data)) // cache it all: writes below are cached
	cursor := f.Errs.Sample()
	r := rand.New(rand.NewPCG(71, 0))
	write := func(n int) {
		for range n {
			off := r.Int64N(pages*PageSize + 2*PageSize)
			l := 1 + r.Int64N(3*PageSize)
			if r.IntN(3) == 0 { // whole pages: coalesced runs
				off &^= PageSize - 1
				l = (l + PageSize - 1) &^ (PageSize - 1)
			}
			mustWrite(t, f, m, pattern(r.Uint64(), int(l)), off)
		}
	}
	var fdFilter fault.Predicate = fault.OnFd(h.fd())
	switch io {
	case "direct":
		fdFilter = fault.Or(fault.OnFd(h.fd()), fault.OnFd(h.directFd()))
	case "directwb":
		fdFilter = fault.Any() // the cache's own O_DIRECT descriptor too
	}
	effect := wf.effect
	var kinds fault.Predicate = fault.Or(fault.Writes(), fault.Syncs())
	if wf.wantErr == 0 {
		kinds = fault.Writes() // a short count means nothing to a sync
	}
	if io != "buffered" && effect.Short > 0 {
		// O_DIRECT transfers are cut at block boundaries; a resumed
		// remainder at an unaligned offset would fail with EINVAL.
		effect.Short = PageSize
	}
	var matched atomic.Int64
	count := func(fault.Info) bool { matched.Add(1); return true }
	firedStart := inj.Fired()
	inj.Add(fault.Rule{Name: wf.name, Stage: wf.stage, Do: effect,
		When: fault.And(fdFilter, kinds, count, fault.Nth(uint64(k)))})
	step := func(r Range, mode SyncMode) {
		t.Helper()
		before := nonClean(f)
		firedBefore := inj.Fired()
		s0, o0 := rb.mark()
		err := f.Writeback(r, mode)
		_, ops := rb.since(s0, o0)
		fired := inj.Fired() > firedBefore
		switch {
		case fired && wf.wantErr != 0:
			if !errors.Is(err, wf.wantErr) {
				t.Errorf("k=%d: Writeback(%v) = %v with a fault injected, want %v", k, r, err, wf.wantErr)
			}
			if cerr := f.Errs.Check(&cursor); !errors.Is(cerr, wf.wantErr) {
				t.Errorf("k=%d: Errs.Check = %v after a failed writeback, want %v", k, cerr, wf.wantErr)
			}
			checkFailedStayDirty(t, f, before, ops)
		case err != nil:
			t.Errorf("k=%d: Writeback(%v) = %v (fired=%v)", k, r, err, fired)
		}
		checkCleanOnHost(t, f, h, m)
	}
	scale := 1
	if soak() {
		scale = 4
	}
	write(16 * scale)
	step(Range{0, 20 * PageSize}, SyncData)
	write(10 * scale)
	step(Range{0, 1 << 40}, SyncNone)
	write(6 * scale)
	step(Range{0, 1 << 40}, SyncFull)
	fired := inj.Fired() - firedStart
	reached := matched.Load() >= int64(k)
	inj.Heal()
	if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
		t.Fatalf("k=%d: healed Writeback: %v", k, err)
	}
	if f.DirtyBytes() != 0 {
		t.Fatalf("k=%d: %d bytes dirty after a healed Writeback", k, f.DirtyBytes())
	}
	checkHost(t, h, m)
	mustRead(t, f, m, 0, len(m.data))
	checkInvariants(t, c, true, f)
	releaseFile(t, f)
	return fired, reached
}

// nonClean returns the pages of f that are dirty or unsynced.
func nonClean(f *File) map[int64]uint8 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	out := map[int64]uint8{}
	f.index.each(0, 1<<62, func(page int64, fr int32) {
		if st := f.c.meta[fr].state; st != 0 {
			out[page] = st
		}
	})
	return out
}

// checkFailedStayDirty: after a failed writeback, every page that was not
// clean before and that a failed write covered is dirty; if a sync failed,
// every such page is dirty.
func checkFailedStayDirty(t *testing.T, f *File, before map[int64]uint8, ops []recOp) {
	t.Helper()
	syncFailed := false
	var failed []recOp
	for _, o := range ops {
		if o.err == nil {
			continue
		}
		if o.op == uring.OpFsync {
			syncFailed = true
		}
		if o.op.IsWrite() {
			failed = append(failed, o)
		}
	}
	for page := range before {
		covered := syncFailed
		for _, o := range failed {
			if o.off < (page+1)*PageSize && o.off+o.length > page*PageSize {
				covered = true
			}
		}
		if !covered {
			continue
		}
		if st, ok := pageState(f, page); !ok || st&pageDirty == 0 {
			t.Errorf("page %d: state %d (cached %v) after its writeback failed, want dirty (failed ops %v, sync failed %v)",
				page, st, ok, failed, syncFailed)
		}
	}
}

// checkCleanOnHost: every clean cached page equals the host's bytes.
func checkCleanOnHost(t *testing.T, f *File, h *hostFile, m *model) {
	t.Helper()
	host := h.bytes(t)
	f.mu.RLock()
	defer f.mu.RUnlock()
	size := f.size.Load()
	f.index.each(0, 1<<62, func(page int64, fr int32) {
		if f.c.meta[fr].state != 0 {
			return
		}
		a, b := page*PageSize, min((page+1)*PageSize, size)
		want := make([]byte, b-a)
		if a < int64(len(host)) {
			copy(want, host[a:min(b, int64(len(host)))])
		}
		if !bytes.Equal(f.c.frameBytes(fr)[:b-a], want) {
			t.Errorf("clean page %d differs from the host", page)
		}
	})
}
