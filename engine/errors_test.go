//go:build linux

package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Bad input (TESTPLAN B1–B8): every invalid call fails with its exact
// errno inside an *fs.PathError, changes nothing in the file (nor any
// other file of its directory), and never panics. The rows themselves
// are registered in reliability_input_test.go; the tables and helpers
// they run are here.

// errModes are the engines the error tables run on.
var errModes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive, CacheSize: 1 << 20}},
	{"writethrough", Options{Mode: Writethrough, CacheSize: 1 << 20}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
}

// errFixture is a file of known content with handles of every access mode
// (the O_RDWR one shares the cache with the others), and a sibling file
// that no call may touch.
type errFixture struct {
	e               *Engine
	dir, path       string
	sibling         string
	rw, ro, wo, app *File
	content         []byte
}

const errFileSize = 3*4096 + 123

var errSibling = pattern(5000, 1, 2)

func newErrFixture(t *testing.T, opts Options) *errFixture {
	t.Helper()
	dir := t.TempDir()
	fx := &errFixture{e: newEngine(t, opts), dir: dir, path: filepath.Join(dir, "f"),
		sibling: filepath.Join(dir, "g"), content: pattern(errFileSize, 1, 1)}
	writeHost(t, fx.path, fx.content)
	writeHost(t, fx.sibling, errSibling)
	fx.rw = openFile(t, fx.e, fx.path, os.O_RDWR)
	fx.ro = openFile(t, fx.e, fx.path, os.O_RDONLY)
	fx.wo = openFile(t, fx.e, fx.path, os.O_WRONLY)
	fx.app = openFile(t, fx.e, fx.path, os.O_WRONLY|os.O_APPEND)
	// Cache the content, so that "unchanged" covers the cache too.
	buf := make([]byte, errFileSize)
	if _, err := fx.rw.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	return fx
}

// unchanged checks the file through the engine and on the host (after a
// Sync, so that cached writes would show), and that the directory holds
// the file and its untouched sibling only.
func (fx *errFixture) unchanged(t *testing.T, what string) {
	t.Helper()
	got := make([]byte, len(fx.content)+100)
	n, err := fx.rw.ReadAt(got, 0)
	if n != len(fx.content) || err != io.EOF || !bytes.Equal(got[:n], fx.content) {
		t.Fatalf("%s: file changed through the engine: %d bytes, %v", what, n, err)
	}
	if err := fx.rw.Sync(); err != nil {
		t.Fatalf("%s: Sync: %v", what, err)
	}
	sameBytes(t, what+": host", readHost(t, fx.path), fx.content)
	sameBytes(t, what+": sibling file", readHost(t, fx.sibling), errSibling)
	ents, err := os.ReadDir(fx.dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 2 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s: directory holds %q, want [f g]", what, names)
	}
}

// errCase is one invalid call of a bad-input row.
type errCase struct {
	row  string // the TESTPLAN row it belongs to
	name string
	call func(fx *errFixture) error
	want error
	// host: the host answers, so the call may reach the backend (its
	// errno is passed through); other calls must be refused before any
	// request is made.
	host bool
}

// errCases returns the invalid calls of rows B1, B2, B6 and B8.
func errCases() []errCase {
	const maxInt64 = math.MaxInt64
	big := make([]byte, 100)
	n1 := func(_ int, err error) error { return err }
	n2 := func(_ int64, err error) error { return err }
	m1 := func(m *Mapping, err error) error {
		if m != nil {
			m.Close()
		}
		return err
	}
	submit := func(op Op) error {
		ops := []Op{op}
		op.File.e.Submit(ops)
		return ops[0].Err
	}
	// mapped runs call on a mapping of the file's first page.
	mapped := func(fx *errFixture, writable bool, call func(m *Mapping) error) error {
		m, err := fx.rw.Map(0, 4096, writable)
		if err != nil {
			return fmt.Errorf("Map: %w", err)
		}
		defer m.Close()
		return call(m)
	}
	return []errCase{
		// B1: negative offsets and lengths.
		{"B1", "ReadAt/negative offset", func(fx *errFixture) error { return n1(fx.rw.ReadAt(big, -1)) }, syscall.EINVAL, false},
		{"B1", "ReadAt/offset MinInt64", func(fx *errFixture) error { return n1(fx.rw.ReadAt(big, math.MinInt64)) }, syscall.EINVAL, false},
		{"B1", "ReadAt/zero length, negative offset", func(fx *errFixture) error { return n1(fx.rw.ReadAt(nil, -1)) }, syscall.EINVAL, false},
		{"B1", "ReadAtFlags/negative offset", func(fx *errFixture) error { return n1(fx.rw.ReadAtFlags(big, -4096, 0)) }, syscall.EINVAL, false},
		{"B1", "WriteAt/negative offset", func(fx *errFixture) error { return n1(fx.rw.WriteAt(big, -1)) }, syscall.EINVAL, false},
		{"B1", "WriteAt/zero length, negative offset", func(fx *errFixture) error { return n1(fx.rw.WriteAt(nil, -7)) }, syscall.EINVAL, false},
		{"B1", "WriteAtFlags/negative offset", func(fx *errFixture) error { return n1(fx.rw.WriteAtFlags(big, math.MinInt64, 0)) }, syscall.EINVAL, false},
		{"B1", "Truncate/negative size", func(fx *errFixture) error { return fx.rw.Truncate(-1) }, syscall.EINVAL, false},
		{"B1", "Truncate/MinInt64", func(fx *errFixture) error { return fx.rw.Truncate(math.MinInt64) }, syscall.EINVAL, false},
		{"B1", "Allocate/negative offset", func(fx *errFixture) error { return fx.rw.Allocate(0, -1, 10) }, syscall.EINVAL, false},
		{"B1", "Allocate punch/negative offset", func(fx *errFixture) error {
			return fx.rw.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, -4096, 4096)
		}, syscall.EINVAL, false},
		{"B1", "Allocate/zero length", func(fx *errFixture) error { return fx.rw.Allocate(0, 0, 0) }, syscall.EINVAL, false},
		{"B1", "Allocate/negative length", func(fx *errFixture) error { return fx.rw.Allocate(0, 0, -5) }, syscall.EINVAL, false},
		{"B1", "Map/negative offset", func(fx *errFixture) error { return m1(fx.rw.Map(-1, 10, false)) }, syscall.EINVAL, false},
		{"B1", "Map/negative length", func(fx *errFixture) error { return m1(fx.rw.Map(0, -10, false)) }, syscall.EINVAL, false},
		{"B1", "Map writable/negative offset", func(fx *errFixture) error { return m1(fx.rw.Map(-4096, 4096, true)) }, syscall.EINVAL, false},
		{"B1", "Mapping.ReadAt/negative offset", func(fx *errFixture) error {
			return mapped(fx, false, func(m *Mapping) error { return n1(m.ReadAt(big, -1)) })
		}, syscall.EINVAL, false},
		{"B1", "Mapping.WriteAt/negative offset", func(fx *errFixture) error {
			return mapped(fx, true, func(m *Mapping) error { return n1(m.WriteAt(big, -1)) })
		}, syscall.EINVAL, false},
		{"B1", "Seek/start negative", func(fx *errFixture) error { return n2(fx.rw.Seek(-1, io.SeekStart)) }, syscall.EINVAL, false},
		{"B1", "Seek/current negative result", func(fx *errFixture) error { return n2(fx.rw.Seek(-1, io.SeekCurrent)) }, syscall.EINVAL, false},
		{"B1", "Seek/end negative result", func(fx *errFixture) error { return n2(fx.rw.Seek(-errFileSize-1, io.SeekEnd)) }, syscall.EINVAL, false},
		{"B1", "Seek/data negative", func(fx *errFixture) error { return n2(fx.rw.Seek(-1, SeekData)) }, syscall.EINVAL, false},
		{"B1", "Seek/hole negative", func(fx *errFixture) error { return n2(fx.rw.Seek(-1, SeekHole)) }, syscall.EINVAL, false},
		{"B1", "Submit read/negative offset", func(fx *errFixture) error { return submit(Op{File: fx.rw, Buf: big, Off: -1}) }, syscall.EINVAL, false},
		{"B1", "Submit write/negative offset", func(fx *errFixture) error {
			return submit(Op{File: fx.rw, Write: true, Buf: big, Off: -100})
		}, syscall.EINVAL, false},
		// B2: offset+length overflowing int64: EINVAL for reads, writes,
		// mappings and offsets, EFBIG for allocations (as pread, pwrite,
		// mmap, lseek and fallocate answer).
		{"B2", "ReadAt/offset+length overflow", func(fx *errFixture) error { return n1(fx.rw.ReadAt(big, maxInt64-10)) }, syscall.EINVAL, false},
		{"B2", "ReadAtFlags/offset+length overflow", func(fx *errFixture) error { return n1(fx.rw.ReadAtFlags(big, maxInt64, 0)) }, syscall.EINVAL, false},
		{"B2", "WriteAt/offset+length overflow", func(fx *errFixture) error { return n1(fx.rw.WriteAt(big, maxInt64-10)) }, syscall.EINVAL, false},
		{"B2", "WriteAt/offset MaxInt64", func(fx *errFixture) error { return n1(fx.rw.WriteAt(big[:1], maxInt64)) }, syscall.EINVAL, false},
		{"B2", "WriteAtFlags/offset+length overflow", func(fx *errFixture) error { return n1(fx.rw.WriteAtFlags(big, maxInt64-99, 0)) }, syscall.EINVAL, false},
		{"B2", "Submit read/offset+length overflow", func(fx *errFixture) error { return submit(Op{File: fx.rw, Buf: big, Off: maxInt64 - 50}) }, syscall.EINVAL, false},
		{"B2", "Submit write/offset+length overflow", func(fx *errFixture) error {
			return submit(Op{File: fx.rw, Write: true, Buf: big, Off: maxInt64 - 50})
		}, syscall.EINVAL, false},
		{"B2", "Allocate/offset+length overflow", func(fx *errFixture) error { return fx.rw.Allocate(0, maxInt64-10, 100) }, syscall.EFBIG, false},
		{"B2", "Allocate/keep size overflow", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_KEEP_SIZE, maxInt64, maxInt64) }, syscall.EFBIG, false},
		{"B2", "Allocate punch/overflow", func(fx *errFixture) error {
			return fx.rw.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, maxInt64-4095, 8192)
		}, syscall.EFBIG, false},
		{"B2", "Map/offset+length overflow", func(fx *errFixture) error { return m1(fx.rw.Map(maxInt64-5, 10, false)) }, syscall.EINVAL, false},
		{"B2", "Mapping.ReadAt/offset+length overflow", func(fx *errFixture) error {
			return mapped(fx, false, func(m *Mapping) error { return n1(m.ReadAt(big, maxInt64-10)) })
		}, syscall.EINVAL, false},
		{"B2", "Mapping.WriteAt/past its end", func(fx *errFixture) error {
			return mapped(fx, true, func(m *Mapping) error { return n1(m.WriteAt(big, 4096-50)) })
		}, syscall.EINVAL, false},
		{"B2", "Seek/current overflow", func(fx *errFixture) error {
			if _, err := fx.rw.Seek(10, io.SeekStart); err != nil {
				return err
			}
			return n2(fx.rw.Seek(maxInt64, io.SeekCurrent))
		}, syscall.EINVAL, false},
		{"B2", "Seek/end overflow", func(fx *errFixture) error { return n2(fx.rw.Seek(maxInt64, io.SeekEnd)) }, syscall.EINVAL, false},
		// B6: bad whence, RWF bits, fallocate modes (the bit sweeps are
		// in rowB6), SEEK_DATA/SEEK_HOLE at and after the end.
		{"B6", "Seek/whence 5", func(fx *errFixture) error { return n2(fx.rw.Seek(0, 5)) }, syscall.EINVAL, false},
		{"B6", "Seek/whence -1", func(fx *errFixture) error { return n2(fx.rw.Seek(0, -1)) }, syscall.EINVAL, false},
		{"B6", "Seek/whence MaxInt", func(fx *errFixture) error { return n2(fx.rw.Seek(0, math.MaxInt)) }, syscall.EINVAL, false},
		{"B6", "Seek/whence MinInt", func(fx *errFixture) error { return n2(fx.rw.Seek(0, math.MinInt)) }, syscall.EINVAL, false},
		{"B6", "ReadAtFlags/RWF_APPEND", func(fx *errFixture) error { return n1(fx.rw.ReadAtFlags(big, 0, unix.RWF_APPEND)) }, syscall.EOPNOTSUPP, false},
		{"B6", "ReadAtFlags/negative flags", func(fx *errFixture) error { return n1(fx.rw.ReadAtFlags(big, 0, -1)) }, syscall.EOPNOTSUPP, false},
		{"B6", "WriteAtFlags/RWF_APPEND", func(fx *errFixture) error { return n1(fx.rw.WriteAtFlags(big, 0, unix.RWF_APPEND)) }, syscall.EOPNOTSUPP, false},
		{"B6", "WriteAtFlags/negative flags", func(fx *errFixture) error { return n1(fx.rw.WriteAtFlags(big, 0, math.MinInt)) }, syscall.EOPNOTSUPP, false},
		{"B6", "Allocate/punch without keep size", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_PUNCH_HOLE, 0, 4096) }, syscall.EOPNOTSUPP, false},
		{"B6", "Allocate/collapse range", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_COLLAPSE_RANGE, 0, 4096) }, syscall.EOPNOTSUPP, false},
		{"B6", "Allocate/insert range", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_INSERT_RANGE, 0, 4096) }, syscall.EOPNOTSUPP, false},
		{"B6", "Allocate/unshare range", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_UNSHARE_RANGE, 0, 4096) }, syscall.EOPNOTSUPP, false},
		{"B6", "Allocate/all bits", func(fx *errFixture) error { return fx.rw.Allocate(math.MaxUint32, 0, 4096) }, syscall.EOPNOTSUPP, false},
		{"B6", "Seek/data at EOF", func(fx *errFixture) error { return n2(fx.rw.Seek(errFileSize, SeekData)) }, syscall.ENXIO, false},
		{"B6", "Seek/hole at EOF", func(fx *errFixture) error { return n2(fx.rw.Seek(errFileSize, SeekHole)) }, syscall.ENXIO, false},
		{"B6", "Seek/data after EOF", func(fx *errFixture) error { return n2(fx.rw.Seek(1<<40, SeekData)) }, syscall.ENXIO, false},
		{"B6", "Seek/hole after EOF", func(fx *errFixture) error { return n2(fx.ro.Seek(errFileSize+1, SeekHole)) }, syscall.ENXIO, false},
		// B8: the access mode of the handle, while an O_RDWR handle shares
		// the cache.
		{"B8", "WriteAt/O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.WriteAt(big, 0)) }, syscall.EBADF, false},
		{"B8", "WriteAt past EOF/O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.WriteAt(big, 1<<20)) }, syscall.EBADF, false},
		{"B8", "WriteAtFlags/O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.WriteAtFlags(big, 0, unix.RWF_DSYNC)) }, syscall.EBADF, false},
		{"B8", "Write/O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.Write(big)) }, syscall.EBADF, false},
		{"B8", "WriteAt/zero length, O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.WriteAt(nil, 0)) }, syscall.EBADF, false},
		{"B8", "Write/zero length, O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.Write(nil)) }, syscall.EBADF, false},
		{"B8", "Submit write/zero length, O_RDONLY", func(fx *errFixture) error { return submit(Op{File: fx.ro, Write: true}) }, syscall.EBADF, false},
		{"B8", "Submit read/zero length, O_WRONLY", func(fx *errFixture) error { return submit(Op{File: fx.wo}) }, syscall.EBADF, false},
		{"B8", "Truncate/O_RDONLY", func(fx *errFixture) error { return fx.ro.Truncate(0) }, syscall.EBADF, false},
		{"B8", "Truncate up/O_RDONLY", func(fx *errFixture) error { return fx.ro.Truncate(1 << 20) }, syscall.EBADF, false},
		{"B8", "Allocate/O_RDONLY", func(fx *errFixture) error { return fx.ro.Allocate(0, 0, 1<<20) }, syscall.EBADF, false},
		{"B8", "Allocate keep size/O_RDONLY", func(fx *errFixture) error { return fx.ro.Allocate(unix.FALLOC_FL_KEEP_SIZE, 0, 1<<20) }, syscall.EBADF, false},
		{"B8", "Allocate punch/O_RDONLY", func(fx *errFixture) error {
			return fx.ro.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
		}, syscall.EBADF, false},
		{"B8", "Allocate zero range/O_RDONLY", func(fx *errFixture) error { return fx.ro.Allocate(unix.FALLOC_FL_ZERO_RANGE, 0, 4096) }, syscall.EBADF, false},
		{"B8", "ReadAt/O_WRONLY", func(fx *errFixture) error { return n1(fx.wo.ReadAt(big, 0)) }, syscall.EBADF, false},
		{"B8", "ReadAtFlags/O_WRONLY", func(fx *errFixture) error { return n1(fx.wo.ReadAtFlags(big, 0, unix.RWF_NOWAIT)) }, syscall.EBADF, false},
		{"B8", "Read/O_WRONLY", func(fx *errFixture) error { return n1(fx.wo.Read(big)) }, syscall.EBADF, false},
		{"B8", "ReadAt/zero length, O_WRONLY", func(fx *errFixture) error { return n1(fx.wo.ReadAt(nil, 0)) }, syscall.EBADF, false},
		{"B8", "Read/zero length, O_WRONLY", func(fx *errFixture) error { return n1(fx.wo.Read(nil)) }, syscall.EBADF, false},
		{"B8", "ReadAt/O_WRONLY|O_APPEND", func(fx *errFixture) error { return n1(fx.app.ReadAt(big, 0)) }, syscall.EBADF, false},
		{"B8", "Read/O_WRONLY|O_APPEND", func(fx *errFixture) error { return n1(fx.app.Read(big)) }, syscall.EBADF, false},
		{"B8", "Map/O_WRONLY", func(fx *errFixture) error { return m1(fx.wo.Map(0, 4096, false)) }, syscall.EACCES, false},
		{"B8", "Map writable/O_RDONLY", func(fx *errFixture) error { return m1(fx.ro.Map(0, 4096, true)) }, syscall.EACCES, false},
		{"B8", "Mapping.WriteAt/read-only mapping", func(fx *errFixture) error {
			return mapped(fx, false, func(m *Mapping) error { return n1(m.WriteAt(big, 0)) })
		}, syscall.EACCES, false},
		{"B8", "Submit write/O_RDONLY", func(fx *errFixture) error { return submit(Op{File: fx.ro, Write: true, Buf: big}) }, syscall.EBADF, false},
		{"B8", "Submit read/O_WRONLY", func(fx *errFixture) error { return submit(Op{File: fx.wo, Buf: big}) }, syscall.EBADF, false},
		// WriteAt on an O_APPEND handle, as os.File.
		{"B8", "WriteAt/O_APPEND", func(fx *errFixture) error { return n1(fx.app.WriteAt(big, 0)) }, ErrWriteAtInAppendMode, false},
		{"B8", "WriteAt/O_APPEND is EINVAL", func(fx *errFixture) error { return n1(fx.app.WriteAt(big, 0)) }, syscall.EINVAL, false},
		{"B8", "WriteAtFlags/O_APPEND", func(fx *errFixture) error { return n1(fx.app.WriteAtFlags(big, 0, 0)) }, ErrWriteAtInAppendMode, false},
		{"B8", "Submit write/O_APPEND", func(fx *errFixture) error { return submit(Op{File: fx.app, Write: true, Buf: big}) }, ErrWriteAtInAppendMode, false},
	}
}

// checkRefused fails unless err is an *fs.PathError for which errors.Is
// finds want (and its syscall.Errno, when want is one).
func checkRefused(t *testing.T, what string, err, want error) {
	t.Helper()
	if want == ErrWriteAtInAppendMode {
		if !errors.Is(err, ErrWriteAtInAppendMode) || !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("%s: error %v, want ErrWriteAtInAppendMode (EINVAL)", what, err)
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) {
			t.Fatalf("%s: error %v (%T) is not an *fs.PathError", what, err, err)
		}
		return
	}
	wantPathErr(t, what, err, want)
	if errno, ok := want.(syscall.Errno); ok && errnoOf(err) != errno {
		t.Fatalf("%s: errno %d (%v), want %d (%v)", what, errnoOf(err), errnoOf(err), errno, errno)
	}
}

// runErrCases runs the cases of one row on every engine of errModes.
// before, when set, runs before each call (B8 dirties the cache with it).
// Figures: calls, refused, accepted_invalid (calls that returned no
// error), backend_requests (requests made by calls the host does not
// answer), files_unchanged (checks of the file, its sibling and the
// directory after a refused call).
func runErrCases(t *testing.T, fig *Figures, row, variant string, before func(t *testing.T, fx *errFixture, i int)) {
	var cases []errCase
	for _, c := range errCases() {
		if c.row == row {
			cases = append(cases, c)
		}
	}
	if len(cases) == 0 {
		t.Fatalf("no cases for row %s", row)
	}
	for _, mode := range errModes {
		t.Run(variant+mode.name, func(t *testing.T) {
			fx := newErrFixture(t, mode.opts)
			for i, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					if before != nil {
						before(t, fx, i)
					}
					pos, _ := fx.rw.Seek(0, io.SeekCurrent)
					st := fx.e.Stats()
					err := c.call(fx)
					d := fx.e.Stats().Sub(st)
					fig.Add("calls", 1)
					if err == nil {
						fig.Add("accepted_invalid", 1)
						t.Fatalf("%s: accepted, want %v", c.name, c.want)
					}
					checkRefused(t, c.name, err, c.want)
					if req := d.Ring.Requests + d.Ring.Inline; req != 0 && !c.host && !strings.HasPrefix(c.name, "Mapping.") {
						fig.Add("backend_requests", int64(req))
						t.Fatalf("%s: refused call made %d backend requests", c.name, req)
					}
					if d.Cache.WriteBytes != 0 || d.Cache.DirectWrites != 0 || d.Writes.Bytes() != 0 {
						t.Fatalf("%s: refused call wrote: %d cache bytes, %d direct, %d counted", c.name, d.Cache.WriteBytes, d.Cache.DirectWrites, d.Writes.Bytes())
					}
					fig.Add("refused", 1)
					fx.unchanged(t, c.name)
					fig.Add("files_unchanged", 1)
					if c.name != "Seek/current overflow" && strings.HasPrefix(c.name, "Seek") {
						if now, _ := fx.rw.Seek(0, io.SeekCurrent); now != pos {
							t.Fatalf("failed Seek moved the offset from %d to %d", pos, now)
						}
					}
				})
			}
		})
	}
	fig.Add("accepted_invalid", 0) // recorded even when none
	fig.Add("backend_requests", 0)
	fig.Set("modes", int64(len(errModes)))
}

// openErrors (B6): unknown open flags (every bit Open does not accept,
// alone and with O_CREAT|O_TRUNC), directories, symlinks with
// O_NOFOLLOW, missing files, O_EXCL, devices. A refused open creates,
// truncates and keeps nothing. Figures: opens_refused, bad_flag_bits.
func openErrors(t *testing.T, fig *Figures) {
	e := newEngine(t, Options{})
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	writeHost(t, target, []byte("secret"))
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")
	type openCase struct {
		name string
		path string
		flag int
		want error
	}
	rows := []openCase{
		{"unknown flag O_ASYNC", target, os.O_RDWR | syscall.O_ASYNC, syscall.EINVAL},
		{"unknown flag O_DIRECTORY", target, os.O_RDONLY | syscall.O_DIRECTORY, syscall.EINVAL},
		{"unknown flag O_PATH", target, unix.O_PATH, syscall.EINVAL},
		{"unknown flag O_TMPFILE", dir, os.O_RDWR | unix.O_TMPFILE, syscall.EINVAL},
		{"unknown flag bit 30", target, os.O_RDONLY | 1<<30, syscall.EINVAL},
		{"negative flags", target, -1, syscall.EINVAL},
		{"access mode 3", target, unix.O_ACCMODE, syscall.EINVAL},
		{"access mode 3 with O_CREAT", missing, unix.O_ACCMODE | os.O_CREATE, syscall.EINVAL},
		{"directory read-only", dir, os.O_RDONLY, syscall.EISDIR},
		{"directory read-write", dir, os.O_RDWR, syscall.EISDIR},
		{"O_NOFOLLOW on a symlink", link, os.O_RDONLY | syscall.O_NOFOLLOW, syscall.ELOOP},
		{"O_NOFOLLOW|O_RDWR|O_TRUNC on a symlink", link, os.O_RDWR | os.O_TRUNC | syscall.O_NOFOLLOW, syscall.ELOOP},
		{"missing", missing, os.O_RDONLY, fs.ErrNotExist},
		{"missing, O_RDWR", missing, os.O_RDWR, syscall.ENOENT},
		{"O_EXCL on an existing file", target, os.O_RDWR | os.O_CREATE | os.O_EXCL, fs.ErrExist},
		{"O_EXCL on a symlink", link, os.O_RDWR | os.O_CREATE | os.O_EXCL, syscall.EEXIST},
		{"device", "/dev/null", os.O_RDONLY, syscall.EINVAL},
		{"device, O_RDWR|O_TRUNC", "/dev/zero", os.O_RDWR | os.O_TRUNC, syscall.EINVAL},
		{"empty name", "", os.O_RDONLY, syscall.ENOENT},
		{"name with NUL", target + "\x00x", os.O_RDONLY, syscall.EINVAL},
	}
	// Every flag bit Open does not accept, alone and with O_CREAT|O_TRUNC
	// (which must then neither create nor truncate anything).
	bits := 0
	for b := 0; b < 32; b++ {
		bit := 1 << b
		if bit&(openFlags|unix.O_ACCMODE) != 0 {
			continue
		}
		bits++
		rows = append(rows,
			openCase{fmt.Sprintf("flag bit %#x", bit), target, os.O_RDWR | bit, syscall.EINVAL},
			openCase{fmt.Sprintf("flag bit %#x|O_CREAT|O_TRUNC", bit), missing, os.O_RDWR | os.O_CREATE | os.O_TRUNC | bit, syscall.EINVAL},
			openCase{fmt.Sprintf("flag bit %#x|O_TRUNC on the target", bit), target, os.O_WRONLY | os.O_TRUNC | bit, syscall.EINVAL})
	}
	fig.Set("bad_flag_bits", int64(bits))
	for _, r := range rows {
		f, err := e.Open(r.path, r.flag, 0o644)
		if f != nil {
			f.Close()
			fig.Add("accepted_invalid", 1)
			t.Fatalf("%s: Open succeeded", r.name)
		}
		checkRefused(t, r.name, err, r.want)
		if got := string(readHost(t, target)); got != "secret" {
			t.Fatalf("%s: target changed: %q", r.name, got)
		}
		if _, err := os.Lstat(missing); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: a refused open created %s (%v)", r.name, missing, err)
		}
		fig.Add("opens_refused", 1)
	}
	if st := e.Stats(); st.OpenHandles != 0 || st.OpenFiles != 0 {
		t.Fatalf("failed opens left %d handles, %d files", st.OpenHandles, st.OpenFiles)
	}
	t.Logf("%d refused opens (%d unknown flag bits), 0 handles or files left, target untouched, nothing created", len(rows), bits)
}

// handleCall is one call of a File method, for tests of handles that
// must refuse every call.
type handleCall struct {
	name string
	call func() error
}

// handleCalls calls every I/O method of f once (p is the buffer).
func handleCalls(f *File, p []byte) []handleCall {
	return []handleCall{
		{"ReadAt", func() error { _, err := f.ReadAt(p, 0); return err }},
		{"ReadAtFlags", func() error { _, err := f.ReadAtFlags(p, 0, 0); return err }},
		{"Read", func() error { _, err := f.Read(p); return err }},
		{"WriteAt", func() error { _, err := f.WriteAt(p, 0); return err }},
		{"WriteAtFlags", func() error { _, err := f.WriteAtFlags(p, 0, unix.RWF_DSYNC); return err }},
		{"Write", func() error { _, err := f.Write(p); return err }},
		{"Seek", func() error { _, err := f.Seek(0, io.SeekStart); return err }},
		{"Seek end", func() error { _, err := f.Seek(0, io.SeekEnd); return err }},
		{"Seek data", func() error { _, err := f.Seek(0, SeekData); return err }},
		{"Seek hole", func() error { _, err := f.Seek(0, SeekHole); return err }},
		{"Stat", func() error { _, err := f.Stat(); return err }},
		{"Sync", f.Sync},
		{"Datasync", f.Datasync},
		{"Truncate", func() error { return f.Truncate(0) }},
		{"Allocate", func() error { return f.Allocate(0, 0, 1<<20) }},
		{"Allocate punch", func() error {
			return f.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
		}},
		{"Map", func() error { _, err := f.Map(0, 10, false); return err }},
		{"Close", f.Close},
		{"zero-length ReadAt", func() error { _, err := f.ReadAt(nil, 0); return err }},
		{"zero-length WriteAt", func() error { _, err := f.WriteAt(nil, 0); return err }},
		{"invalid ReadAt", func() error { _, err := f.ReadAt(p, -1); return err }},
	}
}

// TestNilFile: as with os.File, every method of a nil *File fails with
// EINVAL (fs.ErrInvalid), in an *fs.PathError, rather than panic; Name is
// "" and Fd is ^uintptr(0), and a Submit of an Op without a File fails
// that Op the same way. A nil *Mapping's methods fail the same way or
// return zero values.
func TestNilFile(t *testing.T) {
	var f *File
	for _, c := range handleCalls(f, make([]byte, 10)) {
		err := c.call()
		wantPathErr(t, c.name+" on a nil *File", err, fs.ErrInvalid)
		wantPathErr(t, c.name+" on a nil *File", err, syscall.EINVAL)
	}
	if f.Name() != "" || f.Fd() != ^uintptr(0) {
		t.Fatalf("nil *File: Name %q, Fd %#x", f.Name(), f.Fd())
	}
	var m *Mapping
	for _, c := range []handleCall{
		{"Mapping.ReadAt", func() error { _, err := m.ReadAt(make([]byte, 10), 0); return err }},
		{"Mapping.WriteAt", func() error { _, err := m.WriteAt(make([]byte, 10), 0); return err }},
		{"Mapping.Close", m.Close},
	} {
		wantPathErr(t, c.name+" on a nil *Mapping", c.call(), fs.ErrInvalid)
	}
	if m.Bytes() != nil || m.Len() != 0 || m.Offset() != 0 || m.Writable() {
		t.Fatalf("nil *Mapping: %d bytes, Len %d, Offset %d, Writable %v", len(m.Bytes()), m.Len(), m.Offset(), m.Writable())
	}
	e := newEngine(t, Options{})
	ops := []Op{{Buf: make([]byte, 10)}, {Write: true, Buf: make([]byte, 10)}}
	if err := e.Submit(ops); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops {
		wantPathErr(t, fmt.Sprintf("Submit op %d without a File", i), op.Err, fs.ErrInvalid)
	}
}

// closedHandle (B7): every method of a closed File fails with
// fs.ErrClosed, a second Close too, and no I/O reaches the backend. The
// closed handle's descriptor number is taken by another file first (the
// kernel hands out the lowest free number): a call that used the stale
// descriptor would change that file, which must stay untouched.
// Figures: calls_after_close, err_closed, backend_requests, fd_reused.
func closedHandle(t *testing.T, fig *Figures) {
	for _, mode := range errModes {
		t.Run(mode.name, func(t *testing.T) {
			fx := newErrFixture(t, mode.opts)
			f := openFile(t, fx.e, fx.path, os.O_RDWR)
			m, err := f.Map(0, 4096, true) // a mapping outlives its File
			if err != nil {
				t.Fatal(err)
			}
			stale := int(f.Fd())
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			victimPath := filepath.Join(t.TempDir(), "victim")
			victimData := pattern(3*4096, 7, 7)
			writeHost(t, victimPath, victimData)
			victim, err := os.OpenFile(victimPath, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer victim.Close()
			if int(victim.Fd()) == stale {
				fig.Add("fd_reused", 1)
			}
			if _, err := victim.Seek(1000, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 10)
			calls := append(handleCalls(f, p), handleCall{"Submit", func() error {
				ops := []Op{{File: f, Buf: p}, {File: f, Write: true, Buf: p}}
				fx.e.Submit(ops)
				for _, op := range ops {
					var pe *fs.PathError
					if !errors.As(op.Err, &pe) {
						return fmt.Errorf("op error %v is not an *fs.PathError", op.Err)
					}
				}
				return errors.Join(ops[0].Err, ops[1].Err)
			}})
			before := fx.e.Stats()
			for _, c := range calls {
				err := c.call()
				fig.Add("calls_after_close", 1)
				if c.name == "Submit" {
					if err == nil || !errors.Is(err, fs.ErrClosed) {
						t.Fatalf("%s on a closed handle: %v", c.name, err)
					}
				} else {
					wantPathErr(t, c.name+" after Close", err, fs.ErrClosed)
				}
				fig.Add("err_closed", 1)
			}
			d := fx.e.Stats().Sub(before)
			fig.Add("backend_requests", int64(d.Ring.Requests+d.Ring.Inline))
			if d.Ring.Requests != 0 || d.Ring.Inline != 0 || d.Reads.Ops() != 0 || d.Writes.Ops() != 0 {
				t.Fatalf("closed handle reached the backend: %d requests, %d inline, %d reads, %d writes",
					d.Ring.Requests, d.Ring.Inline, d.Reads.Ops(), d.Writes.Ops())
			}
			// The file that took the descriptor number is untouched.
			if pos, err := victim.Seek(0, io.SeekCurrent); err != nil || pos != 1000 {
				t.Fatalf("the descriptor's new file moved to %d (%v)", pos, err)
			}
			sameBytes(t, "file holding the stale descriptor", readHost(t, victimPath), victimData)
			// The mapping made before Close still works.
			if _, err := m.WriteAt([]byte("kept"), 0); err != nil {
				t.Fatalf("mapping after its File closed: %v", err)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			copy(fx.content, "kept")
			fx.unchanged(t, "after calls on a closed handle")
			t.Logf("%d calls on a closed handle: all fs.ErrClosed, 0 requests reached the backend, stale descriptor %d (reused: %v) untouched",
				len(calls), stale, int(victim.Fd()) == stale)
		})
	}
}

// closedEngine (B7): after Engine.Close, handles are closed; Open,
// Submit, Sync, ServeStats and a second Close fail with fs.ErrClosed.
func closedEngine(t *testing.T, fig *Figures) {
	for _, mode := range errModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(t.TempDir(), "f")
			f := openFile(t, e, path, os.O_RDWR|os.O_CREATE)
			if _, err := f.WriteAt([]byte("data"), 0); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if got := string(readHost(t, path)); got != "data" {
				t.Fatalf("Engine.Close did not write back: %q", got)
			}
			check := func(what string, err error) {
				t.Helper()
				fig.Add("calls_after_close", 1)
				wantPathErr(t, what, err, fs.ErrClosed)
				fig.Add("err_closed", 1)
			}
			_, err := f.ReadAt(make([]byte, 1), 0)
			check("ReadAt on a handle of a closed engine", err)
			_, err = f.WriteAt([]byte("x"), 0)
			check("WriteAt on a handle of a closed engine", err)
			check("Sync on a handle of a closed engine", f.Sync())
			check("Close of a handle closed by Engine.Close", f.Close())
			_, err = e.Open(path, os.O_RDONLY, 0)
			check("Open after Engine.Close", err)
			_, err = e.Open(filepath.Join(t.TempDir(), "new"), os.O_RDWR|os.O_CREATE, 0o644)
			check("Open|O_CREAT after Engine.Close", err)
			check("Engine.Sync after Engine.Close", e.Sync())
			ops := []Op{{File: f, Buf: make([]byte, 1)}}
			check("Submit after Engine.Close", e.Submit(ops))
			check("Submit's op after Engine.Close", ops[0].Err)
			l, err := net.Listen("unix", filepath.Join(t.TempDir(), "sock"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			check("ServeStats after Engine.Close", e.ServeStats(l))
			check("second Engine.Close", e.Close())
			if got := string(readHost(t, path)); got != "data" {
				t.Fatalf("calls after Engine.Close changed the file: %q", got)
			}
		})
	}
	t.Logf("closed engine: Open, Submit, Sync, ServeStats, Close and handle calls all fs.ErrClosed")
}

// rlimitFsize (B4) runs a child process with RLIMIT_FSIZE set: a write
// crossing the limit is short and fails with EFBIG, one past it writes
// nothing, truncate and allocate past it fail, and the process survives
// (SIGXFSZ does not kill a Go program). Figures come from the child's
// counts.
func rlimitFsize(t *testing.T, fig *Figures) {
	modes := runChildTest(t, fig, "TestRlimitFsizeChild", "RINGFS_FSIZE_CHILD="+t.TempDir(), "fsize:", "fsize-figures:")
	if modes != len(errModes) {
		t.Fatalf("child reported %d modes, want %d", modes, len(errModes))
	}
	fig.Set("modes", int64(modes))
	fig.Set("process_survived", 1)
}

const fsizeLimitBytes = 1 << 20

// TestRlimitFsizeChild is the child process of row B4 (it skips unless
// run by it).
func TestRlimitFsizeChild(t *testing.T) {
	dir := os.Getenv("RINGFS_FSIZE_CHILD")
	if dir == "" {
		t.Skip("run by reliability row B4")
	}
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: fsizeLimitBytes, Max: fsizeLimitBytes}); err != nil {
		t.Fatal(err)
	}
	for i, mode := range errModes {
		t.Run(mode.name, func(t *testing.T) {
			var calls, short, efbig, accepted int
			// refused counts a call that must fail with EFBIG.
			refused := func(what string, n, wantN int, err error) {
				t.Helper()
				calls++
				if err == nil {
					accepted++
				}
				if n != wantN {
					t.Fatalf("%s: %d bytes, want %d (err %v)", what, n, wantN, err)
				}
				if n > 0 {
					short++
				}
				wantPathErr(t, what, err, syscall.EFBIG)
				efbig++
			}
			e := newEngine(t, mode.opts)
			path := filepath.Join(dir, fmt.Sprintf("f%d", i))
			f := openFile(t, e, path, os.O_RDWR|os.O_CREATE)
			app := openFile(t, e, path, os.O_WRONLY|os.O_APPEND)
			p := pattern(8192, 2, uint64(i))
			n, err := f.WriteAt(p, fsizeLimitBytes-100)
			refused("write crossing the limit", n, 100, err)
			n, err = f.WriteAt(p, fsizeLimitBytes)
			refused("write past the limit", n, 0, err)
			n, err = f.WriteAtFlags(p, fsizeLimitBytes+1<<20, unix.RWF_DSYNC)
			refused("RWF_DSYNC write past the limit", n, 0, err)
			refused("truncate past the limit", 0, 0, f.Truncate(fsizeLimitBytes+1))
			refused("allocate past the limit", 0, 0, f.Allocate(0, fsizeLimitBytes-10, 100))
			n, err = app.Write(p)
			refused("append past the limit", n, 0, err)
			ops := []Op{{File: f, Write: true, Buf: p, Off: fsizeLimitBytes + 4096}}
			e.Submit(ops)
			refused("Submit write past the limit", ops[0].N, 0, ops[0].Err)
			// Allocating with KEEP_SIZE does not grow the file: allowed.
			if err := f.Allocate(unix.FALLOC_FL_KEEP_SIZE, 0, fsizeLimitBytes); err != nil {
				t.Fatalf("allocate keep size below the limit: %v", err)
			}
			// The file holds exactly the 100 bytes below the limit.
			if err := f.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			fi, err := f.Stat()
			if err != nil || fi.Size() != fsizeLimitBytes {
				t.Fatalf("size %v, %v; want %d", fi.Size(), err, fsizeLimitBytes)
			}
			host := readHost(t, path)
			if len(host) != fsizeLimitBytes || !bytes.Equal(host[fsizeLimitBytes-100:], p[:100]) {
				t.Fatalf("host: %d bytes, tail right %v", len(host), bytes.Equal(host[len(host)-100:], p[:100]))
			}
			// Appending across the limit from below is short too.
			if err := f.Truncate(fsizeLimitBytes - 50); err != nil {
				t.Fatal(err)
			}
			n, err = app.Write(p[:100])
			refused("append crossing the limit", n, 50, err)
			// Below the limit everything still works.
			if n, err := f.WriteAt(p[:1000], 0); n != 1000 || err != nil {
				t.Fatalf("write below the limit: %d, %v", n, err)
			}
			t.Logf("fsize: %s: crossing write short (100 of 8192) + EFBIG, past the limit EFBIG for write, append, truncate, allocate, Submit; process alive", mode.name)
			t.Logf("fsize-figures: calls=%d short_writes=%d efbig=%d accepted_invalid=%d", calls, short, efbig, accepted)
		})
	}
}

// TestOpenTruncReadOnly: Linux truncates on O_RDONLY|O_TRUNC (given write
// permission), so the engine's cached size and pages must follow, as for
// a writable O_TRUNC open.
func TestOpenTruncReadOnly(t *testing.T) {
	checkLeaks(t)
	for _, mode := range errModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(t.TempDir(), "f")
			writeHost(t, path, pattern(10000, 33, 0))
			a := openFile(t, e, path, os.O_RDWR)
			if _, err := a.ReadAt(make([]byte, 10000), 0); err != nil {
				t.Fatal(err)
			}
			if _, err := a.WriteAt([]byte("dirty"), 20000); err != nil { // cached, past the host's end
				t.Fatal(err)
			}
			b := openFile(t, e, path, os.O_RDONLY|os.O_TRUNC)
			for _, h := range []*File{a, b} {
				fi, err := h.Stat()
				if err != nil || fi.Size() != 0 {
					t.Fatalf("size after O_RDONLY|O_TRUNC: %v, %v", fi.Size(), err)
				}
				if n, err := h.ReadAt(make([]byte, 100), 0); n != 0 || err != io.EOF {
					t.Fatalf("read after O_RDONLY|O_TRUNC: %d, %v", n, err)
				}
			}
			if err := a.Sync(); err != nil {
				t.Fatal(err)
			}
			if host := readHost(t, path); len(host) != 0 {
				t.Fatalf("host has %d bytes after O_TRUNC and Sync: old cached data written back", len(host))
			}
			t.Logf("O_RDONLY|O_TRUNC: engine size 0, reads EOF, nothing written back")
		})
	}
}

// TestOpenFIFONoWait: Open refuses a FIFO with EINVAL at once, in every
// access mode, instead of waiting in open(2) for the FIFO's other end
// (Open serves regular files only, and takes no O_NONBLOCK); with
// O_CREAT|O_EXCL it fails with EEXIST, as open(2) does. The test
// opens the other end itself if Open has not returned within a while,
// so that a regression fails rather than hangs.
func TestOpenFIFONoWait(t *testing.T) {
	e := newEngine(t, Options{})
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, flag := range []int{os.O_RDONLY, os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_RDONLY | syscall.O_NOFOLLOW} {
		done := make(chan error, 1)
		go func() {
			f, err := e.Open(fifo, flag, 0)
			if f != nil {
				f.Close()
			}
			done <- err
		}()
		var err error
		select {
		case err = <-done:
		case <-time.After(5 * time.Second):
			// Release the open(2) waiting for the other end.
			peer, perr := os.OpenFile(fifo, os.O_RDWR, 0)
			if perr == nil {
				defer peer.Close()
			}
			err = <-done
			t.Errorf("Open(fifo, %#x) waited for the FIFO's other end (then: %v)", flag, err)
			continue
		}
		wantPathErr(t, fmt.Sprintf("Open(fifo, %#x)", flag), err, syscall.EINVAL)
	}
	// O_CREAT|O_EXCL: the path exists, whatever it is.
	_, err := e.Open(fifo, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	wantPathErr(t, "Open(fifo, O_CREAT|O_EXCL)", err, syscall.EEXIST)
}
