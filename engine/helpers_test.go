//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Harness shared by the tests of this package: engines that are closed at
// cleanup, a leak check (goroutines, descriptors, mappings, rings), host
// files, deterministic data and errno assertions.

// TestMain removes the benchmarks' files after the run. Tests run the
// host I/O of files on tmpfs (where fsxDir and relDir put theirs) through
// the ring, as on any other filesystem (ringOnlyForTests): the ring's
// paths are what they test, and TestInlineFiles tests the plain
// syscalls engines use there by default. Benchmarks (-test.bench) measure
// engines as they are.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.bench"); f == nil || f.Value.String() == "" {
		ringOnlyForTests.Store(true)
	}
	code := m.Run()
	if dir, err := benchDir(); err == nil {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// ---- resources and leaks ----

// resources is what the process holds that an engine could leave behind.
type resources struct {
	goroutines int
	fds        map[int]string // descriptor -> readlink target
	maps       map[string]mapEntry
}

// mapEntry is one line of /proc/self/smaps.
type mapEntry struct {
	start, end uint64
	perms      string
	path       string
	noreserve  bool
}

func (m mapEntry) String() string {
	return fmt.Sprintf("%x-%x %s %s nr=%v", m.start, m.end, m.perms, m.path, m.noreserve)
}

// cacheSizes remembers the arena sizes of the engines the tests created,
// so that a leaked arena can be told apart from the runtime's anonymous
// mappings.
var cacheSizes sync.Map // uint64 -> struct{}

// warmPoller makes the runtime create its network poller (an epoll and
// an eventfd descriptor, kept for the life of the process) before the
// first snapshot, so that a test that happens to be the first to open a
// pollable descriptor is not blamed for them.
var warmPoller = sync.OnceFunc(func() {
	if r, w, err := os.Pipe(); err == nil {
		r.Close()
		w.Close()
	}
})

func snapshotResources(t testing.TB) resources {
	t.Helper()
	warmPoller()
	r := resources{goroutines: runtime.NumGoroutine(), fds: map[int]string{}, maps: map[string]mapEntry{}}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		r.fds[n] = target
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	var cur *mapEntry
	flush := func() {
		if cur != nil {
			r.maps[fmt.Sprintf("%x-%x %s %s", cur.start, cur.end, cur.perms, cur.path)] = *cur
		}
	}
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			if a, b, ok := strings.Cut(fields[0], "-"); ok {
				start, err1 := strconv.ParseUint(a, 16, 64)
				end, err2 := strconv.ParseUint(b, 16, 64)
				if err1 == nil && err2 == nil {
					flush()
					cur = &mapEntry{start: start, end: end, perms: fields[1]}
					if len(fields) >= 6 {
						cur.path = strings.Join(fields[5:], " ")
					}
					continue
				}
			}
		}
		if cur != nil && strings.HasPrefix(line, "VmFlags:") {
			cur.noreserve = strings.Contains(line+" ", " nr ")
		}
	}
	flush()
	return r
}

// suspicious reports whether a mapping is one an engine makes: a ring, a
// host file chunk, or a page cache arena (anonymous, MAP_NORESERVE, of a
// size some engine of this test binary used).
func suspicious(m mapEntry) bool {
	switch {
	case strings.Contains(m.path, "io_uring"):
		return true
	case strings.HasPrefix(m.path, "/") && !strings.HasPrefix(m.path, "/usr/") && !strings.HasPrefix(m.path, "/lib"):
		return true
	case m.path == "" && m.noreserve && m.perms == "rw-p":
		if raceEnabled && m.start >= raceShadowStart && m.end <= raceShadowEnd {
			// The race detector's shadow of the Go heap, mapped as the
			// heap grows: it once grew by exactly a cache's size.
			return false
		}
		_, ok := cacheSizes.Load(m.end - m.start)
		return ok
	}
	return false
}

// raceShadowStart and raceShadowEnd bound the race detector's shadow and
// meta memory for Go on linux/amd64 (ThreadSanitizer's Go mapping:
// shadow from 0x200000000000, meta up to 0x400000000000). The kernel
// places an arena's mmap near the top of the address space, far above.
const (
	raceShadowStart = 0x200000000000
	raceShadowEnd   = 0x400000000000
)

// leaks compares now with before and describes what was left behind.
func (before resources) leaks(now resources) []string {
	var out []string
	if now.goroutines > before.goroutines {
		out = append(out, fmt.Sprintf("goroutines: %d before, %d after", before.goroutines, now.goroutines))
	}
	for fd, target := range now.fds {
		if old, ok := before.fds[fd]; !ok || old != target {
			out = append(out, fmt.Sprintf("descriptor %d -> %s", fd, target))
		}
	}
	for k, m := range now.maps {
		if _, ok := before.maps[k]; !ok && suspicious(m) {
			out = append(out, "mapping "+m.String())
		}
	}
	sort.Strings(out)
	return out
}

// checkLeaks snapshots the process now and, at cleanup (after the
// engines registered later are closed), fails the test if goroutines,
// descriptors, rings or engine mappings were left behind. Goroutines and
// descriptors get a short while to settle. Tests using it must not run in
// parallel with other tests.
func checkLeaks(t testing.TB) {
	t.Helper()
	before := snapshotResources(t)
	t.Cleanup(func() {
		if leaks := before.settle(t); len(leaks) > 0 {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("left behind after the engines closed:\n  %s\ngoroutines:\n%s", strings.Join(leaks, "\n  "), buf)
			return
		}
		t.Logf("leak check: goroutines %d, descriptors %d, rings 0 left", before.goroutines, len(before.fds))
	})
}

// settle returns what is still left behind compared with before after
// giving goroutines and descriptors up to 5 s to wind down; nil when the
// process is back to before.
func (before resources) settle(t testing.TB) []string {
	for deadline := time.Now().Add(5 * time.Second); ; {
		runtime.GC()
		leaks := before.leaks(snapshotResources(t))
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- engines and files ----

// newEngine creates an engine closed at cleanup (a Close by the test
// itself is fine: the cleanup's ErrClosed is ignored).
func newEngine(t testing.TB, opts Options) *Engine {
	t.Helper()
	e, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	if e.cache != nil {
		cacheSizes.Store(uint64(e.cache.Capacity()), struct{}{})
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil && !errors.Is(err, fs.ErrClosed) {
			t.Errorf("Engine.Close at cleanup: %v", err)
		}
	})
	return e
}

// openFile opens path on e and fails the test on error. The handle is not
// closed at cleanup: Engine.Close does that.
func openFile(t testing.TB, e *Engine, path string, flag int) *File {
	t.Helper()
	f, err := e.Open(path, flag, 0o644)
	if err != nil {
		t.Fatalf("Open(%s, %#x): %v", path, flag, err)
	}
	return f
}

// writeHost creates path with data through the os package.
func writeHost(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// readHost returns the host file's bytes as the kernel has them.
func readHost(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// diffAt returns the first index where a and b differ, or -1.
func diffAt(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

// sameBytes fails the test when got differs from want.
func sameBytes(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	i := diffAt(got, want)
	g, w := -1, -1
	if i < len(got) {
		g = int(got[i])
	}
	if i < len(want) {
		w = int(want[i])
	}
	t.Fatalf("%s: %d bytes, want %d; first difference at %d (got %d, want %d)", what, len(got), len(want), i, g, w)
}

// ---- data ----

// fillData fills p with bytes determined by (seed, tag): a replay of an
// op log regenerates exactly the data the failing run wrote.
func fillData(p []byte, seed uint64, tag uint64) {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(seed >> (8 * i))
		key[8+i] = byte(tag >> (8 * i))
	}
	key[16] = 0x5a
	rand.NewChaCha8(key).Read(p)
	// Never all zeros where the model expects data: a zero byte written
	// over a hole would hide a lost write.
	for i := 0; i < len(p); i += 509 {
		if p[i] == 0 {
			p[i] = 1
		}
	}
}

// pattern returns n bytes of fillData(seed, tag).
func pattern(n int, seed, tag uint64) []byte {
	p := make([]byte, n)
	fillData(p, seed, tag)
	return p
}

// ---- errors ----

// wantPathErr fails unless err is an *fs.PathError for which errors.Is(err,
// want) holds.
func wantPathErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want %v", what, want)
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: error %v (%T) is not an *fs.PathError", what, err, err)
	}
	if !errors.Is(err, want) {
		t.Fatalf("%s: error %v, want %v", what, err, want)
	}
}

// errnoOf returns the syscall.Errno inside err, or 0.
func errnoOf(err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return 0
}

// directSupported reports whether dir's filesystem takes O_DIRECT.
func directSupported(dir string) bool {
	fd, err := unix.Open(filepath.Join(dir, ".odirect-probe"), unix.O_RDWR|unix.O_CREAT|unix.O_DIRECT, 0o600)
	if err != nil {
		return false
	}
	unix.Close(fd)
	os.Remove(filepath.Join(dir, ".odirect-probe"))
	return true
}

// zeroRangeSupported reports whether path's filesystem takes
// FALLOC_FL_ZERO_RANGE (tmpfs does not).
func zeroRangeSupported(path string) bool {
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	return unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE|unix.FALLOC_FL_KEEP_SIZE, 0, 1) == nil
}

// eofZeroedOnExtend reports whether dir's filesystem zeroes bytes written
// past EOF through a shared mapping when a buffered write extends the
// file over them (ext4 does; tmpfs keeps them), checked with the os
// package alone.
func eofZeroedOnExtend(t testing.TB, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, ".eof-probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Truncate(100); err != nil {
		t.Fatal(err)
	}
	m, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	for i := 100; i < 4096; i++ {
		m[i] = 0xaa
	}
	unix.Munmap(m)
	if _, err := f.WriteAt([]byte{1}, 8192); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4096)
	if _, err := f.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return firstNonzeroByte(b[100:]) < 0
}
