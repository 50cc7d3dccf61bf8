//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestSubmitOneEnter: a Submit of 32 reads that all miss goes to the
// kernel with exactly one submitting io_uring_enter carrying 32 SQEs
// (enters that only wait for completions are counted apart, in Waits):
// O_DIRECT reads on a cached engine, reads on an uncached engine and in
// Shared mode, and cache misses whose fills are batched.
func TestSubmitOneEnter(t *testing.T) {
	checkLeaks(t)
	const batch, stride = 32, 128 << 10 // misses ≥ 64 KiB apart: their fills do not overlap
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	content := pattern(batch*stride, 22, 0)
	writeHost(t, path, content)
	direct := directSupported(dir)
	for _, tc := range []struct {
		name  string
		opts  Options
		flag  int
		trail bool   // read the two pages before each miss first
		sqes  uint64 // per read
	}{
		{"odirect/cached engine", Options{Mode: Exclusive}, os.O_RDONLY | syscall.O_DIRECT, false, 1},
		{"odirect/uncached engine", Options{Mode: Exclusive, CacheSize: -1}, os.O_RDONLY | syscall.O_DIRECT, false, 1},
		{"uncached engine", Options{Mode: Exclusive, CacheSize: -1}, os.O_RDONLY, false, 1},
		{"shared", Options{Mode: Shared}, os.O_RDONLY, false, 1},
		// Random misses read no readahead: one SQE each.
		{"cache misses", Options{Mode: Exclusive}, os.O_RDONLY, false, 1},
		// After a trail of cached pages a miss reads ahead: the requested
		// pages and the readahead behind them go as separate requests (an
		// error in the readahead alone must not fail the read), two SQEs
		// per miss, all in the one enter.
		{"cache misses/after a trail", Options{Mode: Exclusive}, os.O_RDONLY, true, 2},
		{"cache misses/after a trail/readahead 4KiB", Options{Mode: Exclusive, Readahead: 4096}, os.O_RDONLY, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.flag&syscall.O_DIRECT != 0 && !direct {
				t.Skip("no O_DIRECT here")
			}
			o := tc.opts
			o.Backend = "uring"
			e := newEngine(t, o)
			f := openFile(t, e, path, tc.flag)
			rng := rand.New(rand.NewPCG(22, 1))
			ops := make([]Op, batch)
			for i := range ops {
				off := int64(i)*stride + (3+rng.Int64N(stride/4096-19))*4096 // pages 3 to 15 of the stride
				ops[i] = Op{File: f, Buf: alignedBuf(4096), Off: off}
				if tc.trail {
					// A random read of two pages (no readahead): the trail
					// a sequential reader would leave before the miss.
					if n, err := f.ReadAt(make([]byte, 8192), off-8192); n != 8192 || err != nil {
						t.Fatalf("ReadAt(8192 at %d): %d, %v", off-8192, n, err)
					}
				}
			}
			before := e.Stats()
			if err := e.Submit(ops); err != nil {
				t.Fatal(err)
			}
			d := e.Stats().Sub(before)
			for i, op := range ops {
				if op.N != 4096 || op.Err != nil || !bytes.Equal(op.Buf, content[op.Off:op.Off+4096]) {
					t.Fatalf("op %d: %d, %v, data right %v", i, op.N, op.Err, bytes.Equal(op.Buf, content[op.Off:op.Off+4096]))
				}
			}
			submitting := d.Ring.Enters - d.Ring.Waits
			if submitting != 1 || d.Ring.SQEs != batch*tc.sqes {
				t.Fatalf("%d reads: %d submitting enters (of %d, %d waits), %d SQEs; want 1 enter with %d SQEs",
					batch, submitting, d.Ring.Enters, d.Ring.Waits, d.Ring.SQEs, batch*tc.sqes)
			}
			if d.CacheEnabled && tc.flag&syscall.O_DIRECT == 0 && (d.Cache.FillBatches != 1 || d.Cache.Misses != batch) {
				t.Fatalf("cache: %d fill batches, %d misses; want 1, %d", d.Cache.FillBatches, d.Cache.Misses, batch)
			}
			t.Logf("%d missing reads: 1 submitting io_uring_enter, %d SQEs (%d waiting enters)", batch, d.Ring.SQEs, d.Ring.Waits)
		})
	}
}

// vmRSS returns the process's resident set in bytes.
func vmRSS(t testing.TB) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestRSSBound: random 4 KiB reads all over an 8 GiB sparse file through
// a 256 MiB cache keep the process's resident memory within the cache
// plus 64 MiB: the cache is a hard bound whatever the file size.
func TestRSSBound(t *testing.T) {
	if raceEnabled {
		// Under -race VmRSS also counts the race detector's shadow of the
		// arena and of the heap (about 420 MiB peak here): the bound is
		// checked by the run without -race.
		t.Skip("VmRSS includes the race detector's shadow memory; run without -race")
	}
	checkLeaks(t)
	const fileSize, cacheSize, slack = 8 << 30, 256 << 20, 64 << 20
	// A random miss fills its own page only (no readahead), so the first
	// 65,536 fill the cache; later ones are read around it, except those
	// whose page or the one before was missed recently (the cache's ghost
	// queue), which are admitted and evict.
	reads := 100_000 * soakFactor()
	runtime.GC()
	debug.FreeOSMemory()
	base := vmRSS(t)
	e := newEngine(t, Options{Mode: Exclusive, CacheSize: cacheSize})
	path := filepath.Join(t.TempDir(), "sparse")
	if err := os.WriteFile(path, []byte("head"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fileSize); err != nil {
		t.Skipf("cannot make an 8 GiB sparse file here: %v", err)
	}
	f := openFile(t, e, path, os.O_RDONLY)
	rng := rand.New(rand.NewPCG(23, 0))
	p := make([]byte, 4096)
	var peak int64
	for i := range reads {
		off := rng.Int64N(fileSize/4096) * 4096
		if n, err := f.ReadAt(p, off); n != 4096 || err != nil {
			t.Fatalf("ReadAt(%d): %d, %v", off, n, err)
		}
		if off != 0 && firstNonzeroByte(p) >= 0 {
			t.Fatalf("a hole at %d read nonzero bytes", off)
		}
		if i%5000 == 4999 {
			peak = max(peak, vmRSS(t))
		}
	}
	st := e.Stats()
	if st.Cache.ResidentBytes != cacheSize || st.Cache.Evictions == 0 {
		t.Fatalf("the cache did not fill and turn over: resident %d of %d, %d evictions", st.Cache.ResidentBytes, cacheSize, st.Cache.Evictions)
	}
	if peak > cacheSize+slack {
		t.Fatalf("VmRSS peaked at %d MiB (%d MiB before the engine), over the %d MiB cache + %d MiB", peak>>20, base>>20, cacheSize>>20, slack>>20)
	}
	t.Logf("%d random reads over 8 GiB: VmRSS peak %d MiB (%d MiB before), cache resident %d MiB, %d evictions; bound %d MiB",
		reads, peak>>20, base>>20, st.Cache.ResidentBytes>>20, st.Cache.Evictions, (cacheSize+slack)>>20)
}

// TestSubmitOtherEngine: a Submit may carry operations on handles of
// another engine. That engine serves them, as ReadAt and WriteAt would:
// the results are right, the submitting engine's cache, ring and counters
// are not involved, and a closed handle or engine fails with ErrClosed.
// (Such reads once went into the submitting engine's page cache, with the
// other engine's file, and failed with EFAULT.)
func TestSubmitOtherEngine(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		name string
		opts Options // the handle's engine
		flag int
	}{
		{"exclusive", Options{Mode: Exclusive, CacheSize: 1 << 20}, os.O_RDWR},
		{"writethrough", Options{Mode: Writethrough}, os.O_RDWR},
		{"shared", Options{Mode: Shared}, os.O_RDWR},
		{"nocache", Options{CacheSize: -1}, os.O_RDWR},
		{"direct", Options{Mode: Exclusive}, os.O_RDWR | syscall.O_DIRECT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.flag&syscall.O_DIRECT != 0 && !directSupported(dir) {
				t.Skipf("no O_DIRECT in %s", dir)
			}
			path := filepath.Join(dir, "f")
			want := pattern(1<<20, 7, 1)
			writeHost(t, path, want)
			e1 := newEngine(t, Options{})
			e2 := newEngine(t, tc.opts)
			f := openFile(t, e2, path, tc.flag)
			// Cached pages (the first 64 KiB, read ahead), to be hit:
			// the batch then holds both hits and misses of another
			// engine's cache.
			if _, err := f.ReadAt(alignedBuf(4096), 0); err != nil {
				t.Fatal(err)
			}
			src := alignedBuf(4096)
			copy(src, pattern(4096, 7, 2))
			ops := []Op{
				{File: f, Buf: alignedBuf(4096), Off: 0},
				{File: f, Buf: alignedBuf(8192), Off: 512 << 10},
				{File: f, Write: true, Buf: src, Off: 256 << 10},
				{File: f, Buf: alignedBuf(4096), Off: 1020 << 10},
			}
			if err := e1.Submit(ops); err != nil {
				t.Fatalf("Submit: %v", err)
			}
			copy(want[256<<10:], src)
			for i, op := range ops {
				if op.Err != nil || op.N != len(op.Buf) {
					t.Fatalf("op %d (write %v, %d bytes at %d): %d, %v", i, op.Write, len(op.Buf), op.Off, op.N, op.Err)
				}
				if !op.Write && !bytes.Equal(op.Buf, want[op.Off:op.Off+int64(len(op.Buf))]) {
					t.Fatalf("op %d: read bytes that are not the file's at %d", i, op.Off)
				}
			}
			got := alignedBuf(len(want))
			if n, err := f.ReadAt(got, 0); n != len(want) || err != nil || !bytes.Equal(got, want) {
				t.Fatalf("ReadAt after the batch: %d, %v, content equal %v", n, err, bytes.Equal(got, want))
			}
			s1, s2 := e1.Stats(), e2.Stats()
			if s1.Reads.Ops() != 0 || s1.Writes.Ops() != 0 || s1.Cache.Misses != 0 || s1.Ring.Requests != 0 {
				t.Errorf("the submitting engine served the other's operations: reads %d, writes %d, misses %d, ring requests %d",
					s1.Reads.Ops(), s1.Writes.Ops(), s1.Cache.Misses, s1.Ring.Requests)
			}
			if s2.Reads.Ops() < 4 || s2.Writes.Ops() != 1 {
				t.Errorf("the handle's engine counted %d reads and %d writes, want ≥ 4 and 1", s2.Reads.Ops(), s2.Writes.Ops())
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			ops = []Op{{File: f, Buf: make([]byte, 10)}, {File: f, Write: true, Buf: []byte("x")}}
			e1.Submit(ops)
			for i, op := range ops {
				if !errors.Is(op.Err, fs.ErrClosed) || op.N != 0 {
					t.Errorf("op %d on a closed handle of another engine: %d, %v", i, op.N, op.Err)
				}
			}
			g := openFile(t, e2, path, tc.flag)
			if err := e2.Close(); err != nil {
				t.Fatal(err)
			}
			ops = []Op{{File: g, Buf: make([]byte, 10)}}
			e1.Submit(ops)
			if !errors.Is(ops[0].Err, fs.ErrClosed) {
				t.Errorf("op on a handle of a closed engine: %d, %v", ops[0].N, ops[0].Err)
			}
		})
	}
}
