//go:build linux

package engine

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
)

// TestCompareWithOSFileDirect is TestCompareWithOSFile with O_DIRECT: each
// side holds two handles on its one file, a buffered one (O_RDWR) and a
// direct one (O_RDWR|O_DIRECT), os.File handles on file A and engine
// handles on file B, and one seeded random sequence of calls runs on both
// sides. The direct handles get page-aligned ReadAt and WriteAt only
// (aligned buffers, offsets and lengths; reads crossing an end of file
// that is not a multiple of the page, and reads wholly past it); the
// buffered handles get ReadAt, WriteAt, Truncate and Sync of any size and
// offset, so that the engine's cache holds dirty partial pages that the
// direct handle must see (reads) or replace (writes), as the kernel does
// for os.File: a direct read of a range written through the page cache
// sees the write (the kernel writes the range back first), a direct write
// invalidates the cached pages it covers. Every answer must be the same
// (n, error class as ocClass names it, the bytes read), the size as Stat
// on each handle answers after every call, and the whole contents every
// few calls and after Engine.Close (the host files).
//
// A second part per mode (subtests .../unaligned) adds direct calls
// made on the engine only that are not aligned, checked against the
// documentation (doc.go, "Paths of a read or write"): a direct read with
// an unaligned buffer, offset or length is bounced and returns what a
// buffered read of the range returns (the os buffered handle answers);
// a direct write with an unaligned buffer is bounced, and one whose
// offset or length the host's direct I/O alignment refuses fails with
// EINVAL and changes nothing (the os direct handle makes the same write
// from an aligned copy of the buffer, so the kernel answers what it
// accepts; the kernel may write part of a write it refuses at an aligned
// offset, the engine must not: see checkRefusedWrite).
//
// Environment:
//
//	RINGFS_OSCOMPARE_SEED=n  seed of every mode (mode i draws from PCG
//	                         stream i, its unaligned part from 100+i)
//	RINGFS_OSCOMPARE_OPS=n   calls per mode (default 1500; the unaligned
//	                         part makes a third as many)
func TestCompareWithOSFileDirect(t *testing.T) {
	checkLeaks(t)
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skipf("%s takes no O_DIRECT (tmpfs before Linux 6.6 refuses it): nothing to compare", dir)
	}
	base := ocSeed(t, 0xd1ec7)
	ops := envInt(t, "RINGFS_OSCOMPARE_OPS", 1500)
	probe := dir + "/.dioalign"
	writeHost(t, probe, nil)
	align := dioAlign(probe)
	os.Remove(probe)
	t.Logf("seed %d (RINGFS_OSCOMPARE_SEED, every mode), %d calls per mode, %d in the unaligned part; host direct I/O offset alignment %d",
		base, ops, ops/3, align)
	modes := []struct {
		name string
		opts Options
	}{
		{"exclusive", Options{Mode: Exclusive}},
		{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: 64 << 10}},
		{"writethrough", Options{Mode: Writethrough}},
		{"shared", Options{Mode: Shared}},
		{"exclusive/directio", Options{Mode: Exclusive, DirectIO: true}},
		{"exclusive/hostmmap", Options{Mode: Exclusive, HostMmap: true}},
	}
	for mi, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			c := newOCDCompare(t, base, uint64(mi), mode.name, mode.opts, false, align)
			c.run(ops)
			c.finish()
		})
		t.Run(mode.name+"/unaligned", func(t *testing.T) {
			c := newOCDCompare(t, base, 100+uint64(mi), mode.name+"/unaligned", mode.opts, true, align)
			c.run(max(ops/3, 1))
			c.finish()
		})
	}
}

// ocdCompare is one run: the buffered pair of handles is osCompare's
// (osf, ef), the direct pair is added here. Log lines name the handle:
// "buf" (osf and ef) or "dio" (osd and ed).
type ocdCompare struct {
	*osCompare
	osd       *os.File // O_RDWR|O_DIRECT on file A
	ed        *File    // O_RDWR|O_DIRECT on file B
	unaligned bool     // add unaligned direct calls on the engine
	align     int64    // the host's direct I/O offset alignment (statx), 0 if unknown
	partial   int      // refused writes the kernel wrote part of on one side
}

func newOCDCompare(t *testing.T, seed, stream uint64, mode string, opts Options, unaligned bool, align int64) *ocdCompare {
	oc := newOSCompare(t, seed, stream, mode, opts, "buf O_RDWR + dio O_RDWR|O_DIRECT", os.O_RDWR)
	c := &ocdCompare{osCompare: oc, unaligned: unaligned, align: align}
	// The initial contents, for a replay (newOSCompare's choice).
	c.log = append(c.log, fmt.Sprintf("initial contents of both files: pattern(%d, seed %d, tag %d); stream %d",
		c.size, seed, uint64(1<<40)+stream, stream))
	var err error
	if c.osd, err = os.OpenFile(c.pathA, os.O_RDWR|syscall.O_DIRECT, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.osd.Close() }) // a second Close is harmless
	c.ed = openFile(t, c.e, c.pathB, os.O_RDWR|syscall.O_DIRECT)
	c.checkSizes()
	return c
}

// checkSizes compares the size Stat reports on every handle (and the
// buffered handles' offsets, which no call moves).
func (c *ocdCompare) checkSizes() {
	c.t.Helper()
	c.checkState()
	oi, oerr := c.osd.Stat()
	ei, eerr := c.ed.Stat()
	if oerr != nil || eerr != nil {
		c.fail("dio Stat: engine %v, os.File %v", eerr, oerr)
	}
	if oi.Size() != c.size || ei.Size() != c.size {
		c.fail("size through the direct handles: engine %d, os.File %d; buffered handles %d", ei.Size(), oi.Size(), c.size)
	}
}

// ocdBuf returns n bytes whose address is shift bytes past a page
// boundary, filled with 0xEE (bytes a read does not return stay so).
func ocdBuf(n, shift int) []byte {
	p := alignedBuf(n + shift)[shift:]
	for i := range p {
		p[i] = 0xEE
	}
	return p
}

// dOffset picks a page-aligned offset for a direct call: inside the
// file, at the page holding its end or a page or two below (a read from
// there crosses the end; the kernel's read is short when the size is not
// a multiple of the page), or wholly past the end.
func (c *ocdCompare) dOffset() int64 {
	r, size := c.rng, c.size
	pages := (size + 4095) / 4096 // pages holding data
	switch k := r.IntN(100); {
	case k < 35:
		return r.Int64N(pages+1) * 4096
	case k < 65:
		return max(0, size/4096-r.Int64N(3)) * 4096
	case k < 85:
		return (pages + r.Int64N(4)) * 4096
	default:
		return 0
	}
}

// dLength picks a length in whole pages.
func (c *ocdCompare) dLength() int {
	switch k := c.rng.IntN(100); {
	case k < 50:
		return 4096
	case k < 85:
		return 4096 * (2 + c.rng.IntN(3))
	default:
		return 4096 * (5 + c.rng.IntN(12))
	}
}

// bLength picks a length for a buffered call: mostly small and
// unaligned, so cached pages are partly dirty.
func (c *ocdCompare) bLength() int {
	switch k := c.rng.IntN(100); {
	case k < 4:
		return 0
	case k < 45:
		return 1 + c.rng.IntN(64)
	case k < 80:
		return 1 + c.rng.IntN(4096)
	default:
		return 1 + c.rng.IntN(12000)
	}
}

func (c *ocdCompare) run(ops int) {
	table := []ocOp[func()]{
		{20, c.dRead},
		{14, c.dWrite},
		{2, c.dReadAll},
		{14, c.bRead},
		{24, c.bWrite},
		{7, c.bTruncate},
		{3, c.bSync},
		{3, c.stat},
	}
	if c.unaligned {
		table = append(table, ocOp[func()]{14, c.uRead}, ocOp[func()]{12, c.uWrite})
	}
	for i := 0; i < ops; i++ {
		ocPick(c.rng, table)()
		c.checkSizes()
		if i%8 == 7 {
			c.checkContents()
		}
	}
	c.checkContents()
}

// finish closes the direct handles, then does what osCompare.finish
// does: closes the buffered ones and the engine and compares the host
// files.
func (c *ocdCompare) finish() {
	c.t.Helper()
	c.step("dio Close()",
		func() ocRes { return ocRes{0, c.osd.Close(), nil} },
		func() ocRes { return ocRes{0, c.ed.Close(), nil} })
	c.osCompare.finish()
	if c.partial > 0 {
		c.t.Logf("%d refused direct writes were partly written by the kernel on one side only (checkRefusedWrite)", c.partial)
	}
}

// ---- calls on the direct handles: aligned ----

func (c *ocdCompare) dRead() { c.dReadAt(c.dOffset(), c.dLength()) }

// dReadAll reads the whole file through the direct handles, the length
// rounded up to the page (a short read at the end).
func (c *ocdCompare) dReadAll() { c.dReadAt(0, int(max(4096, (c.size+4095)&^4095))) }

func (c *ocdCompare) dReadAt(off int64, n int) {
	c.t.Helper()
	po, pe := ocdBuf(n, 0), ocdBuf(n, 0)
	c.step(fmt.Sprintf("dio ReadAt(len=%d, off=%d)", n, off),
		func() ocRes { m, err := c.osd.ReadAt(po, off); return ocRes{int64(m), err, po} },
		func() ocRes { m, err := c.ed.ReadAt(pe, off); return ocRes{int64(m), err, pe} })
}

func (c *ocdCompare) dWrite() {
	off := c.dOffset()
	if c.size > 192<<10 { // keep the file small: no growth once large
		off = c.rng.Int64N(c.size/4096+1) * 4096
	}
	c.dWriteAt(off, c.dLength())
}

func (c *ocdCompare) dWriteAt(off int64, n int) {
	c.t.Helper()
	tag := uint64(len(c.log))
	p := ocdBuf(n, 0)
	fillData(p, c.seed, tag)
	c.step(fmt.Sprintf("dio WriteAt(len=%d tag=%d, off=%d)", n, tag, off),
		func() ocRes { m, err := ocWriteAt(c.osd, false, p, off); return ocRes{int64(m), err, nil} },
		func() ocRes { m, err := c.ed.WriteAt(p, off); return ocRes{int64(m), err, nil} })
}

// ---- calls on the buffered handles ----

func (c *ocdCompare) bRead() {
	off, n := c.offset(), c.bLength()
	po, pe := ocdBuf(n, 0), ocdBuf(n, 0)
	c.step(fmt.Sprintf("buf ReadAt(len=%d, off=%d)", n, off),
		func() ocRes { m, err := c.osf.ReadAt(po, off); return ocRes{int64(m), err, po} },
		func() ocRes { m, err := c.ef.ReadAt(pe, off); return ocRes{int64(m), err, pe} })
}

func (c *ocdCompare) bWrite() {
	off, n := c.offset(), c.bLength()
	if c.size > 192<<10 && off > c.size {
		off = c.rng.Int64N(c.size + 1)
	}
	p, tag := c.data(n)
	c.step(fmt.Sprintf("buf WriteAt(len=%d tag=%d, off=%d)", n, tag, off),
		func() ocRes { m, err := ocWriteAt(c.osf, false, p, off); return ocRes{int64(m), err, nil} },
		func() ocRes { m, err := c.ef.WriteAt(p, off); return ocRes{int64(m), err, nil} })
}

func (c *ocdCompare) bTruncate() {
	var size int64
	r := c.rng
	switch k := r.IntN(10); {
	case k < 4 || c.size > 160<<10:
		size = r.Int64N(c.size + 1)
	case k < 7:
		size = c.size + r.Int64N(16<<10)
	default: // at, just below or just above a page boundary
		size = max(0, r.Int64N(c.size/4096+3)*4096+int64(r.IntN(3))-1)
	}
	c.step(fmt.Sprintf("buf Truncate(%d)", size),
		func() ocRes { return ocRes{0, c.osf.Truncate(size), nil} },
		func() ocRes { return ocRes{0, c.ef.Truncate(size), nil} })
}

func (c *ocdCompare) bSync() {
	c.step("buf Sync()",
		func() ocRes { return ocRes{0, c.osf.Sync(), nil} },
		func() ocRes { return ocRes{0, c.ef.Sync(), nil} })
}

func (c *ocdCompare) stat() {
	if c.rng.IntN(2) == 0 {
		c.step("buf Stat()",
			func() ocRes { fi, err := c.osf.Stat(); return ocRes{ocSize(fi), err, nil} },
			func() ocRes { fi, err := c.ef.Stat(); return ocRes{ocSize(fi), err, nil} })
		return
	}
	c.step("dio Stat()",
		func() ocRes { fi, err := c.osd.Stat(); return ocRes{ocSize(fi), err, nil} },
		func() ocRes { fi, err := c.ed.Stat(); return ocRes{ocSize(fi), err, nil} })
}

// ---- unaligned direct calls on the engine ----

// uShift picks a buffer misalignment.
func (c *ocdCompare) uShift() int {
	switch k := c.rng.IntN(6); k {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return 512
	case 3:
		return 4095
	default:
		return c.rng.IntN(4096)
	}
}

// uRead is a direct read of any buffer, offset and length on the engine,
// which must answer what the os buffered handle answers for the range
// (doc.go: unaligned buffers are bounced; so are unaligned offsets and
// lengths, inode.readDirect).
func (c *ocdCompare) uRead() {
	shift := c.uShift()
	off, n := c.offset(), c.length()
	if c.rng.IntN(3) == 0 { // near alignment: an aligned offset or length
		off = c.dOffset()
	}
	po, pe := ocdBuf(n, 0), ocdBuf(n, shift)
	c.step(fmt.Sprintf("dio ReadAt(len=%d, off=%d, buffer at page+%d) engine only; os: buf ReadAt", n, off, shift),
		func() ocRes { m, err := c.osf.ReadAt(po, off); return ocRes{int64(m), err, po} },
		func() ocRes { m, err := c.ed.ReadAt(pe, off); return ocRes{int64(m), err, pe} })
}

// uWrite is a direct write on the engine with a buffer, offset or length
// that is not page-aligned. The os direct handle makes the same write
// from an aligned copy (the kernel refuses an unaligned buffer; the
// engine bounces it), so the kernel says which offsets and lengths its
// direct I/O takes. Beyond being the same answer: a write whose offset
// and length are page-aligned must succeed (bounced), one whose offset
// or length is not a multiple of the host's alignment must fail with
// EINVAL, return no count, and change nothing (the contents are
// compared at once), but for what the kernel writes of it
// (checkRefusedWrite). The host's alignment may be finer than the page
// (512 on ext4 over a disk of 512-byte sectors): the kernel, and so the
// engine, then takes writes aligned to it.
func (c *ocdCompare) uWrite() {
	r := c.rng
	shift := c.uShift()
	off, n := c.dOffset(), c.dLength()
	if c.size > 192<<10 {
		off = r.Int64N(c.size/4096+1) * 4096
	}
	switch r.IntN(4) {
	case 0: // aligned offset and length: only the buffer may be unaligned
		shift = 1 + r.IntN(4095)
	case 1: // off the page by sectors
		off += 512 * int64(r.IntN(8))
		n -= 512 * r.IntN(8)
	case 2: // off by bytes
		off += int64(r.IntN(4096))
	default:
		n = max(1, n-r.IntN(4096))
	}
	tag := uint64(len(c.log))
	pe := ocdBuf(n, shift)
	fillData(pe, c.seed, tag)
	po := ocdBuf(n, 0)
	copy(po, pe)
	// An aligned offset with an unaligned length: the kernel may write
	// the leading extents before it refuses the rest (see
	// checkRefusedWrite).
	prefix := c.align > 0 && off%c.align == 0 && int64(n)%c.align != 0
	var old []byte
	if prefix {
		old = readHost(c.t, c.pathA)
	}
	desc := fmt.Sprintf("dio WriteAt(len=%d tag=%d, off=%d, buffer at page+%d) engine only; os: aligned copy", n, tag, off, shift)
	o, g := c.step(desc,
		func() ocRes { m, err := ocWriteAt(c.osd, false, po, off); return ocRes{int64(m), err, nil} },
		func() ocRes { m, err := c.ed.WriteAt(pe, off); return ocRes{int64(m), err, nil} })
	switch {
	case off%4096 == 0 && n%4096 == 0:
		if g.err != nil || g.n != int64(n) {
			c.fail("%s: %d, %v; want %d, nil (an unaligned buffer is bounced)", desc, g.n, g.err, n)
		}
	case c.align > 0 && (off%c.align != 0 || int64(n)%c.align != 0):
		if ocClass(g.err) != "EINVAL" || g.n != 0 {
			c.fail("%s: %d, %v; want 0, EINVAL (host alignment %d)", desc, g.n, g.err, c.align)
		}
	}
	if o.err != nil {
		c.checkSizes()
		if prefix {
			c.checkRefusedWrite(desc, old, po, off)
		}
		c.checkContents() // refused: nothing changed (or both sides resynced)
	}
}

// checkRefusedWrite checks the files after a direct write at an aligned
// offset with an unaligned length that both sides refused with EINVAL.
// Linux (iomap direct I/O, ext4 and xfs) checks the alignment one extent
// of the file at a time: when the range spans extents, those before the
// unaligned tail are written, and the write still fails with EINVAL, no
// count returned (pwrite(O_DIRECT, 10490 bytes, 0) on a file whose first
// extent is 8 KiB changes bytes [0, 8192) and returns EINVAL). The engine
// refuses such a write before writing (File.directMisaligned) when the
// host states its alignment: then its file must not have changed at all.
// On the os side every byte must be its old byte or the refused write's,
// and the size must not have changed; then the os file is made the
// engine's (a buffered write of the differing bytes, logged) so that the
// comparison goes on.
func (c *ocdCompare) checkRefusedWrite(desc string, old, p []byte, off int64) {
	c.t.Helper()
	eng := make([]byte, c.size)
	if n, err := c.ef.ReadAt(eng, 0); n != len(eng) || (err != nil && err != io.EOF) {
		c.fail("%s: ReadAt of the whole file (%d bytes): %d, %v", desc, len(eng), n, err)
	}
	osb := readHost(c.t, c.pathA)
	for _, side := range []struct {
		who string
		b   []byte
	}{{"engine", eng}, {"os", osb}} {
		if len(side.b) != len(old) {
			c.fail("%s refused, but the %s file's size went from %d to %d", desc, side.who, len(old), len(side.b))
		}
		if side.who == "engine" && c.align > 0 {
			if i := diffAt(side.b, old); i >= 0 {
				c.fail("%s refused, but the engine's file changed first at byte %d", desc, i)
			}
			continue
		}
		for i := range side.b {
			j := int64(i) - off
			if side.b[i] != old[i] && (j < 0 || j >= int64(len(p)) || side.b[i] != p[j]) {
				c.fail("%s refused, but the %s file's byte %d is %#x: neither the old %#x nor the write's", desc, side.who, i, side.b[i], old[i])
			}
		}
	}
	lo := diffAt(eng, osb)
	if lo < 0 {
		return
	}
	hi := len(eng)
	for hi > lo && eng[hi-1] == osb[hi-1] {
		hi--
	}
	c.partial++
	c.log = append(c.log, fmt.Sprintf("  (the kernel wrote part of the refused write on one side: [%d, %d) differ; os file set to the engine's bytes there)", lo, hi))
	if m, err := ocWriteAt(c.osf, false, eng[lo:hi], int64(lo)); m != hi-lo || err != nil {
		c.fail("resync of the os file: %d, %v", m, err)
	}
}
