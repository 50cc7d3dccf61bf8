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
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Bad input (TESTPLAN B1–B8): every invalid call fails with its exact
// errno inside an *fs.PathError, changes nothing in the file, and never
// panics.

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
// (the O_RDWR one shares the cache with the others).
type errFixture struct {
	e               *Engine
	path            string
	rw, ro, wo, app *File
	content         []byte
}

const errFileSize = 3*4096 + 123

func newErrFixture(t *testing.T, opts Options) *errFixture {
	t.Helper()
	fx := &errFixture{e: newEngine(t, opts), path: filepath.Join(t.TempDir(), "f"), content: pattern(errFileSize, 1, 1)}
	writeHost(t, fx.path, fx.content)
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
// Sync, so that cached writes would show).
func (fx *errFixture) unchanged(t *testing.T, what string) {
	t.Helper()
	got := make([]byte, errFileSize+100)
	n, err := fx.rw.ReadAt(got, 0)
	if n != errFileSize || err != io.EOF || !bytes.Equal(got[:n], fx.content) {
		t.Fatalf("%s: file changed through the engine: %d bytes, %v", what, n, err)
	}
	if err := fx.rw.Sync(); err != nil {
		t.Fatalf("%s: Sync: %v", what, err)
	}
	sameBytes(t, what+": host", readHost(t, fx.path), fx.content)
}

func TestErrnoTable(t *testing.T) {
	checkLeaks(t)
	const maxInt64 = math.MaxInt64
	big := make([]byte, 100)
	type row struct {
		name string
		call func(fx *errFixture) error
		want error
	}
	n1 := func(_ int, err error) error { return err }
	n2 := func(_ int64, err error) error { return err }
	m1 := func(m *Mapping, err error) error {
		if m != nil {
			m.Close()
		}
		return err
	}
	rows := []row{
		// B1: negative offsets and lengths.
		{"ReadAt/negative offset", func(fx *errFixture) error { return n1(fx.rw.ReadAt(big, -1)) }, syscall.EINVAL},
		{"ReadAtFlags/negative offset", func(fx *errFixture) error { return n1(fx.rw.ReadAtFlags(big, -4096, 0)) }, syscall.EINVAL},
		{"WriteAt/negative offset", func(fx *errFixture) error { return n1(fx.rw.WriteAt(big, -1)) }, syscall.EINVAL},
		{"WriteAtFlags/negative offset", func(fx *errFixture) error { return n1(fx.rw.WriteAtFlags(big, math.MinInt64, 0)) }, syscall.EINVAL},
		{"Truncate/negative size", func(fx *errFixture) error { return fx.rw.Truncate(-1) }, syscall.EINVAL},
		{"Allocate/negative offset", func(fx *errFixture) error { return fx.rw.Allocate(0, -1, 10) }, syscall.EINVAL},
		{"Allocate/zero length", func(fx *errFixture) error { return fx.rw.Allocate(0, 0, 0) }, syscall.EINVAL},
		{"Allocate/negative length", func(fx *errFixture) error { return fx.rw.Allocate(0, 0, -5) }, syscall.EINVAL},
		{"Map/negative offset", func(fx *errFixture) error { return m1(fx.rw.Map(-1, 10, false)) }, syscall.EINVAL},
		{"Map/negative length", func(fx *errFixture) error { return m1(fx.rw.Map(0, -10, false)) }, syscall.EINVAL},
		{"Map/offset+length overflow", func(fx *errFixture) error { return m1(fx.rw.Map(maxInt64-5, 10, false)) }, syscall.EINVAL},
		{"Seek/start negative", func(fx *errFixture) error { return n2(fx.rw.Seek(-1, io.SeekStart)) }, syscall.EINVAL},
		{"Seek/current negative result", func(fx *errFixture) error { return n2(fx.rw.Seek(-1, io.SeekCurrent)) }, syscall.EINVAL},
		{"Seek/end negative result", func(fx *errFixture) error { return n2(fx.rw.Seek(-errFileSize-1, io.SeekEnd)) }, syscall.EINVAL},
		{"Seek/current overflow", func(fx *errFixture) error {
			if _, err := fx.rw.Seek(10, io.SeekStart); err != nil {
				return err
			}
			return n2(fx.rw.Seek(maxInt64, io.SeekCurrent))
		}, syscall.EINVAL},
		{"Seek/end overflow", func(fx *errFixture) error { return n2(fx.rw.Seek(maxInt64, io.SeekEnd)) }, syscall.EINVAL},
		{"Seek/data negative", func(fx *errFixture) error { return n2(fx.rw.Seek(-1, SeekData)) }, syscall.EINVAL},
		{"Seek/hole negative", func(fx *errFixture) error { return n2(fx.rw.Seek(-1, SeekHole)) }, syscall.EINVAL},
		// B6: bad whence, RWF bits, fallocate modes.
		{"Seek/whence 5", func(fx *errFixture) error { return n2(fx.rw.Seek(0, 5)) }, syscall.EINVAL},
		{"Seek/whence -1", func(fx *errFixture) error { return n2(fx.rw.Seek(0, -1)) }, syscall.EINVAL},
		{"ReadAtFlags/RWF_APPEND", func(fx *errFixture) error { return n1(fx.rw.ReadAtFlags(big, 0, unix.RWF_APPEND)) }, syscall.EOPNOTSUPP},
		{"ReadAtFlags/unknown bit", func(fx *errFixture) error { return n1(fx.rw.ReadAtFlags(big, 0, 1<<20)) }, syscall.EOPNOTSUPP},
		{"WriteAtFlags/RWF_APPEND", func(fx *errFixture) error { return n1(fx.rw.WriteAtFlags(big, 0, unix.RWF_APPEND)) }, syscall.EOPNOTSUPP},
		{"WriteAtFlags/unknown bit", func(fx *errFixture) error { return n1(fx.rw.WriteAtFlags(big, 0, 1<<30)) }, syscall.EOPNOTSUPP},
		{"Allocate/punch without keep size", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_PUNCH_HOLE, 0, 4096) }, syscall.EOPNOTSUPP},
		{"Allocate/collapse range", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_COLLAPSE_RANGE, 0, 4096) }, syscall.EOPNOTSUPP},
		{"Allocate/insert range", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_INSERT_RANGE, 0, 4096) }, syscall.EOPNOTSUPP},
		{"Allocate/unknown mode", func(fx *errFixture) error { return fx.rw.Allocate(0x4000, 0, 4096) }, syscall.EOPNOTSUPP},
		// B2: offset+length overflowing int64.
		{"WriteAt/offset+length overflow", func(fx *errFixture) error { return n1(fx.rw.WriteAt(big, maxInt64-10)) }, syscall.EFBIG},
		{"WriteAtFlags/offset+length overflow", func(fx *errFixture) error { return n1(fx.rw.WriteAtFlags(big, maxInt64-99, 0)) }, syscall.EFBIG},
		{"Allocate/offset+length overflow", func(fx *errFixture) error { return fx.rw.Allocate(0, maxInt64-10, 100) }, syscall.EFBIG},
		{"Allocate/keep size overflow", func(fx *errFixture) error { return fx.rw.Allocate(unix.FALLOC_FL_KEEP_SIZE, maxInt64, maxInt64) }, syscall.EFBIG},
		// B3: huge sizes, the host's answer passed through.
		{"Truncate/huge", func(fx *errFixture) error { return fx.rw.Truncate(1 << 62) }, syscall.EFBIG},
		// B8: the access mode of the handle, while an O_RDWR handle shares the cache.
		{"WriteAt/O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.WriteAt(big, 0)) }, syscall.EBADF},
		{"WriteAtFlags/O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.WriteAtFlags(big, 0, 0)) }, syscall.EBADF},
		{"Write/O_RDONLY", func(fx *errFixture) error { return n1(fx.ro.Write(big)) }, syscall.EBADF},
		{"Truncate/O_RDONLY", func(fx *errFixture) error { return fx.ro.Truncate(0) }, syscall.EBADF},
		{"Allocate/O_RDONLY", func(fx *errFixture) error { return fx.ro.Allocate(0, 0, 1<<20) }, syscall.EBADF},
		{"Allocate punch/O_RDONLY", func(fx *errFixture) error {
			return fx.ro.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 4096)
		}, syscall.EBADF},
		{"ReadAt/O_WRONLY", func(fx *errFixture) error { return n1(fx.wo.ReadAt(big, 0)) }, syscall.EBADF},
		{"ReadAtFlags/O_WRONLY", func(fx *errFixture) error { return n1(fx.wo.ReadAtFlags(big, 0, unix.RWF_NOWAIT)) }, syscall.EBADF},
		{"Read/O_WRONLY", func(fx *errFixture) error { return n1(fx.wo.Read(big)) }, syscall.EBADF},
		{"ReadAt/O_WRONLY|O_APPEND", func(fx *errFixture) error { return n1(fx.app.ReadAt(big, 0)) }, syscall.EBADF},
		{"Map/O_WRONLY", func(fx *errFixture) error { return m1(fx.wo.Map(0, 4096, false)) }, syscall.EACCES},
		{"Map writable/O_RDONLY", func(fx *errFixture) error { return m1(fx.ro.Map(0, 4096, true)) }, syscall.EACCES},
		{"Submit write/O_RDONLY", func(fx *errFixture) error {
			ops := []Op{{File: fx.ro, Write: true, Buf: big}}
			fx.e.Submit(ops)
			return ops[0].Err
		}, syscall.EBADF},
		{"Submit read/O_WRONLY", func(fx *errFixture) error {
			ops := []Op{{File: fx.wo, Buf: big}}
			fx.e.Submit(ops)
			return ops[0].Err
		}, syscall.EBADF},
		{"Submit/negative offset", func(fx *errFixture) error {
			ops := []Op{{File: fx.rw, Buf: big, Off: -1}}
			fx.e.Submit(ops)
			return ops[0].Err
		}, syscall.EINVAL},
		// WriteAt on an O_APPEND handle, as os.File.
		{"WriteAt/O_APPEND", func(fx *errFixture) error { return n1(fx.app.WriteAt(big, 0)) }, ErrWriteAtInAppendMode},
		{"WriteAt/O_APPEND is EINVAL", func(fx *errFixture) error { return n1(fx.app.WriteAt(big, 0)) }, syscall.EINVAL},
		{"WriteAtFlags/O_APPEND", func(fx *errFixture) error { return n1(fx.app.WriteAtFlags(big, 0, 0)) }, ErrWriteAtInAppendMode},
		{"Submit write/O_APPEND", func(fx *errFixture) error {
			ops := []Op{{File: fx.app, Write: true, Buf: big}}
			fx.e.Submit(ops)
			return ops[0].Err
		}, ErrWriteAtInAppendMode},
		// ENXIO: SEEK_DATA/SEEK_HOLE at and after the end.
		{"Seek/data at EOF", func(fx *errFixture) error { return n2(fx.rw.Seek(errFileSize, SeekData)) }, syscall.ENXIO},
		{"Seek/hole at EOF", func(fx *errFixture) error { return n2(fx.rw.Seek(errFileSize, SeekHole)) }, syscall.ENXIO},
		{"Seek/data after EOF", func(fx *errFixture) error { return n2(fx.rw.Seek(1<<40, SeekData)) }, syscall.ENXIO},
		{"Seek/hole after EOF", func(fx *errFixture) error { return n2(fx.ro.Seek(errFileSize+1, SeekHole)) }, syscall.ENXIO},
	}
	total := 0
	for _, mode := range errModes {
		t.Run(mode.name, func(t *testing.T) {
			fx := newErrFixture(t, mode.opts)
			for _, r := range rows {
				t.Run(r.name, func(t *testing.T) {
					pos, _ := fx.rw.Seek(0, io.SeekCurrent)
					err := r.call(fx)
					if r.want == ErrWriteAtInAppendMode {
						if !errors.Is(err, ErrWriteAtInAppendMode) {
							t.Fatalf("error %v, want ErrWriteAtInAppendMode", err)
						}
						var pe *fs.PathError
						if !errors.As(err, &pe) {
							t.Fatalf("error %v (%T) is not an *fs.PathError", err, err)
						}
					} else {
						wantPathErr(t, r.name, err, r.want)
					}
					fx.unchanged(t, r.name)
					if r.name != "Seek/current overflow" {
						if now, _ := fx.rw.Seek(0, io.SeekCurrent); now != pos && strings.HasPrefix(r.name, "Seek") {
							t.Fatalf("failed Seek moved the offset from %d to %d", pos, now)
						}
					}
					total++
				})
			}
		})
	}
	t.Logf("%d invalid calls over %d engines: every one refused with its errno, 0 accepted, files unchanged", total, len(errModes))
}

// TestOpenErrors: unknown open flags, directories, symlinks with
// O_NOFOLLOW, missing files, O_EXCL.
func TestOpenErrors(t *testing.T) {
	checkLeaks(t)
	e := newEngine(t, Options{})
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	writeHost(t, target, []byte("secret"))
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		name string
		path string
		flag int
		want error
	}{
		{"unknown flag O_ASYNC", target, os.O_RDWR | syscall.O_ASYNC, syscall.EINVAL},
		{"unknown flag O_DIRECTORY", target, os.O_RDONLY | syscall.O_DIRECTORY, syscall.EINVAL},
		{"unknown flag O_PATH", target, unix.O_PATH, syscall.EINVAL},
		{"unknown flag bit 30", target, os.O_RDONLY | 1<<30, syscall.EINVAL},
		{"access mode 3", target, unix.O_ACCMODE, syscall.EINVAL},
		{"directory read-only", dir, os.O_RDONLY, syscall.EISDIR},
		{"directory read-write", dir, os.O_RDWR, syscall.EISDIR},
		{"O_NOFOLLOW on a symlink", link, os.O_RDONLY | syscall.O_NOFOLLOW, syscall.ELOOP},
		{"O_NOFOLLOW|O_RDWR|O_TRUNC on a symlink", link, os.O_RDWR | os.O_TRUNC | syscall.O_NOFOLLOW, syscall.ELOOP},
		{"missing", filepath.Join(dir, "missing"), os.O_RDONLY, fs.ErrNotExist},
		{"O_EXCL on an existing file", target, os.O_RDWR | os.O_CREATE | os.O_EXCL, fs.ErrExist},
		{"device", "/dev/null", os.O_RDONLY, syscall.EINVAL},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			f, err := e.Open(r.path, r.flag, 0o644)
			if f != nil {
				f.Close()
				t.Fatalf("Open succeeded")
			}
			wantPathErr(t, r.name, err, r.want)
			if got := string(readHost(t, target)); got != "secret" {
				t.Fatalf("target changed: %q", got)
			}
		})
	}
	if st := e.Stats(); st.OpenHandles != 0 || st.OpenFiles != 0 {
		t.Fatalf("failed opens left %d handles, %d files", st.OpenHandles, st.OpenFiles)
	}
	t.Logf("%d refused opens, 0 handles or files left, target untouched", len(rows))
}

// TestClosedHandle (B7): every method of a closed File fails with
// fs.ErrClosed, a second Close too, and no I/O reaches the backend.
func TestClosedHandle(t *testing.T) {
	checkLeaks(t)
	for _, mode := range errModes {
		t.Run(mode.name, func(t *testing.T) {
			fx := newErrFixture(t, mode.opts)
			f := openFile(t, fx.e, fx.path, os.O_RDWR)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			p := make([]byte, 10)
			calls := []struct {
				name string
				call func() error
			}{
				{"ReadAt", func() error { _, err := f.ReadAt(p, 0); return err }},
				{"ReadAtFlags", func() error { _, err := f.ReadAtFlags(p, 0, 0); return err }},
				{"Read", func() error { _, err := f.Read(p); return err }},
				{"WriteAt", func() error { _, err := f.WriteAt(p, 0); return err }},
				{"WriteAtFlags", func() error { _, err := f.WriteAtFlags(p, 0, 0); return err }},
				{"Write", func() error { _, err := f.Write(p); return err }},
				{"Seek", func() error { _, err := f.Seek(0, io.SeekStart); return err }},
				{"Seek data", func() error { _, err := f.Seek(0, SeekData); return err }},
				{"Stat", func() error { _, err := f.Stat(); return err }},
				{"Sync", f.Sync},
				{"Datasync", f.Datasync},
				{"Truncate", func() error { return f.Truncate(0) }},
				{"Allocate", func() error { return f.Allocate(0, 0, 4096) }},
				{"Map", func() error { _, err := f.Map(0, 10, false); return err }},
				{"Close", f.Close},
				{"zero-length ReadAt", func() error { _, err := f.ReadAt(nil, 0); return err }},
				{"zero-length WriteAt", func() error { _, err := f.WriteAt(nil, 0); return err }},
				{"Submit", func() error {
					ops := []Op{{File: f, Buf: p}, {File: f, Write: true, Buf: p}}
					fx.e.Submit(ops)
					return errors.Join(ops[0].Err, ops[1].Err)
				}},
			}
			before := fx.e.Stats()
			for _, c := range calls {
				err := c.call()
				if c.name == "Submit" {
					if err == nil || !errors.Is(err, fs.ErrClosed) {
						t.Fatalf("%s on a closed handle: %v", c.name, err)
					}
					continue
				}
				wantPathErr(t, c.name+" after Close", err, fs.ErrClosed)
			}
			d := fx.e.Stats().Sub(before)
			if d.Ring.Requests != 0 || d.Reads.Ops() != 0 || d.Writes.Ops() != 0 {
				t.Fatalf("closed handle reached the backend: %d requests, %d reads, %d writes", d.Ring.Requests, d.Reads.Ops(), d.Writes.Ops())
			}
			fx.unchanged(t, "after calls on a closed handle")
			t.Logf("%d calls on a closed handle: all fs.ErrClosed, 0 requests reached the backend", len(calls))
		})
	}
}

// TestClosedEngine: after Engine.Close, handles are closed, Open, Submit,
// ServeStats and a second Close fail with fs.ErrClosed.
func TestClosedEngine(t *testing.T) {
	checkLeaks(t)
	e := newEngine(t, Options{})
	path := filepath.Join(t.TempDir(), "f")
	f := openFile(t, e, path, os.O_RDWR|os.O_CREATE)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("ReadAt on a handle of a closed engine: %v", err)
	}
	if err := f.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Close of a handle closed by Engine.Close: %v", err)
	}
	if _, err := e.Open(path, os.O_RDONLY, 0); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("Open after Engine.Close: %v", err)
	}
	ops := []Op{{File: f, Buf: make([]byte, 1)}}
	if err := e.Submit(ops); !errors.Is(err, fs.ErrClosed) || !errors.Is(ops[0].Err, fs.ErrClosed) {
		t.Fatalf("Submit after Engine.Close: %v, op %v", err, ops[0].Err)
	}
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := e.ServeStats(l); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("ServeStats after Engine.Close: %v", err)
	}
	if err := e.Close(); !errors.Is(err, fs.ErrClosed) {
		t.Fatalf("second Engine.Close: %v", err)
	}
	t.Logf("closed engine: Open, Submit, ServeStats, Close and handle calls all fs.ErrClosed")
}

// TestRlimitFsize (B4) runs a child process with RLIMIT_FSIZE set: a write
// crossing the limit is short and fails with EFBIG, one past it writes
// nothing, truncate and allocate past it fail, and the process survives
// (SIGXFSZ does not kill a Go program).
func TestRlimitFsize(t *testing.T) {
	if os.Getenv("RINGFS_FSIZE_CHILD") != "" {
		t.Skip("in the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRlimitFsizeChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "RINGFS_FSIZE_CHILD="+t.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child failed (%v):\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: TestRlimitFsizeChild")) {
		t.Fatalf("child did not run the test:\n%s", out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "fsize:") {
			t.Log(strings.TrimSpace(line))
		}
	}
}

const fsizeLimitBytes = 1 << 20

func TestRlimitFsizeChild(t *testing.T) {
	dir := os.Getenv("RINGFS_FSIZE_CHILD")
	if dir == "" {
		t.Skip("run by TestRlimitFsize")
	}
	if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: fsizeLimitBytes, Max: fsizeLimitBytes}); err != nil {
		t.Fatal(err)
	}
	for i, mode := range errModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(dir, fmt.Sprintf("f%d", i))
			f := openFile(t, e, path, os.O_RDWR|os.O_CREATE)
			app := openFile(t, e, path, os.O_WRONLY|os.O_APPEND)
			p := pattern(8192, 2, uint64(i))
			// Crossing: short, EFBIG.
			n, err := f.WriteAt(p, fsizeLimitBytes-100)
			if n != 100 {
				t.Fatalf("write crossing the limit: %d bytes, want 100 (err %v)", n, err)
			}
			wantPathErr(t, "write crossing the limit", err, syscall.EFBIG)
			// Past it: nothing.
			n, err = f.WriteAt(p, fsizeLimitBytes)
			if n != 0 {
				t.Fatalf("write past the limit wrote %d", n)
			}
			wantPathErr(t, "write past the limit", err, syscall.EFBIG)
			wantPathErr(t, "truncate past the limit", f.Truncate(fsizeLimitBytes+1), syscall.EFBIG)
			wantPathErr(t, "allocate past the limit", f.Allocate(0, fsizeLimitBytes-10, 100), syscall.EFBIG)
			n, err = app.Write(p)
			if n != 0 {
				t.Fatalf("append past the limit wrote %d", n)
			}
			wantPathErr(t, "append past the limit", err, syscall.EFBIG)
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
			if n != 50 {
				t.Fatalf("append crossing the limit: %d bytes, want 50 (err %v)", n, err)
			}
			wantPathErr(t, "append crossing the limit", err, syscall.EFBIG)
			t.Logf("fsize: %s: crossing write short (100 of 8192) + EFBIG, past the limit EFBIG for write, append, truncate, allocate; process alive", mode.name)
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
