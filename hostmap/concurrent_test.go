//go:build linux

package hostmap

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// soakDuration is def, or with RINGFS_SOAK set 10 s or the duration it
// names if that is longer.
func soakDuration(def time.Duration) time.Duration {
	v := os.Getenv("RINGFS_SOAK")
	if v == "" {
		return def
	}
	if d, err := time.ParseDuration(v); err == nil && d > 10*time.Second {
		return d
	}
	return 10 * time.Second
}

// TestConcurrentMapUnmap: 32 goroutines take and drop references and
// Mappings on overlapping ranges, read, write their own pages and sync.
// Counts are never negative, every chunk mmap is followed by exactly one
// munmap made while its counts were zero, writes are seen by pread, and
// nothing is left mapped at the end.
func TestConcurrentMapUnmap(t *testing.T) {
	const (
		workers = 32
		chunks  = 8
		size    = chunks * ChunkSize
	)
	dur := soakDuration(2 * time.Second)
	f := newFile(t, size, os.O_RDWR)
	m := newMapper(t, f)
	fd := int(f.Fd())

	// The hook runs with the Mapper's locks held (for chunk events).
	var (
		hmu        sync.Mutex
		mapped     = map[int64]bool{}
		mmaps      = map[int64]int{}
		munmaps    = map[int64]int{}
		violations []string
	)
	m.hook = func(ev event, r Range) {
		ci := r.Start >> chunkShift
		hmu.Lock()
		defer hmu.Unlock()
		switch ev {
		case evMap:
			if mapped[ci] {
				violations = append(violations, fmt.Sprintf("chunk %d mapped twice", ci))
			}
			mapped[ci] = true
			mmaps[ci]++
		case evUpgrade:
			if !mapped[ci] {
				violations = append(violations, fmt.Sprintf("chunk %d upgraded while unmapped", ci))
			}
		case evUnmap:
			if c := m.chunks[ci]; c == nil || !c.idle() {
				violations = append(violations, fmt.Sprintf("chunk %d unmapped with references", ci))
			}
			if !mapped[ci] {
				violations = append(violations, fmt.Sprintf("chunk %d unmapped twice", ci))
			}
			mapped[ci] = false
			munmaps[ci]++
		}
	}

	var ops, writes, syncs atomic.Int64
	var maxRefs atomic.Int64
	deadline := time.Now().Add(dur)
	errc := make(chan error, workers+1)
	stop := make(chan struct{})
	var checker sync.WaitGroup
	checker.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			if err := m.checkInvariants(); err != nil {
				errc <- err
				return
			}
			if n := m.Stats().LiveRefs; n > maxRefs.Load() {
				maxRefs.Store(n)
			}
		}
	})

	var wg sync.WaitGroup
	for g := range workers {
		wg.Go(func() {
			if err := concurrentWorker(m, fd, g, workers, size, deadline, &ops, &writes, &syncs); err != nil {
				errc <- fmt.Errorf("worker %d: %w", g, err)
			}
		})
	}
	wg.Wait()
	close(stop)
	checker.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if err := m.checkInvariants(); err != nil {
		t.Error(err)
	}
	hmu.Lock()
	defer hmu.Unlock()
	for _, v := range violations {
		t.Error(v)
	}
	var totalMaps int
	for ci := range int64(chunks) {
		if mmaps[ci] != munmaps[ci] || mapped[ci] {
			t.Errorf("chunk %d: %d mmaps, %d munmaps, mapped at end %v", ci, mmaps[ci], munmaps[ci], mapped[ci])
		}
		totalMaps += mmaps[ci]
	}
	s := m.Stats()
	if s.LiveRefs != 0 || s.MappedBytes != 0 || s.ChunksLive != 0 || s.SpansLive != 0 || s.MappingsOpen != 0 ||
		s.ChunksMapped != uint64(totalMaps) || s.ChunksUnmapped != s.ChunksMapped || s.SpansMapped != s.SpansUnmapped {
		t.Errorf("at the end: %+v (hook saw %d mmaps)", s, totalMaps)
	}
	if n := mappedBytesOf(t, f); n != 0 {
		t.Errorf("%d bytes of the file still in /proc/self/maps", n)
	}
	if ops.Load() < workers {
		t.Errorf("only %d ops ran", ops.Load())
	}
	t.Logf("%v, %d goroutines: %d ops, %d verified page writes, %d syncs; %d chunk mmaps each unmapped once at zero, %d spans, %d upgrades, peak %d live page refs, 0 leaked",
		dur, workers, ops.Load(), writes.Load(), syncs.Load(), s.ChunksMapped, s.SpansMapped, s.Upgrades, maxRefs.Load())
}

// concurrentWorker runs random operations until deadline. Page p of the
// file is written only by worker p % workers, so each worker can verify
// its own writes.
func concurrentWorker(m *Mapper, fd, g, workers int, size int64, deadline time.Time, ops, writes, syncs *atomic.Int64) error {
	rng := rand.New(rand.NewPCG(uint64(g), uint64(time.Now().UnixNano())))
	buf := make([]byte, 64*kib)
	page := make([]byte, pageSize)
	check := make([]byte, pageSize)
	var held []*Mapping
	defer func() {
		for _, mp := range held {
			mp.Close()
		}
	}()
	var seq byte
	// ownPage returns the first page in r this worker owns, or -1.
	ownPage := func(r Range) int64 {
		p := (r.Start + pageSize - 1) / pageSize
		p += (int64(g) - p%int64(workers) + int64(workers)) % int64(workers)
		if (p+1)*pageSize <= r.End {
			return p * pageSize
		}
		return -1
	}
	verify := func(off int64, via string) error {
		if _, err := unix.Pread(fd, check, off); err != nil {
			return err
		}
		if !bytes.Equal(check, page) {
			return fmt.Errorf("page at %d written through %s: pread disagrees", off, via)
		}
		writes.Add(1)
		return nil
	}
	for time.Now().Before(deadline) {
		r := randomRange(rng, size)
		switch op := rng.IntN(10); {
		case op < 5:
			if err := m.IncRef(r); err != nil {
				return fmt.Errorf("IncRef(%v): %w", r, err)
			}
			n := min(r.Length(), int64(len(buf)))
			off := r.Start + rng.Int64N(r.Length()-n+1)
			if k, err := m.ReadAt(buf[:n], off); err != nil || int64(k) != n {
				return fmt.Errorf("ReadAt(%d, %d): %d, %w", n, off, k, err)
			}
			if p := ownPage(r.RoundOut()); p >= 0 && p+pageSize <= size && rng.IntN(2) == 0 {
				seq++
				for i := range page {
					page[i] = seq
				}
				if _, err := m.WriteAt(page, p); err != nil {
					return fmt.Errorf("WriteAt(%d): %w", p, err)
				}
				if err := verify(p, "WriteAt"); err != nil {
					return err
				}
			}
			bs, err := m.MapInternal(r, rng.IntN(4) == 0)
			if err != nil {
				return fmt.Errorf("MapInternal(%v): %w", r, err)
			}
			var total int64
			for _, b := range bs {
				total += int64(len(b))
			}
			if total != r.Length() {
				return fmt.Errorf("MapInternal(%v) covers %d bytes", r, total)
			}
			if err := m.DecRef(r); err != nil {
				return fmt.Errorf("DecRef(%v): %w", r, err)
			}
		case op < 8:
			if len(held) >= 3 {
				i := rng.IntN(len(held))
				if err := held[i].Close(); err != nil {
					return err
				}
				held = append(held[:i], held[i+1:]...)
			}
			writable := rng.IntN(3) == 0
			mp, err := m.Map(r.Start, r.Length(), writable)
			if err != nil {
				return fmt.Errorf("Map(%v): %w", r, err)
			}
			b := mp.Bytes()
			if len(b) != int(r.Length()) {
				return fmt.Errorf("Map(%v): %d bytes", r, len(b))
			}
			_ = b[len(b)-1] + b[0]
			if p := ownPage(r); writable && p >= 0 {
				seq++
				for i := range page {
					page[i] = seq
				}
				copy(b[p-r.Start:], page)
				if err := verify(p, "a Mapping"); err != nil {
					return err
				}
			}
			if rng.IntN(2) == 0 {
				held = append(held, mp)
			} else if err := mp.Close(); err != nil {
				return err
			}
		case op < 9:
			if rng.IntN(10) == 0 {
				if err := m.Sync(r); err != nil {
					return fmt.Errorf("Sync(%v): %w", r, err)
				}
				syncs.Add(1)
			}
		default:
			for _, mp := range held {
				if err := mp.Close(); err != nil {
					return err
				}
			}
			held = held[:0]
		}
		ops.Add(1)
	}
	return nil
}

// randomRange returns a non-empty range of the file, often starting next
// to a chunk boundary and often spanning one.
func randomRange(rng *rand.Rand, size int64) Range {
	var start int64
	if rng.IntN(2) == 0 {
		start = rng.Int64N(size/ChunkSize)*ChunkSize + (rng.Int64N(3)-1)*pageSize
	} else {
		start = rng.Int64N(size)
	}
	start = max(0, min(start, size-1))
	lengths := [...]int64{1, pageSize, 2 * pageSize, 64 * kib, ChunkSize, ChunkSize + pageSize, rng.Int64N(ChunkSize) + 1}
	end := min(start+lengths[rng.IntN(len(lengths))], size)
	return Range{start, end}
}
