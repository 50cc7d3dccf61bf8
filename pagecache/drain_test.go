//go:build linux

package pagecache

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringfs/ringfs/uring"
)

// TestTruncateHoldsOffNewFills: while Truncate waits for the fills in
// flight of its file, a new fill of the file does not start; it starts
// once the Truncate is done. Before, Truncate (and everything else that
// waits for all of a file's fills: SetFd, Release, ReadBatch) let go of
// the file's lock while it waited, new misses started new fills, and two
// goroutines reading in a loop with one P kept a Truncate waiting for
// minutes (reliability row K4 under GOMAXPROCS=1).
func TestTruncateHoldsOffNewFills(t *testing.T) {
	data := pattern(7, 64*PageSize)
	h := newHostFile(t, data, false)
	rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
	c := newCache(t, rb, Options{Capacity: 64 * PageSize, Readahead: PageSize})
	f := openFile(t, c, h, int64(len(data)))

	// A read of three pages whose middle one is cached takes the locked
	// path (its pages are not all missing): its fill is recorded in
	// File.filling while it reads the host.
	for _, pg := range []int64{11, 21} {
		if _, err := f.ReadAt(make([]byte, PageSize), pg*PageSize); err != nil {
			t.Fatal(err)
		}
	}
	covers := func(r *uring.Request, pg int64) bool {
		return r.Op.IsRead() && r.Off <= pg*PageSize && pg*PageSize < r.Off+bufBytes(r)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var secondIssued atomic.Bool
	rb.setBefore(func(reqs []uring.Request) {
		for i := range reqs {
			switch r := &reqs[i]; {
			case covers(r, 10):
				once.Do(func() { close(entered); <-release })
			case covers(r, 20):
				secondIssued.Store(true)
			}
		}
	})
	read := func(pg int64, done chan<- error) {
		p := make([]byte, 3*PageSize)
		_, err := f.ReadAt(p, pg*PageSize)
		if err == nil && !bytes.Equal(p, data[pg*PageSize:(pg+3)*PageSize]) {
			err = fmt.Errorf("wrong bytes read at page %d", pg)
		}
		done <- err
	}
	first, second, truncated := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go read(10, first)
	<-entered
	go func() { truncated <- f.Truncate(48 * PageSize) }()
	waitFor(t, "Truncate to wait for the fill in flight", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.draining > 0
	})
	go read(20, second)
	time.Sleep(100 * time.Millisecond) // time enough for the second fill to start, were it let
	if secondIssued.Load() {
		close(release)
		t.Fatal("a fill started while Truncate waited for the fills in flight")
	}
	close(release)
	for _, ch := range []chan error{first, truncated, second} {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if !secondIssued.Load() {
		t.Fatal("the held-off fill never read the host")
	}
	if got := f.Size(); got != 48*PageSize {
		t.Fatalf("size %d after Truncate, want %d", got, 48*PageSize)
	}
	rb.setBefore(nil)
	checkInvariants(t, c, false, f)
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
