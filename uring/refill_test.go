//go:build linux

package uring

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// countIssues is an injector that counts the requests issued to the
// kernel and the completions seen, and changes nothing.
type countIssues struct{ issued, completed atomic.Int64 }

func (c *countIssues) Enter() syscall.Errno                 { return 0 }
func (c *countIssues) Issue(*Request) (int32, bool)         { c.issued.Add(1); return 0, false }
func (c *countIssues) Complete(_ *Request, res int32) int32 { c.completed.Add(1); return res }

// TestSubmitRefillsBeforeDrain: a Submit of more requests than the ring
// has slots queues more as soon as a refill's worth of its own are done,
// instead of waiting for every request in flight. The requests are
// one-byte reads of a pipe, which complete one at a time as bytes are
// written: after each refill step's bytes, the count of requests issued
// must reach min(total, completed+slots) before more bytes are written. A Submit
// that waited for its whole first round would stop at slots issued until
// slots bytes were written.
func TestSubmitRefillsBeforeDrain(t *testing.T) {
	const total = 40
	for _, entries := range []uint32{4, 8} {
		t.Run(fmt.Sprintf("entries=%d", entries), func(t *testing.T) {
			before := snapshotResources(t)
			inj := &countIssues{}
			be, err := New(Options{Backend: BackendUring, Entries: entries, Injector: inj})
			if err != nil {
				t.Fatal(err)
			}
			r := be.(*Ring)
			slots, step := len(r.slots), int(r.refillStep())
			var p [2]int
			if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			reqs := make([]Request, total)
			bufs := make([]byte, total)
			for i := range reqs {
				reqs[i] = Request{Op: OpRead, Fd: int32(p[0]), Buf: bufs[i : i+1]}
			}
			done := make(chan error, 1)
			go func() { done <- be.Submit(reqs) }()
			// waitIssued waits up to 2 s for at least n requests issued.
			waitIssued := func(n int) bool {
				for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
					if inj.issued.Load() >= int64(n) {
						return true
					}
					time.Sleep(100 * time.Microsecond)
				}
				return false
			}
			failed := false
			for written := 0; written < total; {
				// With written bytes consumed and delivered, a refilling
				// Submit has issued all it can.
				for inj.completed.Load() < int64(written) {
					time.Sleep(100 * time.Microsecond)
				}
				want := min(total, slots+written)
				if !failed && !waitIssued(want) {
					t.Errorf("after %d of %d reads completed (%d slots, refill step %d): %d issued, want %d",
						written, total, slots, step, inj.issued.Load(), want)
					failed = true // feed the rest so that Submit returns
				}
				// One refill's worth of bytes at a time: the leader waits
				// in the kernel for that many completions.
				n := min(step, total-written)
				if _, err := syscall.Write(p[1], make([]byte, n)); err != nil {
					t.Fatal(err)
				}
				written += n
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for i := range reqs {
				if reqs[i].N != 1 || reqs[i].Err != nil {
					t.Fatalf("read %d: (%d, %v), want (1, nil)", i, reqs[i].N, reqs[i].Err)
				}
			}
			if n := inj.issued.Load(); n != total {
				t.Errorf("%d requests issued, want %d", n, total)
			}
			st := be.Stats()
			t.Logf("%d reads through %d slots (refill step %d): %d enters, high water %d in flight",
				total, slots, step, st.Enters, st.InflightHighMark)
			syscall.Close(p[0])
			syscall.Close(p[1])
			if err := be.Close(); err != nil {
				t.Fatal(err)
			}
			checkNoLeaks(t, before)
		})
	}
}
