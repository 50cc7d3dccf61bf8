//go:build linux

package uring

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"
)

// TestConcurrentMixed runs many goroutines against one backend, each on
// its own region of one shared file and its own slice of a registered
// buffer, with single requests and batches of random size, and verifies
// every read against the goroutine's own model of its region. On the
// smaller ring (8 slots) batches are often larger than the ring holds,
// so callers refill while others wait for slots.
func TestConcurrentMixed(t *testing.T) {
	for _, entries := range []uint32{32, 4} {
		t.Run(fmt.Sprintf("entries=%d", entries), func(t *testing.T) { testConcurrentMixed(t, entries) })
	}
}

func testConcurrentMixed(t *testing.T, entries uint32) {
	const (
		goroutines = 64
		region     = 64 << 10
	)
	opsPer := map[string]int{BackendUring: 10_000, BackendPsync: 2_000, BackendIouringgo: 2_000}
	if os.Getenv("RINGFS_SOAK") != "" {
		for k := range opsPer {
			opsPer[k] = 100_000
		}
	}
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			before := snapshotResources(t)
			// A small ring, so that 64 callers contend for slots and SQ room.
			opts := Options{Backend: name, Entries: entries}
			be, err := New(opts)
			if err != nil {
				t.Fatal(err)
			}
			f := tempFile(t, "shared", nil, os.O_RDWR)
			if err := f.Truncate(goroutines * region); err != nil {
				t.Fatal(err)
			}
			fixed := mmapBuffer(t, goroutines*region)
			if err := be.RegisterBuffers([][]byte{fixed}); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, goroutines)
			counts := make([]int, goroutines)
			for g := range goroutines {
				wg.Go(func() {
					w := &worker{
						be: be, fd: int32(f.Fd()), base: int64(g) * region,
						model: make([]byte, region), fixed: fixed[g*region : (g+1)*region],
						rng: rand.New(rand.NewPCG(uint64(g), 77)),
					}
					n, err := w.run(opsPer[name])
					counts[g] = n
					if err != nil {
						errs <- fmt.Errorf("goroutine %d after %d ops: %w", g, n, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			total := 0
			for _, n := range counts {
				total += n
			}
			// The file as a whole must be the concatenation of the models
			// (checked by the workers' final full reads) and nothing else.
			if st, _ := f.Stat(); st.Size() != goroutines*region {
				t.Errorf("file size %d, want %d", st.Size(), goroutines*region)
			}
			s := be.Stats()
			t.Logf("%s: %d goroutines x %d ops = %d requests verified; %d enters, %.2f SQEs/enter, in-flight high water %d, resubmits %d",
				name, goroutines, opsPer[name], total, s.Enters, s.SQEsPerEnter(), s.InflightHighMark, s.ShortResubmits)
			if err := be.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			checkNoLeaks(t, before)
		})
	}
}

// worker is one goroutine of TestConcurrentMixed.
type worker struct {
	be    Backend
	fd    int32
	base  int64  // the region's offset in the file
	model []byte // what the region must hold
	fixed []byte // this worker's part of the registered buffer
	rng   *rand.Rand
}

// run performs n requests and returns how many it did.
func (w *worker) run(n int) (int, error) {
	done := 0
	for done < n {
		// Cut the region into disjoint pieces, one per request of the
		// batch, so the batch's requests may complete in any order.
		k := 1
		if w.rng.IntN(3) == 0 {
			k = 2 + w.rng.IntN(15)
		}
		k = min(k, n-done)
		piece := int64(len(w.model)) / int64(k)
		reqs := make([]Request, k)
		checks := make([]func(*Request) error, k)
		fixedCursor := 0
		for i := range k {
			lo := int64(i) * piece
			off := lo + w.rng.Int64N(piece)
			ln := 1 + w.rng.Int64N(min(piece-(off-lo), 8192))
			reqs[i], checks[i] = w.request(off, int(ln), &fixedCursor)
		}
		if err := w.be.Submit(reqs); err != nil {
			return done, err
		}
		for i := range reqs {
			if err := checks[i](&reqs[i]); err != nil {
				return done, fmt.Errorf("%v at %d+%d: %w", reqs[i].Op, reqs[i].Off-w.base, reqs[i].length(), err)
			}
		}
		done += k
	}
	// A last full read of the region.
	buf := make([]byte, len(w.model))
	reqs := []Request{{Op: OpRead, Fd: w.fd, Off: w.base, Buf: buf}}
	if err := w.be.Submit(reqs); err != nil || reqs[0].Err != nil || !bytes.Equal(buf, w.model) {
		return done, fmt.Errorf("final read: %v %v %s", err, reqs[0].Err, firstDiff(buf, w.model))
	}
	return done, nil
}

// request builds one request on [off, off+ln) of the region and the check
// of its result. The model is updated at once for writes: no request of
// the same batch touches the range.
func (w *worker) request(off int64, ln int, fixedCursor *int) (Request, func(*Request) error) {
	r := Request{Fd: w.fd, Off: w.base + off}
	kind := w.rng.IntN(100)
	var buf []byte
	useFixed := kind%3 == 0 && *fixedCursor+ln <= len(w.fixed)
	if useFixed {
		buf = w.fixed[*fixedCursor : *fixedCursor+ln]
		*fixedCursor += ln
	} else {
		buf = make([]byte, ln)
	}
	switch {
	case kind < 45: // read
		switch {
		case useFixed:
			r.Op, r.Buf = OpReadFixed, buf
		case kind%2 == 0:
			r.Op, r.Vecs = OpReadv, splitVecs(buf)
		default:
			r.Op, r.Buf = OpRead, buf
		}
		want := w.model[off : off+int64(ln)]
		return r, func(r *Request) error {
			if r.Err != nil || r.N != ln {
				return fmt.Errorf("got (%d, %v)", r.N, r.Err)
			}
			if !bytes.Equal(buf, want) {
				return fmt.Errorf("read wrong bytes: %s", firstDiff(buf, want))
			}
			return nil
		}
	case kind < 95: // write
		k := w.rng.IntN(len(dataPool()) - ln)
		copy(buf, dataPool()[k:k+ln])
		copy(w.model[off:], buf)
		switch {
		case useFixed:
			r.Op, r.Buf = OpWriteFixed, buf
		case kind%2 == 0:
			r.Op, r.Vecs = OpWritev, splitVecs(buf)
		default:
			r.Op, r.Buf = OpWrite, buf
		}
		return r, func(r *Request) error {
			if r.Err != nil || r.N != ln {
				return fmt.Errorf("got (%d, %v)", r.N, r.Err)
			}
			return nil
		}
	case kind < 97:
		r.Op, r.Off, r.Len = OpSyncFileRange, w.base+off, int64(ln)
		r.Flags = 2 // SYNC_FILE_RANGE_WRITE
	default:
		r = Request{Op: OpNop}
	}
	return r, func(r *Request) error {
		if r.Err != nil || r.N != 0 {
			return fmt.Errorf("got (%d, %v)", r.N, r.Err)
		}
		return nil
	}
}

// TestSQPoll runs verified mixed I/O on rings whose submission queue is
// polled by a kernel thread (submissions need no enter while it is awake;
// a short idle time makes it sleep and need waking too). psync has no
// queue; iouringgo ignores SQPoll (see newIouringgo) and runs as usual.
func TestSQPoll(t *testing.T) {
	for _, name := range testBackends() {
		if name == BackendPsync {
			continue
		}
		for _, idle := range []time.Duration{time.Millisecond, 50 * time.Millisecond} {
			t.Run(fmt.Sprintf("backend=%s/idle=%v", name, idle), func(t *testing.T) {
				before := snapshotResources(t)
				be, err := New(Options{Backend: name, Entries: 16, SQPoll: true, SQPollIdle: idle})
				if err != nil {
					t.Skipf("SQPOLL unavailable: %v", err)
				}
				const goroutines, region = 8, 64 << 10
				f := tempFile(t, "sqpoll", nil, os.O_RDWR)
				if err := f.Truncate(goroutines * region); err != nil {
					t.Fatal(err)
				}
				fixed := mmapBuffer(t, goroutines*region)
				if err := be.RegisterBuffers([][]byte{fixed}); err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				for g := range goroutines {
					wg.Go(func() {
						w := &worker{be: be, fd: int32(f.Fd()), base: int64(g) * region,
							model: make([]byte, region), fixed: fixed[g*region : (g+1)*region],
							rng: rand.New(rand.NewPCG(uint64(g), 99))}
						if g%2 == 0 {
							time.Sleep(3 * idle) // let the poll thread fall asleep
						}
						if n, err := w.run(1000); err != nil {
							t.Errorf("goroutine %d after %d ops: %v", g, n, err)
						}
					})
				}
				wg.Wait()
				s := be.Stats()
				t.Logf("%d requests verified with SQPOLL; %d enters for %d SQEs", s.Requests, s.Enters, s.SQEs)
				if want := s.Requests + s.ShortResubmits + s.RetryCQEEINTR + s.RetryCQEAgain; s.SQEs != want {
					t.Errorf("Stats.SQEs %d, but %d SQEs were written", s.SQEs, want)
				}
				be.Close()
				f.Close()
				checkNoLeaks(t, before)
			})
		}
	}
}
