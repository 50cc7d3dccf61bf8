//go:build linux

package pagecache

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

// durability wraps a backend and tracks, per page, whether the host holds
// bytes that writeback wrote (fixed or vectored writes from the arena) and
// no fsync has covered yet. A page in that state must still be cached:
// evicting it would make a failed fsync unrecoverable.
type durability struct {
	uring.Backend
	mu       sync.Mutex
	unsynced map[int64]bool // page → written by writeback, not yet fsynced
	fsyncs   int
}

func (d *durability) Submit(reqs []uring.Request) error {
	err := d.Backend.Submit(reqs)
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range reqs {
		r := &reqs[i]
		switch {
		case r.Err != nil:
		case r.Op == uring.OpWriteFixed || r.Op == uring.OpWritev:
			for p := pageOf(r.Off); p < pageEnd(r.Off+int64(r.N)); p++ {
				d.unsynced[p] = true
			}
		case r.Op == uring.OpFsync:
			clear(d.unsynced)
			d.fsyncs++
		}
	}
	return err
}

// forget drops the pages at or past size (truncated away on the host).
func (d *durability) forget(size int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.unsynced {
		if p >= pageEnd(size) {
			delete(d.unsynced, p)
		}
	}
}

// check reports a page written back, not fsynced, and no longer cached.
func (d *durability) check(f *File) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.unsynced {
		if _, ok := pageState(f, p); !ok {
			return fmt.Errorf("page %d left the cache after its write and before any fsync", p)
		}
	}
	return nil
}

// gcPressure sets GOGC=1 and forces collections until the returned stop
// is called.
func gcPressure(t testing.TB) (stop func()) {
	old := debug.SetGCPercent(1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
				runtime.GC()
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
		debug.SetGCPercent(old)
	}
}

// TestEvictionModel runs a random workload over 1,000 pages through a
// 16-page cache with dirty writes, writeback and fsync failures injected,
// GOGC=1 and forced collections (K5): memory stays within capacity with no
// frame leaked, every read matches the model, no page leaves the cache
// between its write and a covering fsync, and after healing nothing is lost.
func TestEvictionModel(t *testing.T) {
	ops := 3000
	if soak() {
		ops = 100000
	}
	for _, backend := range testBackends {
		t.Run(backend, func(t *testing.T) {
			seed := testSeed(t)
			log := &opLog{seed: seed}
			defer func() {
				if t.Failed() {
					t.Log(log.dump(60))
				}
			}()
			runEvictionModel(t, backend, seed, ops, log)
		})
	}
}

func runEvictionModel(t *testing.T, backend string, seed uint64, ops int, log *opLog) {
	const pages = 1000
	r := rand.New(rand.NewPCG(seed, 2))
	data := pattern(seed, pages*PageSize-1234)
	h := newHostFile(t, data, false)
	inj := fault.New()
	dur := &durability{Backend: openBackend(t, backend, inj), unsynced: map[int64]bool{}}
	c := newCache(t, dur, Options{Capacity: MinCapacity})
	if !c.Fixed() {
		t.Skip("arena not registered: writeback writes cannot be told from direct ones")
	}
	f := openFile(t, c, h, int64(len(data)))
	m := &model{data: append([]byte(nil), data...)}
	// Writeback writes (fixed or vectored) and syncs fail at random; so do
	// some fills. Writes straight from WriteAt are left alone so that the
	// model stays exact.
	inj.Add(fault.Rule{Name: "wb-eio", Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EIO},
		When: fault.And(fault.OnOps(uring.OpWriteFixed, uring.OpWritev), fault.Random(int64(seed), 0.15))})
	inj.Add(fault.Rule{Name: "sync-eio", Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.EIO},
		When: fault.And(fault.Syncs(), fault.Random(int64(seed)+1, 0.15))})
	inj.Add(fault.Rule{Name: "fill-eio", Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EIO},
		When: fault.And(fault.Reads(), fault.Random(int64(seed)+2, 0.02))})
	stop := gcPressure(t)
	defer stop()
	var readErrs, writebackErrs int
	capacity := c.Capacity()
	for i := range ops {
		size := int64(len(m.data))
		switch k := r.IntN(100); {
		case k < 45: // read
			off := r.Int64N(size + PageSize)
			n := 1 + r.IntN(3*PageSize)
			log.add("read", off, int64(n), size)
			p := make([]byte, n)
			got, err := f.ReadAt(p, off)
			want := m.read(off, n)
			if err != nil {
				readErrs++
				if !errors.Is(err, syscall.EIO) || got >= len(want) {
					t.Fatalf("op %d: ReadAt = %d, %v", i, got, err)
				}
				want = want[:got]
			}
			if got != len(want) || !bytes.Equal(p[:got], want) {
				t.Fatalf("op %d: ReadAt(%d, %d) = %d bytes, want %d; first difference at %d", i, off, n, got, len(want), firstDiff(p[:got], want))
			}
		case k < 85: // write, sometimes whole pages, sometimes past EOF
			off := r.Int64N(size + 2*PageSize)
			n := 1 + r.Int64N(2*PageSize)
			if r.IntN(3) == 0 {
				off &^= PageSize - 1
				n = PageSize * (1 + r.Int64N(2))
			}
			log.add("write", off, n, size)
			mustWrite(t, f, m, pattern(r.Uint64(), int(n)), off)
		case k < 95: // writeback
			mode := SyncMode(r.IntN(3))
			off := r.Int64N(size + 1)
			n := r.Int64N(64 * PageSize)
			log.add(fmt.Sprintf("writeback-%d", mode), off, n, size)
			if err := f.Writeback(Range{off, off + n}, mode); err != nil {
				writebackErrs++
				if !errors.Is(err, syscall.EIO) {
					t.Fatalf("op %d: Writeback: %v", i, err)
				}
			}
		default: // truncate within ±64 pages of the size
			ns := max(size+r.Int64N(128*PageSize)-64*PageSize, 0)
			log.add("truncate", 0, 0, ns)
			if err := f.Truncate(ns); err != nil {
				t.Fatalf("op %d: Truncate(%d): %v", i, ns, err)
			}
			m.truncate(ns)
			dur.forget(ns)
		}
		if f.Size() != int64(len(m.data)) {
			t.Fatalf("op %d: size %d, model %d", i, f.Size(), len(m.data))
		}
		if st := c.Stats(); st.ResidentBytes > capacity || f.ResidentBytes() > capacity {
			t.Fatalf("op %d: resident %d (file %d) over capacity %d", i, st.ResidentBytes, f.ResidentBytes(), capacity)
		}
		if err := dur.check(f); err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		if i%64 == 0 {
			checkInvariants(t, c, true, f)
		}
	}
	st := c.Stats()
	fired := inj.Fired()
	inj.Heal()
	if err := f.Writeback(Range{0, 1 << 50}, SyncFull); err != nil {
		t.Fatalf("healed Writeback: %v", err)
	}
	checkHost(t, h, m)
	mustRead(t, f, m, 0, len(m.data))
	checkInvariants(t, c, true, f)
	t.Logf("seed %d: %d ops over %d pages in a %d-page cache; %d faults injected (%d read errors, %d writeback errors); "+
		"evictions %d (dirty %d), eviction writeback errors %d, pressure %d; bytes lost 0, frames leaked 0",
		log.seed, ops, pages, capacity/PageSize, fired, readErrs, writebackErrs, st.Evictions, st.EvictionsDirty,
		st.EvictionWritebackErrors, st.Pressure)
}

// TestEvictionKeepsUndurablePages fills a 16-page cache with dirty pages
// of one file and makes their writeback fail: reads of another file are
// served around the cache, the dirty pages stay, and after healing they
// are written and evicted.
func TestEvictionKeepsUndurablePages(t *testing.T) {
	tests := []struct {
		name string
		when fault.Predicate
	}{
		{"fsync fails", fault.Syncs()},
		{"writes fail", fault.Writes()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj := fault.New()
			be := openBackend(t, uring.BackendUring, inj)
			c := newCache(t, be, Options{Capacity: MinCapacity})
			ha := newHostFile(t, nil, false)
			fa := openFile(t, c, ha, 0)
			ma := &model{}
			mustWrite(t, fa, ma, pattern(130, 16*PageSize), 0)
			dirty := fa.DirtyBytes()
			cursor := fa.Errs.Sample()
			dataB := pattern(131, 32*PageSize)
			hb := newHostFile(t, dataB, false)
			fb := openFile(t, c, hb, int64(len(dataB)))
			mb := &model{data: append([]byte(nil), dataB...)}
			inj.Add(fault.Rule{Name: tt.name, Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EIO}, When: tt.when})
			before := c.Stats()
			mustRead(t, fb, mb, 0, len(dataB))
			st := c.Stats().Sub(before)
			if fa.ResidentBytes() != 16*PageSize || fa.DirtyBytes() != dirty {
				t.Fatalf("after failed eviction writeback: A resident %d dirty %d, want %d and %d",
					fa.ResidentBytes(), fa.DirtyBytes(), 16*PageSize, dirty)
			}
			if st.EvictionWritebackErrors == 0 || st.Pressure == 0 || st.BypassBytes == 0 {
				t.Fatalf("no pressure reported: %+v", st)
			}
			// No handle has seen the failure yet: one opened now gets it too
			// (F5), and so does the handle open when it happened.
			late := fa.Errs.Sample()
			if err := fa.Errs.Check(&late); !errors.Is(err, syscall.EIO) {
				t.Fatalf("handle opened after the failed eviction: %v, want EIO", err)
			}
			if err := fa.Errs.Check(&cursor); !errors.Is(err, syscall.EIO) {
				t.Fatalf("A's error sequence: %v, want EIO", err)
			}
			inj.Heal()
			mustRead(t, fb, mb, 0, len(dataB))
			if fa.DirtyBytes() != 0 || fb.ResidentBytes() == 0 {
				t.Fatalf("after healing: A dirty %d, B resident %d", fa.DirtyBytes(), fb.ResidentBytes())
			}
			checkHost(t, ha, ma)
			checkInvariants(t, c, true, fa, fb)
			t.Logf("%s: %d dirty bytes kept through %d failed eviction writebacks, %d bytes read around the cache; written after healing",
				tt.name, dirty, st.EvictionWritebackErrors, st.BypassBytes)
		})
	}
}

// TestEvictionConcurrent runs goroutines on several files sharing one
// small cache, with forced GC, under -race: each checks its own file
// against its model, and at the end frames are all accounted for and the
// hosts equal the models.
func TestEvictionConcurrent(t *testing.T) {
	const files = 4
	ops := 1500
	if soak() {
		ops = 50000
	}
	for _, capPages := range []int64{16, 64} {
		t.Run(fmt.Sprintf("cache=%dpages", capPages), func(t *testing.T) {
			seed := testSeed(t)
			be := openBackend(t, uring.BackendUring, nil)
			c := newCache(t, be, Options{Capacity: capPages * PageSize})
			stop := gcPressure(t)
			defer stop()
			var wg sync.WaitGroup
			fs := make([]*File, files)
			hs := make([]*hostFile, files)
			ms := make([]*model, files)
			logs := make([]*opLog, files)
			var failed atomic.Bool
			for g := range files {
				data := pattern(seed+uint64(g), 200*PageSize+g*100)
				hs[g] = newHostFile(t, data, false)
				fs[g] = openFile(t, c, hs[g], int64(len(data)))
				ms[g] = &model{data: append([]byte(nil), data...)}
				logs[g] = &opLog{seed: seed}
			}
			for g := range files {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := rand.New(rand.NewPCG(seed, uint64(g)))
					f, m, log := fs[g], ms[g], logs[g]
					for i := 0; i < ops && !failed.Load(); i++ {
						size := int64(len(m.data))
						off := r.Int64N(size + PageSize)
						n := 1 + r.Int64N(2*PageSize)
						switch k := r.IntN(10); {
						case k < 5:
							log.add("read", off, n, size)
							p := make([]byte, n)
							got, err := f.ReadAt(p, off)
							if want := m.read(off, int(n)); err != nil || !bytes.Equal(p[:got], want) {
								t.Errorf("file %d op %d: ReadAt(%d, %d) = %d, %v; want %d bytes, differ at %d",
									g, i, off, n, got, err, len(want), firstDiff(p[:got], want))
								failed.Store(true)
							}
						case k < 9:
							log.add("write", off, n, size)
							b := pattern(r.Uint64(), int(n))
							if w, _, err := f.WriteAt(b, off, 0); err != nil || w != len(b) {
								t.Errorf("file %d op %d: WriteAt = %d, %v", g, i, w, err)
								failed.Store(true)
							}
							m.write(b, off)
						default:
							log.add("writeback", 0, size, size)
							if err := f.Writeback(Range{0, 1 << 50}, SyncMode(r.IntN(2))); err != nil {
								t.Errorf("file %d: Writeback: %v", g, err)
								failed.Store(true)
							}
						}
					}
				}()
			}
			wg.Wait()
			if t.Failed() {
				for g := range files {
					t.Logf("file %d: %s", g, logs[g].dump(30))
				}
				t.FailNow()
			}
			checkInvariants(t, c, true, fs...)
			var resident int64
			for _, f := range fs {
				resident += f.ResidentBytes()
			}
			if resident > c.Capacity() {
				t.Fatalf("%d bytes resident across files, capacity %d", resident, c.Capacity())
			}
			for g := range files {
				if err := fs[g].Writeback(Range{0, 1 << 50}, SyncFull); err != nil {
					t.Fatal(err)
				}
				checkHost(t, hs[g], ms[g])
			}
			st := c.Stats()
			t.Logf("seed %d: %d goroutines x %d ops on one %d-page cache: %d resident pages, evictions %d (dirty %d), pressure %d; mismatches 0",
				seed, files, ops, capPages, resident/PageSize, st.Evictions, st.EvictionsDirty, st.Pressure)
		})
	}
}
