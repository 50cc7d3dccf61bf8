//go:build linux

package pagecache

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

// holdReads is an injector that holds every read's completion (every
// write's, when writes is set) in the goroutine that made it (the psync
// backend completes in the caller) until release is closed, or, when
// together > 0, until that many are held at once. It counts them and the
// most held at one time.
type holdReads struct {
	together int
	writes   bool
	release  chan struct{}
	started  chan struct{} // one value per read reaching its completion

	mu   sync.Mutex
	held int // +checklocks:mu
	most int // +checklocks:mu
	all  chan struct{}
	n    atomic.Int64
}

func newHoldReads(together int) *holdReads {
	return &holdReads{together: together, release: make(chan struct{}),
		started: make(chan struct{}, 64), all: make(chan struct{})}
}

func (h *holdReads) Enter() syscall.Errno               { return 0 }
func (h *holdReads) Issue(*uring.Request) (int32, bool) { return 0, false }
func (h *holdReads) reads() int64                       { return h.n.Load() }
func (h *holdReads) mostHeld() int                      { h.mu.Lock(); defer h.mu.Unlock(); return h.most }
func (h *holdReads) Complete(r *uring.Request, res int32) int32 {
	if !r.Op.IsRead() && !h.writes || !r.Op.IsWrite() && h.writes {
		return res
	}
	h.n.Add(1)
	h.started <- struct{}{}
	h.mu.Lock()
	h.held++
	h.most = max(h.most, h.held)
	if h.together > 0 && h.held == h.together {
		close(h.all)
	}
	h.mu.Unlock()
	select {
	case <-h.release:
	case <-h.all:
	case <-time.After(5 * time.Second):
	}
	h.mu.Lock()
	h.held--
	h.mu.Unlock()
	return res
}

// TestFillsRunInParallel reads two distant pages of one file from two
// goroutines while the backend holds each read until both are held: the
// file's lock must not be held across a fill's I/O. Serialized fills
// would hold one read alone for 5 s and fail.
func TestFillsRunInParallel(t *testing.T) {
	const pages = 64
	data := pattern(31, pages*PageSize)
	h := newHostFile(t, data, false)
	inj := newHoldReads(2)
	c := newCache(t, openBackend(t, uring.BackendPsync, inj), Options{Capacity: pages * PageSize, Readahead: PageSize})
	f := openFile(t, c, h, pages*PageSize)
	var wg sync.WaitGroup
	for _, page := range []int64{3, 40} {
		wg.Go(func() {
			p := make([]byte, PageSize)
			off := page * PageSize
			if n, err := f.ReadAt(p, off); err != nil || n != PageSize || !bytes.Equal(p, data[off:off+PageSize]) {
				t.Errorf("ReadAt(page %d) = %d, %v; differs at %d", page, n, err, firstDiff(p, data[off:off+PageSize]))
			}
		})
	}
	wg.Wait()
	if got := inj.mostHeld(); got != 2 {
		t.Errorf("at most %d fill reads of the file were in flight at once, want 2", got)
	}
	if got := inj.reads(); got != 2 {
		t.Errorf("%d reads, want 2", got)
	}
}

// TestFillInFlightWaits starts a fill of page 5 and holds its read; a
// second reader of the page and each kind of change to it must wait for
// the fill (not return while the read is held), and afterwards the cache
// shows the change, never the bytes the fill read before it.
func TestFillInFlightWaits(t *testing.T) {
	const (
		pages = 16
		page  = 5
		off   = page * PageSize
	)
	data := pattern(32, pages*PageSize)
	newPage := pattern(33, PageSize)
	tests := []struct {
		name   string
		change func(f *File) error
		want   []byte // page 5 as read afterwards (shorter: end of file)
	}{
		{"write whole page", func(f *File) error {
			_, _, err := f.WriteAt(newPage, off, 0)
			return err
		}, newPage},
		{"write part of page", func(f *File) error {
			_, _, err := f.WriteAt(newPage[:100], off+7, 0)
			return err
		}, append(append(append([]byte(nil), data[off:off+7]...), newPage[:100]...), data[off+107:off+PageSize]...)},
		{"truncate into page", func(f *File) error { return f.Truncate(off + 10) }, data[off : off+10]},
		{"punch page", func(f *File) error {
			return f.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, PageSize)
		}, make([]byte, PageSize)},
		{"invalidate", func(f *File) error { return f.Invalidate(Range{0, pages * PageSize}) }, data[off : off+PageSize]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostFile(t, data, false)
			inj := newHoldReads(0)
			c := newCache(t, openBackend(t, uring.BackendPsync, inj), Options{Capacity: pages * PageSize, Readahead: PageSize})
			f := openFile(t, c, h, pages*PageSize)
			var wg sync.WaitGroup
			read := func(who string) {
				defer wg.Done()
				p := make([]byte, PageSize)
				n, err := f.ReadAt(p, off)
				old := data[off : off+PageSize]
				if err != nil || !bytes.Equal(p[:n], old) && !bytes.Equal(p[:n], tt.want) {
					t.Errorf("%s: ReadAt = %d, %v: neither the old page nor the changed one (differs at %d)", who, n, err, firstDiff(p[:n], old))
				}
			}
			wg.Add(1)
			go read("first reader")
			<-inj.started // its fill's read is held now
			var changed, second atomic.Bool
			wg.Add(2)
			go func() {
				defer wg.Done()
				if err := tt.change(f); err != nil {
					t.Errorf("change: %v", err)
				}
				changed.Store(true)
			}()
			go func() {
				read("second reader")
				second.Store(true)
			}()
			time.Sleep(50 * time.Millisecond)
			if changed.Load() {
				t.Errorf("the change returned while a fill of its page was in flight")
			}
			if second.Load() {
				t.Errorf("a second reader of the page returned while its fill was in flight")
			}
			close(inj.release)
			wg.Wait()
			p := make([]byte, PageSize)
			n, err := f.ReadAt(p, off)
			if err != nil || n != len(tt.want) || !bytes.Equal(p[:n], tt.want) {
				t.Errorf("after: ReadAt = %d, %v; want %d bytes, differs at %d", n, err, len(tt.want), firstDiff(p[:n], tt.want))
			}
			if err := f.Writeback(Range{0, pages * PageSize}, SyncFull); err != nil {
				t.Fatal(err)
			}
			host := make([]byte, PageSize)
			n, _ = h.fh.ReadAt(host, off)
			if !bytes.Equal(host[:n], tt.want) {
				t.Errorf("host after Writeback: %d bytes, differs at %d", n, firstDiff(host[:n], tt.want))
			}
		})
	}
}

// TestHostWriteInFlight holds a write of the second half of page 4 and
// the first half of page 5 (page 4 cached, page 5 not) at the host while
// something else runs. With Through the whole write goes to the host;
// without, only page 5's half does (a partial page the cache does not
// hold) and page 4's half goes to the cache alone. Either way hits, and
// writes and fills of other pages, go on; fills, writes and writeback of
// its pages, and truncate, wait for it; eviction keeps page 4 when only
// the cache is to get its bytes. Afterwards the cache and the host hold
// everything, in order.
func TestHostWriteInFlight(t *testing.T) {
	const (
		pages = 48 // three times the cache
		off   = 4*PageSize + PageSize/2
	)
	data := pattern(34, pages*PageSize)
	held := pattern(35, PageSize)
	other := pattern(36, 100)
	tests := []struct {
		name  string
		waits bool
		run   func(f *File, fl WriteFlags, model []byte) error // also applies itself to model
	}{
		{"hit of the cached page", false, func(f *File, fl WriteFlags, model []byte) error {
			p := make([]byte, PageSize)
			if _, err := f.ReadAt(p, 4*PageSize); err != nil {
				return err
			}
			if !bytes.Equal(p, data[4*PageSize:5*PageSize]) {
				return fmt.Errorf("read page 4 with its write in flight: not the page before the write (differs at %d)", firstDiff(p, data[4*PageSize:]))
			}
			return nil
		}},
		{"hit of another page", false, func(f *File, fl WriteFlags, model []byte) error {
			p := make([]byte, PageSize)
			if _, err := f.ReadAt(p, 9*PageSize); err != nil || !bytes.Equal(p, data[9*PageSize:10*PageSize]) {
				return fmt.Errorf("ReadAt(page 9) = %v, differs at %d", err, firstDiff(p, data[9*PageSize:]))
			}
			return nil
		}},
		{"write of another page", false, func(f *File, fl WriteFlags, model []byte) error {
			copy(model[9*PageSize+5:], other)
			_, _, err := f.WriteAt(other, 9*PageSize+5, fl)
			return err
		}},
		{"fills that evict", false, func(f *File, fl WriteFlags, model []byte) error {
			p := make([]byte, PageSize)
			for page := int64(16); page < pages; page++ {
				if _, err := f.ReadAt(p, page*PageSize); err != nil {
					return err
				}
				if !bytes.Equal(p, model[page*PageSize:(page+1)*PageSize]) {
					return fmt.Errorf("ReadAt(page %d): differs at %d", page, firstDiff(p, model[page*PageSize:]))
				}
			}
			return nil
		}},
		{"fill of the uncached page", true, func(f *File, fl WriteFlags, model []byte) error {
			p := make([]byte, PageSize)
			if _, err := f.ReadAt(p, 5*PageSize); err != nil {
				return err
			}
			if !bytes.Equal(p, model[5*PageSize:6*PageSize]) {
				return fmt.Errorf("read page 5 after its write returned: differs at %d", firstDiff(p, model[5*PageSize:]))
			}
			return nil
		}},
		{"write of the same page", true, func(f *File, fl WriteFlags, model []byte) error {
			copy(model[4*PageSize+PageSize-50:], other)
			_, _, err := f.WriteAt(other, 4*PageSize+PageSize-50, fl)
			return err
		}},
		{"writeback", true, func(f *File, fl WriteFlags, model []byte) error {
			return f.Writeback(Range{0, pages * PageSize}, SyncNone)
		}},
		{"truncate", true, func(f *File, fl WriteFlags, model []byte) error {
			clear(model[5*PageSize+10:])
			return f.Truncate(5*PageSize + 10)
		}},
	}
	for _, mode := range []struct {
		name string
		fl   WriteFlags
	}{{"through", Through}, {"back", 0}} {
		for _, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				h := newHostFile(t, data, false)
				inj := newHoldReads(0)
				inj.writes = true
				c := newCache(t, openBackend(t, uring.BackendPsync, inj), Options{Capacity: 16 * PageSize, Readahead: PageSize})
				f := openFile(t, c, h, pages*PageSize)
				p := make([]byte, PageSize)
				for _, page := range []int64{4, 9} {
					if _, err := f.ReadAt(p, page*PageSize); err != nil {
						t.Fatal(err)
					}
				}
				model := bytes.Clone(data)
				copy(model[off:], held)
				var wg sync.WaitGroup
				wg.Go(func() {
					if n, _, err := f.WriteAt(held, off, mode.fl); err != nil || n != len(held) {
						t.Errorf("held write: %d, %v", n, err)
					}
				})
				<-inj.started // the write is at the host, its completion held
				var done atomic.Bool
				wg.Go(func() {
					if err := tt.run(f, mode.fl, model); err != nil {
						t.Error(err)
					}
					done.Store(true)
				})
				if tt.waits {
					time.Sleep(50 * time.Millisecond)
					if done.Load() {
						t.Errorf("returned while a host write of its pages was in flight")
					}
				} else if !waitUntil(done.Load, inj.started) {
					t.Errorf("did not run while the host write was in flight")
				}
				close(inj.release)
				wg.Wait()
				size := int64(len(model))
				if tt.name == "truncate" {
					size = 5*PageSize + 10
				}
				got := make([]byte, pages*PageSize)
				n, err := f.ReadAt(got, 0)
				if int64(n) != size || !bytes.Equal(got[:n], model[:size]) {
					t.Errorf("cache after: ReadAt = %d, %v; want %d bytes, differs at %d", n, err, size, firstDiff(got[:n], model))
				}
				if err := f.Writeback(Range{0, pages * PageSize}, SyncFull); err != nil {
					t.Fatal(err)
				}
				if host := h.bytes(t); !bytes.Equal(host, model[:size]) {
					t.Errorf("host after: %d bytes, want %d, differs at %d", len(host), size, firstDiff(host, model))
				}
			})
		}
	}
}

// waitUntil waits up to 2 s (well before holdReads lets go by itself)
// for ok to hold, or for a value on started (an operation that reached
// its completion and is held there).
func waitUntil(ok func() bool, started <-chan struct{}) bool {
	deadline := time.After(2 * time.Second)
	for !ok() {
		select {
		case <-started:
			return true
		case <-deadline:
			return false
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

// holdWrites is an injector that holds, once each is armed, the next
// write before it reaches the host (first*) and the next write at offset
// secondOff after it did, before its completion is seen (second*), until
// the matching release channel is closed.
type holdWrites struct {
	secondOff                   int64
	firstArmed, secondArmed     atomic.Bool
	firstHeld, secondHeld       chan struct{}
	firstRelease, secondRelease chan struct{}
}

func newHoldWrites() *holdWrites {
	return &holdWrites{firstHeld: make(chan struct{}), secondHeld: make(chan struct{}),
		firstRelease: make(chan struct{}), secondRelease: make(chan struct{})}
}

func (h *holdWrites) Enter() syscall.Errno { return 0 }
func (h *holdWrites) Issue(r *uring.Request) (int32, bool) {
	if r.Op.IsWrite() && h.firstArmed.CompareAndSwap(true, false) {
		close(h.firstHeld)
		<-h.firstRelease
	}
	return 0, false
}
func (h *holdWrites) Complete(r *uring.Request, res int32) int32 {
	if r.Op.IsWrite() && r.Off == h.secondOff && h.secondArmed.CompareAndSwap(true, false) {
		close(h.secondHeld)
		<-h.secondRelease
	}
	return res
}

// TestWriteThroughWaitsForWriteback: a write-through write of a page whose
// older dirty bytes a writeback is writing must reach the host after
// them. The injector holds the writeback's write before it lands, and
// would hold the write-through write after it landed and before it
// copies into the cache: the writeback's write, let go then, would carry
// the older bytes over it. The write-through write must instead wait for
// the writeback, and the host must hold the newer bytes once both have
// returned, before any further writeback.
func TestWriteThroughWaitsForWriteback(t *testing.T) {
	const pages = 8
	data := pattern(37, pages*PageSize)
	older := pattern(38, PageSize)
	newer := pattern(39, 1000)
	h := newHostFile(t, data, false)
	inj := newHoldWrites()
	inj.secondOff = 3*PageSize + 100
	c := newCache(t, openBackend(t, uring.BackendPsync, inj), Options{Capacity: 16 * PageSize})
	f := openFile(t, c, h, pages*PageSize)
	// Page 3 dirty in the cache (a write-through write that failed leaves
	// pages so; a cached write is the simplest way here).
	if _, _, err := f.WriteAt(older, 3*PageSize, 0); err != nil {
		t.Fatal(err)
	}
	inj.firstArmed.Store(true)
	wbDone := make(chan struct{})
	go func() {
		defer close(wbDone)
		if err := f.Writeback(Range{0, pages * PageSize}, SyncNone); err != nil {
			t.Errorf("Writeback: %v", err)
		}
	}()
	<-inj.firstHeld // the writeback's write of the older bytes is held
	inj.secondArmed.Store(true)
	wtDone := make(chan struct{})
	go func() {
		defer close(wtDone)
		if _, _, err := f.WriteAt(newer, 3*PageSize+100, Through); err != nil {
			t.Errorf("write-through WriteAt: %v", err)
		}
	}()
	select {
	case <-inj.secondHeld:
		t.Errorf("the write-through write reached the host while a writeback of its page was in flight")
	case <-time.After(50 * time.Millisecond):
	}
	close(inj.firstRelease)
	select {
	case <-wbDone:
	case <-time.After(5 * time.Second):
		// The write-through write holds what the writeback needs.
		t.Errorf("the writeback did not finish while the write-through write was held")
	}
	close(inj.secondRelease)
	<-wbDone
	<-wtDone
	want := bytes.Clone(data)
	copy(want[3*PageSize:], older)
	copy(want[3*PageSize+100:], newer)
	if host := h.bytes(t); !bytes.Equal(host, want) {
		t.Errorf("host after both returned: differs at %d (the older bytes landed last)", firstDiff(host, want))
	}
	got := make([]byte, pages*PageSize)
	if n, err := f.ReadAt(got, 0); n != len(got) || !bytes.Equal(got, want) {
		t.Errorf("cache: ReadAt = %d, %v; differs at %d", n, err, firstDiff(got, want))
	}
}

// TestHostWritesFaultsRacingWriteback: goroutines write pages of their
// own, through to the host (where a failed write leaves the cache's older
// bytes dirty) or into the cache (whose partial uncached pages go to the
// host), while 10 % of host writes fail with EIO after they ran, another
// goroutine writes back in a loop, and a cache of 16 pages evicts. A
// failed write is retried until it succeeds; after each success its
// writer reads its pages back. At the end, healed and fully written back,
// cache and host equal the model.
func TestHostWritesFaultsRacingWriteback(t *testing.T) {
	const (
		writers   = 4
		pagesEach = 8
		pages     = writers * pagesEach
	)
	ops := 300
	if soak() {
		ops = 20000
	}
	for _, cfg := range []struct {
		backend string
		fl      WriteFlags
	}{{uring.BackendUring, Through}, {uring.BackendPsync, Through}, {uring.BackendUring, 0}, {uring.BackendPsync, 0}} {
		backend := cfg.backend
		name := map[WriteFlags]string{Through: "through/", 0: "back/"}[cfg.fl] + backend
		t.Run(name, func(t *testing.T) {
			seed := testSeed(t)
			log := &opLog{seed: seed}
			inj := fault.New(fault.Rule{Name: "EIO", Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.EIO},
				When: fault.And(fault.Writes(), fault.Random(int64(seed), 0.1))})
			c := newCache(t, openBackend(t, backend, inj), Options{Capacity: 16 * PageSize})
			data := pattern(seed, pages*PageSize)
			h := newHostFile(t, data, false)
			f := openFile(t, c, h, int64(len(data)))
			model := bytes.Clone(data)
			var stop atomic.Bool
			var writebacks atomic.Int64
			wbDone := make(chan struct{})
			go func() {
				defer close(wbDone)
				for !stop.Load() {
					f.Writeback(Range{0, pages * PageSize}, SyncNone) // fails at times, by design
					writebacks.Add(1)
				}
			}()
			var wg sync.WaitGroup
			var retries atomic.Int64
			for g := range writers {
				wg.Go(func() {
					r := rand.New(rand.NewPCG(seed, uint64(g)))
					base := int64(g * pagesEach * PageSize)
					got := make([]byte, pagesEach*PageSize)
					for i := 0; i < ops && !t.Failed(); i++ {
						off := base + r.Int64N(pagesEach*PageSize-1)
						n := 1 + r.Int64N(min(base+pagesEach*PageSize-off, 6000))
						p := pattern(seed^uint64(g)<<40^uint64(i), int(n))
						log.add(fmt.Sprintf("write%d", g), off, n, pages*PageSize)
						for attempt := 0; ; attempt++ {
							if w, _, err := f.WriteAt(p, off, cfg.fl); err == nil && w == len(p) {
								break
							}
							if attempt == 100 {
								t.Errorf("write %d of goroutine %d failed 100 times\n%s", i, g, log.dump(40))
								return
							}
							retries.Add(1)
						}
						copy(model[off:], p) // the goroutine's own bytes
						if _, err := f.ReadAt(got, base); err != nil {
							t.Errorf("ReadAt: %v\n%s", err, log.dump(40))
							return
						}
						if !bytes.Equal(got, model[base:base+pagesEach*PageSize]) {
							t.Errorf("goroutine %d after write %d: cache differs at %d\n%s", g, i, base+int64(firstDiff(got, model[base:])), log.dump(40))
							return
						}
					}
				})
			}
			wg.Wait()
			stop.Store(true)
			<-wbDone
			inj.Heal()
			if err := f.Writeback(Range{0, pages * PageSize}, SyncFull); err != nil {
				t.Fatalf("Writeback after healing: %v", err)
			}
			got := make([]byte, pages*PageSize)
			if n, err := f.ReadAt(got, 0); n != len(got) || !bytes.Equal(got, model) {
				t.Errorf("cache at the end: ReadAt = %d, %v; differs at %d\n%s", n, err, firstDiff(got, model), log.dump(40))
			}
			if host := h.bytes(t); !bytes.Equal(host, model) {
				t.Errorf("host at the end: differs at %d\n%s", firstDiff(host, model), log.dump(40))
			}
			t.Logf("seed %d: %d writes by %d goroutines, %d retried after injected EIO (%d faults), %d writebacks, %d evictions",
				seed, writers*ops, writers, retries.Load(), inj.Fired(), writebacks.Load(), c.Stats().Evictions)
		})
	}
}
