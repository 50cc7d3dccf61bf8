//go:build linux

package engine

import (
	"bytes"
	"fmt"
	"io"
	mrand "math/rand"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/crash"
)

// Crash and durability (TESTPLAN D1–D6, and F13: garbage in unsynced
// blocks). An engine runs over a crash.Host, which records every change
// the engine makes to the file; a workload notes, for each of its calls,
// the host operations it spanned and what it acknowledged: a Sync or
// Datasync that returned nil acknowledges the whole file (bytes and
// size), an O_SYNC/O_DSYNC or RWF_DSYNC write that returned its bytes.
// Then the file is rebuilt as a crash would leave it after every
// recorded host operation, keeping a share of the unsynced blocks, and
// every acknowledged byte not touched since must be there.

// Handles of a crash workload.
const (
	crRW    = iota // O_RDWR
	crRW2          // O_RDWR, sharing the cache
	crDsync        // O_RDWR|O_DSYNC
	crOsync        // O_RDWR|O_SYNC
	crHandles
)

var crFlags = [crHandles]int{os.O_RDWR, os.O_RDWR, os.O_RDWR | syscall.O_DSYNC, os.O_RDWR | syscall.O_SYNC}

// crEvent is one call of a crash workload.
type crEvent struct {
	desc          string
	before, after int        // host.Seq() when the call started and returned
	touch         [][2]int64 // byte ranges whose value the call may change
	sizeChange    bool       // the call may change the size
	ackAll        bool       // a Sync: the whole file is acknowledged
	ackRange      [2]int64   // a synchronous write: these bytes are
	snap          []byte     // the model after the call (ackAll), or the range's bytes
	size          int64      // the model's size after the call
}

// crw is a crash workload on one file.
type crw struct {
	t         *testing.T
	name      string
	opts      Options
	seed      uint64
	rng       *rand.Rand
	host      *crash.Host
	key       crash.Key
	e         *Engine
	path      string
	h         [crHandles]*File
	model     []byte
	events    []crEvent
	zeroRange bool
	maxFile   int64
	maxWrite  int64
}

// newCrw creates the file in dir, an engine over a recording host, and
// the handles; the file starts empty (and durable).
func newCrw(t *testing.T, name string, opts Options, seed uint64, dir string) *crw {
	t.Helper()
	c := &crw{t: t, name: name, opts: opts, seed: seed, rng: rand.New(rand.NewPCG(seed, 0xc4a5)),
		maxFile: 160 << 10, maxWrite: 6000}
	if raceEnabled {
		// The race detector charges every byte a crash image copies;
		// still past the tiny cache, so eviction writes back.
		c.maxFile = 96 << 10
	}
	c.path = filepath.Join(dir, fmt.Sprintf("crash-%d", seed))
	writeHost(t, c.path, nil)
	c.zeroRange = zeroRangeSupported(c.path)
	opts.WrapBackend = func(b uring.Backend) uring.Backend {
		c.host = crash.Wrap(b)
		return c.host
	}
	c.e = newEngine(t, opts)
	for i := range c.h {
		c.h[i] = openFile(t, c.e, c.path, crFlags[i])
	}
	fd := int(c.h[crRW].Fd())
	if err := c.host.Track(fd); err != nil {
		t.Fatal(err)
	}
	k, err := crash.KeyOf(fd)
	if err != nil {
		t.Fatal(err)
	}
	c.key = k
	return c
}

func (c *crw) size() int64 { return int64(len(c.model)) }

func (c *crw) failf(format string, args ...any) {
	c.t.Helper()
	var b strings.Builder
	for i := max(0, len(c.events)-40); i < len(c.events); i++ {
		ev := &c.events[i]
		fmt.Fprintf(&b, "  %4d host ops (%d, %d]: %s\n", i, ev.before, ev.after, ev.desc)
	}
	c.t.Fatalf("%s seed %d (RINGFS_FSX_SEED): %s\nlast calls (replay: the same seed regenerates them):\n%s",
		c.name, c.seed, fmt.Sprintf(format, args...), b.String())
}

func (c *crw) resize(n int64) {
	if n <= c.size() {
		c.model = c.model[:n]
		return
	}
	c.model = append(c.model, make([]byte, n-c.size())...)
}

// call runs fn as one recorded call and returns its event for the caller
// to complete (touches and acknowledgements are filled in by the caller
// before the next call).
func (c *crw) call(desc string, fn func() error) *crEvent {
	c.t.Helper()
	ev := crEvent{desc: desc, before: c.host.Seq()}
	if err := fn(); err != nil {
		c.failf("%s: %v", desc, err)
	}
	ev.after = c.host.Seq()
	c.events = append(c.events, ev)
	return &c.events[len(c.events)-1]
}

func (c *crw) finish(ev *crEvent) {
	ev.size = c.size()
	if ev.ackAll {
		ev.snap = bytes.Clone(c.model)
	}
}

// write writes n bytes at off through handle hi (flags: RWF_* for
// WriteAtFlags, 0 for WriteAt).
func (c *crw) write(hi int, off, n int64, flags int, tag uint64) {
	c.t.Helper()
	p := pattern(int(n), c.seed, tag)
	ev := c.call(fmt.Sprintf("write h%d %d+%d flags %#x (size %d)", hi, off, n, flags, c.size()), func() error {
		var k int
		var err error
		if flags != 0 {
			k, err = c.h[hi].WriteAtFlags(p, off, flags)
		} else {
			k, err = c.h[hi].WriteAt(p, off)
		}
		if err == nil && k != len(p) {
			err = fmt.Errorf("short write %d", k)
		}
		return err
	})
	ev.touch = [][2]int64{{off, off + n}}
	ev.sizeChange = off+n > c.size()
	c.resize(max(c.size(), off+n))
	copy(c.model[off:], p)
	if hi == crDsync || hi == crOsync || flags&(unix.RWF_DSYNC|unix.RWF_SYNC) != 0 {
		ev.ackRange = [2]int64{off, off + n}
		ev.snap = p
	}
	c.finish(ev)
}

func (c *crw) truncate(size int64) {
	c.t.Helper()
	old := c.size()
	ev := c.call(fmt.Sprintf("truncate %d (size %d)", size, old), func() error { return c.h[crRW].Truncate(size) })
	ev.touch = [][2]int64{{min(old, size), max(old, size)}}
	ev.sizeChange = size != old
	c.resize(size)
	c.finish(ev)
}

func (c *crw) allocate(mode uint32, off, n int64) {
	c.t.Helper()
	old := c.size()
	ev := c.call(fmt.Sprintf("allocate %#x %d+%d (size %d)", mode, off, n, old), func() error { return c.h[crRW].Allocate(mode, off, n) })
	end := off + n
	if mode&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
		a, b := min(off, old), min(end, old)
		clear(c.model[a:b])
		ev.touch = append(ev.touch, [2]int64{a, b})
	}
	if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && end > old {
		ev.touch = append(ev.touch, [2]int64{old, end})
		ev.sizeChange = true
		c.resize(end)
	}
	c.finish(ev)
}

func (c *crw) sync(hi int, data bool) {
	c.t.Helper()
	ev := c.call(fmt.Sprintf("sync h%d data=%v (size %d)", hi, data, c.size()), func() error {
		if data {
			return c.h[hi].Datasync()
		}
		return c.h[hi].Sync()
	})
	ev.ackAll = true
	c.finish(ev)
}

func (c *crw) engineSync() {
	c.t.Helper()
	ev := c.call(fmt.Sprintf("Engine.Sync (size %d)", c.size()), c.e.Sync)
	ev.ackAll = true
	c.finish(ev)
}

func (c *crw) read(hi int, off, n int64) {
	c.t.Helper()
	p := make([]byte, n)
	var got int
	var rerr error
	ev := c.call(fmt.Sprintf("read h%d %d+%d (size %d)", hi, off, n, c.size()), func() error {
		got, rerr = c.h[hi].ReadAt(p, off)
		return nil
	})
	want := int(max(0, min(n, c.size()-off)))
	if got != want || (rerr != nil && rerr != io.EOF) || (want < int(n) && rerr != io.EOF) {
		c.failf("ReadAt(%d at %d): %d, %v; want %d", n, off, got, rerr, want)
	}
	if got > 0 && !bytes.Equal(p[:got], c.model[off:off+int64(got)]) {
		c.failf("ReadAt(%d at %d): data differs at %d", n, off, off+int64(diffAt(p[:got], c.model[off:off+int64(got)])))
	}
	c.finish(ev)
}

func (c *crw) reopen(hi int) {
	c.t.Helper()
	ev := c.call(fmt.Sprintf("reopen h%d", hi), func() error {
		if err := c.h[hi].Close(); err != nil {
			return err
		}
		f, err := c.e.Open(c.path, crFlags[hi], 0)
		c.h[hi] = f
		return err
	})
	c.finish(ev)
}

// step runs one random call.
func (c *crw) step(i int) {
	c.t.Helper()
	size := c.size()
	tag := uint64(i)
	w := c.rng.IntN(100)
	off := c.rng.Int64N(c.maxFile - 1)
	n := 1 + c.rng.Int64N(min(c.maxWrite, c.maxFile-off))
	if c.rng.IntN(3) == 0 {
		off &^= 4095
		n = min((n+4095)&^4095, c.maxFile-off)
	}
	switch {
	case w < 40:
		c.write(c.rng.IntN(2), off, n, 0, tag)
	case w < 46:
		c.write(crDsync, off, n, 0, tag)
	case w < 50:
		c.write(crOsync, off, n, 0, tag)
	case w < 54:
		c.write(crRW, off, n, unix.RWF_DSYNC, tag)
	case w < 60:
		c.truncate(c.rng.Int64N(c.maxFile))
	case w < 64:
		c.allocate(0, off, n)
	case w < 66:
		c.allocate(unix.FALLOC_FL_KEEP_SIZE, off, n)
	case w < 70:
		c.allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	case w < 72 && c.zeroRange:
		c.allocate(unix.FALLOC_FL_ZERO_RANGE, off, n)
	case w < 80:
		c.sync(c.rng.IntN(2), c.rng.IntN(3) == 0)
	case w < 82:
		c.engineSync()
	case w < 95:
		c.read(c.rng.IntN(2), c.rng.Int64N(size+1), 1+c.rng.Int64N(20000))
	default:
		c.reopen(c.rng.IntN(crHandles))
	}
}

// crashState is what a crash at a point must preserve: the acknowledged
// bytes not touched since, and the size when no call since changed it.
type crashState struct {
	acked     byteSet
	ackedVal  []byte
	ackedSize int64
	sizeValid bool
	block     bool // widen touches to whole blocks (crash images with garbage)
}

func (s *crashState) touch(a, b int64) {
	if s.block {
		a, b = a&^(crash.BlockSize-1), (b+crash.BlockSize-1)&^(crash.BlockSize-1)
	}
	s.acked.set(a, b, 0)
}

func (s *crashState) apply(ev *crEvent) {
	for _, r := range ev.touch {
		s.touch(r[0], r[1])
	}
	if ev.sizeChange {
		s.sizeValid = false
	}
	s.acked.resize(ev.size, 0)
	if int64(len(s.ackedVal)) < ev.size {
		s.ackedVal = append(s.ackedVal, make([]byte, ev.size-int64(len(s.ackedVal)))...)
	}
	switch {
	case ev.ackAll:
		fillFlags(s.acked, 1)
		s.ackedVal = bytes.Clone(ev.snap)
		s.ackedSize, s.sizeValid = ev.size, true
	case ev.ackRange[1] > ev.ackRange[0]:
		a, b := ev.ackRange[0], ev.ackRange[1]
		copy(s.ackedVal[a:b], ev.snap)
		s.acked.set(a, b, 1)
	}
}

// crashCheck rebuilds the file as a crash after every recorded host
// operation would leave it, for each share of unsynced blocks kept (with
// garbage in the others when garbage is set), and checks each image
// against what had been acknowledged by then. It returns the crash
// points and images checked and the acknowledged bytes verified.
func (c *crw) crashCheck(keeps []float64, garbage bool) (points, images, verified int64) {
	c.t.Helper()
	st := &crashState{sizeValid: true, block: garbage}
	rng := mrand.New(mrand.NewSource(int64(c.seed)))
	last := c.host.Seq()
	ev := 0
	for at := 0; at <= last; at++ {
		for ev < len(c.events) && c.events[ev].after <= at {
			st.apply(&c.events[ev])
			ev++
		}
		chk := st.acked
		sizeOK := st.sizeValid
		var cur *crEvent
		if ev < len(c.events) && c.events[ev].before < at {
			// A call in progress: what it touches may be half done.
			cur = &c.events[ev]
			if len(cur.touch) > 0 {
				saved := st.acked
				st.acked = bytes.Clone(saved)
				for _, r := range cur.touch {
					st.touch(r[0], r[1])
				}
				chk, st.acked = st.acked, saved
			}
			sizeOK = sizeOK && !cur.sizeChange
		}
		n := chk.count()
		for _, keep := range keeps {
			img := c.host.Crash(c.key, at, keep, garbage, rng)
			images++
			where := func() string {
				s := fmt.Sprintf("crash after host op %d of %d (keep %.0f%%, garbage %v)", at, last, keep*100, garbage)
				if cur != nil {
					s += "; in progress: " + cur.desc
				}
				return s + "; host ops:\n" + c.hostOps(at)
			}
			if sizeOK && int64(len(img)) != st.ackedSize {
				c.failf("%s: size %d, acknowledged %d", where(), len(img), st.ackedSize)
			}
			if i, lost := chk.firstDiff(img, st.ackedVal); lost > 0 {
				got := -1
				if i < int64(len(img)) {
					got = int(img[i])
				}
				c.failf("%s: %d acknowledged bytes lost, first at %d (got %d, acknowledged %#x; image %d bytes)",
					where(), lost, i, got, st.ackedVal[i], len(img))
			}
			if garbage {
				c.onlyUnsyncedDiffer(at, img, where)
			}
			verified += n
		}
		points++
	}
	return points, images, verified
}

// onlyUnsyncedDiffer checks that a crash image differs from the durable
// content only in blocks changed since the last fsync.
func (c *crw) onlyUnsyncedDiffer(at int, img []byte, where func() string) {
	durable, _ := c.host.Durable(c.key, at)
	unsynced := map[int64]bool{}
	for _, b := range c.host.Unsynced(c.key, at) {
		unsynced[b] = true
	}
	for off := 0; off < max(len(img), len(durable)); off += crash.BlockSize {
		end := off + crash.BlockSize
		a, b := paddedBlock(img, off, end), paddedBlock(durable, off, end)
		if !bytes.Equal(a, b) && !unsynced[int64(off/crash.BlockSize)] {
			c.failf("%s: block %d differs from the durable content but was not changed since the last fsync", where(), off/crash.BlockSize)
		}
	}
}

func paddedBlock(b []byte, off, end int) []byte {
	out := make([]byte, end-off)
	if off < len(b) {
		copy(out, b[off:min(end, len(b))])
	}
	return out
}

// hostOps lists the recorded host operations around at.
func (c *crw) hostOps(at int) string {
	var b strings.Builder
	for _, o := range c.host.Ops(c.key) {
		if o.Seq > at-12 && o.Seq <= at+3 {
			mark := "  "
			if o.Seq == at {
				mark = "->"
			}
			fmt.Fprintf(&b, "  %s %s\n", mark, o)
		}
	}
	return b.String()
}

// close closes the handles and the engine, and checks that the host
// equals the model.
func (c *crw) close() {
	c.t.Helper()
	for i, h := range c.h {
		if err := h.Close(); err != nil {
			c.failf("Close of handle %d: %v", i, err)
		}
	}
	if err := c.e.Close(); err != nil {
		c.failf("Engine.Close: %v", err)
	}
	if got := readHost(c.t, c.path); !bytes.Equal(got, c.model) {
		c.failf("host differs from the model after Engine.Close: %d bytes, model %d, first difference at %d", len(got), len(c.model), diffAt(got, c.model))
	}
}

// --- rows ---

func init() {
	addRow("F13", "garbage in unsynced blocks at a crash: only unsynced blocks differ", rowF13)
	addRow("D1", "crash at every host op, 0/10/50/100% of unsynced blocks kept", rowD1)
	addRow("D2", "kill -9 of a child process doing I/O (real kernel)", rowD2)
	addRow("D3", "O_SYNC/O_DSYNC/RWF_DSYNC writes durable when they return", rowD3)
	addRow("D4", "power cut under a device-mapper target", rowD4)
	addRow("D5", "Sync racing ongoing writes", rowD5)
	addRow("D6", "Truncate/Allocate + Sync then crash: size persists, nothing resurrected", rowD6)
}

// crOps returns a row's calls per configuration: n, or underRace under
// the race detector, times RINGFS_SOAK's factor.
func crOps(n, underRace int) int {
	if raceEnabled {
		n = underRace
	}
	return n * soakFactor()
}

// crConfigs are the engines the crash rows drive: tiny caches force
// eviction writeback.
var crConfigs = []fwConfig{
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache}},
	{"exclusive/tiny/psync", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: "psync"}},
	{"exclusive", Options{Mode: Exclusive, CacheSize: 4 << 20}},
	{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
	{"writethrough", Options{Mode: Writethrough, CacheSize: 4 << 20}},
}

// rowD1: a seeded random workload (writes through plain, O_DSYNC and
// O_SYNC handles and with RWF_DSYNC, truncates, allocations, punches,
// syncs, reads, reopens) per configuration; then a crash after every
// recorded host operation, keeping 0, 10, 50 and 100% of the unsynced
// blocks: every acknowledged byte not touched since must be in the
// image, and the size must be the acknowledged one when no call since
// changed it.
func rowD1(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t)
	ops := crOps(150, 80)
	var points, images, verified, calls int64
	for ci, cfg := range crConfigs {
		s := seed + uint64(ci)
		c := newCrw(t, cfg.name, cfg.opts, s, relDir(t))
		for i := range ops {
			c.step(i)
		}
		c.sync(crRW, false)
		p, im, v := c.crashCheck([]float64{0, 0.1, 0.5, 1}, false)
		c.close()
		t.Logf("%s seed %d: %d calls, %d crash points × 4 keep shares: %d acknowledged byte checks, 0 lost", cfg.name, s, len(c.events), p, v)
		points += p
		images += im
		verified += v
		calls += int64(len(c.events))
	}
	fig.Set("ops", calls)
	fig.Set("crash_points", points)
	fig.Set("crash_images", images)
	fig.Set("acked_bytes_checked", verified)
}

// rowF13: the same workloads, crashed with garbage in the unsynced blocks
// that are not kept: the image differs from the durable content only in
// blocks changed since the last fsync, and the acknowledged bytes of
// every block no call touched since their acknowledgement are intact (so
// the engine never writes a block it was not asked to change).
func rowF13(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t) + 100
	ops := crOps(60, 40)
	var points, images, verified int64
	for ci, cfg := range crConfigs {
		s := seed + uint64(ci)
		c := newCrw(t, cfg.name, cfg.opts, s, relDir(t))
		for i := range ops {
			c.step(i)
		}
		p, im, v := c.crashCheck([]float64{0, 0.5}, true)
		c.close()
		points += p
		images += im
		verified += v
	}
	fig.Set("crash_points", points)
	fig.Set("crash_images", images)
	fig.Set("acked_bytes_checked", verified)
	t.Logf("F13: %d crash points, %d images with garbage in unsynced blocks: only unsynced blocks differed, 0 acknowledged bytes lost", points, images)
}

// rowD3: synchronous writes (O_DSYNC and O_SYNC handles, RWF_DSYNC and
// RWF_SYNC) among plain writes and truncates, in every mode that goes
// through the backend: right after each returns, the crash image with
// nothing unsynced kept holds its bytes; then the full crash check.
func rowD3(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t) + 200
	var writes, points int64
	for ci, cfg := range append(crConfigs[:len(crConfigs):len(crConfigs)],
		fwConfig{"shared", Options{Mode: Shared}}, fwConfig{"uncached", Options{Mode: Exclusive, CacheSize: -1}}) {
		s := seed + uint64(ci)
		c := newCrw(t, cfg.name, cfg.opts, s, relDir(t))
		rng := mrand.New(mrand.NewSource(int64(s)))
		for i := range crOps(60, 40) {
			off := c.rng.Int64N(c.maxFile - 1)
			n := 1 + c.rng.Int64N(min(9000, c.maxFile-off))
			var hi, flags int
			switch c.rng.IntN(6) {
			case 0:
				c.write(c.rng.IntN(2), off, n, 0, uint64(i))
				continue
			case 1:
				c.truncate(c.rng.Int64N(c.maxFile))
				continue
			case 2:
				hi = crDsync
			case 3:
				hi = crOsync
			case 4:
				hi, flags = crRW, unix.RWF_DSYNC
			default:
				hi, flags = crRW2, unix.RWF_SYNC
			}
			c.write(hi, off, n, flags, uint64(i))
			at := c.host.Seq()
			img := c.host.Crash(c.key, at, 0, false, rng)
			p := pattern(int(n), c.seed, uint64(i))
			if int64(len(img)) < off+n || !bytes.Equal(img[off:off+n], p) {
				c.failf("synchronous write h%d %d+%d flags %#x returned, but a crash right after (host op %d) loses it (image %d bytes)", hi, off, n, flags, at, len(img))
			}
			writes++
		}
		pts, _, _ := c.crashCheck([]float64{0}, false)
		points += pts
		c.close()
	}
	fig.Set("sync_writes", writes)
	fig.Set("crash_points", points)
	t.Logf("D3: %d synchronous writes each durable when it returned; %d crash points checked", writes, points)
}

// rowD4 would cut power under a device-mapper target (dm-log-writes or
// dm-flakey) to check durability against a real block device.
func rowD4(t *testing.T, fig *Figures) {
	t.Skip("needs root and a device-mapper target (dm-log-writes/dm-flakey); TESTPLAN omits it: crash images come from uring/crash (D1, D3, D5, D6, F13) and process death from D2")
}

// rowD5: goroutines write fresh slots of one file (interleaved, so that
// they share pages) through their own handles while another goroutine
// calls Sync, Datasync or Engine.Sync over and over. For each Sync that
// returned nil, every write that had returned before that Sync was
// called must be in the crash image with nothing unsynced kept.
func rowD5(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	seed := fsxSeed(t) + 300
	var syncs, checked, points int64
	for ci, cfg := range crConfigs {
		s := seed + uint64(ci)
		c := newCrw(t, cfg.name, cfg.opts, s, relDir(t))
		const writers, slot = 4, 1500
		perWriter := crOps(150, 60)
		var done [writers]atomic.Int64 // writes returned so far
		var syncsDone atomic.Int64
		type syncPoint struct {
			at    int
			count [writers]int64
			kind  int
		}
		var mu sync.Mutex
		var sps []syncPoint
		var wg sync.WaitGroup
		errs := make(chan error, writers+1)
		stop := make(chan struct{})
		for g := range writers {
			f := openFile(t, c.e, c.path, os.O_RDWR)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer f.Close()
				for i := range perWriter {
					// Every 20 writes, let the Syncs catch up, so that
					// they overlap the writes however fast these are.
					for i%20 == 0 && syncsDone.Load() < int64(i/20) {
						time.Sleep(20 * time.Microsecond)
					}
					off := int64(i*writers+g) * slot
					p := pattern(slot, s, uint64(g)<<32|uint64(i))
					if n, err := f.WriteAt(p, off); n != slot || err != nil {
						errs <- fmt.Errorf("writer %d: WriteAt: %d, %v", g, n, err)
						return
					}
					done[g].Store(int64(i + 1))
				}
			}()
		}
		var sw sync.WaitGroup
		sw.Add(1)
		go func() {
			defer sw.Done()
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				var sp syncPoint
				for g := range writers {
					sp.count[g] = done[g].Load()
				}
				sp.kind = k % 3
				var err error
				switch sp.kind {
				case 0:
					err = c.h[crRW].Sync()
				case 1:
					err = c.h[crRW2].Datasync()
				default:
					err = c.e.Sync()
				}
				if err != nil {
					errs <- fmt.Errorf("sync %d: %v", k, err)
					return
				}
				sp.at = c.host.Seq()
				syncsDone.Add(1)
				mu.Lock()
				sps = append(sps, sp)
				mu.Unlock()
				if k%4 == 3 {
					time.Sleep(50 * time.Microsecond)
				}
			}
		}()
		wg.Wait()
		close(stop)
		sw.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s seed %d: %v", cfg.name, s, err)
		}
		rng := mrand.New(mrand.NewSource(int64(s)))
		for _, sp := range sps {
			img := c.host.Crash(c.key, sp.at, 0, false, rng)
			for g := range writers {
				for i := range sp.count[g] {
					off := (i*writers + int64(g)) * slot
					p := pattern(slot, s, uint64(g)<<32|uint64(i))
					if int64(len(img)) < off+slot || !bytes.Equal(img[off:off+slot], p) {
						t.Fatalf("%s seed %d: write %d of writer %d returned before a Sync (kind %d) was called that returned nil at host op %d, but is not in the crash image there (%d bytes)",
							cfg.name, s, i, g, sp.kind, sp.at, len(img))
					}
					checked++
				}
			}
			syncs++
		}
		if len(sps) == 0 {
			t.Fatalf("%s: no Sync completed while the writers ran", cfg.name)
		}
		points += int64(len(sps))
		// The model: every slot written.
		c.resize(int64(perWriter*writers) * slot)
		for g := range writers {
			for i := range int64(perWriter) {
				copy(c.model[(i*writers+int64(g))*slot:], pattern(slot, s, uint64(g)<<32|uint64(i)))
			}
		}
		c.close()
		t.Logf("%s seed %d: %d Syncs raced %d writers; every write returned before a Sync began was durable at its return", cfg.name, s, len(sps), writers)
	}
	fig.Set("syncs", syncs)
	fig.Set("writes_checked", checked)
	fig.Set("crash_points", points)
}

// rowD6: directed truncate and allocate sequences, each followed by a
// Sync, then a crash at every host operation: the size the last Sync saw
// persists, bytes cut off by a truncate never come back when the file is
// extended again (not even dirty bytes that were only in the cache), and
// punched or zeroed ranges stay zero.
func rowD6(t *testing.T, fig *Figures) {
	rowOutcome(t, fig, "acked_bytes_lost")
	checkLeaks(t)
	var points, images int64
	cfgs := append(crConfigs[:len(crConfigs):len(crConfigs)],
		fwConfig{"shared", Options{Mode: Shared}}, fwConfig{"uncached", Options{Mode: Exclusive, CacheSize: -1}})
	for ci, cfg := range cfgs {
		c := newCrw(t, cfg.name, cfg.opts, uint64(600+ci), relDir(t))
		rng := mrand.New(mrand.NewSource(int64(ci)))
		expect := func(what string, size int64, zero [2]int64) {
			at := c.host.Seq()
			for _, keep := range []float64{0, 1} {
				img := c.host.Crash(c.key, at, keep, false, rng)
				if int64(len(img)) != size {
					c.failf("%s, then Sync, then a crash (keep %.0f%%): size %d, want %d", what, keep*100, len(img), size)
				}
				if zero[1] > zero[0] && firstNonzeroByte(img[zero[0]:zero[1]]) >= 0 {
					i := zero[0] + int64(firstNonzeroByte(img[zero[0]:zero[1]]))
					c.failf("%s, then Sync, then a crash (keep %.0f%%): byte %d is %#x, want 0 (resurrected)", what, keep*100, i, img[i])
				}
			}
		}
		c.write(crRW, 0, 100<<10, 0, 1)
		c.sync(crRW, false)
		c.truncate(30 << 10)
		c.sync(crRW, false)
		expect("Truncate(30K)", 30<<10, [2]int64{})
		c.truncate(80 << 10)
		c.sync(crRW2, true)
		expect("Truncate(80K) after Truncate(30K)", 80<<10, [2]int64{30 << 10, 80 << 10})
		// Dirty bytes past the new end, never written back.
		c.write(crRW, 60<<10, 30<<10, 0, 2)
		c.truncate(50 << 10)
		c.sync(crRW, false)
		expect("write 60K..90K, Truncate(50K)", 50<<10, [2]int64{})
		c.truncate(100 << 10)
		c.sync(crRW, false)
		expect("Truncate(100K) after dirty bytes were cut off", 100<<10, [2]int64{50 << 10, 100 << 10})
		c.allocate(0, 100<<10, 20<<10)
		c.sync(crRW, false)
		expect("Allocate(0, 100K+20K)", 120<<10, [2]int64{100 << 10, 120 << 10})
		c.allocate(unix.FALLOC_FL_KEEP_SIZE, 120<<10, 50<<10)
		c.sync(crRW, false)
		expect("Allocate(KEEP_SIZE) past the end", 120<<10, [2]int64{100 << 10, 120 << 10})
		c.allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 10<<10, 10<<10)
		c.sync(crRW, false)
		expect("punch 10K..20K", 120<<10, [2]int64{10 << 10, 20 << 10})
		if c.zeroRange {
			c.write(crRW, 0, 40<<10, 0, 3)
			c.allocate(unix.FALLOC_FL_ZERO_RANGE, 5<<10, 3<<10)
			c.sync(crRW, false)
			expect("write 0..40K, zero 5K..8K", 120<<10, [2]int64{5 << 10, 8 << 10})
		}
		c.write(crRW, 130<<10, 1000, 0, 4) // extends past 120K with a gap
		c.truncate(125 << 10)
		c.sync(crRW, false)
		expect("write past the end, Truncate back", 125<<10, [2]int64{120 << 10, 125 << 10})
		p, im, _ := c.crashCheck([]float64{0, 0.5, 1}, false)
		points += p
		images += im
		c.close()
	}
	fig.Set("configs", int64(len(cfgs)))
	fig.Set("crash_points", points)
	fig.Set("crash_images", images)
	t.Logf("D6: %d configurations, %d crash points: sizes persisted, nothing resurrected past EOF", len(cfgs), points)
}
