//go:build linux

package pagecache

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringfs/ringfs/uring"
)

// Pages of these tests hold one 8-byte word repeated: the file's tag, the
// page number and a generation. A read of a whole page must find one word
// 512 times, with its own file's tag and page number: anything else is a
// torn page (parts of two writes) or a foreign one (a frame reused by
// another file while the read copied it).

func stampPage(p []byte, tag byte, page int64, gen uint32) {
	var w [8]byte
	w[0] = tag
	w[1], w[2], w[3] = byte(page), byte(page>>8), byte(page>>16)
	binary.LittleEndian.PutUint32(w[4:], gen)
	for i := 0; i < len(p); i += 8 {
		copy(p[i:], w[:])
	}
}

// checkPage returns why p is not a whole page of file tag at page, or "".
func checkPage(p []byte, tag byte, page int64) string {
	w := p[:8]
	if w[0] != tag || int64(w[1])|int64(w[2])<<8|int64(w[3])<<16 != page&0xffffff {
		return fmt.Sprintf("foreign page: word %x, want tag %#x page %d", w, tag, page)
	}
	for i := 8; i < len(p); i += 8 {
		if string(p[i:i+8]) != string(w) {
			return fmt.Sprintf("torn page: word %x at 0, %x at %d", w, p[i:i+8], i)
		}
	}
	return ""
}

// TestOptimisticHitsWholePages: hits served without the lock
// (readOptimistic) while the same pages are rewritten, truncated away and
// their frames reused by another file's fills never return a torn or
// foreign page, and a read of the whole file sees one write of it, not
// parts of two (as under the read lock, which a write excludes). Two
// readers read file A's 8 pages in one call (ReadCached: hits only); a writer rewrites all 8 in
// one call; every 50th round it truncates A to nothing first, while a
// third goroutine reads file B through a 16-page cache, so A's freed
// frames are refilled with B's pages.
func TestOptimisticHitsWholePages(t *testing.T) {
	if !optimisticHits {
		t.Skip("hits take the read lock on this architecture")
	}
	const (
		pagesA = 8
		pagesB = 64
	)
	duration := 500 * time.Millisecond
	if soak() {
		duration = 20 * time.Second
	}
	stampFile := func(p []byte, tag byte, gen uint32) {
		for pg := range int64(len(p) / PageSize) {
			stampPage(p[pg*PageSize:(pg+1)*PageSize], tag, pg, gen)
		}
	}
	dataA := make([]byte, pagesA*PageSize)
	stampFile(dataA, 'A', 0)
	dataB := make([]byte, pagesB*PageSize)
	stampFile(dataB, 'B', 0)
	c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 16 * PageSize, Readahead: PageSize})
	a := openFile(t, c, newHostFile(t, dataA, false), int64(len(dataA)))
	b := openFile(t, c, newHostFile(t, dataB, false), int64(len(dataB)))
	if _, err := a.ReadAt(make([]byte, len(dataA)), 0); err != nil {
		t.Fatal(err)
	}
	before := c.Stats()
	var stop atomic.Bool
	var reads, misses, bad atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			buf := make([]byte, len(dataA))
			for i := 0; !stop.Load(); i++ {
				if i%4 == 0 {
					runtime.Gosched() // the writer needs a CPU too (2 here)
				}
				// Only a hit of all of it is one moment of the file: a
				// read that misses copies what is cached, then fills
				// the rest after the lock was let go.
				if n, hit := a.ReadCached(buf, 0); !hit || n < len(buf) {
					misses.Add(1)
					continue
				}
				reads.Add(1)
				for pg := range int64(pagesA) {
					p := buf[pg*PageSize : (pg+1)*PageSize]
					why := checkPage(p, 'A', pg)
					if why == "" && string(p[4:8]) != string(buf[4:8]) {
						why = fmt.Sprintf("generation %x, page 0's %x: two writes seen in one read", p[4:8], buf[4:8])
					}
					if why != "" {
						if bad.Add(1) <= 3 {
							t.Errorf("page %d of A: %s", pg, why)
						}
						break
					}
				}
			}
		})
	}
	wg.Go(func() {
		buf := make([]byte, PageSize)
		for i := int64(0); !stop.Load(); i++ {
			runtime.Gosched()
			if _, err := b.ReadAt(buf, i%pagesB*PageSize); err != nil {
				t.Errorf("ReadAt of B: %v", err)
				return
			}
		}
	})
	writes := 0
	for deadline, gen := time.Now().Add(duration), uint32(1); time.Now().Before(deadline); gen++ {
		if gen%50 == 0 {
			if err := a.Truncate(0); err != nil {
				t.Fatal(err)
			}
		}
		stampFile(dataA, 'A', gen)
		if _, _, err := a.WriteAt(dataA, 0, 0); err != nil {
			t.Fatal(err)
		}
		writes++
	}
	stop.Store(true)
	wg.Wait()
	d := c.Stats().Sub(before)
	if d.Evictions == 0 {
		t.Errorf("no evictions: A's frames were never reused")
	}
	t.Logf("%d hits of all of A's %d pages (%d bad, %d reads not all hits) against %d writes of them; %d evictions",
		reads.Load(), pagesA, bad.Load(), misses.Load(), writes, d.Evictions)
}
