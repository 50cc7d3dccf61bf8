//go:build linux

package pagecache

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// TestFillExcludes blocks the host read of a fill and runs, meanwhile,
// an operation that must wait for it (File.filling): a write of the same
// page, whole or in part, a truncate below it, new descriptors, a
// release. The operation must not finish while the read is blocked; the
// read must return the bytes the file held when it started, whole; the
// operation's effect must show afterwards.
// Each case runs for a miss that takes frames (free frames: it is
// admitted), both as a fill planned under the file's lock and as one
// that takes none (File.fillUnlocked), and for one a full cache reads
// around (no frames, Cache.admitLater; File.readAround).
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
			// Part of a page the cache does not hold yet: unless the
			// fill indexed it first, the write goes to the host.
			name: "partial write of the page",
			run: func(f *File) error {
				_, _, err := f.WriteAt(pattern(10, 100), page*PageSize+10, 0)
				return err
			},
			after: func(t *testing.T, f *File, data []byte) {
				want := bytes.Clone(data[page*PageSize : (page+1)*PageSize])
				copy(want[10:], pattern(10, 100))
				got := make([]byte, PageSize)
				if _, err := f.ReadAt(got, page*PageSize); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("the write is not in the page after the fill (first difference at %d)", firstDiff(got, want))
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
	for _, mode := range []string{"locked", "admitted", "around"} {
		full := mode == "around"
		for _, op := range ops {
			t.Run(mode+"/"+op.name, func(t *testing.T) {
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
				if mode == "locked" {
					// A cached page in the fill's readahead: it plans under
					// the lock (fillUnlocked takes only runs of missing pages).
					// The miss continues the last fill, so it reads ahead.
					if _, err := f.ReadAt(make([]byte, 1), (page+3)*PageSize); err != nil {
						t.Fatal(err)
					}
					f.fillEnd.Store(page * PageSize)
				}
				paths := unlockedPaths(c)
				entered, release := rb.blockFirst(func(r *uring.Request) bool { return r.Op.IsRead() && r.Off == page*PageSize })
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
				// The path the miss took is the one the case is for.
				want := map[string][3]uint64{"locked": {}, "admitted": {1, 0, 0}, "around": {0, 0, 1}}[mode]
				if d := unlockedPaths(c).sub(paths); [3]uint64{d[0] + d[1], 0, d[2]} != want {
					t.Fatalf("%d fills indexed with no lock, %d not indexed, %d reads around with no lock", d[0], d[1], d[2])
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

// unlockedPaths returns the counts of fills indexed after a read with no
// lock, of such fills that indexed nothing, and of reads around the
// cache with no lock.
func unlockedPaths(c *Cache) pathCounts {
	return pathCounts{c.st.fillsUnlocked.Load(), c.st.fillsNotIndexed.Load(), c.st.aroundUnlocked.Load()}
}

type pathCounts [3]uint64

func (p pathCounts) sub(q pathCounts) pathCounts {
	return pathCounts{p[0] - q[0], p[1] - q[1], p[2] - q[2]}
}

// TestFillUnlockedChanged runs, between the end of a fill's host read
// with no lock (File.fillUnlocked) and its taking the file's lock, an
// operation that changes the page it read: the fill must not index the
// bytes it read, which are older than the change, though it returns them
// (they were the file's while it read). Each runs on a file with a
// buffered descriptor only and on one with an O_DIRECT descriptor too,
// which such fills read with.
func TestFillUnlockedChanged(t *testing.T) {
	const pages, page = 64, 40
	ops := []struct {
		name string
		run  func(f *File) error
		want func(data []byte) []byte // the page afterwards
	}{
		{"partial write", func(f *File) error {
			_, _, err := f.WriteAt(pattern(10, 100), page*PageSize+10, 0)
			return err
		}, func(data []byte) []byte {
			want := bytes.Clone(data[page*PageSize : (page+1)*PageSize])
			copy(want[10:], pattern(10, 100))
			return want
		}},
		{"write through", func(f *File) error {
			_, _, err := f.WriteAt(pattern(11, PageSize), page*PageSize, Through)
			return err
		}, func([]byte) []byte { return pattern(11, PageSize) }},
		{"punch", func(f *File) error {
			return f.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, page*PageSize, PageSize)
		}, func([]byte) []byte { return make([]byte, PageSize) }},
	}
	for _, op := range ops {
		for _, direct := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/direct=%v", op.name, direct), func(t *testing.T) {
				c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 32 * PageSize})
				data := pattern(4, pages*PageSize)
				f := openFile(t, c, newHostFile(t, data, direct), pages*PageSize)
				fillChanged(t, c, f, data, page, op.name, op.run, op.want)
			})
		}
	}
}

// fillChanged is one case of TestFillUnlockedChanged: f holds data, and
// run changes its page page into want(data).
func fillChanged(t *testing.T, c *Cache, f *File, data []byte, page int64, name string, run func(f *File) error, want func([]byte) []byte) {
	t.Helper()
	paths := unlockedPaths(c)
	got := readWithFillHook(t, f, page*PageSize, func() error { return run(f) })
	if held := data[page*PageSize : (page+1)*PageSize]; !bytes.Equal(got, held) {
		t.Fatalf("the fill returned other bytes than the file held while it read (first difference at %d)", firstDiff(got, held))
	}
	if d := unlockedPaths(c).sub(paths); d != (pathCounts{0, 1, 0}) {
		t.Fatalf("%d fills indexed with no lock, %d not indexed, %d reads around with no lock; want 0, 1, 0", d[0], d[1], d[2])
	}
	if _, err := f.ReadAt(got, page*PageSize); err != nil {
		t.Fatal(err)
	}
	if after := want(data); !bytes.Equal(got, after) {
		t.Fatalf("after the %s the page reads otherwise (first difference at %d)", name, firstDiff(got, after))
	}
	checkInvariants(t, c, true, f)
}

// TestFillUnlockedCachedWrite: a write that stays in the cache (pages all
// cached, within the size) between an unlocked fill's read and its lock
// changes neither the host nor which pages are missing, so the fill still
// indexes its pages.
func TestFillUnlockedCachedWrite(t *testing.T) {
	const pages, page, cached = 64, 40, 10
	c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 32 * PageSize})
	data := pattern(4, pages*PageSize)
	f := openFile(t, c, newHostFile(t, data, false), pages*PageSize)
	if _, err := f.ReadAt(make([]byte, PageSize), cached*PageSize); err != nil {
		t.Fatal(err)
	}
	newData := pattern(12, PageSize)
	paths := unlockedPaths(c)
	got := readWithFillHook(t, f, page*PageSize, func() error {
		_, _, err := f.WriteAt(newData, cached*PageSize, 0)
		return err
	})
	if d := unlockedPaths(c).sub(paths); d != (pathCounts{1, 0, 0}) {
		t.Fatalf("%d fills indexed with no lock, %d not indexed, %d reads around with no lock; want 1, 0, 0", d[0], d[1], d[2])
	}
	for _, pg := range []struct {
		page int64
		want []byte
	}{{page, data[page*PageSize : (page+1)*PageSize]}, {cached, newData}} {
		if _, hit, err := f.ReadAtHit(got, pg.page*PageSize); err != nil || !hit {
			t.Fatalf("page %d: hit %v, %v", pg.page, hit, err)
		}
		if !bytes.Equal(got, pg.want) {
			t.Fatalf("page %d reads otherwise (first difference at %d)", pg.page, firstDiff(got, pg.want))
		}
	}
	checkInvariants(t, c, true, f)
}

// readWithFillHook reads the page at off of f, running op once between
// the host read of the unlocked fill it makes (File.fillUnlocked) and the
// fill's taking of f's lock, and returns the bytes read. It fails t unless
// op ran exactly once and succeeded.
func readWithFillHook(t *testing.T, f *File, off int64, op func() error) []byte {
	t.Helper()
	var opErr error
	ran := 0
	testHookFillRead = func(hf *File) {
		if hf == f && ran == 0 {
			ran++
			opErr = op()
		}
	}
	defer func() { testHookFillRead = nil }()
	got := make([]byte, PageSize)
	if _, err := f.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if ran != 1 || opErr != nil {
		t.Fatalf("the operation ran %d times (%v)", ran, opErr)
	}
	return got
}

// TestFillUnlockedDirect: a miss of a file with an O_DIRECT descriptor
// fills its frames with no lock, through that descriptor, and indexes
// them: in the middle of the file, across two pages, and on the last
// page, which the file's end cuts short (the rest of its frame reads as
// zeros, and a read there returns the bytes below the end).
func TestFillUnlockedDirect(t *testing.T) {
	const pages = 64
	const size = pages*PageSize - 100
	cases := []struct {
		name   string
		off, n int64
		filled int // pages the fill indexes
	}{
		{"middle page", 20 * PageSize, PageSize, 1},
		{"across two pages", 30*PageSize + 1000, PageSize, 2},
		{"last page, cut by the end", (pages - 1) * PageSize, PageSize - 100, 1},
		{"inside the last page", size - 50, 50, 1},
	}
	data := pattern(13, size)
	be := openBackend(t, uring.BackendUring, nil)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t, be, Options{Capacity: 32 * PageSize})
			f := openFile(t, c, newHostFile(t, data, true), size)
			before, paths := c.Stats(), unlockedPaths(c)
			got := make([]byte, tc.n)
			if n, hit, err := f.ReadAtHit(got, tc.off); err != nil || hit || n != int(tc.n) {
				t.Fatalf("ReadAtHit = %d, hit %v, %v; want %d bytes from the host", n, hit, err, tc.n)
			}
			if want := data[tc.off : tc.off+tc.n]; !bytes.Equal(got, want) {
				t.Fatalf("read other bytes than the file's (first difference at %d)", firstDiff(got, want))
			}
			if d := unlockedPaths(c).sub(paths); d != (pathCounts{1, 0, 0}) {
				t.Fatalf("%d fills indexed with no lock, %d not indexed, %d reads around with no lock; want 1, 0, 0", d[0], d[1], d[2])
			}
			if d := c.Stats().ResidentBytes - before.ResidentBytes; d != int64(tc.filled)*PageSize {
				t.Fatalf("%d bytes became resident, want %d pages", d, tc.filled)
			}
			if n, hit, err := f.ReadAtHit(got, tc.off); err != nil || !hit || n != int(tc.n) || !bytes.Equal(got, data[tc.off:tc.off+tc.n]) {
				t.Fatalf("read again: %d, hit %v, %v (same bytes: %v); want a hit of the same bytes", n, hit, err, bytes.Equal(got, data[tc.off:tc.off+tc.n]))
			}
			checkInvariants(t, c, true, f)
		})
	}
}
