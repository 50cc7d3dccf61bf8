//go:build linux

package hostmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestStats: the JSON names (units last) and Sub, which subtracts
// counters and keeps gauges.
func TestStats(t *testing.T) {
	f := newFile(t, 4*mib, os.O_RDWR)
	m := newMapper(t, f)
	before := m.Stats()
	if err := m.IncRef(Range{0, 4 * mib}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.ReadAt(make([]byte, 10), 2*mib-5); err != nil {
		t.Fatal(err)
	}
	if _, err := m.WriteAt(make([]byte, 1), 0); err != nil {
		t.Fatal(err)
	}
	sp, err := m.Map(mib, 2*mib, false)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	d := m.Stats().Sub(before)
	want := Stats{
		MappedBytes: 2*ChunkSize + 2*mib, ChunksLive: 2, SpansLive: 1, LiveRefs: 1024, MappingsOpen: 1,
		ChunksMapped: 2, SpansMapped: 1, Upgrades: 1,
	}
	if d != want {
		t.Errorf("delta %+v\nwant  %+v", d, want)
	}
	if d2 := m.Stats().Sub(m.Stats()); d2.ChunksMapped != 0 || d2.MappedBytes != want.MappedBytes {
		t.Errorf("Sub of itself: %+v", d2)
	}
	js, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]int64
	if err := json.Unmarshal(js, &fields); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mapped_bytes", "chunks_mapped", "chunks_unmapped", "live_refs", "upgrades", "faults_caught", "chunks_live", "spans_live", "spans_mapped", "spans_unmapped", "mappings_open"} {
		if _, ok := fields[name]; !ok {
			t.Errorf("JSON lacks %q: %s", name, js)
		}
	}
	t.Logf("%s", js)
}

// TestSharedCounters: Mappers made with NewMapperCounting on one Counters
// report its totals, gauges included, and the counts of a Mapper stay in
// them after its Close (the gauges back at zero).
func TestSharedCounters(t *testing.T) {
	var c Counters
	var ms []*Mapper
	for range 2 {
		m := NewMapperCounting(int(newFile(t, 4*mib, os.O_RDWR).Fd()), &c)
		ms = append(ms, m)
		if err := m.IncRef(Range{0, 4 * mib}); err != nil {
			t.Fatal(err)
		}
		for _, off := range []int64{0, 2 * mib} { // chunks map at first use
			if _, err := m.ReadAt(make([]byte, 1), off); err != nil {
				t.Fatal(err)
			}
		}
	}
	live := Stats{MappedBytes: 4 * ChunkSize, ChunksLive: 4, LiveRefs: 2048, ChunksMapped: 4}
	for i, m := range ms {
		if got := m.Stats(); got != live {
			t.Errorf("Mapper %d: %+v\nwant %+v", i, got, live)
		}
	}
	for _, m := range ms {
		m.DecRef(Range{0, 4 * mib})
		m.Close()
	}
	want := Stats{ChunksMapped: 4, ChunksUnmapped: 4}
	if got := c.Stats(); got != want {
		t.Errorf("after both closed: %+v\nwant %+v", got, want)
	}
}

// TestCloseRacesMappings: the Mapper closes while goroutines map, close,
// reference and sync; afterwards every call but Mapping.Close fails with
// ErrClosed, Mappings opened before stay usable, and when the last one
// closes nothing is left mapped.
func TestCloseRacesMappings(t *testing.T) {
	const workers = 8
	f := newFile(t, 8*mib, os.O_RDWR)
	m := newMapper(t, f)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var opened, closedAfter int
	errs := make(chan error, workers)
	stop := time.Now().Add(300 * time.Millisecond)
	for g := range workers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 9))
			var held []*Mapping
			defer func() {
				for _, mp := range held {
					if mp.Bytes() == nil {
						errs <- fmt.Errorf("a held Mapping lost its bytes")
					}
					_ = mp.Bytes()[0]
					if err := mp.Close(); err != nil {
						errs <- err
					}
				}
			}()
			for time.Now().Before(stop) {
				r := randomRange(rng, 8*mib)
				mp, err := m.Map(r.Start, r.Length(), rng.IntN(2) == 0)
				if err == ErrClosed {
					mu.Lock()
					closedAfter++
					mu.Unlock()
					return
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				opened++
				mu.Unlock()
				_ = mp.Bytes()[len(mp.Bytes())-1]
				if rng.IntN(3) == 0 {
					held = append(held, mp)
				} else if err := mp.Close(); err != nil {
					errs <- err
					return
				}
				if err := m.IncRef(r); err == nil {
					if err := m.DecRef(r); err != nil && err != ErrClosed {
						errs <- err
						return
					}
				} else if err != ErrClosed {
					errs <- err
					return
				}
				if err := m.Sync(r); err != nil && err != ErrClosed {
					errs <- err
					return
				}
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	cerr := m.Close()
	if cerr != nil && !errors.Is(cerr, syscall.EBUSY) {
		t.Errorf("Close: %v", cerr)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := m.Stats()
	if s.MappedBytes != 0 || s.LiveRefs != 0 || s.MappingsOpen != 0 || s.ChunksMapped != s.ChunksUnmapped || s.SpansMapped != s.SpansUnmapped || mappedBytesOf(t, f) != 0 {
		t.Errorf("after all closed: %+v, %d bytes in /proc/self/maps", s, mappedBytesOf(t, f))
	}
	t.Logf("Close (%v) raced %d Map calls; %d workers saw ErrClosed; nothing leaked: %+v", cerr, opened, closedAfter, s)
}
