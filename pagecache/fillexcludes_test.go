//go:build linux

package pagecache

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// TestFillExcludes blocks the host read of a fill and runs, meanwhile,
// an operation that must wait for it (File.filling): a write of the same
// page, a truncate below it, new descriptors, a release. The operation
// must not finish while the read is blocked; the read must return the
// bytes the file held when it started, whole; the operation's effect must
// show afterwards.
// Each case runs for a miss that takes frames (free frames: it is
// admitted) and for one a full cache reads around (no frames,
// Cache.admitLater).
func TestFillExcludes(t *testing.T) {
	const pages, capPages = 64, 32
	const page = 40 // the missed page
	var oldFd int32 // the descriptor "new descriptors" replaced
	ops := []struct {
		name string
		run  func(f *File) error
		// after checks f (or says why it cannot) once both are done.
		after func(t *testing.T, f *File, newData []byte)
	}{
		{
			name: "write of the page",
			run: func(f *File) error {
				_, _, err := f.WriteAt(pattern(9, PageSize), page*PageSize, 0)
				return err
			},
			after: func(t *testing.T, f *File, _ []byte) {
				got := make([]byte, PageSize)
				if _, err := f.ReadAt(got, page*PageSize); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, pattern(9, PageSize)) {
					t.Fatalf("the write is not in the page after the fill")
				}
			},
		},
		{
			name: "truncate below the page",
			run:  func(f *File) error { return f.Truncate(page*PageSize - 1) },
			after: func(t *testing.T, f *File, _ []byte) {
				if f.Size() != page*PageSize-1 {
					t.Fatalf("size %d after the truncate", f.Size())
				}
			},
		},
		{
			name: "new descriptors",
			run: func(f *File) error {
				oldFd = f.fd
				fd, err := unix.Dup(int(oldFd))
				if err != nil {
					return err
				}
				f.SetFd(int32(fd), -1)
				return nil
			},
			after: func(t *testing.T, f *File, data []byte) {
				defer func() {
					dup := f.fd
					f.SetFd(oldFd, -1) // the descriptor openFile's cleanup closes
					unix.Close(int(dup))
				}()
				got := make([]byte, PageSize)
				if _, err := f.ReadAt(got, (page+1)*PageSize); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, data[(page+1)*PageSize:(page+2)*PageSize]) {
					t.Fatalf("a read through the new descriptor returned other bytes")
				}
			},
		},
		{
			name:  "release",
			run:   func(f *File) error { return f.Release() },
			after: func(t *testing.T, f *File, _ []byte) {},
		},
	}
	for _, full := range []bool{false, true} {
		for _, op := range ops {
			name := "admitted/" + op.name
			if full {
				name = "around/" + op.name
			}
			t.Run(name, func(t *testing.T) {
				rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
				c := newCache(t, rb, Options{Capacity: capPages * PageSize})
				var files []*File // every file holding frames, for checkInvariants
				if full {
					other := newHostFile(t, pattern(3, capPages*PageSize), false)
					fo := openFile(t, c, other, capPages*PageSize)
					files = append(files, fo)
					if _, err := fo.ReadAt(make([]byte, capPages*PageSize), 0); err != nil {
						t.Fatal(err)
					}
				}
				data := pattern(4, pages*PageSize)
				f := openFile(t, c, newHostFile(t, data, false), pages*PageSize)
				entered, release := make(chan struct{}), make(chan struct{})
				var once sync.Once
				rb.setBefore(func(reqs []uring.Request) {
					for _, r := range reqs {
						if r.Op.IsRead() && r.Off == page*PageSize {
							once.Do(func() { close(entered); <-release })
						}
					}
				})
				before := c.Stats()
				got := make([]byte, PageSize)
				readDone := make(chan error, 1)
				go func() {
					_, err := f.ReadAt(got, page*PageSize)
					readDone <- err
				}()
				<-entered
				opDone := make(chan error, 1)
				go func() { opDone <- op.run(f) }()
				// A sleep, not a timing assertion: an operation that did
				// not wait for the fill returns well within it.
				select {
				case err := <-opDone:
					close(release)
					t.Fatalf("%s returned (%v) while the fill of its page was in flight", op.name, err)
				case <-time.After(50 * time.Millisecond):
				}
				close(release)
				if err := <-readDone; err != nil {
					t.Fatalf("read: %v", err)
				}
				if err := <-opDone; err != nil {
					t.Fatalf("%s: %v", op.name, err)
				}
				if want := data[page*PageSize : (page+1)*PageSize]; !bytes.Equal(got, want) {
					t.Fatalf("the read returned other bytes than the file held (first difference at %d)", firstDiff(got, want))
				}
				if d := c.Stats().Sub(before); full != (d.AdmissionSkips == 1) {
					t.Fatalf("%d pages read around; the %s fill was to go %s", d.AdmissionSkips,
						map[bool]string{false: "admitted", true: "full cache's"}[full], map[bool]string{false: "into the cache", true: "around it"}[full])
				}
				// The read around a full cache took no lock (readAround):
				// it is what the operation had to wait for.
				if n := c.st.aroundUnlocked.Load(); n != map[bool]uint64{false: 0, true: 1}[full] {
					t.Fatalf("%d reads around the cache with no lock", n)
				}
				op.after(t, f, data)
				if op.name != "release" {
					files = append(files, f)
				}
				checkInvariants(t, c, true, files...)
			})
		}
	}
}
