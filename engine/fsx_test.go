//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A Go fsx (TESTPLAN X1): random operations on one file through an
// engine's handles, each checked against a byte model at once; the size is
// checked after every operation, the whole file is re-read periodically,
// and the host file is compared with the model whenever the mode promises
// it is current. Every operation is logged as "op offset length size
// flags" (size: the model's size before it); the data an operation writes
// derives from the run's seed and the operation's index, so a log replays
// exactly (RINGFS_FSX_REPLAY=path, and the corpus in testdata/fsx).
//
// Environment:
//
//	RINGFS_FSX_OPS=n        operations per configuration (default 10000, 3000 under -race)
//	RINGFS_FSX_SEED=n       seed of the first configuration (others add 1, 2, ...)
//	RINGFS_FSX_REPLAY=f     replay one log instead of the matrix (TestFSXReplay)
//	RINGFS_FSX_MINIMIZE=s   on failure, shrink the log for up to s seconds (delta debugging)
//	RINGFS_FSX_DIR=d        run every configuration in d
//	RINGFS_SOAK=10m         longer runs (see soakFactor)

// fsxKind is an operation of the exerciser.
type fsxKind uint8

const (
	xRead         fsxKind = iota // ReadAt: flags = handle
	xWrite                       // WriteAt: flags = handle
	xMapRead                     // Map + Mapping.ReadAt: flags = handle
	xMapWrite                    // (Truncate up to the end) + Map + Mapping.WriteAt: flags = handle
	xTruncate                    // Truncate(off)
	xAllocate                    // Allocate(flags = mode, off, length)
	xSync                        // Sync (flags 0) or Datasync (flags 1)
	xReopen                      // close handle flags and open it again
	xSeekRead                    // Seek(off, whence = flags>>4) on handle flags&15, then Read(length)
	xSeekWrite                   // Seek(off, whence = flags>>4) on handle flags&15, then Write(length)
	xSeekData                    // Seek(off, SeekData) on handle flags
	xSeekHole                    // Seek(off, SeekHole) on handle flags
	xDirectRead                  // ReadAt on the O_DIRECT handle (any alignment: bounced)
	xDirectWrite                 // WriteAt on the O_DIRECT handle, aligned; flags 1: unaligned buffer
	xNowaitRead                  // ReadAtFlags(RWF_NOWAIT): a hit, or EAGAIN after a correct prefix
	xSubmit                      // Engine.Submit of flags&255 disjoint reads and writes (derived from the index); flags>>8 = 1: no direct writes
	xAppend                      // Write on the O_APPEND handle
	xPollute                     // write junk past EOF in the last page through a mapping
	xEngineReopen                // close every handle and the engine (host must equal the model), start again
	xFullRead                    // re-read the whole file in random pieces through the O_RDONLY handle
	xHold                        // flags 0: open a writable Mapping of [off, off+length) and keep it (mapread and mapwrite use it while it covers them); 1: close it
	numFsxKinds
)

var fsxNames = [numFsxKinds]string{"read", "write", "mapread", "mapwrite", "truncate", "allocate", "sync",
	"reopen", "seekread", "seekwrite", "seekdata", "seekhole", "dread", "dwrite", "nowait", "submit",
	"append", "pollute", "enginereopen", "fullread", "hold"}

func (k fsxKind) String() string { return fsxNames[k] }

// Handles of a run.
const (
	hRW     = iota // O_RDWR
	hRW2           // O_RDWR, a second handle sharing the cache
	hRO            // O_RDONLY
	hDirect        // O_RDWR|O_DIRECT (nil when the filesystem refuses)
	hAppend        // O_WRONLY|O_APPEND
	hDsync         // O_RDWR|O_DSYNC: every write durable before it returns
	numHandles
)

var handleFlags = [numHandles]int{os.O_RDWR, os.O_RDWR, os.O_RDONLY, os.O_RDWR | syscall.O_DIRECT, os.O_WRONLY | os.O_APPEND, os.O_RDWR | syscall.O_DSYNC}

// fsxOp is one logged operation.
type fsxOp struct {
	kind              fsxKind
	off, length, size int64
	flags             int64
}

func (o fsxOp) String() string {
	return fmt.Sprintf("%s %d %d %d %d", o.kind, o.off, o.length, o.size, o.flags)
}

func parseFsxOp(line string) (fsxOp, error) {
	f := strings.Fields(line)
	if len(f) != 5 {
		return fsxOp{}, fmt.Errorf("want 5 fields: %q", line)
	}
	var op fsxOp
	k := -1
	for i, n := range fsxNames {
		if n == f[0] {
			k = i
		}
	}
	if k < 0 {
		return op, fmt.Errorf("unknown op %q", f[0])
	}
	op.kind = fsxKind(k)
	var nums [4]int64
	for i := range nums {
		v, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil {
			return op, err
		}
		nums[i] = v
	}
	op.off, op.length, op.size, op.flags = nums[0], nums[1], nums[2], nums[3]
	return op, nil
}

// fsxConfig is one engine configuration of the matrix.
type fsxConfig struct {
	name string
	opts Options
	// disk runs the configuration in t.TempDir() (a disk filesystem,
	// where O_DIRECT bypasses the kernel's cache and fsync does I/O)
	// rather than on tmpfs.
	disk bool
	// noise runs goroutines doing checked I/O on other files of the same
	// engine throughout, so that eviction and its writeback of this
	// file's pages race its operations (TESTPLAN K4, K5).
	noise bool
}

// Limits of the exerciser's file and operations (fsx's defaults).
const (
	fsxMaxFile = 512 << 10
	fsxMaxOp   = 64 << 10
)

// fsx is one run.
type fsx struct {
	t      testing.TB
	cfg    fsxConfig
	seed   uint64
	path   string
	e      *Engine
	h      [numHandles]*File
	pos    [numHandles]int64 // the offsets of Read/Write/Seek, as the model predicts them
	direct bool              // the filesystem takes O_DIRECT
	// zeroRange: the filesystem has FALLOC_FL_ZERO_RANGE (tmpfs has not).
	zeroRange bool
	// eofZeroed: the filesystem zeroes junk written past EOF through a
	// mapping when a buffered write extends the file (ext4 does, tmpfs
	// does not); pollute runs only then.
	eofZeroed bool
	model     []byte
	log       []fsxOp
	idx       int // index of the operation running
	counts    [numFsxKinds]int
	spent     [numFsxKinds]time.Duration
	scr       []byte // scratch buffer
	// relaxed replays take the sizes of the log as they come (a
	// minimized log has lost the operations that set them).
	relaxed bool
	// held is a Mapping kept open across operations (xHold), of
	// [heldOff, heldOff+len(held.Bytes())).
	held    *Mapping
	heldOff int64
	// polluted is set while junk written past EOF through a mapping may
	// still be in the host's page cache (see pollute).
	polluted     bool
	pollutedSize int64
	// noise goroutines (fsxConfig.noise).
	noiseStop chan struct{}
	noiseWG   sync.WaitGroup
	noiseErr  atomic.Pointer[error]
}

// hostCurrent reports whether the host file equals the model after every
// operation (everything but Exclusive mode with a cache).
func (x *fsx) hostCurrent() bool {
	return x.cfg.opts.Mode != Exclusive || x.e.cache == nil
}

func newFsx(t testing.TB, cfg fsxConfig, seed uint64, dir string) *fsx {
	x := &fsx{t: t, cfg: cfg, seed: seed, path: filepath.Join(dir, "fsx.dat"), direct: directSupported(dir)}
	writeHost(t, x.path, nil)
	x.zeroRange = zeroRangeSupported(x.path)
	x.eofZeroed = eofZeroedOnExtend(t, dir)
	x.start()
	return x
}

// start creates the engine and opens every handle.
func (x *fsx) start() {
	e, err := New(x.cfg.opts)
	if err != nil {
		x.t.Fatalf("%s: New: %v", x.cfg.name, err)
	}
	if e.cache != nil {
		cacheSizes.Store(uint64(e.cache.Capacity()), struct{}{})
	}
	x.e = e
	for i := range x.h {
		x.openHandle(i)
	}
	if x.cfg.noise {
		x.startNoise()
	}
}

// startNoise starts goroutines that each own another file of the engine
// and write and read it (every read checked), with garbage collections
// now and then, until stopNoise.
func (x *fsx) startNoise() {
	x.noiseStop = make(chan struct{})
	dir := filepath.Dir(x.path)
	for g := range 3 {
		path := filepath.Join(dir, fmt.Sprintf("noise%d", g))
		f, err := x.e.Open(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			x.failf("noise open: %v", err)
		}
		x.noiseWG.Add(1)
		go func() {
			defer x.noiseWG.Done()
			defer f.Close()
			rng := rand.New(rand.NewPCG(x.seed, uint64(g)+1<<40))
			model := make([]byte, 256<<10)
			written := int64(0)
			for i := 0; ; i++ {
				select {
				case <-x.noiseStop:
					return
				default:
				}
				off := rng.Int64N(int64(len(model)) - 8192)
				n := 1 + rng.Int64N(8192)
				if rng.IntN(2) == 0 {
					p := pattern(int(n), x.seed, uint64(g)<<48|uint64(i))
					if w, err := f.WriteAt(p, off); w != int(n) || err != nil {
						err := fmt.Errorf("noise %d WriteAt: %d, %v", g, w, err)
						x.noiseErr.CompareAndSwap(nil, &err)
						return
					}
					copy(model[off:], p)
					written = max(written, off+n)
				} else {
					p := make([]byte, n)
					got, err := f.ReadAt(p, off)
					want := max(0, min(n, written-off))
					if int64(got) != want || (err != nil && err != io.EOF) || !bytes.Equal(p[:got], model[off:off+int64(got)]) {
						err := fmt.Errorf("noise %d ReadAt(%d, %d): %d (want %d), %v, equal %v",
							g, n, off, got, want, err, bytes.Equal(p[:got], model[off:off+int64(got)]))
						x.noiseErr.CompareAndSwap(nil, &err)
						return
					}
				}
				if i%500 == 499 {
					runtime.GC()
				}
			}
		}()
	}
}

// stopNoise stops the noise goroutines and fails the run if one failed.
func (x *fsx) stopNoise() {
	if x.noiseStop == nil {
		return
	}
	close(x.noiseStop)
	x.noiseWG.Wait()
	x.noiseStop = nil
	if err := x.noiseErr.Load(); err != nil {
		x.failf("%v", *err)
	}
}

func (x *fsx) openHandle(i int) {
	if i == hDirect && !x.direct {
		return
	}
	f, err := x.e.Open(x.path, handleFlags[i], 0o644)
	if err != nil {
		x.failf("open handle %d: %v", i, err)
	}
	x.h[i], x.pos[i] = f, 0
}

// stop closes every handle and the engine; the host must then equal the
// model.
func (x *fsx) stop() {
	x.stopNoise()
	x.release()
	for i, f := range x.h {
		if f != nil {
			if err := f.Close(); err != nil {
				x.failf("close handle %d: %v", i, err)
			}
			x.h[i] = nil
		}
	}
	if err := x.e.Close(); err != nil {
		x.failf("Engine.Close: %v", err)
	}
	x.checkHost("after Engine.Close")
}

// fsxFailure is a failed check, raised by failf as a panic so that a
// run (or a replay while minimizing) can be stopped and examined.
type fsxFailure struct {
	op  int // index of the failing operation
	msg string
}

// failf stops the run with a failed check.
func (x *fsx) failf(format string, args ...any) {
	panic(&fsxFailure{op: x.idx, msg: fmt.Sprintf(format, args...)})
}

// guard runs fn and returns the failure it raised, if any. After a
// failure the engine is closed without checks.
func (x *fsx) guard(fn func()) (fail *fsxFailure) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(*fsxFailure)
			if !ok {
				panic(r)
			}
			fail = f
			if x.noiseStop != nil {
				close(x.noiseStop)
				x.noiseWG.Wait()
				x.noiseStop = nil
			}
			for i, h := range x.h {
				if h != nil {
					h.Close()
					x.h[i] = nil
				}
			}
			if x.e != nil {
				x.e.Close()
			}
		}
	}()
	fn()
	return nil
}

// logText renders ops as a replayable log.
func (x *fsx) logText(ops []fsxOp) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# ringfs fsx log: config %s seed %d\n# op offset length size flags\n", x.cfg.name, x.seed)
	for _, op := range ops {
		fmt.Fprintln(&b, op)
	}
	return b.String()
}

// report fails the test with the seed, the configuration, the last
// operations and the path of the whole log, kept for replay. With
// RINGFS_FSX_MINIMIZE set it also shrinks the log first.
func (x *fsx) report(f *fsxFailure) {
	x.t.Helper()
	name := strings.ReplaceAll(x.cfg.name, "/", "_")
	logPath := filepath.Join(os.TempDir(), fmt.Sprintf("ringfs-fsx-%s-%d.log", name, x.seed))
	werr := os.WriteFile(logPath, []byte(x.logText(x.log)), 0o644)
	tail := x.log[max(0, len(x.log)-40):]
	var tb strings.Builder
	for i, op := range tail {
		fmt.Fprintf(&tb, "  %6d %s\n", len(x.log)-len(tail)+i, op)
	}
	minimized := ""
	if os.Getenv("RINGFS_FSX_MINIMIZE") != "" {
		budget := time.Minute
		if sec, err := strconv.Atoi(os.Getenv("RINGFS_FSX_MINIMIZE")); err == nil && sec > 1 {
			budget = time.Duration(sec) * time.Second
		}
		ops, mf := minimizeFsx(x.t, x.cfg, x.seed, x.log, budget)
		minPath := logPath + ".min"
		os.WriteFile(minPath, []byte(x.logText(ops)), 0o644)
		minimized = fmt.Sprintf("\nminimized to %d operations (%s), failing with: %s", len(ops), minPath, mf.msg)
	}
	x.t.Fatalf("fsx %s seed %d: op %d (%s): %s\nmodel size %d; last operations:\n%sfull log: %s (write error: %v); replay: RINGFS_FSX_REPLAY=%s go test -run TestFSXReplay ./engine/%s",
		x.cfg.name, x.seed, f.op, x.log[len(x.log)-1], f.msg, len(x.model), tb.String(), logPath, werr, logPath, minimized)
}

// replayFails replays ops on a fresh file and engine and returns the
// failure, if any, and the operations run (with their real sizes).
func replayFails(t testing.TB, cfg fsxConfig, seed uint64, ops []fsxOp) (*fsxFailure, []fsxOp) {
	base := os.Getenv("RINGFS_FSX_DIR")
	if base == "" && !cfg.disk && tmpfsUsable() {
		base = "/dev/shm"
	}
	dir, err := os.MkdirTemp(base, "ringfs-fsx-min-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	x := newFsx(t, cfg, seed, dir)
	x.relaxed = true
	f := x.guard(func() {
		x.replay(ops)
		x.stop()
	})
	return f, x.log
}

// minimizeFsx shrinks a failing log by dropping chunks of operations
// while the replay still fails (delta debugging), within budget.
func minimizeFsx(t testing.TB, cfg fsxConfig, seed uint64, ops []fsxOp, budget time.Duration) ([]fsxOp, *fsxFailure) {
	deadline := time.Now().Add(budget)
	last, cur := replayFails(t, cfg, seed, ops)
	if last == nil {
		return ops, &fsxFailure{msg: "does not fail on replay"}
	}
	for chunk := len(cur) / 2; chunk >= 1 && time.Now().Before(deadline); chunk /= 2 {
		for i := 0; i+chunk <= len(cur) && time.Now().Before(deadline); {
			try := append(slices.Clone(cur[:i]), cur[i+chunk:]...)
			if f, ran := replayFails(t, cfg, seed, try); f != nil {
				cur, last = ran, f
				continue
			}
			i += chunk
		}
	}
	return cur, last
}

// ---- the model ----

func (x *fsx) modelWrite(off int64, p []byte) {
	if end := off + int64(len(p)); end > int64(len(x.model)) {
		x.model = append(x.model, make([]byte, end-int64(len(x.model)))...)
	}
	copy(x.model[off:], p)
}

func (x *fsx) modelResize(size int64) {
	if size <= int64(len(x.model)) {
		x.model = x.model[:size]
		return
	}
	x.model = append(x.model, make([]byte, size-int64(len(x.model)))...)
}

// ---- checks ----

// checkRead checks a read of len(p) bytes at off that returned n, err
// (io.ReaderAt rules: n < len(p) only with an error; io.EOF exactly when
// the read ran into the end of file).
func (x *fsx) checkRead(what string, p []byte, off int64, n int, err error) {
	x.t.Helper()
	size := int64(len(x.model))
	want := int(max(0, min(int64(len(p)), size-off)))
	if n != want {
		x.failf("%s: read %d bytes at %d: got %d, want %d (err %v)", what, len(p), off, n, want, err)
	}
	switch {
	case n < len(p) && err != io.EOF:
		x.failf("%s: short read %d/%d at %d: err %v, want io.EOF", what, n, len(p), off, err)
	case n == len(p) && err != nil && err != io.EOF:
		x.failf("%s: full read: err %v", what, err)
	}
	if n > 0 && !bytes.Equal(p[:n], x.model[off:off+int64(n)]) {
		i := diffAt(p[:n], x.model[off:off+int64(n)])
		x.failf("%s: data differs at file offset %d (got %#x, want %#x)", what, off+int64(i), p[i], x.model[off+int64(i)])
	}
}

func (x *fsx) checkSize() {
	x.t.Helper()
	fi, err := x.h[hRW].Stat()
	if err != nil {
		x.failf("Stat: %v", err)
	}
	if fi.Size() != int64(len(x.model)) {
		x.failf("size %d, model %d", fi.Size(), len(x.model))
	}
}

func (x *fsx) checkHost(when string) {
	x.t.Helper()
	got, err := os.ReadFile(x.path)
	if err != nil {
		x.failf("reading host: %v", err)
	}
	if !bytes.Equal(got, x.model) {
		i := diffAt(got, x.model)
		x.failf("host differs from model %s: host %d bytes, model %d, first difference at %d", when, len(got), len(x.model), i)
	}
}

func (x *fsx) buf(n int64) []byte {
	if int64(cap(x.scr)) < n {
		x.scr = make([]byte, n)
	}
	return x.scr[:n]
}

// ---- generation ----

// genOp draws the next operation.
func (x *fsx) genOp(rng *rand.Rand) fsxOp {
	size := int64(len(x.model))
	op := fsxOp{size: size}
	if rng.IntN(20000) == 0 {
		op.kind = xEngineReopen
		return op
	}
	if rng.IntN(100) == 0 {
		op.kind = xHold
		if x.held != nil {
			op.flags = 1
		} else if size > 0 {
			op.off = rng.Int64N(size)
			op.length = 1 + rng.Int64N(min(size-op.off, 256<<10))
		}
		return op
	}
	w := rng.IntN(100)
	switch {
	case w < 17:
		op.kind, op.flags = xRead, int64([]int{hRW, hRW2, hRO}[rng.IntN(3)])
		op.off, op.length = x.genRange(rng, size+8192)
		op.length = max(op.length, 1)
	case w < 34:
		op.kind, op.flags = xWrite, int64(rng.IntN(2))
		if rng.IntN(16) == 0 {
			op.flags = hDsync
		}
		op.off, op.length = x.genRange(rng, fsxMaxFile)
		op.length = max(op.length, 1)
	case w < 37:
		op.kind, op.flags = xMapRead, int64(rng.IntN(2))
		if size == 0 {
			return x.genOp(rng)
		}
		op.off = rng.Int64N(size)
		op.length = 1 + rng.Int64N(min(size-op.off, fsxMaxOp))
	case w < 40:
		op.kind, op.flags = xMapWrite, int64(rng.IntN(2))
		op.off, op.length = x.genRange(rng, fsxMaxFile)
		op.length = max(op.length, 1)
	case w < 43:
		op.kind = xTruncate
		op.off = rng.Int64N(fsxMaxFile + 1)
		if rng.IntN(3) == 0 {
			op.off &^= 4095
		}
	case w < 49:
		op.kind = xAllocate
		op.flags = int64([]uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
			unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_ZERO_RANGE,
			unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE}[rng.IntN(6)])
		if op.flags&unix.FALLOC_FL_ZERO_RANGE != 0 && !x.zeroRange {
			op.flags = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
		}
		op.off, op.length = x.genRange(rng, fsxMaxFile)
		op.length = max(op.length, 1)
	case w < 51:
		op.kind, op.flags = xSync, int64(rng.IntN(2))
	case w < 52:
		op.kind, op.flags = xReopen, int64(rng.IntN(numHandles))
	case w < 56:
		op.kind = xSeekRead
		op.flags = int64(rng.IntN(3))<<4 | int64([]int{hRW, hRW2, hRO}[rng.IntN(3)])
		op.off, op.length = x.genSeek(rng, int(op.flags>>4), int(op.flags&15))
	case w < 60:
		op.kind = xSeekWrite
		op.flags = int64(rng.IntN(3))<<4 | int64(rng.IntN(2))
		op.off, op.length = x.genSeek(rng, int(op.flags>>4), int(op.flags&15))
	case w < 62:
		op.kind, op.flags = xSeekData, int64(rng.IntN(3))
		op.off = rng.Int64N(size + 4096)
	case w < 64:
		op.kind, op.flags = xSeekHole, int64(rng.IntN(3))
		op.off = rng.Int64N(size + 4096)
	case w < 68:
		if !x.direct {
			return x.genOp(rng)
		}
		op.kind = xDirectRead
		op.off, op.length = x.genRange(rng, size+8192)
		op.length = max(op.length, 1)
	case w < 72:
		if !x.direct {
			return x.genOp(rng)
		}
		if x.polluted {
			return x.genOp(rng) // see pollute
		}
		op.kind = xDirectWrite
		op.off = rng.Int64N(fsxMaxFile/4096) * 4096
		op.length = (1 + rng.Int64N(min(16, (fsxMaxFile-op.off)/4096))) * 4096
		op.flags = int64(rng.IntN(2))
	case w < 75:
		op.kind = xNowaitRead
		op.flags = int64(rng.IntN(3))
		op.off, op.length = x.genRange(rng, size+4096)
		op.length = max(op.length, 1)
	case w < 80:
		op.kind, op.flags = xSubmit, int64(2+rng.IntN(7))
		if x.polluted {
			op.flags |= 1 << 8
		}
	case w < 83:
		op.kind = xAppend
		op.length = 1 + rng.Int64N(min(8192, max(fsxMaxFile-size, 1)))
		if size >= fsxMaxFile {
			return x.genOp(rng)
		}
	case w < 84:
		if x.cfg.opts.DirectIO || !x.eofZeroed {
			return x.genOp(rng) // see pollute
		}
		op.kind = xPollute
	default:
		// A second helping of the two commonest operations.
		if rng.IntN(2) == 0 {
			op.kind, op.flags = xRead, int64(rng.IntN(3))
			op.off, op.length = x.genRange(rng, size+8192)
		} else {
			op.kind, op.flags = xWrite, int64(rng.IntN(2))
			op.off, op.length = x.genRange(rng, fsxMaxFile)
		}
		op.length = max(op.length, 1)
	}
	return op
}

// genRange draws [off, off+length) within [0, limit): small, arbitrary or
// page-aligned, as fsx mixes them.
func (x *fsx) genRange(rng *rand.Rand, limit int64) (int64, int64) {
	limit = max(limit, 1)
	var off, n int64
	switch rng.IntN(10) {
	case 0, 1, 2, 3:
		off, n = rng.Int64N(limit), 1+rng.Int64N(512)
	case 4, 5, 6:
		off, n = rng.Int64N(limit), 1+rng.Int64N(fsxMaxOp)
	default:
		off, n = rng.Int64N(limit/4096+1)*4096, (1+rng.Int64N(16))*4096
	}
	off = min(off, limit-1)
	return off, max(min(n, limit-off), 1)
}

// genSeek draws a seek argument for whence that lands in [0, fsxMaxFile),
// and a length for the read or write after it.
func (x *fsx) genSeek(rng *rand.Rand, whence, h int) (int64, int64) {
	target := rng.Int64N(max(int64(len(x.model))+4096, 1))
	if rng.IntN(4) == 0 {
		target = x.pos[h] // no move
	}
	target = min(target, fsxMaxFile-1)
	n := 1 + rng.Int64N(min(8192, fsxMaxFile-target))
	switch whence {
	case io.SeekCurrent:
		return target - x.pos[h], n
	case io.SeekEnd:
		return target - int64(len(x.model)), n
	}
	return target, n
}

// ---- execution ----

// exec runs one operation and checks it against the model.
func (x *fsx) exec(op fsxOp) {
	x.t.Helper()
	x.log = append(x.log, op)
	x.counts[op.kind]++
	if x.relaxed {
		op.size = int64(len(x.model))
		x.log[len(x.log)-1] = op
	}
	if op.size != int64(len(x.model)) {
		x.failf("log out of step: operation says size %d, model has %d", op.size, len(x.model))
	}
	tag := uint64(x.idx)
	start := time.Now()
	defer func() { x.spent[op.kind] += time.Since(start) }()
	switch op.kind {
	case xRead:
		p := x.buf(op.length)
		n, err := x.h[op.flags].ReadAt(p, op.off)
		x.checkRead("ReadAt", p, op.off, n, err)
	case xWrite:
		p := pattern(int(op.length), x.seed, tag)
		n, err := x.h[op.flags].WriteAt(p, op.off)
		if n != len(p) || err != nil {
			x.failf("WriteAt: %d, %v", n, err)
		}
		x.modelWrite(op.off, p)
	case xMapRead:
		x.mapRead(op)
	case xMapWrite:
		x.mapWrite(op, tag)
	case xTruncate:
		if err := x.h[hRW].Truncate(op.off); err != nil {
			x.failf("Truncate: %v", err)
		}
		x.modelResize(op.off)
	case xAllocate:
		x.allocate(op)
	case xSync:
		var err error
		if op.flags == 0 {
			err = x.h[hRW].Sync()
		} else {
			err = x.h[hRW2].Datasync()
		}
		if err != nil {
			x.failf("sync: %v", err)
		}
		x.checkHost("after Sync")
		if x.polluted && int64(len(x.model)) != x.pollutedSize {
			x.polluted = false
		}
	case xReopen:
		if x.h[op.flags] != nil {
			if err := x.h[op.flags].Close(); err != nil {
				x.failf("Close: %v", err)
			}
			x.openHandle(int(op.flags))
		}
	case xSeekRead, xSeekWrite:
		x.seekRW(op, tag)
	case xSeekData, xSeekHole:
		x.seekExtent(op)
	case xDirectRead, xDirectWrite:
		if x.h[hDirect] == nil {
			break // a replayed log on a filesystem without O_DIRECT
		}
		if op.kind == xDirectRead {
			x.directRead(op)
		} else {
			x.directWrite(op, tag)
		}
	case xNowaitRead:
		x.nowaitRead(op)
	case xSubmit:
		x.submit(op, tag)
	case xAppend:
		p := pattern(int(op.length), x.seed, tag)
		n, err := x.h[hAppend].Write(p)
		if n != len(p) || err != nil {
			x.failf("append Write: %d, %v", n, err)
		}
		x.modelWrite(int64(len(x.model)), p)
	case xPollute:
		x.pollute(tag)
	case xEngineReopen:
		x.stop()
		x.start()
	case xFullRead:
		x.fullRead(tag)
	case xHold:
		x.hold(op)
	}
	x.checkSize()
	if x.noiseStop != nil {
		if err := x.noiseErr.Load(); err != nil {
			x.failf("%v", *err)
		}
	}
	x.idx++
}

// hold opens or closes the kept Mapping. While it is open the engine does
// not cache the file (reads and writes go to the host), and mapread and
// mapwrite inside its window use it.
func (x *fsx) hold(op fsxOp) {
	if op.flags == 1 {
		x.release()
		return
	}
	if x.held != nil || op.length <= 0 {
		return
	}
	if size := int64(len(x.model)); op.off+op.length > size {
		if !x.relaxed {
			x.failf("hold past the end in the log")
		}
		if op.length = size - op.off; op.length <= 0 {
			return
		}
	}
	m, err := x.h[hRW2].Map(op.off, op.length, true)
	if err != nil {
		x.failf("Map to hold: %v", err)
	}
	x.held, x.heldOff = m, op.off
}

func (x *fsx) release() {
	if x.held == nil {
		return
	}
	if err := x.held.Close(); err != nil {
		x.failf("closing the held Mapping: %v", err)
	}
	x.held = nil
}

// heldCovers reports whether the held Mapping covers [off, off+n) below
// the size (past the end its pages may fault).
func (x *fsx) heldCovers(off, n int64) bool {
	return x.held != nil && off >= x.heldOff && off+n <= x.heldOff+int64(x.held.Len()) && off+n <= int64(len(x.model))
}

func (x *fsx) mapRead(op fsxOp) {
	if op.off+op.length > int64(len(x.model)) {
		if !x.relaxed {
			x.failf("mapread past the end in the log")
		}
		if op.length = int64(len(x.model)) - op.off; op.length <= 0 {
			return
		}
	}
	if x.heldCovers(op.off, op.length) {
		p := x.buf(op.length)
		if n, err := x.held.ReadAt(p, op.off-x.heldOff); n != len(p) || err != nil {
			x.failf("held Mapping.ReadAt: %d, %v", n, err)
		}
		if !bytes.Equal(p, x.model[op.off:op.off+op.length]) {
			x.failf("held mapping's bytes differ at file offset %d", op.off+int64(diffAt(p, x.model[op.off:op.off+op.length])))
		}
		return
	}
	m, err := x.h[op.flags].Map(op.off, op.length, false)
	if err != nil {
		x.failf("Map: %v", err)
	}
	p := x.buf(op.length)
	n, err := m.ReadAt(p, 0)
	if n != len(p) || err != nil {
		m.Close()
		x.failf("Mapping.ReadAt: %d, %v", n, err)
	}
	if !bytes.Equal(p, x.model[op.off:op.off+op.length]) {
		i := diffAt(p, x.model[op.off:op.off+op.length])
		m.Close()
		x.failf("mapped bytes differ at file offset %d", op.off+int64(i))
	}
	if b := m.Bytes(); len(b) != int(op.length) || !bytes.Equal(b, p) {
		m.Close()
		x.failf("Mapping.Bytes differs from Mapping.ReadAt")
	}
	if err := m.Close(); err != nil {
		x.failf("Mapping.Close: %v", err)
	}
}

func (x *fsx) mapWrite(op fsxOp, tag uint64) {
	f := x.h[op.flags]
	if x.heldCovers(op.off, op.length) {
		p := pattern(int(op.length), x.seed, tag)
		if n, err := x.held.WriteAt(p, op.off-x.heldOff); n != len(p) || err != nil {
			x.failf("held Mapping.WriteAt: %d, %v", n, err)
		}
		x.modelWrite(op.off, p)
		return
	}
	if end := op.off + op.length; end > int64(len(x.model)) {
		// A mapping cannot extend the file: grow it first, as fsx does.
		if err := f.Truncate(end); err != nil {
			x.failf("Truncate before mapwrite: %v", err)
		}
		x.modelResize(end)
	}
	m, err := f.Map(op.off, op.length, true)
	if err != nil {
		x.failf("Map writable: %v", err)
	}
	p := pattern(int(op.length), x.seed, tag)
	n, err := m.WriteAt(p, 0)
	if n != len(p) || err != nil {
		m.Close()
		x.failf("Mapping.WriteAt: %d, %v", n, err)
	}
	x.modelWrite(op.off, p)
	if err := m.Close(); err != nil {
		x.failf("Mapping.Close: %v", err)
	}
}

func (x *fsx) allocate(op fsxOp) {
	mode := uint32(op.flags)
	if err := x.h[hRW].Allocate(mode, op.off, op.length); err != nil {
		x.failf("Allocate(%#x): %v", mode, err)
	}
	end := op.off + op.length
	if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
		clear(x.model[min(op.off, int64(len(x.model))):min(end, int64(len(x.model)))])
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && end > int64(len(x.model)) {
		x.modelResize(end)
	}
}

func (x *fsx) seekRW(op fsxOp, tag uint64) {
	whence, h := int(op.flags>>4), int(op.flags&15)
	f := x.h[h]
	want := op.off
	switch whence {
	case io.SeekCurrent:
		want += x.pos[h]
	case io.SeekEnd:
		want += int64(len(x.model))
	}
	if want < 0 && x.relaxed {
		return
	}
	pos, err := f.Seek(op.off, whence)
	if err != nil || pos != want {
		x.failf("Seek(%d, %d) = %d, %v; want %d", op.off, whence, pos, err, want)
	}
	x.pos[h] = pos
	if op.kind == xSeekRead {
		p := x.buf(op.length)
		n, err := f.Read(p)
		// Read: io.EOF only with n == 0.
		size := int64(len(x.model))
		wantN := int(max(0, min(op.length, size-pos)))
		if n != wantN || (n == 0 && err != io.EOF) || (n > 0 && err != nil) {
			x.failf("Read at %d: %d, %v; want %d", pos, n, err, wantN)
		}
		if n > 0 && !bytes.Equal(p[:n], x.model[pos:pos+int64(n)]) {
			x.failf("Read at %d: data differs at %d", pos, pos+int64(diffAt(p[:n], x.model[pos:pos+int64(n)])))
		}
		x.pos[h] += int64(n)
		return
	}
	p := pattern(int(op.length), x.seed, tag)
	n, err := f.Write(p)
	if n != len(p) || err != nil {
		x.failf("Write at %d: %d, %v", pos, n, err)
	}
	x.modelWrite(pos, p)
	x.pos[h] += int64(n)
}

// seekExtent checks SEEK_DATA/SEEK_HOLE for consistency with the model:
// at or past the end, ENXIO; SEEK_DATA lands in [off, size) with only
// zeros skipped, or ENXIO when only zeros remain; SEEK_HOLE lands in
// [off, size] on a zero byte (or at the end).
func (x *fsx) seekExtent(op fsxOp) {
	h := int(op.flags)
	f := x.h[h]
	whence := SeekData
	if op.kind == xSeekHole {
		whence = SeekHole
	}
	size := int64(len(x.model))
	pos, err := f.Seek(op.off, whence)
	if op.off >= size {
		if errnoOf(err) != syscall.ENXIO {
			x.failf("Seek(%d, %d) at/after EOF %d: %d, %v; want ENXIO", op.off, whence, size, pos, err)
		}
		return
	}
	firstNonzero := int64(-1)
	if i := firstNonzeroByte(x.model[op.off:]); i >= 0 {
		firstNonzero = op.off + int64(i)
	}
	if whence == SeekData {
		if errnoOf(err) == syscall.ENXIO {
			if firstNonzero >= 0 {
				x.failf("SEEK_DATA(%d) = ENXIO but byte %d is data", op.off, firstNonzero)
			}
			return
		}
		if err != nil || pos < op.off || pos >= size || (firstNonzero >= 0 && pos > firstNonzero) {
			x.failf("SEEK_DATA(%d) = %d, %v; first nonzero byte %d, size %d", op.off, pos, err, firstNonzero, size)
		}
	} else {
		if err != nil || pos < op.off || pos > size || (pos < size && x.model[pos] != 0) {
			x.failf("SEEK_HOLE(%d) = %d, %v; size %d", op.off, pos, err, size)
		}
	}
	x.pos[h] = pos
}

func (x *fsx) directRead(op fsxOp) {
	p := alignedBuf(int(op.length) + 1)
	if op.length%2 == 1 {
		p = p[1:] // an unaligned buffer now and then: bounced
	} else {
		p = p[:op.length]
	}
	n, err := x.h[hDirect].ReadAt(p, op.off)
	x.checkRead("direct ReadAt", p, op.off, n, err)
}

func (x *fsx) directWrite(op fsxOp, tag uint64) {
	p := alignedBuf(int(op.length) + 1)
	if op.flags == 1 {
		p = p[1:]
	} else {
		p = p[:op.length]
	}
	fillData(p, x.seed, tag)
	n, err := x.h[hDirect].WriteAt(p, op.off)
	if n != len(p) || err != nil {
		x.failf("direct WriteAt: %d, %v", n, err)
	}
	x.modelWrite(op.off, p)
}

func (x *fsx) nowaitRead(op fsxOp) {
	p := x.buf(op.length)
	n, err := x.h[op.flags].ReadAtFlags(p, op.off, unix.RWF_NOWAIT)
	if errnoOf(err) == syscall.EOPNOTSUPP && x.e.cache == nil && n == 0 {
		return // the host's answer: tmpfs has no RWF_NOWAIT
	}
	if errnoOf(err) == syscall.EAGAIN {
		// A miss: what was copied before it must still be right.
		size := int64(len(x.model))
		if n < 0 || int64(n) > max(0, min(op.length, size-op.off)) {
			x.failf("RWF_NOWAIT read: EAGAIN after %d bytes", n)
		}
		if n > 0 && !bytes.Equal(p[:n], x.model[op.off:op.off+int64(n)]) {
			x.failf("RWF_NOWAIT read: EAGAIN after %d wrong bytes", n)
		}
		return
	}
	x.checkRead("RWF_NOWAIT ReadAt", p, op.off, n, err)
}

// submit runs a batch of reads and writes on disjoint ranges (their order
// within the batch is free). Reads lie below the size before the batch, so
// the batch's writes cannot change what they see.
func (x *fsx) submit(op fsxOp, tag uint64) {
	rng := rand.New(rand.NewPCG(x.seed, tag))
	size := int64(len(x.model))
	count, noDirectWrites := op.flags&255, op.flags>>8 == 1
	slot := int64(fsxMaxFile / count)
	ops := make([]Op, 0, count)
	type planned struct {
		read bool
		off  int64
		data []byte
	}
	var plan []planned
	for i := range count {
		lo := i * slot
		read := rng.IntN(2) == 0 && lo < size
		var off, n int64
		h := rng.IntN(3)
		if read {
			off = lo + rng.Int64N(min(slot, size-lo))
			n = 1 + rng.Int64N(min(lo+slot, size)-off)
		} else {
			off = lo + rng.Int64N(slot)
			n = 1 + rng.Int64N(min(lo+slot-off, fsxMaxOp))
			h = rng.IntN(2)
		}
		if x.direct && rng.IntN(3) == 0 && (read || (lo%4096 == 0 && slot >= 4096 && !noDirectWrites)) {
			h = hDirect
			if !read {
				off = lo + rng.Int64N(slot/4096)*4096
				n = (1 + rng.Int64N((lo+slot-off)/4096)) * 4096
			}
		}
		var buf []byte
		if h == hDirect {
			buf = alignedBuf(int(n))
		} else {
			buf = make([]byte, n)
		}
		if !read {
			fillData(buf, x.seed, tag<<8|uint64(i))
		}
		ops = append(ops, Op{File: x.h[h], Write: !read, Buf: buf, Off: off})
		plan = append(plan, planned{read: read, off: off, data: buf})
	}
	if err := x.e.Submit(ops); err != nil {
		x.failf("Submit: %v", err)
	}
	for i := range ops {
		o := &ops[i]
		if plan[i].read {
			x.checkRead(fmt.Sprintf("Submit read %d (handle %s)", i, o.File.Name()), o.Buf, o.Off, o.N, o.Err)
			continue
		}
		if o.N != len(o.Buf) || o.Err != nil {
			x.failf("Submit write %d: %d, %v", i, o.N, o.Err)
		}
	}
	for _, pl := range plan {
		if !pl.read {
			x.modelWrite(pl.off, pl.data)
		}
	}
}

// pollute writes junk past the end of file in the last page through a
// writable mapping. POSIX says those bytes read as zeros once the file
// grows over them; the model keeps them zero. Linux zeroes them when a
// buffered write, truncate or fallocate extends the file, but not when an
// O_DIRECT write does (ext4 on 6.18: the junk stays in the page cache and
// is read back; os.File shows the same), so until a Sync after the size
// changed has extended the host by buffered writes, the run makes no
// direct writes, and DirectIO engines (whose writeback is direct) do not
// pollute at all.
func (x *fsx) pollute(tag uint64) {
	size := int64(len(x.model))
	if size%4096 == 0 {
		return
	}
	ps := size &^ 4095
	m, err := x.h[hRW].Map(ps, 4096, true)
	if err != nil {
		x.failf("Map of the EOF page: %v", err)
	}
	junk := pattern(int(ps+4096-size), x.seed, tag)
	if n, err := m.WriteAt(junk, size-ps); n != len(junk) || err != nil {
		m.Close()
		x.failf("writing past EOF through a mapping: %d, %v", n, err)
	}
	p := make([]byte, size-ps)
	if n, err := m.ReadAt(p, 0); n != len(p) || err != nil || !bytes.Equal(p, x.model[ps:]) {
		m.Close()
		x.failf("EOF page through a mapping: %d, %v, equal %v", n, err, bytes.Equal(p, x.model[ps:]))
	}
	if err := m.Close(); err != nil {
		x.failf("Mapping.Close: %v", err)
	}
	x.polluted, x.pollutedSize = true, size
}

func (x *fsx) fullRead(tag uint64) {
	rng := rand.New(rand.NewPCG(x.seed, tag))
	size := int64(len(x.model))
	for off := int64(0); off <= size; {
		n := 1 + rng.Int64N(3*fsxMaxOp)
		p := x.buf(n)
		got, err := x.h[hRO].ReadAt(p, off)
		x.checkRead("full re-read", p, off, got, err)
		off += n
	}
}

// run performs n random operations, with the periodic checks.
func (x *fsx) run(n int) {
	rng := rand.New(rand.NewPCG(x.seed, 0x5eed))
	for i := 0; i < n; i++ {
		op := x.genOp(rng)
		x.exec(op)
		if i%1000 == 999 {
			x.exec(fsxOp{kind: xFullRead, size: int64(len(x.model))})
		}
		if i%256 == 255 && x.hostCurrent() {
			x.checkHost("(mode keeps the host current)")
		}
	}
	x.exec(fsxOp{kind: xFullRead, size: int64(len(x.model))})
}

// replay runs logged operations.
func (x *fsx) replay(ops []fsxOp) {
	for _, op := range ops {
		x.exec(op)
	}
}

// ---- the matrix ----

const fsxTinyCache = 16 * 4096

// fsxConfigs is the matrix: every mode × cache {tiny, default, none} ×
// readahead {4 KiB, 64 KiB} × backend {uring, psync}, with the
// combinations a mode makes identical folded (Shared never caches, an
// uncached engine never reads ahead), plus HostMmap and DirectIO
// variants.
func fsxConfigs() []fsxConfig {
	var out []fsxConfig
	add := func(name string, o Options) {
		disk := o.DirectIO
		out = append(out, fsxConfig{name: name, opts: o, disk: disk})
	}
	for _, be := range []string{"uring", "psync"} {
		for _, mode := range []Mode{Exclusive, Writethrough} {
			for _, cache := range []struct {
				name string
				size int64
			}{{"tiny", fsxTinyCache}, {"default", 0}} {
				for _, ra := range []int{4 << 10, 64 << 10} {
					add(fmt.Sprintf("%s/cache=%s/ra=%dKiB/be=%s", mode, cache.name, ra>>10, be),
						Options{Mode: mode, CacheSize: cache.size, Readahead: ra, Backend: be})
				}
			}
			add(fmt.Sprintf("%s/cache=none/be=%s", mode, be), Options{Mode: mode, CacheSize: -1, Backend: be})
			add(fmt.Sprintf("%s/hostmmap/be=%s", mode, be), Options{Mode: mode, HostMmap: true, Backend: be})
			add(fmt.Sprintf("%s/directio/cache=tiny/be=%s", mode, be), Options{Mode: mode, CacheSize: fsxTinyCache, DirectIO: true, Backend: be})
		}
		add(fmt.Sprintf("shared/be=%s", be), Options{Mode: Shared, Backend: be})
	}
	add("exclusive/directio/cache=default/be=uring", Options{Mode: Exclusive, DirectIO: true})
	// Other files of the engine busy all along: eviction and writeback race
	// every operation.
	out = append(out, fsxConfig{name: "exclusive/cache=tiny/noise/be=uring", opts: Options{Mode: Exclusive, CacheSize: fsxTinyCache}, noise: true},
		fsxConfig{name: "writethrough/cache=tiny/noise/be=psync", opts: Options{Mode: Writethrough, CacheSize: fsxTinyCache, Backend: "psync"}, noise: true},
		fsxConfig{name: "exclusive/directio/cache=tiny/noise/be=uring", opts: Options{Mode: Exclusive, CacheSize: fsxTinyCache, DirectIO: true}, noise: true, disk: true})
	// A ring of 4 entries: batches larger than the submission queue.
	add("exclusive/cache=tiny/ring=4/be=uring", Options{Mode: Exclusive, CacheSize: fsxTinyCache, RingEntries: 4})
	add("shared/ring=4/be=uring", Options{Mode: Shared, RingEntries: 4})
	// The commonest configurations again on a disk filesystem.
	for _, o := range []Options{
		{Mode: Exclusive, CacheSize: fsxTinyCache},
		{Mode: Writethrough},
		{Mode: Shared},
	} {
		out = append(out, fsxConfig{name: fmt.Sprintf("%s/cache=%d/disk", o.Mode, o.CacheSize), opts: o, disk: true})
	}
	return out
}

// fsxDir returns the directory a configuration runs in: RINGFS_FSX_DIR
// when set, else t.TempDir() for disk configurations, else /dev/shm when
// it is a writable tmpfs (no disk I/O: the exerciser's hundreds of
// thousands of operations stay fast), else t.TempDir().
func fsxDir(t testing.TB, cfg fsxConfig) string {
	base := os.Getenv("RINGFS_FSX_DIR")
	if base == "" && !cfg.disk && tmpfsUsable() {
		base = "/dev/shm"
	}
	if base == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(base, "ringfs-fsx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// tmpfsUsable reports whether /dev/shm is a writable tmpfs.
func tmpfsUsable() bool {
	var st unix.Statfs_t
	return unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC && unix.Access("/dev/shm", unix.W_OK) == nil
}

// fsxOps returns the operations per configuration.
func fsxOps(t testing.TB) int {
	// Defaults that keep "go test -race ./engine/" within its budget;
	// CI runs RINGFS_FSX_OPS=100000 without -race as a separate step.
	n := 10_000
	if raceEnabled {
		n = 3_000
	}
	if testing.Short() {
		n = 500
	}
	if v := os.Getenv("RINGFS_FSX_OPS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			t.Fatalf("RINGFS_FSX_OPS: %v", err)
		}
	}
	n *= soakFactor()
	return n
}

func fsxSeed(t testing.TB) uint64 {
	if v := os.Getenv("RINGFS_FSX_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("RINGFS_FSX_SEED: %v", err)
		}
		return s
	}
	return uint64(time.Now().UnixNano())
}

// TestFSXReplay replays the logs of testdata/fsx (every past failure) and,
// with RINGFS_FSX_REPLAY, one log file.
func TestFSXReplay(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("testdata", "fsx", "*.log"))
	if p := os.Getenv("RINGFS_FSX_REPLAY"); p != "" {
		paths = []string{p}
	}
	if len(paths) == 0 {
		t.Skip("no logs")
	}
	checkLeaks(t)
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			cfgName, seed, ops := readFsxLog(t, p)
			var cfg *fsxConfig
			for _, c := range fsxConfigs() {
				if c.name == cfgName {
					cfg = &c
				}
			}
			if cfg == nil {
				t.Fatalf("%s: unknown configuration %q", p, cfgName)
			}
			x := newFsx(t, *cfg, seed, fsxDir(t, *cfg))
			x.relaxed = true // a minimized log keeps the sizes of the run it came from
			if f := x.guard(func() { x.replay(ops); x.stop() }); f != nil {
				x.report(f)
			}
			t.Logf("%s: %d operations replayed on %s", p, len(ops), cfgName)
		})
	}
}

func readFsxLog(t testing.TB, path string) (string, uint64, []fsxOp) {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cfg string
	var seed uint64
	var ops []fsxOp
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") {
			if _, err := fmt.Sscanf(line, "# ringfs fsx log: config %s seed %d", &cfg, &seed); err == nil {
				continue
			}
			continue
		}
		if line == "" {
			continue
		}
		op, err := parseFsxOp(line)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ops = append(ops, op)
	}
	if cfg == "" {
		t.Fatalf("%s: no header naming the configuration and seed", path)
	}
	return cfg, seed, ops
}

// firstNonzeroByte returns the index of the first nonzero byte of b, or -1
// (comparing pages first: the race detector makes byte loops slow).
func firstNonzeroByte(b []byte) int {
	var zero [4096]byte
	for off := 0; off < len(b); off += len(zero) {
		chunk := b[off:min(off+len(zero), len(b))]
		if bytes.Equal(chunk, zero[:len(chunk)]) {
			continue
		}
		for i, c := range chunk {
			if c != 0 {
				return off + i
			}
		}
	}
	return -1
}
