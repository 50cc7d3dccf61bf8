//go:build linux

package pagecache

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// TestTruncateRacingWriteback has one goroutine own a file (writes,
// truncates, allocates and reads it against an exact model) while others
// write it back in every mode and thrash the shared cache through another
// file, so that truncation races writeback, eviction and fills (K4): every
// read matches, zeros past each old end, and the host ends equal to the
// model (nothing resurrected).
func TestTruncateRacingWriteback(t *testing.T) {
	ops := 800
	if soak() {
		ops = 100000
	}
	for _, backend := range testBackends {
		t.Run(backend, func(t *testing.T) {
			seed := testSeed(t)
			log := &opLog{seed: seed}
			be := openBackend(t, backend, nil)
			c := newCache(t, be, Options{Capacity: 32 * PageSize})
			h := newHostFile(t, nil, false)
			zeroRange := unix.Fallocate(int(h.fd()), unix.FALLOC_FL_ZERO_RANGE, 0, 1) == nil // not on tmpfs
			if err := h.fh.Truncate(0); err != nil {
				t.Fatal(err)
			}
			f := openFile(t, c, h, 0)
			other := pattern(seed, 128*PageSize)
			ho := newHostFile(t, other, false)
			fo := openFile(t, c, ho, int64(len(other)))
			m := &model{}
			var stop atomic.Bool
			var wg sync.WaitGroup
			var writebacks, thrash atomic.Int64
			wg.Add(2)
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, 1))
				for !stop.Load() {
					if err := f.Writeback(Range{r.Int64N(64 * PageSize), 1 << 40}, SyncMode(r.IntN(3))); err != nil {
						t.Errorf("Writeback: %v", err)
						return
					}
					writebacks.Add(1)
				}
			}()
			go func() {
				defer wg.Done()
				r := rand.New(rand.NewPCG(seed, 2))
				p := make([]byte, 3*PageSize)
				for !stop.Load() {
					off := r.Int64N(int64(len(other)) - int64(len(p)))
					if n, err := fo.ReadAt(p, off); err != nil || !bytes.Equal(p[:n], other[off:off+int64(n)]) {
						t.Errorf("other file: ReadAt(%d) = %d, %v", off, n, err)
						return
					}
					thrash.Add(1)
				}
			}()
			defer func() { // also when the owner fails: no goroutine outlives the test
				stop.Store(true)
				wg.Wait()
			}()
			defer func() {
				if t.Failed() {
					t.Log(log.dump(50))
				}
			}()
			r := rand.New(rand.NewPCG(seed, 3))
			for i := 0; i < ops && !t.Failed(); i++ {
				size := int64(len(m.data))
				switch k := r.IntN(20); {
				case k < 8:
					off := r.Int64N(size + 2*PageSize)
					n := 1 + r.Int64N(3*PageSize)
					log.add("write", off, n, size)
					mustWrite(t, f, m, pattern(r.Uint64(), int(n)), off)
				case k < 14:
					off := r.Int64N(size + PageSize)
					n := 1 + r.IntN(4*PageSize)
					log.add("read", off, int64(n), size)
					mustRead(t, f, m, off, n)
				case k < 18:
					ns := r.Int64N(48 * PageSize)
					log.add("truncate", 0, 0, ns)
					if err := f.Truncate(ns); err != nil {
						t.Fatal(err)
					}
					m.truncate(ns)
				default:
					off := r.Int64N(size + PageSize)
					n := 1 + r.Int64N(6*PageSize)
					mode := uint32(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE)
					if zeroRange && r.IntN(2) == 0 {
						mode = unix.FALLOC_FL_ZERO_RANGE
					}
					log.add("allocate", off, n, size)
					if err := f.Allocate(mode, off, n); err != nil {
						t.Fatalf("Allocate(%#x, %d, %d): %v", mode, off, n, err)
					}
					m.zero(off, n, mode&unix.FALLOC_FL_KEEP_SIZE == 0)
				}
				if f.Size() != int64(len(m.data)) {
					t.Fatalf("op %d: size %d, model %d", i, f.Size(), len(m.data))
				}
			}
			stop.Store(true)
			wg.Wait()
			if t.Failed() {
				t.FailNow()
			}
			if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
				t.Fatal(err)
			}
			mustRead(t, f, m, 0, len(m.data)+PageSize)
			checkHost(t, h, m)
			checkInvariants(t, c, true, f, fo)
			t.Logf("seed %d: %d ops racing %d writebacks and %d thrashing reads; host equals model, nothing resurrected",
				seed, ops, writebacks.Load(), thrash.Load())
		})
	}
}

// TestReadBatch serves random batches of reads over several files (with
// overlapping misses in one batch, reads past EOF, bad offsets, a
// released file, a file of another cache, an op without a file, and
// extra requests) and checks every result against the models. The other
// cache's file is refused (EINVAL) and left as it was: its cache's frames
// are not this cache's.
func TestReadBatch(t *testing.T) {
	seed := testSeed(t)
	be := openBackend(t, uring.BackendUring, nil)
	c := newCache(t, be, Options{Capacity: 24 * PageSize})
	const files = 3
	fs := make([]*File, files)
	ms := make([]*model, files)
	for i := range files {
		data := pattern(seed+uint64(i), (40+i*7)*PageSize+i*333)
		fs[i] = openFile(t, c, newHostFile(t, data, false), int64(len(data)))
		ms[i] = &model{data: data}
	}
	// A released file in every batch: EBADF.
	hr := newHostFile(t, []byte("released"), false)
	fr, err := c.NewFile(hr.fd(), -1, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := fr.Release(); err != nil {
		t.Fatal(err)
	}
	// A file of another cache in every batch: EINVAL, untouched.
	c2 := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 16 * PageSize})
	otherData := pattern(seed+7, 6*PageSize)
	other := openFile(t, c2, newHostFile(t, otherData, false), int64(len(otherData)))
	extraData := pattern(seed+9, 5000)
	he := newHostFile(t, extraData, false)
	r := rand.New(rand.NewPCG(seed, 5))
	batches := 300
	ops := 0
	for b := range batches {
		n := 1 + r.IntN(8)
		batch := make([]ReadOp, n)
		for i := range batch {
			k := r.IntN(files)
			size := int64(len(ms[k].data))
			off := r.Int64N(size + PageSize)
			if i > 0 && r.IntN(3) == 0 { // overlap the previous read of the batch
				k = slicesIndex(fs, batch[i-1].File)
				if k < 0 {
					k = 0
				}
				off = batch[i-1].Off + r.Int64N(PageSize)
			}
			batch[i] = ReadOp{File: fs[k], Buf: make([]byte, 1+r.IntN(5*PageSize)), Off: off}
		}
		batch = append(batch, ReadOp{File: fr, Buf: make([]byte, 10)}, ReadOp{File: fs[0], Buf: make([]byte, 10), Off: -1},
			ReadOp{File: other, Buf: make([]byte, 2*PageSize), Off: r.Int64N(4 * PageSize)}, ReadOp{Buf: make([]byte, 10)})
		extra := []uring.Request{{Op: uring.OpRead, Fd: he.fd(), Off: 100, Buf: make([]byte, 200)}}
		c.ReadBatch(batch, extra)
		for i := range batch[:n] {
			op := &batch[i]
			k := slicesIndex(fs, op.File)
			want := ms[k].read(op.Off, len(op.Buf))
			if op.Err != nil || op.N != len(want) || !bytes.Equal(op.Buf[:op.N], want) {
				t.Fatalf("seed %d batch %d op %d: file %d ReadAt(%d, %d) = %d, %v; want %d bytes (differ at %d)",
					seed, b, i, k, op.Off, len(op.Buf), op.N, op.Err, len(want), firstDiff(op.Buf[:op.N], want))
			}
			ops++
		}
		if !errors.Is(batch[n].Err, syscall.EBADF) || !errors.Is(batch[n+1].Err, syscall.EINVAL) {
			t.Fatalf("batch %d: released file %v, negative offset %v", b, batch[n].Err, batch[n+1].Err)
		}
		if o, z := batch[n+2], batch[n+3]; !errors.Is(o.Err, syscall.EINVAL) || o.N != 0 || !errors.Is(z.Err, syscall.EINVAL) {
			t.Fatalf("batch %d: another cache's file %d, %v; no file %v", b, o.N, o.Err, z.Err)
		}
		if extra[0].Err != nil || extra[0].N != 200 || !bytes.Equal(extra[0].Buf, extraData[100:300]) {
			t.Fatalf("batch %d: extra request N=%d err=%v", b, extra[0].N, extra[0].Err)
		}
		if b%50 == 0 {
			checkInvariants(t, c, true, fs...)
		}
	}
	checkInvariants(t, c, true, fs...)
	checkInvariants(t, c2, true, other)
	mustRead(t, other, &model{data: otherData}, 0, len(otherData))
	t.Logf("seed %d: %d batches, %d reads over %d files in a 24-page cache; all match, extra requests served, another cache's file refused", seed, batches, ops, files)
}

// TestReadBatchOneWindow: many misses of one readahead window in one
// batch are served by a few submissions, not one each: the first fills
// the window, the rest find its pages cached. Every read is checked.
func TestReadBatchOneWindow(t *testing.T) {
	data := pattern(11, 16*PageSize)
	c := newCache(t, openBackend(t, uring.BackendPsync, nil), Options{Capacity: 64 * PageSize})
	f := openFile(t, c, newHostFile(t, data, false), int64(len(data)))
	const n = 2000
	ops := make([]ReadOp, n)
	for i := range ops {
		ops[i] = ReadOp{File: f, Buf: make([]byte, 100), Off: int64(i%16)*PageSize + int64(i%7)}
	}
	before := c.Stats()
	c.ReadBatch(ops, nil)
	for i := range ops {
		op := &ops[i]
		if op.Err != nil || op.N != 100 || !bytes.Equal(op.Buf, data[op.Off:op.Off+100]) {
			t.Fatalf("op %d: ReadAt(100 bytes at %d) = %d, %v", i, op.Off, op.N, op.Err)
		}
	}
	// 16 pages are one window of 64 KiB, or at most a few when the
	// first misses read no readahead.
	if got := c.Stats().Sub(before).FillBatches; got > 4 {
		t.Fatalf("%d reads of one window took %d submissions", n, got)
	}
}

func slicesIndex(fs []*File, f *File) int {
	for i, g := range fs {
		if g == f {
			return i
		}
	}
	return -1
}

// TestWriteModes checks Through, Append, DirectWrite, FlushRange and
// Invalidate against the model and the host.
func TestWriteModes(t *testing.T) {
	data := pattern(170, 10*PageSize+50)
	h := newHostFile(t, data, true)
	c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 64 * PageSize})
	f := openFile(t, c, h, int64(len(data)))
	m := &model{data: append([]byte(nil), data...)}
	mustRead(t, f, m, 0, len(data))

	// Through: on the host at once, cached pages updated but not dirty.
	p := pattern(171, 5000)
	if n, _, err := f.WriteAt(p, 3000, Through); err != nil || n != len(p) {
		t.Fatalf("Through write = %d, %v", n, err)
	}
	m.write(p, 3000)
	checkHost(t, h, m)
	if f.DirtyBytes() != 0 {
		t.Fatalf("Through write left %d dirty bytes", f.DirtyBytes())
	}
	mustRead(t, f, m, 0, len(m.data))

	// Append: at the size, whatever the offset says.
	p = pattern(172, 300)
	n, at, err := f.WriteAt(p, 5, Append)
	if err != nil || n != len(p) || at != int64(len(m.data)) {
		t.Fatalf("Append write = %d at %d, %v; want at %d", n, at, err, len(m.data))
	}
	m.write(p, at)
	mustRead(t, f, m, 0, len(m.data))

	// Cached dirty write, then FlushRange: the host sees it, no fsync needed.
	p = pattern(173, 700)
	mustWrite(t, f, m, p, 2*PageSize+9)
	if err := f.FlushRange(Range{0, 1 << 40}); err != nil {
		t.Fatal(err)
	}
	checkHost(t, h, m)

	// DirectWrite over cached, dirty pages: written back and dropped first,
	// so reads see the direct bytes and nothing stale comes back.
	mustWrite(t, f, m, pattern(174, 100), 4*PageSize+5)
	dbuf := alignedBuf(2 * PageSize)
	copy(dbuf, pattern(175, 2*PageSize))
	if n, _, err := f.DirectWrite(dbuf, 4*PageSize, 0, h.directFd()); err != nil || n != len(dbuf) {
		t.Fatalf("DirectWrite = %d, %v", n, err)
	}
	m.write(dbuf, 4*PageSize)
	mustRead(t, f, m, 0, len(m.data))
	if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
		t.Fatal(err)
	}
	checkHost(t, h, m)

	// Invalidate drops everything; reads come back from the host.
	if err := f.Invalidate(Range{0, 1 << 40}); err != nil {
		t.Fatal(err)
	}
	if f.ResidentBytes() != 0 {
		t.Fatalf("%d bytes cached after Invalidate", f.ResidentBytes())
	}
	mustRead(t, f, m, 0, len(m.data))
	checkInvariants(t, c, true, f)
	t.Logf("Through, Append, FlushRange, DirectWrite, Invalidate: host and cache equal the model (%d bytes)", len(m.data))
}

// alignedBuf returns n bytes aligned to a page, for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+PageSize)
	off := 0
	for uintptrOf(b[off:])%PageSize != 0 {
		off++
	}
	return b[off : off+n]
}

// TestReleaseAndClose: Release refuses dirty files, Close refuses live
// files, and both succeed once the data is written back.
func TestReleaseAndClose(t *testing.T) {
	be := openBackend(t, uring.BackendUring, nil)
	c, err := New(Options{Capacity: MinCapacity, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	h := newHostFile(t, nil, false)
	f, err := c.NewFile(h.fd(), -1, 0)
	if err != nil {
		t.Fatal(err)
	}
	m := &model{}
	mustWrite(t, f, m, []byte("dirty"), 10)
	if err := f.Release(); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("Release of a dirty file = %v, want EBUSY", err)
	}
	if err := c.Close(); !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("Close with a live file = %v, want EBUSY", err)
	}
	mustRead(t, f, m, 0, 100) // still usable
	if err := f.Writeback(Range{0, 1 << 40}, SyncFull); err != nil {
		t.Fatal(err)
	}
	if err := f.Release(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"ReadAt":    func() error { _, err := f.ReadAt(make([]byte, 1), 0); return err }(),
		"WriteAt":   func() error { _, _, err := f.WriteAt([]byte{1}, 0, 0); return err }(),
		"Writeback": f.Writeback(Range{0, 1}, SyncFull),
		"Truncate":  f.Truncate(0),
		"Release":   f.Release(),
	} {
		if err == nil {
			t.Errorf("%s after Release succeeded", name)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err == nil {
		t.Fatal("second Close succeeded")
	}
	if _, err := c.NewFile(h.fd(), -1, 0); err == nil {
		t.Fatal("NewFile on a closed cache succeeded")
	}
	checkHost(t, h, m)
	t.Logf("dirty Release and live Close refused (EBUSY); after writeback both succeed; closed handles refuse every call")
}

func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// TestUncached: while a file is uncached, reads and writes work from and
// to the host and add no page; Discard drops dirty pages and releases.
func TestUncached(t *testing.T) {
	data := pattern(190, 20*PageSize+10)
	h := newHostFile(t, data, false)
	c := newCache(t, openBackend(t, uring.BackendUring, nil), Options{Capacity: 64 * PageSize})
	f := openFile(t, c, h, int64(len(data)))
	m := &model{data: append([]byte(nil), data...)}
	mustRead(t, f, m, 0, 3*PageSize) // some pages cached
	mustWrite(t, f, m, pattern(191, 100), 50)
	f.SetUncached(true)
	if err := f.Invalidate(Range{0, 1 << 62}); err != nil {
		t.Fatal(err)
	}
	checkHost(t, h, m)
	r := rand.New(rand.NewPCG(192, 0))
	for range 200 {
		off := r.Int64N(int64(len(m.data)) + 2*PageSize)
		n := 1 + r.Int64N(3*PageSize)
		if r.IntN(2) == 0 {
			mustWrite(t, f, m, pattern(r.Uint64(), int(n)), off)
		} else {
			mustRead(t, f, m, off, int(n))
		}
		if f.ResidentBytes() != 0 {
			t.Fatalf("%d bytes cached while uncached", f.ResidentBytes())
		}
	}
	p := make([]ReadOp, 3)
	for i := range p {
		p[i] = ReadOp{File: f, Buf: make([]byte, PageSize), Off: int64(i) * 5 * PageSize}
	}
	c.ReadBatch(p, nil)
	if f.ResidentBytes() != 0 {
		t.Fatalf("ReadBatch cached %d bytes while uncached", f.ResidentBytes())
	}
	checkHost(t, h, m)
	f.SetUncached(false)
	mustRead(t, f, m, 0, len(m.data))
	mustWrite(t, f, m, pattern(193, 10), 7)
	if f.DirtyBytes() == 0 {
		t.Fatal("no dirty byte after a cached write")
	}
	f.Discard()
	if !f.Released() || c.Stats().FreeBytes != c.Capacity() {
		t.Fatalf("Discard: released %v, %d of %d bytes free", f.Released(), c.Stats().FreeBytes, c.Capacity())
	}
	t.Logf("uncached: 200 reads/writes and a batch served with 0 pages cached; Discard freed every frame")
}
