//go:build linux

package pagecache

import (
	"testing"
	"time"

	"github.com/ringfs/ringfs/uring"
)

// TestFileLockWaits: an acquisition of a file's lock that finds it taken
// is counted once, with the time it waited; one that finds it free is not.
func TestFileLockWaits(t *testing.T) {
	cases := []struct {
		name   string
		holder bool // true: the test holds mu for writing, else for reading
		op     func(f *File) error
		waits  uint64
	}{
		{"write behind a writer", true, func(f *File) error { _, _, err := f.WriteAt([]byte("x"), 1, 0); return err }, 1},
		{"write behind a reader", false, func(f *File) error { _, _, err := f.WriteAt([]byte("x"), 1, 0); return err }, 1},
		{"reader behind a writer", true, func(f *File) error { f.NextDirty(0); return nil }, 1},
		{"reader beside a reader", false, func(f *File) error { f.NextDirty(0); return nil }, 0},
	}
	be := openBackend(t, uring.BackendPsync, nil)
	c := newCache(t, be, Options{Capacity: 16 * PageSize})
	h := newHostFile(t, pattern(80, 4*PageSize), false)
	f := openFile(t, c, h, 4*PageSize)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := c.Stats()
			if tc.holder {
				f.mu.Lock()
			} else {
				f.mu.RLock()
			}
			if d := c.Stats().Sub(before); d.FileLockWaits != 0 {
				t.Fatalf("the test's own free acquisition counted %d waits", d.FileLockWaits)
			}
			const held = 20 * time.Millisecond
			done := make(chan error, 1)
			go func() { done <- tc.op(f) }()
			if tc.waits > 0 {
				// The counter moves when the acquisition is done waiting;
				// until then the op must still be blocked.
				select {
				case err := <-done:
					t.Fatalf("op finished while the lock was held (err %v)", err)
				case <-time.After(held):
				}
			} else if err := <-done; err != nil {
				t.Fatal(err)
			}
			if tc.holder {
				f.mu.Unlock()
			} else {
				f.mu.RUnlock()
			}
			if tc.waits > 0 {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			d := c.Stats().Sub(before)
			if d.FileLockWaits != tc.waits {
				t.Fatalf("FileLockWaits = %d, want %d", d.FileLockWaits, tc.waits)
			}
			if tc.waits > 0 && time.Duration(d.FileLockWaitNs) < held {
				t.Fatalf("FileLockWaitNs = %v, want at least the %v the lock was held", time.Duration(d.FileLockWaitNs), held)
			}
			if tc.waits == 0 && d.FileLockWaitNs != 0 {
				t.Fatalf("FileLockWaitNs = %d with no wait", d.FileLockWaitNs)
			}
		})
	}
}
