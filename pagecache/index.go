//go:build linux

package pagecache

import (
	"slices"
	"sync/atomic"
)

// pageIndex maps a file's page numbers to arena frames. It is a two-level
// radix table: leaves of leafPages entries, reached through a dense table
// for the first denseLeaves leaves (files up to 128 GiB) and a map beyond.
// Lookup is O(1) and allocation-free; leaves are allocated when a page is
// first inserted into their span and freed when their last page leaves.
//
// The index changes only with its File's mu held for writing. The dense
// part may also be read with no lock at all (getUnlocked, for optimistic
// hits): its table is replaced whole when it grows, never resized in
// place, and every pointer and entry in it is read and written atomically,
// so such a reader sees some state the index was in, never a torn one.
type pageIndex struct {
	dense  atomic.Pointer[[]atomic.Pointer[leaf]]
	sparse map[int64]*leaf
	pages  int // pages present
}

const (
	leafShift   = 9
	leafPages   = 1 << leafShift // 512 pages = 2 MiB per leaf
	leafMask    = leafPages - 1
	denseLeaves = 1 << 16
)

// leaf holds frame+1 for each page (0 = absent), so a new leaf is empty.
type leaf struct {
	frames [leafPages]atomic.Int32
	n      int // entries present; read and written with mu held
}

// table returns the dense table (nil when no dense leaf was ever made).
func (x *pageIndex) table() []atomic.Pointer[leaf] {
	if t := x.dense.Load(); t != nil {
		return *t
	}
	return nil
}

// denseLeaf returns leaf li of the dense table (nil when absent); ok is
// false when li lies past the table. It needs no lock.
func (x *pageIndex) denseLeaf(li int64) (l *leaf, ok bool) {
	if t := x.table(); li < int64(len(t)) {
		return t[li].Load(), true
	}
	return nil, false
}

func (x *pageIndex) leafOf(page int64) *leaf {
	li := page >> leafShift
	if l, ok := x.denseLeaf(li); ok {
		return l
	}
	if li < denseLeaves || x.sparse == nil {
		return nil
	}
	return x.sparse[li]
}

// get returns the frame of page, or -1.
//
// Preconditions: the File's mu is held.
func (x *pageIndex) get(page int64) int32 {
	if l := x.leafOf(page); l != nil {
		return l.frames[page&leafMask].Load() - 1
	}
	return -1
}

// getUnlocked returns the frame of page in the dense part, or -1 when it
// is absent or lies in the sparse part. It needs no lock: the answer is a
// frame the page had at some moment during the call, which the caller
// must confirm (File.readOptimistic checks the File's sequence).
func (x *pageIndex) getUnlocked(page int64) int32 {
	if l, _ := x.denseLeaf(page >> leafShift); l != nil {
		return l.frames[page&leafMask].Load() - 1
	}
	return -1
}

// absentUnlocked reports whether every page of [p0, p1) lies in the
// dense part and was absent from it when looked at; like getUnlocked it
// needs no lock, and the caller must confirm the answer.
func (x *pageIndex) absentUnlocked(p0, p1 int64) bool {
	if (p1-1)>>leafShift >= denseLeaves {
		return false
	}
	for p := p0; p < p1; p++ {
		if x.getUnlocked(p) >= 0 {
			return false
		}
	}
	return true
}

// absent reports whether no page of [p0, p1) is present.
func (x *pageIndex) absent(p0, p1 int64) bool {
	for p := p0; p < p1; p++ {
		if x.get(p) >= 0 {
			return false
		}
	}
	return true
}

// set maps page to frame; the page must be absent.
func (x *pageIndex) set(page int64, frame int32) {
	li := page >> leafShift
	var l *leaf
	if li < denseLeaves {
		t := x.table()
		if li >= int64(len(t)) {
			n := int64(len(t))*2 + 1
			for n <= li {
				n *= 2
			}
			if n > denseLeaves {
				n = denseLeaves
			}
			grown := make([]atomic.Pointer[leaf], n)
			for i := range t {
				grown[i].Store(t[i].Load())
			}
			x.dense.Store(&grown)
			t = grown
		}
		if l = t[li].Load(); l == nil {
			l = new(leaf)
			t[li].Store(l)
		}
	} else {
		if x.sparse == nil {
			x.sparse = make(map[int64]*leaf)
		}
		if l = x.sparse[li]; l == nil {
			l = new(leaf)
			x.sparse[li] = l
		}
	}
	if l.frames[page&leafMask].Load() != 0 {
		panic("pagecache: index: page already present")
	}
	l.frames[page&leafMask].Store(frame + 1)
	l.n++
	x.pages++
}

// remove unmaps page and returns its frame (or -1 when absent).
func (x *pageIndex) remove(page int64) int32 {
	l := x.leafOf(page)
	if l == nil {
		return -1
	}
	f := l.frames[page&leafMask].Load() - 1
	if f < 0 {
		return -1
	}
	l.frames[page&leafMask].Store(0)
	l.n--
	x.pages--
	if l.n == 0 {
		li := page >> leafShift
		if t := x.table(); li < int64(len(t)) {
			t[li].Store(nil)
		} else {
			delete(x.sparse, li)
		}
	}
	return f
}

// each calls fn for every present page in [from, to) in ascending order,
// skipping absent leaves. fn may remove the page it is given.
func (x *pageIndex) each(from, to int64, fn func(page int64, frame int32)) {
	if from < 0 {
		from = 0
	}
	if from >= to {
		return
	}
	t := x.table()
	last := (to - 1) >> leafShift
	if d := int64(len(t)) - 1; last > d {
		last = d
	}
	for li := from >> leafShift; li <= last; li++ {
		if l := t[li].Load(); l != nil {
			visitLeaf(l, li, from, to, fn)
		}
	}
	if len(x.sparse) > 0 && to > denseLeaves<<leafShift {
		x.eachSparse(max(from, denseLeaves<<leafShift), to, fn)
	}
}

// visitLeaf calls fn for the present pages of leaf li within [from, to).
func visitLeaf(l *leaf, li, from, to int64, fn func(page int64, frame int32)) {
	start, end := max(li<<leafShift, from), min((li+1)<<leafShift, to)
	for p := start; p < end && l.n > 0; p++ {
		if f := l.frames[p&leafMask].Load() - 1; f >= 0 {
			fn(p, f)
		}
	}
}

// eachSparse visits the sparse leaves overlapping [from, to) in order.
func (x *pageIndex) eachSparse(from, to int64, fn func(page int64, frame int32)) {
	keys := make([]int64, 0, len(x.sparse))
	for li := range x.sparse {
		if li<<leafShift < to && (li+1)<<leafShift > from {
			keys = append(keys, li)
		}
	}
	slices.Sort(keys)
	for _, li := range keys {
		if l := x.sparse[li]; l != nil {
			visitLeaf(l, li, from, to, fn)
		}
	}
}
