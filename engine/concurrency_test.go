//go:build linux

package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ringfs/ringfs/uring/fault"
)

// Concurrency (TESTPLAN K1, K3, K7), run under -race by the rows of
// reliability_concurrency_test.go, which call the helpers below.

var concModes = []struct {
	name string
	opts Options
}{
	{"exclusive/4MiB", Options{Mode: Exclusive, CacheSize: 4 << 20}}, // the default size costs a second to set up under -race
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
	{"exclusive/tiny/psync", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: "psync"}},
	{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
	{"directio/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, DirectIO: true}},
}

// disjointGoroutines (K1): 64 goroutines own disjoint ranges of one
// file (their edges share pages) and write, read, batch and sync them
// through several handles; every read is checked against the
// goroutine's own model, and the host ends equal to all of them.
func disjointGoroutines(t *testing.T, fig *Figures) {
	const goroutines = 64
	const span = 16<<10 + 100 // not a page multiple: neighbours share pages
	ops := 150
	if !raceEnabled {
		ops = 600
	}
	seed := fsxSeed(t)
	fig.Set("goroutines", goroutines)
	fig.Set("configs", int64(len(concModes)))
	for _, mode := range concModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(t.TempDir(), "f")
			writeHost(t, path, nil)
			var handles []*File
			for range 4 {
				handles = append(handles, openFile(t, e, path, os.O_RDWR))
			}
			ro := openFile(t, e, path, os.O_RDONLY)
			models := make([][]byte, goroutines)
			var wg sync.WaitGroup
			var failed atomic.Pointer[error]
			var violations, reads atomic.Int64
			fail := func(err error) { violations.Add(1); failed.CompareAndSwap(nil, &err) }
			var total atomic.Int64
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, uint64(g)))
					base := int64(g) * span
					model := make([]byte, span) // zeros: the file is sparse until written
					h := handles[g%len(handles)]
					for i := 0; i < ops && failed.Load() == nil; i++ {
						off := rng.Int64N(span)
						n := 1 + rng.Int64N(min(span-off, 6000))
						switch k := rng.IntN(20); {
						case k < 8:
							p := pattern(int(n), seed, uint64(g)<<32|uint64(i))
							if w, err := h.WriteAt(p, base+off); w != int(n) || err != nil {
								fail(fmt.Errorf("goroutine %d: WriteAt(%d, %d): %d, %v", g, n, base+off, w, err))
								return
							}
							copy(model[off:], p)
						case k < 16:
							r := h
							if k == 15 {
								r = ro
							}
							p := make([]byte, n)
							got, err := r.ReadAt(p, base+off)
							// Bytes past the file's end read short; ranges
							// above this one may not be written yet.
							if err != nil && err != io.EOF {
								fail(fmt.Errorf("goroutine %d: ReadAt: %v", g, err))
								return
							}
							if !bytes.Equal(p[:got], model[off:off+int64(got)]) {
								fail(fmt.Errorf("goroutine %d: ReadAt(%d, %d): data differs at %d", g, n, base+off, base+off+int64(diffAt(p[:got], model[off:off+int64(got)]))))
								return
							}
							if int64(got) < n && firstNonzeroByte(model[off+int64(got):off+n]) >= 0 {
								fail(fmt.Errorf("goroutine %d: ReadAt(%d, %d) stopped at %d before written bytes", g, n, base+off, got))
								return
							}
							reads.Add(1)
						case k < 18:
							// A batch: a write and a read of disjoint halves.
							half := int64(span / 2)
							p := pattern(int(min(n, half)), seed, uint64(g)<<32|uint64(i)|1<<31)
							woff := rng.Int64N(half - int64(len(p)) + 1)
							q := make([]byte, min(n, half))
							roff := half + rng.Int64N(half-int64(len(q))+1)
							batch := []Op{{File: h, Write: true, Buf: p, Off: base + woff}, {File: h, Buf: q, Off: base + roff}}
							if err := e.Submit(batch); err != nil {
								fail(err)
								return
							}
							if batch[0].N != len(p) || batch[0].Err != nil {
								fail(fmt.Errorf("goroutine %d: Submit write: %d, %v", g, batch[0].N, batch[0].Err))
								return
							}
							got := batch[1].N
							if (batch[1].Err != nil && batch[1].Err != io.EOF) || !bytes.Equal(q[:got], model[roff:roff+int64(got)]) {
								fail(fmt.Errorf("goroutine %d: Submit read: %d, %v", g, got, batch[1].Err))
								return
							}
							reads.Add(1)
							copy(model[woff:], p)
						case k < 19:
							if err := h.Sync(); err != nil {
								fail(fmt.Errorf("goroutine %d: Sync: %v", g, err))
								return
							}
						default:
							if _, err := h.Stat(); err != nil {
								fail(err)
								return
							}
						}
						total.Add(1)
					}
					models[g] = model
				}()
			}
			wg.Wait()
			fig.Add("ops", total.Load())
			fig.Add("reads_checked", reads.Load())
			fig.Add("violations", violations.Load())
			if p := failed.Load(); p != nil {
				t.Fatalf("seed %d (RINGFS_FSX_SEED): %v", seed, *p)
			}
			for _, h := range append(handles, ro) {
				if err := h.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			want := bytes.Join(models, nil)
			host := readHost(t, path)
			if len(host) > len(want) {
				fig.Add("violations", 1)
				t.Fatalf("host %d bytes, more than the %d written", len(host), len(want))
			}
			if i := diffAt(host, want[:len(host)]); i >= 0 {
				fig.Add("violations", 1)
				t.Fatalf("seed %d: host differs from the models at %d (goroutine %d)", seed, i, i/span)
			}
			if firstNonzeroByte(want[len(host):]) >= 0 {
				fig.Add("violations", 1)
				t.Fatalf("host ends at %d, before written bytes", len(host))
			}
			t.Logf("%d goroutines, %d operations (seed %d): every read right, host equals the models", goroutines, total.Load(), seed)
		})
	}
}

// heldFds returns the descriptors a handle and its inode hold.
func heldFds(f *File) []int {
	out := []int{int(f.fd)}
	ino := f.ino
	ino.mu.Lock()
	defer ino.mu.Unlock()
	for _, fd := range append([]int32{ino.fd, ino.dfd}, ino.retired...) {
		if fd >= 0 {
			out = append(out, int(fd))
		}
	}
	return out
}

// onlyBytes returns the index of the first byte of p that is neither a
// nor b, or -1.
func onlyBytes(p []byte, a, b byte) int {
	for i, c := range p {
		if c != a && c != b {
			return i
		}
	}
	return -1
}

// closeRacingIO (K3): 32 goroutines keep hundreds of calls in flight on
// a handle (single calls and batches of up to 32 operations) while it is
// closed. Each call succeeds or fails with fs.ErrClosed, nothing else,
// and every byte a straggler reads is one the victim file can hold
// (zero, or the stragglers' junk). Right after the Close, new files are
// opened, so that they likely get the descriptor numbers the closed
// handle and its inode held, while the stragglers go on calling the
// closed handle: the new files must stay untouched, in the engine and on
// the host.
func closeRacingIO(t *testing.T, fig *Figures) {
	fig.Set("configs", int64(len(concModes)))
	for _, mode := range concModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			dir := t.TempDir()
			victim := filepath.Join(dir, "victim")
			writeHost(t, victim, make([]byte, 64<<10))
			h := openFile(t, e, victim, os.O_RDWR)
			oldFds := heldFds(h)
			const goroutines = 32
			var wg sync.WaitGroup
			var ok, closed, calls, badBytes atomic.Int64
			var failed atomic.Pointer[error]
			stop := make(chan struct{})
			started := make(chan struct{}, goroutines)
			junk := bytes.Repeat([]byte{0xEE}, 4096)
			checkRead := func(p []byte, n int, off int64) {
				if i := onlyBytes(p[:n], 0, 0xEE); i >= 0 {
					badBytes.Add(1)
					err := fmt.Errorf("a read of the closing handle at %d returned byte %#x at %d: not the victim's", off, p[i], off+int64(i))
					failed.CompareAndSwap(nil, &err)
				}
			}
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					started <- struct{}{}
					for {
						select {
						case <-stop:
							return
						default:
						}
						var err error
						off := rng.Int64N(60 << 10)
						switch rng.IntN(8) {
						case 0, 1:
							_, err = h.WriteAt(junk[:1+rng.IntN(4096)], off)
						case 2, 3:
							p := make([]byte, 1+rng.IntN(8192))
							var n int
							n, err = h.ReadAt(p, off)
							checkRead(p, n, off)
							if err == io.EOF {
								err = nil
							}
						case 4:
							err = h.Sync()
						case 5:
							_, err = h.Stat()
						case 6:
							_, err = h.Seek(off, io.SeekStart)
						default:
							// A batch of reads and writes: many requests in
							// flight at once.
							ops := make([]Op, 2+rng.IntN(31))
							for i := range ops {
								o := rng.Int64N(60 << 10)
								if i%2 == 0 {
									ops[i] = Op{File: h, Buf: make([]byte, 1+rng.IntN(4096)), Off: o}
								} else {
									ops[i] = Op{File: h, Write: true, Buf: junk[:1+rng.IntN(2048)], Off: o}
								}
							}
							e.Submit(ops)
							for i := range ops {
								if !ops[i].Write {
									checkRead(ops[i].Buf, ops[i].N, ops[i].Off)
								}
								if ops[i].Err != nil && ops[i].Err != io.EOF && err == nil {
									err = ops[i].Err
								}
							}
						}
						calls.Add(1)
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, fs.ErrClosed):
							closed.Add(1)
						default:
							failed.CompareAndSwap(nil, &err)
						}
					}
				}()
			}
			for range goroutines {
				<-started
			}
			time.Sleep(20 * time.Millisecond)
			if err := h.Close(); err != nil {
				t.Fatalf("Close under load: %v", err)
			}
			// The next files opened likely get the closed descriptors'
			// numbers; the stragglers keep calling the closed handle.
			var fresh []string
			var contents [][]byte
			var nfs []*File
			newFds := map[int]bool{}
			for i := range 3 {
				path := filepath.Join(dir, fmt.Sprintf("fresh%d", i))
				content := pattern(64<<10, 19, uint64(i))
				writeHost(t, path, content)
				nf := openFile(t, e, path, os.O_RDWR)
				for _, fd := range heldFds(nf) {
					newFds[fd] = true
				}
				fresh, contents, nfs = append(fresh, path), append(contents, content), append(nfs, nf)
			}
			osf, err := os.OpenFile(fresh[0], os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			newFds[int(osf.Fd())] = true
			reused := 0
			for _, fd := range oldFds {
				if newFds[fd] {
					reused++
				}
			}
			time.Sleep(20 * time.Millisecond)
			close(stop)
			wg.Wait()
			osf.Close()
			fig.Add("ops", calls.Load())
			fig.Add("calls_ok", ok.Load())
			fig.Add("calls_closed", closed.Load())
			fig.Add("fds_reused", int64(reused))
			fig.Add("violations", badBytes.Load())
			if hw := int64(e.Stats().Ring.InflightHighMark); hw > fig.snapshot()["inflight_high_water"] {
				fig.Set("inflight_high_water", hw)
			}
			if p := failed.Load(); p != nil {
				fig.Add("calls_other", 1)
				t.Fatalf("a call racing Close failed with neither success nor fs.ErrClosed, or read foreign bytes: %v", *p)
			}
			for i, nf := range nfs {
				got := make([]byte, len(contents[i])+1)
				n, _ := nf.ReadAt(got, 0)
				if !bytes.Equal(got[:n], contents[i]) {
					fig.Add("violations", 1)
					sameBytes(t, "a file opened after Close, through the engine", got[:n], contents[i])
				}
				if err := nf.Close(); err != nil {
					t.Fatal(err)
				}
				if host := readHost(t, fresh[i]); !bytes.Equal(host, contents[i]) {
					fig.Add("violations", 1)
					sameBytes(t, "a file opened after Close, on the host", host, contents[i])
				}
			}
			if i := onlyBytes(readHost(t, victim), 0, 0xEE); i >= 0 {
				fig.Add("violations", 1)
				t.Fatalf("the victim file holds a foreign byte at %d", i)
			}
			if closed.Load() == 0 {
				t.Fatalf("no call saw the handle closed")
			}
			t.Logf("%d calls racing Close: %d succeeded, %d fs.ErrClosed, 0 other; %d of the %d descriptors held reused by the next opens; the new files untouched",
				calls.Load(), ok.Load(), closed.Load(), reused, len(oldFds))
		})
	}
}

// backToBaseline fails the test unless the process is back to the
// resources of before (goroutines, descriptors, rings, engine mappings),
// giving them a while to settle.
func backToBaseline(t *testing.T, before resources, what string) {
	t.Helper()
	if leaks := before.settle(t); len(leaks) > 0 {
		t.Fatalf("%s: not back to the baseline:\n  %s", what, strings.Join(leaks, "\n  "))
	}
}

// engineCloseRacingIO (K7): Engine.Close while 16 goroutines write, read
// and sync its handles: every call succeeds or fails with fs.ErrClosed
// (or EIO where the host is made to fail), Close returns, every write
// that returned is on the host unless Close reported an error, and the
// process is back to its baseline at once (goroutines, descriptors,
// rings, mappings). In the failing configuration, writes fail at random
// from just before Close.
func engineCloseRacingIO(t *testing.T, fig *Figures) {
	type config struct {
		name    string
		opts    Options
		failing bool
	}
	var cfgs []config
	for _, m := range concModes {
		cfgs = append(cfgs, config{name: m.name, opts: m.opts})
	}
	cfgs = append(cfgs, config{"exclusive/failing", Options{Mode: Exclusive, CacheSize: 4 << 20}, true},
		config{"exclusive/tiny/failing", Options{Mode: Exclusive, CacheSize: fsxTinyCache}, true})
	for ci, c := range cfgs {
		t.Run(c.name, func(t *testing.T) {
			before := snapshotResources(t)
			opts := c.opts
			inj := fault.New()
			opts.Injector = inj
			e := newEngine(t, opts)
			dir := t.TempDir()
			const goroutines, nfiles = 16, 4
			var files []*File
			var paths []string
			for i := range nfiles {
				paths = append(paths, filepath.Join(dir, fmt.Sprint(i)))
				files = append(files, openFile(t, e, paths[i], os.O_RDWR|os.O_CREATE))
			}
			var wg sync.WaitGroup
			var calls, closed, failedIO atomic.Int64
			var wrote [goroutines]atomic.Bool
			var failed atomic.Pointer[error]
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f := files[g%nfiles]
					p := pattern(3000, 20, uint64(g))
					for i := 0; ; i++ {
						var err error
						switch i % 4 {
						case 0, 1:
							if _, err = f.WriteAt(p, int64(g*3000)); err == nil {
								wrote[g].Store(true)
							}
						case 2:
							q := make([]byte, 100)
							var n int
							n, err = f.ReadAt(q, int64(g*3000))
							if errors.Is(err, io.EOF) && !wrote[g].Load() {
								// None of its writes has succeeded yet (they
								// fail at random in the failing
								// configurations, and with one P they may
								// all come after the fault is armed): the
								// file may end before its range.
								err = nil
							}
							if err == nil && wrote[g].Load() && !bytes.Equal(q[:n], p[:n]) {
								err = fmt.Errorf("goroutine %d read bytes it did not write", g)
							}
						default:
							err = f.Sync()
						}
						calls.Add(1)
						if errors.Is(err, fs.ErrClosed) {
							closed.Add(1)
							return
						}
						if c.failing && errors.Is(err, syscall.EIO) {
							failedIO.Add(1)
							continue
						}
						if err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
				}()
			}
			time.Sleep(20 * time.Millisecond)
			if c.failing {
				inj.Add(fault.Rule{Name: "EIO", When: fault.And(fault.Writes(), fault.Random(int64(ci), 0.5)), Do: fault.Effect{Errno: syscall.EIO}})
			}
			dirty := int64(0)
			for _, fs := range e.Files() {
				dirty += fs.DirtyBytes
			}
			cerr := e.Close()
			wg.Wait()
			fig.Add("ops", calls.Load())
			fig.Add("violations", 0)
			if p := failed.Load(); p != nil {
				fig.Add("violations", 1)
				t.Fatalf("call racing Engine.Close: %v", *p)
			}
			if closed.Load() != goroutines {
				fig.Add("violations", 1)
				t.Fatalf("%d of %d goroutines ended on fs.ErrClosed", closed.Load(), goroutines)
			}
			switch {
			case cerr == nil:
				// Flushed: every write that returned is on the host.
				for g := range goroutines {
					host := readHost(t, paths[g%nfiles])
					at := g * 3000
					var got []byte
					if len(host) > at {
						got = host[at:min(len(host), at+3000)]
					}
					want := pattern(3000, 20, uint64(g))
					// Without a write that returned, only failed ones
					// (which may have run in part) wrote there.
					partial := func() bool {
						for i, c := range got {
							if c != 0 && c != want[i] {
								return false
							}
						}
						return true
					}
					if wrote[g].Load() && !bytes.Equal(got, want) || !wrote[g].Load() && !partial() {
						fig.Add("acked_bytes_lost", 3000)
						fig.Add("violations", 1)
						t.Fatalf("Engine.Close returned nil but goroutine %d's write (returned: %v) is not what the host holds", g, wrote[g].Load())
					}
				}
				fig.Add("closes_flushed", 1)
			case c.failing && errors.Is(cerr, syscall.EIO):
				fig.Add("closes_reported_error", 1)
			default:
				fig.Add("violations", 1)
				t.Fatalf("Engine.Close under load: %v", cerr)
			}
			backToBaseline(t, before, "after Engine.Close under load")
			fig.Add("baseline_checks", 1)
			t.Logf("%d calls racing Engine.Close (%d EIO); all %d goroutines ended on fs.ErrClosed; %d dirty bytes at Close: %v; back to the baseline",
				calls.Load(), failedIO.Load(), goroutines, dirty, cerr)
		})
	}
}

// TestStatsExactUnderConcurrency: the counters are kept per stripe, so
// that concurrent callers do not share their cache lines; a snapshot
// still sums every call exactly. 8 goroutines hit, write and fail on one
// handle each through one engine.
func TestStatsExactUnderConcurrency(t *testing.T) {
	const (
		goroutines = 8
		reads      = 2000
		writes     = 500
		fails      = 100
		size       = 100
	)
	path := filepath.Join(t.TempDir(), "f")
	writeHost(t, path, pattern(64<<10, 31, 0))
	e := newEngine(t, Options{Mode: Exclusive, LatencySampling: 1})
	warm := openFile(t, e, path, os.O_RDWR)
	if _, err := warm.ReadAt(make([]byte, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	s0 := e.Stats()
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			f := openFile(t, e, path, os.O_RDWR)
			p := make([]byte, size)
			for i := range reads {
				if _, err := f.ReadAt(p, int64((g*reads+i)%600)*size); err != nil {
					t.Error(err)
					return
				}
			}
			for i := range writes {
				if _, err := f.WriteAt(p, int64(g*writes+i)%600*size); err != nil {
					t.Error(err)
					return
				}
			}
			for range fails {
				if _, err := f.ReadAt(p, -1); err == nil {
					t.Error("ReadAt at -1 succeeded")
					return
				}
			}
		})
	}
	wg.Wait()
	d := e.Stats().Sub(s0)
	want := []struct {
		what      string
		got, want uint64
	}{
		{"Reads.CacheHit.Ops", d.Reads.CacheHit.Ops, goroutines * reads},
		{"Reads.CacheHit.Bytes", d.Reads.CacheHit.Bytes, goroutines * reads * size},
		{"Reads.Fill.Ops", d.Reads.Fill.Ops, 0},
		{"Writes.Cache.Ops", d.Writes.Cache.Ops, goroutines * writes},
		{"Writes.Cache.Bytes", d.Writes.Cache.Bytes, goroutines * writes * size},
		{"Cache.Hits", d.Cache.Hits, goroutines * reads},
		{"Cache.HitBytes", d.Cache.HitBytes, goroutines * reads * size},
		{"ReadLatency.Count", d.ReadLatency.Count, goroutines * reads},
		{"WriteLatency.Count", d.WriteLatency.Count, goroutines * writes},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s = %d, want %d", w.what, w.got, w.want)
		}
	}
	// Bad input fails before it is counted as an operation.
	if d.Reads.Ops() != goroutines*reads {
		t.Errorf("Reads.Ops() = %d, want %d", d.Reads.Ops(), goroutines*reads)
	}
	t.Logf("%d goroutines: %d hits, %d cached writes counted exactly", goroutines, d.Reads.CacheHit.Ops, d.Writes.Cache.Ops)
}

// TestStatsLatencyNeverAheadOfOps: snapshots taken while calls run never
// show more timed calls than calls, for reads, writes and syncs, because
// Stats reads the histograms before the counters and record fills them in
// the other order. Every call is timed (LatencySampling 1), so a snapshot
// read in the wrong order would catch calls that finish between its reads.
func TestStatsLatencyNeverAheadOfOps(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	writeHost(t, path, pattern(64<<10, 7, 0))
	e := newEngine(t, Options{Mode: Exclusive, LatencySampling: 1})
	var stop atomic.Bool
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			f := openFile(t, e, path, os.O_RDWR)
			p := make([]byte, 512)
			for i := 0; !stop.Load(); i++ {
				off := int64((g*131+i)%128) * 512
				var err error
				switch {
				case i%64 == 63 && g == 0:
					err = f.Sync()
				case i%2 == 0:
					_, err = f.ReadAt(p, off)
				default:
					_, err = f.WriteAt(p, off)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	// At least 3,000 snapshots, and on until some syncs ran too (the
	// syncing goroutine may start late), for at most 20 seconds.
	const snapshots = 3000
	deadline := time.Now().Add(20 * time.Second)
	bad, taken := 0, 0
	for ; bad < 5 && time.Now().Before(deadline); taken++ {
		s := e.Stats()
		if taken >= snapshots && s.Syncs >= 3 {
			break
		}
		for _, c := range []struct {
			what       string
			timed, ops uint64
		}{
			{"reads", s.ReadLatency.Count, s.Reads.Ops()},
			{"writes", s.WriteLatency.Count, s.Writes.Ops()},
			{"syncs", s.SyncLatency.Count, s.Syncs},
		} {
			if c.timed > c.ops {
				bad++
				t.Errorf("snapshot %d: %d timed %s for %d %s", taken, c.timed, c.what, c.ops, c.what)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	s := e.Stats()
	if s.ReadLatency.Count != s.Reads.Ops() || s.WriteLatency.Count != s.Writes.Ops() || s.SyncLatency.Count != s.Syncs {
		t.Errorf("at rest: %d/%d reads, %d/%d writes, %d/%d syncs timed",
			s.ReadLatency.Count, s.Reads.Ops(), s.WriteLatency.Count, s.Writes.Ops(), s.SyncLatency.Count, s.Syncs)
	}
	if s.Reads.Ops() == 0 || s.Writes.Ops() == 0 || s.Syncs == 0 {
		t.Errorf("the calls did not run: %d reads, %d writes, %d syncs", s.Reads.Ops(), s.Writes.Ops(), s.Syncs)
	}
	t.Logf("%d snapshots over %d reads, %d writes, %d syncs", taken, s.Reads.Ops(), s.Writes.Ops(), s.Syncs)
}

// TestStatsSubOtherEngine: Stats.Sub of a snapshot of another engine
// (one that ran more operations) returns the later engine's own counts,
// not counters wrapped below zero.
func TestStatsSubOtherEngine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	writeHost(t, path, pattern(64<<10, 7, 0))
	busy := newEngine(t, Options{})
	f := openFile(t, busy, path, os.O_RDWR)
	p := make([]byte, 4096)
	for i := range 50 {
		if _, err := f.ReadAt(p, int64(i%16)*4096); err != nil {
			t.Fatal(err)
		}
	}
	old := busy.Stats()
	e := newEngine(t, Options{})
	g := openFile(t, e, path, os.O_RDWR)
	if _, err := g.ReadAt(p, 0); err != nil {
		t.Fatal(err)
	}
	cur := e.Stats()
	if old.StartedUnixNs == cur.StartedUnixNs {
		t.Skip("both engines started in the same nanosecond")
	}
	d := cur.Sub(old)
	if d.Reads.Ops() != cur.Reads.Ops() || d.Ring.Enters != cur.Ring.Enters || d.Cache.Misses != cur.Cache.Misses {
		t.Fatalf("Sub of another engine's snapshot: %d reads, %d enters, %d misses; want this engine's %d, %d, %d",
			d.Reads.Ops(), d.Ring.Enters, d.Cache.Misses, cur.Reads.Ops(), cur.Ring.Enters, cur.Cache.Misses)
	}
	if same := cur.Sub(cur); same.Reads.Ops() != 0 || same.Cache.Misses != 0 {
		t.Fatalf("Sub of itself: %d reads, %d misses", same.Reads.Ops(), same.Cache.Misses)
	}
}
