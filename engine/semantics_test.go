//go:build linux

package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// opCounter is a uring.Injector that injects nothing and counts the
// operations that reach the kernel, by kind.
type opCounter struct {
	ops [16]atomic.Uint64
}

func (c *opCounter) Enter() syscall.Errno { return 0 }
func (c *opCounter) Issue(r *uring.Request) (int32, bool) {
	c.ops[r.Op].Add(1)
	return 0, false
}
func (c *opCounter) Complete(_ *uring.Request, res int32) int32 { return res }

// reads returns how many read operations were issued.
func (c *opCounter) reads() uint64 {
	return c.ops[uring.OpRead].Load() + c.ops[uring.OpReadv].Load() + c.ops[uring.OpReadFixed].Load()
}

func (c *opCounter) writes() uint64 {
	return c.ops[uring.OpWrite].Load() + c.ops[uring.OpWritev].Load() + c.ops[uring.OpWriteFixed].Load()
}

func (c *opCounter) total() uint64 {
	var n uint64
	for i := range c.ops {
		n += c.ops[i].Load()
	}
	return n
}

// TestReadAtEOFNoIO: in Exclusive and Writethrough mode a read at or past
// the cached size returns (0, io.EOF) without any I/O, and a read the
// cache holds does none either.
func TestReadAtEOFNoIO(t *testing.T) {
	checkLeaks(t)
	for _, mode := range []Mode{Exclusive, Writethrough} {
		for _, be := range []string{"uring", "psync"} {
			t.Run(fmt.Sprintf("%s/%s", mode, be), func(t *testing.T) {
				cnt := &opCounter{}
				e := newEngine(t, Options{Mode: mode, Backend: be, Injector: cnt})
				path := filepath.Join(t.TempDir(), "f")
				writeHost(t, path, pattern(10000, 5, 0))
				f := openFile(t, e, path, os.O_RDWR)
				// Cache the whole file, and grow it in the cache.
				if _, err := f.ReadAt(make([]byte, 10000), 0); err != nil {
					t.Fatal(err)
				}
				if _, err := f.WriteAt([]byte("tail"), 10000); err != nil {
					t.Fatal(err)
				}
				before, ring := cnt.total(), e.Stats().Ring
				p := make([]byte, 4096)
				for _, off := range []int64{10004, 10005, 1 << 20, 1 << 50} {
					if n, err := f.ReadAt(p, off); n != 0 || err != io.EOF {
						t.Fatalf("ReadAt at %d (size 10004): %d, %v", off, n, err)
					}
				}
				if n, err := f.ReadAt(p[:100], 9950); n != 54 || err != io.EOF || string(p[50:54]) != "tail" {
					t.Fatalf("ReadAt across the end: %d, %v", n, err)
				}
				if n, err := f.ReadAt(p, 0); n != 4096 || err != nil {
					t.Fatalf("cached ReadAt: %d, %v", n, err)
				}
				d := e.Stats().Ring.Sub(ring)
				if got := cnt.total() - before; got != 0 || d.SQEs != 0 || d.Requests != 0 {
					t.Fatalf("reads at EOF and hits did I/O: %d operations, %d SQEs, %d requests", got, d.SQEs, d.Requests)
				}
				t.Logf("6 reads at/past EOF and of cached bytes: 0 operations, 0 SQEs")
			})
		}
	}
}

// TestWriteGapNoFill: a write into pages the cache does not hold goes to
// the host as it is, without reading anything (no read-modify-write),
// and a write that covers whole pages or lies past the end is cached
// without a read either.
func TestWriteGapNoFill(t *testing.T) {
	checkLeaks(t)
	for _, mode := range []Mode{Exclusive, Writethrough} {
		t.Run(mode.String(), func(t *testing.T) {
			cnt := &opCounter{}
			e := newEngine(t, Options{Mode: mode, Injector: cnt})
			path := filepath.Join(t.TempDir(), "f")
			content := pattern(64<<10, 6, 0)
			writeHost(t, path, content)
			f := openFile(t, e, path, os.O_RDWR)
			writes := []struct {
				off int64
				n   int
			}{
				{100, 10},              // inside an uncached page
				{4096 - 5, 10},         // across two uncached pages
				{3 * 4096, 4096},       // a whole page
				{5*4096 + 7, 3 * 4096}, // partial, whole, whole, partial
				{64<<10 - 3, 100},      // across the end
				{200 << 10, 50},        // past the end: a hole before it
			}
			model := bytes.Clone(content)
			for i, w := range writes {
				p := pattern(w.n, 6, uint64(i+1))
				if n, err := f.WriteAt(p, w.off); n != w.n || err != nil {
					t.Fatalf("WriteAt(%d, %d): %d, %v", w.n, w.off, n, err)
				}
				if end := int(w.off) + w.n; end > len(model) {
					model = append(model, make([]byte, end-len(model))...)
				}
				copy(model[w.off:], p)
			}
			if r := cnt.reads(); r != 0 {
				t.Fatalf("%d writes issued %d reads", len(writes), r)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "host after Sync", readHost(t, path), model)
			got := make([]byte, len(model))
			if n, err := f.ReadAt(got, 0); n != len(model) || err != nil {
				t.Fatalf("ReadAt: %d, %v", n, err)
			}
			sameBytes(t, "engine", got, model)
			t.Logf("%d writes into uncached pages: 0 reads issued (%d writes), host and engine equal the model", len(writes), cnt.writes())
		})
	}
}

// fileStats returns the engine's FileStats for path.
func fileStats(t testing.TB, e *Engine, path string) FileStats {
	t.Helper()
	for _, fs := range e.Files() {
		if fs.Path == path {
			return fs
		}
	}
	t.Fatalf("Files() does not list %s", path)
	return FileStats{}
}

// TestDirtyBytesExact: a write dirties exactly the bytes it wrote.
func TestDirtyBytesExact(t *testing.T) {
	checkLeaks(t)
	e := newEngine(t, Options{Mode: Exclusive})
	path := filepath.Join(t.TempDir(), "f")
	writeHost(t, path, pattern(8*4096, 7, 0))
	f := openFile(t, e, path, os.O_RDWR)
	if _, err := f.ReadAt(make([]byte, 8*4096), 0); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		off   int64
		n     int
		dirty int64 // total dirty bytes after the write
	}{
		{100, 10, 10},
		{4096 + 1000, 1, 11},
		{2 * 4096, 4096, 11 + 4096},
		{3*4096 - 10, 20, 11 + 4096 + 10},   // from a dirty page (already counted) into a clean one
		{8 * 4096, 5, 11 + 4096 + 10 + 5},   // past the end: a new page
		{100, 10, 11 + 4096 + 10 + 5},       // rewriting dirty bytes
		{5 * 4096, 3 * 4096, 4122 + 3*4096}, // three whole clean cached pages
		// pagecache keeps one dirty span per page: a second, disjoint
		// write into a dirty page widens the span over the bytes between
		// (valid cached bytes, so rewriting them is harmless): page 1's
		// span [1000, 1001) becomes [1000, 3010).
		{4096 + 3000, 10, 4122 + 3*4096 - 1 + 2010},
	}
	for i, s := range steps {
		if n, err := f.WriteAt(pattern(s.n, 7, uint64(i+1)), s.off); n != s.n || err != nil {
			t.Fatalf("step %d: WriteAt: %d, %v", i, n, err)
		}
		if got := fileStats(t, e, path).DirtyBytes; got != s.dirty {
			t.Fatalf("step %d: write of %d bytes at %d: DirtyBytes %d, want %d", i, s.n, s.off, got, s.dirty)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if got := fileStats(t, e, path).DirtyBytes; got != 0 {
		t.Fatalf("DirtyBytes after Sync: %d", got)
	}
	t.Logf("%d writes: DirtyBytes followed the bytes written exactly (per-page covering span for two writes in one page), 0 after Sync", len(steps))
}

// directCoherence (row C1): an O_DIRECT read sees a cached write, and a
// buffered read sees an O_DIRECT write over pages the cache held, both
// ways through the same engine, in every caching mode, with sub-page
// mixes. It returns the cross-path reads checked.
func directCoherence(t *testing.T) int {
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT here")
	}
	total := 0
	for _, o := range []Options{
		{Mode: Exclusive}, {Mode: Exclusive, DirectIO: true}, {Mode: Exclusive, CacheSize: fsxTinyCache},
		{Mode: Writethrough}, {Mode: Shared}, {Mode: Exclusive, HostMmap: true},
	} {
		t.Run(fmt.Sprintf("%s/cache=%d/directio=%v/hostmmap=%v", o.Mode, o.CacheSize, o.DirectIO, o.HostMmap), func(t *testing.T) {
			e := newEngine(t, o)
			path := filepath.Join(dir, fmt.Sprintf("f-%d", len(t.Name())))
			model := pattern(16*4096, 8, 0)
			writeHost(t, path, model)
			buf := openFile(t, e, path, os.O_RDWR)
			dio := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
			all := make([]byte, len(model))
			if _, err := buf.ReadAt(all, 0); err != nil { // cache it all
				t.Fatal(err)
			}
			checks := 0
			for i := range 8 {
				// A cached sub-page write, then a direct read of its page.
				off := int64(i*2*4096 + 100 + i)
				p := pattern(50+i, 8, uint64(i+1))
				if _, err := buf.WriteAt(p, off); err != nil {
					t.Fatal(err)
				}
				copy(model[off:], p)
				got := alignedBuf(4096)
				pg := off &^ 4095
				if n, err := dio.ReadAt(got, pg); n != 4096 || err != nil {
					t.Fatalf("direct read: %d, %v", n, err)
				}
				sameBytes(t, "direct read after a cached write", got, model[pg:pg+4096])
				// A direct write of a whole cached page, then buffered reads
				// of part of it and of the page around.
				q := alignedBuf(4096)
				fillData(q, 8, uint64(100+i))
				wpg := int64(i*2*4096 + 4096)
				if n, err := dio.WriteAt(q, wpg); n != 4096 || err != nil {
					t.Fatalf("direct write: %d, %v", n, err)
				}
				copy(model[wpg:], q)
				r := make([]byte, 300)
				if _, err := buf.ReadAt(r, wpg-100); err != nil {
					t.Fatal(err)
				}
				sameBytes(t, "buffered read after a direct write", r, model[wpg-100:wpg+200])
				checks += 2
			}
			if _, err := buf.ReadAt(all, 0); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "whole file through the cache", all, model)
			if err := buf.Sync(); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "host", readHost(t, path), model)
			t.Logf("%d cross-path reads coherent", checks)
			total += checks
		})
	}
	return total
}

// TestNowait: RWF_NOWAIT reads of cached bytes return them; of bytes the
// cache lacks, EAGAIN after what the cache had.
func TestNowait(t *testing.T) {
	checkLeaks(t)
	cnt := &opCounter{}
	e := newEngine(t, Options{Mode: Exclusive, Readahead: 4096, Injector: cnt})
	path := filepath.Join(t.TempDir(), "f")
	content := pattern(8*4096, 9, 0)
	writeHost(t, path, content)
	f := openFile(t, e, path, os.O_RDONLY)
	p := make([]byte, 4096)
	n, err := f.ReadAtFlags(p, 4096, unix.RWF_NOWAIT)
	if n != 0 {
		t.Fatalf("RWF_NOWAIT miss returned %d bytes", n)
	}
	wantPathErr(t, "RWF_NOWAIT miss", err, syscall.EAGAIN)
	if cnt.reads() != 0 {
		t.Fatalf("RWF_NOWAIT miss issued %d reads", cnt.reads())
	}
	if _, err := f.ReadAt(p, 4096); err != nil { // fill page 1 only (readahead 4 KiB)
		t.Fatal(err)
	}
	before := cnt.total()
	if n, err := f.ReadAtFlags(p, 4096, unix.RWF_NOWAIT); n != 4096 || err != nil || !bytes.Equal(p, content[4096:8192]) {
		t.Fatalf("RWF_NOWAIT hit: %d, %v", n, err)
	}
	// Straddling: the cached page comes back, then EAGAIN.
	q := make([]byte, 8192)
	n, err = f.ReadAtFlags(q, 4096, unix.RWF_NOWAIT)
	if n != 4096 || !bytes.Equal(q[:n], content[4096:8192]) {
		t.Fatalf("RWF_NOWAIT half hit: %d bytes", n)
	}
	wantPathErr(t, "RWF_NOWAIT half hit", err, syscall.EAGAIN)
	if got := cnt.total() - before; got != 0 {
		t.Fatalf("RWF_NOWAIT reads issued %d operations", got)
	}
	t.Logf("RWF_NOWAIT: miss EAGAIN, hit data, half hit %d bytes + EAGAIN, 0 operations issued", n)
}

// privilegesCleared (row S1): a write of n > 0 bytes and every allocate
// mode clear setuid, and setgid when group-execute is set; a write of 0
// bytes clears nothing. It returns the mode checks made and how many of
// them expected bits cleared.
func privilegesCleared(t *testing.T) (checked, cleared int) {
	type step struct {
		name  string
		do    func(f *File) error
		clear bool
	}
	write := func(n int) func(f *File) error {
		return func(f *File) error { _, err := f.WriteAt(make([]byte, n), 10); return err }
	}
	alloc := func(mode uint32) func(f *File) error {
		return func(f *File) error { return f.Allocate(mode, 0, 4096) }
	}
	steps := []step{
		{"write 0 bytes", write(0), false},
		{"write 1 byte", write(1), true},
		{"write 5000 bytes", write(5000), true},
		{"allocate", alloc(0), true},
		{"allocate keep size", alloc(unix.FALLOC_FL_KEEP_SIZE), true},
		{"punch hole", alloc(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE), true},
		{"zero range", alloc(unix.FALLOC_FL_ZERO_RANGE), true},
		{"append", func(f *File) error {
			a, err := f.e.Open(f.name, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				return err
			}
			defer a.Close()
			_, err = a.Write([]byte("x"))
			return err
		}, true},
		{"Write at the offset", func(f *File) error { _, err := f.Write([]byte("abc")); return err }, true},
		{"WriteAtFlags RWF_DSYNC", func(f *File) error {
			_, err := f.WriteAtFlags([]byte("abc"), 4000, unix.RWF_DSYNC)
			return err
		}, true},
		{"Submit write", func(f *File) error {
			ops := []Op{{File: f, Write: true, Buf: []byte("abc"), Off: 7}}
			f.e.Submit(ops)
			return ops[0].Err
		}, true},
		{"Submit write of 0 bytes", func(f *File) error {
			ops := []Op{{File: f, Write: true, Buf: nil, Off: 7}}
			f.e.Submit(ops)
			return ops[0].Err
		}, false},
		{"O_DSYNC write", func(f *File) error {
			d, err := f.e.Open(f.name, os.O_WRONLY|syscall.O_DSYNC, 0)
			if err != nil {
				return err
			}
			defer d.Close()
			_, err = d.WriteAt([]byte("x"), 50)
			return err
		}, true},
		{"O_DIRECT write", func(f *File) error {
			d, err := f.e.Open(f.name, os.O_RDWR|syscall.O_DIRECT, 0)
			if err != nil {
				return err
			}
			defer d.Close()
			p := alignedBuf(4096)
			_, err = d.WriteAt(p, 4096)
			return err
		}, true},
	}
	dir := t.TempDir()
	writeHost(t, filepath.Join(dir, "probe"), make([]byte, 10))
	zr := zeroRangeSupported(filepath.Join(dir, "probe"))
	direct := directSupported(dir)
	for _, o := range []Options{{Mode: Exclusive}, {Mode: Exclusive, CacheSize: fsxTinyCache}, {Mode: Writethrough},
		{Mode: Shared}, {Mode: Exclusive, HostMmap: true}} {
		name := o.Mode.String()
		switch {
		case o.HostMmap:
			name = "hostmmap"
		case o.CacheSize > 0:
			name += "/tiny"
		}
		t.Run(name, func(t *testing.T) {
			e := newEngine(t, o)
			for _, perm := range []uint32{0o6755, 0o6745, 0o4700, 0o2710} {
				mode := perm&0o777 | unix.S_ISUID*(perm>>11&1) | unix.S_ISGID*(perm>>10&1)
				for _, s := range steps {
					if (!zr && s.name == "zero range") || (!direct && s.name == "O_DIRECT write") {
						continue
					}
					path := filepath.Join(dir, fmt.Sprintf("f%d", checked))
					writeHost(t, path, make([]byte, 100))
					if err := unix.Chmod(path, mode); err != nil {
						t.Fatal(err)
					}
					f := openFile(t, e, path, os.O_RDWR)
					if err := s.do(f); err != nil {
						t.Fatalf("%o %s: %v", mode, s.name, err)
					}
					var st unix.Stat_t
					if err := unix.Stat(path, &st); err != nil {
						t.Fatal(err)
					}
					want := mode
					if s.clear {
						want &^= unix.S_ISUID
						if mode&unix.S_IXGRP != 0 {
							want &^= unix.S_ISGID
						}
					}
					if got := st.Mode & 0o7777; got != want {
						t.Fatalf("mode %o after %s on %o, want %o", got, s.name, mode, want)
					}
					fi, err := f.Stat()
					if err != nil || uint32(fi.Mode().Perm()) != want&0o777 ||
						(fi.Mode()&fs.ModeSetuid != 0) != (want&unix.S_ISUID != 0) ||
						(fi.Mode()&fs.ModeSetgid != 0) != (want&unix.S_ISGID != 0) {
						t.Fatalf("Stat after %s on %o: %v, %v; want %o", s.name, mode, fi.Mode(), err, want)
					}
					f.Close()
					checked++
					if want != mode {
						cleared++
					}
				}
			}
		})
	}
	t.Logf("%d mode checks: setuid cleared by writes of n > 0 and allocations, setgid only with group-exec", checked)
	return checked, cleared
}

// writethroughVisible (row C3): in Writethrough mode every write and
// truncate is on the host when it returns, as a plain os.File sees it,
// without Sync. It returns the writes checked.
func writethroughVisible(t *testing.T) int {
	total := 0
	for _, o := range []Options{{Mode: Writethrough}, {Mode: Writethrough, CacheSize: fsxTinyCache}} {
		t.Run(fmt.Sprintf("cache=%d", o.CacheSize), func(t *testing.T) {
			e := newEngine(t, o)
			path := filepath.Join(t.TempDir(), "f")
			writeHost(t, path, pattern(5*4096, 10, 0))
			f := openFile(t, e, path, os.O_RDWR)
			other, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			model := readHost(t, path)
			if _, err := f.ReadAt(make([]byte, len(model)), 0); err != nil { // cached
				t.Fatal(err)
			}
			for i := range 200 {
				off := int64((i * 7919) % (8 * 4096))
				p := pattern(1+i*37%5000, 10, uint64(i+1))
				if n, err := f.WriteAt(p, off); n != len(p) || err != nil {
					t.Fatalf("WriteAt: %d, %v", n, err)
				}
				if end := int(off) + len(p); end > len(model) {
					model = append(model, make([]byte, end-len(model))...)
				}
				copy(model[off:], p)
				got := make([]byte, len(model)+1)
				n, _ := other.ReadAt(got, 0)
				sameBytes(t, fmt.Sprintf("os.File after write %d", i), got[:n], model)
			}
			if err := f.Truncate(3000); err != nil {
				t.Fatal(err)
			}
			if fi, _ := other.Stat(); fi.Size() != 3000 {
				t.Fatalf("os.File sees size %d after Truncate(3000)", fi.Size())
			}
			t.Logf("200 writes and a truncate: each visible to an os.File at once, without Sync")
			total += 200
		})
	}
	return total
}

// sharedSeesOthers (row C3): in Shared mode the engine reads what
// another writer (an os.File) wrote, and the size it set. It returns the
// writes checked.
func sharedSeesOthers(t *testing.T) int {
	e := newEngine(t, Options{Mode: Shared})
	path := filepath.Join(t.TempDir(), "f")
	writeHost(t, path, pattern(4096, 11, 0))
	f := openFile(t, e, path, os.O_RDWR)
	other, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	buf := make([]byte, 4096)
	if _, err := f.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		p := pattern(100+i, 11, uint64(i+1))
		off := int64(i * 300)
		if _, err := other.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(p))
		if n, err := f.ReadAt(got, off); n != len(p) || err != nil || !bytes.Equal(got, p) {
			t.Fatalf("engine read after os.File write %d: %d, %v, equal %v", i, n, err, bytes.Equal(got, p))
		}
		fi, err := f.Stat()
		ofi, _ := other.Stat()
		if err != nil || fi.Size() != ofi.Size() {
			t.Fatalf("engine size %d, host %d", fi.Size(), ofi.Size())
		}
	}
	if err := other.Truncate(10); err != nil {
		t.Fatal(err)
	}
	if n, err := f.ReadAt(buf, 0); n != 10 || err != io.EOF {
		t.Fatalf("engine read after another truncated: %d, %v", n, err)
	}
	if pos, err := f.Seek(0, io.SeekEnd); pos != 10 || err != nil {
		t.Fatalf("SeekEnd after another truncated: %d, %v", pos, err)
	}
	t.Logf("100 writes by an os.File and its truncate: all seen by the engine at once")
	return 100
}

// sharedAppendInterleaved (row C4): in Shared mode, framed records
// appended by goroutines through several engine O_APPEND handles and
// through os.File O_APPEND handles all land once and intact. It returns
// the records checked.
func sharedAppendInterleaved(t *testing.T) int {
	e := newEngine(t, Options{Mode: Shared})
	path := filepath.Join(t.TempDir(), "log")
	writeHost(t, path, nil)
	const writers, records = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var write func([]byte) (int, error)
			if w%2 == 0 {
				f, err := e.Open(path, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				write = f.Write
			} else {
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				write = f.Write
			}
			for r := range records {
				rec := makeRecord(w, r)
				if n, err := write(rec); n != len(rec) || err != nil {
					errs <- fmt.Errorf("writer %d record %d: %d, %v", w, r, n, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := map[[2]int]int{}
	data := readHost(t, path)
	for off := 0; off < len(data); {
		w, r, n, err := parseRecord(data[off:])
		if err != nil {
			t.Fatalf("record at %d: %v", off, err)
		}
		seen[[2]int{w, r}]++
		off += n
	}
	for w := range writers {
		for r := range records {
			if c := seen[[2]int{w, r}]; c != 1 {
				t.Fatalf("record %d/%d appears %d times", w, r, c)
			}
		}
	}
	t.Logf("%d records appended by %d engine and %d os.File writers: each exactly once, intact", writers*records, writers/2, writers/2)
	return writers * records
}

// makeRecord frames a record: length, writer, index, payload, CRC.
func makeRecord(w, r int) []byte {
	payload := pattern(20+(w*31+r*17)%300, 12, uint64(w)<<32|uint64(r))
	rec := make([]byte, 16+len(payload)+4)
	binary.LittleEndian.PutUint32(rec[0:], uint32(len(rec)))
	binary.LittleEndian.PutUint32(rec[4:], 0x52494e47)
	binary.LittleEndian.PutUint32(rec[8:], uint32(w))
	binary.LittleEndian.PutUint32(rec[12:], uint32(r))
	copy(rec[16:], payload)
	binary.LittleEndian.PutUint32(rec[len(rec)-4:], crc32.ChecksumIEEE(rec[:len(rec)-4]))
	return rec
}

func parseRecord(b []byte) (w, r, n int, err error) {
	if len(b) < 20 {
		return 0, 0, 0, errors.New("truncated header")
	}
	n = int(binary.LittleEndian.Uint32(b))
	if n < 20 || n > len(b) || binary.LittleEndian.Uint32(b[4:]) != 0x52494e47 {
		return 0, 0, 0, fmt.Errorf("bad frame (length %d)", n)
	}
	if crc32.ChecksumIEEE(b[:n-4]) != binary.LittleEndian.Uint32(b[n-4:]) {
		return 0, 0, 0, errors.New("bad checksum")
	}
	return int(binary.LittleEndian.Uint32(b[8:])), int(binary.LittleEndian.Uint32(b[12:])), n, nil
}

// engineAppendRecords (row C4) in every mode: goroutines append framed
// records through several O_APPEND handles of one engine (some writers
// sharing a handle); each lands once and intact, in the engine's view
// and, after Sync, on the host. It returns the records checked.
func engineAppendRecords(t *testing.T) int {
	total := 0
	for _, o := range []Options{{Mode: Exclusive}, {Mode: Exclusive, CacheSize: fsxTinyCache}, {Mode: Writethrough},
		{Mode: Shared}, {Mode: Exclusive, CacheSize: -1}, {Mode: Exclusive, HostMmap: true}} {
		t.Run(fmt.Sprintf("%s/cache=%d/hostmmap=%v", o.Mode, o.CacheSize, o.HostMmap), func(t *testing.T) {
			e := newEngine(t, o)
			path := filepath.Join(t.TempDir(), "log")
			writeHost(t, path, nil)
			const writers, records = 8, 100
			// Writers 1, 4 and 7 share one handle (and its offset); the
			// others have one each.
			shared := openFile(t, e, path, os.O_WRONLY|os.O_APPEND)
			var wg sync.WaitGroup
			var failed atomic.Value
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f := shared
					if w%3 != 1 {
						var err error
						if f, err = e.Open(path, os.O_WRONLY|os.O_APPEND, 0); err != nil {
							failed.Store(err)
							return
						}
						defer f.Close()
					}
					for r := range records {
						rec := makeRecord(w, r)
						if n, err := f.Write(rec); n != len(rec) || err != nil {
							failed.Store(fmt.Errorf("writer %d: %d, %v", w, n, err))
							return
						}
					}
				}()
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				t.Fatal(err)
			}
			if err := shared.Close(); err != nil {
				t.Fatal(err)
			}
			f := openFile(t, e, path, os.O_RDWR)
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			data := make([]byte, fi.Size())
			if _, err := f.ReadAt(data, 0); err != nil {
				t.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "host after Sync", readHost(t, path), data)
			count := 0
			seen := map[[2]int]bool{}
			next := make([]int, writers) // each writer's records land in its order
			for off := 0; off < len(data); {
				w, r, n, err := parseRecord(data[off:])
				if err != nil {
					t.Fatalf("record at %d: %v", off, err)
				}
				if seen[[2]int{w, r}] {
					t.Fatalf("record %d/%d twice", w, r)
				}
				if w >= writers || r != next[w] {
					t.Fatalf("record %d/%d at %d, want writer %d's record %d next", w, r, off, w, next[min(w, writers-1)])
				}
				next[w]++
				seen[[2]int{w, r}] = true
				off += n
				count++
			}
			if count != writers*records {
				t.Fatalf("%d records, want %d", count, writers*records)
			}
			t.Logf("%d records from %d goroutines (3 sharing a handle): each once, intact, in each writer's order", count, writers)
			total += count
		})
	}
	return total
}

// Regressions of bugs the exerciser found, as focused tests.

// TestDirectReadPastHostEnd: in Exclusive mode the cache extends the file
// before the host does; an O_DIRECT read between the host's end and the
// engine's reads zeros, in full, through ReadAt and through Submit.
func TestDirectReadPastHostEnd(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT here")
	}
	e := newEngine(t, Options{Mode: Exclusive})
	path := filepath.Join(dir, "f")
	writeHost(t, path, pattern(100, 25, 0))
	f := openFile(t, e, path, os.O_RDWR)
	d := openFile(t, e, path, os.O_RDONLY|syscall.O_DIRECT)
	if _, err := f.WriteAt([]byte("far"), 40000); err != nil { // cached: the host stays at 100 bytes
		t.Fatal(err)
	}
	if host := readHost(t, path); len(host) != 100 {
		t.Fatalf("host already %d bytes: the test needs a cached extension", len(host))
	}
	want := append(pattern(100, 25, 0), make([]byte, 8192-100)...)
	for _, aligned := range []bool{true, false} {
		p := alignedBuf(8193)
		if aligned {
			p = p[:8192]
		} else {
			p = p[1:] // bounced
		}
		if n, err := d.ReadAt(p, 0); n != 8192 || err != nil {
			t.Fatalf("direct ReadAt below the engine's size (aligned %v): %d, %v", aligned, n, err)
		}
		sameBytes(t, "direct read", p, want)
	}
	ops := []Op{{File: d, Buf: alignedBuf(8192), Off: 8192}}
	if err := e.Submit(ops); err != nil || ops[0].N != 8192 || ops[0].Err != nil || firstNonzeroByte(ops[0].Buf) >= 0 {
		t.Fatalf("direct read in Submit: %d, %v", ops[0].N, ops[0].Err)
	}
	p := alignedBuf(4096)
	if n, err := d.ReadAt(p, 36864); n != 40003-36864 || err != io.EOF || string(p[40000-36864:n]) != "far" {
		t.Fatalf("direct read across the engine's end: %d, %v", n, err)
	}
	t.Logf("direct reads past the host's end (100) and below the engine's (40003): zeros, full counts")
}

// TestHostMmapDirectWriteSize: in HostMmap mode an O_DIRECT write that
// extends the file grows the size the engine serves, alone and in Submit.
func TestHostMmapDirectWriteSize(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT here")
	}
	e := newEngine(t, Options{Mode: Exclusive, HostMmap: true})
	path := filepath.Join(dir, "f")
	writeHost(t, path, pattern(5000, 26, 0))
	f := openFile(t, e, path, os.O_RDWR)
	d := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
	if _, err := f.ReadAt(make([]byte, 5000), 0); err != nil { // map it
		t.Fatal(err)
	}
	p := alignedBuf(4096)
	fillData(p, 26, 1)
	if n, err := d.WriteAt(p, 8192); n != 4096 || err != nil {
		t.Fatal(err)
	}
	ops := []Op{{File: d, Write: true, Buf: p, Off: 16384}}
	if err := e.Submit(ops); err != nil || ops[0].N != 4096 || ops[0].Err != nil {
		t.Fatalf("direct write in Submit: %d, %v", ops[0].N, ops[0].Err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != 20480 {
		t.Fatalf("size after direct writes up to 20480: %v, %v", fi.Size(), err)
	}
	got := make([]byte, 4096)
	if n, err := f.ReadAt(got, 16384); n != 4096 || err != nil {
		t.Fatalf("read of the direct write through the mapping: %d, %v", n, err)
	}
	sameBytes(t, "direct write read back", got, p)
	t.Logf("HostMmap: direct writes grew the size to %d, read back through the mapping", fi.Size())
}

// TestSubmitDirectWriteNotStale: a batch holding a cache miss (whose
// readahead covers a page) and a direct write of that page must not
// leave the page's old bytes cached; and the cache's size grows with a
// direct write that extends the file.
func TestSubmitDirectWriteNotStale(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT here")
	}
	for _, mode := range []Mode{Exclusive, Writethrough} {
		t.Run(mode.String(), func(t *testing.T) {
			e := newEngine(t, Options{Mode: mode})
			path := filepath.Join(dir, "f-"+mode.String())
			old := pattern(16*4096, 27, 0)
			writeHost(t, path, old)
			f := openFile(t, e, path, os.O_RDWR)
			d := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
			for round := range 20 {
				// Page 0 misses and its 64 KiB readahead covers page 5;
				// the direct write replaces page 5 in the same batch.
				newPage := alignedBuf(4096)
				fillData(newPage, 27, uint64(round+1))
				ops := []Op{
					{File: f, Buf: make([]byte, 100), Off: 0},
					{File: d, Write: true, Buf: newPage, Off: 5 * 4096},
					{File: d, Write: true, Buf: newPage, Off: int64(16+round) * 4096}, // extends the file
				}
				if err := e.Submit(ops); err != nil {
					t.Fatal(err)
				}
				for i, op := range ops {
					if op.Err != nil {
						t.Fatalf("round %d op %d: %v", round, i, op.Err)
					}
				}
				got := make([]byte, 4096)
				if _, err := f.ReadAt(got, 5*4096); err != nil {
					t.Fatal(err)
				}
				sameBytes(t, fmt.Sprintf("round %d: page 5 through the cache after the batch", round), got, newPage)
				fi, _ := f.Stat()
				if fi.Size() != int64(17+round)*4096 {
					t.Fatalf("round %d: size %d after a direct write to %d", round, fi.Size(), (17+round)*4096)
				}
				// Drop the cache's pages for the next round.
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				if _, err := d.WriteAt(newPage, 0); err != nil { // invalidates page 0
					t.Fatal(err)
				}
			}
			t.Logf("20 batches of a miss plus a direct write under its readahead: never stale, size grew every time")
		})
	}
}

// growOnShortRead is an injector that, when a read comes back short, grows
// the host file before the backend resumes the rest of it: what happens
// when this engine's writeback or another writer extends the file while
// a direct read crosses its end.
type growOnShortRead struct {
	opCounter
	path  string
	armed atomic.Bool
	grown atomic.Int32
}

func (g *growOnShortRead) Complete(r *uring.Request, res int32) int32 {
	if g.armed.Load() && r.Op.IsRead() && res > 0 && int(res) < len(r.Buf) && g.grown.CompareAndSwap(0, 1) {
		os.Truncate(g.path, 1<<20)
	}
	return res
}

// TestDirectReadFileGrows: an O_DIRECT read that stops short at the host's
// end of file, the file growing before the backend resumes it, still
// reads in full (the resumed part is unaligned; the kernel refuses it
// with EINVAL, and the engine reads the rest again from an aligned
// offset), through ReadAt and through Submit.
func TestDirectReadFileGrows(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT here")
	}
	reads := 0
	for _, o := range []Options{{Mode: Shared}, {Mode: Exclusive}, {Mode: Exclusive, CacheSize: -1},
		{Mode: Shared, Backend: "psync"}, {Mode: Exclusive, DirectIO: true}} {
		for _, viaSubmit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/%s/cache=%d/submit=%v", o.Mode, o.Backend, o.CacheSize, viaSubmit), func(t *testing.T) {
				path := filepath.Join(dir, fmt.Sprintf("f%d", reads))
				content := pattern(10000, 28, 0)
				writeHost(t, path, content)
				inj := &growOnShortRead{path: path}
				o.Injector = inj
				e := newEngine(t, o)
				d := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
				p := alignedBuf(8192)
				inj.armed.Store(true)
				var n int
				var err error
				if viaSubmit {
					ops := []Op{{File: d, Buf: p, Off: 8192}}
					e.Submit(ops)
					n, err = ops[0].N, ops[0].Err
				} else {
					n, err = d.ReadAt(p, 8192)
				}
				if inj.grown.Load() == 0 {
					t.Skip("the read did not come back short")
				}
				// The engine's size in Exclusive mode stays 10000 (the growth
				// is another writer's, unknown to it): a full read up to it.
				want := append(bytes.Clone(content[8192:]), make([]byte, 8192-(10000-8192))...)
				if o.Mode == Exclusive && o.CacheSize >= 0 {
					want = want[:10000-8192]
				}
				if n != len(want) || (n == 8192 && err != nil) || (n < 8192 && err != io.EOF) {
					t.Fatalf("direct read across a growing end: %d, %v; want %d bytes", n, err, len(want))
				}
				sameBytes(t, "direct read across a growing end", p[:n], want)
				reads++
			})
		}
	}
	t.Logf("%d direct reads whose host end moved mid-read: all complete and right", reads)
}

// TestDirectReadPastOldEndFileGrows: an unaligned O_DIRECT read that
// starts past the host's end of file, in the end's block (the engine's
// size is larger: a cached write extended it, or another writer will),
// is read through an aligned bounce buffer from below the end. That read
// stops short at the end, before the bytes asked for; when the file grows
// before the backend resumes it, the resumption is refused (EINVAL) and
// the engine must read again from an aligned offset, not fail.
func TestDirectReadPastOldEndFileGrows(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT here")
	}
	const (
		hostSize = 10000 // ends in the block [8192, 12288)
		off      = 10500 // past it, in that block, unaligned
		length   = 2000
	)
	reads := 0
	for i, o := range []Options{{Mode: Shared}, {Mode: Exclusive}, {Mode: Exclusive, CacheSize: -1},
		{Mode: Shared, Backend: "psync"}, {Mode: Exclusive, Backend: "psync"}, {Mode: Exclusive, DirectIO: true}} {
		for _, viaSubmit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/%s/cache=%d/directio=%v/submit=%v", o.Mode, o.Backend, o.CacheSize, o.DirectIO, viaSubmit), func(t *testing.T) {
				path := filepath.Join(dir, fmt.Sprintf("g%d-%v", i, viaSubmit))
				writeHost(t, path, pattern(hostSize, 29, 0))
				inj := &growOnShortRead{path: path}
				o.Injector = inj
				e := newEngine(t, o)
				d := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
				if e.cache != nil && o.Mode == Exclusive {
					// Extend the engine's size past the read with a
					// cached write; the host keeps its old end.
					b := openFile(t, e, path, os.O_RDWR)
					if _, err := b.WriteAt(pattern(4096, 29, 1), 20480); err != nil {
						t.Fatal(err)
					}
				}
				p := make([]byte, length)
				for i := range p {
					p[i] = 0xEE
				}
				inj.armed.Store(true)
				var n int
				var err error
				if viaSubmit {
					ops := []Op{{File: d, Buf: p, Off: off}}
					e.Submit(ops)
					n, err = ops[0].N, ops[0].Err
				} else {
					n, err = d.ReadAt(p, off)
				}
				if inj.grown.Load() == 0 {
					t.Skip("the read did not come back short")
				}
				if n != length || err != nil {
					t.Fatalf("direct read past the host's old end while it grows: %d, %v; want %d bytes, nil", n, err, length)
				}
				sameBytes(t, "direct read past the host's old end (a hole)", p, make([]byte, length))
				reads++
			})
		}
	}
	t.Logf("%d unaligned direct reads past a host end that moved mid-read: all complete, zeros", reads)
}

// TestRWFlagsEveryPath: WriteAtFlags and ReadAtFlags with RWF_HIPRI,
// RWF_DSYNC, RWF_SYNC and a combination succeed on every path a read or
// write can take (cache, host, mappings, O_DIRECT), on both backends, and
// read back what was written. (RWF_HIPRI once failed every O_DIRECT read
// that went through the ring with EINVAL.)
func TestRWFlagsEveryPath(t *testing.T) {
	checkLeaks(t)
	configs := []struct {
		name string
		opts Options
	}{
		{"exclusive", Options{}},
		{"writethrough", Options{Mode: Writethrough}},
		{"shared", Options{Mode: Shared}},
		{"uncached", Options{CacheSize: -1}},
		{"hostmmap", Options{CacheSize: -1, HostMmap: true}},
	}
	flags := []struct {
		name string
		v    int
	}{
		{"HIPRI", unix.RWF_HIPRI},
		{"DSYNC", unix.RWF_DSYNC},
		{"SYNC", unix.RWF_SYNC},
		{"HIPRI|DSYNC", unix.RWF_HIPRI | unix.RWF_DSYNC},
	}
	dir := t.TempDir()
	for _, c := range configs {
		for _, be := range []string{"uring", "psync"} {
			for _, direct := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%s/direct=%v", c.name, be, direct), func(t *testing.T) {
					if direct && !directSupported(dir) {
						t.Skipf("no O_DIRECT in %s", dir)
					}
					opts := c.opts
					opts.Backend = be
					e := newEngine(t, opts)
					path := filepath.Join(t.TempDir(), "f")
					writeHost(t, path, make([]byte, 64<<10))
					flag := os.O_RDWR
					if direct {
						flag |= syscall.O_DIRECT
					}
					f := openFile(t, e, path, flag)
					p, q := alignedBuf(4096), alignedBuf(4096)
					for i, fl := range flags {
						off := int64(i) * 8192
						copy(p, pattern(4096, uint64(i+1), 3))
						if n, err := f.WriteAtFlags(p, off, fl.v); n != len(p) || err != nil {
							t.Fatalf("WriteAtFlags %s at %d: %d, %v", fl.name, off, n, err)
						}
						// Twice: a miss, then (cached modes) a hit.
						for range 2 {
							clear(q)
							if n, err := f.ReadAtFlags(q, off, fl.v); n != len(q) || err != nil {
								t.Fatalf("ReadAtFlags %s at %d: %d, %v", fl.name, off, n, err)
							}
							if !bytes.Equal(p, q) {
								t.Fatalf("ReadAtFlags %s at %d: other bytes than were written", fl.name, off)
							}
						}
					}
					if err := f.Close(); err != nil {
						t.Fatal(err)
					}
					got := readHost(t, path)
					for i := range flags {
						if !bytes.Equal(got[i*8192:i*8192+4096], pattern(4096, uint64(i+1), 3)) {
							t.Fatalf("host file at %d: not the bytes written with %s", i*8192, flags[i].name)
						}
					}
				})
			}
		}
	}
}
