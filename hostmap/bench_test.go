//go:build linux

package hostmap

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const benchFileSize = 1 << 30

// bench holds the 1 GiB file and its mappings, made once per process and
// shared by every run of the benchmarks.
var bench struct {
	once    sync.Once
	skip    string
	err     error
	dir     string // removed by TestMain; empty for RINGFS_BENCH_FILE
	f       *os.File
	whole   []byte  // plain mmap of the whole file
	m       *Mapper // holds references on the whole file
	offsets [1 << 16]int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bench.dir != "" {
		os.RemoveAll(bench.dir)
	}
	os.Exit(code)
}

// hotFile returns the benchmark file, in the page cache and mapped both
// whole and through a Mapper, every page touched once. RINGFS_BENCH_FILE
// names an existing file of at least 1 GiB to use instead of a new one.
func hotFile(b *testing.B) {
	bench.once.Do(func() { bench.err = setupHotFile() })
	if bench.skip != "" {
		b.Skip(bench.skip)
	}
	if bench.err != nil {
		b.Fatal(bench.err)
	}
}

func setupHotFile() error {
	path := os.Getenv("RINGFS_BENCH_FILE")
	if path == "" {
		dir, err := os.MkdirTemp("", "hostmap-bench-")
		if err != nil {
			return err
		}
		bench.dir = dir
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			return err
		}
		if free := st.Bavail * uint64(st.Bsize); free < 2<<30 {
			bench.skip = fmt.Sprintf("%d MiB free in %s, need 2 GiB", free>>20, dir)
			return nil
		}
		path = filepath.Join(dir, "hot")
		if err := writeBenchFile(path); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if fi, err := f.Stat(); err != nil || fi.Size() < benchFileSize {
		return fmt.Errorf("%s: need a file of at least 1 GiB (%v)", path, err)
	}
	bench.f = f
	bench.whole, err = unix.Mmap(int(f.Fd()), 0, benchFileSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return err
	}
	bench.m = NewMapper(int(f.Fd()))
	if err := bench.m.IncRef(Range{0, benchFileSize}); err != nil {
		return err
	}
	// Touch every page through all three paths so that the measured loop
	// finds the file cached and mapped (fio's time-based run amortises its
	// own first touches the same way).
	page := make([]byte, 4096)
	var sum byte
	for off := int64(0); off < benchFileSize; off += 4096 {
		if _, err := f.ReadAt(page, off); err != nil {
			return err
		}
		sum += bench.whole[off]
		if _, err := bench.m.ReadAt(page, off); err != nil {
			return err
		}
	}
	_ = sum
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range bench.offsets {
		bench.offsets[i] = rng.Int64N(benchFileSize/4096) * 4096
	}
	return nil
}

// writeBenchFile writes 1 GiB of non-zero, non-repeating-by-block data in
// 1 MiB blocks (no holes).
func writeBenchFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	block := make([]byte, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range block {
		block[i] = byte(rng.Uint32()) | 1
	}
	for off := int64(0); off < benchFileSize; off += int64(len(block)) {
		copy(block, strconv.FormatInt(off, 16))
		if _, err := f.WriteAt(block, off); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// BenchmarkReadAt: 4 KiB random reads of a hot 1 GiB file, one goroutine:
// os.File.ReadAt (pread), a plain copy out of a whole-file mmap, and the
// Mapper's ReadAt (chunk lookup + SafeCopy). The hostmap run reports its
// IOPS ratio to the baselines measured just before it, and to fio's mmap
// engine when RINGFS_FIO_IOPS is set (see testdata/fio-mmap.sh).
//
// On a shared machine wall time includes the time other processes hold
// the CPU, so each run also reports the process CPU time per read
// (cpu-ns/op) and IOPS per CPU second, and the hostmap run the ratios of
// those (x_*_cpu; x_fio_cpu against RINGFS_FIO_IOPS_PER_CPU, fio's IOPS
// over its usr+sys CPU share).
func BenchmarkReadAt(b *testing.B) {
	hotFile(b)
	nsPerOp := map[string]float64{}
	cpuPerOp := map[string]float64{}
	impls := []struct {
		name string
		read func(dst []byte, off int64) (int, error)
	}{
		{"osfile", bench.f.ReadAt},
		{"mmap", func(dst []byte, off int64) (int, error) { return copy(dst, bench.whole[off:]), nil }},
		{"hostmap", bench.m.ReadAt},
	}
	for _, impl := range impls {
		b.Run("impl="+impl.name+"/bs=4KiB", func(b *testing.B) {
			dst := make([]byte, 4096)
			b.ReportAllocs()
			b.SetBytes(int64(len(dst)))
			i := 0
			cpu0 := processCPU()
			for b.Loop() {
				if n, err := impl.read(dst, bench.offsets[i&(len(bench.offsets)-1)]); n != len(dst) || err != nil {
					b.Fatalf("read: %d, %v", n, err)
				}
				i++
			}
			cpu := float64(processCPU()-cpu0) / float64(b.N)
			ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
			nsPerOp[impl.name], cpuPerOp[impl.name] = ns, cpu
			b.ReportMetric(1e9/ns, "IOPS")
			b.ReportMetric(cpu, "cpu-ns/op")
			b.ReportMetric(1e9/cpu, "IOPS/cpu")
			if impl.name != "hostmap" {
				return
			}
			for _, base := range []string{"osfile", "mmap"} {
				if bns := nsPerOp[base]; bns > 0 {
					b.ReportMetric(bns/ns, "x_"+base)
					b.ReportMetric(cpuPerOp[base]/cpu, "x_"+base+"_cpu")
				}
			}
			if fio, err := strconv.ParseFloat(os.Getenv("RINGFS_FIO_IOPS"), 64); err == nil && fio > 0 {
				b.ReportMetric(1e9/ns/fio, "x_fio")
			}
			if fio, err := strconv.ParseFloat(os.Getenv("RINGFS_FIO_IOPS_PER_CPU"), 64); err == nil && fio > 0 {
				b.ReportMetric(1e9/cpu/fio, "x_fio_cpu")
			}
		})
	}
}

// processCPU returns the user and system CPU time of the process, in ns.
func processCPU() int64 {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkMapClose: Map + Close of a 4 KiB range inside a chunk that is
// already mapped (another reference holds it), with a caller-provided
// Mapping (MapInto) and an allocated one (Map), against mmap+munmap of the
// same 4 KiB with system calls. cpu-ns/op is the process CPU time per
// iteration, less disturbed than ns/op by other load on the machine.
func BenchmarkMapClose(b *testing.B) {
	f := newFile(b, 2*ChunkSize, os.O_RDWR)
	m := NewMapper(int(f.Fd()))
	defer m.Close()
	if err := m.IncRef(Range{0, 2 * ChunkSize}); err != nil {
		b.Fatal(err)
	}
	if _, err := m.ReadAt(make([]byte, 1), 0); err != nil {
		b.Fatal(err)
	}
	var syscallNs float64
	const off = 64 << 10
	b.Run("api=syscall/bs=4KiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(4096)
		for b.Loop() {
			p, err := unix.MmapPtr(int(f.Fd()), off, nil, 4096, unix.PROT_READ, unix.MAP_SHARED)
			if err != nil {
				b.Fatal(err)
			}
			_ = *(*byte)(p)
			if err := unix.MunmapPtr(p, 4096); err != nil {
				b.Fatal(err)
			}
		}
		syscallNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	})
	report := func(b *testing.B, cpu0 int64) {
		b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
		if ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N); syscallNs > 0 {
			b.ReportMetric(syscallNs/ns, "x_syscall")
		}
	}
	b.Run("api=MapInto/bs=4KiB", func(b *testing.B) {
		var mp Mapping
		b.ReportAllocs()
		b.SetBytes(4096)
		cpu0 := processCPU()
		for b.Loop() {
			if err := m.MapInto(&mp, off, 4096, false); err != nil {
				b.Fatal(err)
			}
			_ = mp.Bytes()[0]
			if err := mp.Close(); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
	b.Run("api=Map/bs=4KiB", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(4096)
		cpu0 := processCPU()
		for b.Loop() {
			mp, err := m.Map(off, 4096, false)
			if err != nil {
				b.Fatal(err)
			}
			_ = mp.Bytes()[0]
			if err := mp.Close(); err != nil {
				b.Fatal(err)
			}
		}
		report(b, cpu0)
	})
}

// BenchmarkSafeCopy: the cost of fault protection over a plain copy out of
// a file mapping.
func BenchmarkSafeCopy(b *testing.B) {
	f := newFile(b, ChunkSize, os.O_RDWR)
	src, err := unix.Mmap(int(f.Fd()), 0, ChunkSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		b.Fatal(err)
	}
	defer unix.Munmap(src)
	for _, bs := range []int{4 << 10, 128 << 10} {
		dst := make([]byte, bs)
		var plainNs float64
		b.Run(fmt.Sprintf("impl=copy/bs=%dKiB", bs>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(bs))
			for b.Loop() {
				copy(dst, src[bs:])
			}
			plainNs = float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		})
		b.Run(fmt.Sprintf("impl=safecopy/bs=%dKiB", bs>>10), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(bs))
			for b.Loop() {
				if _, err := SafeCopy(dst, src[bs:]); err != nil {
					b.Fatal(err)
				}
			}
			if ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N); plainNs > 0 {
				b.ReportMetric(ns/plainNs, "x_copy_time")
			}
		})
	}
}

// BenchmarkReadAtParallel: BenchmarkReadAt with one reader per GOMAXPROCS
// (testing's RunParallel, so it cannot use b.Loop): the Mapper's
// lock-free chunk lookup should scale like the plain mmap.
func BenchmarkReadAtParallel(b *testing.B) {
	hotFile(b)
	nsPerOp := map[string]float64{}
	impls := []struct {
		name string
		read func(dst []byte, off int64) (int, error)
	}{
		{"osfile", bench.f.ReadAt},
		{"mmap", func(dst []byte, off int64) (int, error) { return copy(dst, bench.whole[off:]), nil }},
		{"hostmap", bench.m.ReadAt},
	}
	for _, impl := range impls {
		b.Run(fmt.Sprintf("impl=%s/bs=4KiB/jobs=%d", impl.name, runtime.GOMAXPROCS(0)), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(4096)
			var seed atomic.Uint64
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				dst := make([]byte, 4096)
				i := int(seed.Add(7919))
				for pb.Next() {
					if n, err := impl.read(dst, bench.offsets[i&(len(bench.offsets)-1)]); n != len(dst) || err != nil {
						b.Errorf("read: %d, %v", n, err)
						return
					}
					i++
				}
			})
			ns := float64(time.Since(start).Nanoseconds()) / float64(b.N)
			nsPerOp[impl.name] = ns
			b.ReportMetric(1e9/ns, "IOPS")
			if impl.name == "hostmap" {
				for _, base := range []string{"osfile", "mmap"} {
					if bns := nsPerOp[base]; bns > 0 {
						b.ReportMetric(bns/ns, "x_"+base)
					}
				}
			}
		})
	}
}
