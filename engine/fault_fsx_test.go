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
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

// TestFaultFSX (TESTPLAN F1, F2, F3, F10): random operations while the
// backend fails a random share of reads, writes, fsyncs and fallocates
// with EIO before they reach the kernel. Every failed call returns an
// *fs.PathError with EIO; every successful read matches the model on the
// bytes the model knows (a failed write leaves the bytes after its count
// unknown: some of its pieces may have landed); the size follows the
// counts returned. Every so often the faults heal: each handle's Sync
// may report one earlier failure, the next must succeed, and then the
// host equals the engine's view and the model's known bytes (no
// acknowledged byte lost), after which faults resume.
func TestFaultFSX(t *testing.T) {
	checkLeaks(t)
	ops := 3000
	if raceEnabled {
		ops = 800
	}
	ops *= soakFactor()
	seed := fsxSeed(t)
	configs := []struct {
		name string
		opts Options
	}{
		{"exclusive", Options{Mode: Exclusive}},
		{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
		{"exclusive/tiny/psync", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: "psync"}},
		{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
		{"shared", Options{Mode: Shared}},
		{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
		{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
	}
	t.Logf("fault fsx: %d operations per configuration, first seed %d", ops, seed)
	for i, c := range configs {
		for _, complete := range []bool{false, true} {
			name := c.name + "/faults=issue"
			if complete {
				name = c.name + "/faults=issue+complete"
			}
			t.Run(name, func(t *testing.T) {
				s := seed + uint64(2*i)
				if complete {
					s++
				}
				fx := newFaultFsx(t, c.opts, s, complete)
				fx.run(ops)
				t.Logf("seed %d: %d operations, %d faults injected, %d failed calls (all EIO), %d heals (host = engine = model each time), 0 acknowledged bytes lost",
					s, ops, fx.inj.Fired(), fx.failed, fx.heals)
			})
		}
	}
}

type faultFsx struct {
	t      *testing.T
	seed   uint64
	rng    *rand.Rand
	inj    *fault.Injector
	e      *Engine
	path   string
	h      []*File
	data   []byte // model bytes
	known  []bool // whether data[i] is certain
	log    []string
	failed int
	heals  int
	// complete also fails operations after the kernel ran them.
	complete bool
}

const faultMaxFile = 256 << 10

func newFaultFsx(t *testing.T, opts Options, seed uint64, complete bool) *faultFsx {
	fx := &faultFsx{t: t, seed: seed, rng: rand.New(rand.NewPCG(seed, 77)), inj: fault.New(), complete: complete}
	opts.Injector = fx.inj
	fx.e = newEngine(t, opts)
	fx.path = filepath.Join(t.TempDir(), "f")
	writeHost(t, fx.path, nil)
	for range 3 {
		fx.h = append(fx.h, openFile(t, fx.e, fx.path, os.O_RDWR))
	}
	fx.arm()
	return fx
}

// arm installs the fault rules: EIO before the kernel on a random tenth
// of reads, writes, fsyncs and fallocates, and (when complete is set) EIO
// replacing the kernel's result on a random twentieth of those that ran:
// the operation happened, its caller hears it failed.
func (fx *faultFsx) arm() {
	fx.inj.Reset()
	ops := fault.OnOps(uring.OpRead, uring.OpReadv, uring.OpReadFixed, uring.OpWrite, uring.OpWritev,
		uring.OpWriteFixed, uring.OpFsync, uring.OpFallocate)
	fx.inj.Add(fault.Rule{Name: "EIO at issue", Stage: fault.StageIssue,
		When: fault.And(ops, fault.Random(int64(fx.seed)+int64(fx.heals), 0.1)),
		Do:   fault.Effect{Errno: syscall.EIO}})
	if fx.complete {
		fx.inj.Add(fault.Rule{Name: "EIO at completion", Stage: fault.StageComplete,
			When: fault.And(ops, fault.Random(int64(fx.seed)+int64(fx.heals)+1<<32, 0.05)),
			Do:   fault.Effect{Errno: syscall.EIO}})
	}
}

func (fx *faultFsx) failf(format string, args ...any) {
	fx.t.Helper()
	tail := fx.log[max(0, len(fx.log)-30):]
	var evs []string
	for _, ev := range fx.inj.Events() {
		evs = append(evs, ev.String())
	}
	fx.t.Fatalf("seed %d, op %d: %s\nlast operations:\n  %s\nlast faults:\n  %s", fx.seed, len(fx.log), fmt.Sprintf(format, args...),
		strings.Join(tail, "\n  "), strings.Join(evs[max(0, len(evs)-10):], "\n  "))
}

// checkErr accepts nil or an *fs.PathError with EIO.
func (fx *faultFsx) checkErr(what string, err error) bool {
	fx.t.Helper()
	if err == nil {
		return true
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) || !errors.Is(err, syscall.EIO) {
		fx.failf("%s: %v (%T), want nil or an *fs.PathError with EIO", what, err, err)
	}
	fx.failed++
	return false
}

func (fx *faultFsx) resize(size int64) {
	if size <= int64(len(fx.data)) {
		fx.data, fx.known = fx.data[:size], fx.known[:size]
		return
	}
	n := size - int64(len(fx.data))
	fx.data = append(fx.data, make([]byte, n)...)
	k := make([]bool, n)
	for i := range k {
		k[i] = true // zeros past the old end
	}
	fx.known = append(fx.known, k...)
}

// checkBytes compares got with the model's known bytes at off.
func (fx *faultFsx) checkBytes(what string, got []byte, off int64) {
	fx.t.Helper()
	for i, b := range got {
		if j := off + int64(i); fx.known[j] && fx.data[j] != b {
			fx.failf("%s: byte %d is %#x, want %#x", what, j, b, fx.data[j])
		}
	}
}

func (fx *faultFsx) size() int64 { return int64(len(fx.data)) }

func (fx *faultFsx) step(i int) {
	h := fx.h[fx.rng.IntN(len(fx.h))]
	size := fx.size()
	switch k := fx.rng.IntN(20); {
	case k < 7: // write
		off := fx.rng.Int64N(faultMaxFile - 1)
		n := 1 + fx.rng.Int64N(min(faultMaxFile-off, 20000))
		p := pattern(int(n), fx.seed, uint64(i))
		fx.log = append(fx.log, fmt.Sprintf("write %d %d %d", off, n, size))
		got, err := h.WriteAt(p, off)
		if fx.checkErr("WriteAt", err) && got != int(n) {
			fx.failf("WriteAt: %d of %d without an error", got, n)
		}
		if got > 0 && off+int64(got) > size {
			fx.resize(off + int64(got))
		}
		if got > 0 {
			copy(fx.data[off:], p[:got])
		}
		for j := off; j < off+int64(got); j++ {
			fx.known[j] = true
		}
		if got < int(n) {
			// The rest of the write may have landed in part (below the
			// size); where the host answers for the size (Shared, no
			// cache), a piece whose result was lost may have extended it.
			if fi, err := h.Stat(); err == nil && fi.Size() > fx.size() && fi.Size() <= off+n && fx.e.cache == nil {
				fx.resize(fi.Size())
			}
			for j := off + int64(got); j < min(off+n, fx.size()); j++ {
				fx.known[j] = false
			}
		}
	case k < 13: // read
		off := fx.rng.Int64N(size + 4096)
		n := 1 + fx.rng.Int64N(30000)
		p := make([]byte, n)
		fx.log = append(fx.log, fmt.Sprintf("read %d %d %d", off, n, size))
		got, err := h.ReadAt(p, off)
		want := int(max(0, min(n, size-off)))
		if err == io.EOF && got == want {
			err = nil
		}
		if fx.checkErr("ReadAt", err) && got != want {
			fx.failf("ReadAt(%d, %d): %d, want %d", n, off, got, want)
		}
		if got > want {
			fx.failf("ReadAt(%d, %d) returned %d bytes, past the size", n, off, got)
		}
		fx.checkBytes("ReadAt", p[:got], off)
	case k < 14: // truncate (not through the backend: it cannot fail here)
		sz := fx.rng.Int64N(faultMaxFile)
		fx.log = append(fx.log, fmt.Sprintf("truncate %d 0 %d", sz, size))
		if err := h.Truncate(sz); err != nil {
			fx.failf("Truncate: %v", err)
		}
		fx.resize(sz)
	case k < 15: // punch a range, keeping the size
		off := fx.rng.Int64N(faultMaxFile)
		n := 1 + fx.rng.Int64N(40000)
		mode := uint32(unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE)
		fx.log = append(fx.log, fmt.Sprintf("punch %d %d %d", off, n, size))
		ok := fx.checkErr("Allocate", h.Allocate(mode, off, n))
		for j := off; j < min(off+n, size); j++ {
			// A failed punch may have run in part (or in full, its result lost).
			fx.data[j], fx.known[j] = 0, ok
		}
	case k < 16: // allocate, growing the size
		off := fx.rng.Int64N(faultMaxFile)
		n := 1 + fx.rng.Int64N(min(faultMaxFile-off, 40000))
		fx.log = append(fx.log, fmt.Sprintf("allocate %d %d %d", off, n, size))
		if fx.checkErr("Allocate", h.Allocate(0, off, n)) {
			if off+n > size {
				fx.resize(off + n)
			}
		} else if fi, err := h.Stat(); err == nil && fi.Size() > size && fi.Size() <= off+n && fx.e.cache == nil && !fx.e.opts.HostMmap {
			fx.resize(fi.Size()) // the host answers for the size, and the allocation ran
		}
	case k < 18: // sync
		fx.log = append(fx.log, fmt.Sprintf("sync 0 0 %d", size))
		fx.checkErr("Sync", h.Sync())
	default: // reopen a handle
		fx.log = append(fx.log, fmt.Sprintf("reopen 0 0 %d", size))
		j := fx.rng.IntN(len(fx.h))
		fx.checkErr("Close", fx.h[j].Close())
		fx.h[j] = openFile(fx.t, fx.e, fx.path, os.O_RDWR)
	}
	fi, err := fx.h[0].Stat()
	if err != nil || fi.Size() != fx.size() {
		fx.failf("size %d (%v), model %d", fi.Size(), err, fx.size())
	}
}

// heal stops the faults and checks that everything reaches the host:
// each handle's Sync reports at most one earlier failure, the next
// succeeds; the host then equals the engine's view, and both equal the
// model where it is certain.
func (fx *faultFsx) heal() {
	fx.inj.Heal()
	for i, h := range fx.h {
		if err := h.Sync(); err != nil {
			if !errors.Is(err, syscall.EIO) {
				fx.failf("Sync of handle %d after healing: %v", i, err)
			}
			if err := h.Sync(); err != nil {
				fx.failf("second Sync of handle %d after healing: %v", i, err)
			}
		}
	}
	view := make([]byte, fx.size()+1)
	n, err := fx.h[0].ReadAt(view, 0)
	if int64(n) != fx.size() || err != io.EOF {
		fx.failf("full read after healing: %d, %v (size %d)", n, err, fx.size())
	}
	view = view[:n]
	host := readHost(fx.t, fx.path)
	if !bytes.Equal(host, view) {
		fx.failf("host (%d bytes) differs from the engine's view at %d", len(host), diffAt(host, view))
	}
	fx.checkBytes("after healing", view, 0)
	// What the engine holds now is certain.
	copy(fx.data, view)
	for j := range fx.known {
		fx.known[j] = true
	}
	fx.heals++
	fx.arm()
}

func (fx *faultFsx) run(ops int) {
	for i := range ops {
		fx.step(i)
		if i%150 == 149 {
			fx.heal()
		}
	}
	fx.heal()
	fx.inj.Heal() // the cleanup's Engine.Close, which fsyncs, runs without faults
}
