//go:build linux

package uring

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOnePNoStarvation runs a ring under GOMAXPROCS 1 beside goroutines
// that never block on I/O: two copy out of a shared buffer under an
// RWMutex's read lock and one copies into it under the write lock, as
// cache hits and writes do. Four goroutines read a cached file through
// the ring, in rounds alternated with rounds of the same reads by pread.
//
// runtime.Gosched puts its caller on the scheduler's global queue, which
// one P serves only now and then while the goroutines it runs wake each
// other. A submitter that yielded there while holding the ring's
// submission lock, or a completion leader that did, stalled every other
// request of the ring for up to tens of milliseconds per yield, and a
// reliability row that truncates a file while it is read hung. With one
// P submitters must not yield, and the leader's slow yields must take at
// most a twenty-first of the time, plus the last one (leaderYield); the
// ring must not fall to a twentieth of pread's reads. With two Ps the
// ring does yield, so the counts are live. Either check fails when its
// half of the policy is taken out: submitters yielding made 12 yields in
// a run, and a leader yielding at every chance spent 194–323 ms in slow
// yields against bounds of 123–137 ms.
func TestOnePNoStarvation(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const fileSize = 1 << 20
	content := randomBytes(47, fileSize)
	f := tempFile(t, "hot", content, os.O_RDWR)
	r, ok := openBackend(t, "uring", Options{Entries: 32}).(*Ring)
	if !ok {
		t.Skip("io_uring is not available here")
	}
	fd := int32(f.Fd())

	stop := make(chan struct{})
	var bg sync.WaitGroup
	var mu sync.RWMutex
	shared := make([]byte, 64<<10)
	for g := range 3 {
		bg.Go(func() {
			local := make([]byte, 8<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if g == 2 {
					mu.Lock()
					copy(shared, local)
					mu.Unlock()
				} else {
					mu.RLock()
					copy(local, shared)
					mu.RUnlock()
				}
			}
		})
	}
	defer func() {
		close(stop)
		bg.Wait()
	}()

	// round reads with 4 goroutines for d, through the ring or by pread,
	// and returns how many reads completed.
	round := func(ring bool, d time.Duration) (int64, error) {
		var ops atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		deadline := time.Now().Add(d)
		for g := range 4 {
			wg.Go(func() {
				buf := make([]byte, 4096)
				for i := 0; time.Now().Before(deadline); i++ {
					off := int64((i*7+g*61)%(fileSize/4096)) * 4096
					var n int
					var err error
					if ring {
						rq := []Request{{Op: OpRead, Fd: fd, Off: off, Buf: buf}}
						err = r.Submit(rq)
						n, err = rq[0].N, firstErr(err, rq[0].Err)
					} else {
						n, err = f.ReadAt(buf, off)
					}
					if err == nil && (n != len(buf) || !bytes.Equal(buf, content[off:off+4096])) {
						err = fmt.Errorf("read at %d: %d bytes, wrong data", off, n)
					}
					if err != nil {
						errs <- err
						return
					}
					ops.Add(1)
				}
			})
		}
		wg.Wait()
		close(errs)
		return ops.Load(), <-errs
	}

	var ringOps, preadOps int64
	var ringTime time.Duration
	start := time.Now()
	slow0, slowNs0, gather0 := r.slowYields.Load(), r.slowYieldNs.Load(), r.gatherYields.Load()
	for range 6 {
		n, err := round(false, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		preadOps += n
		t0 := time.Now()
		if n, err = round(true, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		ringTime += time.Since(t0)
		ringOps += n
	}
	wall := time.Since(start)
	slow := r.slowYields.Load() - slow0
	slowTime := time.Duration(r.slowYieldNs.Load() - slowNs0)
	t.Logf("GOMAXPROCS=1: %d reads through the ring, %d by pread (%.2f×); %d slow yields took %v of %v (%v in all)",
		ringOps, preadOps, float64(ringOps)/float64(preadOps), slow, slowTime, ringTime, wall)
	// Each slow yield but the last is followed by a pause 20 times as
	// long, and a yield begins only when a pause has ended; the first
	// counted may have begun up to its own length before start.
	longest := time.Duration(r.maxSlowYieldNs.Load())
	if bound := (wall+longest)/(yieldPause+1) + longest; slowTime > bound {
		t.Errorf("slow yields took %v, more than %v", slowTime, bound)
	}
	if ringOps*20 < preadOps {
		t.Errorf("the ring made %d reads against pread's %d: starved", ringOps, preadOps)
	}
	if n := r.gatherYields.Load() - gather0; n != 0 {
		t.Errorf("submissions yielded %d times with one P", n)
	}

	// With two Ps the same reads may yield: the counter sees yields.
	if runtime.NumCPU() < 2 {
		return
	}
	runtime.GOMAXPROCS(2)
	y0 := r.gatherYields.Load() + r.leadYields.Load()
	if _, err := round(true, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	y := r.gatherYields.Load() + r.leadYields.Load() - y0
	t.Logf("GOMAXPROCS=2: %d yields", y)
	if y == 0 {
		t.Errorf("no yield counted with two Ps")
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
