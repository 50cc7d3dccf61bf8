//go:build linux

package uring

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Helpers shared by the tests of this package (and, through
// export_test.go, by the external tests that drive package fault).

var builtBackends = sync.OnceValue(func() []string {
	names := []string{BackendUring, BackendPsync}
	if b, err := New(Options{Backend: BackendIouringgo}); err == nil {
		b.Close()
		names = append(names, BackendIouringgo)
	}
	return names
})

// testBackends returns the names of the backends in this test binary:
// uring and psync always, iouringgo in builds with its tag.
func testBackends() []string { return builtBackends() }

// openBackend opens backend name with opts and closes it at cleanup.
func openBackend(t testing.TB, name string, opts Options) Backend {
	t.Helper()
	opts.Backend = name
	b, err := New(opts)
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// resources counts what a ring may leave behind.
type resources struct {
	goroutines int
	fds        int // open descriptors
	ringFds    int // descriptors that are io_uring instances
	ringMaps   int // mappings of io_uring instances
}

func (r resources) String() string {
	return fmt.Sprintf("goroutines=%d fds=%d io_uring_fds=%d io_uring_maps=%d",
		r.goroutines, r.fds, r.ringFds, r.ringMaps)
}

func snapshotResources(t testing.TB) resources {
	fail := func(err error) {
		if t == nil {
			panic(err)
		}
		t.Fatal(err)
	}
	var r resources
	r.goroutines = runtime.NumGoroutine()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		fail(err)
	}
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		r.fds++
		if strings.Contains(target, "io_uring") {
			r.ringFds++
		}
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		fail(err)
	}
	for line := range strings.Lines(string(maps)) {
		if strings.Contains(line, "io_uring") {
			r.ringMaps++
		}
	}
	return r
}

// checkNoLeaks fails t unless goroutines, descriptors and io_uring
// mappings are back to before (goroutines get a short while to exit).
func checkNoLeaks(t testing.TB, before resources) {
	t.Helper()
	var now resources
	for deadline := time.Now().Add(5 * time.Second); ; {
		now = snapshotResources(t)
		if now.goroutines <= before.goroutines && now.fds <= before.fds &&
			now.ringFds <= before.ringFds && now.ringMaps <= before.ringMaps {
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("leak: before %v, after %v\n%s", before, now, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("resources before %v, after %v", before, now)
}

// randomBytes returns n bytes from a seeded source.
func randomBytes(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// tempFile creates a file in t's temp dir holding content, opened with
// flag (plus O_CREATE), and closes it at cleanup.
func tempFile(t testing.TB, name string, content []byte, flag int) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// fileBytes returns the whole content of f.
func fileBytes(t testing.TB, f *os.File) []byte {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mmapBuffer returns n bytes of anonymous mapped memory, unmapped at
// cleanup (the memory the kernel may use for registered buffers).
func mmapBuffer(t testing.TB, n int) []byte {
	t.Helper()
	b, err := unix.Mmap(-1, 0, n, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(b) })
	return b
}

// errnoOfErr returns the errno inside err (0 for nil).
func errnoOfErr(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	return syscall.Errno(0xffff)
}

// firstDiff describes where a and b first differ, for failure messages.
func firstDiff(a, b []byte) string {
	if bytes.Equal(a, b) {
		return "equal"
	}
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return fmt.Sprintf("lengths %d/%d, first difference at byte %d (%#x vs %#x)", len(a), len(b), i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d/%d, equal prefix", len(a), len(b))
}

// fileShape is what a fallocate or write leaves that content alone does
// not show: size and allocated blocks.
type fileShape struct {
	size   int64
	blocks int64
}

func shapeOf(t testing.TB, f *os.File) fileShape {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fileShape{size: st.Size, blocks: st.Blocks}
}

// runtimeGosched yields, for polling loops in tests.
func runtimeGosched() { runtime.Gosched() }

// TestMain fails the run if any test left an io_uring instance (its
// descriptor or its mappings) behind, on top of the per-test checks.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		var r resources
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			r = snapshotResources(nil)
			if r.ringFds == 0 && r.ringMaps == 0 || time.Now().After(deadline) {
				break
			}
		}
		if r.ringFds != 0 || r.ringMaps != 0 {
			fmt.Fprintf(os.Stderr, "io_uring instances left behind after all tests: %v\n", r)
			code = 1
		}
	}
	os.Exit(code)
}
