//go:build linux

package pagecache

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

// TestWritebackMergeGap checks which dirty runs writeback joins across
// clean cached bytes (Options.MergeGap): the writes and bytes sent, the
// merged-bytes counter, the host afterwards, and that the clean pages
// written along are unsynced like the dirty ones until the fsync.
func TestWritebackMergeGap(t *testing.T) {
	const filePages = 64
	tests := []struct {
		name       string
		gap        int64
		maxWrite   int64
		uncached   []int64 // pages left out of the cache
		unsynced   []int64 // pages written back (not synced) before the spans
		spans      []span
		wantWrites int
		wantMerged int64
	}{
		{"one clean page between, gap 4 KiB", PageSize, 0, nil, nil, pagesSpans(0, 2), 1, PageSize},
		{"two clean pages between, gap 4 KiB", PageSize, 0, nil, nil, pagesSpans(0, 3), 2, 0},
		{"two clean pages between, gap 8 KiB", 2 * PageSize, 0, nil, nil, pagesSpans(0, 3), 1, 2 * PageSize},
		{"gap 0 joins nothing", 0, 0, nil, nil, pagesSpans(0, 2), 2, 0},
		{"partial spans on adjacent pages", PageSize, 0, nil, nil,
			[]span{{100, 50}, {PageSize + 10, 20}}, 1, PageSize + 10 - 150},
		{"partial spans too far apart", PageSize, 0, nil, nil,
			[]span{{100, 50}, {2*PageSize + 10, 20}}, 2, 0},
		{"the page between is not cached", PageSize, 0, []int64{1}, nil, pagesSpans(0, 2), 2, 0},
		{"joined run would pass MaxWrite", PageSize, 2 * PageSize, nil, nil, pagesSpans(0, 2), 2, 0},
		{"chain of one-page gaps", PageSize, 0, nil, nil, pagesSpans(0, 2, 4, 6, 8), 1, 4 * PageSize},
		{"unsynced page between", PageSize, 0, nil, []int64{1}, pagesSpans(0, 2), 1, PageSize},
		{"up to the EOF page", PageSize, 0, nil, nil,
			[]span{{(filePages - 3) * PageSize, PageSize}, {(filePages - 1) * PageSize, 100}}, 1, PageSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(90, filePages*PageSize-500)
			h := newHostFile(t, data, false)
			rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
			c := newCache(t, rb, Options{Capacity: 256 * PageSize, MergeGap: tt.gap, MaxWrite: tt.maxWrite, Readahead: PageSize})
			f := openFile(t, c, h, int64(len(data)))
			m := &model{data: append([]byte(nil), data...)}
			skip := map[int64]bool{}
			for _, p := range tt.uncached {
				skip[p] = true
			}
			for p := int64(0); p < filePages; p++ {
				if !skip[p] {
					mustRead(t, f, m, p*PageSize, int(min(PageSize, int64(len(data))-p*PageSize)))
				}
			}
			for i, p := range tt.unsynced {
				mustWrite(t, f, m, pattern(uint64(200+i), PageSize), p*PageSize)
			}
			if len(tt.unsynced) > 0 {
				if err := f.Writeback(Range{0, 1 << 40}, SyncNone); err != nil {
					t.Fatal(err)
				}
			}
			before := nonClean(f)
			for i, s := range tt.spans {
				mustWrite(t, f, m, pattern(uint64(i+100), int(s.n)), s.off)
			}
			st0 := c.Stats()
			s0, o0 := rb.mark()
			if err := f.Writeback(Range{0, 1 << 40}, SyncNone); err != nil {
				t.Fatal(err)
			}
			_, ops := rb.since(s0, o0)
			writes := filterOps(ops, isWrite)
			var written, dirty int64
			for _, s := range tt.spans {
				dirty += s.n
			}
			for _, w := range writes {
				written += w.length
				if w.off+w.length > f.Size() {
					t.Errorf("write %v reaches past size %d", w, f.Size())
				}
			}
			merged := c.Stats().Sub(st0).WritebackMergedBytes
			if len(writes) != tt.wantWrites || merged != uint64(tt.wantMerged) || written != dirty+tt.wantMerged {
				t.Fatalf("%d writes, %d bytes, %d merged; want %d writes, %d bytes, %d merged (writes %v)",
					len(writes), written, merged, tt.wantWrites, dirty+tt.wantMerged, tt.wantMerged, writes)
			}
			// Pages written, to join runs or not, are unsynced; others keep
			// their state.
			wrote := map[int64]bool{}
			for _, w := range writes {
				for p := pageOf(w.off); p < pageEnd(w.off+w.length); p++ {
					wrote[p] = true
				}
			}
			for p := int64(0); p < filePages; p++ {
				st, ok := pageState(f, p)
				switch {
				case wrote[p]:
					if !ok || st != pageUnsynced {
						t.Errorf("written page %d: state %d (cached %v) after writeback, want unsynced", p, st, ok)
					}
				case ok && st != before[p]:
					t.Errorf("page %d: state %d after writeback, was %d", p, st, before[p])
				}
			}
			checkInvariants(t, c, true, f)
			checkHost(t, h, m)
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
				t.Fatal(err)
			}
			if n := len(nonClean(f)); n != 0 {
				t.Errorf("%d pages not clean after a synced writeback", n)
			}
			checkInvariants(t, c, true, f)
		})
	}
}

// openFds counts the process's open descriptors.
func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestDirectWriteback: with Options.DirectWriteback, writebacks without an
// fsync stay buffered; those with one write whole pages through the
// cache's own O_DIRECT descriptor (opened once, on first use), all but the
// partial EOF page and pages past the host's end; the descriptor is
// closed by SetFd and Release.
func TestDirectWriteback(t *testing.T) {
	dirs := []struct{ name, dir string }{{"disk", ""}, {"testdir", "-"}}
	for _, d := range dirs {
		t.Run(d.name, func(t *testing.T) {
			dir := t.TempDir()
			if d.dir == "-" {
				dir = testDir(t)
			}
			data := pattern(91, 32*PageSize-700)
			h := newHostFileIn(t, dir, data, false)
			rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
			c := newCache(t, rb, Options{Capacity: 128 * PageSize, DirectWriteback: 1 << 30})
			fds0 := openFds(t)
			f, err := c.NewFile(h.fd(), -1, int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			m := &model{data: append([]byte(nil), data...)}
			mustRead(t, f, m, 0, len(data))
			dirtySome := func(seed uint64) {
				mustWrite(t, f, m, pattern(seed, 3*PageSize), 2*PageSize)
				mustWrite(t, f, m, pattern(seed+1, 100), 9*PageSize+50)
				mustWrite(t, f, m, pattern(seed+2, 50), int64(len(m.data))-100) // EOF page
			}
			step := func(mode SyncMode) (direct, buffered int64) {
				t.Helper()
				st0 := c.Stats()
				fi, err := h.fh.Stat()
				if err != nil {
					t.Fatal(err)
				}
				s0, o0 := rb.mark()
				if err := f.Writeback(Range{0, 1 << 40}, mode); err != nil {
					t.Fatal(err)
				}
				_, ops := rb.since(s0, o0)
				size := f.Size()
				for _, w := range filterOps(ops, isWrite) {
					if w.fd == h.fd() {
						buffered += w.length
						if lo := min(size, fi.Size()) &^ (PageSize - 1); mode != SyncNone && (w.off < lo || w.off+w.length > size) {
							t.Errorf("buffered write %v of a synced writeback outside [%d, %d): the page of the host's end and past it", w, lo, size)
						}
						continue
					}
					direct += w.length
					if w.off%PageSize != 0 || w.length%PageSize != 0 {
						t.Errorf("O_DIRECT write %v not whole pages", w)
					}
				}
				if got := c.Stats().Sub(st0).WritebackDirectBytes; got != uint64(direct) {
					t.Errorf("WritebackDirectBytes %d, want %d", got, direct)
				}
				checkHost(t, h, m)
				return direct, buffered
			}
			dirtySome(1)
			if direct, _ := step(SyncNone); direct != 0 || f.syncFd != -1 {
				t.Fatalf("writeback without fsync: %d bytes O_DIRECT, descriptor %d; want 0, -1", direct, f.syncFd)
			}
			dirtySome(10)
			direct, buffered := step(SyncData)
			// Pages 2-4 and 9 whole; the 50 bytes in the EOF page buffered.
			if direct != 4*PageSize || buffered != 50 || f.syncFd < 0 {
				t.Fatalf("synced writeback: %d bytes O_DIRECT, %d buffered, descriptor %d; want %d, 50, ≥ 0",
					direct, buffered, f.syncFd, 4*PageSize)
			}
			fd := f.syncFd
			dirtySome(20)
			step(SyncFull)
			if f.syncFd != fd {
				t.Fatalf("descriptor %d after a second synced writeback, want %d (opened once)", f.syncFd, fd)
			}
			// Growing the file: the pages past the host's end are written
			// buffered (a buffered extension zeroes what a mapping may have
			// left past the old end); those below it stay O_DIRECT.
			size0 := f.Size()
			mustWrite(t, f, m, pattern(25, 2*PageSize), size0-PageSize)
			direct, buffered = step(SyncFull)
			if want := int64(PageSize); direct != want || buffered != f.Size()-(size0&^(PageSize-1)) {
				t.Fatalf("extending writeback: %d bytes O_DIRECT, %d buffered; want %d, %d",
					direct, buffered, want, f.Size()-(size0&^(PageSize-1)))
			}
			f.SetFd(h.fd(), -1)
			if f.syncFd != -1 {
				t.Fatalf("descriptor %d after SetFd, want -1", f.syncFd)
			}
			dirtySome(30)
			step(SyncFull)
			mustRead(t, f, m, 0, len(m.data))
			checkInvariants(t, c, true, f)
			if err := f.Release(); err != nil {
				t.Fatal(err)
			}
			if n := openFds(t); n != fds0 {
				t.Fatalf("%d descriptors open after Release, want %d as before NewFile", n, fds0)
			}
		})
	}
}

// TestDirectWritebackRefused: a filesystem that refuses the O_DIRECT
// writes (EINVAL) gets them buffered instead, in the same Writeback and
// afterwards, and no error is reported.
func TestDirectWritebackRefused(t *testing.T) {
	data := pattern(92, 16*PageSize)
	h := newHostFile(t, data, false)
	inj := fault.New()
	inj.Add(fault.Rule{Name: "no O_DIRECT", Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EINVAL},
		When: func(i fault.Info) bool { return i.Op.IsWrite() && i.Fd != h.fd() }})
	rb := &recBackend{Backend: openBackend(t, uring.BackendUring, inj)}
	c := newCache(t, rb, Options{Capacity: 64 * PageSize, DirectWriteback: 1 << 30})
	f := openFile(t, c, h, int64(len(data)))
	m := &model{data: append([]byte(nil), data...)}
	mustRead(t, f, m, 0, len(data))
	cursor := f.Errs.Sample()
	for round := range 2 {
		mustWrite(t, f, m, pattern(uint64(round), 4*PageSize), 3*PageSize)
		s0, o0 := rb.mark()
		if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
			t.Fatalf("round %d: Writeback = %v, want nil", round, err)
		}
		_, ops := rb.since(s0, o0)
		var refused, buffered int
		for _, w := range filterOps(ops, isWrite) {
			if w.fd == h.fd() {
				buffered++
			} else {
				refused++
			}
		}
		// The first round tries O_DIRECT once; the second does not.
		if want := 1 - round; refused != want || buffered != 1 || f.syncFd != syncRefused {
			t.Fatalf("round %d: %d refused O_DIRECT writes, %d buffered, descriptor %d; want %d, 1, %d",
				round, refused, buffered, f.syncFd, want, syncRefused)
		}
		checkHost(t, h, m)
	}
	if err := f.Errs.Check(&cursor); err != nil {
		t.Fatalf("Errs.Check = %v, want nil", err)
	}
	if n := len(nonClean(f)); n != 0 {
		t.Fatalf("%d pages not clean", n)
	}
	checkInvariants(t, c, true, f)
}

// TestWidenedLostWrites: a failed fsync may leave anything where the
// writes since the last good one landed (Linux drops the pages). Clean
// bytes written along with dirty ones — to join two runs (MergeGap), or
// to widen a run to whole pages for O_DIRECT — are among them; the cache
// must write them again, even when the rewrite is buffered and writes
// only dirty bytes, so that after healing the host equals the model.
func TestWidenedLostWrites(t *testing.T) {
	tests := []struct {
		name      string
		opts      Options
		spans     []span
		wantWrite [2]int64 // the one write of the failed writeback
	}{
		{"joined across a clean page", Options{MergeGap: PageSize},
			pagesSpans(4, 6), [2]int64{4 * PageSize, 7 * PageSize}},
		{"widened to a whole page for O_DIRECT", Options{DirectWriteback: 1 << 30},
			[]span{{4*PageSize + 100, 100}}, [2]int64{4 * PageSize, 5 * PageSize}},
		{"widened and joined", Options{DirectWriteback: 1 << 30, MergeGap: 2 * PageSize},
			[]span{{4*PageSize + 100, 100}, {6*PageSize + 5, 10}}, [2]int64{4 * PageSize, 7 * PageSize}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := pattern(93, 16*PageSize)
			h := newHostFile(t, data, false)
			inj := fault.New()
			inj.Add(fault.Rule{Name: "fsync fails", Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EIO},
				When: fault.And(fault.Syncs(), fault.Nth(1))})
			rb := &recBackend{Backend: openBackend(t, uring.BackendUring, inj)}
			var written [][2]int64
			garbage := bytes.Repeat([]byte{0xDB}, 16*PageSize)
			rb.setBefore(func(reqs []uring.Request) {
				for i := range reqs {
					switch r := &reqs[i]; {
					case r.Op.IsWrite():
						written = append(written, [2]int64{r.Off, r.Off + bufBytes(r)})
					case r.Op == uring.OpFsync && inj.Fired() == 0:
						for _, w := range written { // what the failing fsync loses
							if _, err := h.fh.WriteAt(garbage[:w[1]-w[0]], w[0]); err != nil {
								t.Error(err)
							}
						}
					}
				}
			})
			opts := tt.opts
			opts.Capacity, opts.Readahead = 64*PageSize, PageSize
			c := newCache(t, rb, opts)
			f := openFile(t, c, h, int64(len(data)))
			m := &model{data: append([]byte(nil), data...)}
			mustRead(t, f, m, 0, len(data))
			for i, s := range tt.spans {
				mustWrite(t, f, m, pattern(uint64(i+1), int(s.n)), s.off)
			}
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); !errors.Is(err, syscall.EIO) {
				t.Fatalf("Writeback = %v, want EIO from the fsync", err)
			}
			if len(written) != 1 || written[0] != tt.wantWrite {
				t.Fatalf("writes %v, want one write of %v", written, tt.wantWrite)
			}
			inj.Heal()
			// A buffered rewrite (no fsync) writes only dirty bytes: the
			// joined and widened ones must be among them.
			if err := f.Writeback(Range{0, 1 << 40}, SyncNone); err != nil {
				t.Fatal(err)
			}
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
				t.Fatal(err)
			}
			checkHost(t, h, m)
			mustRead(t, f, m, 0, len(data))
			checkInvariants(t, c, true, f)
		})
	}
}
