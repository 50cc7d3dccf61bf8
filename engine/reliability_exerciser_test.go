//go:build linux

package engine

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Exerciser and model (TESTPLAN X1–X4): the Go fsx of fsx_test.go run
// per mode × readahead × cache size (X1), its replay corpus together
// with the fuzzer's (X2), one seeded sequence run under every
// configuration with identical results required (X3), and a fuzzer over
// an operation decoder driving the same checked exerciser (X4).

func init() {
	addRow("X1", "fsx per mode × cache size × readahead × backend (and HostMmap, DirectIO, ring=4, disk)", rowX1)
	addRow("X2", "replay corpus: every past failure (fsx logs, fuzz inputs)", rowX2)
	addRow("X3", "metamorphic: one sequence under every configuration", rowX3)
	addRow("X4", "fuzzed operation sequences checked against the model", rowX4)
}

// rowX1 runs the fsx of fsx_test.go over its whole matrix (fsxConfigs:
// every mode × cache size {tiny: eviction all the time, default, none} ×
// readahead {4 KiB, 64 KiB} × backend {uring, psync}, plus HostMmap,
// DirectIO, a ring of 4 entries, busy neighbours and a disk filesystem),
// fsxOps operations per configuration. CI runs it again without -race at
// RINGFS_FSX_OPS=100000. A failure's log replays with TestFSXReplay.
func rowX1(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	if os.Getenv("RINGFS_FSX_REPLAY") != "" {
		t.Skip("replaying a log (TestFSXReplay)")
	}
	n := fsxOps(t)
	seed := fsxSeed(t)
	cfgs := fsxConfigs()
	t.Logf("X1: %d operations per configuration, first seed %d (RINGFS_FSX_SEED), %d configurations", n, seed, len(cfgs))
	var total atomic.Int64
	t.Run("matrix", func(t *testing.T) {
		for i, cfg := range cfgs {
			t.Run(cfg.name, func(t *testing.T) {
				t.Parallel()
				s := seed + uint64(i)
				x := newFsx(t, cfg, s, fsxDir(t, cfg))
				start := time.Now()
				if f := x.guard(func() { x.run(n); x.stop() }); f != nil {
					x.report(f)
				}
				total.Add(int64(x.idx))
				var b strings.Builder
				for k, c := range x.counts {
					if c > 0 {
						fmt.Fprintf(&b, " %s=%d(%v)", fsxKind(k), c, x.spent[k].Round(time.Millisecond))
					}
				}
				t.Logf("seed %d: %d operations survived in %v, final size %d;%s", s, x.idx, time.Since(start).Round(time.Millisecond), len(x.model), b.String())
			})
		}
	})
	fig.Set("configs", int64(len(cfgs)))
	fig.Set("ops_per_config", int64(n))
	fig.Set("ops", total.Load())
}

// rowX2 replays every logged failure: TestFSXReplay (testdata/fsx) and
// the fuzzer's corpus (testdata/fuzz/FuzzOps), which go test also runs
// as FuzzOps' seeds.
func rowX2(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	logs, _ := filepath.Glob(filepath.Join("testdata", "fsx", "*.log"))
	t.Run("TestFSXReplay", TestFSXReplay)
	checkLeaks(t)
	inputs := fuzzCorpus(t)
	var ops int
	for _, in := range inputs {
		t.Run("FuzzOps/"+in.name, func(t *testing.T) { ops += runFuzzOps(t, in.data) })
	}
	fig.Set("fsx_logs", int64(len(logs)))
	fig.Set("fuzz_inputs", int64(len(inputs)))
	fig.Set("fuzz_ops", int64(ops))
	t.Logf("X2: %d fsx logs and %d fuzz inputs (%d operations) replayed", len(logs), len(inputs), ops)
}

// --- X3: metamorphic ---

// x3Configs is every mode × cache size × readahead × ring depth ×
// backend, with the combinations a mode makes identical folded (Shared
// never caches, an engine without a cache never reads ahead, psync has
// no ring), plus HostMmap and DirectIO.
func x3Configs() []fwConfig {
	type be struct {
		name string
		opts Options
	}
	bes := []be{{"uring/ring=4", Options{Backend: "uring", RingEntries: 4}}, {"uring/ring=256", Options{Backend: "uring"}}, {"psync", Options{Backend: "psync"}}}
	var out []fwConfig
	add := func(name string, o Options, b be) {
		o.Backend, o.RingEntries = b.opts.Backend, b.opts.RingEntries
		out = append(out, fwConfig{name + "/" + b.name, o})
	}
	for _, b := range bes {
		for _, mode := range []Mode{Exclusive, Writethrough} {
			for _, cache := range []struct {
				name string
				size int64
			}{{"tiny", fsxTinyCache}, {"4MiB", 4 << 20}} {
				for _, ra := range []int{4 << 10, 64 << 10} {
					add(fmt.Sprintf("%s/cache=%s/ra=%dKiB", mode, cache.name, ra>>10), Options{Mode: mode, CacheSize: cache.size, Readahead: ra}, b)
				}
			}
			add(fmt.Sprintf("%s/cache=none", mode), Options{Mode: mode, CacheSize: -1}, b)
		}
		add("shared", Options{Mode: Shared}, b)
	}
	add("exclusive/hostmmap", Options{Mode: Exclusive, HostMmap: true}, bes[1])
	add("writethrough/hostmmap", Options{Mode: Writethrough, HostMmap: true}, bes[1])
	add("exclusive/directio/cache=tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, DirectIO: true}, bes[1])
	return out
}

// Handles of the metamorphic run.
const (
	mmRW     = iota // O_RDWR
	mmRW2           // O_RDWR
	mmRO            // O_RDONLY
	mmAppend        // O_WRONLY|O_APPEND
	mmDsync         // O_RDWR|O_DSYNC
	mmHandles
)

var mmFlags = [mmHandles]int{os.O_RDWR, os.O_RDWR, os.O_RDONLY, os.O_WRONLY | os.O_APPEND, os.O_RDWR | syscall.O_DSYNC}

// mmOp is one operation of the metamorphic sequence.
type mmOp struct {
	kind          string
	h             int
	off, n, flags int64
}

func (o mmOp) String() string {
	return fmt.Sprintf("%s h%d off=%d n=%d flags=%d", o.kind, o.h, o.off, o.n, o.flags)
}

// mmGen draws the sequence from the seed alone; it tracks the size the
// operations would give if they succeed, to aim near the end of file.
func mmGen(seed uint64, count int) []mmOp {
	rng := rand.New(rand.NewPCG(seed, 0x3e7a))
	const maxFile = 256 << 10
	size := int64(0)
	var ops []mmOp
	rangeAt := func(limit int64) (int64, int64) {
		limit = max(limit, 1)
		off := rng.Int64N(limit)
		var n int64
		switch rng.IntN(3) {
		case 0:
			n = 1 + rng.Int64N(100)
		case 1:
			n = 1 + rng.Int64N(20000)
		default:
			off &^= 4095
			n = 4096 * (1 + rng.Int64N(8))
		}
		return off, n
	}
	for len(ops) < count {
		var op mmOp
		switch w := rng.IntN(100); {
		case w < 22:
			op.kind, op.h = "write", []int{mmRW, mmRW2, mmDsync}[rng.IntN(3)]
			op.off, op.n = rangeAt(maxFile - 20000)
			size = max(size, op.off+op.n)
		case w < 44:
			op.kind, op.h = "read", []int{mmRW, mmRW2, mmRO}[rng.IntN(3)]
			op.off, op.n = rangeAt(size + 8192)
		case w < 48:
			op.kind, op.off = "truncate", rng.Int64N(maxFile)
			size = op.off
		case w < 54:
			op.kind = "allocate"
			op.flags = int64([]uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE}[rng.IntN(3)])
			op.off, op.n = rangeAt(maxFile - 20000)
			if op.flags == 0 {
				size = max(size, op.off+op.n)
			}
		case w < 58:
			op.kind, op.h, op.flags = "sync", []int{mmRW, mmRW2, mmRO}[rng.IntN(3)], int64(rng.IntN(2))
		case w < 64:
			op.kind, op.h, op.flags = "seekread", []int{mmRW, mmRW2, mmRO}[rng.IntN(3)], int64(rng.IntN(3))
			op.off, op.n = rangeAt(size + 4096)
			if op.flags == io.SeekEnd {
				op.off -= size
			}
		case w < 68:
			op.kind, op.h, op.flags = "seekwrite", rng.IntN(2), int64(rng.IntN(3))
			op.off, op.n = rangeAt(size + 4096)
			if op.flags == io.SeekEnd {
				op.off -= size
			}
		case w < 72:
			op.kind, op.h, op.n = "append", mmAppend, 1+rng.Int64N(5000)
			size += op.n
		case w < 75:
			op.kind, op.h, op.off = "seekdata", rng.IntN(3), rng.Int64N(size+4096)
		case w < 78:
			op.kind, op.h, op.off = "seekhole", rng.IntN(3), rng.Int64N(size+4096)
		case w < 82:
			op.kind, op.flags = "submit", int64(2+rng.IntN(6))
			op.off = int64(rng.Uint32())
		case w < 85:
			if size == 0 {
				continue
			}
			op.kind, op.h = "map", rng.IntN(3)
			op.off = rng.Int64N(size)
			op.n = 1 + rng.Int64N(min(size-op.off, 64<<10))
		case w < 87:
			op.kind, op.h = "reopen", rng.IntN(mmHandles)
		case w < 93:
			// Calls that must fail the same way everywhere.
			op.kind, op.flags = "bad", int64(rng.IntN(6))
			op.off, op.n = rangeAt(size + 4096)
		default:
			op.kind, op.h = "zero", rng.IntN(mmHandles)
			op.off = rng.Int64N(size + 4096)
		}
		ops = append(ops, op)
	}
	return ops
}

// mmRun runs ops on a fresh file under cfg and returns the transcript
// (one line per operation: counts, errnos, data hashes, sizes,
// positions) and the host's bytes after Engine.Close.
func mmRun(t *testing.T, cfg fwConfig, seed uint64, ops []mmOp, dir string) ([]string, []byte) {
	t.Helper()
	e := newEngine(t, cfg.opts)
	path := filepath.Join(dir, "mm-"+strings.ReplaceAll(cfg.name, "/", "_"))
	writeHost(t, path, nil)
	var h [mmHandles]*File
	for i := range h {
		h[i] = openFile(t, e, path, mmFlags[i])
	}
	model := []byte{} // for the SEEK_DATA/SEEK_HOLE verdicts only
	out := make([]string, 0, len(ops))
	res := func(n int, err error) string { return fmt.Sprintf("n=%d err=%s", n, errName(err)) }
	for i, op := range ops {
		var r string
		switch op.kind {
		case "write":
			p := pattern(int(op.n), seed, uint64(i))
			n, err := h[op.h].WriteAt(p, op.off)
			r = res(n, err)
			if err == nil {
				model = mmApply(model, op.off, p)
			}
		case "read":
			p := make([]byte, op.n)
			n, err := h[op.h].ReadAt(p, op.off)
			r = res(n, err) + " data=" + hashOf(p[:n])
		case "truncate":
			err := h[mmRW].Truncate(op.off)
			r = "err=" + errName(err)
			if err == nil {
				model = mmResize(model, op.off)
			}
		case "allocate":
			err := h[mmRW].Allocate(uint32(op.flags), op.off, op.n)
			r = "err=" + errName(err)
			if err == nil {
				end := op.off + op.n
				if op.flags&unix.FALLOC_FL_PUNCH_HOLE != 0 {
					clear(model[min(op.off, int64(len(model))):min(end, int64(len(model)))])
				}
				if op.flags&unix.FALLOC_FL_KEEP_SIZE == 0 && end > int64(len(model)) {
					model = mmResize(model, end)
				}
			}
		case "sync":
			var err error
			if op.flags == 1 {
				err = h[op.h].Datasync()
			} else {
				err = h[op.h].Sync()
			}
			r = "err=" + errName(err)
		case "seekread", "seekwrite":
			pos, err := h[op.h].Seek(op.off, int(op.flags))
			r = fmt.Sprintf("pos=%d err=%s ", pos, errName(err))
			if err != nil {
				break
			}
			if op.kind == "seekread" {
				p := make([]byte, op.n)
				n, err := h[op.h].Read(p)
				r += res(n, err) + " data=" + hashOf(p[:n])
			} else {
				p := pattern(int(op.n), seed, uint64(i))
				n, err := h[op.h].Write(p)
				r += res(n, err)
				if err == nil {
					model = mmApply(model, pos, p)
				}
			}
		case "append":
			p := pattern(int(op.n), seed, uint64(i))
			n, err := h[mmAppend].Write(p)
			pos, serr := h[mmAppend].Seek(0, io.SeekCurrent)
			r = res(n, err) + fmt.Sprintf(" pos=%d %s", pos, errName(serr))
			if err == nil {
				model = mmApply(model, pos-int64(n), p)
			}
		case "seekdata", "seekhole":
			whence := SeekData
			if op.kind == "seekhole" {
				whence = SeekHole
			}
			pos, err := h[op.h].Seek(op.off, whence)
			r = seekVerdict(model, op.off, whence, pos, err)
			// The position may differ between configurations (see
			// seekVerdict): set it to one that may not.
			pos, err = h[op.h].Seek(op.off, io.SeekStart)
			r += fmt.Sprintf(" pos=%d err=%s", pos, errName(err))
		case "submit":
			r, model = mmSubmit(e, h, model, seed, i, op)
		case "map":
			m, err := h[op.h].Map(op.off, op.n, false)
			r = "err=" + errName(err)
			if err == nil {
				r += " data=" + hashOf(m.Bytes())
				if cerr := m.Close(); cerr != nil {
					r += " close=" + errName(cerr)
				}
			}
		case "reopen":
			err := h[op.h].Close()
			f, oerr := e.Open(path, mmFlags[op.h], 0)
			if oerr != nil {
				t.Fatalf("%s: reopen: %v", cfg.name, oerr)
			}
			h[op.h] = f
			r = "close=" + errName(err)
		case "bad":
			r = mmBad(h, op)
		case "zero":
			n, err := h[op.h].WriteAt(nil, op.off)
			if op.h == mmAppend {
				n, err = h[op.h].Write(nil)
			}
			r = res(n, err)
			m, rerr := h[op.h].ReadAt(nil, op.off)
			r += " " + res(m, rerr)
		}
		fi, err := h[mmRW].Stat()
		if err != nil {
			t.Fatalf("%s: Stat: %v", cfg.name, err)
		}
		out = append(out, fmt.Sprintf("%s size=%d", r, fi.Size()))
	}
	for i, f := range h {
		if err := f.Close(); err != nil {
			t.Fatalf("%s: Close of handle %d: %v", cfg.name, i, err)
		}
	}
	if err := e.Close(); err != nil {
		t.Fatalf("%s: Engine.Close: %v", cfg.name, err)
	}
	host := readHost(t, path)
	os.Remove(path)
	return out, host
}

func mmApply(model []byte, off int64, p []byte) []byte {
	model = mmResize(model, max(int64(len(model)), off+int64(len(p))))
	copy(model[off:], p)
	return model
}

func mmResize(model []byte, n int64) []byte {
	if n <= int64(len(model)) {
		return model[:n]
	}
	return append(model, make([]byte, n-int64(len(model)))...)
}

// seekVerdict renders a SEEK_DATA/SEEK_HOLE result as a verdict against
// the model: where data and holes lie depends on when the cache wrote
// back and on the filesystem's block size, so the positions themselves
// may differ between configurations; that they are consistent with the
// file's bytes may not.
func seekVerdict(model []byte, off int64, whence int, pos int64, err error) string {
	size := int64(len(model))
	if off >= size {
		return "eof:" + errName(err)
	}
	first := int64(-1)
	if i := firstNonzeroByte(model[off:]); i >= 0 {
		first = off + int64(i)
	}
	if whence == SeekData {
		if errnoOf(err) == syscall.ENXIO {
			// Only zeros remain: ENXIO, or any zero byte as data.
			return fmt.Sprintf("data:ok=%v", first < 0)
		}
		return fmt.Sprintf("data:ok=%v", err == nil && pos >= off && pos < size && (first < 0 || pos <= first))
	}
	return fmt.Sprintf("hole:ok=%v", err == nil && pos >= off && pos <= size && (pos == size || model[pos] == 0))
}

// mmSubmit runs a batch of reads and writes on disjoint slots, reads
// below the size before the batch only (the order within a batch is
// free, so a read past the end would depend on whether a write that
// extends the file ran first), and returns the transcript line and the
// model with the batch's writes.
func mmSubmit(e *Engine, h [mmHandles]*File, model []byte, seed uint64, i int, op mmOp) (string, []byte) {
	rng := rand.New(rand.NewPCG(seed, uint64(op.off)))
	const span = 256 << 10
	size := int64(len(model))
	slot := int64(span / op.flags)
	var ops []Op
	for j := range op.flags {
		lo := j * slot
		if lo < size && rng.IntN(2) == 0 {
			end := min(lo+slot, size)
			off := lo + rng.Int64N(end-lo)
			n := 1 + rng.Int64N(end-off)
			ops = append(ops, Op{File: h[[]int{mmRW, mmRO}[rng.IntN(2)]], Buf: make([]byte, n), Off: off})
			continue
		}
		off := lo + rng.Int64N(slot/2)
		n := 1 + rng.Int64N(slot/2)
		ops = append(ops, Op{File: h[[]int{mmRW, mmRW2}[rng.IntN(2)]], Write: true, Buf: pattern(int(n), seed, uint64(i)<<8|uint64(j)), Off: off})
	}
	err := e.Submit(ops)
	var b strings.Builder
	fmt.Fprintf(&b, "err=%s", errName(err))
	for _, o := range ops {
		fmt.Fprintf(&b, " [n=%d err=%s", o.N, errName(o.Err))
		if !o.Write {
			fmt.Fprintf(&b, " data=%s", hashOf(o.Buf[:o.N]))
		}
		b.WriteString("]")
	}
	for _, o := range ops {
		if o.Write && o.Err == nil {
			model = mmApply(model, o.Off, o.Buf)
		}
	}
	return b.String(), model
}

// mmBad makes a call that must fail, the same way in every
// configuration.
func mmBad(h [mmHandles]*File, op mmOp) string {
	var n int
	var err error
	switch op.flags {
	case 0:
		n, err = h[mmRW].ReadAt(make([]byte, 10), -1-op.off)
	case 1:
		n, err = h[mmRO].WriteAt(make([]byte, op.n), op.off)
	case 2:
		n, err = h[mmAppend].ReadAt(make([]byte, op.n), op.off)
	case 3:
		err = h[mmRO].Truncate(op.off)
	case 4:
		err = h[mmRW].Allocate(0xff, op.off, op.n)
	default:
		n, err = h[mmAppend].WriteAt([]byte{1}, op.off)
	}
	return fmt.Sprintf("n=%d err=%s", n, errName(err))
}

// errName renders an error as its errno (or io.EOF, fs.ErrClosed...).
func errName(err error) string {
	switch {
	case err == nil:
		return "nil"
	case err == io.EOF:
		return "EOF"
	case errors.Is(err, ErrWriteAtInAppendMode):
		return "append-mode"
	}
	if e := errnoOf(err); e != 0 {
		return "errno" + strconv.Itoa(int(e))
	}
	return "other:" + err.Error()
}

func hashOf(b []byte) string {
	h := fnv.New64a()
	h.Write(b)
	return fmt.Sprintf("%d:%016x", len(b), h.Sum64())
}

// rowX3 runs one seeded sequence under every configuration of x3Configs
// and requires the same transcript and the same final host bytes as the
// first configuration.
func rowX3(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	seed := fsxSeed(t)
	count := 1500
	if raceEnabled {
		count = 250
	}
	count = envInt(t, "RINGFS_X3_OPS", count) * soakFactor()
	ops := mmGen(seed, count)
	dir := relDir(t)
	cfgs := x3Configs()
	var ref []string
	var refHost []byte
	for ci, cfg := range cfgs {
		out, host := mmRun(t, cfg, seed, ops, dir)
		if ci == 0 {
			ref, refHost = out, host
			continue
		}
		for i := range ops {
			if out[i] != ref[i] {
				var b strings.Builder
				for j := max(0, i-15); j <= i; j++ {
					fmt.Fprintf(&b, "  %5d %s\n", j, ops[j])
				}
				t.Fatalf("seed %d (RINGFS_FSX_SEED): operation %d (%s) differs:\n  %-40s %s\n  %-40s %s\noperations up to it:\n%s",
					seed, i, ops[i], cfgs[0].name, ref[i], cfg.name, out[i], b.String())
			}
		}
		if !bytes.Equal(host, refHost) {
			t.Fatalf("seed %d: final host bytes differ: %s has %d bytes, %s %d; first difference at %d",
				seed, cfgs[0].name, len(refHost), cfg.name, len(host), diffAt(host, refHost))
		}
	}
	fig.Set("configs", int64(len(cfgs)))
	fig.Set("ops_per_config", int64(len(ops)))
	fig.Set("ops", int64(len(ops)*len(cfgs)))
	t.Logf("X3 seed %d: %d operations under %d configurations: identical results and final host bytes (%d bytes)", seed, len(ops), len(cfgs), len(refHost))
}

// --- X4: fuzzing ---

// fuzzConfigs are the engines FuzzOps picks from (by the input's first
// byte).
var fuzzConfigs = []fsxConfig{
	{name: "exclusive/cache=tiny/ra=4KiB/be=uring", opts: Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4 << 10, Backend: "uring"}},
	{name: "writethrough/cache=tiny/ra=64KiB/be=uring", opts: Options{Mode: Writethrough, CacheSize: fsxTinyCache, Readahead: 64 << 10, Backend: "uring"}},
	{name: "exclusive/cache=none/be=uring", opts: Options{Mode: Exclusive, CacheSize: -1, Backend: "uring"}},
	{name: "shared/be=uring", opts: Options{Mode: Shared, Backend: "uring"}},
	{name: "exclusive/hostmmap/be=psync", opts: Options{Mode: Exclusive, HostMmap: true, Backend: "psync"}},
	{name: "exclusive/cache=tiny/ring=4/be=uring", opts: Options{Mode: Exclusive, CacheSize: fsxTinyCache, RingEntries: 4}},
}

// fuzzOpSize is the bytes one operation takes in a fuzz input.
const fuzzOpSize = 8

// decodeOps turns a fuzz input into a configuration, a seed and fsx
// operations: byte 0 picks the configuration, byte 1 the data seed, then
// every 8 bytes are an operation (kind, 3 bytes of offset, 2 of length, 2
// of flags), normalized into what the exerciser accepts (valid handles,
// modes, aligned direct writes, ranges inside the exerciser's file). At
// most 256 operations are taken.
func decodeOps(data []byte) (fsxConfig, uint64, []fsxOp) {
	if len(data) < 2 {
		return fuzzConfigs[0], 0, nil
	}
	cfg := fuzzConfigs[int(data[0])%len(fuzzConfigs)]
	seed := uint64(data[1])
	var ops []fsxOp
	for p := data[2:]; len(p) >= fuzzOpSize && len(ops) < 256; p = p[fuzzOpSize:] {
		kind := fsxKind(int(p[0]) % int(numFsxKinds))
		off := int64(p[1])<<16 | int64(p[2])<<8 | int64(p[3])
		off %= fsxMaxFile
		n := 1 + (int64(p[4])<<8|int64(p[5]))%fsxMaxOp
		fl := int64(p[6])<<8 | int64(p[7])
		op := fsxOp{kind: kind, off: off, length: n}
		switch kind {
		case xRead:
			op.flags = []int64{hRW, hRW2, hRO}[fl%3]
		case xWrite:
			op.flags = []int64{hRW, hRW2, hDsync}[fl%3]
			op.length = min(n, fsxMaxFile-off)
		case xMapRead:
			op.flags = fl % 2
		case xMapWrite:
			op.flags = fl % 2
			op.length = min(n, fsxMaxFile-off)
		case xTruncate:
			op.length = 0
			if fl%3 == 0 {
				op.off &^= 4095
			}
		case xAllocate:
			op.flags = int64([]uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE}[fl%3])
			op.length = min(n, fsxMaxFile-off)
		case xSync:
			op.flags, op.off, op.length = fl%2, 0, 0
		case xReopen:
			op.flags, op.off, op.length = fl%numHandles, 0, 0
		case xSeekRead, xSeekWrite:
			whence := fl >> 4 % 3
			if kind == xSeekRead {
				op.flags = whence<<4 | []int64{hRW, hRW2, hRO}[fl%3]
			} else {
				op.flags = whence<<4 | fl%2
			}
			if whence != io.SeekStart {
				op.off = off%(128<<10) - 64<<10 // relative: keep the file bounded
			}
			op.length = 1 + n%8192
		case xSeekData, xSeekHole:
			op.flags, op.length = fl%3, 0
		case xDirectRead:
		case xDirectWrite:
			op.off &^= 4095
			op.length = min((1+n%16)*4096, fsxMaxFile-op.off)
			op.flags = fl % 2
		case xNowaitRead:
			op.flags = fl % 3
		case xSubmit:
			op.flags = 2 + fl%7
			op.off, op.length = 0, 0
		case xAppend:
			op.off, op.length = 0, 1+n%8192
		case xPollute:
			// Needs a filesystem that zeroes it (fsx checks that first):
			// a full re-read instead.
			op = fsxOp{kind: xFullRead}
		case xEngineReopen:
			if fl%8 != 0 { // costly: one in eight
				op = fsxOp{kind: xFullRead}
			} else {
				op.off, op.length = 0, 0
			}
		case xFullRead:
			op.off, op.length = 0, 0
		case xHold:
			op.flags = fl % 2
			op.length = 1 + n%(256<<10)
		}
		ops = append(ops, op)
	}
	return cfg, seed, ops
}

// runFuzzOps decodes data and runs it through the exerciser (relaxed:
// the log's sizes come from the model), which checks every operation
// and the size after each against the model, and the host after the
// engine closes. It returns the operations run.
func runFuzzOps(t *testing.T, data []byte) int {
	t.Helper()
	cfg, seed, ops := decodeOps(data)
	if len(ops) == 0 {
		return 0
	}
	x := newFsx(t, cfg, seed, fsxDir(t, cfg))
	x.relaxed = true
	stop := watchdog(time.Minute, func() string {
		return fmt.Sprintf("fuzz input on %s, operation %d of %d:\n%s", cfg.name, x.idx, len(ops), x.logText(x.log))
	})
	defer stop()
	if f := x.guard(func() { x.replay(ops); x.stop() }); f != nil {
		x.report(f)
	}
	return len(ops)
}

// FuzzOps (X4) fuzzes operation sequences: go test -fuzz '^FuzzOps$'.
// Every input that fails is kept by go test in testdata/fuzz/FuzzOps and
// replayed by plain go test (and row X2).
func FuzzOps(f *testing.F) {
	for i := range 6 {
		f.Add(fuzzSeedInput(uint64(i), 24+16*i))
	}
	f.Fuzz(func(t *testing.T, data []byte) { runFuzzOps(t, data) })
}

// fuzzSeedInput is a random input of n operations for configuration i.
func fuzzSeedInput(i uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(i, 0xf022))
	b := []byte{byte(i), byte(rng.IntN(256))}
	for range n * fuzzOpSize {
		b = append(b, byte(rng.IntN(256)))
	}
	return b
}

// fuzzInput is one input of the fuzz corpus.
type fuzzInput struct {
	name string
	data []byte
}

// fuzzCorpus reads testdata/fuzz/FuzzOps (go test's format: a "go test
// fuzz v1" line and a []byte("...") line).
func fuzzCorpus(t *testing.T) []fuzzInput {
	t.Helper()
	paths, _ := filepath.Glob(filepath.Join("testdata", "fuzz", "FuzzOps", "*"))
	var out []fuzzInput
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" || !strings.HasPrefix(lines[1], "[]byte(") {
			t.Fatalf("%s: not a go test fuzz v1 []byte input", p)
		}
		s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out = append(out, fuzzInput{filepath.Base(p), []byte(s)})
	}
	return out
}

// rowX4 runs FuzzOps' seeds and corpus as plain tests (fuzzing itself is
// the CI step go test -fuzz '^FuzzOps$' -fuzztime 30s).
func rowX4(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	var ops, inputs int
	for i := range 6 {
		t.Run(fmt.Sprintf("seed%d", i), func(t *testing.T) { ops += runFuzzOps(t, fuzzSeedInput(uint64(i), 24+16*i)) })
		inputs++
	}
	// Random inputs from this run's seed: each a fresh sequence.
	seed := fsxSeed(t)
	extra := 24
	if raceEnabled {
		extra = 6
	}
	for i := range extra * soakFactor() {
		data := fuzzSeedInput(seed+uint64(i), 64)
		t.Run(fmt.Sprintf("random%d", i), func(t *testing.T) {
			t.Logf("input: RINGFS_FSX_SEED=%d, %q", seed, data)
			ops += runFuzzOps(t, data)
		})
		inputs++
	}
	fig.Set("inputs", int64(inputs))
	fig.Set("ops", int64(ops))
	t.Logf("X4: %d decoded inputs (%d operations) checked against the model after every operation; fuzzing runs in CI for 30s", inputs, ops)
}
