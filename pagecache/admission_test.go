//go:build linux

package pagecache

import (
	"testing"

	"github.com/ringfs/ringfs/uring"
)

// TestAdmission runs reads of a file B through a cache that file A has
// filled, one step after another, and checks each read's data and
// whether it went around the cache (Cache.admitLater) or into it.
func TestAdmission(t *testing.T) {
	const capPages, bPages = 64, 512
	steps := []struct {
		name        string
		page, pages int64
		around      bool // read around the cache, not admitted
		ahead       bool // admitted with readahead
	}{
		{"first random miss goes around", 300, 1, true, false},
		{"second miss of the page admits it", 300, 1, false, false},
		{"another first miss", 100, 1, true, false},
		{"next page continues the last read", 101, 1, false, true},
		{"a miss elsewhere", 400, 1, true, false},
		{"a miss after a cached page", 101 + MaxReadahead/PageSize, 1, false, true},
		{"after a page read around, a read elsewhere: no trail", 401, 1, true, false},
		{"the page after a read around continues it: readahead", 402, 1, false, true},
		{"two pages, both new", 200, 2, true, false},
		{"a read wider than the readahead", 20, MaxReadahead/PageSize + 1, false, false},
		{"unaligned read across two new pages", 450, 2, true, false},
	}
	be := openBackend(t, uring.BackendUring, nil)
	c := newCache(t, be, Options{Capacity: capPages * PageSize})
	ha := newHostFile(t, pattern(70, capPages*PageSize), false)
	fa := openFile(t, c, ha, capPages*PageSize)
	if _, err := fa.ReadAt(make([]byte, capPages*PageSize), 0); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); st.FreeBytes != 0 {
		t.Fatalf("cache not full: %d bytes free", st.FreeBytes)
	}
	dataB := pattern(71, bPages*PageSize)
	hb := newHostFile(t, dataB, false)
	fb := openFile(t, c, hb, int64(len(dataB)))
	mb := &model{data: dataB}
	for i, s := range steps {
		off, n := s.page*PageSize, int(s.pages*PageSize)
		if s.name == "unaligned read across two new pages" {
			off += 100
			n -= 100
		}
		before := c.Stats()
		mustRead(t, fb, mb, off, n)
		d := c.Stats().Sub(before)
		cached := cachedPages(fb, s.page, s.page+s.pages)
		if s.around {
			if d.AdmissionSkips != uint64(s.pages) || cached != 0 || d.BypassBytes != uint64(n) {
				t.Errorf("step %d (%s): %d pages skipped, %d bytes read around, %d pages cached; want %d, %d and 0",
					i, s.name, d.AdmissionSkips, d.BypassBytes, cached, s.pages, n)
			}
			continue
		}
		if d.AdmissionSkips != 0 || cached != s.pages {
			t.Errorf("step %d (%s): %d pages skipped, %d of %d pages cached; want none skipped, all cached",
				i, s.name, d.AdmissionSkips, cached, s.pages)
		}
		if s.ahead != (d.ReadaheadBytes > 0) {
			t.Errorf("step %d (%s): %d bytes of readahead", i, s.name, d.ReadaheadBytes)
		}
	}
	checkInvariants(t, c, true, fa, fb)
}

// cachedPages counts the pages of [p0, p1) that f holds.
func cachedPages(f *File, p0, p1 int64) int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	n := int64(0)
	for p := p0; p < p1; p++ {
		if f.index.get(p) >= 0 {
			n++
		}
	}
	return n
}

// TestAdmissionNeedsAFullCache: while frames are free, every miss is
// cached.
func TestAdmissionNeedsAFullCache(t *testing.T) {
	be := openBackend(t, uring.BackendUring, nil)
	c := newCache(t, be, Options{Capacity: 256 * PageSize})
	data := pattern(72, 64*PageSize)
	h := newHostFile(t, data, false)
	f := openFile(t, c, h, int64(len(data)))
	m := &model{data: data}
	for _, page := range []int64{40, 3, 57, 20} {
		mustRead(t, f, m, page*PageSize, PageSize)
	}
	for _, page := range []int64{40, 3, 57, 20} {
		if cachedPages(f, page, page+1) != 1 {
			t.Errorf("page %d not cached", page)
		}
	}
	if st := c.Stats(); st.AdmissionSkips != 0 {
		t.Fatalf("%d pages skipped, want 0", st.AdmissionSkips)
	}
}
