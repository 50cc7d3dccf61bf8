//go:build linux

package pagecache

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/internal/fuzzbytes"
	"github.com/ringfs/ringfs/uring"
)

// FuzzCache decodes a sequence of operations from the input and runs it
// on one or two files sharing a cache of 16 to 23 pages, so that fills,
// writes and writebacks evict each other's pages all the time. After
// every operation each file's size must equal its model's and the cache's
// invariants must hold; every read must return the model's bytes, and
// after a writeback the host must hold them. `go test` runs the seed
// corpus in testdata/fuzz/FuzzCache; runFuzzCache describes the input.
func FuzzCache(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) { runFuzzCache(t, data) })
}

// TestFuzzCacheInputs runs the driver of FuzzCache on fixed inputs beyond
// the seed corpus: the empty input, a lone byte, inputs of all zeros and
// all ones, and random inputs from a fixed seed, so that every run of the
// tests exercises the decoder and the checks on inputs nobody chose.
func TestFuzzCacheInputs(t *testing.T) {
	full := fuzzHeaderBytes + fuzzMaxOps*fuzzOpBytes
	type input struct {
		name string
		data []byte
	}
	inputs := []input{
		{"nil", nil},
		{"one-byte", []byte{0xff}},
		{"zeros", make([]byte, full)},
		{"ones", bytes.Repeat([]byte{0xff}, full)},
	}
	r := rand.New(rand.NewPCG(1, 0xcace))
	for i := range 50 {
		b := make([]byte, r.IntN(full+fuzzOpBytes))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		inputs = append(inputs, input{fmt.Sprintf("random-%02d", i), b})
	}
	for _, in := range inputs {
		t.Run(in.name, func(t *testing.T) { runFuzzCache(t, in.data) })
	}
}

// fuzzMaxOps bounds the operations decoded from one input, so that one
// input runs in well under a second.
const fuzzMaxOps = 200

// fuzzHeaderBytes is the size of an input's header and fuzzOpBytes that
// of each operation after it (see runFuzzCache).
const (
	fuzzHeaderBytes = 4
	fuzzOpBytes     = 7
)

// fuzzMaxOff caps decoded offsets, so that no file grows past about
// 1 MiB.
const fuzzMaxOff = 1 << 20

// fuzzSizeUnit is the unit of the initial host file sizes in the header:
// not a divisor of the page, so that most sizes end inside a page.
const fuzzSizeUnit = 1537

// fuzzOffset decodes an offset in a file of the given size from a mode
// byte m and a value v. The low two bits of m choose the encoding, so
// that one small mutation moves an offset onto a page boundary or next to
// the end of file:
//
//	0: v itself, a byte in the first 16 pages
//	1: page v%96, moved by (m>>2)-32 bytes
//	2: the size moved by int16(v) bytes
//	3: the end of the size's last page moved by int8(v)%8 pages and
//	   (m>>2)-32 bytes
//
// The result is clamped to [0, fuzzMaxOff].
func fuzzOffset(m byte, v uint16, size int64) int64 {
	var off int64
	switch m & 3 {
	case 0:
		off = int64(v)
	case 1:
		off = int64(v%96)*PageSize + int64(m>>2) - 32
	case 2:
		off = size + int64(int16(v))
	case 3:
		off = (pageEnd(size)+int64(int8(v))%8)*PageSize + int64(m>>2) - 32
	}
	return min(max(off, 0), fuzzMaxOff)
}

// fuzzLength decodes a length of at most 64 KiB and 31 bytes from a mode
// byte m and a value v; the low two bits of m choose the encoding:
//
//	0: v%4097 bytes, at most a page (0 included)
//	1: v%16+1 pages, moved by (m>>2)-32 bytes
//	2: v+1 bytes
//	3: v%64 bytes (0 included)
func fuzzLength(m byte, v uint16) int64 {
	switch m & 3 {
	case 0:
		return int64(v % (PageSize + 1))
	case 1:
		return int64(v%16+1)*PageSize + int64(m>>2) - 32
	case 2:
		return int64(v) + 1
	}
	return int64(v % 64)
}

// The operations, chosen by the low four bits of an operation's first
// byte; reads and writes have more than one code, so that they are most
// of a random sequence.
const (
	fuzzRead      = iota // ReadAt
	fuzzRead2            // ReadAt
	fuzzReadBatch        // Cache.ReadBatch of the range and, half its length further on, of the other file (or this one again)
	fuzzWrite            // WriteAt; variant bit 0: Through, bit 1: Append
	fuzzWrite2
	fuzzWrite3
	fuzzTruncate    // Truncate to the decoded offset
	fuzzAllocate    // Allocate; variant%4: punch, zero range, plain, zero range keeping the size
	fuzzWriteback   // Writeback of the range; variant%3 is the SyncMode
	fuzzSync        // Writeback of the whole file (variant%3 is the SyncMode), then the host is checked
	fuzzInvalidate  // Invalidate the range
	fuzzFlush       // FlushRange
	fuzzReadCached  // ReadCached
	fuzzDirectWrite // DirectWrite of the range widened to whole pages
	fuzzUncached    // SetUncached, toggled
	fuzzReopen      // whole writeback, Release, and NewFile again
)

// fuzzFile is one file of a fuzz run with its host file and model.
type fuzzFile struct {
	h        *hostFile
	f        *File
	m        *model
	uncached bool
}

// runFuzzCache decodes data and runs it. The input starts with a header
// of four bytes:
//
//	0: bit 0: the psync backend (else uring); bit 1: two files (else
//	   one); bits 2-4: pages of cache beyond MinCapacity; bit 5:
//	   MergeGap of two pages; bit 6: DirectWriteback; bit 7: Readahead
//	   of one page
//	1: bit 0: the files have an O_DIRECT descriptor (the input is
//	   skipped where the host's file system refuses O_DIRECT); bit 1:
//	   MaxWrite of one page; bit 2: NoRegister
//	2, 3: the initial sizes of the host files, in units of fuzzSizeUnit
//
// Then come operations of fuzzOpBytes each, at most fuzzMaxOps: a byte
// whose low four bits choose the operation (see fuzzRead and the rest),
// bit 4 the file and the top three bits a variant; an offset (a mode byte
// and a little-endian uint16, see fuzzOffset) and a length (the same, see
// fuzzLength). Operations that need no offset or length ignore them; an
// input that ends inside an operation reads zeros for the rest.
//
// No faults are injected, so every call must succeed. Discard and SetSize
// are not driven: they are for owners that lost dirty data or learned of
// a host changed behind the cache, and the model would have to follow
// the host rather than the calls.
func runFuzzCache(t *testing.T, data []byte) {
	in := fuzzbytes.New(data)
	cfg, cfg1 := in.Byte(), in.Byte()
	sizes := [2]int64{int64(in.Byte()) * fuzzSizeUnit, int64(in.Byte()) * fuzzSizeUnit}
	backend := uring.BackendUring
	if cfg&1 != 0 {
		backend = uring.BackendPsync
	}
	nfiles := 1 + int(cfg>>1&1)
	opts := Options{Capacity: MinCapacity + int64(cfg>>2&7)*PageSize, NoRegister: cfg1&4 != 0}
	if cfg&0x20 != 0 {
		opts.MergeGap = 2 * PageSize
	}
	if cfg&0x40 != 0 {
		opts.DirectWriteback = DefaultDirectWriteback
	}
	if cfg&0x80 != 0 {
		opts.Readahead = PageSize
	}
	if cfg1&2 != 0 {
		opts.MaxWrite = PageSize
	}
	direct := cfg1&1 != 0

	log := &opLog{}
	defer func() {
		if t.Failed() {
			t.Logf("input: go test fuzz v1 []byte(%q)\n"+
				"backend %s, %d files of initial sizes %v, O_DIRECT descriptors %v; capacity %d pages, "+
				"readahead %d, MaxWrite %d, MergeGap %d, DirectWriteback %d, NoRegister %v\n"+
				"%d ops (op offset length size), the last one failing:\n%s",
				data, backend, nfiles, sizes[:nfiles], direct, opts.Capacity/PageSize,
				opts.Readahead, opts.MaxWrite, opts.MergeGap, opts.DirectWriteback, opts.NoRegister,
				len(log.lines), strings.Join(log.lines, "\n"))
		}
	}()

	c := newCache(t, openBackend(t, backend, nil), opts)
	files := make([]*fuzzFile, nfiles)
	for k := range files {
		d := pattern(uint64(k)+1, int(sizes[k]))
		h := newHostFile(t, d, direct)
		files[k] = &fuzzFile{h: h, f: openFile(t, c, h, sizes[k]), m: &model{data: append([]byte(nil), d...)}}
	}
	// Hosts on tmpfs refuse FALLOC_FL_ZERO_RANGE; a hole punched with
	// FALLOC_FL_KEEP_SIZE stands in for it there.
	zeroRange := zeroRangeSupported(t, filepath.Dir(files[0].h.path))
	check := func() {
		t.Helper()
		fs := make([]*File, len(files))
		for k, ff := range files {
			fs[k] = ff.f
			if got, want := ff.f.Size(), int64(len(ff.m.data)); got != want {
				t.Fatalf("file %d: size %d, model %d", k, got, want)
			}
		}
		checkInvariants(t, c, true, fs...)
	}

	for i := 0; i < fuzzMaxOps && in.Left() > 0; i++ {
		op, om, ov, lm, lv := in.Byte(), in.Byte(), uint16(in.Uint(2)), in.Byte(), uint16(in.Uint(2))
		k := int(op>>4&1) % nfiles
		ff := files[k]
		size := int64(len(ff.m.data))
		off, n := fuzzOffset(om, ov, size), fuzzLength(lm, lv)
		variant := op >> 5
		name := fmt.Sprintf("f%d.", k)
		switch op & 15 {
		case fuzzRead, fuzzRead2:
			log.add(name+"read", off, n, size)
			mustRead(t, ff.f, ff.m, off, int(n))
		case fuzzReadBatch:
			other := files[(k+1)%nfiles]
			off2 := min(off+n/2, fuzzMaxOff)
			log.add(fmt.Sprintf("%sreadbatch+f%d@%d", name, (k+1)%nfiles, off2), off, n, size)
			ops := []ReadOp{{File: ff.f, Buf: make([]byte, n), Off: off}, {File: other.f, Buf: make([]byte, n), Off: off2}}
			c.ReadBatch(ops, nil)
			for j, fm := range []*fuzzFile{ff, other} {
				ro := &ops[j]
				want := fm.m.read(ro.Off, len(ro.Buf))
				if ro.Err != nil || ro.N != len(want) || !bytes.Equal(ro.Buf[:ro.N], want) {
					t.Fatalf("ReadBatch read %d (%d, %d) = %d, %v; want %d bytes, first difference at %d",
						j, ro.Off, len(ro.Buf), ro.N, ro.Err, len(want), firstDiff(ro.Buf[:ro.N], want))
				}
			}
		case fuzzWrite, fuzzWrite2, fuzzWrite3:
			fl := WriteFlags(0)
			at := off
			name += "write"
			if variant&1 != 0 {
				fl |= Through
				name += "+through"
			}
			if variant&2 != 0 {
				fl |= Append
				at = size
				name += "+append"
			}
			log.add(name, at, n, size)
			p := pattern(uint64(i)<<1|uint64(k), int(n))
			dirty := ff.f.DirtyBytes()
			got, gotAt, err := ff.f.WriteAt(p, off, fl)
			if err != nil || got != len(p) || gotAt != at {
				t.Fatalf("WriteAt(%d, %d, %d) = %d at %d, %v; want %d at %d", off, n, fl, got, gotAt, err, n, at)
			}
			if n > 0 {
				ff.m.write(p, at)
			}
			// Through updates cached pages without dirtying them.
			if fl&Through != 0 && ff.f.DirtyBytes() > dirty {
				t.Fatalf("Through write: dirty bytes %d, %d before", ff.f.DirtyBytes(), dirty)
			}
		case fuzzTruncate:
			log.add(name+"truncate", off, 0, size)
			if err := ff.f.Truncate(off); err != nil {
				t.Fatalf("Truncate(%d): %v", off, err)
			}
			ff.m.truncate(off)
		case fuzzAllocate:
			n = max(n, 1) // a length of 0 is EINVAL
			var mode uint32
			switch variant % 4 {
			case 0:
				mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
			case 1:
				mode = unix.FALLOC_FL_ZERO_RANGE
			case 2:
				mode = 0
			case 3:
				mode = unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE
			}
			if mode&unix.FALLOC_FL_ZERO_RANGE != 0 && !zeroRange {
				mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
			}
			log.add(fmt.Sprintf("%sallocate-%#x", name, mode), off, n, size)
			if err := ff.f.Allocate(mode, off, n); err != nil {
				t.Fatalf("Allocate(%#x, %d, %d): %v", mode, off, n, err)
			}
			if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
				ff.m.zero(off, n, mode&unix.FALLOC_FL_KEEP_SIZE == 0)
			} else if off+n > size {
				ff.m.truncate(off + n) // plain fallocate grows the file with zeros
			}
		case fuzzWriteback:
			mode := SyncMode(variant % 3)
			log.add(fmt.Sprintf("%swriteback-%d", name, mode), off, n, size)
			if err := ff.f.Writeback(Range{off, off + n}, mode); err != nil {
				t.Fatalf("Writeback(%d, %d, %d): %v", off, off+n, mode, err)
			}
			checkHostRange(t, ff, off, off+n)
		case fuzzSync:
			mode := SyncMode(variant % 3)
			log.add(fmt.Sprintf("%ssync-%d", name, mode), 0, size, size)
			if err := ff.f.Writeback(Range{0, 1 << 50}, mode); err != nil {
				t.Fatalf("Writeback of the whole file, mode %d: %v", mode, err)
			}
			checkHost(t, ff.h, ff.m)
			// Every dirty page was written; an fsync that succeeded after
			// it left nothing that is not durable.
			if ff.f.HasDirty() || mode != SyncNone && ff.f.DirtyBytes() != 0 {
				t.Fatalf("after a whole writeback in mode %d: HasDirty %v, DirtyBytes %d", mode, ff.f.HasDirty(), ff.f.DirtyBytes())
			}
		case fuzzInvalidate:
			log.add(name+"invalidate", off, n, size)
			if err := ff.f.Invalidate(Range{off, off + n}); err != nil {
				t.Fatalf("Invalidate(%d, %d): %v", off, off+n, err)
			}
			if n > 0 {
				noPagesIn(t, ff.f, off, off+n)
			}
			checkHostRange(t, ff, off, off+n)
		case fuzzFlush:
			log.add(name+"flush", off, n, size)
			if err := ff.f.FlushRange(Range{off, off + n}); err != nil {
				t.Fatalf("FlushRange(%d, %d): %v", off, off+n, err)
			}
			checkHostRange(t, ff, off, off+n)
		case fuzzReadCached:
			log.add(name+"readcached", off, n, size)
			p := make([]byte, n)
			got, hit := ff.f.ReadCached(p, off)
			want := ff.m.read(off, int(n))
			if got > len(want) || !bytes.Equal(p[:got], want[:got]) || hit && got != len(want) {
				t.Fatalf("ReadCached(%d, %d) = %d, hit %v; want at most %d bytes, first difference at %d",
					off, n, got, hit, len(want), firstDiff(p[:got], want))
			}
		case fuzzDirectWrite:
			// The caller of DirectWrite supplies whole aligned pages.
			a := off &^ (PageSize - 1)
			dn := max(pageEnd(n), 1) * PageSize
			log.add(name+"directwrite", a, dn, size)
			p := alignedBuf(int(dn))
			copy(p, pattern(uint64(i)<<1|uint64(k), int(dn)))
			// Without an O_DIRECT descriptor the buffered one stands in:
			// what the cache does (write back and drop the pages, grow the
			// size) is the same.
			fd := ff.h.fd()
			if direct {
				fd = ff.h.directFd()
			}
			got, at, err := ff.f.DirectWrite(p, a, 0, fd)
			if err != nil || got != len(p) || at != a {
				t.Fatalf("DirectWrite(%d, %d) = %d at %d, %v", a, dn, got, at, err)
			}
			ff.m.write(p, a)
			noPagesIn(t, ff.f, a, a+dn)
		case fuzzUncached:
			ff.uncached = !ff.uncached
			log.add(fmt.Sprintf("%suncached-%v", name, ff.uncached), 0, 0, size)
			ff.f.SetUncached(ff.uncached)
		case fuzzReopen:
			mode := SyncMode(variant % 3)
			log.add(fmt.Sprintf("%sreopen-%d", name, mode), 0, 0, size)
			if err := ff.f.Writeback(Range{0, 1 << 50}, mode); err != nil {
				t.Fatalf("Writeback before Release, mode %d: %v", mode, err)
			}
			checkHost(t, ff.h, ff.m)
			if err := ff.f.Release(); err != nil {
				t.Fatalf("Release after a whole writeback: %v", err)
			}
			ff.f, ff.uncached = openFile(t, c, ff.h, size), false
		}
		check()
	}

	// Everything written back and durable, the hosts equal the models;
	// once nothing is cached, the files read the same from the hosts.
	for k, ff := range files {
		size := int64(len(ff.m.data))
		log.add(fmt.Sprintf("f%d.final", k), 0, size, size)
		if err := ff.f.Writeback(Range{0, 1 << 50}, SyncFull); err != nil {
			t.Fatalf("final Writeback: %v", err)
		}
		checkHost(t, ff.h, ff.m)
		mustRead(t, ff.f, ff.m, 0, int(size)+PageSize)
		if err := ff.f.Invalidate(Range{0, 1 << 50}); err != nil {
			t.Fatalf("final Invalidate: %v", err)
		}
		if ff.f.ResidentBytes() != 0 {
			t.Fatalf("%d bytes cached after Invalidate of the whole file", ff.f.ResidentBytes())
		}
		mustRead(t, ff.f, ff.m, 0, int(size)+PageSize)
	}
	check()
}

// checkHostRange compares the host's bytes of [a, b) below the model's
// size with the model, the host's bytes past its end counting as zeros:
// after a writeback or flush of a range, its dirty bytes are on the host,
// and the rest of it was there already, or is a hole past the host's end
// that dirty pages further on will extend the host over.
func checkHostRange(t *testing.T, ff *fuzzFile, a, b int64) {
	t.Helper()
	b = min(b, int64(len(ff.m.data)))
	if a >= b {
		return
	}
	host := ff.h.bytes(t)
	if int64(len(host)) > int64(len(ff.m.data)) {
		t.Fatalf("host holds %d bytes, more than the size %d", len(host), len(ff.m.data))
	}
	got := make([]byte, b-a)
	if a < int64(len(host)) {
		copy(got, host[a:min(b, int64(len(host)))])
	}
	if want := ff.m.data[a:b]; !bytes.Equal(got, want) {
		t.Fatalf("host bytes [%d, %d) (host size %d) differ from the model at %d", a, b, len(host), a+int64(firstDiff(got, want)))
	}
}

// noPagesIn fails if f caches a page overlapping [a, b).
func noPagesIn(t *testing.T, f *File, a, b int64) {
	t.Helper()
	for _, p := range residentPages(f) {
		if p >= pageOf(a) && p < pageEnd(b) {
			t.Fatalf("page %d still cached, overlapping [%d, %d)", p, a, b)
		}
	}
}
