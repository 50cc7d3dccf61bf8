//go:build linux

package pagecache

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// benchDir is where benchmarks put host files: RINGFS_BENCHDIR, else the
// test's temporary directory (the real disk, so that fsync costs what it
// costs).
func benchDir(b *testing.B) string {
	if d := os.Getenv("RINGFS_BENCHDIR"); d != "" {
		dir, err := os.MkdirTemp(d, "pagecache-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// timeBaseline runs fn rounds times and returns the mean time per call.
func timeBaseline(rounds int, fn func()) time.Duration {
	start := time.Now()
	for range rounds {
		fn()
	}
	return time.Since(start) / time.Duration(rounds)
}

// BenchmarkHit is a lookup and copy of a cached page (target ≤ 300 ns/op,
// 0 allocs/op), with pread of the same bytes from the kernel's page cache
// measured in the same run as the baseline (x_vs_pread > 1: faster); the
// 16 and 128 KiB rows read runs of pages (copied as one where their
// frames are consecutive, see arenaCopy).
func BenchmarkHit(b *testing.B) {
	for _, bs := range []int{64, PageSize, 16 * KiB, 128 * KiB} {
		b.Run(fmt.Sprintf("bs=%s", sizeName(bs)), func(b *testing.B) {
			const pages = 256
			data := pattern(150, pages*PageSize)
			h := newHostFileIn(b, benchDir(b), data, false)
			c := newCache(b, openBackend(b, uring.BackendUring, nil), Options{Capacity: 2 * pages * PageSize})
			f := openFile(b, c, h, pages*PageSize)
			p := make([]byte, bs)
			offs := make([]int64, 1024)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range offs {
				offs[i] = r.Int64N(pages*PageSize/int64(bs)) * int64(bs)
			}
			for off := int64(0); off < pages*PageSize; off += 64 * KiB {
				if _, err := f.ReadAt(p, off); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := f.ReadAt(make([]byte, pages*PageSize), 0); err != nil {
				b.Fatal(err)
			}
			const baselineOps = 200_000
			pread := timeBaseline(1, func() {
				for i := range baselineOps {
					if _, err := h.fh.ReadAt(p, offs[i%len(offs)]); err != nil {
						b.Fatal(err)
					}
				}
			}) / baselineOps
			before := c.Stats()
			b.ReportAllocs()
			b.SetBytes(int64(bs))
			i := 0
			for b.Loop() {
				f.ReadAt(p, offs[i%len(offs)])
				i++
			}
			st := c.Stats().Sub(before)
			if st.Misses != 0 {
				b.Fatalf("%d misses in a hit benchmark", st.Misses)
			}
			hit := b.Elapsed() / time.Duration(b.N)
			b.ReportMetric(float64(pread.Nanoseconds()), "pread-ns/op")
			b.ReportMetric(float64(pread)/float64(hit), "x_vs_pread")
		})
	}
}

func sizeName(n int) string {
	if n >= KiB && n%KiB == 0 {
		return fmt.Sprintf("%dKiB", n/KiB)
	}
	return fmt.Sprintf("%dB", n)
}

// BenchmarkPolicy reports the replacement policy's figures as metrics:
// the S3-FIFO and LRU hit ratios on Zipf(0.99) over 4x the cache (a), with
// a 2x scan mixed in (b), and the share of the hot set a 2x scan evicts;
// admit-*: the same with the cache's admission of misses while it is full
// (Cache.admitLater).
// The timed loop is one S3-FIFO access of the Zipf trace (simulator map
// included); LRU's cost is measured in the same run.
func BenchmarkPolicy(b *testing.B) {
	s3 := simulatePolicy(func(n int) keyCache { return newS3Sim(n) }, policyCapacity, 200_000, policySeed)
	lru := simulatePolicy(func(n int) keyCache { return newLRUSim(n) }, policyCapacity, 200_000, policySeed)
	ad := simulatePolicy(func(n int) keyCache { return s3admitSim{newS3Sim(n)} }, policyCapacity, 200_000, policySeed)
	z := newZipf(4*policyCapacity, 0.99, policySeed)
	trace := make([]uint64, 1<<20)
	for i := range trace {
		trace[i] = z.next()
	}
	l := newLRUSim(policyCapacity)
	lruNs := timeBaseline(1, func() {
		for _, k := range trace {
			l.access(k)
		}
	}).Nanoseconds() / int64(len(trace))
	s := newS3Sim(policyCapacity)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s.access(trace[i&(len(trace)-1)])
		i++
	}
	b.ReportMetric(100*s3.zipfHit, "s3fifo-zipf-hit%")
	b.ReportMetric(100*lru.zipfHit, "lru-zipf-hit%")
	b.ReportMetric(s3.zipfHit/lru.zipfHit, "x_hit_vs_lru")
	b.ReportMetric(100*s3.scanHit, "s3fifo-scan-hit%")
	b.ReportMetric(100*lru.scanHit, "lru-scan-hit%")
	b.ReportMetric(100*s3.hotEvicted, "scan-evicts-hot%")
	b.ReportMetric(100*ad.zipfHit, "admit-zipf-hit%")
	b.ReportMetric(100*ad.scanHit, "admit-scan-hit%")
	b.ReportMetric(100*ad.hotEvicted, "admit-scan-evicts-hot%")
	b.ReportMetric(float64(lruNs), "lru-ns/access")
}

// BenchmarkWriteback writes back 64 MiB of dirty 4 KiB pages scattered at
// random over a 256 MiB file (the cache holds them all), and compares it
// in the same run with pwrite of each page in the order the pages were
// dirtied (+ fsync for sync=full), and with pwrite of the pages sorted by
// offset. Every timed round starts with the kernel's copies of the pages
// clean (an untimed fsync), as after a previous Sync. Metrics: MB/s, SQEs
// per io_uring_enter, writes per writeback, x_vs_pwrite and
// x_vs_pwrite_sorted, and x_vs_pwrite_4kfolios, the random order with the
// file cached in 4 KiB folios (> 1: the cache is faster; see pwrite
// below). The baseline writes through a buffered descriptor in every
// case; the cache's writes are buffered (io=buffered), O_DIRECT when an
// fsync follows (io=directwb: DefaultDirectWriteback, what the engine
// uses), or always O_DIRECT (io=direct: an O_DIRECT descriptor given to
// NewFile).
func BenchmarkWriteback(b *testing.B) {
	for _, backend := range []string{uring.BackendUring, uring.BackendPsync} {
		for _, io := range []string{"buffered", "directwb", "direct"} {
			for _, mode := range []SyncMode{SyncNone, SyncFull} {
				name := map[SyncMode]string{SyncNone: "sync=none", SyncFull: "sync=full"}[mode]
				b.Run("backend="+backend+"/io="+io+"/"+name, func(b *testing.B) { benchWriteback(b, backend, io, mode) })
			}
		}
	}
}

func benchWriteback(b *testing.B, backend, io string, mode SyncMode) {
	const (
		filePages  = 64 << 10 // 256 MiB
		dirtyPages = 16 << 10 // 64 MiB
	)
	h := newHostFileIn(b, benchDir(b), nil, io == "direct")
	if err := unix.Fallocate(int(h.fd()), 0, 0, filePages*PageSize); err != nil {
		b.Skipf("fallocate: %v", err)
	}
	// Write the file once so that later writes overwrite in place.
	chunk := pattern(160, 1<<20)
	for off := int64(0); off < filePages*PageSize; off += int64(len(chunk)) {
		if _, err := h.fh.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	fsync := func() {
		if err := h.fh.Sync(); err != nil {
			b.Fatal(err)
		}
	}
	fsync()
	r := rand.New(rand.NewPCG(3, 4))
	pages := r.Perm(filePages)[:dirtyPages]
	sorted := slices.Sorted(slices.Values(pages))
	page := pattern(161, PageSize)
	// pwrite is one round of the baseline, with the file in the kernel's
	// cache and clean when it starts: each round drops the file from the
	// kernel's cache and reads it back. How it reads it matters on Linux
	// 6.18: ext4 caches what readahead brings in large folios, and a
	// 4 KiB buffered write into one costs several times as much as into
	// a 4 KiB folio. With small, the file is read back 4 KiB at a time
	// without readahead, so that its pages sit in 4 KiB folios; otherwise
	// 1 MiB at a time, as a program reading the file would.
	pwrite := func(order []int, small bool) time.Duration {
		fd := int(h.fd())
		fsync()
		unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED)
		if small {
			unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM)
			for off := int64(0); off < filePages*PageSize; off += PageSize {
				if _, err := h.fh.ReadAt(chunk[:PageSize], off); err != nil {
					b.Fatal(err)
				}
			}
			unix.Fadvise(fd, 0, 0, unix.FADV_NORMAL)
		} else {
			for off := int64(0); off < filePages*PageSize; off += int64(len(chunk)) {
				if _, err := h.fh.ReadAt(chunk, off); err != nil {
					b.Fatal(err)
				}
			}
		}
		fsync()
		start := time.Now()
		for _, p := range order {
			page[0]++
			if _, err := h.fh.WriteAt(page, int64(p)*PageSize); err != nil {
				b.Fatal(err)
			}
		}
		if mode != SyncNone {
			fsync()
		}
		return time.Since(start)
	}
	be := openBackend(b, backend, nil)
	c := newCache(b, be, Options{Capacity: (dirtyPages + 1024) * PageSize, DirectWriteback: map[bool]int64{true: DefaultDirectWriteback}[io == "directwb"]})
	f := openFile(b, c, h, filePages*PageSize)
	dirty := func() {
		for _, p := range pages {
			page[0]++
			if n, _, err := f.WriteAt(page, int64(p)*PageSize, 0); err != nil || n != PageSize {
				b.Fatal(n, err)
			}
		}
	}
	b.ReportAllocs()
	b.SetBytes(dirtyPages * PageSize)
	var ring uring.Stats
	var wb Stats
	// Each round of the cache is paired with one round of each baseline
	// between its timed parts, so that all three see the same disk.
	var random, inOrder, small time.Duration
	for b.Loop() {
		b.StopTimer()
		random += pwrite(pages, false)
		inOrder += pwrite(sorted, false)
		small += pwrite(pages, true)
		dirty()
		fsync()
		r0, w0 := be.Stats(), c.Stats()
		b.StartTimer()
		if err := f.Writeback(Range{0, 1 << 40}, mode); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		d, dw := be.Stats().Sub(r0), c.Stats().Sub(w0)
		ring.SQEs += d.SQEs
		ring.Enters += d.Enters
		wb.WritebackSQEs += dw.WritebackSQEs
		b.StartTimer()
	}
	if backend == uring.BackendUring {
		b.ReportMetric(ring.SQEsPerEnter(), "sqes/enter")
	}
	b.ReportMetric(float64(wb.WritebackSQEs)/float64(b.N), "writes/op")
	b.ReportMetric(float64(dirtyPages*PageSize)/(random.Seconds()/float64(b.N))/1e6, "pwrite-MB/s")
	b.ReportMetric(float64(random)/float64(b.Elapsed()), "x_vs_pwrite")
	b.ReportMetric(float64(inOrder)/float64(b.Elapsed()), "x_vs_pwrite_sorted")
	b.ReportMetric(float64(small)/float64(b.Elapsed()), "x_vs_pwrite_4kfolios")
}

// BenchmarkMiss reads random 4 KiB pages of a file 16 times the cache, so
// nearly every read fills (with readahead cut to one page) and evicts;
// pread of the same pages is the baseline measured in the same run.
func BenchmarkMiss(b *testing.B) {
	const pages = 4096
	data := pattern(200, pages*PageSize)
	h := newHostFileIn(b, benchDir(b), data, false)
	c := newCache(b, openBackend(b, uring.BackendUring, nil), Options{Capacity: pages / 16 * PageSize, Readahead: PageSize})
	f := openFile(b, c, h, pages*PageSize)
	offs := make([]int64, 4096)
	r := rand.New(rand.NewPCG(5, 6))
	for i := range offs {
		offs[i] = r.Int64N(pages) * PageSize
	}
	p := make([]byte, PageSize)
	const baselineOps = 50_000
	pread := timeBaseline(1, func() {
		for i := range baselineOps {
			if _, err := h.fh.ReadAt(p, offs[i%len(offs)]); err != nil {
				b.Fatal(err)
			}
		}
	}) / baselineOps
	before := c.Stats()
	b.ReportAllocs()
	b.SetBytes(PageSize)
	i := 0
	for b.Loop() {
		if _, err := f.ReadAt(p, offs[i%len(offs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	st := c.Stats().Sub(before)
	miss := b.Elapsed() / time.Duration(b.N)
	b.ReportMetric(float64(st.Misses)/float64(b.N), "misses/op")
	b.ReportMetric(float64(pread.Nanoseconds()), "pread-ns/op")
	b.ReportMetric(float64(pread)/float64(miss), "x_vs_pread")
}

// BenchmarkWritebackRuns writes back and fsyncs 64 MiB of dirty runs of
// run pages each (runs one run apart), buffered or through O_DIRECT: the
// measurement behind DefaultDirectWriteback (the longest run for which
// O_DIRECT was not slower; every run up to MaxWrite on this disk).
//
//	go test -run '^$' -bench WritebackRuns -count 3 ./pagecache/
func BenchmarkWritebackRuns(b *testing.B) {
	const dirty = 16 << 10 // pages
	for _, run := range []int{1, 4, 8, 16, 64, 256} {
		for _, direct := range []bool{false, true} {
			name := fmt.Sprintf("run=%dKiB/io=%s", run*PageSize>>10, map[bool]string{false: "buffered", true: "direct"}[direct])
			b.Run(name, func(b *testing.B) {
				pages := dirty * 2
				h := newHostFileIn(b, benchDir(b), nil, false)
				chunk := pattern(170, 1<<20)
				for off := int64(0); off < int64(pages)*PageSize; off += int64(len(chunk)) {
					if _, err := h.fh.WriteAt(chunk, off); err != nil {
						b.Fatal(err)
					}
				}
				if err := h.fh.Sync(); err != nil {
					b.Fatal(err)
				}
				be := openBackend(b, uring.BackendUring, nil)
				var dwb int64
				if direct {
					dwb = 1 << 30
				}
				c := newCache(b, be, Options{Capacity: (dirty + 1024) * PageSize, DirectWriteback: dwb})
				f := openFile(b, c, h, int64(pages)*PageSize)
				p := pattern(171, run*PageSize)
				b.ReportAllocs()
				b.SetBytes(dirty * PageSize)
				for b.Loop() {
					b.StopTimer()
					for i := 0; i < pages; i += 2 * run {
						p[0]++
						if _, _, err := f.WriteAt(p, int64(i)*PageSize, 0); err != nil {
							b.Fatal(err)
						}
					}
					b.StartTimer()
					if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkArenaCopy: 1 MiB moved from one buffer into a region of
// frames, as 256 page copies or as one copy of the run (arenaCopy), alone
// and followed by a 1 MiB pwrite of the same buffer to a file the kernel
// caches (what a Writethrough write does), and the pwrite alone. The
// region, and the file's part written, are 192 MiB (bench's working set)
// or 16 MiB: a Writethrough write leaves two copies of what it writes,
// in ringfs's frames and in the kernel's page cache, and on the machine
// of the README's figures the copy and the pwrite add up over 16 MiB
// but cost far more together than apart over 192 MiB.
func BenchmarkArenaCopy(b *testing.B) {
	const size = 1 << 20
	for _, region := range []int{192 << 20, 16 << 20} {
		b.Run(fmt.Sprintf("region=%dMiB", region>>20), func(b *testing.B) { arenaCopyRegion(b, region, size) })
	}
}

func arenaCopyRegion(b *testing.B, region, size int) {
	arena, err := unix.Mmap(-1, 0, region, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(arena)
	unix.Madvise(arena, unix.MADV_HUGEPAGE)
	clear(arena)
	host, err := os.Create(benchDir(b) + "/arena-copy")
	if err != nil {
		b.Fatal(err)
	}
	defer host.Close()
	p := make([]byte, size)
	for off := int64(0); off < int64(region); off += int64(size) {
		if _, err := host.WriteAt(p, off); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []struct {
		copy   string // none, pages or run
		pwrite bool
	}{{"pages", false}, {"run", false}, {"pages", true}, {"run", true}, {"none", true}} {
		b.Run(fmt.Sprintf("copy=%s/pwrite=%v", c.copy, c.pwrite), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(size))
			at := 0
			for b.Loop() {
				p[at>>12]++
				switch c.copy {
				case "run":
					var ac arenaCopy
					for pg := 0; pg < size; pg += PageSize {
						ac.add(arena, p, at+pg, pg, PageSize)
					}
					ac.flush(arena, p)
				case "pages":
					for pg := 0; pg < size; pg += PageSize {
						copy(arena[at+pg:at+pg+PageSize], p[pg:pg+PageSize])
					}
				}
				if c.pwrite {
					if _, err := host.WriteAt(p, int64(at)); err != nil {
						b.Fatal(err)
					}
				}
				at = (at + size) % region
			}
		})
	}
}
