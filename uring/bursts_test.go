//go:build linux

package uring

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBurstsOfLoneRequests runs rounds of 32 goroutines that each submit a
// few single O_DIRECT reads and leave, on a ring replaced every few
// rounds. O_DIRECT reads complete late, from the device, so callers park
// while leadership passes among callers that come and go: the pattern of
// a short benchmark run or of a burst of requests. Every round must end:
// a caller left parked with nobody reaping its completion hangs its
// round, and the watchdog then fails the test with every goroutine's
// stack. Every read is checked against the file's content.
func TestBurstsOfLoneRequests(t *testing.T) {
	const (
		goroutines = 32
		perCaller  = 3
		ringEvery  = 4 // rounds per ring
		fileSize   = 64 << 20
		stuck      = 20 * time.Second
	)
	rounds := 400
	if os.Getenv("RINGFS_SOAK") != "" {
		rounds = 8000
	}
	content := randomBytes(41, fileSize)
	f := directTempFile(t, "bursts", content)
	bufs := mmapBuffer(t, goroutines*4096)
	before := snapshotResources(t)
	var enters, sqes uint64
	for ring := 0; ring < rounds/ringEvery; ring++ {
		be, err := New(Options{Backend: BackendUring})
		if err != nil {
			t.Fatal(err)
		}
		for r := range ringEvery {
			round := ring*ringEvery + r
			if err := burst(be, f, content, bufs, goroutines, perCaller, round, stuck); err != nil {
				t.Fatalf("round %d of %d: %v", round, rounds, err)
			}
		}
		s := be.Stats()
		enters, sqes = enters+s.Enters, sqes+s.SQEs
		if err := be.Close(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d rounds of %d callers x %d reads, a new ring every %d rounds: %d enters, %.2f SQEs/enter",
		rounds, goroutines, perCaller, ringEvery, enters, float64(sqes)/float64(max(enters, 1)))
	checkNoLeaks(t, before)
}

// burst runs one round of TestBurstsOfLoneRequests.
func burst(be Backend, f *os.File, content, bufs []byte, goroutines, perCaller, round int, stuck time.Duration) error {
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(g)))
			buf := bufs[g*4096 : (g+1)*4096]
			for range perCaller {
				off := rng.Int64N(int64(len(content))/4096) * 4096
				reqs := []Request{{Op: OpRead, Fd: int32(f.Fd()), Off: off, Buf: buf}}
				err := be.Submit(reqs)
				if err != nil || reqs[0].Err != nil || reqs[0].N != 4096 {
					errs <- fmt.Errorf("read at %d: n %d, Submit: %v, request: %v", off, reqs[0].N, err, reqs[0].Err)
					return
				}
				if !bytes.Equal(buf, content[off:off+4096]) {
					errs <- fmt.Errorf("read at %d: wrong bytes, %s", off, firstDiff(buf, content[off:off+4096]))
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(stuck):
		stacks := make([]byte, 1<<20)
		stacks = stacks[:runtime.Stack(stacks, true)]
		return fmt.Errorf("callers still waiting after %v; %s\n%s", stuck, describeRing(be), stacks)
	}
	close(errs)
	return <-errs // nil when the channel is empty
}

// describeRing reports what a stuck ring holds: slots in use, pending
// requests, completions not yet reaped and the waiters listed.
func describeRing(be Backend) string {
	r, ok := be.(*Ring)
	if !ok {
		return fmt.Sprintf("%d requests in flight", be.Stats().Inflight)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d := fmt.Sprintf("slots used %d, pending %d, CQEs unreaped %d, waiters listed:",
		r.used, r.pendLn, atomic.LoadUint32(r.cqTail)-atomic.LoadUint32(r.cqHead))
	for w := r.waitHead; w != nil; w = w.next {
		d += fmt.Sprintf(" %p (remaining %d, token %d)", w, w.remaining.Load(), len(w.wake))
	}
	return d
}

// TestInlineRateFollowsCompletions: the ring's estimate of how much of
// what it submits is complete when io_uring_enter returns (which decides
// whether small submissions wait for each other) is high for reads of
// data in the kernel's cache and low for O_DIRECT reads, which complete
// later, from the device.
func TestInlineRateFollowsCompletions(t *testing.T) {
	const size = 4 << 20
	content := randomBytes(43, size)
	buffered := tempFile(t, "cached", content, os.O_RDONLY)
	direct := directTempFile(t, "direct", content)
	buf := mmapBuffer(t, 4096)
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(direct.Fd()), &fs); err == nil && (fs.Type == unix.TMPFS_MAGIC || fs.Type == unix.RAMFS_MAGIC) {
		// No device: O_DIRECT reads are served from memory, inside the enter.
		t.Skip("O_DIRECT reads of tmpfs complete at once")
	}
	be, err := New(Options{Backend: BackendUring})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	r := be.(*Ring)
	rng := rand.New(rand.NewPCG(43, 0))
	read := func(f *os.File) int32 {
		for range 64 {
			off := rng.Int64N(size/4096) * 4096
			reqs := []Request{{Op: OpRead, Fd: int32(f.Fd()), Off: off, Buf: buf}}
			if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || !bytes.Equal(buf, content[off:off+4096]) {
				t.Fatalf("read at %d: %v %v", off, err, reqs[0].Err)
			}
		}
		return r.inlineRate.Load()
	}
	for _, tc := range []struct {
		name   string
		f      *os.File
		inline bool
	}{
		{"O_DIRECT", direct, false},
		{"cached", buffered, true},
		{"O_DIRECT again", direct, false},
	} {
		rate := read(tc.f)
		t.Logf("%s: inline rate %d/%d", tc.name, rate, inlineOne)
		if got := rate >= inlineOne/2; got != tc.inline {
			t.Errorf("%s reads: inline rate %d/%d, want it %s half", tc.name, rate, inlineOne, map[bool]string{true: "at least", false: "under"}[tc.inline])
		}
	}
}

// directTempFile creates a file in t's temp dir holding content and opens
// it O_DIRECT for reading, closed at cleanup; it skips t where the file
// system refuses O_DIRECT, at open or at the first read.
func directTempFile(t *testing.T, name string, content []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Skipf("O_DIRECT not supported here: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	probe := mmapBuffer(t, 4096)
	if _, err := syscall.Pread(int(f.Fd()), probe, 0); err != nil {
		t.Skipf("O_DIRECT reads not supported here: %v", err)
	}
	return f
}
