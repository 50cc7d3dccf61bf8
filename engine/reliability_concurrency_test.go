//go:build linux

package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/pagecache"
	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/crash"
)

// Concurrency (TESTPLAN K1–K7), run under -race. K1, K3 and K7 run the
// helpers of concurrency_test.go and writeback_test.go; K2, K4, K5 and K6
// are here. Every row checks what its goroutines observed against what
// they could legitimately observe, counts the violations (a row with any
// fails), and ends with the leak check (goroutines, descriptors, rings,
// mappings back to where they were).

func init() {
	addRow("K1", "64 goroutines, mixed operations on disjoint ranges, each checking its own data", rowK1)
	addRow("K2", "overlapping writes and reads: every page (word, where the host serves reads) read is a state some order of the writes gives", rowK2)
	addRow("K3", "Close racing hundreds of calls in flight; new files reusing the descriptors stay untouched", rowK3)
	addRow("K4", "Truncate racing writeback (Sync, eviction), writes and reads: zeros past EOF, nothing resurrected", rowK4)
	addRow("K5", "eviction under pressure (16–64 page caches, GC at 1%, forced GCs), fsyncs failing and losing unsynced writes", rowK5)
	addRow("K6", "readahead never reads past the configured cap (≤ 64 KiB) beyond the request's last page, seen at the host", rowK6)
	addRow("K7", "Engine.Close with dirty data and racing I/O: flushed or error reported, back to the baseline", rowK7)
}

// kWatchdog turns a hang of a row into a failure with every stack.
func kWatchdog(row string) (stop func()) {
	return watchdog(3*time.Minute*time.Duration(soakFactor()), func() string { return "row " + row })
}

func rowK1(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	defer kWatchdog("K1")()
	disjointGoroutines(t, fig)
}

func rowK3(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	defer kWatchdog("K3")()
	closeRacingIO(t, fig)
}

func rowK7(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	defer kWatchdog("K7")()
	t.Run("racing", func(t *testing.T) { engineCloseRacingIO(t, fig) })
	t.Run("dirty", func(t *testing.T) { engineCloseFlushes(t, fig) })
}

// ---- K2: overlapping ranges ----

// Every 8-byte word a K2 write puts in the file names the write (its tag)
// and its own place (page and word), so a read can tell, word by word,
// which write it sees. Tag 0 is the file's initial content.

const k2Salt = 0x6a09e667f3bcc908

// k2Word is the word write tag puts at file offset o (a multiple of 8).
func k2Word(tag uint64, o int64) uint64 {
	return (tag<<24 | uint64(o>>12&0xfff)<<12 | uint64(o&4095)>>3) ^ k2Salt
}

// k2Tag decodes the word found at o; ok is false for a word no write
// could have put there whole (a torn one, or foreign bytes).
func k2Tag(w uint64, o int64) (tag uint64, ok bool) {
	v := w ^ k2Salt
	if v&0xfff != uint64(o&4095)>>3 || v>>12&0xfff != uint64(o>>12&0xfff) {
		return 0, false
	}
	return v >> 24, true
}

// k2Put fills p, which lands at file offset off, with write tag's words.
func k2Put(p []byte, off int64, tag uint64) {
	for i := 0; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], k2Word(tag, off+int64(i)))
	}
}

// k2Write is one write: its tag, its bytes [off, end) and the clock
// readings before it was called (t0) and after it returned (t1).
type k2Write struct {
	tag      uint64
	off, end int64
	t0, t1   uint64
}

// k2Run is a run of words [a, b) of one page that a read found written
// by one write.
type k2Run struct {
	page   int64
	a, b   int64
	tag    uint64
	read   uint64 // which read
	r0, r1 uint64 // the read's clock readings
}

// k2Torn is a word that no single write put there.
type k2Torn struct {
	off    int64
	val    uint64
	r0, r1 uint64
}

// kConfig is an engine configuration of rows K2 and K4. disk: the file
// must be on a filesystem with O_DIRECT.
type kConfig struct {
	name string
	opts Options
	disk bool
}

var kConfigs = []kConfig{
	{"exclusive", Options{Mode: Exclusive, CacheSize: 4 << 20}, false},
	{"exclusive/tiny/ra=4KiB", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}, false},
	{"exclusive/tiny/psync", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: "psync"}, false},
	{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}, false},
	{"directio/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, DirectIO: true}, true},
	{"shared", Options{Mode: Shared}, false},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}, false},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}, false},
}

// atomic: every write is applied to each page at once with respect to
// reads (the page cache serializes them); otherwise reads are served by
// the host kernel or a shared mapping, which promise no more than
// aligned words.
func (c kConfig) atomic() bool {
	return c.opts.Mode != Shared && c.opts.CacheSize >= 0 && !c.opts.HostMmap
}

// noise: K4 adds goroutines reading and writing other files of the same
// tiny cache, so that eviction writes the file's dirty pages back while
// it is truncated.
func (c kConfig) noise() bool { return c.opts.CacheSize == fsxTinyCache }

// k2State is one K2 run: a file of k2Pages pages, goroutines writing and
// reading overlapping ranges through several handles and batches.
type k2State struct {
	cfg        kConfig
	wholePages bool // writes cover whole pages only
	seed       uint64
	e          *Engine
	rw         [2]*File
	ro         *File
	clock      atomic.Uint64
	nextTag    atomic.Uint64
	nextRead   atomic.Uint64

	mu sync.Mutex
	// Logs merged from the goroutines. +checklocks:mu
	writes []k2Write
	runs   []k2Run
	torn   []k2Torn
	// violations describes what went wrong at once (short reads, errors,
	// split pages). +checklocks:mu
	violations []string
	reads      int64
}

const k2Pages = 40

func (s *k2State) violate(format string, args ...any) {
	s.mu.Lock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

// decode splits what a read of p at off (both multiples of 8) returned
// into runs of one write per page, and torn words.
func (s *k2State) decode(p []byte, off int64, r0, r1 uint64, runs []k2Run, torn []k2Torn) ([]k2Run, []k2Torn) {
	read := s.nextRead.Add(1)
	for i := 0; i+8 <= len(p); i += 8 {
		o := off + int64(i)
		w := binary.LittleEndian.Uint64(p[i:])
		tag, ok := k2Tag(w, o)
		if !ok {
			torn = append(torn, k2Torn{off: o, val: w, r0: r0, r1: r1})
			continue
		}
		page := o >> 12
		if n := len(runs); n > 0 && runs[n-1].read == read && runs[n-1].tag == tag && runs[n-1].page == page && runs[n-1].b == o {
			runs[n-1].b = o + 8
			continue
		}
		runs = append(runs, k2Run{page: page, a: o, b: o + 8, tag: tag, read: read, r0: r0, r1: r1})
	}
	return runs, torn
}

// worker runs ops random operations of goroutine g.
func (s *k2State) worker(g, ops int) {
	rng := rand.New(rand.NewPCG(s.seed, uint64(g)))
	const size = k2Pages << 12
	var writes []k2Write
	var runs []k2Run
	var torn []k2Torn
	var reads int64
	genWrite := func() (int64, int) {
		if s.wholePages {
			p0 := rng.IntN(k2Pages)
			return int64(p0) << 12, (1 + rng.IntN(min(8, k2Pages-p0))) << 12
		}
		off := 8 * rng.Int64N(size/8)
		return off, 8 * (1 + rng.IntN(int(min(1536, (size-off)/8))))
	}
	genRead := func() (int64, int) {
		off := 8 * rng.Int64N(size/8)
		return off, 8 * (1 + rng.IntN(int(min(2048, (size-off)/8))))
	}
	for i := 0; i < ops; i++ {
		switch k := rng.IntN(20); {
		case k < 9:
			off, n := genWrite()
			tag := s.nextTag.Add(1)
			p := make([]byte, n)
			k2Put(p, off, tag)
			t0 := s.clock.Add(1)
			got, err := s.rw[rng.IntN(2)].WriteAt(p, off)
			t1 := s.clock.Add(1)
			if got != n || err != nil {
				s.violate("goroutine %d: WriteAt(%d at %d): %d, %v", g, n, off, got, err)
				return
			}
			writes = append(writes, k2Write{tag: tag, off: off, end: off + int64(n), t0: t0, t1: t1})
		case k < 18:
			off, n := genRead()
			h := s.rw[rng.IntN(2)]
			if k == 17 {
				h = s.ro
			}
			p := make([]byte, n)
			r0 := s.clock.Add(1)
			got, err := h.ReadAt(p, off)
			r1 := s.clock.Add(1)
			if got != n || err != nil {
				s.violate("goroutine %d: ReadAt(%d at %d) inside the file: %d, %v", g, n, off, got, err)
				return
			}
			runs, torn = s.decode(p, off, r0, r1, runs, torn)
			reads++
		case k < 19:
			// A batch of overlapping reads and writes: no order among
			// them, so each may see the others or not.
			ops := make([]Op, 2+rng.IntN(5))
			tags := make([]uint64, len(ops))
			for j := range ops {
				if rng.IntN(2) == 0 {
					off, n := genWrite()
					tags[j] = s.nextTag.Add(1)
					p := make([]byte, n)
					k2Put(p, off, tags[j])
					ops[j] = Op{File: s.rw[rng.IntN(2)], Write: true, Buf: p, Off: off}
				} else {
					off, n := genRead()
					ops[j] = Op{File: s.rw[rng.IntN(2)], Buf: make([]byte, n), Off: off}
				}
			}
			t0 := s.clock.Add(1)
			err := s.e.Submit(ops)
			t1 := s.clock.Add(1)
			if err != nil {
				s.violate("goroutine %d: Submit: %v", g, err)
				return
			}
			for j, op := range ops {
				if op.N != len(op.Buf) || op.Err != nil {
					s.violate("goroutine %d: batch op %d (write %v, %d at %d): %d, %v", g, j, op.Write, len(op.Buf), op.Off, op.N, op.Err)
					return
				}
				if op.Write {
					writes = append(writes, k2Write{tag: tags[j], off: op.Off, end: op.Off + int64(len(op.Buf)), t0: t0, t1: t1})
				} else {
					runs, torn = s.decode(op.Buf, op.Off, t0, t1, runs, torn)
					reads++
				}
			}
		default:
			if err := s.rw[rng.IntN(2)].Sync(); err != nil {
				s.violate("goroutine %d: Sync: %v", g, err)
				return
			}
		}
	}
	s.mu.Lock()
	s.writes = append(s.writes, writes...)
	s.runs = append(s.runs, runs...)
	s.torn = append(s.torn, torn...)
	s.reads += reads
	s.mu.Unlock()
}

// check verifies every observation against the writes and returns the
// violations (at most a few described).
func (s *k2State) check() (n int64, desc []string) {
	bad := func(format string, args ...any) {
		n++
		if len(desc) < 5 {
			desc = append(desc, fmt.Sprintf(format, args...))
		}
	}
	initial := &k2Write{tag: 0, off: 0, end: k2Pages << 12}
	byTag := map[uint64]*k2Write{0: initial}
	var perPage [k2Pages][]*k2Write
	for p := range perPage {
		perPage[p] = append(perPage[p], initial)
	}
	for i := range s.writes {
		w := &s.writes[i]
		byTag[w.tag] = w
		for p := w.off >> 12; p < (w.end+4095)>>12; p++ {
			perPage[p] = append(perPage[p], w)
		}
	}
	// Where a write reaches each page at once, a read that saw it there
	// proves it took effect on the page before that read returned.
	type pt struct {
		page int64
		tag  uint64
	}
	seen := map[pt]uint64{}
	if s.cfg.atomic() {
		for _, r := range s.runs {
			if v, ok := seen[pt{r.page, r.tag}]; !ok || r.r1 < v {
				seen[pt{r.page, r.tag}] = r.r1
			}
		}
	}
	// superseded reports a write of page that began after w returned and
	// took effect on [a, b) before the read began at r0.
	superseded := func(w *k2Write, page, a, b int64, r0 uint64) *k2Write {
		for _, w2 := range perPage[page] {
			if w2.t0 <= w.t1 || w2.off >= b || a >= w2.end {
				continue
			}
			done := w2.t1
			if v, ok := seen[pt{page, w2.tag}]; ok && v < done {
				done = v
			}
			if done < r0 {
				return w2
			}
		}
		return nil
	}
	for _, r := range s.runs {
		w := byTag[r.tag]
		switch {
		case w == nil:
			bad("page %d bytes [%d, %d): tag %d, which no write had", r.page, r.a, r.b, r.tag)
		case r.a < w.off || r.b > w.end:
			bad("page %d bytes [%d, %d): tag %d, whose write covered [%d, %d) only", r.page, r.a, r.b, r.tag, w.off, w.end)
		case w.t0 > r.r1:
			bad("page %d bytes [%d, %d): write %d, which began after the read returned", r.page, r.a, r.b, r.tag)
		default:
			if w2 := superseded(w, r.page, r.a, r.b, r.r0); w2 != nil {
				bad("page %d bytes [%d, %d): a read (clock %d–%d) returned write %d (clock %d–%d), older than write %d (clock %d–%d) of the same bytes, which took effect before the read began",
					r.page, r.a, r.b, r.r0, r.r1, w.tag, w.t0, w.t1, w2.tag, w2.t0, w2.t1)
			}
		}
	}
	for _, tw := range s.torn {
		page := tw.off >> 12
		if s.cfg.atomic() {
			bad("word at %d: %#x, which no single write put there, in a configuration whose pages change at once", tw.off, tw.val)
			continue
		}
		// A word torn by concurrent copies: each byte must come from a
		// write that could be seen there.
		for k := range 8 {
			ok := false
			for _, w := range perPage[page] {
				if w.off > tw.off || tw.off+8 > w.end || w.t0 > tw.r1 {
					continue
				}
				if byte(k2Word(w.tag, tw.off)>>(8*k)) == byte(tw.val>>(8*k)) && superseded(w, page, tw.off, tw.off+8, tw.r0) == nil {
					ok = true
					break
				}
			}
			if !ok {
				bad("word at %d: %#x: byte %d comes from no write that could be seen there", tw.off, tw.val, k)
				break
			}
		}
	}
	return n, desc
}

// rowK2: goroutines write and read overlapping ranges of one file (and
// submit batches of both), through two read-write handles and a
// read-only one. Each write fills its range with its own tag; every read
// is decoded word by word and checked: each run of a page comes whole
// from a write that covered those bytes (or the initial content), began
// before the read returned, and was not superseded by a later write of
// the same bytes that took effect before the read began. Where the cache
// applies each write to a page at once (the cached modes), a read of a
// page written by whole-page writes holds one write only, and a write a
// read has seen counts as done for later reads. Writes either cover
// whole pages or any 8-byte-aligned range. At the end the file (engine
// and host) must still decode cleanly.
func rowK2(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	defer kWatchdog("K2")()
	seed := fsxSeed(t)
	ops := 400 * soakFactor()
	if !raceEnabled {
		ops *= 4
	}
	const goroutines = 6
	var total, reads, runs, torn, violations int64
	for ci, cfg := range kConfigs {
		for _, whole := range []bool{true, false} {
			name := cfg.name + "/words"
			if whole {
				name = cfg.name + "/pages"
			}
			t.Run(name, func(t *testing.T) {
				dir := relDir(t)
				if cfg.disk {
					dir = t.TempDir()
				}
				s := &k2State{cfg: cfg, wholePages: whole, seed: seed + uint64(ci)<<1}
				if whole {
					s.seed |= 1
				}
				path := filepath.Join(dir, "k2")
				init := make([]byte, k2Pages<<12)
				k2Put(init, 0, 0)
				writeHost(t, path, init)
				s.e = newEngine(t, cfg.opts)
				s.rw[0] = openFile(t, s.e, path, os.O_RDWR)
				s.rw[1] = openFile(t, s.e, path, os.O_RDWR)
				s.ro = openFile(t, s.e, path, os.O_RDONLY)
				var wg sync.WaitGroup
				for g := range goroutines {
					wg.Add(1)
					go func() {
						defer wg.Done()
						s.worker(g, ops)
					}()
				}
				wg.Wait()
				// The final state: every word from some write, on the
				// engine and, after Sync, on the host.
				final := make([]byte, k2Pages<<12)
				if n, err := s.ro.ReadAt(final, 0); n != len(final) || err != nil {
					s.violate("final read: %d, %v", n, err)
				}
				if err := s.rw[0].Sync(); err != nil {
					s.violate("final Sync: %v", err)
				}
				if host := readHost(t, path); !bytes.Equal(host, final) {
					s.violate("after Sync the host differs from the engine at %d", diffAt(host, final))
				}
				end := s.clock.Add(1)
				s.runs, s.torn = s.decode(final, 0, end, end, s.runs, s.torn)
				n, desc := s.check()
				if cfg.atomic() && whole {
					// Whole-page writes applied at once: one write per page
					// of every read.
					for i := 1; i < len(s.runs); i++ {
						a, b := s.runs[i-1], s.runs[i]
						if a.read == b.read && a.page == b.page {
							n++
							if len(desc) < 5 {
								desc = append(desc, fmt.Sprintf("page %d read (clock %d–%d) holds writes %d and %d", a.page, a.r0, a.r1, a.tag, b.tag))
							}
						}
					}
				}
				n += int64(len(s.violations))
				desc = append(s.violations[:min(len(s.violations), 5)], desc...)
				total += int64(goroutines * ops)
				reads += s.reads
				runs += int64(len(s.runs))
				torn += int64(len(s.torn))
				violations += n
				if n > 0 {
					t.Fatalf("%s seed %d (RINGFS_FSX_SEED): %d violations:\n  %s", name, seed, n, strings.Join(desc, "\n  "))
				}
				t.Logf("%d goroutines, %d operations, %d writes, %d reads (%d page runs, %d torn words): every read a state some order of the writes gives",
					goroutines, goroutines*ops, len(s.writes), s.reads, len(s.runs), len(s.torn))
			})
		}
	}
	fig.Set("configs", int64(2*len(kConfigs)))
	fig.Set("ops", total)
	fig.Set("reads_checked", reads)
	fig.Set("page_runs_checked", runs)
	fig.Set("torn_words", torn)
	fig.Set("violations", violations)
}

// ---- K4: Truncate racing writeback and reads ----

// k4Round is what one round of K4 does while it races: truncate to s,
// then (kind) nothing, Truncate to ext, or a write of x at at.
type k4Round struct {
	old, s  int64
	kind    int // 0: stay at s; 1: Truncate(ext); 2: WriteAt(x, at)
	ext, at int64
	x       []byte
	model   []byte // the content before the truncate, [0, old)
	size    int64  // the size after the round
	phase   atomic.Int32
}

// final returns the content after the round.
func (r *k4Round) final() []byte {
	out := bytes.Clone(r.model[:r.s])
	switch r.kind {
	case 1:
		out = append(out, make([]byte, r.ext-r.s)...)
	case 2:
		out = append(out, make([]byte, r.at+int64(len(r.x))-r.s)...)
		copy(out[r.at:], r.x)
	}
	return out
}

// checkRead checks what a read of p at off returned (n bytes, err),
// started in phase ph0 and ended in phase ph1; it returns a description
// of the first violation, resurrected telling whether it was old bytes
// back past the truncated end.
func (r *k4Round) checkRead(p []byte, off int64, n int, err error, ph0, ph1 int32) (string, bool) {
	if err != nil && err != io.EOF {
		return fmt.Sprintf("ReadAt(%d at %d): %v", len(p), off, err), false
	}
	want := int64(len(p))
	if floor := r.s - off; int64(n) < min(want, max(floor, 0)) {
		return fmt.Sprintf("ReadAt(%d at %d) returned %d bytes, but the size never fell below %d", len(p), off, n, r.s), false
	}
	if ph0 == 2 || (ph0 >= 1 && r.kind == 0) {
		size := r.size
		if exact := max(min(want, size-off), 0); int64(n) != exact {
			return fmt.Sprintf("ReadAt(%d at %d) after the size became %d returned %d bytes, want %d", len(p), off, size, n, exact), false
		}
	}
	for i := 0; i < n; i++ {
		x := off + int64(i)
		c := p[i]
		if x < r.s {
			if c != r.model[x] {
				return fmt.Sprintf("byte %d (below the new size %d) read %#x, want %#x", x, r.s, c, r.model[x]), false
			}
			continue
		}
		if c == 0 {
			continue
		}
		if r.kind == 2 && ph1 >= 1 && x >= r.at && x < r.at+int64(len(r.x)) && c == r.x[x-r.at] {
			continue
		}
		if x < r.old && c == r.model[x] {
			if ph0 == 0 {
				continue
			}
			return fmt.Sprintf("byte %d read %#x, its value from before the truncate to %d that returned before the read began (old size %d)", x, c, r.s, r.old), true
		}
		return fmt.Sprintf("byte %d read %#x, a value never written there (truncate %d→%d, phases %d–%d)", x, c, r.old, r.s, ph0, ph1), false
	}
	return "", false
}

// rowK4: rounds of: goroutines write a file's content (some of it synced,
// some rewritten, so that clean, dirty and unsynced pages mix); then a
// goroutine truncates it to s (any alignment) and grows it again —
// by Truncate, by a write past s, or not at all — while another keeps
// calling Sync, Datasync and Engine.Sync, another rewrites bytes below s
// (the same bytes: pages stay dirty), two read and check every byte, and
// in tiny caches two more goroutines force eviction (writeback) with
// other files. Below s nothing changes; past s a read begun after the
// truncate returned sees zeros or the new write, never the old bytes;
// reads begun after the size settled return exactly up to it. After each
// round the engine and, after Sync, the host hold exactly the model.
func rowK4(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	defer kWatchdog("K4")()
	seed := fsxSeed(t)
	rounds := 20 * soakFactor()
	if !raceEnabled {
		rounds *= 2
	}
	var total, truncates, reads, syncs, rewrites, resurrected, violations, hostChecks int64
	for ci, cfg := range kConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			dir := relDir(t)
			if cfg.disk {
				dir = t.TempDir()
			}
			s := seed + uint64(ci)
			rng := rand.New(rand.NewPCG(s, 4))
			e := newEngine(t, cfg.opts)
			path := filepath.Join(dir, "k4")
			writeHost(t, path, nil)
			h := [2]*File{openFile(t, e, path, os.O_RDWR), openFile(t, e, path, os.O_RDWR)}
			var stopNoise func() error
			if cfg.noise() {
				stopNoise = evictionNoise(e, dir, s)
			}
			size := int64(0)
			for round := range rounds {
				r := &k4Round{old: 16<<10 + rng.Int64N(80<<10)}
				if size > r.old {
					if err := h[0].Truncate(r.old); err != nil {
						t.Fatalf("Truncate(%d): %v", r.old, err)
					}
				}
				// Set up: four goroutines write the content.
				r.model = make([]byte, r.old)
				var wg sync.WaitGroup
				var setupErr atomic.Pointer[error]
				chunk := (r.old + 3) / 4
				for g := range 4 {
					a, b := int64(g)*chunk, min(int64(g+1)*chunk, r.old)
					p := pattern(int(b-a), s, uint64(round)<<8|uint64(g))
					copy(r.model[a:], p)
					wg.Add(1)
					go func() {
						defer wg.Done()
						if n, err := h[g%2].WriteAt(p, a); n != len(p) || err != nil {
							err = fmt.Errorf("setup WriteAt(%d at %d): %d, %v", len(p), a, n, err)
							setupErr.CompareAndSwap(nil, &err)
						}
					}()
				}
				wg.Wait()
				if p := setupErr.Load(); p != nil {
					t.Fatal(*p)
				}
				if rng.IntN(2) == 0 {
					if err := h[0].Sync(); err != nil {
						t.Fatalf("setup Sync: %v", err)
					}
				}
				for i := range rng.IntN(4) {
					off := rng.Int64N(r.old)
					p := pattern(int(1+rng.Int64N(min(r.old-off, 9000))), s, uint64(round)<<8|uint64(16+i))
					if n, err := h[1].WriteAt(p, off); n != len(p) || err != nil {
						t.Fatalf("setup rewrite: %d, %v", n, err)
					}
					copy(r.model[off:], p)
				}
				r.s = rng.Int64N(r.old)
				if rng.IntN(3) == 0 {
					r.s &^= 4095
				}
				r.kind = rng.IntN(3)
				r.ext = r.s + 1 + rng.Int64N(r.old+8192-r.s)
				r.at = r.s + rng.Int64N(r.old+4096-r.s)
				if r.kind == 2 {
					r.x = pattern(1+rng.IntN(8192), s, uint64(round)<<8|0xff)
				}
				r.size = int64(len(r.final()))

				// The race.
				stop := make(chan struct{})
				var failed atomic.Pointer[string]
				var nReads, nSyncs, nRewrites, nResurrected atomic.Int64
				fail := func(msg string) { failed.CompareAndSwap(nil, &msg) }
				var bg sync.WaitGroup
				bg.Add(1)
				go func() { // writeback
					defer bg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						var err error
						switch i % 3 {
						case 0:
							err = h[i%2].Sync()
						case 1:
							err = h[i%2].Datasync()
						default:
							err = e.Sync()
						}
						if err != nil {
							fail(fmt.Sprintf("Sync racing Truncate: %v", err))
							return
						}
						nSyncs.Add(1)
					}
				}()
				bg.Add(1)
				go func() { // rewrites of the bytes below s, with their own values
					defer bg.Done()
					wr := rand.New(rand.NewPCG(s, uint64(round)<<8|1))
					for r.s > 0 {
						select {
						case <-stop:
							return
						default:
						}
						off := wr.Int64N(r.s)
						if wr.IntN(2) == 0 {
							off = max(r.s-1-wr.Int64N(min(r.s, 300)), 0) // the page of the new end
						}
						end := min(r.s, off+1+wr.Int64N(6000))
						if n, err := h[wr.IntN(2)].WriteAt(r.model[off:end], off); n != int(end-off) || err != nil {
							fail(fmt.Sprintf("rewrite below the new end (%d at %d): %d, %v", end-off, off, n, err))
							return
						}
						nRewrites.Add(1)
					}
				}()
				for g := range 2 {
					bg.Add(1)
					go func() { // readers
						defer bg.Done()
						rr := rand.New(rand.NewPCG(s, uint64(round)<<8|uint64(2+g)))
						for {
							select {
							case <-stop:
								return
							default:
							}
							off := rr.Int64N(r.old + 8192)
							if rr.IntN(2) == 0 && r.s > 0 {
								off = max(r.s-rr.Int64N(5000), 0) // across the new end
							}
							p := make([]byte, 1+rr.IntN(12000))
							ph0 := r.phase.Load()
							n, err := h[g].ReadAt(p, off)
							ph1 := r.phase.Load()
							nReads.Add(1)
							if msg, res := r.checkRead(p, off, n, err, ph0, ph1); msg != "" {
								if res {
									nResurrected.Add(1)
								}
								fail(msg)
								return
							}
						}
					}()
				}
				time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
				if err := h[rng.IntN(2)].Truncate(r.s); err != nil {
					t.Fatalf("Truncate(%d): %v", r.s, err)
				}
				r.phase.Store(1)
				switch r.kind {
				case 1:
					if err := h[rng.IntN(2)].Truncate(r.ext); err != nil {
						t.Fatalf("Truncate(%d) to grow: %v", r.ext, err)
					}
				case 2:
					if n, err := h[rng.IntN(2)].WriteAt(r.x, r.at); n != len(r.x) || err != nil {
						t.Fatalf("WriteAt(%d at %d) past the new end: %d, %v", len(r.x), r.at, n, err)
					}
				}
				r.phase.Store(2)
				time.Sleep(time.Millisecond)
				close(stop)
				bg.Wait()
				truncates++
				reads += nReads.Load()
				syncs += nSyncs.Load()
				rewrites += nRewrites.Load()
				resurrected += nResurrected.Load()
				if p := failed.Load(); p != nil {
					violations++
					t.Fatalf("%s seed %d (RINGFS_FSX_SEED) round %d (old size %d, truncate to %d, then kind %d ext %d at %d+%d): %s",
						cfg.name, s, round, r.old, r.s, r.kind, r.ext, r.at, len(r.x), *p)
				}

				// After the race: the engine, then the host after Sync.
				want := r.final()
				size = int64(len(want))
				if fi, err := h[0].Stat(); err != nil || fi.Size() != size {
					violations++
					t.Fatalf("round %d: Stat after the race: %v, %v; want size %d", round, fi, err, size)
				}
				got := make([]byte, size+100)
				n, err := h[1].ReadAt(got, 0)
				if err != io.EOF || !bytes.Equal(got[:n], want) {
					violations++
					t.Fatalf("%s seed %d round %d: the engine holds %d bytes (%v), want %d; first difference at %d",
						cfg.name, s, round, n, err, size, diffAt(got[:n], want))
				}
				if err := h[0].Sync(); err != nil {
					t.Fatalf("Sync after the race: %v", err)
				}
				if host := readHost(t, path); !bytes.Equal(host, want) {
					violations++
					i := diffAt(host, want)
					if i >= int(r.s) && i < int(r.old) && i < len(host) && host[i] == r.model[i] {
						resurrected++
					}
					t.Fatalf("%s seed %d round %d: after Sync the host holds %d bytes, want %d; first difference at %d (truncate %d→%d, kind %d)",
						cfg.name, s, round, len(host), size, i, r.old, r.s, r.kind)
				}
				hostChecks++
			}
			if stopNoise != nil {
				if err := stopNoise(); err != nil {
					t.Fatalf("eviction noise: %v", err)
				}
			}
			total += int64(rounds)
			t.Logf("%s seed %d: %d truncates raced with Sync and reads; nothing resurrected, zeros past the old end, host = model after every round", cfg.name, s, rounds)
		})
	}
	fig.Set("configs", int64(len(kConfigs)))
	fig.Set("rounds", total)
	fig.Set("truncates", truncates)
	fig.Set("ops", reads+syncs+rewrites+2*truncates)
	fig.Set("reads_checked", reads)
	fig.Set("syncs_racing", syncs)
	fig.Set("host_checks", hostChecks)
	fig.Set("resurrected", resurrected)
	fig.Set("violations", violations)
}

// ---- K5: eviction under pressure ----

// lossyHost is a backend whose fsyncs can fail the way Linux's do: the
// data written since the file's last good fsync is then lost on the host
// (overwritten with garbage here), the error is reported, and only a
// cache that kept those pages dirty can write them again. It loses only
// writes from the page cache's frames: writes from the test's own
// buffers (slabs) went to the host directly and are the caller's to
// retry.
type lossyHost struct {
	uring.Backend
	slabs [][]byte // the test's write buffers

	failing atomic.Bool
	fired   atomic.Int64 // fsyncs failed
	lost    atomic.Int64 // bytes overwritten at failed fsyncs

	mu sync.Mutex
	// since lists, per file, the frame writes since its last good
	// fsync. +checklocks:mu
	since map[crash.Key][][2]int64
	rng   *rand.Rand // +checklocks:mu
}

var _ uring.Doer = (*lossyHost)(nil)

func (h *lossyHost) inSlab(p []byte) bool {
	if len(p) == 0 {
		return false
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	for _, s := range h.slabs {
		b := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
		if a >= b && a < b+uintptr(len(s)) {
			return true
		}
	}
	return false
}

// Submit implements uring.Backend.
func (h *lossyHost) Submit(reqs []uring.Request) error {
	err := h.Backend.Submit(reqs)
	for i := range reqs {
		h.after(&reqs[i])
	}
	return err
}

// Do implements uring.Doer.
func (h *lossyHost) Do(r uring.Request) (int, error) {
	r.N, r.Err = uring.Do(h.Backend, r)
	h.after(&r)
	return r.N, r.Err
}

// after notes a completed request; a failing fsync loses the file's
// frame writes since its last good one and reports EIO.
func (h *lossyHost) after(r *uring.Request) {
	switch {
	case r.Op.IsWrite() && r.N > 0 && !(r.Op == uring.OpWrite && h.inSlab(r.Buf)):
		k, err := crash.KeyOf(int(r.Fd))
		if err != nil {
			return
		}
		h.mu.Lock()
		h.since[k] = append(h.since[k], [2]int64{r.Off, r.Off + int64(r.N)})
		h.mu.Unlock()
	case r.Op == uring.OpFsync && r.Err == nil:
		k, err := crash.KeyOf(int(r.Fd))
		if err != nil {
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		if !h.failing.Load() || h.rng.IntN(3) != 0 {
			delete(h.since, k)
			return
		}
		var st unix.Stat_t
		if unix.Fstat(int(r.Fd), &st) != nil {
			return
		}
		garbage := bytes.Repeat([]byte{0xDB}, 64<<10)
		for _, w := range h.since[k] {
			for off := w[0]; off < min(w[1], st.Size); {
				n := min(min(w[1], st.Size)-off, int64(len(garbage)))
				if m, err := unix.Pwrite(int(r.Fd), garbage[:n], off); err == nil {
					h.lost.Add(int64(m))
				}
				off += n
			}
		}
		delete(h.since, k)
		h.fired.Add(1)
		r.Err = syscall.EIO
	}
}

// canaries keeps heap buffers alive for a while, filled with a known
// pattern, and checks them before dropping them: a buffer the engine let
// go of while the kernel still wrote into it, reused by the runtime for a
// canary, would show up as a changed canary.
func canaries(stop chan struct{}, checked, corrupt *atomic.Int64) {
	rng := rand.New(rand.NewPCG(5, 5))
	live := make([][]byte, 64)
	check := func(b []byte) {
		if b == nil {
			return
		}
		if bytes.Count(b, []byte{byte(len(b))}) != len(b) {
			corrupt.Add(1)
		}
		checked.Add(int64(len(b)))
	}
	for i := 0; ; i++ {
		select {
		case <-stop:
			for _, b := range live {
				check(b)
			}
			return
		default:
		}
		j := i % len(live)
		check(live[j])
		n := 512 + rng.IntN(64<<10)
		b := make([]byte, n)
		for k := range b {
			b[k] = byte(n)
		}
		live[j] = b
		if i%16 == 0 {
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// rowK5: caches of 16, 32 and 64 pages (and 32 with O_DIRECT writeback)
// under four goroutines each
// writing and reading its own file of 48 pages (so every write and fill
// evicts), and one more scanning a read-only file, with the garbage
// collector at 1% and forced collections in a loop, and a canary
// goroutine checking heap buffers. The host is lossyHost: a third of the
// fsyncs fail and lose what the cache had written since the last good
// one, eviction's writeback included. Every read must match the
// goroutine's model throughout (a dirty page evicted before its data was
// durable, or written back only to be lost, would read the host's old
// bytes or garbage); after the faults stop, Sync must succeed within
// three tries and the host equal every model; no canary may change, and
// nothing may remain in flight.
func rowK5(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	defer kWatchdog("K5")()
	old := debug.SetGCPercent(1)
	defer debug.SetGCPercent(old)
	seed := fsxSeed(t)
	ops := 400 * soakFactor()
	if !raceEnabled {
		ops *= 4
	}
	stopGC := make(chan struct{})
	var gcWG sync.WaitGroup
	var gcs, canaryBytes, canaryBad atomic.Int64
	gcWG.Add(2)
	go func() {
		defer gcWG.Done()
		for {
			select {
			case <-stopGC:
				return
			default:
			}
			runtime.GC()
			gcs.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	go func() {
		defer gcWG.Done()
		canaries(stopGC, &canaryBytes, &canaryBad)
	}()
	stopped := false
	stopAll := func() {
		if !stopped {
			stopped = true
			close(stopGC)
			gcWG.Wait()
		}
	}
	defer stopAll()
	var total, fsyncFails, lost, evictions, evictDirty, evictErrs, syncErrs, bytesLost, violations int64
	cfgs := []struct {
		name string
		opts Options
	}{
		{"16 pages", Options{Mode: Exclusive, CacheSize: 16 << 12}},
		{"32 pages/psync", Options{Mode: Exclusive, CacheSize: 32 << 12, Backend: "psync"}},
		{"64 pages/ra=4KiB", Options{Mode: Exclusive, CacheSize: 64 << 12, Readahead: 4096}},
		{"32 pages/directio", Options{Mode: Exclusive, CacheSize: 32 << 12, DirectIO: true}},
	}
	for ci, cfg := range cfgs {
		t.Run(cfg.name, func(t *testing.T) {
			s := seed + uint64(ci)
			dir := relDir(t)
			if cfg.opts.DirectIO {
				dir = t.TempDir() // a disk filesystem: writeback goes through O_DIRECT in whole pages
			}
			const goroutines, fileSize = 4, 48 << 12
			slabs := make([][]byte, goroutines)
			for g := range slabs {
				slabs[g] = make([]byte, 16<<10)
			}
			lh := &lossyHost{slabs: slabs, since: map[crash.Key][][2]int64{}, rng: rand.New(rand.NewPCG(s, 55))}
			opts := cfg.opts
			opts.WrapBackend = func(b uring.Backend) uring.Backend { lh.Backend = b; return lh }
			e := newEngine(t, opts)
			scanPath := filepath.Join(dir, "scan")
			scanData := pattern(96<<10, s, 1<<40)
			writeHost(t, scanPath, scanData)
			paths := make([]string, goroutines)
			files := make([]*File, goroutines)
			models := make([][]byte, goroutines)
			for g := range goroutines {
				paths[g] = filepath.Join(dir, fmt.Sprintf("k5-%d", g))
				models[g] = pattern(fileSize, s, uint64(g)<<32)
				writeHost(t, paths[g], models[g])
				files[g] = openFile(t, e, paths[g], os.O_RDWR)
			}
			before := e.Stats().Cache
			lh.failing.Store(true)
			var wg sync.WaitGroup
			var failed atomic.Pointer[string]
			var nops, nSyncErrs atomic.Int64
			fail := func(msg string) { failed.CompareAndSwap(nil, &msg) }
			done := make(chan struct{})
			scanDone := make(chan struct{})
			go func() { // a reader scanning another file: more pressure
				defer close(scanDone)
				sf, err := e.Open(scanPath, os.O_RDONLY, 0)
				if err != nil {
					fail(err.Error())
					return
				}
				defer sf.Close()
				p := make([]byte, 12<<10)
				for off := int64(0); ; off = (off + int64(len(p))) % int64(len(scanData)) {
					select {
					case <-done:
						return
					default:
					}
					n, err := sf.ReadAt(p, off)
					if (err != nil && err != io.EOF) || !bytes.Equal(p[:n], scanData[off:off+int64(n)]) {
						fail(fmt.Sprintf("scan read at %d: %d, %v", off, n, err))
						return
					}
				}
			}()
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(s, uint64(g)))
					f, model, slab := files[g], models[g], slabs[g]
					for i := 0; i < ops && failed.Load() == nil; i++ {
						off := rng.Int64N(fileSize)
						n := 1 + rng.Int64N(min(fileSize-off, int64(len(slab))))
						if rng.IntN(3) == 0 { // whole pages: cached without a read
							off &^= 4095
							n = min((n+4095)&^4095, fileSize-off)
						}
						switch k := rng.IntN(10); {
						case k < 5:
							p := slab[:n]
							fillData(p, s, uint64(g)<<32|uint64(i+1))
							if w, err := f.WriteAt(p, off); w != len(p) || err != nil {
								fail(fmt.Sprintf("goroutine %d: WriteAt(%d at %d): %d, %v", g, n, off, w, err))
								return
							}
							copy(model[off:], p)
						case k < 9:
							p := make([]byte, n)
							got, err := f.ReadAt(p, off)
							if got != len(p) || err != nil || !bytes.Equal(p, model[off:off+n]) {
								fail(fmt.Sprintf("goroutine %d: ReadAt(%d at %d): %d, %v; differs from the model at %d", g, n, off, got, err, off+int64(diffAt(p[:got], model[off:off+n]))))
								return
							}
						default:
							if err := f.Sync(); err != nil {
								if !errors.Is(err, syscall.EIO) {
									fail(fmt.Sprintf("goroutine %d: Sync: %v", g, err))
									return
								}
								nSyncErrs.Add(1)
							}
						}
						nops.Add(1)
					}
				}()
			}
			wg.Wait()
			close(done)
			<-scanDone
			lh.failing.Store(false)
			if p := failed.Load(); p != nil {
				violations++
				t.Fatalf("%s seed %d (RINGFS_FSX_SEED): %s", cfg.name, s, *p)
			}
			// Healed: each file's next Sync may report a failure no Sync
			// has seen yet; one more must succeed and leave the host
			// equal to the model.
			for g, f := range files {
				var err error
				for range 3 {
					if err = f.Sync(); err == nil {
						break
					}
					if !errors.Is(err, syscall.EIO) {
						t.Fatalf("Sync after healing: %v", err)
					}
				}
				if err != nil {
					t.Fatalf("file %d: Sync still fails after healing: %v", g, err)
				}
				host := readHost(t, paths[g])
				if n := diffCount(host, models[g]); n > 0 {
					bytesLost += n
					violations++
					t.Fatalf("%s seed %d: file %d: after a good Sync the host differs from the model in %d bytes, from %d (host %#x): written-back data was dropped before it was durable",
						cfg.name, s, g, n, diffAt(host, models[g]), host[diffAt(host, models[g])])
				}
				if d := fileStats(t, e, paths[g]).DirtyBytes; d != 0 {
					t.Fatalf("file %d: %d dirty bytes after a good Sync", g, d)
				}
			}
			st := e.Stats()
			c := st.Cache.Sub(before)
			if st.Ring.Inflight != 0 {
				t.Fatalf("%d requests still in flight with every call returned", st.Ring.Inflight)
			}
			total += nops.Load()
			fsyncFails += lh.fired.Load()
			lost += lh.lost.Load()
			evictions += int64(c.Evictions)
			evictDirty += int64(c.EvictionsDirty)
			evictErrs += int64(c.EvictionWritebackErrors)
			syncErrs += nSyncErrs.Load()
			t.Logf("%s seed %d: %d operations; %d evictions (%d of dirty pages, %d with failed writeback); %d fsyncs failed, losing %d host bytes the cache wrote again; %d Syncs reported EIO; host = models",
				cfg.name, s, nops.Load(), c.Evictions, c.EvictionsDirty, c.EvictionWritebackErrors, lh.fired.Load(), lh.lost.Load(), nSyncErrs.Load())
		})
		if t.Failed() {
			break
		}
	}
	stopAll()
	if canaryBad.Load() > 0 {
		violations += canaryBad.Load()
		t.Fatalf("%d canary buffers changed while the kernel did I/O: a buffer was freed before its completion", canaryBad.Load())
	}
	if !t.Failed() && (evictDirty == 0 || fsyncFails == 0 || evictErrs == 0) {
		t.Fatalf("the row did not drive what it checks: %d dirty evictions, %d failed fsyncs, %d failed eviction writebacks", evictDirty, fsyncFails, evictErrs)
	}
	fig.Set("configs", int64(len(cfgs)))
	fig.Set("ops", total)
	fig.Set("evictions", evictions)
	fig.Set("evictions_dirty", evictDirty)
	fig.Set("eviction_writeback_errors", evictErrs)
	fig.Set("fsyncs_failed", fsyncFails)
	fig.Set("host_bytes_lost_and_rewritten", lost)
	fig.Set("sync_eio_reported", syncErrs)
	fig.Set("gc_cycles", gcs.Load())
	fig.Set("canary_bytes_checked", canaryBytes.Load())
	fig.Set("canaries_changed", canaryBad.Load())
	fig.Set("acked_bytes_lost", bytesLost)
	fig.Set("violations", violations)
}

// ---- K6: readahead bound ----

// readRecorder is a uring.Injector that injects nothing and records, by
// descriptor, the reads that reach the kernel.
type readRecorder struct {
	mu sync.Mutex
	// reads holds [off, end) of each read by descriptor. +checklocks:mu
	reads map[int32][][2]int64
}

func (r *readRecorder) Enter() syscall.Errno { return 0 }
func (r *readRecorder) Issue(q *uring.Request) (int32, bool) {
	if q.Op.IsRead() {
		n := int64(len(q.Buf))
		for _, v := range q.Vecs {
			n += int64(len(v))
		}
		r.mu.Lock()
		r.reads[q.Fd] = append(r.reads[q.Fd], [2]int64{q.Off, q.Off + n})
		r.mu.Unlock()
	}
	return 0, false
}
func (r *readRecorder) Complete(_ *uring.Request, res int32) int32 { return res }

// take returns and forgets the reads recorded on fds.
func (r *readRecorder) take(fds []int) [][2]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][2]int64
	for _, fd := range fds {
		out = append(out, r.reads[int32(fd)]...)
		delete(r.reads, int32(fd))
	}
	return out
}

// rowK6: for every readahead setting (0 = 64 KiB, 4 KiB, 5000 (rounded
// down to 4 KiB), 16 KiB, 64 KiB, 1 MiB (capped to 64 KiB)), cache sizes,
// backends and the uncached modes, eight goroutines read files of their
// own in different patterns (sequential in small, page, odd and large
// steps, backwards, strided, single bytes at the end of far apart pages,
// random, near the end, and batches of reads through Submit) while an injector records every read that reaches the
// kernel, by descriptor. Every host read made for a request [off, end)
// must lie within [off rounded down to a page, end rounded up to a page
// + the readahead cap): the configured one, which is at most 64 KiB (0
// where nothing is cached). The row also checks that the cap is
// reached, so that readahead was at work.
func rowK6(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	defer kWatchdog("K6")()
	seed := fsxSeed(t)
	reqs := 80 * soakFactor()
	if !raceEnabled {
		reqs *= 4
	}
	type k6Config struct {
		name string
		opts Options
		ra   int64 // the cap the row holds the engine to
		disk bool
	}
	const capRA = pagecache.MaxReadahead
	cfgs := []k6Config{
		{"ra=0", Options{Mode: Exclusive, CacheSize: 4 << 20}, capRA, false},
		{"ra=4KiB", Options{Mode: Exclusive, CacheSize: 4 << 20, Readahead: 4096}, 4096, false},
		{"ra=5000", Options{Mode: Exclusive, CacheSize: 4 << 20, Readahead: 5000}, 4096, false},
		{"ra=16KiB/psync", Options{Mode: Exclusive, CacheSize: 4 << 20, Readahead: 16 << 10, Backend: "psync"}, 16 << 10, false},
		{"ra=64KiB/writethrough", Options{Mode: Writethrough, CacheSize: 4 << 20, Readahead: 64 << 10}, capRA, false},
		{"ra=1MiB", Options{Mode: Exclusive, CacheSize: 4 << 20, Readahead: 1 << 20}, capRA, false},
		{"ra=64KiB/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache}, capRA, false},
		{"ra=64KiB/directio", Options{Mode: Exclusive, CacheSize: 4 << 20, DirectIO: true}, capRA, true},
		{"shared", Options{Mode: Shared}, 0, false},
		{"uncached", Options{Mode: Exclusive, CacheSize: -1}, 0, false},
	}
	patterns := []string{"seq100", "seq4k", "seq10000", "seq100k", "backward", "stride", "edge", "random", "batch"}
	var total, hostReads, raReads, violations int64
	for ci, cfg := range cfgs {
		t.Run(cfg.name, func(t *testing.T) {
			dir := relDir(t)
			if cfg.disk {
				dir = t.TempDir()
			}
			rec := &readRecorder{reads: map[int32][][2]int64{}}
			opts := cfg.opts
			opts.Injector = rec
			e := newEngine(t, opts)
			const fileSize = 640<<10 + 1234
			var wg sync.WaitGroup
			var failed atomic.Pointer[string]
			var nReqs, nHost, nRA, maxExcess atomic.Int64
			for pi, pat := range patterns {
				path := filepath.Join(dir, "k6-"+pat)
				data := pattern(fileSize, seed, uint64(pi))
				writeHost(t, path, data)
				f := openFile(t, e, path, os.O_RDONLY)
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed+uint64(ci), uint64(pi)))
					fds := heldFds(f)
					rec.take(fds) // nothing from before
					pos := int64(0)
					if pat == "backward" {
						pos = fileSize
					}
					for i := 0; i < reqs && failed.Load() == nil; i++ {
						var off, n int64
						switch pat {
						case "seq100":
							off, n = pos, 100
						case "seq4k":
							off, n = pos, 4096
						case "seq10000":
							off, n = pos, 10000
						case "seq100k":
							off, n = pos, 100<<10
						case "backward":
							n = 3000
							off = pos - n
							if off < 0 {
								off = fileSize - n
							}
						case "stride":
							off, n = pos, 1+rng.Int64N(5000)
						case "edge":
							// The last byte of a page far from any read
							// before: the window reaches furthest past the
							// request's page.
							off, n = int64(i)*96<<10+4095, 1
						case "random", "batch":
							off = rng.Int64N(fileSize + 4096)
							n = 1 + rng.Int64N(20000)
							if rng.IntN(4) == 0 {
								off = fileSize - rng.Int64N(5000) // near the end
							}
						}
						if off >= fileSize && pat != "random" && pat != "batch" {
							off = 0
						}
						var ranges [][2]int64
						if pat == "batch" {
							ops := make([]Op, 1+rng.IntN(6))
							for j := range ops {
								o := rng.Int64N(fileSize)
								ops[j] = Op{File: f, Buf: make([]byte, 1+rng.IntN(9000)), Off: o}
							}
							if err := e.Submit(ops); err != nil {
								failed.CompareAndSwap(nil, ptr(fmt.Sprintf("Submit: %v", err)))
								return
							}
							for _, op := range ops {
								end := op.Off + int64(len(op.Buf))
								want := min(end, fileSize) - op.Off
								if op.N != int(want) || !bytes.Equal(op.Buf[:op.N], data[op.Off:op.Off+int64(op.N)]) {
									failed.CompareAndSwap(nil, ptr(fmt.Sprintf("batch read %d at %d: %d, %v", len(op.Buf), op.Off, op.N, op.Err)))
									return
								}
								ranges = append(ranges, [2]int64{op.Off, end})
							}
						} else {
							p := make([]byte, n)
							got, err := f.ReadAt(p, off)
							want := max(min(off+n, fileSize)-off, 0)
							if int64(got) != want || (err != nil && err != io.EOF) || !bytes.Equal(p[:got], data[min(off, fileSize):min(off, fileSize)+int64(got)]) {
								failed.CompareAndSwap(nil, ptr(fmt.Sprintf("%s: ReadAt(%d at %d): %d, %v", pat, n, off, got, err)))
								return
							}
							ranges = append(ranges, [2]int64{off, off + n})
						}
						nReqs.Add(int64(len(ranges)))
						// Every host read must fit one of the requests'
						// windows (a batch's reads are not told apart).
						for _, hr := range rec.take(fds) {
							nHost.Add(1)
							ok := false
							excess := int64(-1)
							for _, rq := range ranges {
								lo, hi := rq[0]&^4095, (rq[1]+4095)&^4095
								if hr[0] >= lo && hr[1] <= hi+cfg.ra {
									ok = true
									excess = hr[1] - hi
									break
								}
							}
							if !ok {
								failed.CompareAndSwap(nil, ptr(fmt.Sprintf("%s: a host read of [%d, %d) for the request(s) %v: past the %d-byte readahead cap or before the first page",
									pat, hr[0], hr[1], ranges, cfg.ra)))
								return
							}
							if excess > 0 {
								nRA.Add(1)
							}
							for {
								m := maxExcess.Load()
								if excess <= m || maxExcess.CompareAndSwap(m, excess) {
									break
								}
							}
						}
						switch pat {
						case "backward":
							pos = off
						case "stride":
							pos = off + n + 128<<10
						default:
							pos = off + n
						}
					}
				}()
			}
			wg.Wait()
			total += nReqs.Load()
			hostReads += nHost.Load()
			raReads += nRA.Load()
			if p := failed.Load(); p != nil {
				violations++
				t.Fatalf("%s seed %d (RINGFS_FSX_SEED): %s", cfg.name, seed, *p)
			}
			// A 1-byte read of a page's last byte reads ahead the whole
			// cap (a tiny cache has fewer frames than the window).
			if cfg.ra > 0 && cfg.name != "ra=64KiB/tiny" && maxExcess.Load() != cfg.ra {
				t.Fatalf("%s: the furthest read went %d bytes past the request's last page; the readahead cap is %d", cfg.name, maxExcess.Load(), cfg.ra)
			}
			if cfg.ra == 0 && nRA.Load() > 0 {
				t.Fatalf("%s: %d host reads past the request's pages without a cache", cfg.name, nRA.Load())
			}
			t.Logf("%s: %d requests, %d host reads (%d reading ahead, the furthest %d bytes past the request's last page; cap %d)",
				cfg.name, nReqs.Load(), nHost.Load(), nRA.Load(), maxExcess.Load(), cfg.ra)
		})
	}
	fig.Set("configs", int64(len(cfgs)))
	fig.Set("ops", total)
	fig.Set("host_reads_checked", hostReads)
	fig.Set("readahead_reads", raReads)
	fig.Set("violations", violations)
}

func ptr[T any](v T) *T { return &v }

// diffCount returns how many bytes of a and b differ (bytes past the
// shorter one's end count).
func diffCount(a, b []byte) int64 {
	n := int64(max(len(a), len(b)) - min(len(a), len(b)))
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}
