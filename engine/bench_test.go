//go:build linux

package engine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Benchmarks of the engine against os.File on the same host file, each
// ratio measured in the same run: the os.File sub-benchmark runs first
// and records its figure, the ringfs one reports "x-osfile" (how many
// times faster; for CPU, how many times the os.File CPU per operation).
//
//	go test -run '^$' -bench . -benchtime 2s ./engine/
//
// Files live in a directory made once per process (RINGFS_BENCH_DIR, else
// the system temp dir; the 1 GiB O_DIRECT file wants a disk) and removed
// by TestMain.

var benchDir = sync.OnceValues(func() (string, error) {
	return os.MkdirTemp(os.Getenv("RINGFS_BENCH_DIR"), "ringfs-bench-")
})

// benchFile returns a file of size bytes of random data, created once
// per process with 4 MiB writes.
var benchFiles sync.Map // benchFileKey -> path

type benchFileKey struct{ size, chunk int64 }

func benchFile(b *testing.B, size int64) string { return benchFileChunks(b, size, 4<<20) }

// benchFile4K is benchFile written with 4 KiB writes. How a file was
// written decides the os.File baselines of 4 KiB writes on this machine:
// ext4 on Linux 6.18 keeps data written (or read ahead) in large pieces
// in large folios, and a 4 KiB buffered write into one costs 5–9 µs (the
// kernel walks every block of the folio: ext4_block_write_begin), where
// one into a file written 4 KiB at a time, cached in 4 KiB folios, costs
// under 1 µs. The WriteAt and WriteSync benchmarks measure os.File on
// both.
func benchFile4K(b *testing.B, size int64) string { return benchFileChunks(b, size, 4096) }

func benchFileChunks(b *testing.B, size, chunk int64) string {
	b.Helper()
	key := benchFileKey{size, chunk}
	if p, ok := benchFiles.Load(key); ok {
		return p.(string)
	}
	dir, err := benchDir()
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, fmt.Sprintf("data-%d-%d", size, chunk))
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 4<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		fillData(buf, 99, uint64(off))
		part := buf[:min(int64(len(buf)), size-off)]
		for o := int64(0); o < int64(len(part)); o += chunk {
			if _, err := f.WriteAt(part[o:min(o+chunk, int64(len(part)))], off+o); err != nil {
				f.Close()
				os.Remove(path)
				b.Fatal(err)
			}
		}
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	benchFiles.Store(key, path)
	return path
}

// baselines holds the os.File figures of this run, by benchmark.
var baselines sync.Map // string -> float64

func reportRatio(b *testing.B, key string, value float64, higherIsBetter bool, unit string) {
	v, ok := baselines.Load(key)
	if !ok || value == 0 {
		return
	}
	base := v.(float64)
	if higherIsBetter {
		b.ReportMetric(value/base, unit)
	} else {
		b.ReportMetric(base/value, unit)
	}
}

// pairedRatio runs rounds of k calls of base, then k of ours, and returns
// the total time of base over that of ours. The two alternate every few
// milliseconds, so load from other processes on the machine hits both
// alike; the sub-benchmarks' own ratio compares runs seconds apart.
func pairedRatio(rounds, k int, base, ours func(i int)) float64 {
	r, _, _ := pairedTimes(rounds, k, base, ours)
	return r
}

// pairedTimes is pairedRatio with the mean time per call of each side.
func pairedTimes(rounds, k int, base, ours func(i int)) (ratio float64, baseNs, oursNs float64) {
	var tb, to time.Duration
	for r := range rounds {
		t0 := time.Now()
		for i := range k {
			base(r*k + i)
		}
		t1 := time.Now()
		for i := range k {
			ours(r*k + i)
		}
		tb, to = tb+t1.Sub(t0), to+time.Since(t1)
	}
	n := float64(rounds * k)
	return float64(tb) / float64(to), float64(tb) / n, float64(to) / n
}

// cpuTime returns the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// readAll reads a file through r so that it is cached (by the kernel for
// os.File, by the engine for ringfs).
func readAll(b *testing.B, r interface {
	ReadAt([]byte, int64) (int, error)
}, size int64) {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := r.ReadAt(buf[:min(int64(len(buf)), size-off)], off); err != nil {
			b.Fatal(err)
		}
	}
}

// randOffsets returns n page-aligned offsets in [0, size).
func randOffsets(n int, size int64, seed uint64) []int64 {
	rng := rand.New(rand.NewPCG(seed, 0))
	offs := make([]int64, n)
	for i := range offs {
		offs[i] = rng.Int64N(size/4096) * 4096
	}
	return offs
}

const benchWorkingSet = 64 << 20

// hotEngine opens path in an Exclusive engine whose cache holds the
// working set, and reads the working set into it; both close at cleanup.
func hotEngine(b *testing.B, path string, flag int) (*Engine, *File) {
	e, f := engineFile(b, Options{Mode: Exclusive, CacheSize: 2 * benchWorkingSet}, path, flag)
	readAll(b, f, benchWorkingSet)
	return e, f
}

// engineFile returns a new engine with opts, closed at the end of b, and
// path opened in it with flag.
func engineFile(b *testing.B, opts Options, path string, flag int) (*Engine, *File) {
	e, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	f, err := e.Open(path, flag, 0)
	if err != nil {
		b.Fatal(err)
	}
	return e, f
}

// hotOSFile opens path for reading as an os.File, closed at the end of
// b, and reads the working set through it into the kernel's cache.
func hotOSFile(b *testing.B, path string) *os.File { return hotOSFileFlag(b, path, os.O_RDONLY) }

// hotOSFileFlag is hotOSFile with the open flags given.
func hotOSFileFlag(b *testing.B, path string, flag int) *os.File {
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	readAll(b, f, benchWorkingSet)
	return f
}

// loop4KiB times op at offs (cycled; len(offs) a power of two) for
// b.Loop, 4 KiB per operation, and returns the operations done.
func loop4KiB(b *testing.B, offs []int64, op func(off int64) (int, error)) int {
	b.ReportAllocs()
	b.SetBytes(4096)
	i := 0
	for b.Loop() {
		if _, err := op(offs[i&(len(offs)-1)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	return i
}

// BenchmarkReadAt: random 4 KiB reads of a 64 MiB file that is all in
// cache (the kernel's for os.File, the engine's for ringfs), one
// goroutine. Target: ringfs ≥ 5× os.File, 0 allocs/op.
//
// impl=copy is the floor of any read that copies into the caller's
// buffer: a plain copy of the same 4 KiB out of a 64 MiB Go slice, at the
// same offsets. Its x-osfile is the most a copying read can reach against
// os.File on this machine, whose pread spends most of its time in that
// same copy.
func BenchmarkReadAt(b *testing.B) {
	path := benchFile(b, benchWorkingSet)
	offs := randOffsets(1<<16, benchWorkingSet, 1)
	key := "ReadAt/bs=4KiB/jobs=1"
	b.Run("impl=osfile/bs=4KiB/jobs=1", func(b *testing.B) {
		f := hotOSFile(b, path)
		p := make([]byte, 4096)
		i := loop4KiB(b, offs, func(off int64) (int, error) { return f.ReadAt(p, off) })
		baselines.Store(key, float64(b.Elapsed())/float64(i))
	})
	b.Run("impl=copy/bs=4KiB/jobs=1", func(b *testing.B) {
		src := make([]byte, benchWorkingSet)
		fillData(src, 1, 1)
		p := make([]byte, 4096)
		i := loop4KiB(b, offs, func(off int64) (int, error) { return copy(p, src[off:off+4096]), nil })
		b.StopTimer()
		reportRatio(b, key, float64(b.Elapsed())/float64(i), false, "x-osfile")
	})
	b.Run("impl=ringfs/bs=4KiB/jobs=1", func(b *testing.B) {
		e, f := hotEngine(b, path, os.O_RDONLY)
		p := make([]byte, 4096)
		before := e.Stats()
		i := loop4KiB(b, offs, func(off int64) (int, error) { return f.ReadAt(p, off) })
		ns := float64(b.Elapsed()) / float64(i)
		b.StopTimer()
		reportRatio(b, key, ns, false, "x-osfile")
		d := e.Stats().Sub(before)
		b.ReportMetric(float64(d.Reads.CacheHit.Ops)/float64(i), "hits/op")
		osf, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		defer osf.Close()
		q := make([]byte, 4096)
		ratio, osNs, ourNs := pairedTimes(200, 1000,
			func(i int) { osf.ReadAt(q, offs[i&(len(offs)-1)]) },
			func(i int) { f.ReadAt(q, offs[i&(len(offs)-1)]) })
		b.ReportMetric(ratio, "x-osfile-paired")
		b.ReportMetric(osNs, "paired-osfile-ns")
		b.ReportMetric(ourNs, "paired-ringfs-ns")
	})
	// The same reads from GOMAXPROCS goroutines on one handle: hits of
	// one file must not slow each other down.
	jobs := runtime.GOMAXPROCS(0)
	pkey := fmt.Sprintf("ReadAt/bs=4KiB/jobs=%d", jobs)
	b.Run(fmt.Sprintf("impl=osfile/bs=4KiB/jobs=%d", jobs), func(b *testing.B) {
		f := hotOSFile(b, path)
		parallel4KiB(b, offs, f.ReadAt)
		baselines.Store(pkey, float64(b.Elapsed())/float64(b.N))
	})
	b.Run(fmt.Sprintf("impl=ringfs/bs=4KiB/jobs=%d", jobs), func(b *testing.B) {
		_, f := hotEngine(b, path, os.O_RDONLY)
		parallel4KiB(b, offs, f.ReadAt)
		b.StopTimer()
		reportRatio(b, pkey, float64(b.Elapsed())/float64(b.N), false, "x-osfile")
	})
}

// parallel4KiB runs read at offs (len(offs) a power of two) from
// GOMAXPROCS goroutines for b.N reads in all, each goroutine starting at
// its own place in offs, with a buffer of its own.
func parallel4KiB(b *testing.B, offs []int64, read func([]byte, int64) (int, error)) {
	b.ReportAllocs()
	b.SetBytes(4096)
	var start atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := make([]byte, 4096)
		i := int(start.Add(7919))
		for pb.Next() {
			if _, err := read(p, offs[i&(len(offs)-1)]); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkWriteAt: random 4 KiB writes into a 64 MiB file held in cache
// (Exclusive mode: the engine writes its cache and writes back later).
// Target: ringfs ≥ 10× os.File.
func BenchmarkWriteAt(b *testing.B) {
	path := benchFile(b, benchWorkingSet)
	offs := randOffsets(1<<16, benchWorkingSet, 2)
	key := "WriteAt/bs=4KiB/jobs=1"
	p := make([]byte, 4096)
	fillData(p, 3, 3)
	osRow := func(name, path, key string) {
		b.Run(name, func(b *testing.B) {
			f := hotOSFileFlag(b, path, os.O_RDWR)
			i := loop4KiB(b, offs, func(off int64) (int, error) { return f.WriteAt(p, off) })
			baselines.Store(key, float64(b.Elapsed())/float64(i))
		})
	}
	// The file as benchFile writes it (4 MiB writes), and one written
	// 4 KiB at a time (see benchFile4K).
	osRow("impl=osfile/bs=4KiB/jobs=1", path, key)
	osRow("impl=osfile-4kwritten/bs=4KiB/jobs=1", benchFile4K(b, benchWorkingSet), key+"/4kwritten")
	b.Run("impl=ringfs/bs=4KiB/jobs=1", func(b *testing.B) {
		_, f := hotEngine(b, path, os.O_RDWR)
		i := loop4KiB(b, offs, func(off int64) (int, error) { return f.WriteAt(p, off) })
		ns := float64(b.Elapsed()) / float64(i)
		b.StopTimer()
		reportRatio(b, key, ns, false, "x-osfile")
		reportRatio(b, key+"/4kwritten", ns, false, "x-osfile-4kwritten")
		// Paired, against os.File writes to another file of the same size.
		osf, err := os.OpenFile(benchFile(b, benchWorkingSet+4096), os.O_RDWR, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer osf.Close()
		readAll(b, osf, benchWorkingSet)
		b.ReportMetric(pairedRatio(50, 500,
			func(i int) { osf.WriteAt(p, offs[i&(len(offs)-1)]) },
			func(i int) { f.WriteAt(p, offs[i&(len(offs)-1)]) }), "x-osfile-paired")
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkWriteSync: one operation is N random 4 KiB writes over a
// 64 MiB working set followed by Sync (ringfs) or fsync (os.File), end to
// end. Target: ringfs ≥ 3× os.File.
func BenchmarkWriteSync(b *testing.B) {
	const n = 4096
	path := benchFile(b, benchWorkingSet)
	offs := randOffsets(n*16, benchWorkingSet, 4)
	key := fmt.Sprintf("WriteSync/n=%d", n)
	p := make([]byte, 4096)
	fillData(p, 5, 5)
	osRow := func(name, path, key string) {
		b.Run(name, func(b *testing.B) {
			f := hotOSFileFlag(b, path, os.O_RDWR)
			f.Sync()
			ops := loopWriteSync(b, f, p, offs, n)
			baselines.Store(key, float64(b.Elapsed())/float64(ops))
		})
	}
	// As in BenchmarkWriteAt: the file as written in large pieces, and
	// one written 4 KiB at a time.
	osRow(fmt.Sprintf("impl=osfile/bs=4KiB/n=%d", n), path, key)
	osRow(fmt.Sprintf("impl=osfile-4kwritten/bs=4KiB/n=%d", n), benchFile4K(b, benchWorkingSet), key+"/4kwritten")
	b.Run(fmt.Sprintf("impl=ringfs/bs=4KiB/n=%d", n), func(b *testing.B) {
		e, f := hotEngine(b, path, os.O_RDWR)
		before := e.Stats()
		ops := loopWriteSync(b, f, p, offs, n)
		b.StopTimer()
		reportRatio(b, key, float64(b.Elapsed())/float64(ops), false, "x-osfile")
		reportRatio(b, key+"/4kwritten", float64(b.Elapsed())/float64(ops), false, "x-osfile-4kwritten")
		d := e.Stats().Sub(before)
		b.ReportMetric(float64(d.Cache.WritebackSQEs)/float64(ops), "wb-sqes/op")
		osf, err := os.OpenFile(benchFile(b, benchWorkingSet+4096), os.O_RDWR, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer osf.Close()
		readAll(b, osf, benchWorkingSet)
		osf.Sync()
		b.ReportMetric(pairedRatio(3, 1,
			func(r int) {
				for j := range n {
					osf.WriteAt(p, offs[(r*n+j)%len(offs)])
				}
				osf.Sync()
			},
			func(r int) {
				for j := range n {
					f.WriteAt(p, offs[(r*n+j)%len(offs)])
				}
				f.Sync()
			}), "x-osfile-paired")
	})
}

// loopWriteSync is BenchmarkWriteSync's timed loop: each operation is n
// writes of p at the next offsets of offs, then Sync. It returns the
// operations run.
func loopWriteSync(b *testing.B, f interface {
	WriteAt([]byte, int64) (int, error)
	Sync() error
}, p []byte, offs []int64, n int) int {
	b.ReportAllocs()
	b.SetBytes(int64(n) * int64(len(p)))
	k, ops := 0, 0
	for b.Loop() {
		for range n {
			if _, err := f.WriteAt(p, offs[k%len(offs)]); err != nil {
				b.Fatal(err)
			}
			k++
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		ops++
	}
	return ops
}

// directFile returns a ≥ 1 GiB file for O_DIRECT benchmarks, skipping
// when the filesystem lacks O_DIRECT or has under 3 GiB free.
func directFile(b *testing.B) (string, int64) {
	const size = 1 << 30
	dir, err := benchDir()
	if err != nil {
		b.Fatal(err)
	}
	if _, ok := benchFiles.Load(benchFileKey{size, 4 << 20}); !ok {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil || int64(st.Bavail)*int64(st.Bsize) < 3<<30 {
			b.Skipf("under 3 GiB free in %s", dir)
		}
		if !directSupported(dir) {
			b.Skipf("no O_DIRECT in %s", dir)
		}
	}
	return benchFile(b, size), size
}

// BenchmarkDirectRead: random 4 KiB O_DIRECT reads of a 1 GiB file by 32
// goroutines. Targets: ringfs ≥ 1.3× the IOPS of os.File, with ≤ 0.5× its
// CPU time per read (cpu-ns/op, from getrusage).
func BenchmarkDirectRead(b *testing.B) {
	path, size := directFile(b)
	const jobs = 32
	key := "DirectRead/bs=4KiB/jobs=32"
	run := func(b *testing.B, baseline bool, open func() (interface {
		ReadAt([]byte, int64) (int, error)
	}, func())) {
		r, done := open()
		defer done()
		var seed atomic.Uint64
		b.ReportAllocs()
		b.SetBytes(4096)
		b.SetParallelism((jobs + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		cpu0 := cpuTime()
		var ops atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(seed.Add(1), 7))
			p := alignedBuf(4096)
			n := int64(0)
			for pb.Next() {
				if _, err := r.ReadAt(p, rng.Int64N(size/4096)*4096); err != nil {
					b.Error(err)
					return
				}
				n++
			}
			ops.Add(n)
		})
		cpu := float64(cpuTime()-cpu0) / float64(ops.Load())
		b.ReportMetric(cpu, "cpu-ns/op")
		iops := float64(ops.Load()) / b.Elapsed().Seconds()
		b.ReportMetric(iops, "IOPS")
		if baseline {
			baselines.Store(key+"/iops", iops)
			baselines.Store(key+"/cpu", cpu)
			return
		}
		reportRatio(b, key+"/iops", iops, true, "x-osfile-iops")
		if v, ok := baselines.Load(key + "/cpu"); ok {
			b.ReportMetric(cpu/v.(float64), "x-osfile-cpu")
		}
	}
	b.Run("impl=osfile/bs=4KiB/jobs=32", func(b *testing.B) {
		run(b, true, func() (interface {
			ReadAt([]byte, int64) (int, error)
		}, func()) {
			f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
			if err != nil {
				b.Fatal(err)
			}
			return f, func() { f.Close() }
		})
	})
	b.Run("impl=ringfs/bs=4KiB/jobs=32", func(b *testing.B) {
		var e *Engine
		run(b, false, func() (interface {
			ReadAt([]byte, int64) (int, error)
		}, func()) {
			var err error
			e, err = New(Options{Mode: Exclusive, CacheSize: -1})
			if err != nil {
				b.Fatal(err)
			}
			f, err := e.Open(path, os.O_RDONLY|syscall.O_DIRECT, 0)
			if err != nil {
				b.Fatal(err)
			}
			return f, func() {
				st := e.Stats()
				b.ReportMetric(st.SQEsPerEnter, "sqes/enter")
				e.Close()
			}
		})
	})
}

// BenchmarkSharedRead: random 4 KiB reads of a 64 MiB file in the
// kernel's cache by 32 goroutines, in Shared mode (no cache of ringfs's:
// every read is a read of the host), against 32 goroutines on one
// os.File. x-osfile-cpu is ringfs's CPU time a read over os.File's.
func BenchmarkSharedRead(b *testing.B) {
	const jobs = 32
	path := benchFile(b, benchWorkingSet)
	offs := randOffsets(1<<16, benchWorkingSet, 9)
	key := "SharedRead/bs=4KiB/jobs=32"
	run := func(b *testing.B, read func([]byte, int64) (int, error)) float64 {
		b.SetParallelism((jobs + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
		cpu0 := cpuTime()
		parallel4KiB(b, offs, read)
		cpu := float64(cpuTime()-cpu0) / float64(b.N)
		b.ReportMetric(cpu, "cpu-ns/op")
		return cpu
	}
	b.Run("impl=osfile/bs=4KiB/jobs=32", func(b *testing.B) {
		f := hotOSFile(b, path)
		cpu := run(b, f.ReadAt)
		baselines.Store(key, float64(b.Elapsed())/float64(b.N))
		baselines.Store(key+"/cpu", cpu)
	})
	b.Run("impl=ringfs/bs=4KiB/jobs=32", func(b *testing.B) {
		_, f := engineFile(b, Options{Mode: Shared}, path, os.O_RDONLY)
		cpu := run(b, f.ReadAt)
		b.StopTimer()
		reportRatio(b, key, float64(b.Elapsed())/float64(b.N), false, "x-osfile")
		if v, ok := baselines.Load(key + "/cpu"); ok {
			b.ReportMetric(cpu/v.(float64), "x-osfile-cpu")
		}
	})
}

// BenchmarkReadMiss: random 4 KiB reads of a 1 GiB file by 1 and 16
// goroutines through a 64 MiB cache, with the default options (64 KiB of
// readahead), so that nearly every read misses, against os.File reading
// the same file. readahead-B/op shows that random misses read no
// readahead (pagecache: File.reserveFill).
// io=buffered: the file is in the kernel's cache (the engine's fills read
// it from there); io=direct: nothing is cached by the kernel (O_DIRECT
// os.File against Options.DirectIO), so every read waits for the disk and
// only reads in flight together can go faster. Misses of one file fill in
// parallel (pagecache: a fill reads with the file's lock released);
// lockwaits/op and µs/lockwait show how often a read queued for the
// file's lock, and for how long (Stats.Cache.FileLockWaits).
func BenchmarkReadMiss(b *testing.B) {
	path, size := directFile(b)
	for _, io := range []string{"buffered", "direct"} {
		if io == "buffered" {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			readAll(b, f, size) // into the kernel's cache
			f.Close()
		}
		for _, jobs := range []int{1, 16} {
			key := fmt.Sprintf("ReadMiss/io=%s/jobs=%d", io, jobs)
			for _, impl := range []string{"osfile", "ringfs"} {
				b.Run(fmt.Sprintf("impl=%s/io=%s/bs=4KiB/jobs=%d", impl, io, jobs), func(b *testing.B) {
					var r interface {
						ReadAt([]byte, int64) (int, error)
					}
					var e *Engine
					if impl == "osfile" {
						flag := os.O_RDONLY
						if io == "direct" {
							flag |= syscall.O_DIRECT
						}
						f, err := os.OpenFile(path, flag, 0)
						if err != nil {
							b.Fatal(err)
						}
						defer f.Close()
						r = f
					} else {
						var f *File
						e, f = engineFile(b, Options{Mode: Exclusive, CacheSize: 64 << 20, DirectIO: io == "direct"}, path, os.O_RDONLY)
						r = f
					}
					var before Stats
					if e != nil {
						before = e.Stats()
					}
					var seed atomic.Uint64
					b.ReportAllocs()
					b.SetBytes(4096)
					loop := func(next func() bool) {
						rng := rand.New(rand.NewPCG(seed.Add(1), 11))
						p := alignedBuf(4096)
						for next() {
							if _, err := r.ReadAt(p, rng.Int64N(size/4096)*4096); err != nil {
								b.Error(err)
								return
							}
						}
					}
					cpu0 := cpuTime()
					if jobs == 1 {
						loop(b.Loop)
					} else {
						b.SetParallelism((jobs + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
						b.RunParallel(func(pb *testing.PB) { loop(pb.Next) })
					}
					b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
					ns := float64(b.Elapsed()) / float64(b.N)
					if e == nil {
						baselines.Store(key, ns)
						return
					}
					reportRatio(b, key, ns, false, "x-osfile")
					d := e.Stats().Sub(before)
					b.ReportMetric(float64(d.Cache.Misses)/float64(b.N), "misses/op")
					b.ReportMetric(float64(d.Cache.AdmissionSkips)/float64(b.N), "around/op")
					b.ReportMetric(float64(d.Cache.ReadaheadBytes)/float64(b.N), "readahead-B/op")
					b.ReportMetric(float64(d.Cache.FileLockWaits)/float64(b.N), "lockwaits/op")
					if d.Cache.FileLockWaits > 0 {
						b.ReportMetric(float64(d.Cache.FileLockWaitNs)/float64(d.Cache.FileLockWaits)/1e3, "µs/lockwait")
					}
				})
			}
		}
	}
}

// BenchmarkSubmit: a Submit of 32 random 4 KiB O_DIRECT reads (all
// misses) against 32 os.File preads in a row. Reports SQEs per submitting
// enter and enters per batch from the ring's counters.
func BenchmarkSubmit(b *testing.B) {
	path, size := directFile(b)
	const batch = 32
	key := "Submit/batch=32"
	b.Run("impl=osfile/bs=4KiB/batch=32", func(b *testing.B) {
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		rng := rand.New(rand.NewPCG(8, 8))
		p := alignedBuf(4096)
		b.ReportAllocs()
		b.SetBytes(batch * 4096)
		n := 0
		for b.Loop() {
			for range batch {
				if _, err := f.ReadAt(p, rng.Int64N(size/4096)*4096); err != nil {
					b.Fatal(err)
				}
			}
			n++
		}
		baselines.Store(key, float64(b.Elapsed())/float64(n))
	})
	b.Run("impl=ringfs/bs=4KiB/batch=32", func(b *testing.B) {
		e, err := New(Options{Mode: Exclusive, CacheSize: -1, Backend: "uring"})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		f, err := e.Open(path, os.O_RDONLY|syscall.O_DIRECT, 0)
		if err != nil {
			b.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(8, 9))
		ops := make([]Op, batch)
		for i := range ops {
			ops[i] = Op{File: f, Buf: alignedBuf(4096)}
		}
		before := e.Stats()
		b.ReportAllocs()
		b.SetBytes(batch * 4096)
		n := 0
		for b.Loop() {
			for i := range ops {
				ops[i].Off = rng.Int64N(size/4096) * 4096
			}
			if err := e.Submit(ops); err != nil {
				b.Fatal(err)
			}
			n++
		}
		d := e.Stats().Sub(before)
		reportRatio(b, key, float64(b.Elapsed())/float64(n), false, "x-osfile")
		submitting := d.Ring.Enters - d.Ring.Waits
		b.ReportMetric(float64(d.Ring.SQEs)/float64(max(submitting, 1)), "sqes/enter")
		b.ReportMetric(float64(submitting)/float64(n), "enters/op")
	})
}

// TestReadAtHitZeroAllocs: a cached ReadAt allocates nothing (the
// benchmark's 0 allocs/op, as a test).
func TestReadAtHitZeroAllocs(t *testing.T) {
	checkLeaks(t)
	e := newEngine(t, Options{Mode: Exclusive, CacheSize: 1 << 20})
	path := filepath.Join(t.TempDir(), "f")
	writeHost(t, path, pattern(256<<10, 24, 0))
	f := openFile(t, e, path, os.O_RDWR)
	p := make([]byte, 4096)
	if _, err := f.ReadAt(make([]byte, 256<<10), 0); err != nil {
		t.Fatal(err)
	}
	off := int64(0)
	if a := testing.AllocsPerRun(1000, func() {
		f.ReadAt(p, off)
		off = (off + 4096*7) % (256 << 10)
	}); a != 0 {
		t.Fatalf("cached ReadAt: %v allocations per call", a)
	}
	if a := testing.AllocsPerRun(1000, func() {
		f.WriteAt(p[:100], off+10)
		off = (off + 4096*7) % (256 << 10)
	}); a != 0 {
		t.Fatalf("cached WriteAt: %v allocations per call", a)
	}
	t.Logf("cached ReadAt and WriteAt: 0 allocations per call")
}
