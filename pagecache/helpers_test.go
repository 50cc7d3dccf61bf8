//go:build linux

package pagecache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// Harness shared by the tests of this package: backends, a recording
// backend wrapper, host files, a byte model, a replayable op log and a
// checker of the cache's internal invariants.

// testBackends are the backends every backend-sensitive test runs on.
var testBackends = []string{uring.BackendUring, uring.BackendPsync}

// openBackend opens a backend and closes it at cleanup.
func openBackend(t testing.TB, name string, inj uring.Injector) uring.Backend {
	t.Helper()
	opts := uring.Options{Backend: name}
	if inj != nil {
		opts.Injector = inj
	}
	b, err := uring.New(opts)
	if err != nil {
		t.Fatalf("uring.New(%s): %v", name, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// newCache returns a cache on be; at cleanup every file still open is
// released (written back first) and the cache closed. Its files' host I/O
// goes through be's ring also on tmpfs (Options.RingOnly), where the
// tests' files usually are: the ring's paths are what they test
// (TestInlineFiles tests the others).
func newCache(t testing.TB, be uring.Backend, opts Options) *Cache {
	t.Helper()
	opts.Backend = be
	opts.RingOnly = true
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Cache.Close: %v", err)
		}
	})
	return c
}

// hostFile is a temporary host file with its descriptors.
type hostFile struct {
	path   string
	fh     *os.File
	direct *os.File // O_DIRECT descriptor or nil
}

func (h *hostFile) fd() int32 { return int32(h.fh.Fd()) }

func (h *hostFile) directFd() int32 {
	if h.direct == nil {
		return -1
	}
	return int32(h.direct.Fd())
}

// testDir returns a directory for host files, removed at cleanup: under
// RINGFS_TESTDIR when set, else on /dev/shm when it is a writable tmpfs
// (fsync is free there, which keeps the fault sweeps fast), else
// t.TempDir().
func testDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("RINGFS_TESTDIR")
	if base == "" && shmUsable() {
		base = "/dev/shm"
	}
	if base == "" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp(base, "pagecache-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// shmUsable reports whether /dev/shm is a writable tmpfs.
func shmUsable() bool {
	var st unix.Statfs_t
	return unix.Statfs("/dev/shm", &st) == nil && st.Type == unix.TMPFS_MAGIC && unix.Access("/dev/shm", unix.W_OK) == nil
}

// newHostFile creates a file holding data in testDir; direct also opens an
// O_DIRECT descriptor.
func newHostFile(t testing.TB, data []byte, direct bool) *hostFile {
	t.Helper()
	return newHostFileIn(t, testDir(t), data, direct)
}

// newHostFileIn is newHostFile in dir.
func newHostFileIn(t testing.TB, dir string, data []byte, direct bool) *hostFile {
	t.Helper()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostFile{path: path, fh: fh}
	t.Cleanup(func() { fh.Close() })
	if direct {
		d, err := os.OpenFile(path, os.O_RDWR|unix.O_DIRECT, 0)
		if err != nil {
			t.Skipf("O_DIRECT unsupported here: %v", err)
		}
		h.direct = d
		t.Cleanup(func() { d.Close() })
	}
	return h
}

// bytes returns the host file's contents.
func (h *hostFile) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(h.path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// openFile starts caching h with the given size, releasing it at cleanup
// (after a final writeback, so that Cache.Close can succeed).
func openFile(t testing.TB, c *Cache, h *hostFile, size int64) *File {
	t.Helper()
	f, err := c.NewFile(h.fd(), h.directFd(), size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseFile(t, f) })
	return f
}

// recordedFile opens a 64-page host file of pattern(seed) in a 64-page
// cache (readahead one page) over a recording uring backend, for tests
// that block and watch its host I/O.
func recordedFile(t testing.TB, seed uint64) ([]byte, *hostFile, *recBackend, *Cache, *File) {
	t.Helper()
	data := pattern(seed, 64*PageSize)
	h := newHostFile(t, data, false)
	rb := &recBackend{Backend: openBackend(t, uring.BackendUring, nil)}
	c := newCache(t, rb, Options{Capacity: 64 * PageSize, Readahead: PageSize})
	return data, h, rb, c, openFile(t, c, h, int64(len(data)))
}

// releaseFile writes f back and releases it, unless already released.
func releaseFile(t testing.TB, f *File) {
	if f.Released() {
		return
	}
	if err := f.Writeback(Range{0, 1 << 50}, SyncNone); err != nil {
		t.Errorf("final writeback: %v", err)
	}
	if err := f.Release(); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// pattern returns n bytes that depend on seed and never contain 0xAA or 0.
func pattern(seed uint64, n int) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	for _, v := range []byte{0, 0xAA} {
		for i := bytes.IndexByte(b, v); i >= 0; {
			b[i] = 0x11
			j := bytes.IndexByte(b[i+1:], v)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return b
}

// zeroPage is a page of zeros to compare with.
var zeroPage [PageSize]byte

// model is the truth a file is compared with.
type model struct{ data []byte }

func (m *model) write(p []byte, off int64) {
	if end := int(off) + len(p); end > len(m.data) {
		m.data = append(m.data, make([]byte, end-len(m.data))...)
	}
	copy(m.data[off:], p)
}

func (m *model) truncate(size int64) {
	if int(size) <= len(m.data) {
		m.data = m.data[:size]
		return
	}
	m.data = append(m.data, make([]byte, int(size)-len(m.data))...)
}

// zero zeroes [off, off+n) within the data; grow extends the size to
// off+n first.
func (m *model) zero(off, n int64, grow bool) {
	if grow && int(off+n) > len(m.data) {
		m.truncate(off + n)
	}
	end := min(int(off+n), len(m.data))
	if int(off) < end {
		clear(m.data[off:end])
	}
}

// read returns what ReadAt of n bytes at off must return.
func (m *model) read(off int64, n int) []byte {
	if int(off) >= len(m.data) {
		return nil
	}
	return m.data[off:min(int(off)+n, len(m.data))]
}

// opLog records the operations of a randomized run in a replayable form,
// one per line: "op offset length size".
type opLog struct {
	mu    sync.Mutex
	seed  uint64
	lines []string
}

func (l *opLog) add(op string, off, length, size int64) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf("%s %d %d %d", op, off, length, size))
	l.mu.Unlock()
}

// dump returns the seed and the last max lines of the log.
func (l *opLog) dump(max int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	lines := l.lines
	if len(lines) > max {
		lines = lines[len(lines)-max:]
	}
	return fmt.Sprintf("seed %d (replay: RINGFS_SEED=%d), last %d of %d ops (op offset length size):\n%s",
		l.seed, l.seed, len(lines), len(l.lines), strings.Join(lines, "\n"))
}

// testSeed returns RINGFS_SEED when set, else a fresh seed.
func testSeed(t testing.TB) uint64 {
	if s := os.Getenv("RINGFS_SEED"); s != "" {
		var v uint64
		if _, err := fmt.Sscan(s, &v); err != nil {
			t.Fatalf("RINGFS_SEED: %v", err)
		}
		return v
	}
	return rand.Uint64() % 1e9
}

// soak reports whether the long variants should run.
func soak() bool { return os.Getenv("RINGFS_SOAK") != "" }

// recOp is one request a recBackend saw, with its result.
type recOp struct {
	submit int // which Submit call carried it (1-based)
	op     uring.Op
	fd     int32
	off    int64
	length int64
	n      int
	err    error
}

func (r recOp) String() string {
	return fmt.Sprintf("submit=%d %s fd=%d off=%d len=%d n=%d err=%v", r.submit, r.op, r.fd, r.off, r.length, r.n, r.err)
}

// recBackend delegates to a real backend and records every Submit and
// request; before, when set, runs ahead of each Submit (to block it).
type recBackend struct {
	uring.Backend
	mu      sync.Mutex
	submits int
	ops     []recOp
	before  func(reqs []uring.Request)
}

func (b *recBackend) Submit(reqs []uring.Request) error {
	b.mu.Lock()
	before := b.before
	b.mu.Unlock()
	if before != nil {
		before(reqs)
	}
	err := b.Backend.Submit(reqs)
	b.mu.Lock()
	b.submits++
	for i := range reqs {
		r := &reqs[i]
		n := bufBytes(r)
		if !r.Op.IsRead() && !r.Op.IsWrite() {
			n = r.Len
		}
		b.ops = append(b.ops, recOp{submit: b.submits, op: r.Op, fd: r.Fd, off: r.Off, length: n, n: r.N, err: r.Err})
	}
	b.mu.Unlock()
	return err
}

// bufBytes returns the bytes a read or write request moves.
func bufBytes(r *uring.Request) int64 {
	n := int64(len(r.Buf))
	for _, v := range r.Vecs {
		n += int64(len(v))
	}
	return n
}

// mark returns the current position, for since.
func (b *recBackend) mark() (submits, ops int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.submits, len(b.ops)
}

// since returns the Submit calls and requests after a mark.
func (b *recBackend) since(submits, ops int) (int, []recOp) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.submits - submits, slices.Clone(b.ops[ops:])
}

// setBefore installs a hook run ahead of every Submit.
func (b *recBackend) setBefore(fn func(reqs []uring.Request)) {
	b.mu.Lock()
	b.before = fn
	b.mu.Unlock()
}

// blockFirst makes the first request that match accepts wait, ahead of
// its Submit, until release is closed; entered is closed when it starts
// waiting.
func (b *recBackend) blockFirst(match func(r *uring.Request) bool) (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	b.setBefore(func(reqs []uring.Request) {
		for i := range reqs {
			if match(&reqs[i]) {
				once.Do(func() { close(entered); <-release })
			}
		}
	})
	return entered, release
}

func filterOps(ops []recOp, keep func(recOp) bool) []recOp {
	var out []recOp
	for _, o := range ops {
		if keep(o) {
			out = append(out, o)
		}
	}
	return out
}

func isWrite(o recOp) bool { return o.op.IsWrite() }
func isRead(o recOp) bool  { return o.op.IsRead() }

// submitsOf counts the distinct Submit calls among ops.
func submitsOf(ops []recOp) int {
	seen := map[int]bool{}
	for _, o := range ops {
		seen[o.submit] = true
	}
	return len(seen)
}

// checkInvariants verifies the cache's bookkeeping against its arena and
// indexes. files must be every unreleased file of c when all is true
// (then frames are also checked for leaks). The cache must be quiescent.
func checkInvariants(t testing.TB, c *Cache, all bool, files ...*File) {
	t.Helper()
	if err := invariantErrors(c, all, files...); err != "" {
		t.Fatalf("cache invariants broken:\n%s", err)
	}
}

func invariantErrors(c *Cache, all bool, files ...*File) string {
	files = slices.Clone(files)
	slices.SortFunc(files, func(a, b *File) int { return int(a.id) - int(b.id) })
	for _, f := range files {
		f.mu.Lock()
		defer f.mu.Unlock()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var problems []string
	bad := func(format string, args ...any) {
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	if n := c.nfree.Load(); n != int64(len(c.free)) {
		bad("nfree %d, %d frames free", n, len(c.free))
	}
	owner := make([]*File, c.nframes)
	resident := 0
	for _, f := range files {
		if f.released {
			continue
		}
		size := f.size.Load()
		var pages, dirty int64
		unsynced := 0
		f.index.each(0, 1<<62, func(page int64, fr int32) {
			pages++
			if owner[fr] != nil {
				bad("frame %d indexed twice (file %d page %d)", fr, f.id, page)
			}
			owner[fr] = f
			m := &c.meta[fr]
			if m.owner != f || m.page != page {
				bad("frame %d: meta owner/page %p/%d, index says file %d page %d", fr, m.owner, m.page, f.id, page)
			}
			ps := page << pageShift
			if ps >= size {
				bad("file %d page %d cached wholly past size %d", f.id, page, size)
			} else if tail := size - ps; tail < PageSize {
				if b := c.frameBytes(fr)[tail:]; !bytes.Equal(b, zeroPage[:len(b)]) {
					bad("file %d page %d: bytes past size %d not zero", f.id, page, size)
				}
			}
			if m.state != 0 {
				if m.lo >= m.hi || m.hi > PageSize {
					bad("file %d page %d: bad span [%d,%d) state %d", f.id, page, m.lo, m.hi, m.state)
				}
				if ps+int64(m.hi) > size {
					bad("file %d page %d: span [%d,%d) past size %d", f.id, page, m.lo, m.hi, size)
				}
				dirty += int64(m.hi) - int64(m.lo)
			}
			if m.state&pageUnsynced != 0 {
				unsynced++
			}
			if m.pins != 0 {
				bad("file %d page %d: %d pins while quiescent", f.id, page, m.pins)
			}
			if c.policy.links[fr].in == inNone && !c.claimed[fr] {
				bad("file %d page %d frame %d not in the replacement policy", f.id, page, fr)
			}
		})
		resident += int(pages)
		if pages != f.resident.Load() || int(pages) != f.index.pages {
			bad("file %d: %d pages indexed, resident=%d index.pages=%d", f.id, pages, f.resident.Load(), f.index.pages)
		}
		if dirty != f.dirtyBytes.Load() {
			bad("file %d: spans hold %d bytes, DirtyBytes=%d", f.id, dirty, f.dirtyBytes.Load())
		}
		if unsynced != f.unsynced {
			bad("file %d: %d unsynced pages, counter %d", f.id, unsynced, f.unsynced)
		}
	}
	free := make([]bool, c.nframes)
	for _, fr := range c.free {
		if free[fr] {
			bad("frame %d on the free list twice", fr)
		}
		free[fr] = true
		if owner[fr] != nil {
			bad("frame %d free and indexed by file %d", fr, owner[fr].id)
		}
		if c.policy.links[fr].in != inNone {
			bad("free frame %d still in the policy", fr)
		}
	}
	if all {
		if len(c.free)+resident != int(c.nframes) {
			bad("frames leaked: %d free + %d resident != %d", len(c.free), resident, c.nframes)
		}
		if q := c.policy.small.n + c.policy.main.n; q != resident {
			bad("policy holds %d entries, %d pages resident", q, resident)
		}
	}
	for _, q := range []*queue{&c.policy.small, &c.policy.main} {
		n := 0
		prev := int32(-1)
		for e := q.head; e >= 0 && n <= int(c.nframes); e = c.policy.links[e].next {
			if c.policy.links[e].prev != prev || c.policy.links[e].in != q.id {
				bad("policy queue %d broken at entry %d", q.id, e)
				break
			}
			prev = e
			n++
		}
		if n != q.n || prev != q.tail {
			bad("policy queue %d: walked %d entries, n=%d", q.id, n, q.n)
		}
	}
	return strings.Join(problems, "\n")
}

// residentPages returns the pages of f in the cache.
func residentPages(f *File) []int64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	var pages []int64
	f.index.each(0, 1<<62, func(page int64, _ int32) { pages = append(pages, page) })
	return pages
}

// pageState returns the state bits of f's cached page (ok false when absent).
func pageState(f *File, page int64) (state uint8, ok bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fr := f.index.get(page)
	if fr < 0 {
		return 0, false
	}
	return f.c.meta[fr].state, true
}

// mustRead reads n bytes at off and compares them with m.
func mustRead(t testing.TB, f *File, m *model, off int64, n int) {
	t.Helper()
	p := make([]byte, n)
	got, err := f.ReadAt(p, off)
	if err != nil {
		t.Fatalf("ReadAt(%d, %d): %v", off, n, err)
	}
	want := m.read(off, n)
	if got != len(want) || !bytes.Equal(p[:got], want) {
		t.Fatalf("ReadAt(%d, %d) = %d bytes, want %d; first difference at %d", off, n, got, len(want), firstDiff(p[:got], want))
	}
}

// firstDiff returns the first index where a and b differ (or the shorter length).
func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// mustWrite writes p at off and applies it to m.
func mustWrite(t testing.TB, f *File, m *model, p []byte, off int64) {
	t.Helper()
	n, _, err := f.WriteAt(p, off, 0)
	if err != nil || n != len(p) {
		t.Fatalf("WriteAt(%d, %d) = %d, %v", off, len(p), n, err)
	}
	m.write(p, off)
}

// checkHost compares the host file with the model.
func checkHost(t testing.TB, h *hostFile, m *model) {
	t.Helper()
	got := h.bytes(t)
	if !bytes.Equal(got, m.data) {
		t.Fatalf("host file: %d bytes, model %d; first difference at %d", len(got), len(m.data), firstDiff(got, m.data))
	}
}
