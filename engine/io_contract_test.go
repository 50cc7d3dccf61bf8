//go:build linux

package engine

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/iotest"

	"golang.org/x/sys/unix"
)

// The io.Reader, io.ReaderAt, io.Seeker and io.Writer contracts, in
// every kind of engine (TESTPLAN B10; the row is registered in
// reliability_input_test.go and runs the helpers here).

var contractModes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive, CacheSize: 1 << 20}},
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
	{"writethrough", Options{Mode: Writethrough, CacheSize: 1 << 20}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
	{"psync", Options{Mode: Exclusive, Backend: "psync"}},
}

// iotestReader runs testing/iotest.TestReader, which checks Read,
// ReadAt and Seek against the content and against each other, on files
// of several sizes, through a fresh handle and through an
// io.SectionReader. Figure: iotest_readers.
func iotestReader(t *testing.T, fig *Figures) {
	sizes := []int{0, 1, 4095, 4096, 4097, 65536 + 77}
	checked := 0
	for _, mode := range contractModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			dir := t.TempDir()
			for _, size := range sizes {
				if raceEnabled && size > 1<<16 && (mode.opts.Mode == Shared || mode.opts.CacheSize < 0) {
					// Without a cache every small read of iotest is a
					// request to the ring: seconds per mode under -race.
					// The size is there for readahead windows anyway.
					continue
				}
				path := filepath.Join(dir, "f")
				content := pattern(size, 3, uint64(size))
				writeHost(t, path, content)
				f := openFile(t, e, path, os.O_RDONLY)
				if err := iotest.TestReader(f, content); err != nil {
					t.Fatalf("size %d: iotest.TestReader: %v", size, err)
				}
				if err := iotest.TestReader(io.NewSectionReader(f, 0, int64(size)), content); err != nil {
					t.Fatalf("size %d: iotest.TestReader on a SectionReader: %v", size, err)
				}
				// Written through the engine rather than found on the host.
				w := openFile(t, e, path, os.O_RDWR|os.O_TRUNC)
				if n, err := w.WriteAt(content, 0); n != size || err != nil {
					t.Fatalf("WriteAt: %d, %v", n, err)
				}
				if err := iotest.TestReader(io.NewSectionReader(w, 0, int64(size)), content); err != nil {
					t.Fatalf("size %d written by the engine: %v", size, err)
				}
				f.Close()
				w.Close()
				checked += 3
				fig.Add("iotest_readers", 3)
			}
		})
	}
	t.Logf("iotest.TestReader passed %d times (%d modes × up to %d sizes × 3 readers)", checked, len(contractModes), len(sizes))
}

// readerAtContract: ReadAt (and a read of a Submit batch) returns a
// non-nil error whenever n < len(p) (io.EOF at the end), never uses or
// moves the offset, and Read at the end returns 0, io.EOF; zero-length
// calls at and past the end (ReadAt, ReadAtFlags, WriteAt, WriteAtFlags,
// Read, Write, Submit) return 0, nil and change nothing, not even the
// host's modification time; a Map of length 0 anywhere is an empty
// Mapping. Figure: calls.
func readerAtContract(t *testing.T, fig *Figures) {
	const size = 2*4096 + 100
	calls := 0
	for _, mode := range contractModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(t.TempDir(), "f")
			content := pattern(size, 4, 0)
			writeHost(t, path, content)
			f := openFile(t, e, path, os.O_RDWR)
			if _, err := f.Seek(1234, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			for _, off := range []int64{0, 1, 4095, 4096, size - 1, size, size + 1, size + 4096, 1 << 40} {
				for _, n := range []int{1, 100, 4096, 8192, size + 10} {
					p := make([]byte, n)
					got, err := f.ReadAt(p, off)
					want := int(max(0, min(int64(n), size-off)))
					if got != want {
						t.Fatalf("ReadAt(%d bytes, %d) = %d, want %d (%v)", n, off, got, want, err)
					}
					if got < n && err != io.EOF {
						t.Fatalf("ReadAt(%d bytes, %d) = %d with err %v: n < len(p) needs io.EOF", n, off, got, err)
					}
					if got == n && err != nil {
						t.Fatalf("ReadAt(%d bytes, %d) full with err %v", n, off, err)
					}
					if !bytes.Equal(p[:got], content[min(off, size):min(off, size)+int64(got)]) {
						t.Fatalf("ReadAt(%d bytes, %d): wrong data", n, off)
					}
					ops := []Op{{File: f, Buf: make([]byte, n), Off: off}}
					if err := e.Submit(ops); err != nil {
						t.Fatal(err)
					}
					if ops[0].N != want || (want < n) != (ops[0].Err == io.EOF) || (want == n && ops[0].Err != nil) {
						t.Fatalf("Submit read (%d bytes, %d) = %d, %v; want %d", n, off, ops[0].N, ops[0].Err, want)
					}
					if !bytes.Equal(ops[0].Buf[:want], p[:want]) {
						t.Fatalf("Submit read (%d bytes, %d): wrong data", n, off)
					}
					calls += 2
				}
			}
			if pos, _ := f.Seek(0, io.SeekCurrent); pos != 1234 {
				t.Fatalf("ReadAt moved the offset to %d", pos)
			}
			// WriteAt does not move it either.
			if _, err := f.WriteAt(content[:10], 0); err != nil {
				t.Fatal(err)
			}
			if pos, _ := f.Seek(0, io.SeekCurrent); pos != 1234 {
				t.Fatalf("WriteAt moved the offset to %d", pos)
			}
			// Read at and past the end: 0, io.EOF.
			for _, at := range []int64{size, size + 10} {
				if _, err := f.Seek(at, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				if n, err := f.Read(make([]byte, 10)); n != 0 || err != io.EOF {
					t.Fatalf("Read at %d (size %d) = %d, %v; want 0, io.EOF", at, size, n, err)
				}
				calls++
			}
			// Zero-length calls at and after the end: 0, nil, nothing changes.
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			mtime := hostMtime(t, path)
			for _, at := range []int64{0, size, size + 1, 1 << 40} {
				if n, err := f.ReadAt(nil, at); n != 0 || err != nil {
					t.Fatalf("ReadAt(nil, %d) = %d, %v", at, n, err)
				}
				if n, err := f.ReadAt([]byte{}, at); n != 0 || err != nil {
					t.Fatalf("ReadAt([]byte{}, %d) = %d, %v", at, n, err)
				}
				if n, err := f.WriteAt(nil, at); n != 0 || err != nil {
					t.Fatalf("WriteAt(nil, %d) = %d, %v", at, n, err)
				}
				if n, err := f.ReadAtFlags(nil, at, unix.RWF_NOWAIT); n != 0 || err != nil {
					t.Fatalf("ReadAtFlags(nil, %d) = %d, %v", at, n, err)
				}
				if n, err := f.WriteAtFlags([]byte{}, at, unix.RWF_DSYNC); n != 0 || err != nil {
					t.Fatalf("WriteAtFlags([]byte{}, %d) = %d, %v", at, n, err)
				}
				ops := []Op{{File: f, Off: at}, {File: f, Write: true, Buf: []byte{}, Off: at}}
				if err := e.Submit(ops); err != nil || ops[0].N != 0 || ops[0].Err != nil || ops[1].N != 0 || ops[1].Err != nil {
					t.Fatalf("zero-length Submit at %d: %v; read %d, %v; write %d, %v", at, err, ops[0].N, ops[0].Err, ops[1].N, ops[1].Err)
				}
				if _, err := f.Seek(at, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				if n, err := f.Read(nil); n != 0 || err != nil {
					t.Fatalf("Read(nil) at %d = %d, %v", at, n, err)
				}
				if n, err := f.Write(nil); n != 0 || err != nil {
					t.Fatalf("Write(nil) at %d = %d, %v", at, n, err)
				}
				if pos, _ := f.Seek(0, io.SeekCurrent); pos != at {
					t.Fatalf("zero-length Read/Write moved the offset from %d to %d", at, pos)
				}
				calls += 9
			}
			fi, err := f.Stat()
			if err != nil || fi.Size() != size {
				t.Fatalf("zero-length calls changed the size: %v, %v", fi.Size(), err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			if now := hostMtime(t, path); now != mtime {
				t.Fatalf("zero-length calls changed the host's mtime from %v to %v", mtime, now)
			}
			// Map of length 0, at the start, at the end and past it.
			for _, at := range []int64{0, size, 1 << 40} {
				m, err := f.Map(at, 0, true)
				if err != nil {
					t.Fatalf("Map(%d, 0): %v", at, err)
				}
				if len(m.Bytes()) != 0 || m.Len() != 0 {
					t.Fatalf("Map(%d, 0): %d bytes", at, len(m.Bytes()))
				}
				if n, err := m.ReadAt(nil, 0); n != 0 || err != nil {
					t.Fatalf("empty Mapping.ReadAt: %d, %v", n, err)
				}
				if err := m.Close(); err != nil {
					t.Fatalf("empty Mapping.Close: %v", err)
				}
				if err := m.Close(); err == nil {
					t.Fatalf("second Close of an empty Mapping succeeded")
				}
				calls++
			}
			f.Close()
			host := readHost(t, path)
			if len(host) != size {
				t.Fatalf("host size %d after zero-length calls, want %d", len(host), size)
			}
		})
	}
	fig.Add("calls", int64(calls))
	t.Logf("%d calls kept the io.ReaderAt/io.Reader contracts", calls)
}

// hostMtime returns the host file's modification time in nanoseconds.
func hostMtime(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Mtim.Nano()
}

// TestStatLikeOSFile: File.Stat answers as os.File.Stat does for the same
// file (name, size, mode bits with setuid, setgid and sticky, modification
// time), and Sys is a *syscall.Stat_t, as os's, naming the same inode.
// In Exclusive mode the size is the engine's, cached writes included.
func TestStatLikeOSFile(t *testing.T) {
	dir := t.TempDir()
	for _, perm := range []fs.FileMode{0o644, 0o600 | fs.ModeSetuid, 0o755 | fs.ModeSetgid | fs.ModeSticky} {
		t.Run(perm.String(), func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("f-%o", uint32(perm)))
			writeHost(t, path, pattern(10000, 3, 0))
			if err := os.Chmod(path, perm); err != nil {
				t.Fatal(err)
			}
			osf, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer osf.Close()
			want, err := osf.Stat()
			if err != nil {
				t.Fatal(err)
			}
			e := newEngine(t, Options{})
			f := openFile(t, e, path, os.O_RDONLY)
			got, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			if got.Name() != want.Name() || got.Size() != want.Size() || got.Mode() != want.Mode() ||
				!got.ModTime().Equal(want.ModTime()) || got.IsDir() != want.IsDir() {
				t.Fatalf("Stat: %s %d %v %v %v; os.File: %s %d %v %v %v", got.Name(), got.Size(), got.Mode(), got.ModTime(), got.IsDir(),
					want.Name(), want.Size(), want.Mode(), want.ModTime(), want.IsDir())
			}
			gs, ok := got.Sys().(*syscall.Stat_t)
			if !ok {
				t.Fatalf("Sys is a %T, not a *syscall.Stat_t as os.File's", got.Sys())
			}
			ws := want.Sys().(*syscall.Stat_t)
			if gs.Ino != ws.Ino || gs.Dev != ws.Dev || gs.Uid != ws.Uid || gs.Gid != ws.Gid || gs.Nlink != ws.Nlink ||
				gs.Mode != ws.Mode || gs.Blocks != ws.Blocks || gs.Mtim != ws.Mtim {
				t.Fatalf("Sys: %+v; os.File's: %+v", *gs, *ws)
			}
		})
	}
	// A cached write past the host's end: the engine's size.
	path := filepath.Join(dir, "grows")
	writeHost(t, path, pattern(4096, 3, 0))
	e := newEngine(t, Options{})
	f := openFile(t, e, path, os.O_RDWR)
	if _, err := f.WriteAt([]byte("tail"), 10000); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil || fi.Size() != 10004 || fi.Sys().(*syscall.Stat_t).Size != 10004 {
		t.Fatalf("Stat after a cached write to 10004: %v, %v", fi, err)
	}
}
