//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func inspectJSON(t *testing.T, files ...string) inspectDoc {
	t.Helper()
	r := runFsctl(t, append([]string{"inspect", "--json"}, files...)...)
	if r.code != 0 {
		t.Fatalf("fsctl inspect: exit %d: %s", r.code, r.stderr)
	}
	var d inspectDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("fsctl inspect --json: %v\n%s", err, r.stdout)
	}
	if d.SchemaVersion != 1 || d.Kind != "inspect" || len(d.Files) != len(files) {
		t.Fatalf("inspect document %+v", d)
	}
	return d
}

// writeSparse writes one block at 0 and one at 1 MiB, with a hole between.
func writeSparse(t *testing.T) (path string, blk int64) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "sparse")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	blk = max(int64(st.Blksize), 4096)
	data := []byte(strings.Repeat("x", int(blk)))
	for _, off := range []int64{0, 1 << 20} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return path, blk
}

// TestInspectSparse: data at 0 and 1 MiB with a hole between are
// reported as exactly those extents, on filesystems that report holes.
func TestInspectSparse(t *testing.T) {
	path, blk := writeSparse(t)
	f := inspectJSON(t, path).Files[0]
	if f.Details == nil {
		t.Fatalf("no details: %+v", f)
	}
	size := int64(1<<20) + blk
	if f.SizeBytes != size {
		t.Errorf("size %d, want %d", f.SizeBytes, size)
	}
	if f.Filesystem.Type == "" || f.Filesystem.Magic == 0 {
		t.Errorf("filesystem %+v", f.Filesystem)
	}
	if plain := f.Filesystem.Type == "tmpfs" || f.Filesystem.Type == "ramfs"; f.Filesystem.PlainSyscalls != plain {
		t.Errorf("%s: ringfs_plain_syscalls %v, want %v", f.Filesystem.Type, f.Filesystem.PlainSyscalls, plain)
	}
	if a := f.DirectIO.Alignment; a != "reported" && a != "unknown" && a != "unsupported" {
		t.Errorf("direct I/O alignment %q", a)
	}
	x := f.Extents
	if x.Method == "none" || (x.Holes == 0 && len(x.List) == 1) {
		t.Skipf("%s does not report holes: %+v", f.Filesystem.Type, x)
	}
	want := []extent{{"data", 0, blk}, {"hole", blk, 1<<20 - blk}, {"data", 1 << 20, blk}}
	if len(x.List) != len(want) {
		t.Fatalf("extents %+v, want %+v", x.List, want)
	}
	for i := range want {
		if x.List[i] != want[i] {
			t.Errorf("extent %d: %+v, want %+v", i, x.List[i], want[i])
		}
	}
	if x.DataExtents != 2 || x.Holes != 1 || x.DataBytes != 2*blk || x.HoleBytes != 1<<20-blk || x.Truncated {
		t.Errorf("extent totals %+v", x)
	}
	if f.AllocatedBytes >= size {
		t.Errorf("allocated %d of a sparse file of %d", f.AllocatedBytes, size)
	}
}

// TestInspectExtentEdges: an empty file, a file that is all hole, a file
// whose last extent is a hole, each walked to the end.
func TestInspectExtentEdges(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, size int64, dataAt ...int64) string {
		p := filepath.Join(dir, name)
		f, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, off := range dataAt {
			f.WriteAt(make([]byte, 4096), off)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Sync()
		return p
	}
	for _, tc := range []struct {
		name string
		path string
		want []string // extent types in order; nil: only check they tile the file
	}{
		{"empty", mk("empty", 0), []string{}},
		{"all hole", mk("hole", 1<<20), []string{"hole"}},
		{"trailing hole", mk("tail", 1<<20, 0), []string{"data", "hole"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := inspectFile(tc.path, residencyAuto)
			if r.Error != "" {
				t.Fatal(r.Error)
			}
			x := r.Extents
			var end int64
			var types []string
			for _, e := range x.List {
				if e.OffsetBytes != end || e.LengthBytes <= 0 {
					t.Fatalf("extents do not tile the file: %+v", x.List)
				}
				end += e.LengthBytes
				types = append(types, e.Type)
			}
			if end != r.SizeBytes {
				t.Errorf("extents end at %d, size %d", end, r.SizeBytes)
			}
			if x.Method == "none" || (len(tc.want) > 1 && len(types) == 1) {
				t.Skip("filesystem does not report holes")
			}
			if strings.Join(types, ",") != strings.Join(tc.want, ",") {
				t.Errorf("extents %v, want %v", types, tc.want)
			}
		})
	}
}

// makeResident writes a file of n pages, syncs it, and reads it back.
func makeResident(t *testing.T, pages int) (string, *os.File) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resident")
	ps := os.Getpagesize()
	if err := os.WriteFile(path, []byte(strings.Repeat("r", pages*ps)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadAt(make([]byte, pages*ps), 0); err != nil {
		t.Fatal(err)
	}
	return path, f
}

// skipUnevictable skips tests that evict pages where the file's pages are
// its only copy (tmpfs, ramfs): POSIX_FADV_DONTNEED keeps them.
func skipUnevictable(t *testing.T, path string) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	if st.Type == unix.TMPFS_MAGIC || st.Type == unix.RAMFS_MAGIC {
		t.Skipf("%s is on %s: its pages cannot be evicted", path, fsName(st.Type))
	}
}

// TestInspectResidency: a file just read is 100 % resident; after
// POSIX_FADV_DONTNEED less of it is. cachestat and mincore agree.
func TestInspectResidency(t *testing.T) {
	const pages = 256
	path, f := makeResident(t, pages)

	check := func(state string, full bool) {
		t.Helper()
		pc := inspectJSON(t, path).Files[0].PageCache
		if pc.Method != "cachestat" && pc.Method != "mincore" {
			t.Fatalf("%s: method %q (%s)", state, pc.Method, pc.Error)
		}
		if pc.Pages != pages || pc.PageSizeBytes != int64(os.Getpagesize()) {
			t.Fatalf("%s: %d pages of %d bytes", state, pc.Pages, pc.PageSizeBytes)
		}
		var inMap int64
		for _, c := range pc.Map {
			inMap += c.ResidentPages
		}
		if inMap != pc.ResidentPages || len(pc.Map) != residencyCells {
			t.Errorf("%s: map of %d cells holds %d resident pages, total %d", state, len(pc.Map), inMap, pc.ResidentPages)
		}
		if full && (pc.ResidentPages != pages || pc.ResidentBytes != pages*int64(os.Getpagesize())) {
			t.Errorf("%s: %d of %d pages resident (%d bytes), want all", state, pc.ResidentPages, pages, pc.ResidentBytes)
		}
		if !full && pc.ResidentPages >= pages {
			t.Errorf("%s: still %d of %d pages resident", state, pc.ResidentPages, pages)
		}
		for _, m := range []residencyMethod{residencyMincore, residencyAuto} {
			r := inspectFile(path, m)
			if r.Error != "" || r.PageCache.ResidentPages != pc.ResidentPages {
				t.Errorf("%s: method %v finds %d resident pages (%s), fsctl %s found %d", state, m,
					r.PageCache.ResidentPages, r.Error+r.PageCache.Error, pc.Method, pc.ResidentPages)
			}
		}
		h := runFsctl(t, "inspect", path)
		bar := "[" + strings.Repeat("O", residencyCells) + "]"
		if h.code != 0 || full != strings.Contains(h.stdout, bar) {
			t.Errorf("%s: human view (exit %d), want bar %v:\n%s", state, h.code, full, h.stdout)
		}
	}
	check("after a read", true)
	skipUnevictable(t, path)
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	check("after DONTNEED", false)
}

// TestInspectPartialResidency: with only the first quarter of a file read
// back (no readahead), the bar is full at the start and empty at the end,
// and cachestat and mincore draw the same map.
func TestInspectPartialResidency(t *testing.T) {
	const pages = 1024
	path, f := makeResident(t, pages)
	skipUnevictable(t, path)
	fd := int(f.Fd())
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fadvise(fd, 0, 0, unix.FADV_RANDOM); err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	if _, err := f.ReadAt(make([]byte, pages/4*ps), 0); err != nil {
		t.Fatal(err)
	}
	auto, mc := inspectFile(path, residencyAuto), inspectFile(path, residencyMincore)
	if auto.Error != "" || mc.Error != "" {
		t.Fatal(auto.Error, mc.Error)
	}
	if mc.PageCache.Method != "mincore" {
		t.Fatalf("method %q", mc.PageCache.Method)
	}
	a, m := residencyBar(auto.PageCache.Map), residencyBar(mc.PageCache.Map)
	if a != m {
		t.Errorf("%s and mincore disagree:\n%s\n%s", auto.PageCache.Method, a, m)
	}
	// The first quarter is cells 0-14; large folios may round it up a little.
	if !strings.HasPrefix(m, "["+strings.Repeat("O", 14)) || !strings.HasSuffix(m, strings.Repeat(" ", 30)+"]") {
		t.Errorf("bar %q: want the first quarter resident and the end not", m)
	}
	if n := mc.PageCache.ResidentPages; n < pages/4 || n >= pages/2 {
		t.Errorf("%d of %d pages resident after reading %d", n, pages, pages/4)
	}
}

// TestTally: resident pages of a mincore vector land in the right cells,
// also when the vector starts past the first page (later windows).
func TestTally(t *testing.T) {
	pc := pageCacheDoc{PageSizeBytes: 4096, Pages: 7}
	pc.Map = cells(7, 4096) // 7 cells of 1 page
	tally(&pc, 0, []byte{1, 0, 1})
	tally(&pc, 3, []byte{0, 0, 1, 1}) // pages 3..6
	if got := residencyBar(pc.Map); got != "[O O  OO]" || pc.ResidentPages != 4 {
		t.Errorf("bar %q, %d resident", got, pc.ResidentPages)
	}
	pc = pageCacheDoc{PageSizeBytes: 4096, Pages: 130}
	pc.Map = cells(130, 4096) // 60 cells of 2 or 3 pages
	vec := make([]byte, 130)
	for i := range vec {
		vec[i] = byte(i % 2) // every other page
	}
	tally(&pc, 0, vec)
	var sum int64
	for i, c := range pc.Map {
		lo := c.OffsetBytes / 4096
		want := (lo+c.Pages)/2 - lo/2 // odd pages in [lo, lo+Pages)
		if c.ResidentPages != want {
			t.Errorf("cell %d (pages %d+%d): %d resident, want %d", i, lo, c.Pages, c.ResidentPages, want)
		}
		sum += c.Pages
	}
	if sum != 130 || len(pc.Map) != residencyCells || pc.ResidentPages != 65 {
		t.Errorf("cells cover %d pages in %d cells, %d resident", sum, len(pc.Map), pc.ResidentPages)
	}
}

// TestInspectKeepsGoing: a file that cannot be inspected is reported on
// stderr, the others are still shown, and the exit status is 1.
func TestInspectKeepsGoing(t *testing.T) {
	good, _ := writeSparse(t)
	missing := filepath.Join(t.TempDir(), "missing")
	r := runFsctl(t, "inspect", "--json", missing, good, t.TempDir())
	if r.code != 1 {
		t.Fatalf("exit %d, want 1: %s", r.code, r.stderr)
	}
	var d inspectDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Files) != 3 || d.Files[0].Error == "" || d.Files[1].Error != "" || d.Files[1].Details == nil ||
		!strings.Contains(d.Files[2].Error, "is a directory") {
		t.Errorf("files %+v", d.Files)
	}
	if !strings.Contains(r.stderr, missing+": stat: no such file or directory") {
		t.Errorf("stderr %q", r.stderr)
	}
}

// TestInspectPlainSyscalls: a file on tmpfs is reported as one whose I/O
// ringfs runs as plain syscalls, in JSON and in the human view.
func TestInspectPlainSyscalls(t *testing.T) {
	dir, err := os.MkdirTemp("/dev/shm", "fsctl-inspect-")
	if err != nil {
		t.Skip(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := inspectJSON(t, path).Files[0]
	if f.Details == nil || f.Filesystem.Type != "tmpfs" {
		t.Skipf("/dev/shm is not tmpfs here: %+v", f)
	}
	if !f.Filesystem.PlainSyscalls {
		t.Errorf("tmpfs file: ringfs_plain_syscalls false")
	}
	if r := runFsctl(t, "inspect", path); r.code != 0 || !strings.Contains(r.stdout, "ringfs I/O  plain syscalls") {
		t.Errorf("human view (exit %d) lacks the plain syscalls line:\n%s", r.code, r.stdout)
	}
}

// nobody is the user TestInspectConcealedResidency runs fsctl as.
const nobody = 65534

// runAs runs bin with args and extra environment as user uid (group
// uid, no supplementary groups), and returns its exit status and output.
func runAs(t *testing.T, uid uint32, env []string, bin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(bin, args...)
	// A -race binary sleeps a second at exit unless told not to.
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}}
	return runCmd(t, cmd, fmt.Sprintf("%s as uid %d", bin, uid))
}

// copyExecutable copies the running test binary to dir, for another user
// to run.
func copyExecutable(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fsctl.test")
	if err := os.WriteFile(path, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestInspectConcealedResidency: the kernel shows a file's page-cache
// residency only to its owner and to whoever may write to it; mincore
// answers anyone else that every page is resident. Run as another user,
// inspect says the residency of a file that user may only read is
// unknown (with cachestat and with mincore alone, exit status 0), and
// measures it for a file that user owns or may write: a file evicted
// from the page cache is not shown as cached.
func TestInspectConcealedResidency(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run fsctl as another user")
	}
	fsctl := fsctlBinary(t)
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir), binDir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	helper := copyExecutable(t, binDir)
	const pages = 64
	ps := os.Getpagesize()
	for i, tc := range []struct {
		name  string
		owner int
		mode  os.FileMode
		known bool
	}{
		{"another's file, read-only to us", 0, 0o644, false},
		{"our own file", nobody, 0o444, true},
		{"another's file we may write", 0, 0o666, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("f%d", i))
			if err := os.WriteFile(path, bytes.Repeat([]byte{'c'}, pages*ps), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			evicted := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED) == nil
			var sfs unix.Statfs_t
			if unix.Fstatfs(int(f.Fd()), &sfs) != nil || sfs.Type == unix.TMPFS_MAGIC || sfs.Type == unix.RAMFS_MAGIC {
				evicted = false // the pages are the file's only copy
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(path, tc.owner, tc.owner); err != nil {
				t.Fatal(err)
			}

			auto := runAs(t, nobody, nil, fsctl, "inspect", "--json", path)
			mc := runAs(t, nobody, []string{helperMincoreEnv + "=" + path}, helper)
			for _, run := range []struct {
				how string
				r   result
			}{{"fsctl inspect", auto}, {"mincore alone", mc}} {
				if run.r.code != 0 {
					t.Fatalf("%s: exit %d: %s", run.how, run.r.code, run.r.stderr)
				}
				var rep fileReport
				if run.how == "fsctl inspect" {
					var d inspectDoc
					if err := json.Unmarshal([]byte(run.r.stdout), &d); err != nil || len(d.Files) != 1 {
						t.Fatalf("%s: %v: %s", run.how, err, run.r.stdout)
					}
					rep = d.Files[0]
				} else if err := json.Unmarshal([]byte(run.r.stdout), &rep); err != nil {
					t.Fatalf("%s: %v: %s", run.how, err, run.r.stdout)
				}
				if rep.Error != "" || rep.Details == nil {
					t.Fatalf("%s: %+v", run.how, rep)
				}
				pc := rep.PageCache
				switch {
				case !tc.known:
					if pc.Method != "unavailable" || !strings.Contains(pc.Error, "only to its owner") ||
						pc.ResidentPages != 0 || len(pc.Map) != 0 {
						t.Errorf("%s: page cache by %s: %d of %d pages (%q), want unavailable: residency concealed",
							run.how, pc.Method, pc.ResidentPages, pc.Pages, pc.Error)
					}
				case pc.Method != "cachestat" && pc.Method != "mincore":
					t.Errorf("%s: page cache by %s (%q), want it measured", run.how, pc.Method, pc.Error)
				case evicted && pc.ResidentPages >= pages:
					t.Errorf("%s: %d of %d pages resident by %s after DONTNEED", run.how, pc.ResidentPages, pages, pc.Method)
				}
			}
			h := runAs(t, nobody, nil, fsctl, "inspect", path)
			if h.code != 0 || tc.known == strings.Contains(h.stdout, "page cache  unknown (") {
				t.Errorf("human view (exit %d, known %v):\n%s%s", h.code, tc.known, h.stdout, h.stderr)
			}
		})
	}
}
