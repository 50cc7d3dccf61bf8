//go:build linux

package engine

import (
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCompareWithOSFileHandles is TestCompareWithOSFile with three handles
// on each side's one file, opened with different flags: each call picks a
// handle index and runs on handle i of both sides. The engine shares one
// cache entry between the handles of a file, the kernel one inode, so a
// write through one handle must show through the others at once; a handle
// is closed and reopened while the others stay open; and Engine.Submit
// batches mix reads and writes across the handles (run one by one with
// ReadAt/WriteAt on the os side). After each call every handle's offset
// and Stat().Size() are compared, the whole contents every few calls.
//
// Normalized as in TestCompareWithOSFile, Truncate on a handle not open
// for writing must fail with EBADF (File's doc), and where os.File answers a call
// of zero bytes without a system call the os side makes the call (File
// answers as the system call would: EBADF on a handle not opened for it).
// On a closed handle every call must fail with fs.ErrClosed on both sides,
// also those os.File answers without the descriptor.
//
// Environment: RINGFS_OSCOMPARE_SEED and RINGFS_OSCOMPARE_OPS, as for
// TestCompareWithOSFile (default 1200 calls per mode × flag set).
func TestCompareWithOSFileHandles(t *testing.T) {
	checkLeaks(t)
	base := ocSeed(t, 0x05c0de)
	ops := envInt(t, "RINGFS_OSCOMPARE_OPS", 1200)
	t.Logf("seed %d (RINGFS_OSCOMPARE_SEED; mode i uses seed+i), %d calls per run", base, ops)
	modes := ocModes
	flagSets := []struct {
		name  string
		flags [3]int
	}{
		{"rdwr,append,rdonly", [3]int{os.O_RDWR, os.O_RDWR | os.O_APPEND, os.O_RDONLY}},
		{"rdwr,wronly,sync", [3]int{os.O_RDWR, os.O_WRONLY, os.O_RDWR | os.O_SYNC}},
		{"dsync,wronly-append,rdwr", [3]int{os.O_RDWR | unix.O_DSYNC, os.O_WRONLY | os.O_APPEND, os.O_RDWR}},
	}
	for mi, mode := range modes {
		for fi, set := range flagSets {
			t.Run(mode.name+"/"+set.name, func(t *testing.T) {
				// Streams 16+: other sequences than TestCompareWithOSFile's.
				c := newMultiCompare(t, base+uint64(mi), 16+uint64(fi), mode.name, mode.opts, set.name, set.flags)
				c.run(ops)
				c.finish()
			})
		}
	}
}

// multiCompare runs one sequence over three handles a side. The embedded
// osCompare holds the seed, the log, the size and the offset, length and
// data pickers; its handle fields stay nil, and of its methods only the
// pickers are called.
type multiCompare struct {
	osCompare
	flagv  [3]int
	osf    [3]*os.File
	ef     [3]*File
	closed [3]bool
	// hostCurrent: the engine's host file must match whenever the contents are
	// compared (Writethrough, Shared: writes reach the host before returning).
	hostCurrent bool
}

func newMultiCompare(t *testing.T, seed, stream uint64, mode string, opts Options, set string, flags [3]int) *multiCompare {
	dir := t.TempDir()
	c := &multiCompare{
		osCompare: osCompare{
			t: t, seed: seed, mode: mode, flags: set,
			rng:   rand.New(rand.NewPCG(seed, stream)),
			pathA: filepath.Join(dir, "a"), pathB: filepath.Join(dir, "b"),
		},
		flagv:       flags,
		hostCurrent: opts.Mode == Writethrough || opts.Mode == Shared,
	}
	initial := pattern(1+c.rng.IntN(12<<10), seed, 1<<40+stream)
	writeHost(t, c.pathA, initial)
	writeHost(t, c.pathB, initial)
	c.maxBytes, c.alloc = ocProbe(t, dir)
	c.e = newEngine(t, opts)
	for i, flag := range flags {
		f, err := os.OpenFile(c.pathA, flag, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		c.osf[i] = f
		t.Cleanup(func() { c.osf[i].Close() }) // the handle open at the end
		c.ef[i] = openFile(t, c.e, c.pathB, flag)
	}
	c.size = int64(len(initial))
	c.checkState()
	return c
}

// fail reports a difference with everything needed to replay it.
func (c *multiCompare) fail(format string, args ...any) {
	c.t.Helper()
	c.t.Fatalf("seed %d (RINGFS_OSCOMPARE_SEED=%d for the first mode), mode %s, flags %s (h0 %#x, h1 %#x, h2 %#x), after %d calls: %s\nlast calls (hN = handle N; data = pattern(len, seed, tag)):\n%s",
		c.seed, c.seed, c.mode, c.flags, c.flagv[0], c.flagv[1], c.flagv[2], len(c.log), fmt.Sprintf(format, args...), tail(c.log, 30))
}

// ocDiff says how two answers differ, or "" when they match.
func ocDiff(o, g ocRes) string {
	switch {
	case o.n != g.n, ocClass(o.err) != ocClass(g.err):
		return fmt.Sprintf("engine %d, %v; os.File %d, %v", g.n, g.err, o.n, o.err)
	case o.n > 0 && o.data != nil:
		if i := diffAt(o.data[:o.n], g.data[:g.n]); i >= 0 {
			return fmt.Sprintf("bytes read differ first at %d (engine %#x, os.File %#x)", i, g.data[i], o.data[i])
		}
	}
	return ""
}

func (c *multiCompare) step(desc string, osCall, engCall func() ocRes) {
	c.t.Helper()
	o, g := osCall(), engCall()
	c.log = append(c.log, fmt.Sprintf("%s -> os %v | engine %v", desc, o, g))
	if d := ocDiff(o, g); d != "" {
		c.fail("%s: %s", desc, d)
	}
}

// ocRaw runs a system call on f's descriptor: the os side of a call of
// zero bytes, which os.File answers without one.
func ocRaw(f *os.File, call func(fd int) (int, error)) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var cerr error
	if err := rc.Control(func(fd uintptr) { n, cerr = call(int(fd)) }); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, &fs.PathError{Op: "syscall", Path: f.Name(), Err: cerr}
	}
	return n, nil
}

// closedOS is the os side's answer on a closed handle to a call os.File
// answers without reaching the descriptor (zero bytes, a negative offset,
// WriteAt in append mode; ocFallocate's RawConn): fs.ErrClosed, as
// os.File answers every call that reaches it.
func (c *multiCompare) closedOS(i int) error {
	return &fs.PathError{Op: "use", Path: c.osf[i].Name(), Err: fs.ErrClosed}
}

func (c *multiCompare) osReadAt(i int, p []byte, off int64) (int, error) {
	switch {
	case c.closed[i] && (len(p) == 0 || off < 0):
		return 0, c.closedOS(i)
	case len(p) == 0 && off >= 0:
		return ocRaw(c.osf[i], func(fd int) (int, error) { return unix.Pread(fd, p, off) })
	}
	return c.osf[i].ReadAt(p, off)
}

func (c *multiCompare) osWriteAt(i int, p []byte, off int64) (int, error) {
	appendMode := c.flagv[i]&os.O_APPEND != 0
	switch {
	case c.closed[i] && (len(p) == 0 || off < 0 || appendMode):
		return 0, c.closedOS(i)
	case len(p) == 0 && off >= 0 && !appendMode:
		return ocRaw(c.osf[i], func(fd int) (int, error) { return unix.Pwrite(fd, p, off) })
	case c.closed[i]:
		return c.osf[i].WriteAt(p, off) // ocWriteAt's RawConn does not say fs.ErrClosed
	}
	return ocWriteAt(c.osf[i], appendMode, p, off)
}

func (c *multiCompare) osRead(i int, p []byte) (int, error) {
	switch {
	case len(p) > 0:
		return c.osf[i].Read(p)
	case c.closed[i]:
		return 0, c.closedOS(i)
	}
	return ocRaw(c.osf[i], func(fd int) (int, error) { return unix.Read(fd, p) })
}

func (c *multiCompare) osWrite(i int, p []byte) (int, error) {
	switch {
	case len(p) > 0:
		return c.osf[i].Write(p)
	case c.closed[i]:
		return 0, c.closedOS(i)
	}
	return ocRaw(c.osf[i], func(fd int) (int, error) { return unix.Write(fd, p) })
}

func (c *multiCompare) osAllocate(i int, mode uint32, off, length int64) error {
	if c.closed[i] {
		return c.closedOS(i)
	}
	return ocFallocate(c.osf[i], mode, off, length)
}

// checkState compares every handle's offset (fs.ErrClosed on both sides
// for a closed one) and the size each open handle reports.
func (c *multiCompare) checkState() {
	c.t.Helper()
	size := int64(-1)
	for i := range c.osf {
		op, oerr := c.osf[i].Seek(0, io.SeekCurrent)
		ep, eerr := c.ef[i].Seek(0, io.SeekCurrent)
		if op != ep || ocClass(oerr) != ocClass(eerr) {
			c.fail("h%d offset %d (%v), os.File %d (%v)", i, ep, eerr, op, oerr)
		}
		if c.closed[i] {
			continue
		}
		oi, oerr := c.osf[i].Stat()
		ei, eerr := c.ef[i].Stat()
		if oerr != nil || eerr != nil {
			c.fail("h%d Stat: engine %v, os.File %v", i, eerr, oerr)
		}
		if oi.Size() != ei.Size() {
			c.fail("h%d size %d, os.File %d", i, ei.Size(), oi.Size())
		}
		size = oi.Size()
	}
	c.size = size // one handle at least is open
}

// checkContents compares the whole files: the engine's through an open
// readable handle (or a new O_RDONLY one when there is none; in Exclusive
// mode the host may be behind), and the host file too where every write
// reaches it before returning.
func (c *multiCompare) checkContents() {
	c.t.Helper()
	want := readHost(c.t, c.pathA)
	var f *File
	for i := range c.ef {
		if !c.closed[i] && c.flagv[i]&os.O_WRONLY == 0 {
			f = c.ef[i]
			break
		}
	}
	if f == nil {
		tmp, err := c.e.Open(c.pathB, os.O_RDONLY, 0)
		if err != nil {
			c.fail("Open(O_RDONLY) to read the contents: %v", err)
		}
		defer func() {
			if err := tmp.Close(); err != nil {
				c.fail("Close of the O_RDONLY handle: %v", err)
			}
		}()
		f = tmp
	}
	got := make([]byte, c.size)
	n, err := f.ReadAt(got, 0)
	if n != len(got) || (err != nil && err != io.EOF) {
		c.fail("ReadAt of the whole file (%d bytes): %d, %v", len(got), n, err)
	}
	if i := diffAt(got, want); i >= 0 {
		c.fail("contents differ first at %d (engine %d bytes, os.File %d bytes)", i, len(got), len(want))
	}
	if c.hostCurrent {
		if host := readHost(c.t, c.pathB); diffAt(host, want) >= 0 {
			c.fail("engine's host file differs first at %d (%d bytes, os.File's %d bytes)", diffAt(host, want), len(host), len(want))
		}
	}
}

func (c *multiCompare) run(ops int) {
	table := []ocOp[func(int)]{
		{16, c.readAt},
		{16, c.writeAt},
		{10, c.read},
		{10, c.write},
		{8, c.seek},
		{3, c.seekExtent},
		{6, c.truncate},
		{2, c.stat},
		{4, c.allocate},
		{2, c.sync},
		{3, c.closeOrReopen},
		{10, func(int) { c.submit() }},
	}
	for n := 0; n < ops; n++ {
		fn, i := ocPick(c.rng, table), c.rng.IntN(3)
		if c.closed[i] && c.rng.IntN(3) == 0 {
			c.reopen(i) // a closed handle stays so for a few calls
		}
		fn(i)
		c.checkState()
		if n%25 == 24 {
			c.checkContents()
		}
	}
	c.checkContents()
}

// finish closes the open handles and the engine, then compares the host
// files: what the engine wrote back must be what the kernel has.
func (c *multiCompare) finish() {
	c.t.Helper()
	for i := range c.ef {
		if !c.closed[i] {
			c.closeHandle(i)
		}
	}
	if err := c.e.Close(); err != nil {
		c.fail("Engine.Close: %v", err)
	}
	a, b := readHost(c.t, c.pathA), readHost(c.t, c.pathB)
	if i := diffAt(b, a); i >= 0 {
		c.fail("host files differ after Engine.Close first at %d (engine's %d bytes, os.File's %d bytes)", i, len(b), len(a))
	}
	c.t.Logf("%d calls, final size %d, fallocate %v", len(c.log), len(a), c.alloc)
}

func (c *multiCompare) readAt(i int) {
	off, n := c.offset(), c.length()
	po, pe := make([]byte, n), make([]byte, n)
	c.step(fmt.Sprintf("h%d ReadAt(len=%d, off=%d)", i, n, off),
		func() ocRes { m, err := c.osReadAt(i, po, off); return ocRes{int64(m), err, po} },
		func() ocRes { m, err := c.ef[i].ReadAt(pe, off); return ocRes{int64(m), err, pe} })
}

func (c *multiCompare) writeAt(i int) {
	off := c.offset()
	p, tag := c.data(c.length())
	c.step(fmt.Sprintf("h%d WriteAt(len=%d tag=%d, off=%d)", i, len(p), tag, off),
		func() ocRes { m, err := c.osWriteAt(i, p, off); return ocRes{int64(m), err, nil} },
		func() ocRes { m, err := c.ef[i].WriteAt(p, off); return ocRes{int64(m), err, nil} })
}

func (c *multiCompare) read(i int) {
	n := c.length()
	po, pe := make([]byte, n), make([]byte, n)
	c.step(fmt.Sprintf("h%d Read(len=%d)", i, n),
		func() ocRes { m, err := c.osRead(i, po); return ocRes{int64(m), err, po} },
		func() ocRes { m, err := c.ef[i].Read(pe); return ocRes{int64(m), err, pe} })
}

func (c *multiCompare) write(i int) {
	p, tag := c.data(c.length())
	c.step(fmt.Sprintf("h%d Write(len=%d tag=%d)", i, len(p), tag),
		func() ocRes { m, err := c.osWrite(i, p); return ocRes{int64(m), err, nil} },
		func() ocRes { m, err := c.ef[i].Write(p); return ocRes{int64(m), err, nil} })
}

func (c *multiCompare) seekTo(i int, off int64, whence int) {
	c.t.Helper()
	c.step(fmt.Sprintf("h%d Seek(%d, %d)", i, off, whence),
		func() ocRes { r, err := c.osf[i].Seek(off, whence); return ocRes{r, err, nil} },
		func() ocRes { r, err := c.ef[i].Seek(off, whence); return ocRes{r, err, nil} })
}

func (c *multiCompare) seek(i int) {
	switch c.rng.IntN(3) {
	case io.SeekStart:
		c.seekTo(i, c.offset(), io.SeekStart)
	case io.SeekCurrent:
		c.seekTo(i, c.rng.Int64N(2*c.size+8192)-c.size-4096, io.SeekCurrent)
	default:
		c.seekTo(i, c.rng.Int64N(c.size+8192)-c.size-4096, io.SeekEnd)
	}
}

// seekExtent checks SEEK_DATA or SEEK_HOLE as TestCompareWithOSFile does:
// at or past EOF (and on a closed handle) the answers must match, below 0
// the engine answers EINVAL (File's doc), below EOF its answer is checked
// against the contents and the os handle then moves there.
func (c *multiCompare) seekExtent(i int) {
	off := c.offset()
	whence := SeekData
	if c.rng.IntN(2) == 0 {
		whence = SeekHole
	}
	if c.closed[i] || off >= c.size {
		c.seekTo(i, off, whence)
		return
	}
	desc := fmt.Sprintf("h%d Seek(%d, %d)", i, off, whence)
	r, err := c.ef[i].Seek(off, whence)
	c.log = append(c.log, fmt.Sprintf("%s -> engine %d %s", desc, r, ocClass(err)))
	if off < 0 {
		if ocClass(err) != "EINVAL" {
			c.fail("%s: engine %d, %v; want EINVAL", desc, r, err)
		}
		return
	}
	host := readHost(c.t, c.pathA) // through no handle: h[i] may be write-only
	zeros := func(a, b int64) bool { return firstNonzeroByte(host[a:b]) < 0 }
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
	if _, err := c.osf[i].Seek(r, io.SeekStart); err != nil {
		c.fail("os Seek(%d): %v", r, err)
	}
}

func (c *multiCompare) truncate(i int) {
	var size int64
	switch k := c.rng.IntN(10); {
	case k < 4 || c.size > 64<<10: // down, and always once the file is large
		size = c.rng.Int64N(c.size + 1)
	case k < 9:
		size = c.size + c.rng.Int64N(16<<10)
	default:
		size = c.offset() // sometimes negative: EINVAL
	}
	c.step(fmt.Sprintf("h%d Truncate(%d)", i, size),
		func() ocRes {
			err := c.osf[i].Truncate(size)
			if size >= 0 && c.flagv[i]&unix.O_ACCMODE == os.O_RDONLY && ocClass(err) == "EINVAL" {
				// Documented on File: EBADF, as every write on such a
				// handle, where ftruncate answers EINVAL.
				err = &fs.PathError{Op: "truncate", Path: c.pathA, Err: unix.EBADF}
			}
			return ocRes{0, err, nil}
		},
		func() ocRes { return ocRes{0, c.ef[i].Truncate(size), nil} })
}

func (c *multiCompare) stat(i int) {
	c.step(fmt.Sprintf("h%d Stat()", i),
		func() ocRes { fi, err := c.osf[i].Stat(); return ocRes{ocSize(fi), err, nil} },
		func() ocRes { fi, err := c.ef[i].Stat(); return ocRes{ocSize(fi), err, nil} })
}

func (c *multiCompare) allocate(i int) {
	if !c.alloc {
		return
	}
	mode := uint32(0)
	if c.rng.IntN(2) == 0 {
		mode = unix.FALLOC_FL_KEEP_SIZE
	}
	off, length := c.offset(), int64(c.length()) // zero length: EINVAL
	c.step(fmt.Sprintf("h%d Allocate(%#x, %d, %d)", i, mode, off, length),
		func() ocRes { return ocRes{0, c.osAllocate(i, mode, off, length), nil} },
		func() ocRes { return ocRes{0, c.ef[i].Allocate(mode, off, length), nil} })
}

func (c *multiCompare) sync(i int) {
	c.step(fmt.Sprintf("h%d Sync()", i),
		func() ocRes { return ocRes{0, c.osf[i].Sync(), nil} },
		func() ocRes { return ocRes{0, c.ef[i].Sync(), nil} })
}

func (c *multiCompare) closeHandle(i int) {
	c.t.Helper()
	c.step(fmt.Sprintf("h%d Close()", i),
		func() ocRes { return ocRes{0, c.osf[i].Close(), nil} },
		func() ocRes { return ocRes{0, c.ef[i].Close(), nil} })
	c.closed[i] = true
}

// closeOrReopen closes handle i (and sometimes reopens it at once), or
// reopens it when it is closed. The other handles stay open (two of three
// may be closed, never the last: the engine's last Close, which writes
// back, is TestCompareWithOSFile's), so the cache entry outlives the
// handle. Until it is reopened, a closed handle's calls must fail with
// fs.ErrClosed on both sides.
func (c *multiCompare) closeOrReopen(i int) {
	if c.closed[i] {
		if c.rng.IntN(4) == 0 {
			c.closeHandle(i) // a second Close: fs.ErrClosed
		}
		c.reopen(i)
		return
	}
	open := 0
	for _, cl := range c.closed {
		if !cl {
			open++
		}
	}
	if open == 1 {
		return
	}
	c.closeHandle(i)
	if c.rng.IntN(2) == 0 {
		c.reopen(i)
	}
}

// reopen opens handle i again with its flags, sometimes with O_TRUNC,
// which truncates under the other handles (on Linux for O_RDONLY too).
func (c *multiCompare) reopen(i int) {
	flag := c.flagv[i]
	if c.rng.IntN(10) == 0 {
		flag |= os.O_TRUNC
	}
	var oerr, eerr error
	c.step(fmt.Sprintf("h%d Open(%#x)", i, flag),
		func() ocRes { c.osf[i], oerr = os.OpenFile(c.pathA, flag, 0o644); return ocRes{0, oerr, nil} },
		func() ocRes { c.ef[i], eerr = c.e.Open(c.pathB, flag, 0o644); return ocRes{0, eerr, nil} })
	if oerr != nil || eerr != nil {
		c.fail("h%d Open(%#x): engine %v, os.File %v", i, flag, eerr, oerr)
	}
	c.closed[i] = false
	c.checkState()
	c.checkContents()
}

// submit runs a batch of 1 to 8 reads and writes on random handles:
// Engine.Submit on one side, ReadAt/WriteAt one by one on the other. The
// ops of a batch have no order, so no write meets another op's range, and
// a write that grows the file shares no batch with a read past the size
// (which would read zeros or EOF by the order).
func (c *multiCompare) submit() {
	type span struct {
		lo, hi int64
		write  bool
	}
	conflict := func(spans []span, a span) bool {
		for _, b := range spans {
			if (a.write || b.write) && a.lo < b.hi && b.lo < a.hi {
				return true
			}
			if a.write != b.write && max(a.hi, b.hi) > c.size && min(a.hi, b.hi) > c.size {
				return true
			}
		}
		return false
	}
	want := 1 + c.rng.IntN(8)
	var (
		spans []span
		hs    []int
		eops  []Op
		descs []string
	)
	for try := 0; len(eops) < want && try < 4*want; try++ {
		i, write, off, n := c.rng.IntN(3), c.rng.IntN(2) == 0, c.offset(), c.length()
		s := span{off, off + int64(n), write}
		if conflict(spans, s) {
			continue
		}
		op := Op{File: c.ef[i], Write: write, Off: off}
		if write {
			tag := uint64(len(c.log))<<8 | uint64(len(eops))
			op.Buf = pattern(n, c.seed, tag)
			descs = append(descs, fmt.Sprintf("h%d W len=%d tag=%d off=%d", i, n, tag, off))
		} else {
			op.Buf = make([]byte, n)
			descs = append(descs, fmt.Sprintf("h%d R len=%d off=%d", i, n, off))
		}
		spans, hs, eops = append(spans, s), append(hs, i), append(eops, op)
	}
	ores := make([]ocRes, len(eops))
	for k, op := range eops {
		if op.Write {
			m, err := c.osWriteAt(hs[k], op.Buf, op.Off)
			ores[k] = ocRes{int64(m), err, nil}
		} else {
			p := make([]byte, len(op.Buf))
			m, err := c.osReadAt(hs[k], p, op.Off)
			ores[k] = ocRes{int64(m), err, p}
		}
	}
	serr := c.e.Submit(eops)
	var ostr, estr []string
	diff := ""
	for k, op := range eops {
		g := ocRes{int64(op.N), op.Err, nil}
		if !op.Write {
			g.data = op.Buf
		}
		ostr, estr = append(ostr, ores[k].String()), append(estr, g.String())
		if d := ocDiff(ores[k], g); d != "" && diff == "" {
			diff = fmt.Sprintf("op %d (%s): %s", k, descs[k], d)
		}
	}
	desc := fmt.Sprintf("Submit[%s]", strings.Join(descs, "; "))
	c.log = append(c.log, fmt.Sprintf("%s -> os [%s] | engine [%s] %v", desc, strings.Join(ostr, ", "), strings.Join(estr, ", "), serr))
	if serr != nil {
		c.fail("%s: %v", desc, serr)
	}
	if diff != "" {
		c.fail("%s: %s", desc, diff)
	}
}
