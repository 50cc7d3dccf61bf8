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
	data, _, rb, c, f := recordedFile(t, 7)

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
	entered, release, secondIssued := blockAndWatch(rb,
		func(r *uring.Request) bool { return covers(r, 10) },
		func(r *uring.Request) bool { return covers(r, 20) })
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
	waitDraining(f)
	go read(20, second)
	expectHeldOff(t, "a fill", "Truncate", secondIssued, release, first, truncated, second)
	if got := f.Size(); got != 48*PageSize {
		t.Fatalf("size %d after Truncate, want %d", got, 48*PageSize)
	}
	rb.setBefore(nil)
	checkInvariants(t, c, false, f)
}

// waitDraining waits until a caller drains f (File.draining), at most
// 2 s: the test then checks what it is for, that new fills and writes
// wait.
func waitDraining(f *File) {
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		f.mu.Lock()
		d := f.draining
		f.mu.Unlock()
		if d > 0 {
			return
		}
	}
}

// TestWritebackHoldsOffNewWrites: while a writeback waits for a write
// whose host part is in flight, a new write that would write the host
// does not start; it starts once the writeback has collected its pages.
// Otherwise writes arriving faster than they end could keep a Sync
// waiting, as misses did a Truncate (TestTruncateHoldsOffNewFills).
func TestWritebackHoldsOffNewWrites(t *testing.T) {
	data, h, rb, c, f := recordedFile(t, 8)
	m := &model{data: append([]byte(nil), data...)}

	// A write of part of a page that is not cached writes the host, its
	// pages in File.filling meanwhile.
	covers := func(r *uring.Request, pg int64) bool {
		return r.Op.IsWrite() && r.Off <= pg*PageSize+7 && pg*PageSize+7 < r.Off+bufBytes(r)
	}
	entered, release, secondIssued := blockAndWatch(rb,
		func(r *uring.Request) bool { return covers(r, 10) },
		func(r *uring.Request) bool { return covers(r, 30) })
	write := func(pg int64, seed uint64, done chan<- error) {
		p := pattern(seed, 100)
		n, _, err := f.WriteAt(p, pg*PageSize+7, 0)
		if err == nil && n != len(p) {
			err = fmt.Errorf("short write at page %d: %d", pg, n)
		}
		done <- err
	}
	first, second, synced := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	go write(10, 81, first)
	<-entered
	go func() { synced <- f.Writeback(Range{0, int64(len(data))}, SyncNone) }()
	waitDraining(f)
	go write(30, 82, second)
	expectHeldOff(t, "a write", "Writeback", secondIssued, release, first, synced, second)
	rb.setBefore(nil)
	copy(m.data[10*PageSize+7:], pattern(81, 100))
	copy(m.data[30*PageSize+7:], pattern(82, 100))
	if err := f.Writeback(Range{0, int64(len(data))}, SyncData); err != nil {
		t.Fatal(err)
	}
	if got := h.bytes(t); !bytes.Equal(got, m.data) {
		t.Fatalf("host differs from the model first at %d", firstDiff(got, m.data))
	}
	checkInvariants(t, c, false, f)
}

// expectHeldOff checks that what (a second fill or write, just started)
// has not reached the host while waiter waits for the first one, which
// release lets go; then that every call ends without error and the
// second reached the host after all.
func expectHeldOff(t *testing.T, what, waiter string, issued *atomic.Bool, release chan struct{}, done ...chan error) {
	t.Helper()
	time.Sleep(100 * time.Millisecond) // time enough for it to start, were it let
	if issued.Load() {
		close(release)
		t.Fatalf("%s reached the host while %s waited for the ones in flight", what, waiter)
	}
	close(release)
	for _, ch := range done {
		if err := <-ch; err != nil {
			t.Fatal(err)
		}
	}
	if !issued.Load() {
		t.Fatalf("%s held off never reached the host", what)
	}
}

// blockAndWatch makes the first request that first accepts wait, ahead
// of its Submit, until release is closed (entered is closed when it
// starts waiting), and sets issued when a request that second accepts
// is about to be submitted.
func blockAndWatch(rb *recBackend, first, second func(*uring.Request) bool) (entered, release chan struct{}, issued *atomic.Bool) {
	entered, release, issued = make(chan struct{}), make(chan struct{}), new(atomic.Bool)
	var once sync.Once
	rb.setBefore(func(reqs []uring.Request) {
		for i := range reqs {
			switch r := &reqs[i]; {
			case first(r):
				once.Do(func() { close(entered); <-release })
			case second(r):
				issued.Store(true)
			}
		}
	})
	return entered, release, issued
}
