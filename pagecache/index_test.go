//go:build linux

package pagecache

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ringfs/ringfs/uring"
)

// TestPageIndex compares the radix index with a map through random
// inserts, removals, lookups and ordered range walks, in the dense part
// (files under 128 GiB) and the sparse part beyond it.
func TestPageIndex(t *testing.T) {
	seed := testSeed(t)
	r := rand.New(rand.NewPCG(seed, 6))
	var x pageIndex
	model := map[int64]int32{}
	sparseBase := int64(denseLeaves) << leafShift
	randPage := func() int64 {
		switch r.IntN(4) {
		case 0:
			return r.Int64N(2 * leafPages) // first leaves
		case 1:
			return sparseBase - leafPages + r.Int64N(2*leafPages) // across the dense/sparse edge
		case 2:
			return sparseBase*int64(1+r.IntN(1000)) + r.Int64N(leafPages) // far sparse
		}
		return r.Int64N(sparseBase) // anywhere dense
	}
	var keys []int64
	for i := range 20000 {
		switch k := r.IntN(20); {
		case k < 8:
			p := randPage()
			if _, ok := model[p]; ok {
				continue
			}
			fr := int32(r.IntN(1 << 20))
			x.set(p, fr)
			model[p] = fr
			keys = append(keys, p)
		case k < 14 && len(keys) > 0:
			j := r.IntN(len(keys))
			p := keys[j]
			keys[j] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
			if got := x.remove(p); got != model[p] {
				t.Fatalf("seed %d step %d: remove(%d) = %d, want %d", seed, i, p, got, model[p])
			}
			delete(model, p)
		case k < 19:
			p := randPage()
			want, ok := model[p]
			if !ok {
				want = -1
			}
			if got := x.get(p); got != want {
				t.Fatalf("seed %d step %d: get(%d) = %d, want %d", seed, i, p, got, want)
			}
		default:
			from := randPage()
			to := from + r.Int64N(4*sparseBase)
			var got, want []int64
			x.each(from, to, func(p int64, fr int32) {
				if model[p] != fr {
					t.Fatalf("each: page %d frame %d, want %d", p, fr, model[p])
				}
				got = append(got, p)
			})
			for p := range model {
				if p >= from && p < to {
					want = append(want, p)
				}
			}
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d step %d: each(%d, %d) visited %d pages, want %d (in order)", seed, i, from, to, len(got), len(want))
			}
		}
		if x.pages != len(model) {
			t.Fatalf("seed %d step %d: %d pages counted, %d present", seed, i, x.pages, len(model))
		}
	}
	// Removing everything inside each frees every leaf.
	x.each(0, 1<<62, func(p int64, _ int32) { x.remove(p) })
	leaves := 0
	for i := range x.table() {
		if x.table()[i].Load() != nil {
			leaves++
		}
	}
	if x.pages != 0 || len(x.sparse) != 0 || leaves != 0 {
		t.Fatalf("seed %d: after removing all: %d pages, %d sparse leaves", seed, x.pages, len(x.sparse))
	}
	t.Logf("seed %d: 20000 index operations over dense and sparse pages agree with a map; all leaves freed", seed)
}

// TestPageIndexUnlockedReads: getUnlocked, called with no lock while one
// writer inserts and removes pages (growing the dense table from empty
// and freeing leaves), only ever returns -1 or a frame the page has had.
// Each page only ever gets frames 2*page and 2*page+1. Under -race this
// also checks that nothing the unlocked reader touches is written
// without atomics.
func TestPageIndexUnlockedReads(t *testing.T) {
	const pages = 64 * leafPages
	var x pageIndex
	var stop atomic.Bool
	var wg sync.WaitGroup
	var seen atomic.Int64
	for g := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 8))
			for !stop.Load() {
				p := r.Int64N(pages)
				if fr := x.getUnlocked(p); fr != -1 {
					if int64(fr)/2 != p {
						t.Errorf("getUnlocked(%d) = %d, a frame the page never had", p, fr)
						return
					}
					seen.Add(1)
				}
			}
		})
	}
	r := rand.New(rand.NewPCG(testSeed(t), 9))
	present := map[int64]bool{}
	for range 200000 {
		// Grow from the low leaves up, so the table is replaced while
		// the readers use it.
		p := r.Int64N(1 + int64(len(present))*8%pages)
		if present[p] {
			x.remove(p)
			delete(present, p)
		} else {
			x.set(p, int32(2*p+r.Int64N(2)))
			present[p] = true
		}
	}
	stop.Store(true)
	wg.Wait()
	if x.pages != len(present) {
		t.Fatalf("%d pages counted, %d present", x.pages, len(present))
	}
	t.Logf("readers saw %d present pages while the writer made 200000 changes", seen.Load())
}

// TestFarOffsets caches, writes back and reads pages past 128 GiB (the
// sparse part of the index) and right at the dense/sparse boundary.
func TestFarOffsets(t *testing.T) {
	edge := int64(denseLeaves) << leafShift * PageSize // 128 GiB
	// Disjoint writes; the first spans the edge.
	offsets := []int64{edge - PageSize - 10, edge + 4*PageSize - 3, edge + 9*PageSize, 1 << 40, 3<<40 + 12345}
	h := newHostFile(t, nil, false)
	c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 64 * PageSize})
	f := openFile(t, c, h, 0)
	m := map[int64][]byte{}
	for i, off := range offsets {
		p := pattern(uint64(180+i), 2*PageSize+77)
		if n, _, err := f.WriteAt(p, off, 0); err != nil || n != len(p) {
			t.Fatalf("WriteAt(%d) = %d, %v", off, n, err)
		}
		m[off] = p
	}
	check := func(when string) {
		t.Helper()
		for off, want := range m {
			p := make([]byte, len(want))
			if n, err := f.ReadAt(p, off); err != nil || n != len(p) || string(p) != string(want) {
				t.Fatalf("%s: ReadAt(%d) = %d, %v; mismatch at %d", when, off, n, err, firstDiff(p, want))
			}
		}
	}
	check("cached")
	if err := f.Writeback(Range{0, 1 << 62}, SyncFull); err != nil {
		t.Fatal(err)
	}
	if f.DirtyBytes() != 0 {
		t.Fatalf("%d bytes dirty after writeback", f.DirtyBytes())
	}
	for off, want := range m {
		p := make([]byte, len(want))
		if _, err := h.fh.ReadAt(p, off); err != nil || string(p) != string(want) {
			t.Fatalf("host at %d differs: %v", off, err)
		}
	}
	if err := f.Invalidate(Range{0, 1 << 62}); err != nil {
		t.Fatal(err)
	}
	check("refilled")
	checkInvariants(t, c, true, f)
	if err := f.Truncate(edge); err != nil {
		t.Fatal(err)
	}
	checkInvariants(t, c, true, f)
	t.Logf("%d writes around 128 GiB and up to 3 TiB written back and read back; truncation across the sparse index ok", len(offsets))
}
