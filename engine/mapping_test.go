//go:build linux

package engine

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Mappings (reliability rows C2, Mp2–Mp4) and SEEK_DATA/SEEK_HOLE cases
// (C5), run by the rows in reliability_coherence_test.go.

var mapModes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive}},
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache}},
	{"writethrough", Options{Mode: Writethrough}},
	{"shared", Options{Mode: Shared}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
}

// mappingCoherence (row C2): a cached (dirty) engine write is in a
// Mapping made afterwards, a write through a Mapping is in the engine's
// reads while it is open and after it closes, and the host ends equal.
// It returns the modes checked.
func mappingCoherence(t *testing.T) int {
	for _, mode := range mapModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(t.TempDir(), "f")
			model := pattern(5*4096+100, 30, 0)
			writeHost(t, path, model)
			f := openFile(t, e, path, os.O_RDWR)
			if _, err := f.ReadAt(make([]byte, len(model)), 0); err != nil {
				t.Fatal(err)
			}
			w := pattern(3000, 30, 1)
			if _, err := f.WriteAt(w, 5000); err != nil { // dirty in the cache
				t.Fatal(err)
			}
			copy(model[5000:], w)
			m, err := f.Map(0, int64(len(model)), true)
			if err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "Mapping after a cached write", m.Bytes(), model)
			// Through the mapping, then through the engine.
			v := pattern(2000, 30, 2)
			copy(m.Bytes()[10000:], v)
			copy(model[10000:], v)
			got := make([]byte, len(model))
			if n, err := f.ReadAt(got, 0); n != len(model) || err != nil {
				t.Fatalf("ReadAt with the mapping open: %d, %v", n, err)
			}
			sameBytes(t, "engine read with the mapping open", got, model)
			// An engine write while mapped is in the mapping.
			u := pattern(500, 30, 3)
			if _, err := f.WriteAt(u, 100); err != nil {
				t.Fatal(err)
			}
			copy(model[100:], u)
			sameBytes(t, "Mapping after an engine write", m.Bytes(), model)
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := f.ReadAt(got, 0); n != len(model) || err != nil {
				t.Fatalf("ReadAt after the mapping closed: %d, %v", n, err)
			}
			sameBytes(t, "engine read after the mapping closed", got, model)
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "host", readHost(t, path), model)
			t.Logf("cached write → Mapping, Mapping write → engine read (open and closed), engine write → Mapping: coherent")
		})
	}
	return len(mapModes)
}

// mappedFile opens a 16 KiB file of known content in a new engine and
// maps all of it read-only.
func mappedFile(t *testing.T, opts Options) (*Engine, *File, *Mapping, []byte) {
	t.Helper()
	e := newEngine(t, opts)
	path := filepath.Join(t.TempDir(), "f")
	content := pattern(4*4096, 31, 0)
	writeHost(t, path, content)
	f := openFile(t, e, path, os.O_RDWR)
	a, err := f.Map(0, 4*4096, false)
	if err != nil {
		t.Fatal(err)
	}
	return e, f, a, content
}

// mappingDoubleClose (row Mp2): a second Close of a Mapping fails with
// fs.ErrClosed and leaves the others alone; read-only mappings refuse
// writes without faulting.
func mappingDoubleClose(t *testing.T) {
	for _, mode := range mapModes {
		t.Run(mode.name, func(t *testing.T) {
			_, f, a, content := mappedFile(t, mode.opts)
			b, err := f.Map(4096, 4096, true)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); !errors.Is(err, fs.ErrClosed) {
				t.Fatalf("second Mapping.Close: %v", err)
			}
			if b.Bytes() != nil {
				t.Fatalf("Bytes of a closed Mapping is not nil")
			}
			if _, err := b.ReadAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrClosed) {
				t.Fatalf("ReadAt of a closed Mapping: %v", err)
			}
			sameBytes(t, "the other Mapping after a double Close", a.Bytes(), content)
			if _, err := a.WriteAt([]byte("x"), 0); !errors.Is(err, syscall.EACCES) {
				t.Fatalf("WriteAt on a read-only Mapping: %v", err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("double Close: fs.ErrClosed, Bytes nil, the other Mapping intact; read-only WriteAt: EACCES")
		})
	}
}

// mappingTruncateBelow (row Mp3): truncating below a live mapping makes
// access past the end an EFAULT, never a crash, and the tail of the EOF
// page reads zero.
func mappingTruncateBelow(t *testing.T) {
	for _, mode := range mapModes {
		t.Run(mode.name, func(t *testing.T) {
			_, f, a, _ := mappedFile(t, mode.opts)
			if err := f.Truncate(4096 + 100); err != nil {
				t.Fatal(err)
			}
			tail := make([]byte, 4096-100)
			if n, err := a.ReadAt(tail, 4096+100); n != len(tail) || err != nil {
				t.Fatalf("EOF page tail through the mapping: %d, %v", n, err)
			}
			if firstNonzeroByte(tail) >= 0 {
				t.Fatalf("EOF page tail reads nonzero after truncation")
			}
			if _, err := a.ReadAt(make([]byte, 10), 3*4096); !errors.Is(err, syscall.EFAULT) {
				t.Fatalf("read through a mapping past the end: %v, want EFAULT", err)
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("past EOF: EFAULT; EOF tail zero")
		})
	}
}

// mappingOutlivesFile (row Mp4): a Mapping outlives its File; the file's
// state is released at the Mapping's Close.
func mappingOutlivesFile(t *testing.T) {
	for _, mode := range mapModes {
		t.Run(mode.name, func(t *testing.T) {
			e, f, a, content := mappedFile(t, mode.opts)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			head := make([]byte, 4096)
			if n, err := a.ReadAt(head, 0); n != 4096 || err != nil || !bytes.Equal(head, content[:4096]) {
				t.Fatalf("Mapping after its File closed: %d, %v", n, err)
			}
			if len(e.Files()) != 1 {
				t.Fatalf("the file's state was released under a live Mapping: %+v", e.Files())
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
			if len(e.Files()) != 0 {
				t.Fatalf("file kept after its last Mapping closed: %+v", e.Files())
			}
			t.Logf("Mapping outlived its File, state released at its Close")
		})
	}
}

// seekDataHole (row C5): SEEK_DATA and SEEK_HOLE over dirty cached data
// above holes, after a punch, in a 1-byte file, in the middle of a large
// hole. It returns the seeks checked.
func seekDataHole(t *testing.T) int {
	const size = 1 << 20
	seeks := 0
	for _, mode := range mapModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			dir := t.TempDir()
			path := filepath.Join(dir, "sparse")
			writeHost(t, path, nil)
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			f := openFile(t, e, path, os.O_RDWR)
			// Data at 256 KiB (possibly only in the cache) in a hole.
			if _, err := f.WriteAt(pattern(4096, 32, 0), 256<<10); err != nil {
				t.Fatal(err)
			}
			check := func(what string, off int64, whence int, want int64, wantErr error) {
				t.Helper()
				seeks++
				got, err := f.Seek(off, whence)
				if wantErr != nil {
					if !errors.Is(err, wantErr) {
						t.Fatalf("%s: Seek(%d, %d) = %d, %v; want %v", what, off, whence, got, err, wantErr)
					}
					return
				}
				if err != nil || got != want {
					t.Fatalf("%s: Seek(%d, %d) = %d, %v; want %d", what, off, whence, got, err, want)
				}
			}
			check("data in the middle of a hole", 100<<10, SeekData, 256<<10, nil)
			check("hole at the start", 0, SeekHole, 0, nil)
			check("hole after the data", 256<<10, SeekHole, 260<<10, nil)
			check("hole inside the data", 256<<10+10, SeekHole, 260<<10, nil)
			check("data past the only data", 300<<10, SeekData, 0, syscall.ENXIO)
			check("hole in the last hole", size-1, SeekHole, size-1, nil)
			// Punch the data out.
			if err := f.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 256<<10, 4096); err != nil {
				t.Fatal(err)
			}
			check("data after the punch", 0, SeekData, 0, syscall.ENXIO)
			check("hole after the punch", 256<<10, SeekHole, 256<<10, nil)
			// A 1-byte file.
			one := filepath.Join(dir, "one")
			writeHost(t, one, []byte{7})
			g := openFile(t, e, one, os.O_RDWR)
			if got, err := g.Seek(0, SeekData); got != 0 || err != nil {
				t.Fatalf("1-byte file SEEK_DATA(0): %d, %v", got, err)
			}
			if got, err := g.Seek(0, SeekHole); got != 1 || err != nil {
				t.Fatalf("1-byte file SEEK_HOLE(0): %d, %v", got, err)
			}
			if _, err := g.Seek(1, SeekData); !errors.Is(err, syscall.ENXIO) {
				t.Fatalf("1-byte file SEEK_DATA(1): %v", err)
			}
			// Data written only in the cache past the host's end.
			if _, err := g.WriteAt([]byte{9}, 10<<10); err != nil {
				t.Fatal(err)
			}
			// Data extents are block-granular: anything from the next
			// block up to the byte itself is right.
			if got, err := g.Seek(4096, SeekData); got < 4096 || got > 10<<10 || err != nil {
				t.Fatalf("SEEK_DATA to a byte past the host's old end: %d, %v", got, err)
			}
			if got, err := g.Seek(10<<10, SeekHole); got != 10<<10+1 || err != nil {
				t.Fatalf("SEEK_HOLE after the last byte: %d, %v", got, err)
			}
			seeks += 5 // those of the 1-byte file
			t.Logf("SEEK_DATA/SEEK_HOLE: middle of a hole, over cached data, after a punch, 1-byte file, data past the host's end")
		})
	}
	return seeks
}

// TestMappingReaderAt: Mapping.ReadAt answers as bytes.Reader.ReadAt does
// over the same bytes (io.ReaderAt's contract: the bytes before the end
// and io.EOF when a read reaches it), except that a negative offset, or
// one whose range overflows, fails with EINVAL, and that a read of no
// bytes returns 0, nil wherever it is, as File.ReadAt's (and os.File's).
func TestMappingReaderAt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	data := pattern(3*4096, 5, 0)
	writeHost(t, path, data)
	e := newEngine(t, Options{})
	f := openFile(t, e, path, os.O_RDONLY)
	m, err := f.Map(4096, 8192, false)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ref := bytes.NewReader(data[4096:])
	for _, c := range []struct{ off, n int64 }{
		{0, 8192}, {0, 100}, {100, 4096}, {8000, 192}, {8000, 193}, {8000, 4096},
		{8191, 1}, {8191, 2}, {8192, 1}, {9000, 10}, {1 << 40, 10}, {0, 10000},
	} {
		p, q := make([]byte, c.n), make([]byte, c.n)
		n, err := m.ReadAt(p, c.off)
		rn, rerr := ref.ReadAt(q, c.off)
		if n != rn || (err == io.EOF) != (rerr == io.EOF) || (err == nil) != (rerr == nil) || !bytes.Equal(p[:n], q[:rn]) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; bytes.Reader: %d, %v", c.n, c.off, n, err, rn, rerr)
		}
	}
	for _, off := range []int64{0, 100, 8192, 1 << 40} {
		if n, err := m.ReadAt(nil, off); n != 0 || err != nil {
			t.Errorf("ReadAt(nil, %d) = %d, %v; want 0, nil", off, n, err)
		}
	}
	for _, c := range []struct{ off, n int64 }{{-1, 10}, {-1, 0}, {1<<63 - 5, 10}} {
		n, err := m.ReadAt(make([]byte, c.n), c.off)
		if n != 0 || !errors.Is(err, syscall.EINVAL) {
			t.Errorf("ReadAt(%d bytes at %d) = %d, %v; want EINVAL", c.n, c.off, n, err)
		}
	}
}
