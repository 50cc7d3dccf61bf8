//go:build linux

package pagecache

import (
	"bytes"
	"errors"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// TestReadAround: a miss that a full cache reads around takes no lock of
// its file (File.readAround), yet waits, as a locked fill does, for a
// write whose host part is in flight on the file. (TestFillExcludes
// checks the other direction: what changes the file waits for the read.)
func TestReadAround(t *testing.T) {
	const capPages, pages, page = 16, 32, 5
	setup := func(t *testing.T) (*recBackend, *Cache, *File, *File, []byte) {
		rb, c, fo := fullCache(t, capPages)
		data := pattern(4, pages*PageSize)
		return rb, c, fo, openFile(t, c, newHostFile(t, data, false), pages*PageSize), data
	}
	read := func(f *File) (<-chan error, []byte) {
		got := make([]byte, PageSize)
		done := make(chan error, 1)
		go func() {
			_, err := f.ReadAt(got, page*PageSize)
			done <- err
		}()
		return done, got
	}

	t.Run("no lock", func(t *testing.T) {
		_, c, fo, f, data := setup(t)
		// Held for reading, with a writer waiting, f.mu keeps any read
		// that would take it, even for reading, waiting.
		f.mu.RLock()
		writer := make(chan struct{})
		go func() {
			f.mu.Lock()
			close(writer) // the writer only has to get the lock
			f.mu.Unlock()
		}()
		for f.mu.rw.TryRLock() {
			f.mu.rw.RUnlock() // until the writer is waiting
			time.Sleep(time.Millisecond)
		}
		done, got := read(f)
		select {
		case err := <-done:
			f.mu.RUnlock()
			<-writer
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			f.mu.RUnlock()
			<-done
			<-writer
			t.Fatal("the read around the cache waited for the file's lock")
		}
		if !bytes.Equal(got, data[page*PageSize:(page+1)*PageSize]) {
			t.Fatalf("the read returned other bytes than the file's (first difference at %d)", firstDiff(got, data[page*PageSize:]))
		}
		if n := c.st.aroundUnlocked.Load(); n != 1 {
			t.Fatalf("%d reads around the cache with no lock, want 1", n)
		}
		checkInvariants(t, c, true, fo, f)
	})

	t.Run("waits for a host write", func(t *testing.T) {
		rb, c, fo, f, _ := setup(t)
		entered, release := rb.blockFirst(func(r *uring.Request) bool { return r.Op.IsWrite() && r.Off == page*PageSize })
		newData := pattern(9, PageSize)
		wrote := make(chan error, 1)
		go func() {
			_, _, err := f.WriteAt(newData, page*PageSize, Through)
			wrote <- err
		}()
		<-entered
		done, got := read(f)
		// A sleep, not a timing assertion: a read that did not wait for
		// the write returns well within it.
		select {
		case err := <-done:
			close(release)
			t.Fatalf("the read returned (%v) while a write of its page was in flight", err)
		case <-time.After(50 * time.Millisecond):
		}
		close(release)
		if err := <-wrote; err != nil {
			t.Fatalf("write: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("read: %v", err)
		}
		if !bytes.Equal(got, newData) {
			t.Fatalf("the read that waited for the write returned other bytes (first difference at %d)", firstDiff(got, newData))
		}
		if n := c.st.aroundUnlocked.Load(); n != 0 {
			t.Fatalf("%d reads around the cache with no lock while a write was in flight", n)
		}
		checkInvariants(t, c, true, fo, f)
	})
}

// TestReleasedMiss: a read of a released file fails with EBADF whether
// its pages would be read around a full cache or into free frames, and
// evicts nothing on the way.
func TestReleasedMiss(t *testing.T) {
	for _, full := range []bool{false, true} {
		t.Run(map[bool]string{false: "free frames", true: "full cache"}[full], func(t *testing.T) {
			const capPages = 16
			c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: capPages * PageSize})
			files := []*File{}
			if full {
				fo := openFile(t, c, newHostFile(t, pattern(3, capPages*PageSize), false), capPages*PageSize)
				if _, err := fo.ReadAt(make([]byte, capPages*PageSize), 0); err != nil {
					t.Fatal(err)
				}
				files = append(files, fo)
			}
			f := openFile(t, c, newHostFile(t, pattern(4, 32*PageSize), false), 32*PageSize)
			if err := f.Release(); err != nil {
				t.Fatal(err)
			}
			before := c.Stats()
			if n, err := f.ReadAt(make([]byte, PageSize), 5*PageSize); n != 0 || !errors.Is(err, syscall.EBADF) {
				t.Fatalf("ReadAt of a released file = %d, %v; want 0, EBADF", n, err)
			}
			if d := c.Stats().Sub(before); d.Evictions != 0 || d.Fills != 0 {
				t.Fatalf("the read evicted %d pages and filled %d times", d.Evictions, d.Fills)
			}
			checkInvariants(t, c, true, files...)
		})
	}
}

// TestReadAroundDirect: a file with an O_DIRECT descriptor reads a miss
// around the full cache only into a buffer aligned for O_DIRECT, and
// then through that descriptor: the kernel does not cache the page
// either. A second miss of the page admits it (filled through the
// descriptor too), and a miss into an unaligned buffer fills a frame.
func TestReadAroundDirect(t *testing.T) {
	const capPages, pages = 16, 64
	rb, c, fo := fullCache(t, capPages)
	data := pattern(14, pages*PageSize)
	// On a disk, not tmpfs (testDir), so that the kernel can drop its
	// copy of the file and the test can see whether a read put it back.
	h := newHostFileIn(t, t.TempDir(), data, true)
	if err := h.fh.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(int(h.fh.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	f := openFile(t, c, h, pages*PageSize)
	aligned := alignedPage(t)
	cases := []struct {
		name      string
		page      int64
		unaligned bool
		around    bool // read around the cache, else filled into a frame
	}{
		{"first miss goes around", 40, false, true},
		{"second miss of the page admits it", 40, false, false},
		{"unaligned buffer fills a frame", 20, true, false},
		{"another first miss goes around", 60, false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			buf := aligned
			if tc.unaligned {
				buf = make([]byte, PageSize+1)[1:]
			}
			paths, before, resident := unlockedPaths(c), c.Stats(), f.ResidentBytes()
			kernel0 := kernelCached(t, h, tc.page)
			submits, ops := rb.mark()
			if _, err := f.ReadAt(buf, tc.page*PageSize); err != nil {
				t.Fatal(err)
			}
			if want := data[tc.page*PageSize : (tc.page+1)*PageSize]; !bytes.Equal(buf, want) {
				t.Fatalf("read other bytes than the file's (first difference at %d)", firstDiff(buf, want))
			}
			d, skips := unlockedPaths(c).sub(paths), c.Stats().Sub(before).AdmissionSkips
			grew := f.ResidentBytes() - resident
			want := pathCounts{1, 0, 0}
			if tc.around {
				want = pathCounts{0, 0, 1}
			}
			if d != want || tc.around != (skips == 1) || tc.around != (grew == 0) {
				t.Fatalf("fills indexed/not indexed/reads around with no lock %v, want %v; %d pages kept out, file's resident bytes grew by %d", d, want, skips, grew)
			}
			// Both paths go to the ring (where reads of the disk wait
			// together), through the O_DIRECT descriptor.
			if n, got := rb.since(submits, ops); n != 1 || len(got) != 1 || got[0].fd != h.directFd() {
				t.Fatalf("%d submissions %v; want one read through the O_DIRECT descriptor %d", n, got, h.directFd())
			}
			switch k := kernelCached(t, h, tc.page); {
			case kernel0 != 0:
				t.Logf("the kernel keeps the file cached here (%s): not checked that the read left it out", h.path)
			case k != 0:
				t.Fatalf("the read left the page in the kernel's cache too (cachestat: %d pages)", k)
			}
			checkInvariants(t, c, true, fo, f)
		})
	}
}

// fullCache returns a cache of capPages pages on a recording backend, all
// of them holding a file of its own (returned, for checkInvariants).
func fullCache(t *testing.T, capPages int) (*recBackend, *Cache, *File) {
	t.Helper()
	rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
	c := newCache(t, rb, Options{Capacity: int64(capPages) * PageSize})
	fo := openFile(t, c, newHostFile(t, pattern(3, capPages*PageSize), false), int64(capPages)*PageSize)
	if _, err := fo.ReadAt(make([]byte, capPages*PageSize), 0); err != nil {
		t.Fatal(err)
	}
	return rb, c, fo
}

// kernelCached returns how many pages of h's page page the kernel caches
// (0 where cachestat(2) is missing).
func kernelCached(t *testing.T, h *hostFile, page int64) uint64 {
	t.Helper()
	var st unix.Cachestat_t
	err := unix.Cachestat(uint(h.fh.Fd()), &unix.CachestatRange{Off: uint64(page * PageSize), Len: PageSize}, &st, 0)
	if errors.Is(err, syscall.ENOSYS) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return st.Cache
}

// alignedPage returns a page-sized buffer aligned to the page size.
func alignedPage(t *testing.T) []byte {
	b, err := unix.Mmap(-1, 0, PageSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}
