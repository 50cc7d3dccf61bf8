//go:build linux

package uring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
)

// TestTinyCQOverflow lets far more requests be in flight than the CQ holds
// (Entries 4: SQ 4, CQ 8; 256 slots), from one big batch and from many
// goroutines at once, on the native ring. With IORING_FEAT_NODROP the kernel keeps the extra
// CQEs in its backlog and the ring must flush them: nothing may hang and
// every result must be right.
func TestTinyCQOverflow(t *testing.T) {
	content := randomBytes(11, 4<<20)
	for _, name := range testBackends() {
		switch name {
		case BackendPsync:
			continue // nothing is ever in flight
		case BackendIouringgo:
			// The library reaps CQEs when its eventfd fires and never
			// enters to flush the kernel's overflow backlog, so a call
			// whose results all overflowed waits forever; the backend
			// therefore keeps in flight at most what the CQ holds, and
			// only this test lifts that cap.
			continue
		}
		t.Run("backend="+name, func(t *testing.T) {
			before := snapshotResources(t)
			f := tempFile(t, "f", content, os.O_RDWR)
			be, err := New(Options{Backend: name, Entries: 4, maxInflight: 256})
			if err != nil {
				t.Fatal(err)
			}
			if r, ok := be.(*Ring); ok && r.Features()&FeatNoDrop == 0 {
				t.Log("kernel lacks IORING_FEAT_NODROP: overflow would drop CQEs")
			}
			checkBatch := func(reqs []Request) error {
				for i := range reqs {
					r := &reqs[i]
					if r.Err != nil || r.N != len(r.Buf) || !bytes.Equal(r.Buf, content[r.Off:r.Off+int64(r.N)]) {
						return fmt.Errorf("request %d at %d: (%d, %v)", i, r.Off, r.N, r.Err)
					}
				}
				return nil
			}
			// One batch of 1024 reads: 256 in flight at a time against 8 CQEs.
			reqs := make([]Request, 1024)
			for i := range reqs {
				reqs[i] = Request{Op: OpRead, Fd: int32(f.Fd()), Off: int64(i*4093) % (4<<20 - 4096), Buf: make([]byte, 1+i%4096)}
			}
			if err := be.Submit(reqs); err != nil {
				t.Fatal(err)
			}
			if err := checkBatch(reqs); err != nil {
				t.Fatal(err)
			}
			// 32 goroutines with batches of 16.
			var wg sync.WaitGroup
			for g := range 32 {
				wg.Go(func() {
					for i := range 50 {
						reqs := make([]Request, 16)
						for j := range reqs {
							off := int64((g*7919+i*104729+j*4099)%(4<<20-8192)) &^ 511
							reqs[j] = Request{Op: OpRead, Fd: int32(f.Fd()), Off: off, Buf: make([]byte, 4096+j)}
						}
						if err := be.Submit(reqs); err != nil {
							t.Error(err)
							return
						}
						if err := checkBatch(reqs); err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			s := be.Stats()
			t.Logf("CQ %d entries, %d requests, in-flight high water %d, CQ overflow flushes %d, dropped CQEs %d, enter EAGAIN/EBUSY retries %d",
				s.CQEntries, s.Requests, s.InflightHighMark, s.CQOverflows, s.DroppedCQEs, s.RetryEnterBusy)
			if s.InflightHighMark <= uint64(s.CQEntries) {
				t.Errorf("in-flight high water %d never passed the CQ size %d: the test did not overflow", s.InflightHighMark, s.CQEntries)
			}
			if s.DroppedCQEs != 0 {
				t.Errorf("%d CQEs dropped", s.DroppedCQEs)
			}
			if name == BackendUring && s.CQOverflows == 0 {
				t.Log("the kernel never reported a CQ backlog")
			}
			if err := be.Close(); err != nil {
				t.Fatal(err)
			}
			f.Close()
			checkNoLeaks(t, before)
		})
	}
}

// TestDroppedCQE simulates a kernel that lost one completion: the request
// whose CQE was lost fails with ErrBroken (EIO), the others complete,
// Submit returns, the ring refuses later work, and Close works.
func TestDroppedCQE(t *testing.T) {
	content := randomBytes(12, 1<<20)
	before := snapshotResources(t)
	f := tempFile(t, "f", content, os.O_RDONLY)
	r, err := newRing(Options{Entries: 16})
	if err != nil {
		t.Fatal(err)
	}
	// Warm up, then lose the next CQE.
	if err := r.Submit([]Request{{Op: OpNop}}); err != nil {
		t.Fatal(err)
	}
	r.testDrop.Store(1)
	reqs := make([]Request, 8)
	for i := range reqs {
		reqs[i] = Request{Op: OpRead, Fd: int32(f.Fd()), Off: int64(i) * 4096, Buf: make([]byte, 4096)}
	}
	err = r.Submit(reqs)
	if !errors.Is(err, ErrBroken) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("Submit returned %v, want ErrBroken", err)
	}
	broken, ok := 0, 0
	for i := range reqs {
		switch {
		case errors.Is(reqs[i].Err, ErrBroken) && errors.Is(reqs[i].Err, syscall.EIO):
			broken++
		case reqs[i].Err == nil && bytes.Equal(reqs[i].Buf, content[reqs[i].Off:reqs[i].Off+4096]):
			ok++
		default:
			t.Errorf("request %d: (%d, %v)", i, reqs[i].N, reqs[i].Err)
		}
	}
	if broken != 1 || ok != len(reqs)-1 {
		t.Fatalf("%d failed with ErrBroken and %d completed; want 1 and %d", broken, ok, len(reqs)-1)
	}
	later := []Request{{Op: OpNop}, {Op: OpRead, Fd: int32(f.Fd()), Buf: make([]byte, 10)}}
	if err := r.Submit(later); !errors.Is(err, ErrBroken) || !errors.Is(later[0].Err, ErrBroken) || !errors.Is(later[1].Err, ErrBroken) {
		t.Fatalf("Submit on a broken ring: %v, %v, %v", err, later[0].Err, later[1].Err)
	}
	if err := r.RegisterFiles([]int32{int32(f.Fd())}); !errors.Is(err, ErrBroken) {
		t.Fatalf("RegisterFiles on a broken ring: %v", err)
	}
	if n, err := r.Do(Request{Op: OpRead, Fd: int32(f.Fd()), Buf: make([]byte, 10)}); n != 0 || !errors.Is(err, ErrBroken) {
		t.Fatalf("Do on a broken ring: (%d, %v), want ErrBroken", n, err)
	}
	s := r.Stats()
	if s.DroppedCQEs != 1 {
		t.Errorf("DroppedCQEs = %d, want 1", s.DroppedCQEs)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close of a broken ring: %v", err)
	}
	if err := r.Close(); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	f.Close()
	t.Logf("lost CQE: %d request failed with ErrBroken, %d completed, DroppedCQEs %d; later Submits refused", broken, ok, s.DroppedCQEs)
	checkNoLeaks(t, before)
}

// TestDroppedCQEUnderLoad loses a CQE while many goroutines have requests
// in flight: every Submit returns, no request is left without a result,
// and exactly the lost one (plus those refused after the break) fail.
func TestDroppedCQEUnderLoad(t *testing.T) {
	content := randomBytes(13, 1<<20)
	f := tempFile(t, "f", content, os.O_RDONLY)
	r, err := newRing(Options{Entries: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, failed int
	start := make(chan struct{})
	for g := range 16 {
		wg.Go(func() {
			<-start
			// Until the ring breaks (bounded): with one P the workers could
			// otherwise all be done before the CQE is dropped.
			for i := range 20000 {
				reqs := make([]Request, 1+(g+i)%6)
				for j := range reqs {
					reqs[j] = Request{Op: OpRead, Fd: int32(f.Fd()), Off: int64((g+i+j)%200) * 4096, Buf: make([]byte, 4096)}
				}
				err := r.Submit(reqs)
				for _, q := range reqs {
					mu.Lock()
					switch {
					case q.Err == nil && bytes.Equal(q.Buf, content[q.Off:q.Off+4096]):
						ok++
					case errors.Is(q.Err, ErrBroken):
						failed++
					default:
						t.Errorf("request: (%d, %v)", q.N, q.Err)
					}
					mu.Unlock()
				}
				if err != nil {
					return
				}
			}
		})
	}
	close(start)
	for r.Stats().Completions < 500 {
		runtimeGosched()
	}
	r.testDrop.Store(1)
	wg.Wait()
	s := r.Stats()
	if s.DroppedCQEs != 1 || failed == 0 {
		t.Fatalf("DroppedCQEs %d, %d requests failed", s.DroppedCQEs, failed)
	}
	t.Logf("%d requests completed, %d failed with ErrBroken after one lost CQE; every Submit returned", ok, failed)
}
