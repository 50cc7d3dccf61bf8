//go:build linux

package pagecache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringfs/ringfs/uring"
)

// TestReadersWithWriter runs many readers of one half of a file while a
// writer rewrites the other half and writes it back; the cache is smaller
// than the file so pages come and go. Every read of the stable half
// matches, and the writer's own reads of its half match its model.
func TestReadersWithWriter(t *testing.T) {
	const (
		pages   = 256
		readers = 8
	)
	ops := 400
	if soak() {
		ops = 20000
	}
	seed := testSeed(t)
	data := pattern(seed, pages*PageSize)
	h := newHostFile(t, data, false)
	c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 96 * PageSize})
	f := openFile(t, c, h, pages*PageSize)
	m := &model{data: append([]byte(nil), data...)}
	var wg sync.WaitGroup
	var reads atomic.Int64
	done := make(chan struct{})
	for g := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(g)))
			p := make([]byte, 4*PageSize)
			for {
				select {
				case <-done:
					return
				default:
				}
				off := r.Int64N(pages / 2 * PageSize)
				n := 1 + r.Int64N(min(4*PageSize, pages/2*PageSize-off))
				got, err := f.ReadAt(p[:n], off)
				if err != nil || got != int(n) || !bytes.Equal(p[:n], data[off:off+n]) {
					t.Errorf("reader %d: ReadAt(%d, %d) = %d, %v; differs at %d", g, off, n, got, err, firstDiff(p[:got], data[off:off+n]))
					return
				}
				reads.Add(1)
			}
		}()
	}
	r := rand.New(rand.NewPCG(seed, 99))
	log := &opLog{seed: seed}
	stopped := false
	stopReaders := func() {
		if !stopped {
			stopped = true
			close(done)
			wg.Wait()
		}
	}
	defer stopReaders() // also when the writer fails: no reader outlives the test
	defer func() {
		if t.Failed() {
			t.Log(log.dump(40))
		}
	}()
	for i := 0; i < ops && !t.Failed(); i++ {
		off := pages/2*PageSize + r.Int64N(pages/2*PageSize-PageSize)
		n := 1 + r.Int64N(min(3*PageSize, pages*PageSize-off))
		switch r.IntN(4) {
		case 0, 1:
			log.add("write", off, n, pages*PageSize)
			mustWrite(t, f, m, pattern(r.Uint64(), int(n)), off)
		case 2:
			log.add("read", off, n, pages*PageSize)
			mustRead(t, f, m, off, int(n))
		case 3:
			log.add("writeback", pages/2*PageSize, pages/2*PageSize, pages*PageSize)
			if err := f.Writeback(Range{pages / 2 * PageSize, pages * PageSize}, SyncNone); err != nil {
				t.Error(err)
			}
		}
	}
	stopReaders()
	if t.Failed() {
		t.FailNow()
	}
	checkInvariants(t, c, true, f)
	if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
		t.Fatal(err)
	}
	checkHost(t, h, m)
	t.Logf("seed %d: %d reader goroutines did %d reads alongside %d writer ops; mismatches 0", seed, readers, reads.Load(), ops)
}

// pageImage is the content the writer gives page p at generation g: the
// 8-byte word p<<32|g repeated.
func pageImage(p int64, g uint32) []byte {
	b := make([]byte, PageSize)
	for i := 0; i < PageSize; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], uint64(p)<<32|uint64(g))
	}
	return b
}

// decodePage returns the generation a page holds and whether it is a
// whole, untorn image of page p.
func decodePage(b []byte, p int64) (uint32, bool) {
	w := binary.LittleEndian.Uint64(b)
	if int64(w>>32) != p {
		return 0, false
	}
	for i := 8; i < len(b); i += 8 {
		if binary.LittleEndian.Uint64(b[i:]) != w {
			return 0, false
		}
	}
	return uint32(w), true
}

// TestWriteFillAtomicPerPage has writers rewrite whole pages (each page an
// image of its generation) while readers read multi-page ranges, through a
// cache small enough that pages are evicted and refilled from the host
// while being written (or read around it, with no lock, while it is
// full), and writeback runs concurrently. The writes go to the cache, or
// with Through to the host first, so that reads of the host race writes
// of it. Readers must only ever see whole images, and per page never an
// older generation than one they saw before (K2 per page).
func TestWriteFillAtomicPerPage(t *testing.T) {
	const (
		pages   = 64
		readers = 4
	)
	writes := 1500
	if soak() {
		writes = 50000
	}
	for _, tc := range []struct {
		backend string
		fl      WriteFlags
	}{{uring.BackendUring, 0}, {uring.BackendPsync, 0}, {uring.BackendUring, Through}, {uring.BackendPsync, Through}} {
		backend := tc.backend
		t.Run(fmt.Sprintf("%s/through=%v", backend, tc.fl == Through), func(t *testing.T) {
			seed := testSeed(t)
			var initial []byte
			for p := range int64(pages) {
				initial = append(initial, pageImage(p, 0)...)
			}
			h := newHostFile(t, initial, false)
			c := newCache(t, openBackend(t, backend, nil), Options{Capacity: 24 * PageSize})
			f := openFile(t, c, h, pages*PageSize)
			var gens [pages]atomic.Uint32 // latest generation written per page
			var wg sync.WaitGroup
			var stop atomic.Bool
			var seen atomic.Int64
			for g := range readers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(seed, uint64(g)+100))
					var last [pages]uint32
					p := make([]byte, 6*PageSize)
					for !stop.Load() {
						first := r.Int64N(pages)
						n := min(1+r.Int64N(6), pages-first)
						got, err := f.ReadAt(p[:n*PageSize], first*PageSize)
						if err != nil || got != int(n*PageSize) {
							t.Errorf("reader %d: ReadAt = %d, %v", g, got, err)
							return
						}
						for k := range n {
							pg := first + k
							gen, ok := decodePage(p[k*PageSize:(k+1)*PageSize], pg)
							if !ok {
								t.Errorf("reader %d: page %d torn or foreign", g, pg)
								return
							}
							if gen < last[pg] || gen > gens[pg].Load() {
								t.Errorf("reader %d: page %d at generation %d after %d (latest written %d)", g, pg, gen, last[pg], gens[pg].Load())
								return
							}
							last[pg] = gen
							seen.Add(1)
						}
					}
				}()
			}
			wg.Add(1)
			go func() { // writeback alongside
				defer wg.Done()
				for !stop.Load() {
					if err := f.Writeback(Range{0, pages * PageSize}, SyncNone); err != nil {
						t.Errorf("Writeback: %v", err)
						return
					}
				}
			}()
			r := rand.New(rand.NewPCG(seed, 7))
			for i := 0; i < writes && !t.Failed(); i++ {
				first := r.Int64N(pages)
				n := min(1+r.Int64N(3), pages-first)
				var b []byte
				for k := range n {
					b = append(b, pageImage(first+k, gens[first+k].Load()+1)...)
				}
				// Publish the new generations before the write: a reader may
				// see them as soon as the write lands.
				for k := range n {
					gens[first+k].Add(1)
				}
				if w, _, err := f.WriteAt(b, first*PageSize, tc.fl); err != nil || w != len(b) {
					t.Errorf("WriteAt = %d, %v", w, err)
				}
			}
			stop.Store(true)
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			checkInvariants(t, c, true, f)
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
				t.Fatal(err)
			}
			host := h.bytes(t)
			for p := range int64(pages) {
				if g, ok := decodePage(host[p*PageSize:(p+1)*PageSize], p); !ok || g != gens[p].Load() {
					t.Fatalf("host page %d: generation %d (whole %v), want %d", p, g, ok, gens[p].Load())
				}
			}
			t.Logf("seed %d: %d page writes, %d page reads by %d readers: torn 0, went back in time 0; evictions %d, reads around with no lock %d, fills with no lock %d (%d not indexed)",
				seed, writes, seen.Load(), readers, c.Stats().Evictions, c.st.aroundUnlocked.Load(), c.st.fillsUnlocked.Load(), c.st.fillsNotIndexed.Load())
		})
	}
}

// TestMissEvictNoAlloc: a ReadAt that misses, fills one page and evicts
// a clean page to make room allocates nothing either. The reads go
// through the file in order, so that the full cache admits every miss
// (a random one would be read around it).
func TestMissEvictNoAlloc(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops sync.Pool entries at random")
	}
	const pages = 256
	data := pattern(142, pages*PageSize)
	h := newHostFile(t, data, false)
	c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 16 * PageSize, Readahead: PageSize})
	f := openFile(t, c, h, int64(len(data)))
	p := make([]byte, PageSize)
	page := int64(0)
	read := func() {
		if _, err := f.ReadAt(p, page*PageSize); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(p, data[page*PageSize:(page+1)*PageSize]) {
			t.Fatalf("page %d: wrong bytes", page)
		}
		page = (page + 1) % pages
	}
	for range 2 * pages {
		read() // fill the cache and warm the pools
	}
	before := c.Stats()
	allocs := testing.AllocsPerRun(1000, read)
	st := c.Stats().Sub(before)
	if st.Hits != 0 || st.Misses == 0 || st.Evictions == 0 {
		t.Fatalf("not all misses that evict: %+v", st)
	}
	if allocs != 0 {
		t.Fatalf("%v allocations per ReadAt that misses and evicts, want 0", allocs)
	}
	t.Logf("ReadAt missing and evicting: %v allocs/op (%d misses, %d evictions)", allocs, st.Misses, st.Evictions)
}

// TestHitNoAlloc: a ReadAt served from the cache allocates nothing.
func TestHitNoAlloc(t *testing.T) {
	for _, n := range []int{1, 100, PageSize, 3 * PageSize} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := pattern(140, 16*PageSize)
			h := newHostFile(t, data, false)
			c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 64 * PageSize})
			f := openFile(t, c, h, int64(len(data)))
			p := make([]byte, n)
			off := int64(PageSize + 17)
			if _, err := f.ReadAt(p, off); err != nil {
				t.Fatal(err)
			}
			before := c.Stats()
			allocs := testing.AllocsPerRun(1000, func() {
				if _, err := f.ReadAt(p, off); err != nil {
					t.Fatal(err)
				}
			})
			if st := c.Stats().Sub(before); st.Misses != 0 || st.Hits == 0 {
				t.Fatalf("not all hits: %+v", st)
			}
			if allocs != 0 {
				t.Fatalf("%v allocations per cached ReadAt of %d bytes, want 0", allocs, n)
			}
			t.Logf("cached ReadAt of %d bytes: %v allocs/op", n, allocs)
		})
	}
}
