//go:build linux

package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCompareWithOSFile is a differential test: one seeded random
// sequence of handle calls runs on an *os.File over file A and on an
// engine *File over file B (same initial contents), and every answer must
// be the same: n, error (nil, io.EOF or the errno), the bytes read, the
// Seek result, then the handle's offset and Stat().Size() after each call,
// and the whole contents every few calls. The kernel answers for os.File,
// so any difference is the engine answering other than the system call.
//
// Normalized, as documented on File: an os.File error wrapping no errno
// (negative offsets, WriteAt in append mode) counts as EINVAL, and
// SEEK_DATA/SEEK_HOLE with a negative offset must fail with EINVAL. SEEK_DATA
// and SEEK_HOLE answers depend on the filesystem's and the cache's extents,
// so below EOF the engine's answer is only checked against the data.
//
// Environment:
//
//	RINGFS_OSCOMPARE_SEED=n  seed of the first mode (mode i uses n+i)
//	RINGFS_OSCOMPARE_OPS=n   calls per mode × flags (default 2000)
func TestCompareWithOSFile(t *testing.T) {
	checkLeaks(t)
	base := ocSeed(t, 0x05c0de)
	ops := envInt(t, "RINGFS_OSCOMPARE_OPS", 2000)
	t.Logf("seed %d (RINGFS_OSCOMPARE_SEED; mode i uses seed+i), %d calls per run", base, ops)
	modes := ocModes
	flagSets := []struct {
		name string
		flag int
	}{
		{"rdwr", os.O_RDWR},
		{"append", os.O_RDWR | os.O_APPEND},
		{"trunc", os.O_RDWR | os.O_CREATE | os.O_TRUNC},
	}
	for mi, mode := range modes {
		for fi, fl := range flagSets {
			t.Run(mode.name+"/"+fl.name, func(t *testing.T) {
				c := newOSCompare(t, base+uint64(mi), uint64(fi), mode.name, mode.opts, fl.name, fl.flag)
				c.run(ops)
				c.finish()
			})
		}
	}
}

// ocModes are the engines the differential tests compare with os.File:
// every mode; Exclusive with a cache that evicts, with none, with host
// mappings, with O_DIRECT fills and writeback, and on the psync backend.
var ocModes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive}},
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: 64 << 10}},
	{"exclusive/nocache", Options{Mode: Exclusive, CacheSize: -1}},
	{"exclusive/hostmmap", Options{Mode: Exclusive, HostMmap: true}},
	{"exclusive/directio", Options{Mode: Exclusive, DirectIO: true}},
	{"exclusive/psync", Options{Mode: Exclusive, Backend: "psync"}},
	{"writethrough", Options{Mode: Writethrough}},
	{"shared", Options{Mode: Shared}},
}

// ocSeed returns the differential tests' seed: RINGFS_OSCOMPARE_SEED,
// else def.
func ocSeed(t *testing.T, def uint64) uint64 {
	v := os.Getenv("RINGFS_OSCOMPARE_SEED")
	if v == "" {
		return def
	}
	s, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("RINGFS_OSCOMPARE_SEED: %v", err)
	}
	return s
}

// ocRes is one side's answer to a call: n (or the Seek result), the
// error, and the bytes read.
type ocRes struct {
	n    int64
	err  error
	data []byte
}

func (r ocRes) String() string { return fmt.Sprintf("%d %s", r.n, ocClass(r.err)) }

// ocClass names an error by what is compared: nil, io.EOF, or the errno.
// An error wrapping no errno is EINVAL (os.File's answer to a negative
// offset and to WriteAt in append mode, where the engine answers as the
// system call would; ErrWriteAtInAppendMode matches EINVAL but is no
// Errno).
func ocClass(err error) string {
	switch {
	case err == nil:
		return "nil"
	case err == io.EOF:
		return "EOF"
	}
	if e := errnoOf(err); e != 0 {
		return unix.ErrnoName(e)
	}
	if errors.Is(err, fs.ErrClosed) {
		return "ErrClosed"
	}
	return "EINVAL"
}

// osCompare runs one sequence: mode × flags, one seed.
type osCompare struct {
	t            *testing.T
	seed         uint64
	mode, flags  string
	flag         int
	rng          *rand.Rand
	e            *Engine
	osf          *os.File
	ef           *File
	pathA, pathB string
	log          []string
	size         int64 // the os file's size after the last call
	maxBytes     int64 // the largest offset lseek takes on this filesystem
	alloc        bool  // fallocate modes 0 and KEEP_SIZE work here
}

func newOSCompare(t *testing.T, seed, stream uint64, mode string, opts Options, flags string, flag int) *osCompare {
	dir := t.TempDir()
	c := &osCompare{
		t: t, seed: seed, mode: mode, flags: flags, flag: flag,
		rng:   rand.New(rand.NewPCG(seed, stream)),
		pathA: filepath.Join(dir, "a"), pathB: filepath.Join(dir, "b"),
	}
	initial := pattern(1+c.rng.IntN(12<<10), seed, 1<<40+stream)
	writeHost(t, c.pathA, initial)
	writeHost(t, c.pathB, initial)
	c.maxBytes, c.alloc = ocProbe(t, dir)
	c.e = newEngine(t, opts)
	var err error
	if c.osf, err = os.OpenFile(c.pathA, flag, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.osf.Close() }) // a second Close is harmless
	c.ef = openFile(t, c.e, c.pathB, flag)
	c.size = int64(len(initial))
	if flag&os.O_TRUNC != 0 {
		c.size = 0
	}
	c.checkState()
	return c
}

// ocProbe returns the largest offset lseek accepts in dir (s_maxbytes:
// 16 TiB - 4 KiB on ext4 with 4 KiB blocks, 2^63-1 on tmpfs), found by
// bisection with the os package, and whether fallocate modes 0 and
// FALLOC_FL_KEEP_SIZE work there.
func ocProbe(t *testing.T, dir string) (int64, bool) {
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	lo, hi := int64(0), int64(1<<63-1) // lseek takes lo; hi is unknown
	if _, err := f.Seek(hi, io.SeekStart); err == nil {
		lo = hi
	}
	for lo < hi {
		mid := lo + int64((uint64(hi-lo)+1)/2) // hi-lo+1 may overflow int64
		if _, err := f.Seek(mid, io.SeekStart); err == nil {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	alloc := ocFallocate(f, 0, 0, 4096) == nil && ocFallocate(f, unix.FALLOC_FL_KEEP_SIZE, 4096, 4096) == nil
	return lo, alloc
}

// ocFallocate is fallocate(2) on an *os.File, as File.Allocate.
func ocFallocate(f *os.File, mode uint32, off, length int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = unix.Fallocate(int(fd), mode, off, length) }); err != nil {
		return err
	}
	if ferr != nil {
		return &fs.PathError{Op: "fallocate", Path: f.Name(), Err: ferr}
	}
	return nil
}

// ocWriteAt is os.File.WriteAt but for the count of a write that fails
// part way (crossing the largest file): os.File drops the bytes its last
// pwrite wrote before the error (its loop breaks before n += m), pwrite
// and the engine report them.
func ocWriteAt(f *os.File, appendMode bool, p []byte, off int64) (int, error) {
	if appendMode || off < 0 || len(p) == 0 {
		return f.WriteAt(p, off) // answered without a pwrite
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var werr error
	if err := rc.Control(func(fd uintptr) {
		for n < len(p) && werr == nil {
			m, err := unix.Pwrite(int(fd), p[n:], off+int64(n))
			switch {
			case err == unix.EINTR:
			case err != nil:
				werr = err
			case m == 0:
				werr = io.ErrUnexpectedEOF
			default:
				n += m
			}
		}
	}); err != nil {
		return 0, err
	}
	if werr != nil {
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: werr}
	}
	return n, nil
}

// fail reports a difference with everything needed to replay it.
func (c *osCompare) fail(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("seed %d (RINGFS_OSCOMPARE_SEED=%d for the first mode), mode %s, flags %s (%#x), after %d calls: %s\nlast calls (desc -> os n err | engine n err; data = pattern(len, seed, tag)):\n%s",
		c.seed, c.seed, c.mode, c.flags, c.flag, len(c.log), fmt.Sprintf(format, args...), tail(c.log, 30))
}

// step runs one call on both sides, logs it and compares the answers.
func (c *osCompare) step(desc string, osCall, engCall func() ocRes) (ocRes, ocRes) {
	c.t.Helper()
	o, g := osCall(), engCall()
	c.log = append(c.log, fmt.Sprintf("%s -> os %v | engine %v", desc, o, g))
	switch {
	case o.n != g.n:
		c.fail("%s: engine %d, %v; os.File %d, %v", desc, g.n, g.err, o.n, o.err)
	case ocClass(o.err) != ocClass(g.err):
		c.fail("%s: engine %d, %v; os.File %d, %v", desc, g.n, g.err, o.n, o.err)
	case o.n > 0 && o.data != nil && !bytes.Equal(o.data[:o.n], g.data[:g.n]):
		i := diffAt(o.data[:o.n], g.data[:g.n])
		c.fail("%s: bytes read differ first at %d (engine %#x, os.File %#x)", desc, i, g.data[i], o.data[i])
	}
	return o, g
}

// checkState compares the handles' offsets and the sizes after a call.
func (c *osCompare) checkState() {
	c.t.Helper()
	op, oerr := c.osf.Seek(0, io.SeekCurrent)
	ep, eerr := c.ef.Seek(0, io.SeekCurrent)
	if op != ep || ocClass(oerr) != ocClass(eerr) {
		c.fail("offset %d (%v), os.File %d (%v)", ep, eerr, op, oerr)
	}
	oi, oerr := c.osf.Stat()
	ei, eerr := c.ef.Stat()
	if oerr != nil || eerr != nil {
		c.fail("Stat: engine %v, os.File %v", eerr, oerr)
	}
	if oi.Size() != ei.Size() {
		c.fail("size %d, os.File %d", ei.Size(), oi.Size())
	}
	c.size = oi.Size()
}

// checkContents compares the whole files: the engine's through its handle
// (in Exclusive mode the host may be behind), the os file's as the kernel
// has it.
func (c *osCompare) checkContents() {
	c.t.Helper()
	want := readHost(c.t, c.pathA)
	got := make([]byte, c.size)
	n, err := c.ef.ReadAt(got, 0)
	if n != len(got) || (err != nil && err != io.EOF) {
		c.fail("ReadAt of the whole file (%d bytes): %d, %v", len(got), n, err)
	}
	if i := diffAt(got, want); i >= 0 {
		c.fail("contents differ first at %d (engine %d bytes, os.File %d bytes)", i, len(got), len(want))
	}
}

// offset picks an offset for a call: mostly inside or near the file
// (crossing EOF, on and around page boundaries, past EOF), sometimes
// negative.
func (c *osCompare) offset() int64 {
	r, size := c.rng, c.size
	switch k := r.IntN(100); {
	case k < 40:
		return r.Int64N(size + 1)
	case k < 60:
		return max(0, size+int64(r.IntN(129))-64)
	case k < 75:
		return max(0, int64(r.IntN(int(size/4096)+3))*4096+int64(r.IntN(9))-4)
	case k < 90:
		return size + r.Int64N(16<<10)
	case k < 97:
		return 0
	default:
		return -1 - r.Int64N(4096)
	}
}

// length picks a length: zero, small, up to a page, or several pages.
func (c *osCompare) length() int {
	switch k := c.rng.IntN(100); {
	case k < 5:
		return 0
	case k < 35:
		return 1 + c.rng.IntN(64)
	case k < 75:
		return 1 + c.rng.IntN(4096)
	default:
		return 1 + c.rng.IntN(20000)
	}
}

// data returns n bytes derived from the seed and the call's index, so a
// log line names what was written.
func (c *osCompare) data(n int) ([]byte, uint64) {
	tag := uint64(len(c.log))
	return pattern(n, c.seed, tag), tag
}

// ocOp is a call of a differential test and how often it is picked.
type ocOp[F any] struct {
	weight int
	fn     F
}

// ocPick picks a call from table at random, by weight.
func ocPick[F any](rng *rand.Rand, table []ocOp[F]) F {
	total := 0
	for _, o := range table {
		total += o.weight
	}
	k := rng.IntN(total)
	for _, o := range table {
		if k < o.weight {
			return o.fn
		}
		k -= o.weight
	}
	panic("ocPick: empty table")
}

func (c *osCompare) run(ops int) {
	table := []ocOp[func()]{
		{18, c.readAt},
		{18, c.writeAt},
		{12, c.read},
		{12, c.write},
		{10, c.seek},
		{4, c.seekExtent},
		{6, c.truncate},
		{2, c.stat},
		{4, c.allocate},
		{2, c.sync},
		{1, c.reopen},
		{2, c.far},
	}
	for i := 0; i < ops; i++ {
		ocPick(c.rng, table)()
		c.checkState()
		if i%25 == 24 {
			c.checkContents()
		}
	}
	c.checkContents()
}

// finish closes both handles and the engine, then compares the host files:
// what the engine wrote back must be what the kernel has for os.File.
func (c *osCompare) finish() {
	c.t.Helper()
	c.closeBoth()
	if err := c.e.Close(); err != nil {
		c.fail("Engine.Close: %v", err)
	}
	a, b := readHost(c.t, c.pathA), readHost(c.t, c.pathB)
	if i := diffAt(b, a); i >= 0 {
		c.fail("host files differ after Engine.Close first at %d (engine's %d bytes, os.File's %d bytes)", i, len(b), len(a))
	}
	c.t.Logf("%d calls, final size %d, largest offset %d, fallocate %v", len(c.log), len(a), c.maxBytes, c.alloc)
}

func (c *osCompare) readAt() { c.readAtAt(c.offset(), c.length()) }

func (c *osCompare) readAtAt(off int64, n int) {
	c.t.Helper()
	po, pe := make([]byte, n), make([]byte, n)
	c.step(fmt.Sprintf("ReadAt(len=%d, off=%d)", n, off),
		func() ocRes { m, err := c.osf.ReadAt(po, off); return ocRes{int64(m), err, po} },
		func() ocRes { m, err := c.ef.ReadAt(pe, off); return ocRes{int64(m), err, pe} })
}

func (c *osCompare) writeAt() { c.writeAtAt(c.offset(), c.length()) }

func (c *osCompare) writeAtAt(off int64, n int) {
	c.t.Helper()
	p, tag := c.data(n)
	c.step(fmt.Sprintf("WriteAt(len=%d tag=%d, off=%d)", n, tag, off),
		func() ocRes {
			m, err := ocWriteAt(c.osf, c.flag&os.O_APPEND != 0, p, off)
			return ocRes{int64(m), err, nil}
		},
		func() ocRes { m, err := c.ef.WriteAt(p, off); return ocRes{int64(m), err, nil} })
}

func (c *osCompare) read() {
	n := c.length()
	po, pe := make([]byte, n), make([]byte, n)
	c.step(fmt.Sprintf("Read(len=%d)", n),
		func() ocRes { m, err := c.osf.Read(po); return ocRes{int64(m), err, po} },
		func() ocRes { m, err := c.ef.Read(pe); return ocRes{int64(m), err, pe} })
}

func (c *osCompare) write() {
	p, tag := c.data(c.length())
	c.step(fmt.Sprintf("Write(len=%d tag=%d)", len(p), tag),
		func() ocRes { m, err := c.osf.Write(p); return ocRes{int64(m), err, nil} },
		func() ocRes { m, err := c.ef.Write(p); return ocRes{int64(m), err, nil} })
}

func (c *osCompare) seekTo(off int64, whence int) {
	c.t.Helper()
	c.step(fmt.Sprintf("Seek(%d, %d)", off, whence),
		func() ocRes { r, err := c.osf.Seek(off, whence); return ocRes{r, err, nil} },
		func() ocRes { r, err := c.ef.Seek(off, whence); return ocRes{r, err, nil} })
}

func (c *osCompare) seek() {
	switch c.rng.IntN(3) {
	case io.SeekStart:
		c.seekTo(c.offset(), io.SeekStart)
	case io.SeekCurrent:
		c.seekTo(c.rng.Int64N(2*c.size+8192)-c.size-4096, io.SeekCurrent)
	default:
		c.seekTo(c.rng.Int64N(c.size+8192)-c.size-4096, io.SeekEnd)
	}
}

// seekExtent checks SEEK_DATA or SEEK_HOLE. At or past EOF both must
// fail with ENXIO; below 0 the engine answers EINVAL (File's doc). Below EOF the filesystems' extents differ
// (and the engine merges in cached data), so the engine's answer is only
// checked against the contents: SEEK_DATA skips zeros only (or fails with
// ENXIO when only zeros are left), SEEK_HOLE lands on a zero byte or at
// EOF. The os handle then moves where the engine's did.
func (c *osCompare) seekExtent() {
	off := c.offset()
	whence := SeekData
	if c.rng.IntN(2) == 0 {
		whence = SeekHole
	}
	if off < 0 {
		// The one documented difference (see File): EINVAL, as every
		// negative offset, where lseek answers ENXIO.
		r, err := c.ef.Seek(off, whence)
		c.log = append(c.log, fmt.Sprintf("Seek(%d, %d) -> engine %d %s", off, whence, r, ocClass(err)))
		if ocClass(err) != "EINVAL" {
			c.fail("Seek(%d, %d): engine %d, %v; want EINVAL", off, whence, r, err)
		}
		return
	}
	if off >= c.size {
		c.seekTo(off, whence)
		return
	}
	desc := fmt.Sprintf("Seek(%d, %d) below EOF", off, whence)
	r, err := c.ef.Seek(off, whence)
	c.log = append(c.log, fmt.Sprintf("%s -> engine %d %s", desc, r, ocClass(err)))
	zeros := func(a, b int64) bool {
		p := make([]byte, b-a)
		if n, err := c.osf.ReadAt(p, a); n != len(p) {
			c.fail("ReadAt(%d, %d) of the os file: %d, %v", len(p), a, n, err)
		}
		return firstNonzeroByte(p) < 0
	}
	switch {
	case whence == SeekData && err != nil:
		if ocClass(err) != "ENXIO" || !zeros(off, c.size) {
			c.fail("%s: %v, but [%d, %d) holds data", desc, err, off, c.size)
		}
		return // the offset stays
	case err != nil:
		c.fail("%s: %v below EOF (size %d)", desc, err, c.size)
	case r < off || r > c.size || (whence == SeekData && r == c.size):
		c.fail("%s: %d out of range (size %d)", desc, r, c.size)
	case whence == SeekData && !zeros(off, r):
		c.fail("%s: %d skips data in [%d, %d)", desc, r, off, r)
	case whence == SeekHole && r < c.size && !zeros(r, r+1):
		c.fail("%s: %d is not in a hole (nonzero byte)", desc, r)
	}
	if _, err := c.osf.Seek(r, io.SeekStart); err != nil {
		c.fail("os Seek(%d): %v", r, err)
	}
}

func (c *osCompare) truncate() {
	var size int64
	switch k := c.rng.IntN(10); {
	case k < 4 || c.size > 64<<10: // down, and always once the file is large
		size = c.rng.Int64N(c.size + 1)
	case k < 9:
		size = c.size + c.rng.Int64N(16<<10)
	default:
		size = c.offset() // sometimes negative: EINVAL
	}
	c.truncateTo(size)
}

func (c *osCompare) truncateTo(size int64) {
	c.t.Helper()
	c.step(fmt.Sprintf("Truncate(%d)", size),
		func() ocRes { return ocRes{0, c.osf.Truncate(size), nil} },
		func() ocRes { return ocRes{0, c.ef.Truncate(size), nil} })
}

func (c *osCompare) stat() {
	c.step("Stat()",
		func() ocRes { fi, err := c.osf.Stat(); return ocRes{ocSize(fi), err, nil} },
		func() ocRes { fi, err := c.ef.Stat(); return ocRes{ocSize(fi), err, nil} })
}

func ocSize(fi fs.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Size()
}

func (c *osCompare) allocate() {
	if !c.alloc {
		return
	}
	mode := uint32(0)
	if c.rng.IntN(2) == 0 {
		mode = unix.FALLOC_FL_KEEP_SIZE
	}
	length := int64(c.length()) // zero: EINVAL
	c.allocateAt(mode, c.offset(), length)
}

func (c *osCompare) allocateAt(mode uint32, off, length int64) {
	c.t.Helper()
	c.step(fmt.Sprintf("Allocate(%#x, %d, %d)", mode, off, length),
		func() ocRes { return ocRes{0, ocFallocate(c.osf, mode, off, length), nil} },
		func() ocRes { return ocRes{0, c.ef.Allocate(mode, off, length), nil} })
}

func (c *osCompare) sync() {
	c.step("Sync()",
		func() ocRes { return ocRes{0, c.osf.Sync(), nil} },
		func() ocRes { return ocRes{0, c.ef.Sync(), nil} })
}

func (c *osCompare) closeBoth() {
	c.t.Helper()
	c.step("Close()",
		func() ocRes { return ocRes{0, c.osf.Close(), nil} },
		func() ocRes { return ocRes{0, c.ef.Close(), nil} })
}

// reopen closes both handles and opens them again with the same flags
// but without O_TRUNC: the engine's last Close writes back, the next Open
// reads the size from the host.
func (c *osCompare) reopen() {
	c.closeBoth()
	flag := c.flag &^ os.O_TRUNC
	var err error
	c.step(fmt.Sprintf("Open(%#x)", flag),
		func() ocRes { c.osf, err = os.OpenFile(c.pathA, flag, 0o644); return ocRes{0, err, nil} },
		func() ocRes { c.ef, err = c.e.Open(c.pathB, flag, 0o644); return ocRes{0, err, nil} })
	c.checkState()
	c.checkContents()
}

// far makes calls at the ends of the offset range: overflowing off+len,
// at and past the filesystem's largest file (maxBytes), and Seek there;
// whatever they grow is truncated back and the offset restored.
func (c *osCompare) far() {
	const maxInt64 = 1<<63 - 1
	size := c.size
	pos, _ := c.osf.Seek(0, io.SeekCurrent)
	switch c.rng.IntN(4) {
	case 0:
		for _, off := range []int64{1 << 40, c.maxBytes - 1, c.maxBytes, c.maxBytes + 1, maxInt64 - 50, maxInt64} {
			if off > 0 {
				c.readAtAt(off, 100)
			}
		}
	case 1:
		c.writeAtAt(maxInt64-50, 100) // off+len overflows
		if c.maxBytes < maxInt64-100 && c.e.maxFileSize() >= c.maxBytes {
			// (HostMmap serves files up to 2 TiB, less than the host's
			// largest: its limit is row B3's.)
			c.writeAtAt(c.maxBytes-10, 100) // crosses the largest file: short
			c.writeAtAt(c.maxBytes, 100)
			c.writeAtAt(c.maxBytes+1, 100)
		}
		c.checkState()
		c.truncateTo(size)
	case 2:
		for _, off := range []int64{c.maxBytes, c.maxBytes + 1, maxInt64} {
			if off > 0 {
				c.seekTo(off, io.SeekStart)
				c.checkState()
			}
		}
		c.seekTo(maxInt64, io.SeekCurrent)
		c.seekTo(maxInt64, io.SeekEnd)
		c.seekTo(pos, io.SeekStart)
	default:
		if !c.alloc {
			return
		}
		c.allocateAt(unix.FALLOC_FL_KEEP_SIZE, maxInt64-50, 100)
		c.allocateAt(0, maxInt64-50, 100)
		if c.maxBytes < maxInt64-8192 && c.e.maxFileSize() >= c.maxBytes {
			c.allocateAt(unix.FALLOC_FL_KEEP_SIZE, c.maxBytes-4096, 8192)
			c.allocateAt(0, c.maxBytes-4096, 8192)
		}
		c.checkState()
		c.truncateTo(size)
	}
}
