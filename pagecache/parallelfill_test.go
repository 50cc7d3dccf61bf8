//go:build linux

package pagecache

import (
	"bytes"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// holdReads is an injector that holds every read's completion in the
// goroutine that made it (the psync backend completes in the caller)
// until release is closed, or, when together > 0, until that many reads
// are held at once. It counts reads and the most held at one time.
type holdReads struct {
	together int
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
	if !r.Op.IsRead() {
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, PageSize)
			off := page * PageSize
			if n, err := f.ReadAt(p, off); err != nil || n != PageSize || !bytes.Equal(p, data[off:off+PageSize]) {
				t.Errorf("ReadAt(page %d) = %d, %v; differs at %d", page, n, err, firstDiff(p, data[off:off+PageSize]))
			}
		}()
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
