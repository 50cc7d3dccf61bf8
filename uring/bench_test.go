//go:build linux

package uring

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Benchmarks. Each reports its figure per read and, as a ratio, against a
// baseline measured in the same run just before it (the machine is small
// and shared, so absolute numbers drift): x_vs_pread > 1 means faster than
// the pread loop.

const benchBlock = 4096

// hotSizes are the cached files the read benchmarks use: one that fits in
// the CPU caches, so that a 4 KiB copy costs ~0.2 µs here, and one that
// does not (~0.6 µs per copy on this VM); the copy is a floor no backend
// can go below.
var hotSizes = []struct {
	name string
	size int64
}{{"2MiB", 2 << 20}, {"64MiB", 64 << 20}}

// hotFile returns a file of size bytes whose pages are in the kernel's cache.
func hotFile(b *testing.B, size int64) *os.File {
	b.Helper()
	f := tempFile(b, "hot", randomBytes(1, int(size)), os.O_RDONLY)
	// Read it once so every page is cached.
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(buf)) {
		if _, err := unix.Pread(int(f.Fd()), buf, off); err != nil {
			b.Fatal(err)
		}
	}
	return f
}

// offsets is a fixed pseudo-random sequence of block offsets in [0, size).
func offsets(n int, size int64) []int64 {
	out := make([]int64, n)
	x := uint64(88172645463325252)
	for i := range out {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		out[i] = int64(x%uint64(size/benchBlock)) * benchBlock
	}
	return out
}

// cost is a baseline's price per read: wall time, and CPU time of this
// process (which other processes' load on the shared machine disturbs far
// less).
type cost struct{ wallNs, cpuNs float64 }

// measure runs f (which does ops reads) repeatedly for about d.
func measure(d time.Duration, ops int, f func(i int)) cost {
	f(0) // warm up
	start, cpu := time.Now(), cpuTime()
	n := 0
	for time.Since(start) < d {
		for range 16 {
			f(n)
			n++
		}
	}
	reads := float64(n * ops)
	return cost{float64(time.Since(start).Nanoseconds()) / reads, float64((cpuTime() - cpu).Nanoseconds()) / reads}
}

// report adds the ns/read, cpu_ns/read and ratio metrics of reads done
// in wall time since start and CPU time since cpu.
func report(b *testing.B, reads int, wall time.Duration, cpu time.Duration, base cost) {
	ns := float64(wall.Nanoseconds()) / float64(reads)
	cns := float64(cpu.Nanoseconds()) / float64(reads)
	b.ReportMetric(ns, "ns/read")
	b.ReportMetric(cns, "cpu_ns/read")
	if base.wallNs > 0 {
		b.ReportMetric(base.wallNs/ns, "x_vs_pread")
		b.ReportMetric(base.cpuNs/cns, "x_cpu_vs_pread")
	}
}

// preadLoop reads batch blocks one pread at a time.
func preadLoop(fd int, buf []byte, offs []int64, batch int) func(i int) {
	return func(i int) {
		base := (i * batch) % (len(offs) - batch)
		for j := range batch {
			if _, err := unix.Pread(fd, buf[j*benchBlock:(j+1)*benchBlock], offs[base+j]); err != nil {
				panic(err)
			}
		}
	}
}

// batchLoop reads batch blocks with one Submit.
func batchLoop(be Backend, reqs []Request, offs []int64) func(i int) {
	return func(i int) {
		base := (i * len(reqs)) % (len(offs) - len(reqs))
		for j := range reqs {
			reqs[j].Off = offs[base+j]
		}
		if err := be.Submit(reqs); err != nil {
			panic(err)
		}
	}
}

// BenchmarkBatchRead: 64 reads of 4 KiB from a cached file per Submit.
func BenchmarkBatchRead(b *testing.B) {
	for _, hs := range hotSizes {
		b.Run("file="+hs.name, func(b *testing.B) { benchBatchRead(b, hs.size) })
	}
}

func benchBatchRead(b *testing.B, size int64) {
	f := hotFile(b, size)
	fd := int(f.Fd())
	const batch = 64
	offs := offsets(1<<14, size)
	buf := make([]byte, batch*benchBlock)
	b.Run(fmt.Sprintf("backend=pread/batch=%d/bs=4KiB", batch), func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(batch * benchBlock)
		loop := preadLoop(fd, buf, offs, batch)
		i := 0
		var cpu time.Duration
		for b.Loop() {
			if i == 0 {
				cpu = cpuTime()
			}
			loop(i)
			i++
		}
		report(b, b.N*batch, b.Elapsed(), cpuTime()-cpu, cost{})
	})
	for _, name := range testBackends() {
		b.Run(fmt.Sprintf("backend=%s/batch=%d/bs=4KiB", name, batch), func(b *testing.B) {
			be := openBackend(b, name, Options{})
			reqs := make([]Request, batch)
			for j := range reqs {
				reqs[j] = Request{Op: OpRead, Fd: int32(fd), Buf: buf[j*benchBlock : (j+1)*benchBlock]}
			}
			pread := measure(200*time.Millisecond, batch, preadLoop(fd, buf, offs, batch))
			var native cost
			if name != BackendUring {
				nb := openBackend(b, BackendUring, Options{})
				nreqs := append([]Request(nil), reqs...)
				native = measure(200*time.Millisecond, batch, batchLoop(nb, nreqs, offs))
			}
			loop := batchLoop(be, reqs, offs)
			loop(0)
			before := be.Stats()
			b.ReportAllocs()
			b.SetBytes(batch * benchBlock)
			i := 0
			var cpu time.Duration
			for b.Loop() {
				if i == 0 {
					cpu = cpuTime()
				}
				loop(i)
				i++
			}
			cpu = cpuTime() - cpu
			report(b, b.N*batch, b.Elapsed(), cpu, pread)
			if native.wallNs > 0 {
				reads := float64(b.N * batch)
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/reads/native.wallNs, "x_native_vs_this")
				b.ReportMetric(float64(cpu.Nanoseconds())/reads/native.cpuNs, "x_cpu_native_vs_this")
			}
			if d := be.Stats().Sub(before); d.Enters > 0 {
				b.ReportMetric(d.SQEsPerEnter(), "sqes/enter")
			}
			for j := range reqs {
				if reqs[j].Err != nil || reqs[j].N != benchBlock {
					b.Fatalf("request %d: (%d, %v)", j, reqs[j].N, reqs[j].Err)
				}
			}
		})
	}
}

// parallelPread measures jobs goroutines doing single preads for about d.
func parallelPread(fd int, offs []int64, jobs int, d time.Duration) cost {
	var total atomic.Int64
	var wg sync.WaitGroup
	start, cpu := time.Now(), cpuTime()
	for g := range jobs {
		wg.Go(func() {
			buf := alignedBlock()
			n := 0
			for i := g * 97; time.Since(start) < d; i++ {
				if _, err := unix.Pread(fd, buf, offs[i%len(offs)]); err != nil {
					panic(err)
				}
				n++
			}
			total.Add(int64(n))
		})
	}
	wg.Wait()
	reads := float64(total.Load())
	return cost{float64(time.Since(start).Nanoseconds()) / reads, float64((cpuTime() - cpu).Nanoseconds()) / reads}
}

// alignedBlock returns a page-aligned 4 KiB block (O_DIRECT needs it).
func alignedBlock() []byte {
	b := make([]byte, 2*benchBlock)
	off := int(-uintptr(unsafe.Pointer(&b[0])) & (benchBlock - 1))
	return b[off : off+benchBlock : off+benchBlock]
}

// BenchmarkParallelRead: 32 goroutines each issuing single 4 KiB reads of
// a cached file. Concurrent callers should share enters.
func BenchmarkParallelRead(b *testing.B) {
	for _, hs := range hotSizes {
		b.Run("file="+hs.name, func(b *testing.B) { benchParallelRead(b, hs.size) })
	}
}

func benchParallelRead(b *testing.B, size int64) {
	f := hotFile(b, size)
	fd := int(f.Fd())
	const jobs = 32
	offs := offsets(1<<14, size)
	par := jobs / runtime.GOMAXPROCS(0)
	b.Run(fmt.Sprintf("backend=pread/jobs=%d/bs=4KiB", jobs), func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchBlock)
		b.SetParallelism(par)
		var next atomic.Int64
		start, cpu := time.Now(), cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			buf := alignedBlock()
			i := int(next.Add(97))
			for pb.Next() {
				if _, err := unix.Pread(fd, buf, offs[i%len(offs)]); err != nil {
					panic(err)
				}
				i++
			}
		})
		report(b, b.N, time.Since(start), cpuTime()-cpu, cost{})
	})
	for _, name := range testBackends() {
		b.Run(fmt.Sprintf("backend=%s/jobs=%d/bs=4KiB", name, jobs), func(b *testing.B) {
			be := openBackend(b, name, Options{})
			pread := parallelPread(fd, offs, par*runtime.GOMAXPROCS(0), 300*time.Millisecond)
			before := be.Stats()
			b.ReportAllocs()
			b.SetBytes(benchBlock)
			b.SetParallelism(par)
			b.ResetTimer()
			var next atomic.Int64
			start, cpu := time.Now(), cpuTime()
			b.RunParallel(func(pb *testing.PB) {
				reqs := []Request{{Op: OpRead, Fd: int32(fd), Buf: alignedBlock()}}
				i := int(next.Add(97))
				for pb.Next() {
					reqs[0].Off = offs[i%len(offs)]
					if err := be.Submit(reqs); err != nil || reqs[0].N != benchBlock {
						panic(fmt.Sprint(err, reqs[0].Err))
					}
					i++
				}
			})
			report(b, b.N, time.Since(start), cpuTime()-cpu, pread)
			d := be.Stats().Sub(before)
			if d.Enters > 0 {
				b.ReportMetric(d.SQEsPerEnter(), "sqes/enter")
				b.ReportMetric(float64(d.SQEs)/float64(d.Enters-d.Waits), "sqes/submit_enter")
			}
		})
	}
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// directFile is a file of at least 1 GiB, written fully, opened O_DIRECT.
func directFile(b *testing.B) (*os.File, int64) {
	b.Helper()
	const size = 1 << 30
	dir := b.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		b.Fatal(err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < 2<<30 {
		b.Skipf("only %d MiB free in %s; need 2 GiB", free>>20, dir)
	}
	path := filepath.Join(dir, "direct")
	w, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	chunk := randomBytes(5, 8<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		if _, err := w.WriteAt(chunk, off); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Sync(); err != nil {
		b.Fatal(err)
	}
	w.Close()
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		b.Skipf("O_DIRECT: %v", err)
	}
	// Drop the file's pages, so reads go to the device even without
	// O_DIRECT's help on file systems that cache anyway.
	unix.Fadvise(int(f.Fd()), 0, size, unix.FADV_DONTNEED)
	b.Cleanup(func() { f.Close() })
	return f, size
}

// BenchmarkDirectRead: random 4 KiB O_DIRECT reads with 32 in flight on a
// 1 GiB file, as 32 goroutines with one request each or as one goroutine
// submitting batches of 32; the baseline is 32 goroutines doing O_DIRECT
// pread.
func BenchmarkDirectRead(b *testing.B) {
	f, size := directFile(b)
	fd := int(f.Fd())
	const depth = 32
	offs := offsets(1<<16, size)
	par := depth / runtime.GOMAXPROCS(0)
	var pread cost
	baseline := func() cost {
		if pread.wallNs == 0 {
			pread = parallelPread(fd, offs, depth, time.Second)
		}
		return pread
	}
	b.Run(fmt.Sprintf("backend=pread/jobs=%d/bs=4KiB", depth), func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchBlock)
		b.SetParallelism(par)
		var next atomic.Int64
		start, cpu := time.Now(), cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			buf := alignedBlock()
			i := int(next.Add(97))
			for pb.Next() {
				if _, err := unix.Pread(fd, buf, offs[i%len(offs)]); err != nil {
					panic(err)
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "IOPS")
		report(b, b.N, time.Since(start), cpuTime()-cpu, cost{})
	})
	b.Run(fmt.Sprintf("backend=uring/jobs=%d/bs=4KiB", depth), func(b *testing.B) {
		be := openBackend(b, BackendUring, Options{})
		base := baseline()
		before := be.Stats()
		b.ReportAllocs()
		b.SetBytes(benchBlock)
		b.SetParallelism(par)
		b.ResetTimer()
		var next atomic.Int64
		start, cpu := time.Now(), cpuTime()
		b.RunParallel(func(pb *testing.PB) {
			reqs := []Request{{Op: OpRead, Fd: int32(fd), Buf: alignedBlock()}}
			i := int(next.Add(97))
			for pb.Next() {
				reqs[0].Off = offs[i%len(offs)]
				if err := be.Submit(reqs); err != nil || reqs[0].N != benchBlock {
					panic(fmt.Sprint(err, reqs[0].Err))
				}
				i++
			}
		})
		ns := float64(time.Since(start).Nanoseconds()) / float64(b.N)
		b.ReportMetric(1e9/ns, "IOPS")
		report(b, b.N, time.Since(start), cpuTime()-cpu, base)
		b.ReportMetric(be.Stats().Sub(before).SQEsPerEnter(), "sqes/enter")
	})
	b.Run(fmt.Sprintf("backend=uring/batch=%d/bs=4KiB", depth), func(b *testing.B) {
		be := openBackend(b, BackendUring, Options{})
		base := baseline()
		mem, err := unix.Mmap(-1, 0, depth*benchBlock, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			b.Fatal(err)
		}
		defer unix.Munmap(mem)
		reqs := make([]Request, depth)
		for j := range reqs {
			reqs[j] = Request{Op: OpRead, Fd: int32(fd), Buf: mem[j*benchBlock : (j+1)*benchBlock]}
		}
		loop := batchLoop(be, reqs, offs)
		b.ReportAllocs()
		b.SetBytes(depth * benchBlock)
		i := 0
		var cpu time.Duration
		for b.Loop() {
			if i == 0 {
				cpu = cpuTime()
			}
			loop(i)
			i++
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N*depth)
		b.ReportMetric(1e9/ns, "IOPS")
		report(b, b.N*depth, b.Elapsed(), cpuTime()-cpu, base)
	})
}

// BenchmarkInlineFile: 4 KiB reads and writes of a cached file on tmpfs
// (/dev/shm), through the ring as usual, through the ring marked Inline,
// and as a bare pread/pwrite, one at a time. On tmpfs the kernel hands
// every ring request to a worker thread (InlineFile); x_vs_pread is the
// pread/pwrite time over the row's.
//
//	go test -run '^$' -bench InlineFile ./uring/
func BenchmarkInlineFile(b *testing.B) {
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		b.Skip("no tmpfs at /dev/shm")
	}
	dir, err := os.MkdirTemp("/dev/shm", "uring-bench-")
	if err != nil {
		b.Skip(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, randomBytes(2, 4<<20), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if !InlineFile(int(f.Fd())) {
		b.Fatal("InlineFile is false for a file on tmpfs")
	}
	be := openBackend(b, BackendUring, Options{})
	offs := offsets(1024, 4<<20)
	buf := make([]byte, benchBlock)
	for _, op := range []Op{OpRead, OpWrite} {
		var baseNs float64
		for _, how := range []string{"pread", "ring", "inline"} {
			b.Run(fmt.Sprintf("op=%s/how=%s", map[Op]string{OpRead: "read", OpWrite: "write"}[op], how), func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(benchBlock)
				one := []Request{{Op: op, Fd: int32(f.Fd()), Buf: buf, Inline: how == "inline"}}
				i := 0
				for b.Loop() {
					off := offs[i%len(offs)]
					i++
					if how == "pread" {
						if op == OpRead {
							unix.Pread(int(f.Fd()), buf, off)
						} else {
							unix.Pwrite(int(f.Fd()), buf, off)
						}
						continue
					}
					one[0].Off = off
					if err := be.Submit(one); err != nil || one[0].Err != nil {
						b.Fatal(err, one[0].Err)
					}
				}
				ns := float64(b.Elapsed()) / float64(i)
				if how == "pread" {
					baseNs = ns
				} else if baseNs > 0 {
					b.ReportMetric(baseNs/ns, "x_vs_pread")
				}
			})
		}
	}
}
