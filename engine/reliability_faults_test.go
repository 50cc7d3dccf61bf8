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
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

// Faults at completion level (TESTPLAN F1–F12; F13 is with the crash
// rows). Most rows drive a checked workload (fwl below) while an
// Injector alters what the backend reports, then heal the faults and
// check that the host holds everything the engine accepted.

// fwConfig is an engine configuration of the fault rows. Caches are
// small, so that the sweeps can create an engine per run cheaply.
type fwConfig struct {
	name string
	opts Options
}

var fwConfigs = []fwConfig{
	{"exclusive", Options{Mode: Exclusive, CacheSize: 4 << 20}},
	{"exclusive/tiny/ra=4KiB", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
	{"exclusive/psync", Options{Mode: Exclusive, CacheSize: 4 << 20, Backend: "psync"}},
	{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
}

// Handles of a workload.
const (
	fwRW     = iota // O_RDWR
	fwRW2           // O_RDWR, sharing the cache
	fwDsync         // O_RDWR|O_DSYNC: a write that returns is acknowledged
	fwDirect        // O_RDWR|O_DIRECT (only with fwl.direct)
	fwHandles
)

var fwFlags = [fwHandles]int{os.O_RDWR, os.O_RDWR, os.O_RDWR | syscall.O_DSYNC, os.O_RDWR | syscall.O_DIRECT}

// fwMaxFile bounds the workload's file.
const fwMaxFile = 96 << 10

// fwl is a workload of reads, writes, truncates, allocations, syncs,
// batches and reopens on one file, checked against a model that knows
// which bytes are certain: a call that fails may have done part of its
// work, so the bytes it may have changed become unknown until a read
// shows what the engine holds (from then on that is what it must keep
// returning). Every failure must be an *fs.PathError with one of errnos
// (none: every call must succeed). Bytes acknowledged — by a Sync that
// returned nil or an O_DSYNC write that returned — are tracked to the
// end: each must be on the host after healing, or it counts as lost.
type fwl struct {
	t      *testing.T
	cfg    fwConfig
	seed   uint64
	rng    *rand.Rand
	inj    *fault.Injector
	e      *Engine
	path   string
	direct bool
	h      [fwHandles]*File
	errnos []syscall.Errno

	data     []byte  // the model's bytes
	known    byteSet // bytes of data the model is sure of
	acked    byteSet // bytes acknowledged and not touched since
	ackedVal []byte  // their acknowledged values

	log             []string
	ops, failed     int
	maxOff          int64 // writes land in [0, maxOff)
	ackedLost       int64
	heals, reopened int
	ring            uring.Stats // the backend's counters when runClean healed
}

// newFwl creates the engine (with inj) and the file in dir, and opens
// the handles.
func newFwl(t *testing.T, cfg fwConfig, seed uint64, inj *fault.Injector, dir string, errnos ...syscall.Errno) *fwl {
	t.Helper()
	w := &fwl{t: t, cfg: cfg, seed: seed, rng: rand.New(rand.NewPCG(seed, 0xf17)), inj: inj, errnos: errnos, maxOff: fwMaxFile}
	w.path = filepath.Join(dir, fmt.Sprintf("fw-%d", seed))
	writeHost(t, w.path, nil)
	w.start()
	return w
}

func (w *fwl) start() {
	opts := w.cfg.opts
	if w.inj != nil {
		opts.Injector = w.inj
	}
	w.e = newEngine(w.t, opts)
	for i := range w.h {
		w.openHandle(i)
	}
}

func (w *fwl) openHandle(i int) {
	if i == fwDirect && !w.direct {
		return
	}
	f, err := w.e.Open(w.path, fwFlags[i], 0o644)
	if err != nil {
		w.failf("open handle %d: %v", i, err)
	}
	w.h[i] = f
}

func (w *fwl) size() int64 { return int64(len(w.data)) }

func (w *fwl) logf(format string, args ...any) {
	w.log = append(w.log, fmt.Sprintf(format, args...))
}

// failf stops the row with the seed, the configuration, the last
// operations and the last injected faults.
func (w *fwl) failf(format string, args ...any) {
	w.t.Helper()
	var evs []string
	if w.inj != nil {
		for _, ev := range w.inj.Events() {
			evs = append(evs, ev.String())
		}
	}
	w.t.Fatalf("%s seed %d (RINGFS_FSX_SEED), after %d operations: %s\nlast operations (op offset length size handle):\n%slast faults:\n  %s",
		w.cfg.name, w.seed, w.ops, fmt.Sprintf(format, args...), tail(w.log, 40), strings.Join(evs[max(0, len(evs)-12):], "\n  "))
}

// checkErr accepts nil, or an *fs.PathError wrapping one of w.errnos;
// it reports whether err was nil.
func (w *fwl) checkErr(what string, err error) bool {
	w.t.Helper()
	if err == nil {
		return true
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		for _, want := range w.errnos {
			if errors.Is(err, want) {
				w.failed++
				return false
			}
		}
	}
	w.failf("%s: %v (%T); want nil or an *fs.PathError with one of %v", what, err, err, w.errnos)
	return false
}

// resize sets the model's size: new bytes are zeros, known, not acknowledged.
func (w *fwl) resize(n int64) {
	old := w.size()
	if n <= old {
		w.data = w.data[:n]
	} else {
		w.data = append(w.data, make([]byte, n-old)...)
	}
	w.known.resize(n, 1)
	w.acked.resize(n, 0)
	if int64(len(w.ackedVal)) > n {
		w.ackedVal = w.ackedVal[:n]
	}
}

// touch marks [a, b) as possibly changed: no longer acknowledged.
func (w *fwl) touch(a, b int64) { w.acked.set(a, b, 0) }

// ack records the current values of the known bytes in [a, b) as
// acknowledged.
func (w *fwl) ack(a, b int64) {
	if int64(len(w.ackedVal)) < w.size() {
		w.ackedVal = append(w.ackedVal, make([]byte, w.size()-int64(len(w.ackedVal)))...)
	}
	a, b = max(a, 0), min(b, w.size())
	if a >= b {
		return
	}
	copy(w.ackedVal[a:b], w.data[a:b])
	copy(w.acked[a:b], w.known[a:b])
}

// hostSize returns the size the engine reports.
func (w *fwl) hostSize() int64 {
	w.t.Helper()
	fi, err := w.h[fwRW].Stat()
	if err != nil {
		w.failf("Stat: %v", err)
	}
	return fi.Size()
}

// checkSize compares the engine's size with the model's.
func (w *fwl) checkSize() {
	w.t.Helper()
	if s := w.hostSize(); s != w.size() {
		w.failf("size %d, model %d", s, w.size())
	}
}

// checkKnown compares bytes the engine returned at off with the model's
// certain bytes, then adopts them: from now on they are certain.
func (w *fwl) checkKnown(what string, got []byte, off int64) {
	w.t.Helper()
	if len(got) == 0 {
		return
	}
	end := off + int64(len(got))
	if end > w.size() {
		w.failf("%s: %d bytes at %d run past the size %d", what, len(got), off, w.size())
	}
	if i, n := w.known[off:end].firstDiff(got, w.data[off:end]); n > 0 {
		w.failf("%s: %d bytes differ from the model, first at file offset %d (got %#x, want %#x)",
			what, n, off+i, got[i], w.data[off+i])
	}
	copy(w.data[off:end], got)
	w.known.set(off, end, 1)
}

// sizeAfterFailure adopts the engine's size after a failed call that
// may have changed it to anything in [lo, hi].
func (w *fwl) sizeAfterFailure(what string, lo, hi int64) {
	w.t.Helper()
	s := w.hostSize()
	if s < lo || s > hi {
		w.failf("%s failed; size %d, want it in [%d, %d]", what, s, lo, hi)
	}
	w.resize(s)
}

// genRange draws [off, off+n) with n ≥ 1 in [0, limit), small, arbitrary
// or page-aligned.
func (w *fwl) genRange(limit, maxLen int64) (int64, int64) {
	limit = max(limit, 1)
	var off, n int64
	switch w.rng.IntN(3) {
	case 0:
		off, n = w.rng.Int64N(limit), 1+w.rng.Int64N(300)
	case 1:
		off, n = w.rng.Int64N(limit), 1+w.rng.Int64N(maxLen)
	default:
		off, n = w.rng.Int64N(limit/4096+1)*4096, (1+w.rng.Int64N(maxLen/4096+1))*4096
	}
	off = min(off, limit-1)
	return off, max(min(n, limit-off), 1)
}

// step runs one random operation. The draws depend only on the model's
// size, so runs of one seed issue the same operations until a fault
// changes an outcome.
func (w *fwl) step(tag uint64) {
	w.t.Helper()
	size := w.size()
	hi := w.rng.IntN(3)
	switch k := w.rng.IntN(20); {
	case k < 7:
		if w.direct && w.rng.IntN(3) == 0 {
			off := w.rng.Int64N(w.maxOff/4096) * 4096
			n := (1 + w.rng.Int64N(min(4, (w.maxOff-off)/4096))) * 4096
			w.write(fwDirect, off, n, tag)
			break
		}
		off, n := w.genRange(w.maxOff, 9000)
		w.write(hi, off, n, tag)
	case k < 12:
		off, n := w.genRange(size+4096, 12000)
		h := hi
		if w.direct && w.rng.IntN(3) == 0 {
			h = fwDirect
		}
		w.read(h, off, n)
	case k == 12:
		w.truncate(w.rng.Int64N(w.maxOff + 1))
	case k == 13:
		off, n := w.genRange(w.maxOff, 20000)
		w.punch(off, n)
	case k == 14:
		off, n := w.genRange(w.maxOff, 20000)
		w.allocate(off, n)
	case k < 17:
		w.sync(hi, k == 16)
	case k == 17:
		w.submit(tag)
	case k == 18:
		w.reopen(w.rng.IntN(fwHandles))
	default:
		off, n := w.genRange(size+4096, 12000)
		w.seekRead(hi, off, n)
	}
	w.ops++
	w.checkSize()
}

func (w *fwl) write(hi int, off, n int64, tag uint64) {
	w.t.Helper()
	var p []byte
	if hi == fwDirect {
		p = alignedBuf(int(n))
		fillData(p, w.seed, tag)
	} else {
		p = pattern(int(n), w.seed, tag)
	}
	w.logf("write %d %d %d h%d", off, n, w.size(), hi)
	got, err := w.h[hi].WriteAt(p, off)
	w.wrote(fmt.Sprintf("WriteAt(h%d)", hi), hi, p, off, got, err)
}

// wrote applies a write's outcome to the model.
func (w *fwl) wrote(what string, hi int, p []byte, off int64, got int, err error) {
	w.t.Helper()
	old, n := w.size(), int64(len(p))
	ok := w.checkErr(what, err)
	if got < 0 || got > len(p) || (ok && got != len(p)) {
		w.failf("%s of %d bytes at %d: n = %d, err %v", what, n, off, got, err)
	}
	w.touch(off, off+n)
	if ok {
		w.resize(max(old, off+n))
	} else {
		lo := old
		if got > 0 {
			lo = max(old, off+int64(got))
		}
		w.sizeAfterFailure(what, lo, max(old, off+n))
	}
	if got > 0 {
		copy(w.data[off:], p[:got])
		w.known.set(off, off+int64(got), 1)
	}
	if !ok {
		w.known.set(off+int64(got), off+n, 0)
	}
	if ok && hi == fwDsync {
		w.ack(off, off+n)
	}
}

func (w *fwl) read(hi int, off, n int64) {
	w.t.Helper()
	var p []byte
	if hi == fwDirect {
		p = alignedBuf(int(n))
	} else {
		p = make([]byte, n)
	}
	w.logf("read %d %d %d h%d", off, n, w.size(), hi)
	got, err := w.h[hi].ReadAt(p, off)
	w.readDone(fmt.Sprintf("ReadAt(h%d)", hi), p, off, got, err)
}

// readDone checks a ReadAt result against the model (io.ReaderAt rules
// when it succeeded).
func (w *fwl) readDone(what string, p []byte, off int64, got int, err error) {
	w.t.Helper()
	want := int(max(0, min(int64(len(p)), w.size()-off)))
	switch {
	case err == nil && got == len(p) && want == len(p):
	case err == io.EOF && got == want && want < len(p):
	default:
		if w.checkErr(what, err) || got > want || got < 0 {
			w.failf("%s(%d bytes at %d): n = %d, err %v; want %d (size %d)", what, len(p), off, got, err, want, w.size())
		}
	}
	w.checkKnown(what, p[:got], off)
}

func (w *fwl) seekRead(hi int, off, n int64) {
	w.t.Helper()
	w.logf("seekread %d %d %d h%d", off, n, w.size(), hi)
	f := w.h[hi]
	pos, err := f.Seek(off, io.SeekStart)
	if err != nil || pos != off {
		w.failf("Seek(%d): %d, %v", off, pos, err)
	}
	p := make([]byte, n)
	got, err := f.Read(p)
	want := int(max(0, min(n, w.size()-off)))
	switch {
	case err == nil && got == want && got > 0:
	case err == io.EOF && got == 0 && want == 0:
	default:
		if w.checkErr("Read", err) || got > want || got < 0 {
			w.failf("Read(%d bytes at %d): n = %d, err %v; want %d", n, off, got, err, want)
		}
	}
	w.checkKnown("Read", p[:got], off)
}

func (w *fwl) truncate(size int64) {
	w.t.Helper()
	old := w.size()
	w.logf("truncate %d 0 %d h0", size, old)
	err := w.h[fwRW].Truncate(size)
	w.touch(min(old, size), max(old, size))
	if w.checkErr("Truncate", err) {
		w.resize(size)
		return
	}
	s := w.hostSize()
	if s != old && s != size {
		w.failf("Truncate(%d) failed; size %d, want %d or %d", size, s, old, size)
	}
	w.resize(s)
}

func (w *fwl) punch(off, n int64) {
	w.t.Helper()
	w.logf("punch %d %d %d h0", off, n, w.size())
	err := w.h[fwRW].Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	ok := w.checkErr("Allocate(punch)", err)
	a, b := min(off, w.size()), min(off+n, w.size())
	w.touch(a, b)
	clear(w.data[a:b])
	if ok {
		w.known.set(a, b, 1)
	} else {
		w.known.set(a, b, 0)
	}
}

func (w *fwl) allocate(off, n int64) {
	w.t.Helper()
	old := w.size()
	w.logf("allocate %d %d %d h0", off, n, old)
	err := w.h[fwRW].Allocate(0, off, n)
	if w.checkErr("Allocate", err) {
		w.resize(max(old, off+n))
		return
	}
	w.sizeAfterFailure("Allocate", old, max(old, off+n))
}

func (w *fwl) sync(hi int, data bool) {
	w.t.Helper()
	w.logf("sync 0 0 %d h%d", w.size(), hi)
	var err error
	if data {
		err = w.h[hi].Datasync()
	} else {
		err = w.h[hi].Sync()
	}
	if w.checkErr("Sync", err) {
		w.acked.resize(0, 0)
		w.acked.resize(w.size(), 0)
		w.ack(0, w.size())
	}
}

// submit runs a batch of reads (below the size) and writes on disjoint
// slots of the file.
func (w *fwl) submit(tag uint64) {
	w.t.Helper()
	const count = 4
	slot := w.maxOff / count
	size := w.size()
	ops := make([]Op, 0, count)
	for i := range int64(count) {
		lo := i * slot
		h := w.h[w.rng.IntN(2)]
		if lo < size && w.rng.IntN(2) == 0 {
			off := lo + w.rng.Int64N(min(slot, size-lo))
			n := 1 + w.rng.Int64N(min(lo+slot, size)-off)
			ops = append(ops, Op{File: h, Buf: make([]byte, n), Off: off})
			continue
		}
		off := lo + w.rng.Int64N(slot)
		n := 1 + w.rng.Int64N(min(lo+slot-off, 9000))
		ops = append(ops, Op{File: h, Write: true, Buf: pattern(int(n), w.seed, tag<<8|uint64(i)), Off: off})
	}
	var desc []string
	for _, op := range ops {
		desc = append(desc, fmt.Sprintf("%v:%d+%d", op.Write, op.Off, len(op.Buf)))
	}
	w.logf("submit 0 0 %d %s", size, strings.Join(desc, ","))
	if err := w.e.Submit(ops); err != nil {
		w.failf("Submit: %v", err)
	}
	// Reads first: they saw the bytes before the batch's writes, which
	// do not overlap them.
	lo, hiSize := size, size
	failedWrite := false
	for i := range ops {
		op := &ops[i]
		if !op.Write {
			w.readDone(fmt.Sprintf("Submit read %d", i), op.Buf, op.Off, op.N, op.Err)
			continue
		}
		ok := w.checkErr(fmt.Sprintf("Submit write %d", i), op.Err)
		if op.N < 0 || op.N > len(op.Buf) || (ok && op.N != len(op.Buf)) {
			w.failf("Submit write %d: n = %d of %d, err %v", i, op.N, len(op.Buf), op.Err)
		}
		end := op.Off + int64(len(op.Buf))
		hiSize = max(hiSize, end)
		if ok {
			lo = max(lo, end)
		} else {
			failedWrite = true
			if op.N > 0 {
				lo = max(lo, op.Off+int64(op.N))
			}
		}
	}
	for i := range ops {
		if op := &ops[i]; op.Write {
			w.touch(op.Off, op.Off+int64(len(op.Buf)))
		}
	}
	if failedWrite {
		w.sizeAfterFailure("Submit", lo, hiSize)
	} else {
		w.resize(lo)
	}
	for i := range ops {
		op := &ops[i]
		if !op.Write {
			continue
		}
		if op.N > 0 {
			copy(w.data[op.Off:], op.Buf[:op.N])
			w.known.set(op.Off, op.Off+int64(op.N), 1)
		}
		if op.Err != nil {
			w.known.set(op.Off+int64(op.N), op.Off+int64(len(op.Buf)), 0)
		}
	}
}

func (w *fwl) reopen(i int) {
	w.t.Helper()
	if w.h[i] == nil {
		return
	}
	w.logf("reopen 0 0 %d h%d", w.size(), i)
	w.checkErr("Close", w.h[i].Close())
	w.h[i] = nil
	w.openHandle(i)
}

// heal stops the faults and checks recovery: each handle's Sync may
// report one earlier failure, the next succeeds; then the engine returns
// the model's certain bytes, the host equals the engine, and every
// acknowledged byte is on the host.
func (w *fwl) heal() {
	w.t.Helper()
	if w.inj != nil {
		w.inj.Heal()
	}
	w.logf("heal 0 0 %d h-", w.size())
	for i, h := range w.h {
		if h == nil {
			continue
		}
		if err := h.Sync(); err != nil {
			w.checkErr(fmt.Sprintf("Sync of handle %d after healing", i), err)
			if err := h.Sync(); err != nil {
				w.failf("second Sync of handle %d after healing: %v", i, err)
			}
		}
	}
	view := make([]byte, w.size()+1)
	n, err := w.h[fwRW].ReadAt(view, 0)
	if int64(n) != w.size() || err != io.EOF {
		w.failf("full read after healing: %d, %v (size %d)", n, err, w.size())
	}
	w.checkKnown("full read after healing", view[:n], 0)
	w.checkHost("after healing")
	w.acked.resize(0, 0)
	w.acked.resize(w.size(), 0)
	w.ack(0, w.size())
	w.heals++
}

// checkHost compares the host file with the model, all of whose bytes
// must be known, and counts acknowledged bytes that are not there.
func (w *fwl) checkHost(when string) {
	w.t.Helper()
	host := readHost(w.t, w.path)
	if _, lost := w.acked.firstDiff(host, w.ackedVal); lost > 0 {
		w.ackedLost += lost
	}
	if !bytes.Equal(host, w.data) {
		i := diffAt(host, w.data)
		w.failf("host differs from the model %s: host %d bytes, model %d, first difference at %d; %d acknowledged bytes lost",
			when, len(host), len(w.data), i, w.ackedLost)
	}
	if w.ackedLost > 0 {
		w.failf("%d acknowledged bytes lost %s", w.ackedLost, when)
	}
}

// closeAll closes the handles and the engine; after heal both must
// succeed.
func (w *fwl) closeAll(strict bool) error {
	w.t.Helper()
	var errs []error
	for i, h := range w.h {
		if h == nil {
			continue
		}
		if err := h.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close handle %d: %w", i, err))
		}
		w.h[i] = nil
	}
	if err := w.e.Close(); err != nil {
		errs = append(errs, fmt.Errorf("Engine.Close: %w", err))
	}
	err := errors.Join(errs...)
	if strict && err != nil {
		w.failf("closing after healing: %v", err)
	}
	return err
}

// reopenCheck starts a fresh engine without faults on the file and
// checks that it serves the acknowledged bytes (all bytes, when every
// byte is known).
func (w *fwl) reopenCheck() {
	w.t.Helper()
	inj := w.inj
	w.inj = nil
	w.start()
	w.inj = inj
	view := make([]byte, fwMaxFile*2)
	n, err := w.h[fwRW].ReadAt(view, 0)
	if err != io.EOF {
		w.failf("read after reopening: %d, %v", n, err)
	}
	view = view[:n]
	if i, lost := w.acked.firstDiff(view, w.ackedVal); lost > 0 {
		w.ackedLost += lost
		w.failf("after reopening: %d acknowledged bytes lost, first at %d (file %d bytes)", lost, i, n)
	}
	w.reopened++
	w.closeAll(true)
}

// --- rows ---

func init() {
	addRow("F1", "transient EIO on the k-th completion, k swept until no fault hits", rowF1)
	addRow("F2", "persistent failure from the k-th completion (CQE or io_uring_enter), heal, reopen", rowF2)
	addRow("F3", "ENOSPC during lazy writeback (Sync and eviction)", rowF3)
	addRow("F4", "EIO on fsync after good writes, 10 handles", rowF4)
	addRow("F5", "writeback fails with no handle open (and under eviction pressure)", rowF5)
	addRow("F6", "EINTR storms: signals during waits, -EINTR results and enters", rowF6)
	addRow("F7", "EAGAIN/EBUSY from io_uring_enter and in CQEs", rowF7)
	addRow("F8", "short reads and writes (1..len-1, 0 for writes)", rowF8)
	addRow("F9", "tiny CQ with many requests in flight", rowF9)
	addRow("F10", "write→fsync where the write fails", rowF10)
	addRow("F11", "delayed completions with overlapping writes and eviction", rowF11)
	addRow("F12", "EIO only in the readahead part of a fill", rowF12)
}

// fwOps returns the operations of a workload: n, scaled by RINGFS_SOAK.
func fwOps(n int) int { return n * soakFactor() }

// rowF1 sweeps k: for each configuration the same seeded workload runs
// with EIO replacing the result of its k-th completion (the operation
// ran; its caller hears it failed), for k = 1, 2, ... until the workload
// has fewer than k completions.
func rowF1(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t)
	dir := relDir(t)
	ops := fwOps(24)
	var runs, faults, failed, total int64
	for ci, cfg := range fwConfigs {
		s := seed + uint64(ci)
		k := uint64(1)
		for ; ; k++ {
			inj := fault.New(fault.Rule{Name: fmt.Sprintf("EIO at completion %d", k), Stage: fault.StageComplete,
				When: fault.Nth(k), Do: fault.Effect{Errno: syscall.EIO}})
			w := newFwl(t, cfg, s, inj, dir, syscall.EIO)
			for i := range ops {
				w.step(uint64(i))
			}
			w.heal()
			w.closeAll(true)
			os.Remove(w.path)
			runs++
			total += int64(w.ops)
			failed += int64(w.failed)
			if inj.Fired() == 0 {
				break
			}
			faults += int64(inj.Fired())
		}
		t.Logf("%s seed %d: k swept 1..%d (%d completions), every failed call EIO, every result and the healed host match the model", cfg.name, s, k, k-1)
	}
	fig.Set("configs", int64(len(fwConfigs)))
	fig.Set("runs", runs)
	fig.Set("ops", total)
	fig.Set("faults", faults)
	fig.Set("failed_calls", failed)
	t.Logf("F1: %d runs, %d operations, %d faults injected, %d calls failed (EIO), 0 acknowledged bytes lost", runs, total, faults, failed)
}

// countingInjector returns an injector that fails nothing and a counter
// of the completions it saw.
func countingInjector() (*fault.Injector, func() uint64) {
	var n uint64
	inj := fault.New(fault.Rule{Name: "count", Stage: fault.StageComplete, When: func(fault.Info) bool { n++; return false }})
	return inj, func() uint64 { return n }
}

// rowF2: from the k-th completion on, every completion fails (EIO); the
// workload goes on against the failing host, then the faults heal: the
// engine must recover (heal), close, and a fresh engine must find every
// byte. A second variant fails the k-th io_uring_enter with EIO, which
// breaks a ring for good (psync: one failed syscall): the engine must
// still answer every call and close, and a fresh engine must find every
// acknowledged byte.
func rowF2(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t)
	dir := relDir(t)
	ops := fwOps(30)
	var runs, faults, failed, total int64
	for ci, cfg := range fwConfigs {
		s := seed + uint64(ci)
		cinj, count := countingInjector()
		w := newFwl(t, cfg, s, cinj, dir)
		for i := range ops {
			w.step(uint64(i))
		}
		w.closeAll(true)
		completions := count()
		stepK := max(1, completions/8)
		for _, variant := range []string{"cqe", "enter"} {
			for k := uint64(1); k <= completions; k += stepK {
				inj := fault.New()
				if variant == "cqe" {
					inj.Add(fault.Rule{Name: fmt.Sprintf("EIO from completion %d", k), Stage: fault.StageComplete,
						When: fault.From(k), Do: fault.Effect{Errno: syscall.EIO}})
				} else {
					// A hard error from io_uring_enter breaks a ring for
					// good: a failure that persists for the engine.
					inj.AddEnter(fault.EnterRule{Name: fmt.Sprintf("EIO at enter %d", k), When: func(c uint64) bool { return c == k }, Errno: syscall.EIO})
				}
				w := newFwl(t, cfg, s, inj, dir, syscall.EIO)
				stop := watchdog(2*time.Minute, func() string {
					return fmt.Sprintf("F2 %s %s seed %d k %d; operations:\n%s", variant, cfg.name, s, k, tail(w.log, 40))
				})
				for i := range ops {
					w.step(uint64(i))
				}
				if variant == "cqe" {
					w.heal()
					w.closeAll(true)
				} else {
					// The ring may be broken for good: the engine must
					// still close (reporting what it could not write).
					inj.Heal()
					w.closeAll(false)
				}
				w.reopenCheck()
				stop()
				os.Remove(w.path)
				runs++
				total += int64(w.ops)
				failed += int64(w.failed)
				faults += int64(inj.Fired())
			}
		}
		t.Logf("%s seed %d: failures from completion k (%d completions, k step %d) and from io_uring_enter: no hang, every acknowledged byte found by a fresh engine", cfg.name, s, completions, stepK)
	}
	fig.Set("runs", runs)
	fig.Set("ops", total)
	fig.Set("faults", faults)
	fig.Set("failed_calls", failed)
	t.Logf("F2: %d runs, %d operations, %d faults, %d failed calls, 0 acknowledged bytes lost, no hang", runs, total, faults, failed)
}

// rowF3 runs writebackErrorENOSPC (ENOSPC on the writeback of Sync:
// pages stay dirty, Sync reports ENOSPC, after healing host = model) and
// adds lazy writeback by eviction: a tiny cache full of another file's
// dirty pages whose writeback fails with ENOSPC while a second file is
// read through the cache.
func rowF3(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	t.Run("writebackErrorENOSPC", writebackErrorENOSPC)
	checkLeaks(t)
	var faults int64
	for _, be := range []string{"uring", "psync"} {
		inj := fault.New()
		e := newEngine(t, Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: be, Injector: inj})
		dir := relDir(t)
		dirtyPath, otherPath := filepath.Join(dir, "dirty-"+be), filepath.Join(dir, "other-"+be)
		other := pattern(48<<10, 33, 1)
		writeHost(t, dirtyPath, nil)
		writeHost(t, otherPath, other)
		f := openFile(t, e, dirtyPath, os.O_RDWR)
		g := openFile(t, e, otherPath, os.O_RDONLY)
		model := pattern(40<<10, 33, 0) // ten whole pages: cached without reading the host
		if n, err := f.WriteAt(model, 0); n != len(model) || err != nil {
			t.Fatalf("WriteAt: %d, %v", n, err)
		}
		inj.Add(fault.Rule{Name: "ENOSPC on writes", When: fault.Writes(), Do: fault.Effect{Errno: syscall.ENOSPC}})
		before := e.Stats().Cache
		// Reading 12 pages of the other file needs frames: eviction tries
		// the dirty pages, their writeback fails, they must stay.
		for off := int64(0); off < int64(len(other)); off += 4096 {
			p := make([]byte, 4096)
			if n, err := g.ReadAt(p, off); n != len(p) || err != nil {
				t.Fatalf("%s: read of the other file at %d under pressure: %d, %v", be, off, n, err)
			}
			sameBytes(t, "other file under pressure", p, other[off:off+4096])
		}
		st := e.Stats().Cache.Sub(before)
		if d := fileStats(t, e, dirtyPath).DirtyBytes; d != int64(len(model)) {
			t.Fatalf("%s: DirtyBytes %d after failed eviction writebacks, want %d (evictions %d, eviction writeback errors %d)",
				be, d, len(model), st.Evictions, st.EvictionWritebackErrors)
		}
		if st.EvictionWritebackErrors == 0 {
			t.Fatalf("%s: no eviction writeback failed (faults %d): the row did not drive lazy writeback", be, inj.Fired())
		}
		wantPathErr(t, "Sync after failed eviction writeback", f.Sync(), syscall.ENOSPC)
		wantPathErr(t, "Sync while still failing", f.Sync(), syscall.ENOSPC)
		inj.Heal()
		if err := f.Sync(); err != nil {
			t.Fatalf("%s: Sync after healing: %v", be, err)
		}
		sameBytes(t, "host after healing", readHost(t, dirtyPath), model)
		faults += int64(inj.Fired())
		t.Logf("%s: %d ENOSPC on eviction writeback (%d failed eviction writebacks); pages stayed dirty, Sync reported ENOSPC, after healing host = model",
			be, inj.Fired(), st.EvictionWritebackErrors)
		if err := e.Close(); err != nil {
			t.Fatalf("Engine.Close: %v", err)
		}
	}
	fig.Set("configs", int64(len(wbModes)+2))
	fig.Set("faults_eviction", faults)
}

// rowF4 is fsyncErrorEachHandle: one fsync EIO with 3 and 10 handles
// open, in every mode; each handle's Sync reports it once (the test
// checks exactly one fault fired per case), the retained pages are
// written again, host = model.
func rowF4(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	fsyncErrorEachHandle(t)
	fig.Set("configs", int64(2*len(wbModes)))
	fig.Set("handles_max", 10)
	fig.Set("faults", int64(2*len(wbModes))) // exactly one per case, asserted by the test
}

// rowF5 runs lastCloseWritebackFails (a failed last-Close writeback
// keeps the file, dirty, without handles; the next Open+Sync reports an
// error nobody saw) and adds eviction pressure while no handle is open:
// the kept file's dirty pages must survive a tiny cache's evictions
// (whose writeback keeps failing) and reach the host after healing.
func rowF5(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	t.Run("lastCloseWritebackFails", lastCloseWritebackFails)
	checkLeaks(t)
	inj := fault.New()
	e := newEngine(t, Options{Mode: Exclusive, CacheSize: fsxTinyCache, Injector: inj})
	dir := relDir(t)
	path := filepath.Join(dir, "kept")
	writeHost(t, path, nil)
	f := openFile(t, e, path, os.O_RDWR)
	model := pattern(36<<10, 35, 0)
	if n, err := f.WriteAt(model, 0); n != len(model) || err != nil {
		t.Fatalf("WriteAt: %d, %v", n, err)
	}
	inj.Add(fault.Rule{Name: "EIO on writes", When: fault.Writes(), Do: fault.Effect{Errno: syscall.EIO}})
	wantPathErr(t, "last Close", f.Close(), syscall.EIO)
	// No handle is open. Push three times the cache through it.
	before := e.Stats().Cache
	for i := range 3 {
		p := filepath.Join(dir, fmt.Sprintf("pressure%d", i))
		data := pattern(64<<10, 35, uint64(i+1))
		writeHost(t, p, data)
		g := openFile(t, e, p, os.O_RDONLY)
		got := make([]byte, len(data))
		if n, err := g.ReadAt(got, 0); n != len(data) || err != nil {
			t.Fatalf("pressure read %d: %d, %v", i, n, err)
		}
		sameBytes(t, "pressure read", got, data)
		if err := g.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if err := e.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Engine.Sync while failing, no handle open: %v", err)
	}
	st := fileStats(t, e, path)
	ev := e.Stats().Cache.Sub(before)
	if st.Handles != 0 || st.DirtyBytes != int64(len(model)) || !st.PendingError {
		t.Fatalf("kept file after pressure: %+v; want no handle, %d dirty bytes, a pending error", st, len(model))
	}
	if ev.EvictionWritebackErrors == 0 {
		t.Fatalf("no eviction tried the kept file's pages (%+v): the row did not apply pressure", ev)
	}
	inj.Heal()
	g := openFile(t, e, path, os.O_RDWR)
	wantPathErr(t, "Open+Sync after an unseen failure", g.Sync(), syscall.EIO)
	if err := g.Sync(); err != nil {
		t.Fatalf("Sync after healing: %v", err)
	}
	sameBytes(t, "host", readHost(t, path), model)
	if err := g.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("kept file's dirty pages survived %d eviction attempts (failed writebacks) with no handle open; reported to the next Open+Sync; host = model after healing",
		ev.EvictionWritebackErrors)
	fig.Set("faults", int64(inj.Fired()))
	fig.Set("eviction_attempts_meanwhile", int64(ev.EvictionWritebackErrors))
}

// runClean runs a workload that must see no failure at all (the faults
// injected are all retried or resumed by the backend), heals, checks
// the host and a fresh engine, and returns the workload.
func runClean(t *testing.T, cfg fwConfig, seed uint64, inj *fault.Injector, dir string, ops int, direct bool) *fwl {
	t.Helper()
	w := newFwl(t, cfg, seed, inj, dir)
	w.direct = direct
	if direct {
		w.openHandle(fwDirect)
	}
	stop := watchdog(3*time.Minute, func() string {
		return fmt.Sprintf("%s seed %d; operations:\n%s", cfg.name, seed, tail(w.log, 40))
	})
	defer stop()
	for i := range ops {
		w.step(uint64(i))
		if i%100 == 99 {
			w.checkSize()
		}
	}
	w.heal()
	w.ring = w.e.Stats().Ring
	w.closeAll(true)
	w.reopenCheck()
	return w
}

// rowF6: -EINTR before the kernel (issue), in place of results
// (completion) and from io_uring_enter, while another goroutine signals
// every thread of the process (SIGURG) so that real waits are
// interrupted too. Every call must succeed; the model holds; O_APPEND
// records are each found once.
func rowF6(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t)
	dir := relDir(t)
	stop := make(chan struct{})
	done := make(chan int64, 1)
	go func() { done <- signalStorm(stop) }()
	stopped := false
	defer func() {
		if !stopped {
			close(stop)
			<-done
		}
	}()
	var faults, total, retries, enterRetries int64
	for ci, cfg := range fwConfigs {
		s := seed + uint64(ci)
		inj := fault.New(
			fault.Rule{Name: "EINTR at issue", Stage: fault.StageIssue, When: fault.Random(int64(s), 0.2), Do: fault.Effect{Errno: syscall.EINTR}},
			fault.Rule{Name: "EINTR result", Stage: fault.StageComplete, When: fault.Random(int64(s)+1, 0.15), Do: fault.Effect{Errno: syscall.EINTR}})
		inj.AddEnter(fault.EnterRule{Name: "EINTR enter", When: func(c uint64) bool { return c%3 == 0 }, Errno: syscall.EINTR})
		w := runClean(t, cfg, s, inj, dir, fwOps(200), false)
		faults += int64(inj.Fired())
		total += int64(w.ops)
		retries += int64(w.ring.RetryCQEEINTR)
		enterRetries += int64(w.ring.RetryEnterEINTR)
		n := appendRecords(t, cfg, s, dir, syscall.EINTR)
		total += int64(n)
	}
	close(stop)
	stopped = true
	signals := <-done
	if signals == 0 {
		t.Fatal("no signal was sent while the workloads ran")
	}
	fig.Set("ops", total)
	fig.Set("faults", faults)
	fig.Set("signals", signals)
	fig.Set("retries", retries+enterRetries)
	t.Logf("F6: %d operations, %d EINTR injected, %d signals sent; every call succeeded, nothing duplicated or lost (%d CQE and %d enter retries)",
		total, faults, signals, retries, enterRetries)
}

// signalStorm sends SIGURG (which the Go runtime takes for preemption
// and ignores otherwise) to every thread of the process until stop is
// closed, and returns how many it sent.
func signalStorm(stop chan struct{}) int64 {
	pid := unix.Getpid()
	var sent int64
	var tids []int
	for i := 0; ; i++ {
		select {
		case <-stop:
			return sent
		default:
		}
		if i%64 == 0 {
			tids = tids[:0]
			ents, _ := os.ReadDir("/proc/self/task")
			for _, e := range ents {
				var tid int
				if _, err := fmt.Sscan(e.Name(), &tid); err == nil {
					tids = append(tids, tid)
				}
			}
		}
		for _, tid := range tids {
			if unix.Tgkill(pid, tid, syscall.SIGURG) == nil {
				sent++
			}
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// appendRecords writes framed records through an O_APPEND handle with
// errno injected before the kernel and from io_uring_enter (and, except
// in Shared mode where the kernel picks the offset, in place of results)
// and checks that each record is in the file exactly once, in order. It
// returns the records written.
func appendRecords(t *testing.T, cfg fwConfig, seed uint64, dir string, errno syscall.Errno) int {
	t.Helper()
	inj := fault.New()
	opts := cfg.opts
	opts.Injector = inj
	e := newEngine(t, opts)
	path := filepath.Join(dir, fmt.Sprintf("append-%d", seed))
	writeHost(t, path, nil)
	f := openFile(t, e, path, os.O_WRONLY|os.O_APPEND)
	afd := int32(f.Fd())
	inj.Add(fault.Rule{Name: errno.Error() + " at issue", Stage: fault.StageIssue, When: fault.Random(int64(seed)+7, 0.3), Do: fault.Effect{Errno: errno}})
	// Not in place of the result of a write on the handle's own
	// descriptor: those are RWF_APPEND writes (the kernel picks the
	// offset), which the kernel fails with -EINTR or -EAGAIN only when
	// nothing was written; a fault there after the write ran would be a
	// lie the backend could only answer by appending twice.
	inj.Add(fault.Rule{Name: errno.Error() + " result", Stage: fault.StageComplete,
		When: fault.And(func(i fault.Info) bool { return !(i.Fd == afd && i.Op.IsWrite()) }, fault.Random(int64(seed)+8, 0.2)),
		Do:   fault.Effect{Errno: errno}})
	inj.AddEnter(fault.EnterRule{Name: errno.Error() + " enter", When: func(c uint64) bool { return c%4 == 1 }, Errno: errno})
	const records = 200
	var want []byte
	for i := range records {
		body := pattern(1+(i*37)%900, seed, uint64(i))
		rec := fmt.Appendf(nil, "<%d:%d>", i, len(body))
		rec = append(append(rec, body...), '\n')
		if n, err := f.Write(rec); n != len(rec) || err != nil {
			t.Fatalf("%s seed %d: append %d: %d, %v", cfg.name, seed, i, n, err)
		}
		want = append(want, rec...)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("%s: Close: %v", cfg.name, err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("%s: Engine.Close: %v", cfg.name, err)
	}
	got := readHost(t, path)
	if !bytes.Equal(got, want) {
		i := diffAt(got, want)
		t.Fatalf("%s seed %d: %d appended records: file has %d bytes, want %d; first difference at %d (%d faults): records duplicated or lost",
			cfg.name, seed, records, len(got), len(want), i, inj.Fired())
	}
	os.Remove(path)
	return records
}

// rowF7: EAGAIN and EBUSY from io_uring_enter and EAGAIN in place of
// results, at random through a workload (every call must succeed), in a
// burst of consecutive enters (the ring must back off, not spin: CPU
// time well under the time spent), and on every completion of a read
// (bounded: the read fails with EAGAIN after a bounded number of
// resubmissions instead of looping).
func rowF7(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t)
	dir := relDir(t)
	var faults, total, busy, again int64
	for ci, cfg := range fwConfigs {
		s := seed + uint64(ci)
		rng := rand.New(rand.NewPCG(s, 7))
		inj := fault.New(fault.Rule{Name: "EAGAIN result", Stage: fault.StageComplete, When: fault.Random(int64(s), 0.2), Do: fault.Effect{Errno: syscall.EAGAIN}})
		inj.AddEnter(fault.EnterRule{Name: "EAGAIN enter", When: func(uint64) bool { return rng.IntN(4) == 0 }, Errno: syscall.EAGAIN})
		if cfg.opts.Backend != "psync" {
			// psync has no io_uring_enter: there an Enter fault is the
			// syscall's own failure, and EBUSY is not a retryable one.
			inj.AddEnter(fault.EnterRule{Name: "EBUSY enter", When: func(uint64) bool { return rng.IntN(5) == 0 }, Errno: syscall.EBUSY})
		}
		w := runClean(t, cfg, s, inj, dir, fwOps(150), false)
		faults += int64(inj.Fired())
		total += int64(w.ops)
		n := appendRecords(t, cfg, s, dir, syscall.EAGAIN)
		total += int64(n)
	}
	// A burst of consecutive EAGAIN answers from io_uring_enter: the
	// ring reaps and backs off; the read succeeds; little CPU is burnt.
	for _, be := range []string{"uring", "psync"} {
		inj := fault.New()
		e := newEngine(t, Options{Mode: Shared, Backend: be, Injector: inj})
		path := filepath.Join(dir, "burst-"+be)
		data := pattern(64<<10, 77, 0)
		writeHost(t, path, data)
		f := openFile(t, e, path, os.O_RDONLY)
		burst := uint64(120)
		if be == "psync" {
			burst = 40 // each is a failed syscall answer, retried at most 64 times in a row
		}
		var left = burst
		var mu = make(chan struct{}, 1)
		mu <- struct{}{}
		inj.AddEnter(fault.EnterRule{Name: "EAGAIN burst", When: func(uint64) bool {
			<-mu
			defer func() { mu <- struct{}{} }()
			if left == 0 {
				return false
			}
			left--
			return true
		}, Errno: syscall.EAGAIN})
		before := e.Stats().Ring
		cpu0, wall0 := cpuTime(), time.Now()
		p := make([]byte, len(data))
		n, err := f.ReadAt(p, 0)
		cpu, wall := cpuTime()-cpu0, time.Since(wall0)
		if n != len(data) || err != nil {
			t.Fatalf("%s: read under a burst of %d EAGAIN enters: %d, %v", be, burst, n, err)
		}
		sameBytes(t, "read under an EAGAIN burst", p, data)
		rs := e.Stats().Ring.Sub(before)
		if inj.Fired() != burst {
			t.Fatalf("%s: %d faults fired, want the burst of %d", be, inj.Fired(), burst)
		}
		if be == "uring" && (cpu > wall/2+20*time.Millisecond || wall < 20*time.Millisecond) {
			t.Fatalf("%s: %d consecutive EAGAIN enters took %v of CPU in %v: a busy spin, not a backoff", be, burst, cpu, wall)
		}
		busy += int64(rs.RetryEnterBusy)
		again += int64(rs.RetryCQEAgain)
		t.Logf("%s: burst of %d EAGAIN enters: read succeeded in %v using %v CPU (RetryEnterBusy %d, RetryCQEAgain %d)",
			be, burst, wall.Round(time.Millisecond), cpu.Round(time.Millisecond), rs.RetryEnterBusy, rs.RetryCQEAgain)
		// Every completion of reads -EAGAIN: bounded resubmission, then
		// EAGAIN to the caller, and the engine still works after.
		inj.Reset()
		inj.Add(fault.Rule{Name: "EAGAIN on every read", Stage: fault.StageComplete, When: fault.Reads(), Do: fault.Effect{Errno: syscall.EAGAIN}})
		firedBefore := inj.Fired()
		start := time.Now()
		n, err = f.ReadAt(p[:4096], 8192)
		if err == nil || errnoOf(err) != syscall.EAGAIN {
			t.Fatalf("%s: read with every completion -EAGAIN: %d, %v; want EAGAIN after bounded retries", be, n, err)
		}
		fired := inj.Fired() - firedBefore
		if fired > 65 || fired < 2 {
			t.Fatalf("%s: %d attempts of one read that keeps completing -EAGAIN, want a bounded retry (2..65)", be, fired)
		}
		t.Logf("%s: a read completing -EAGAIN every time failed with EAGAIN after %d attempts in %v", be, fired, time.Since(start).Round(time.Microsecond))
		faults += int64(inj.Fired())
		inj.Heal()
		if n, err := f.ReadAt(p[:4096], 8192); n != 4096 || err != nil {
			t.Fatalf("%s: read after healing: %d, %v", be, n, err)
		}
		sameBytes(t, "read after healing", p[:4096], data[8192:12288])
		if err := e.Close(); err != nil {
			t.Fatalf("Engine.Close: %v", err)
		}
	}
	fig.Set("ops", total)
	fig.Set("faults", faults)
	fig.Set("enter_busy_retries", busy)
}

// rowF8: completions report fewer bytes than moved (1, 100, 4095, 4097
// bytes) and writes report 0 bytes; the backend resumes the rest. Every
// call must succeed with the model's results: a read is short (io.EOF)
// only at the end of file.
func rowF8(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t)
	dir := relDir(t)
	var faults, total, resubmits int64
	for ci, cfg := range fwConfigs {
		s := seed + uint64(ci)
		inj := fault.New()
		for j, short := range []int32{1, 100, 4095, 4097} {
			inj.Add(fault.Rule{Name: fmt.Sprintf("short %d", short), Stage: fault.StageComplete,
				When: fault.And(fault.Or(fault.Reads(), fault.Writes()), fault.Random(int64(s)+int64(j), 0.08)), Do: fault.Effect{Short: short}})
		}
		inj.Add(fault.Rule{Name: "write of 0", Stage: fault.StageComplete, When: fault.And(fault.Writes(), fault.Random(int64(s)+9, 0.1)), Do: fault.Effect{ShortWrite0: true}})
		w := runClean(t, cfg, s, inj, dir, fwOps(200), false)
		// Reads ending at, crossing and starting at the end of file.
		faults += int64(inj.Fired())
		total += int64(w.ops)
		resubmits += int64(w.ring.ShortResubmits)
		total += eofReads(t, cfg, s, dir)
	}
	fig.Set("ops", total)
	fig.Set("faults", faults)
	fig.Set("resubmits", resubmits)
	t.Logf("F8: %d operations, %d short completions injected, %d remainders resubmitted; every call complete, every read short only at the end of file", total, faults, resubmits)
}

// eofReads reads around the end of file while every read completion is
// cut short: reads below the size are complete, a read crossing it
// stops exactly there with io.EOF, a read at or past it returns 0, EOF.
func eofReads(t *testing.T, cfg fwConfig, seed uint64, dir string) int64 {
	t.Helper()
	inj := fault.New()
	opts := cfg.opts
	opts.Injector = inj
	e := newEngine(t, opts)
	path := filepath.Join(dir, fmt.Sprintf("eof-%d", seed))
	const size = 3*4096 + 123
	data := pattern(size, seed, 99)
	writeHost(t, path, data)
	f := openFile(t, e, path, os.O_RDONLY)
	inj.Add(fault.Rule{Name: "short reads", Stage: fault.StageComplete, When: fault.Reads(), Do: fault.Effect{Short: 1000}})
	var ops int64
	for _, c := range []struct{ off, n int64 }{{0, size}, {size - 1, 1}, {size - 10, 100}, {4096, 9000}, {size, 1}, {size + 5000, 10}, {0, size + 1}, {size - 4096, 8192}} {
		p := make([]byte, c.n)
		n, err := f.ReadAt(p, c.off)
		want := int(max(0, min(c.n, size-c.off)))
		if n != want || (want < int(c.n) && err != io.EOF) || (want == int(c.n) && err != nil) {
			t.Fatalf("%s: ReadAt(%d bytes at %d) with short completions: %d, %v; want %d", cfg.name, c.n, c.off, n, err, want)
		}
		sameBytes(t, "short-completion read", p[:n], data[min(c.off, size):min(c.off, size)+int64(n)])
		ops++
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Engine.Close: %v", err)
	}
	os.Remove(path)
	return ops
}

// rowF9: an engine on a ring of 4 entries (8 CQ entries, so at most 8
// requests in flight) with 64 goroutines issuing reads, writes and
// batches: everything completes, every result is right, and in-flight
// requests never exceed the completion queue. A lost CQE cannot be
// driven from the engine (the hook is internal to package uring): it is
// covered by uring's TestDroppedCQE and TestDroppedCQEUnderLoad (the
// affected request fails with ErrBroken, nothing hangs) and CQ overflow
// beyond the cap by TestTinyCQOverflow.
func rowF9(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	var ops, high int64
	for _, cfg := range []fwConfig{
		{"shared/ring=4", Options{Mode: Shared, RingEntries: 4}},
		{"uncached/ring=4", Options{Mode: Exclusive, CacheSize: -1, RingEntries: 4}},
		{"exclusive/tiny/ring=4", Options{Mode: Exclusive, CacheSize: fsxTinyCache, RingEntries: 4}},
	} {
		e := newEngine(t, cfg.opts)
		if e.BackendName() != "uring" {
			t.Skipf("backend %s: no ring", e.BackendName())
		}
		dir := relDir(t)
		path := filepath.Join(dir, "f9")
		const goroutines, region = 64, 8 << 10
		writeHost(t, path, make([]byte, goroutines*region))
		stop := watchdog(2*time.Minute, func() string { return "F9 " + cfg.name })
		var n atomicCount
		errs := make(chan error, goroutines)
		for g := range goroutines {
			go func() {
				errs <- tinyCQWorker(e, path, g, region, &n)
			}()
		}
		for range goroutines {
			if err := <-errs; err != nil {
				t.Errorf("%s: %v", cfg.name, err)
			}
		}
		stop()
		rs := e.Stats().Ring
		if rs.InflightHighMark > uint64(rs.CQEntries) {
			t.Errorf("%s: %d requests in flight at once, over the %d CQ entries", cfg.name, rs.InflightHighMark, rs.CQEntries)
		}
		if rs.DroppedCQEs != 0 {
			t.Errorf("%s: %d dropped CQEs", cfg.name, rs.DroppedCQEs)
		}
		t.Logf("%s: %d goroutines, %d operations; SQ %d, CQ %d; in flight at most %d, CQ overflows %d, dropped CQEs %d, %.1f SQEs per enter",
			cfg.name, goroutines, n.load(), rs.SQEntries, rs.CQEntries, rs.InflightHighMark, rs.CQOverflows, rs.DroppedCQEs, rs.SQEsPerEnter())
		ops += n.load()
		high = max(high, int64(rs.InflightHighMark))
		if err := e.Close(); err != nil {
			t.Fatalf("Engine.Close: %v", err)
		}
	}
	t.Logf("F9: lost CQEs are covered in package uring by TestDroppedCQE and TestDroppedCQEUnderLoad (the request fails with ErrBroken, nothing hangs), overflow past the in-flight cap by TestTinyCQOverflow")
	fig.Set("ops", ops)
	fig.Set("inflight_max", high)
}

type atomicCount struct{ n atomic.Int64 }

func (c *atomicCount) add(d int64) { c.n.Add(d) }
func (c *atomicCount) load() int64 { return c.n.Load() }

// tinyCQWorker owns region bytes at g*region of path: it writes, reads
// back, and reads in batches, checking every result.
func tinyCQWorker(e *Engine, path string, g, region int, n *atomicCount) error {
	f, err := e.Open(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	base := int64(g * region)
	model := make([]byte, region)
	for i := range 40 {
		off := int64((i * 977) % (region - 1000))
		p := pattern(1000, uint64(g), uint64(i))
		if k, err := f.WriteAt(p, base+off); k != len(p) || err != nil {
			return fmt.Errorf("goroutine %d: WriteAt: %d, %v", g, k, err)
		}
		copy(model[off:], p)
		ops := make([]Op, 8)
		for j := range ops {
			o := int64(j * region / 8)
			ops[j] = Op{File: f, Buf: make([]byte, region/8), Off: base + o}
		}
		if err := e.Submit(ops); err != nil {
			return err
		}
		for j := range ops {
			o := j * region / 8
			if ops[j].Err != nil || ops[j].N != region/8 || !bytes.Equal(ops[j].Buf, model[o:o+region/8]) {
				return fmt.Errorf("goroutine %d: batch read %d: %d, %v, equal %v", g, j, ops[j].N, ops[j].Err, bytes.Equal(ops[j].Buf, model[o:o+region/8]))
			}
		}
		n.add(int64(1 + len(ops)))
	}
	return nil
}

// rowF10: cached dirty data in several runs, EIO on the k-th write of
// the Sync's writeback batch, for every k; Sync must fail, the retry
// succeed, host = model.
func rowF10(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	dir := relDir(t)
	var faults, cases int64
	for _, cfg := range []fwConfig{
		{"exclusive", Options{Mode: Exclusive, CacheSize: 4 << 20}},
		{"exclusive/psync", Options{Mode: Exclusive, CacheSize: 4 << 20, Backend: "psync"}},
		{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache}},
	} {
		for k := uint64(1); ; k++ {
			inj := fault.New()
			o := cfg.opts
			o.Injector = inj
			e := newEngine(t, o)
			path := filepath.Join(dir, fmt.Sprintf("f10-%d", k))
			writeHost(t, path, nil)
			f := openFile(t, e, path, os.O_RDWR)
			model := make([]byte, 0, 64<<10)
			for i := range 5 { // five separate dirty runs: a batch of writes
				off := int64(i * 12 << 10)
				p := pattern(5000, 10, uint64(i))
				if n, err := f.WriteAt(p, off); n != len(p) || err != nil {
					t.Fatalf("WriteAt: %d, %v", n, err)
				}
				if int64(len(model)) < off+int64(len(p)) {
					model = model[:off+int64(len(p))]
				}
				copy(model[off:], p)
			}
			inj.Add(fault.Rule{Name: fmt.Sprintf("EIO on write %d", k), Stage: fault.StageComplete,
				When: fault.And(fault.Writes(), fault.Nth(k)), Do: fault.Effect{Errno: syscall.EIO}})
			err := f.Sync()
			if inj.Fired() == 0 {
				if err != nil {
					t.Fatalf("%s: Sync with no fault: %v", cfg.name, err)
				}
				e.Close()
				break
			}
			wantPathErr(t, fmt.Sprintf("%s: Sync after write %d failed", cfg.name, k), err, syscall.EIO)
			if err := f.Sync(); err != nil {
				t.Fatalf("%s: retried Sync: %v", cfg.name, err)
			}
			sameBytes(t, cfg.name+": host", readHost(t, path), model)
			if err := e.Close(); err != nil {
				t.Fatalf("Engine.Close: %v", err)
			}
			faults++
			cases++
		}
	}
	fig.Set("cases", cases)
	fig.Set("faults", faults)
	t.Logf("F10: the k-th write of a writeback batch failed for every k (%d cases): Sync reported EIO each time, the retry wrote everything", cases)
}

// rowF11: completions are delayed at random (and some operations held
// before the kernel), so that a batch's completions come back in another
// order and writeback by eviction (driven by goroutines reading other
// files of the same tiny cache) overlaps the workload's writes of the
// same bytes, direct writes included. Calls made one after another on
// the file must take effect in call order: the model holds after every
// call, and the host equals it after healing.
func rowF11(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t)
	var faults, total, evictions int64
	for ci, cfg := range []fwConfig{
		{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache}},
		{"exclusive/tiny/psync", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: "psync"}},
		{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
		{"exclusive/tiny/directio", Options{Mode: Exclusive, CacheSize: fsxTinyCache, DirectIO: true}},
		{"shared", Options{Mode: Shared}},
	} {
		s := seed + uint64(ci)
		dir := t.TempDir() // a disk filesystem: O_DIRECT bypasses the kernel's cache
		inj := fault.New(
			fault.Rule{Name: "delay 2ms", Stage: fault.StageComplete, When: fault.Random(int64(s), 0.1), Do: fault.Effect{Delay: 2 * time.Millisecond}},
			fault.Rule{Name: "delay 200µs", Stage: fault.StageComplete, When: fault.Random(int64(s)+1, 0.2), Do: fault.Effect{Delay: 200 * time.Microsecond}},
			fault.Rule{Name: "hold 1ms", Stage: fault.StageIssue, When: fault.Random(int64(s)+2, 0.05), Do: fault.Effect{Delay: time.Millisecond}})
		w := newFwl(t, cfg, s, inj, dir)
		w.maxOff = 40 << 10 // writes crowd a small region: they overlap
		w.direct = directSupported(dir)
		if w.direct {
			w.openHandle(fwDirect)
		}
		stopNoise := evictionNoise(w.e, dir, s)
		stopDog := watchdog(3*time.Minute, func() string { return fmt.Sprintf("F11 %s seed %d:\n%s", cfg.name, s, tail(w.log, 40)) })
		before := w.e.Stats().Cache
		for i := range fwOps(150) {
			w.step(uint64(i))
			if i%25 == 24 {
				// Overlapping writes back to back on one handle.
				off := w.rng.Int64N(w.maxOff - 8192)
				for j := range 4 {
					w.write(fwRW, off+int64(j*1000), 5000, uint64(i)<<8|uint64(j))
				}
				w.read(fwRW2, off, 9000)
			}
		}
		if err := stopNoise(); err != nil {
			t.Fatalf("%s: noise goroutine: %v", cfg.name, err)
		}
		evictions += int64(w.e.Stats().Cache.Sub(before).Evictions)
		w.heal()
		w.closeAll(true)
		w.reopenCheck()
		stopDog()
		faults += int64(inj.Fired())
		total += int64(w.ops)
		t.Logf("%s seed %d: %d operations with %d delayed completions (direct handle %v): call order held", cfg.name, s, w.ops, inj.Fired(), w.direct)
	}
	fig.Set("ops", total)
	fig.Set("faults", faults)
	fig.Set("evictions", evictions)
}

// evictionNoise starts two goroutines that write and read other files of
// e (each checking its own data), so that a tiny cache evicts all the
// time. The returned stop waits for them and returns the first failure.
func evictionNoise(e *Engine, dir string, seed uint64) (stop func() error) {
	done := make(chan struct{})
	errs := make(chan error, 2)
	for g := range 2 {
		go func() {
			errs <- noiseFile(e, filepath.Join(dir, fmt.Sprintf("noise%d", g)), seed, g, done)
		}()
	}
	return func() error {
		close(done)
		return errors.Join(<-errs, <-errs)
	}
}

func noiseFile(e *Engine, path string, seed uint64, g int, done chan struct{}) error {
	f, err := e.Open(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	const size = 96 << 10
	model := make([]byte, size)
	rng := rand.New(rand.NewPCG(seed, uint64(g)+100))
	for i := 0; ; i++ {
		select {
		case <-done:
			return nil
		default:
		}
		off := rng.Int64N(size - 8192)
		n := 1 + rng.Int64N(8192)
		if i%2 == 0 {
			p := pattern(int(n), seed, uint64(g)<<40|uint64(i))
			if k, err := f.WriteAt(p, off); k != len(p) || err != nil {
				return fmt.Errorf("noise %d WriteAt: %d, %v", g, k, err)
			}
			copy(model[off:], p)
			continue
		}
		p := make([]byte, n)
		k, err := f.ReadAt(p, off)
		if err != nil && err != io.EOF {
			return fmt.Errorf("noise %d ReadAt: %d, %v", g, k, err)
		}
		if !bytes.Equal(p[:k], model[off:off+int64(k)]) {
			return fmt.Errorf("noise %d ReadAt(%d, %d): data differs", g, n, off)
		}
	}
}

// rowF12: reads whose fill has a readahead part, with EIO (before the
// kernel, in place of the result, or after a short first completion) on
// the readahead's request only. A small miss reads ahead when it looks
// sequential: at the file's start, or (the other cases) after a read that
// ends where it starts. The read must succeed with the right
// bytes; the readahead pages must not be cached; with the faults healed
// and the host changed behind the engine (in the readahead range only,
// deliberately), a read there must return the host's new bytes, which
// proves no page of the failed readahead was kept as valid.
func rowF12(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "bad_pages_valid", "acked_bytes_lost")
	checkLeaks(t)
	dir := relDir(t)
	var faults, reads int64
	for _, be := range []string{"uring", "psync"} {
		for _, kind := range []string{"issue", "complete", "short+complete"} {
			const base = 128 << 10 // room for the read before
			for _, c := range []struct{ off, n int64 }{{0, 100}, {base + 4096, 4096}, {base + 10000, 3000}, {base + 65536 + 8192, 1}} {
				inj := fault.New()
				e := newEngine(t, Options{Mode: Exclusive, CacheSize: 4 << 20, Readahead: 64 << 10, Backend: be, Injector: inj})
				path := filepath.Join(dir, "ra")
				old := pattern(512<<10, 12, 0)
				writeHost(t, path, old)
				f := openFile(t, e, path, os.O_RDONLY)
				reqEnd := (c.off + c.n + 4095) &^ 4095 // the required pages end here
				// The read before: over 64 KiB (so with no readahead of its
				// own) and ending at c.off, so that c.off's fill continues it.
				var before int64
				if c.off > 0 {
					before = c.off - 96<<10
					p := make([]byte, c.off-before)
					if n, err := f.ReadAt(p, before); n != len(p) || err != nil {
						t.Fatalf("%s/%s: ReadAt(%d at %d): %d, %v", be, kind, len(p), before, n, err)
					}
				}
				ra := fault.InRange(reqEnd, reqEnd+(64<<10))
				onlyRA := fault.And(fault.Reads(), func(i fault.Info) bool { return i.Off >= reqEnd }, ra)
				switch kind {
				case "issue":
					inj.Add(fault.Rule{Name: "EIO readahead", Stage: fault.StageIssue, When: onlyRA, Do: fault.Effect{Errno: syscall.EIO}})
				case "complete":
					inj.Add(fault.Rule{Name: "EIO readahead", Stage: fault.StageComplete, When: onlyRA, Do: fault.Effect{Errno: syscall.EIO}})
				default:
					inj.Add(fault.Rule{Name: "short readahead", Stage: fault.StageComplete, When: fault.And(onlyRA, fault.Nth(1)), Do: fault.Effect{Short: 5000}})
					inj.Add(fault.Rule{Name: "EIO rest", Stage: fault.StageComplete, When: onlyRA, Do: fault.Effect{Errno: syscall.EIO}})
				}
				p := make([]byte, c.n)
				n, err := f.ReadAt(p, c.off)
				if n != int(c.n) || err != nil {
					t.Fatalf("%s/%s: ReadAt(%d at %d) with EIO in the readahead: %d, %v", be, kind, c.n, c.off, n, err)
				}
				sameBytes(t, "foreground read", p, old[c.off:c.off+c.n])
				if inj.Fired() == 0 {
					t.Fatalf("%s/%s: no fault hit the readahead of a read at %d", be, kind, c.off)
				}
				st := fileStats(t, e, path)
				if st.ResidentBytes != reqEnd-(before&^4095) {
					t.Fatalf("%s/%s: %d bytes resident after a fill whose readahead failed, want the %d required bytes only",
						be, kind, st.ResidentBytes, reqEnd-(before&^4095))
				}
				inj.Heal()
				// Change the readahead range on the host behind the engine.
				changed := pattern(64<<10, 12, 1)
				hf, err := os.OpenFile(path, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				hf.WriteAt(changed, reqEnd)
				hf.Close()
				q := make([]byte, 64<<10)
				if n, err := f.ReadAt(q, reqEnd); n != len(q) || err != nil {
					t.Fatalf("%s/%s: read of the readahead range after healing: %d, %v", be, kind, n, err)
				}
				if !bytes.Equal(q, changed) {
					i := diffAt(q, changed)
					t.Fatalf("%s/%s: byte %d of the failed readahead range was served from the cache (got %#x, host %#x)",
						be, kind, reqEnd+int64(i), q[i], changed[i])
				}
				faults += int64(inj.Fired())
				reads++
				if err := e.Close(); err != nil {
					t.Fatalf("Engine.Close: %v", err)
				}
			}
		}
	}
	fig.Set("reads", reads)
	fig.Set("faults", faults)
	t.Logf("F12: %d reads with EIO in their readahead only: each succeeded, no readahead page was kept", reads)
}
