//go:build linux

package engine

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/pagecache"
	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

// Bad input (TESTPLAN B1–B10) and security (S2, S4, S6, S7) rows. The
// errno tables of B1, B2, B6 and B8, the closed-handle checks of B7 and
// the RLIMIT_FSIZE child of B4 are in errors_test.go; the io.ReaderAt
// contract of B10 is in io_contract_test.go.

func init() {
	addRow("B1", "negative offsets on ReadAt/WriteAt/Truncate/Allocate/Map/Mapping/Seek/Submit → EINVAL", rowB1)
	addRow("B2", "offset+length overflowing int64 → EINVAL/EFBIG; nothing written anywhere", rowB2)
	addRow("B3", "huge sizes (Truncate 1<<62, Allocate 1<<50, writes past the host's largest file) → the host's errno passed through", rowB3)
	addRow("B4", "RLIMIT_FSIZE in a child process: crossing write short, past it EFBIG; process survives", rowB4)
	addRow("B5", "one call over 2 GiB (0x7ffff000 is the kernel's per-call cap) → looped, full count, checksum ok", rowB5)
	addRow("B6", "unknown open flags, RWF bits, fallocate modes, whence, options → documented errno", rowB6)
	addRow("B7", "every method after Close, double Close → fs.ErrClosed, no syscall on a stale fd", rowB7)
	addRow("B8", "write/allocate/truncate on O_RDONLY, read on O_WRONLY, with an O_RDWR handle sharing the cache → EBADF", rowB8)
	addRow("B9", "O_DIRECT with unaligned buffer/offset/length → bounced or EINVAL as documented; never cached", rowB9)
	addRow("B10", "zero-length calls at/after EOF, Map of length 0 → io.ReaderAt-consistent results", rowB10)
	addRow("S2", "O_NOFOLLOW honoured; a symlink swapped in during Open never opens the target", rowS2)
	addRow("S4", "truncate down then extend, write past EOF: the gap reads zeros in cache and on the host", rowS4)
	addRow("S6", "a failed write into a fresh range never exposes foreign bytes", rowS6)
	addRow("S7", "exhaustion: EMFILE, ENOMEM at ring setup and arena mmap, 1e5 handles: clean errors, bounded memory", rowS7)
}

func rowB1(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	runErrCases(t, fig, "B1", "", nil)
}

func rowB2(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	runErrCases(t, fig, "B2", "", nil)
}

func rowB4(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	rlimitFsize(t, fig)
}

func rowB7(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	t.Run("handle", func(t *testing.T) { closedHandle(t, fig) })
	t.Run("engine", func(t *testing.T) { closedEngine(t, fig) })
}

func rowB8(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	runErrCases(t, fig, "B8", "", nil)
	// Again with bytes the O_RDWR handle wrote into the shared cache
	// (not yet written back) before every refused call.
	runErrCases(t, fig, "B8", "dirty/", func(t *testing.T, fx *errFixture, i int) {
		d := pattern(200, 8, uint64(i))
		off := int64(500+997*i) % int64(errFileSize-len(d))
		if n, err := fx.rw.WriteAt(d, off); n != len(d) || err != nil {
			t.Fatalf("WriteAt through the O_RDWR handle: %d, %v", n, err)
		}
		copy(fx.content[off:], d)
		fig.Add("dirty_writes", 1)
	})
}

func rowB10(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	t.Run("readerat", func(t *testing.T) { readerAtContract(t, fig) })
	t.Run("iotest", func(t *testing.T) { iotestReader(t, fig) })
}

// ---- B3 ----

// hostMaxFileSize returns the largest file size the filesystem of path
// allows (its s_maxbytes): lseek accepts an offset up to it and no
// further, as writes and truncates do.
func hostMaxFileSize(t *testing.T, path string) int64 {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ok := func(off int64) bool { _, err := unix.Seek(fd, off, io.SeekStart); return err == nil }
	if ok(math.MaxInt64) {
		return math.MaxInt64
	}
	lo, hi := int64(0), int64(math.MaxInt64) // lo accepted, hi refused
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// rowB3: calls with huge sizes and offsets, on every engine, against the
// same call made with plain syscalls on a reference copy of the file in
// the same directory: the engine must give the host's answer (the same
// errno, the same count), leave the file as the host left the reference,
// and keep serving it correctly once cut back. Figures: calls,
// host_errno_matched, accepted_invalid (calls the host refused but the
// engine accepted), bytes_checked.
func rowB3(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	dir := t.TempDir()
	content := pattern(errFileSize, 3, 3)
	refPath := filepath.Join(dir, "ref")
	writeHost(t, refPath, content)
	maxSize := hostMaxFileSize(t, refPath)
	fig.Set("host_max_file_size", maxSize)
	p := pattern(8192, 3, 4)
	// Each case runs on an engine handle and on the reference descriptor;
	// both return (bytes written, error). off is where a write starts
	// (-1: not a write). The reference is given the largest file the
	// engine serves in the mode (HostMmap's is smaller than the host's):
	// past it, it answers as a host with that limit would.
	type hugeCase struct {
		name string
		off  int64
		eng  func(f *File) (int, error)
		ref  func(r *os.File, limit int64) (int, error)
	}
	// refWrite is pwrite until done or refused (os.File.WriteAt drops
	// the count of a pwrite that failed after a short transfer).
	refWrite := func(r *os.File, b []byte, off, limit int64) (int, error) {
		var limited error
		if off >= limit {
			return 0, syscall.EFBIG
		}
		if int64(len(b)) > limit-off {
			b, limited = b[:limit-off], syscall.EFBIG
		}
		n := 0
		for n < len(b) {
			m, err := unix.Pwrite(int(r.Fd()), b[n:], off+int64(n))
			n += max(m, 0)
			if err != nil {
				return n, err
			}
			if m == 0 {
				return n, io.ErrShortWrite
			}
		}
		return n, limited
	}
	write := func(off int64, b []byte) hugeCase {
		return hugeCase{fmt.Sprintf("WriteAt %d bytes at %d", len(b), off), off,
			func(f *File) (int, error) { return f.WriteAt(b, off) },
			func(r *os.File, limit int64) (int, error) { return refWrite(r, b, off, limit) }}
	}
	trunc := func(size int64) hugeCase {
		return hugeCase{fmt.Sprintf("Truncate %d", size), -1,
			func(f *File) (int, error) { return 0, f.Truncate(size) },
			func(r *os.File, limit int64) (int, error) {
				if size > limit {
					return 0, syscall.EFBIG
				}
				return 0, unix.Ftruncate(int(r.Fd()), size)
			}}
	}
	alloc := func(mode uint32, off, length int64) hugeCase {
		return hugeCase{fmt.Sprintf("Allocate mode %#x [%d, +%d)", mode, off, length), -1,
			func(f *File) (int, error) { return 0, f.Allocate(mode, off, length) },
			func(r *os.File, limit int64) (int, error) {
				if mode&unix.FALLOC_FL_KEEP_SIZE == 0 && off+length > limit {
					return 0, syscall.EFBIG
				}
				return 0, unix.Fallocate(int(r.Fd()), mode, off, length)
			}}
	}
	submitWrite := func(off int64) hugeCase {
		return hugeCase{fmt.Sprintf("Submit write of %d bytes at %d", len(p), off), off,
			func(f *File) (int, error) {
				ops := []Op{{File: f, Write: true, Buf: p, Off: off}}
				f.e.Submit(ops)
				return ops[0].N, ops[0].Err
			},
			func(r *os.File, limit int64) (int, error) { return refWrite(r, p, off, limit) }}
	}
	cases := []hugeCase{
		trunc(1 << 62), trunc(1 << 50), trunc(math.MaxInt64),
		alloc(0, 0, 1<<50), alloc(unix.FALLOC_FL_KEEP_SIZE, 0, 1<<50), alloc(0, 1<<62, 4096),
		write(1<<62, p), write(math.MaxInt64-1<<20, p), write(1<<50, p), submitWrite(1 << 62),
		{"WriteAtFlags RWF_DSYNC at 1<<62", 1 << 62,
			func(f *File) (int, error) { return f.WriteAtFlags(p, 1<<62, unix.RWF_DSYNC) },
			func(r *os.File, limit int64) (int, error) { return refWrite(r, p, 1<<62, limit) }},
		{"Seek 1<<62 and Write", 1 << 62,
			func(f *File) (int, error) {
				if _, err := f.Seek(1<<62, io.SeekStart); err != nil {
					return 0, err
				}
				return f.Write(p)
			},
			func(r *os.File, limit int64) (int, error) {
				// Past the host's largest file lseek itself refuses (EINVAL).
				if _, err := unix.Seek(int(r.Fd()), 1<<62, io.SeekStart); err != nil {
					return 0, err
				}
				return refWrite(r, p, 1<<62, limit)
			}},
		// HostMmap's limit: past it (up to it the mapper would count
		// references on a million chunks: too slow for this row).
		trunc(maxMmapSize + 1), write(maxMmapSize, p), alloc(0, maxMmapSize-4096, 8192),
	}
	if maxSize < math.MaxInt64-1<<20 {
		// Around the host's largest file: up to it, across it, past it.
		cases = append(cases,
			trunc(maxSize+1), trunc(maxSize),
			alloc(0, maxSize-4096, 8192), alloc(0, maxSize-4096, 4096),
			write(maxSize-100, p), write(maxSize-8192, p), write(maxSize, p[:1]),
			submitWrite(maxSize-1000))
	}
	for _, mode := range errModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			limit := e.maxFileSize()
			path := filepath.Join(dir, "f-"+mode.name)
			writeHost(t, path, content)
			f := openFile(t, e, path, os.O_RDWR)
			ref, err := os.OpenFile(refPath, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer ref.Close()
			for _, c := range cases {
				if err := ref.Truncate(int64(len(content))); err != nil {
					t.Fatal(err)
				}
				refN, refErr := c.ref(ref, limit)
				var rst unix.Stat_t
				if err := unix.Fstat(int(ref.Fd()), &rst); err != nil {
					t.Fatal(err)
				}
				n, err := c.eng(f)
				fig.Add("calls", 1)
				if err != nil {
					var pe *fs.PathError
					if !errors.As(err, &pe) || errnoOf(err) == 0 {
						t.Fatalf("%s: error %v (%T) is not an *fs.PathError with an errno", c.name, err, err)
					}
				}
				if errnoOf(err) != errnoOf(refErr) || n != refN {
					if err == nil {
						fig.Add("accepted_invalid", 1)
					}
					t.Fatalf("%s: engine %d, %v; the host answers %d, %v", c.name, n, err, refN, refErr)
				}
				if err != nil {
					fig.Add("host_errno_matched", 1)
				}
				// The size the engine serves, and after a Sync the host's,
				// is the reference's.
				fi, serr := f.Stat()
				if serr != nil || fi.Size() != rst.Size {
					t.Fatalf("%s: engine size %d (%v), the host's reference %d", c.name, fi.Size(), serr, rst.Size)
				}
				if off := c.off; n > 0 && off >= 0 {
					got := make([]byte, n)
					if m, err := f.ReadAt(got, off); m != n || (err != nil && err != io.EOF) || !bytes.Equal(got, p[:n]) {
						t.Fatalf("%s: reading back %d bytes at %d: %d, %v, equal %v", c.name, n, off, m, err, bytes.Equal(got, p[:n]))
					}
					fig.Add("bytes_checked", int64(n))
				}
				if err := f.Sync(); err != nil {
					t.Fatalf("%s: Sync: %v", c.name, err)
				}
				var hst unix.Stat_t
				if err := unix.Stat(path, &hst); err != nil || hst.Size != rst.Size {
					t.Fatalf("%s: host size %d after Sync (%v), the reference's %d", c.name, hst.Size, err, rst.Size)
				}
				// Cut back; the file is as it was.
				if err := f.Truncate(int64(len(content))); err != nil {
					t.Fatalf("%s: cutting back: %v", c.name, err)
				}
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(content)+10)
				if m, err := f.ReadAt(got, 0); m != len(content) || err != io.EOF || !bytes.Equal(got[:m], content) {
					t.Fatalf("%s: after cutting back: %d bytes, %v", c.name, m, err)
				}
				sameBytes(t, c.name+": host after cutting back", readHost(t, path), content)
				fig.Add("bytes_checked", 2*int64(len(content)))
			}
		})
	}
	fig.Add("accepted_invalid", 0)
}

// ---- B5 ----

// b5Size is one call's length: more than the kernel's per-call cap
// (0x7ffff000), a multiple of the page (so that O_DIRECT takes it whole).
const b5Size = 1<<31 + 3*4096

// rowB5 reads and writes b5Size bytes in single calls through the paths
// that hand them to the kernel (no cache: reads on the ring, writes as
// the ring's plain syscalls, which is the psync backend's code; a small
// cache; O_DIRECT; Submit): the count is full and the CRC-32C of what was
// written, what the host holds and what was read back agree. Every 4 KiB
// block carries its offset and the configuration, so a piece written
// twice or to the wrong place shows. The buffer is mapped outside the Go
// heap, so the race detector does not shadow 2 GiB. Figures: calls,
// bytes (moved by them), short_resubmits (continuations the backend
// issued after the kernel's cap).
func rowB5(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	dir := relDir(t)
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		t.Fatal(err)
	}
	if free := int64(sfs.Bavail) * sfs.Bsize; free < b5Size+256<<20 {
		t.Skipf("B5 needs %d bytes free in %s, has %d", b5Size+256<<20, dir, free)
	}
	if avail := memAvailable(t); avail < 3*b5Size {
		t.Skipf("B5 needs about %d bytes of memory available, has %d", 3*b5Size, avail)
	}
	buf, err := unix.Mmap(-1, 0, b5Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	// Memory touched for the first time is what costs here (on a virtual
	// machine, several seconds for 2 GiB): huge pages, touched by two
	// goroutines, once; the host file's pages likewise, written once and
	// then overwritten in place by each configuration.
	unix.Madvise(buf, unix.MADV_HUGEPAGE) // advice only
	t0 := time.Now()
	var wg sync.WaitGroup
	for k := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part := buf[k*len(buf)/2 : (k+1)*len(buf)/2]
			for i := 0; i < len(part); i += 4096 {
				part[i] = 1
			}
		}()
	}
	wg.Wait()
	castagnoli := crc32.MakeTable(crc32.Castagnoli)
	// Fill once: a random megabyte, doubled up.
	fillData(buf[:1<<20], 5, 5)
	for n := 1 << 20; n < len(buf); n *= 2 {
		copy(buf[n:], buf[:n])
	}
	stamp := func(tag uint64) uint32 {
		for off := 0; off < len(buf); off += 4096 {
			binary.LittleEndian.PutUint64(buf[off:], uint64(off)<<8|tag)
		}
		return crc32.Checksum(buf, castagnoli)
	}
	hostCRC := func(path string, from int) uint32 {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != b5Size {
			t.Fatalf("host file is %d bytes, want %d", st.Size, b5Size)
		}
		m, err := unix.Mmap(fd, 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Munmap(m)
		return crc32.Checksum(m[from:], castagnoli)
	}
	// wipe zeroes the buffer, so that a read that leaves part of it alone
	// shows.
	wipe := func() { clear(buf) }
	path := filepath.Join(dir, "big")
	t.Cleanup(func() { os.Remove(path) })
	// The host file's pages, first touched by two goroutines (tag 0: no
	// configuration writes that).
	stamp(0)
	hf, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	half := len(buf) / 2 &^ 4095
	var werr [2]error
	for k, part := range [][2]int{{0, half}, {half, len(buf)}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, werr[k] = hf.WriteAt(buf[part[0]:part[1]], int64(part[0]))
		}()
	}
	wg.Wait()
	if err := errors.Join(werr[0], werr[1], hf.Close()); err != nil {
		t.Fatal(err)
	}
	t.Logf("2 GiB of buffer and host file first touched in %v", time.Since(t0).Round(time.Millisecond))
	configs := []struct {
		name   string
		opts   Options
		flag   int
		submit bool // read back with Submit, and read past the end
	}{
		{"uncached", Options{Mode: Exclusive, CacheSize: -1}, 0, true},
		{"exclusive/1MiB", Options{Mode: Exclusive, CacheSize: 1 << 20}, 0, false},
		{"writethrough/1MiB/direct", Options{Mode: Writethrough, CacheSize: 1 << 20}, syscall.O_DIRECT, false},
	}
	if testing.Short() {
		t.Skip("B5 moves 2 GiB per call: not in -short runs")
	}
	for i, c := range configs {
		if c.flag&syscall.O_DIRECT != 0 && !directSupported(dir) {
			t.Logf("%s: skipped: %s takes no O_DIRECT", c.name, dir)
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			e := newEngine(t, c.opts)
			f := openFile(t, e, path, os.O_RDWR|os.O_CREATE|c.flag)
			want := stamp(uint64(i + 1))
			st := e.Stats()
			n, err := f.WriteAt(buf, 0)
			fig.Add("calls", 1)
			if n != b5Size || err != nil {
				t.Fatalf("WriteAt of %d bytes: %d, %v", b5Size, n, err)
			}
			fig.Add("bytes", int64(n))
			if err := f.Sync(); err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if got := hostCRC(path, 0); got != want {
				t.Fatalf("host holds CRC %08x after the write, want %08x", got, want)
			}
			wipe()
			n, err = f.ReadAt(buf, 0)
			fig.Add("calls", 1)
			if n != b5Size || err != nil {
				t.Fatalf("ReadAt of %d bytes: %d, %v", b5Size, n, err)
			}
			fig.Add("bytes", int64(n))
			if got := crc32.Checksum(buf, castagnoli); got != want {
				t.Fatalf("read back CRC %08x, want %08x", got, want)
			}
			if c.submit {
				// A Submit read of the whole file, then a ReadAt running
				// past the end: short by exactly the part past it, io.EOF.
				wipe()
				ops := []Op{{File: f, Buf: buf, Off: 0}}
				if err := e.Submit(ops); err != nil || ops[0].N != b5Size || ops[0].Err != nil {
					t.Fatalf("Submit read of %d bytes: %v, %d, %v", b5Size, err, ops[0].N, ops[0].Err)
				}
				if got := crc32.Checksum(buf, castagnoli); got != want {
					t.Fatalf("Submit read back CRC %08x, want %08x", got, want)
				}
				wipe()
				n, err = f.ReadAt(buf, 4096)
				if n != b5Size-4096 || err != io.EOF {
					t.Fatalf("ReadAt of %d bytes at 4096: %d, %v; want %d, io.EOF", b5Size, n, err, b5Size-4096)
				}
				if got, w := crc32.Checksum(buf[:n], castagnoli), hostCRC(path, 4096); got != w {
					t.Fatalf("read across the end: CRC %08x, the host's %08x", got, w)
				}
				fig.Add("calls", 2)
				fig.Add("bytes", int64(b5Size+n))
			}
			d := e.Stats().Sub(st)
			fig.Add("short_resubmits", int64(d.Ring.ShortResubmits))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d-byte calls whole, CRC %08x, %d continuations, %v", c.name, b5Size, want, d.Ring.ShortResubmits, time.Since(start).Round(time.Millisecond))
		})
	}
}

// memAvailable returns MemAvailable from /proc/meminfo in bytes.
func memAvailable(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemAvailable:"); ok {
			f := strings.Fields(rest)
			if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
				return n << 10
			}
		}
	}
	t.Fatal("no MemAvailable in /proc/meminfo")
	return 0
}

// ---- B6 ----

// rowB6: the errno table's B6 cases, every open flag bit Open does not
// take, every RWF bit ReadAtFlags/WriteAtFlags do not take, every
// fallocate mode Allocate does not take, every whence Seek does not
// take, and invalid Options: each refused with its documented errno
// (EINVAL, EOPNOTSUPP, EINVAL, EINVAL, EINVAL), nothing changed.
// Figures: calls, refused, accepted_invalid, rwf_bits, falloc_modes,
// whence_values, opens_refused, bad_flag_bits, bad_options.
func rowB6(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	runErrCases(t, fig, "B6", "", nil)
	t.Run("open", func(t *testing.T) { openErrors(t, fig) })
	t.Run("sweeps", func(t *testing.T) {
		for _, mode := range errModes {
			t.Run(mode.name, func(t *testing.T) {
				fx := newErrFixture(t, mode.opts)
				big := make([]byte, 100)
				refuse := func(what string, n int, err, want error) {
					t.Helper()
					fig.Add("calls", 1)
					if err == nil {
						fig.Add("accepted_invalid", 1)
					}
					if n != 0 {
						t.Fatalf("%s: %d bytes moved", what, n)
					}
					checkRefused(t, what, err, want)
					fig.Add("refused", 1)
				}
				// RWF bits: every bit of the int but the four taken.
				rwf := 0
				for b := 0; b < 64; b++ {
					flag := 1 << b
					if flag&supportedRWF != 0 {
						continue
					}
					rwf++
					n, err := fx.rw.ReadAtFlags(big, 0, flag)
					refuse(fmt.Sprintf("ReadAtFlags %#x", flag), n, err, syscall.EOPNOTSUPP)
					n, err = fx.rw.WriteAtFlags(big, 0, flag)
					refuse(fmt.Sprintf("WriteAtFlags %#x", flag), n, err, syscall.EOPNOTSUPP)
					n, err = fx.rw.WriteAtFlags(big, 0, flag|unix.RWF_DSYNC)
					refuse(fmt.Sprintf("WriteAtFlags %#x|RWF_DSYNC", flag), n, err, syscall.EOPNOTSUPP)
				}
				fig.Set("rwf_bits", int64(rwf))
				// fallocate modes: every combination of the low eight
				// bits and every higher bit, but the five taken.
				taken := map[uint32]bool{
					0:                        true,
					unix.FALLOC_FL_KEEP_SIZE: true,
					unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE: true,
					unix.FALLOC_FL_ZERO_RANGE:                            true,
					unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE: true,
				}
				var modes []uint32
				for m := uint32(0); m < 256; m++ {
					modes = append(modes, m)
				}
				for b := 8; b < 32; b++ {
					modes = append(modes, 1<<b, 1<<b|unix.FALLOC_FL_KEEP_SIZE)
				}
				nmodes := 0
				for _, m := range modes {
					if taken[m] {
						continue
					}
					nmodes++
					refuse(fmt.Sprintf("Allocate mode %#x", m), 0, fx.rw.Allocate(m, 4096, 4096), syscall.EOPNOTSUPP)
				}
				fig.Set("falloc_modes", int64(nmodes))
				// whence: everything but 0..4, the offset left alone.
				if _, err := fx.rw.Seek(777, io.SeekStart); err != nil {
					t.Fatal(err)
				}
				var whences []int
				for w := -100; w <= 100; w++ {
					if w < 0 || w > 4 {
						whences = append(whences, w)
					}
				}
				whences = append(whences, math.MaxInt, math.MinInt, math.MaxInt32, math.MinInt32, 1<<32|1, 1<<40)
				for _, w := range whences {
					_, err := fx.rw.Seek(0, w)
					refuse(fmt.Sprintf("Seek whence %d", w), 0, err, syscall.EINVAL)
					if pos, _ := fx.rw.Seek(0, io.SeekCurrent); pos != 777 {
						t.Fatalf("Seek with whence %d moved the offset to %d", w, pos)
					}
				}
				fig.Set("whence_values", int64(len(whences)))
				fx.unchanged(t, "after the sweeps")
			})
		}
	})
	t.Run("options", func(t *testing.T) {
		bad := []struct {
			name string
			opts Options
		}{
			{"mode 3", Options{Mode: 3}},
			{"mode 255", Options{Mode: 255}},
			{"negative readahead", Options{Readahead: -1}},
			{"negative ring entries", Options{RingEntries: -1}},
			{"negative latency sampling", Options{LatencySampling: -1}},
			{"unknown backend", Options{Backend: "bogus"}},
			{"cache below the minimum", Options{CacheSize: 4096}},
		}
		for _, b := range bad {
			e, err := New(b.opts)
			fig.Add("calls", 1)
			if e != nil {
				e.Close()
				fig.Add("accepted_invalid", 1)
				t.Fatalf("New with %s: accepted", b.name)
			}
			if !errors.Is(err, syscall.EINVAL) {
				t.Fatalf("New with %s: %v, want EINVAL", b.name, err)
			}
			fig.Add("bad_options", 1)
			fig.Add("refused", 1)
		}
	})
	fig.Add("accepted_invalid", 0)
}

// ---- B9 ----

// dioAlign returns the file offset alignment the host asks of O_DIRECT
// I/O on path (statx STATX_DIOALIGN), or 0 when it does not say.
func dioAlign(path string) int64 {
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, 0, unix.STATX_DIOALIGN, &stx); err != nil || stx.Mask&unix.STATX_DIOALIGN == 0 {
		return 0
	}
	return int64(stx.Dio_offset_align)
}

// b9Modes are the engines of row B9: every mode, and a cache that reads
// and writes back through O_DIRECT descriptors itself.
var b9Modes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive, CacheSize: 1 << 20}},
	{"exclusive/directio", Options{Mode: Exclusive, CacheSize: 1 << 20, DirectIO: true}},
	{"writethrough", Options{Mode: Writethrough, CacheSize: 1 << 20}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
}

// rowB9: an O_DIRECT handle given buffers, offsets and lengths off every
// alignment, on a disk filesystem (which checks direct I/O alignment)
// and on tmpfs (which does not). As documented: reads are always served
// (bounced through an aligned buffer when needed); writes with an
// unaligned buffer are bounced; writes whose offset or length the host
// refuses fail with EINVAL and change nothing. The handle's data never
// enters the page cache: no fills, no cached writes, no resident bytes
// for the file. Then the same with an O_RDWR handle holding dirty
// cached bytes of the file. Figures: reads, reads_bounced, writes,
// writes_bounced, writes_einval, cached_bytes (resident after direct
// I/O: 0), bytes_checked.
func rowB9(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	dirs := []string{t.TempDir()}
	if d := relDir(t); d != "" {
		var a, b unix.Statfs_t
		if unix.Statfs(dirs[0], &a) == nil && unix.Statfs(d, &b) == nil && a.Type != b.Type {
			dirs = append(dirs, d)
		}
	}
	ran := 0
	for _, dir := range dirs {
		if !directSupported(dir) {
			t.Logf("%s takes no O_DIRECT: skipped", dir)
			continue
		}
		probe := filepath.Join(dir, ".dioalign")
		writeHost(t, probe, nil)
		align := dioAlign(probe)
		os.Remove(probe)
		var sfs unix.Statfs_t
		unix.Statfs(dir, &sfs)
		t.Run(fmt.Sprintf("fs=%#x/align=%d", sfs.Type, align), func(t *testing.T) {
			for _, mode := range b9Modes {
				t.Run(mode.name, func(t *testing.T) {
					ran++
					b9Run(t, fig, dir, mode.opts, align)
				})
			}
		})
	}
	if ran == 0 {
		t.Skip("no filesystem here takes O_DIRECT")
	}
}

// b9Run is row B9 on one engine: dir's filesystem wants direct I/O
// offsets and lengths aligned to align (0: unknown).
func b9Run(t *testing.T, fig *Figures, dir string, opts Options, align int64) {
	e := newEngine(t, opts)
	path := filepath.Join(dir, "direct")
	const size = 16*4096 + 1000
	model := pattern(size, 9, 0)
	writeHost(t, path, model)
	d := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
	// buf returns n bytes whose address is shift bytes past an aligned one.
	buf := func(n, shift int) []byte { return alignedBuf(n + shift)[shift : shift+n] }
	resident := func() int64 {
		for _, fs := range e.Files() {
			if fs.Path == path {
				return fs.ResidentBytes
			}
		}
		return 0
	}
	// check reads the whole file through the direct handle (bounced: the
	// length is not aligned) and from the host.
	check := func(what string) {
		t.Helper()
		got := buf(len(model)+4096, 1)
		n, err := d.ReadAt(got, 0)
		if n != len(model) || err != io.EOF {
			t.Fatalf("%s: direct read of the file: %d, %v; want %d, io.EOF", what, n, err, len(model))
		}
		sameBytes(t, what+": direct read", got[:n], model)
		sameBytes(t, what+": host", readHost(t, path), model)
		fig.Add("bytes_checked", 2*int64(len(model)))
	}
	before := e.Stats()
	for _, shift := range []int{0, 1, 512} {
		for _, off := range []int64{0, 1, 511, 512, 4096, 4097, size - 700, size - 1, size, size + 5000} {
			for _, n := range []int{1, 100, 511, 512, 4096, 8192 + 13, 20000} {
				p := buf(n, shift)
				got, err := d.ReadAt(p, off)
				want := int(max(0, min(int64(n), size-off)))
				fig.Add("reads", 1)
				if !pagecache.DirectAligned(p, off) {
					fig.Add("reads_bounced", 1)
				}
				if got != want || (want < n && err != io.EOF) || (want == n && err != nil) {
					t.Fatalf("direct ReadAt(%d bytes +%d, %d) = %d, %v; want %d", n, shift, off, got, err, want)
				}
				if want > 0 && !bytes.Equal(p[:got], model[off:off+int64(got)]) {
					t.Fatalf("direct ReadAt(%d bytes +%d, %d): wrong data", n, shift, off)
				}
				fig.Add("bytes_checked", int64(got))
			}
		}
	}
	// Writes: buffer shift × offset × length. An aligned offset and
	// length (to the host's alignment) must succeed, bounced when the
	// buffer is not aligned; otherwise the host may refuse with EINVAL,
	// and then nothing may change.
	tag := uint64(0)
	for _, shift := range []int{0, 100} {
		for _, off := range []int64{0, 100, 512, 4096, 4096 + 512, 8192 + 1} {
			for _, n := range []int{4096, 8192, 100, 512, 4096 + 512} {
				tag++
				p := buf(n, shift)
				fillData(p, 9, tag)
				got, err := d.WriteAt(p, off)
				fig.Add("writes", 1)
				okAligned := align > 0 && off%align == 0 && int64(n)%align == 0
				switch {
				case err == nil:
					if align > 0 && !okAligned {
						t.Fatalf("direct WriteAt(%d bytes +%d, %d) succeeded where the host asks for alignment %d", n, shift, off, align)
					}
					if got != n {
						t.Fatalf("direct WriteAt(%d bytes +%d, %d) = %d, nil", n, shift, off, got)
					}
					if end := off + int64(n); end > int64(len(model)) {
						model = append(model, make([]byte, end-int64(len(model)))...)
					}
					copy(model[off:], p)
					if shift != 0 {
						fig.Add("writes_bounced", 1)
					}
				default:
					if okAligned || align == 0 && off%4096 == 0 && n%4096 == 0 {
						t.Fatalf("direct WriteAt(%d bytes +%d, %d), aligned: %d, %v", n, shift, off, got, err)
					}
					if got != 0 {
						t.Fatalf("refused direct WriteAt(%d bytes +%d, %d) wrote %d bytes", n, shift, off, got)
					}
					wantPathErr(t, "unaligned direct write", err, syscall.EINVAL)
					fig.Add("writes_einval", 1)
				}
				check(fmt.Sprintf("after direct WriteAt(%d bytes +%d, %d)", n, shift, off))
			}
		}
	}
	delta := e.Stats().Sub(before)
	fig.Add("cached_bytes", resident())
	if r := resident(); r != 0 || delta.Cache.Fills != 0 || delta.Cache.WriteBytes != 0 || delta.Reads.Fill.Ops != 0 ||
		delta.Reads.CacheHit.Ops != 0 || delta.Writes.Cache.Ops != 0 {
		t.Fatalf("direct I/O went through the cache: %d bytes resident, %d fills, %d bytes written to the cache, %d fill reads, %d hits, %d cached writes",
			r, delta.Cache.Fills, delta.Cache.WriteBytes, delta.Reads.Fill.Ops, delta.Reads.CacheHit.Ops, delta.Writes.Cache.Ops)
	}
	if delta.Reads.Direct.Ops == 0 || delta.Writes.Direct.Ops == 0 {
		t.Fatalf("no direct path counted: %d reads, %d writes", delta.Reads.Direct.Ops, delta.Writes.Direct.Ops)
	}

	// With an O_RDWR handle whose dirty bytes sit in the shared cache:
	// a refused direct write loses none of them, a direct read sees them,
	// and an accepted direct write replaces the cached page.
	b := openFile(t, e, path, os.O_RDWR)
	whole := make([]byte, len(model))
	if _, err := b.ReadAt(whole, 0); err != nil {
		t.Fatal(err)
	}
	dirty := pattern(300, 9, 1000)
	if _, err := b.WriteAt(dirty, 300); err != nil {
		t.Fatal(err)
	}
	copy(model[300:], dirty)
	// An unaligned direct write over them: refused where the host asks
	// for alignment, else written (and the cached bytes under it with it).
	q := buf(100, 1)
	fillData(q, 9, 1001)
	n, err := d.WriteAt(q, 100)
	fig.Add("writes", 1)
	switch {
	case err != nil:
		wantPathErr(t, "unaligned direct write over dirty cached bytes", err, syscall.EINVAL)
		fig.Add("writes_einval", 1)
	case align > 1:
		t.Fatalf("unaligned direct write over dirty cached bytes succeeded where the host asks for alignment %d", align)
	case n != len(q):
		t.Fatalf("direct write over dirty cached bytes: %d, nil", n)
	default:
		copy(model[100:], q)
	}
	got := buf(4096, 0)
	if n, err := d.ReadAt(got, 0); n != 4096 || err != nil || !bytes.Equal(got, model[:4096]) {
		t.Fatalf("direct read of a page with dirty cached bytes: %d, %v, equal %v", n, err, bytes.Equal(got, model[:4096]))
	}
	fig.Add("reads", 1)
	p := buf(4096, 7)
	fillData(p, 9, 2000)
	if n, err := d.WriteAt(p, 0); n != 4096 || err != nil {
		t.Fatalf("direct write of the cached page: %d, %v", n, err)
	}
	fig.Add("writes", 1)
	fig.Add("writes_bounced", 1)
	copy(model, p)
	got = make([]byte, len(model)+10)
	if n, err := b.ReadAt(got, 0); n != len(model) || err != io.EOF {
		t.Fatalf("buffered read after direct I/O: %d, %v", n, err)
	}
	sameBytes(t, "buffered read after direct I/O", got[:len(model)], model)
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	check("after the O_RDWR handle's Sync")
	b9Fragmented(t, fig, e, dir, align)
}

// b9Fragmented: a refused direct write changes nothing also where the
// file's extents split its range. The kernel checks the alignment one
// extent at a time: pwrite(O_DIRECT) of 10490 bytes at 0 over 8 KiB of
// data followed by a hole writes the 8 KiB and then fails with EINVAL
// (ext4, Linux 6.18); the engine refuses such a write before it writes.
func b9Fragmented(t *testing.T, fig *Figures, e *Engine, dir string, align int64) {
	const n = 10490
	if align <= 1 || n%align == 0 {
		return // the host takes any length: nothing to refuse
	}
	path := filepath.Join(dir, "fragmented")
	h, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 16384} {
		if _, err := h.WriteAt(pattern(8192, 9, uint64(off)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	old := readHost(t, path)
	d := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
	defer d.Close()
	p := alignedBuf(n)
	fillData(p, 9, 3000)
	got, err := d.WriteAt(p, 0)
	fig.Add("writes", 1)
	if got != 0 || err == nil {
		t.Fatalf("direct WriteAt(%d bytes, 0) over a fragmented file: %d, %v; want 0, EINVAL", n, got, err)
	}
	wantPathErr(t, "unaligned direct write over a fragmented file", err, syscall.EINVAL)
	fig.Add("writes_einval", 1)
	sameBytes(t, "host after a refused direct write over a fragmented file", readHost(t, path), old)
	fig.Add("bytes_checked", int64(len(old)))
}

// ---- S2 ----

// rowS2: O_NOFOLLOW on a symlink is refused with ELOOP (also with
// O_CREAT on a dangling link, which must not create its target); and
// while a goroutine keeps swapping a path between a regular file and a
// symlink to a secret file, opens with O_NOFOLLOW either fail with ELOOP
// or open the regular file: the handle, and the engine's own descriptor
// of the file (reads, a write and a Sync through it), are never the
// secret's. Figures: opens, refused_eloop, opened_regular,
// opened_target (0), swaps, target_changed (0).
func rowS2(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	secretData := bytes.Repeat([]byte("secret! "), 512)
	writeHost(t, secret, secretData)
	var secretSt unix.Stat_t
	if err := unix.Stat(secret, &secretSt); err != nil {
		t.Fatal(err)
	}
	decoy := filepath.Join(dir, "decoy")
	decoyData := pattern(4096, 2, 2)
	writeHost(t, decoy, decoyData)
	var decoySt unix.Stat_t
	if err := unix.Stat(decoy, &decoySt); err != nil {
		t.Fatal(err)
	}
	targetUnchanged := func(what string) {
		t.Helper()
		var st unix.Stat_t
		if err := unix.Stat(secret, &st); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(readHost(t, secret), secretData) || st.Mtim != secretSt.Mtim {
			fig.Add("target_changed", 1)
			t.Fatalf("%s: the symlink's target changed", what)
		}
	}
	for _, mode := range []struct {
		name string
		opts Options
	}{{"exclusive", Options{Mode: Exclusive, CacheSize: 1 << 20}}, {"shared", Options{Mode: Shared}}} {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			sub := t.TempDir()
			// Static: a symlink, a dangling symlink.
			link := filepath.Join(sub, "link")
			if err := os.Symlink(secret, link); err != nil {
				t.Fatal(err)
			}
			dangling := filepath.Join(sub, "dangling")
			notThere := filepath.Join(sub, "not-there")
			if err := os.Symlink(notThere, dangling); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				path string
				flag int
				want error
			}{
				{link, os.O_RDONLY | syscall.O_NOFOLLOW, syscall.ELOOP},
				{link, os.O_RDWR | syscall.O_NOFOLLOW, syscall.ELOOP},
				{link, os.O_WRONLY | os.O_TRUNC | syscall.O_NOFOLLOW, syscall.ELOOP},
				{link, os.O_RDWR | os.O_CREATE | syscall.O_NOFOLLOW, syscall.ELOOP},
				{link, os.O_RDWR | os.O_CREATE | os.O_EXCL | syscall.O_NOFOLLOW, syscall.EEXIST},
				{link, os.O_RDONLY | syscall.O_NOFOLLOW | syscall.O_DIRECT, syscall.ELOOP},
				{dangling, os.O_RDWR | os.O_CREATE | syscall.O_NOFOLLOW, syscall.ELOOP},
				{dangling, os.O_WRONLY | os.O_CREATE | os.O_TRUNC | syscall.O_NOFOLLOW, syscall.ELOOP},
			} {
				what := fmt.Sprintf("Open(%s, %#x)", filepath.Base(c.path), c.flag)
				f, err := e.Open(c.path, c.flag, 0o644)
				fig.Add("opens", 1)
				if f != nil {
					f.Close()
					fig.Add("opened_target", 1)
					t.Fatalf("%s succeeded", what)
				}
				checkRefused(t, what, err, c.want)
				if errors.Is(err, syscall.ELOOP) {
					fig.Add("refused_eloop", 1)
				}
				if _, err := os.Lstat(notThere); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s created the dangling link's target", what)
				}
				targetUnchanged(what)
			}
			// Racing: path alternates between the decoy (a hard link to
			// it renamed over path) and a symlink to the secret.
			path := filepath.Join(sub, "p")
			if err := os.Link(decoy, path); err != nil {
				t.Fatal(err)
			}
			var stop atomic.Bool
			var swaps atomic.Int64
			var swapErr error
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				lt, rt := filepath.Join(sub, "l.tmp"), filepath.Join(sub, "r.tmp")
				for !stop.Load() {
					if swapErr = errors.Join(unix.Symlink(secret, lt), unix.Rename(lt, path)); swapErr != nil {
						return
					}
					if swapErr = errors.Join(unix.Link(decoy, rt), unix.Rename(rt, path)); swapErr != nil {
						return
					}
					swaps.Add(2)
				}
			}()
			defer func() { stop.Store(true); wg.Wait() }()
			iterations := 1500 * soakFactor()
			if !raceEnabled {
				iterations *= 4
			}
			flags := []int{os.O_RDONLY | syscall.O_NOFOLLOW, os.O_RDWR | syscall.O_NOFOLLOW, os.O_RDWR | os.O_CREATE | syscall.O_NOFOLLOW}
			var opened, refused int
			for i := 0; i < iterations; i++ {
				flag := flags[i%len(flags)]
				f, err := e.Open(path, flag, 0o644)
				fig.Add("opens", 1)
				if err != nil {
					checkRefused(t, "racing Open with O_NOFOLLOW", err, syscall.ELOOP)
					refused++
					fig.Add("refused_eloop", 1)
					continue
				}
				fi, err := f.Stat()
				if err != nil {
					t.Fatal(err)
				}
				if st := fi.Sys().(*syscall.Stat_t); st.Ino != decoySt.Ino || st.Dev != decoySt.Dev {
					fig.Add("opened_target", 1)
					t.Fatalf("O_NOFOLLOW open of a swapped path opened inode %d, not the regular file's %d (the secret is %d)", st.Ino, decoySt.Ino, secretSt.Ino)
				}
				got := make([]byte, 64)
				if n, err := f.ReadAt(got, 1000); n != 64 || err != nil || !bytes.Equal(got, decoyData[1000:1064]) {
					fig.Add("opened_target", 1)
					t.Fatalf("read through an O_NOFOLLOW handle: %d, %v, not the regular file's bytes", n, err)
				}
				if flag&os.O_RDWR != 0 && i%16 == 1 {
					// The same bytes again: a no-op on the regular file,
					// a change on any other.
					if _, err := f.WriteAt(decoyData[2000:2100], 2000); err != nil {
						t.Fatal(err)
					}
					if err := f.Sync(); err != nil {
						t.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				opened++
				fig.Add("opened_regular", 1)
			}
			stop.Store(true)
			wg.Wait()
			if swapErr != nil {
				t.Fatalf("swapping the path: %v", swapErr)
			}
			fig.Add("swaps", swaps.Load())
			targetUnchanged("after the racing opens")
			sameBytes(t, "the regular file", readHost(t, decoy), decoyData)
			for _, fs := range e.Files() {
				if fs.Path == secret {
					t.Fatalf("the engine holds the secret file")
				}
			}
			if opened == 0 || refused == 0 {
				t.Fatalf("%d opens, %d refusals over %d swaps: the race was not exercised", opened, refused, swaps.Load())
			}
			t.Logf("%d O_NOFOLLOW opens racing %d swaps: %d opened the regular file, %d refused with ELOOP, 0 reached the target", iterations, swaps.Load(), opened, refused)
		})
	}
	fig.Add("opened_target", 0)
	fig.Add("target_changed", 0)
}

// ---- S4 ----

// s4Modes are the engines of row S4: every mode, and tiny caches that
// evict between the steps.
var s4Modes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive, CacheSize: 1 << 20}},
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
	{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
}

// s4Step is one step of an S4 scenario: it changes the file through f
// and returns the model after it.
type s4Step func(t *testing.T, f *File, model []byte) []byte

func s4Truncate(size int64) s4Step {
	return func(t *testing.T, f *File, model []byte) []byte {
		if err := f.Truncate(size); err != nil {
			t.Fatalf("Truncate(%d): %v", size, err)
		}
		return resizeModel(model, size)
	}
}

func s4Write(off int64, n int, tag uint64) s4Step {
	return func(t *testing.T, f *File, model []byte) []byte {
		p := pattern(n, 4, tag)
		if m, err := f.WriteAt(p, off); m != n || err != nil {
			t.Fatalf("WriteAt(%d bytes, %d): %d, %v", n, off, m, err)
		}
		model = resizeModel(model, max(int64(len(model)), off+int64(n)))
		copy(model[off:], p)
		return model
	}
}

func s4Allocate(mode uint32, off, length int64) s4Step {
	return func(t *testing.T, f *File, model []byte) []byte {
		if err := f.Allocate(mode, off, length); err != nil {
			t.Fatalf("Allocate(%#x, %d, %d): %v", mode, off, length, err)
		}
		if mode&unix.FALLOC_FL_KEEP_SIZE == 0 {
			model = resizeModel(model, max(int64(len(model)), off+length))
		}
		return model
	}
}

func s4Sync(t *testing.T, f *File, model []byte) []byte {
	if err := f.Sync(); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	return model
}

// resizeModel cuts or zero-extends model to size.
func resizeModel(model []byte, size int64) []byte {
	if size <= int64(len(model)) {
		return model[:size]
	}
	return append(model, make([]byte, size-int64(len(model)))...)
}

// rowS4: after a file shrinks, every byte it later regains (by
// truncating up, writing past the end, allocating) reads zero — in the
// cache (before any write-back), through a mapping of the end page, on
// the host after Sync, and through a fresh engine; bytes written (and
// still dirty) past the smaller size are never resurrected. Checked
// after every step. Figures: scenarios, steps, gap_bytes_checked
// (zero bytes the model demands, counted each time they are checked),
// bytes_checked.
func rowS4(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	const size0 = 3*4096 + 123
	scenarios := []struct {
		name  string
		steps []s4Step
	}{
		{"truncate down, then up", []s4Step{s4Truncate(5000), s4Truncate(20000)}},
		{"truncate down, write past EOF", []s4Step{s4Truncate(100), s4Write(9000, 300, 1)}},
		{"dirty bytes past the new EOF, truncate down, then up", []s4Step{
			s4Write(6000, 6000, 2), s4Truncate(7000), s4Truncate(16000)}},
		{"dirty bytes past the new EOF, truncate down, write past EOF", []s4Step{
			s4Write(2000, 9000, 3), s4Truncate(2500), s4Write(14000, 10, 4)}},
		{"synced, truncate into a page, write far past EOF", []s4Step{
			s4Sync, s4Truncate(4095), s4Write(1<<20, 10, 5)}},
		{"truncate down, allocate past EOF", []s4Step{s4Truncate(3000), s4Allocate(0, 3000, 10000)}},
		{"keep-size allocation past EOF, write past it", []s4Step{
			s4Truncate(3000), s4Allocate(unix.FALLOC_FL_KEEP_SIZE, 0, 40000), s4Write(30000, 100, 6)}},
		{"truncate to zero, then up", []s4Step{s4Truncate(0), s4Truncate(size0)}},
		{"Seek past EOF and Write", []s4Step{s4Truncate(1000), func(t *testing.T, f *File, model []byte) []byte {
			if _, err := f.Seek(50000, io.SeekStart); err != nil {
				t.Fatal(err)
			}
			p := pattern(77, 4, 7)
			if n, err := f.Write(p); n != len(p) || err != nil {
				t.Fatalf("Write: %d, %v", n, err)
			}
			model = resizeModel(model, 50077)
			copy(model[50000:], p)
			return model
		}}},
		{"shrink and regrow in steps", []s4Step{
			s4Truncate(8000), s4Write(8100, 50, 8), s4Truncate(6000), s4Truncate(9000), s4Write(4096, 10, 9), s4Truncate(4100), s4Truncate(12000)}},
	}
	for _, mode := range s4Modes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			dir := t.TempDir()
			for si, sc := range scenarios {
				path := filepath.Join(dir, fmt.Sprintf("s%d", si))
				model := pattern(size0, 4, uint64(100+si))
				writeHost(t, path, model)
				f := openFile(t, e, path, os.O_RDWR)
				// Cache it all first: the old bytes sit in the cache.
				if _, err := f.ReadAt(make([]byte, size0), 0); err != nil {
					t.Fatal(err)
				}
				// zero marks the bytes that must read zero: regained
				// after a shrink and not written since.
				minSize := int64(size0)
				var zero byteSet
				zero.resize(size0, 0)
				for i, step := range sc.steps {
					prev := int64(len(model))
					model = step(t, f, model)
					now := int64(len(model))
					if now < minSize {
						minSize = now
					}
					zero.resize(now, 1)
					if now < prev {
						zero.resize(now, 0)
					}
					zero.set(0, minSize, 0)
					// Written bytes are no longer zero by demand.
					for j := minSize; j < now; j++ {
						if model[j] != 0 {
							zero[j] = 0
						}
					}
					what := fmt.Sprintf("%s: step %d", sc.name, i)
					s4Check(t, fig, f, path, model, zero, what, false)
					fig.Add("steps", 1)
				}
				if err := f.Sync(); err != nil {
					t.Fatal(err)
				}
				s4Check(t, fig, f, path, model, zero, sc.name+": after Sync", true)
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				// A fresh engine reads what the host holds.
				e2 := newEngine(t, mode.opts)
				g := openFile(t, e2, path, os.O_RDONLY)
				s4Check(t, fig, g, path, model, zero, sc.name+": fresh engine", true)
				if err := e2.Close(); err != nil {
					t.Fatal(err)
				}
				fig.Add("scenarios", 1)
			}
		})
	}
}

// s4Check compares the file with model through f and, when host, on the
// host and through a mapping of the end page.
func s4Check(t *testing.T, fig *Figures, f *File, path string, model []byte, zero byteSet, what string, host bool) {
	t.Helper()
	size := int64(len(model))
	if fi, err := f.Stat(); err != nil || fi.Size() != size {
		t.Fatalf("%s: size %d (%v), want %d", what, fi.Size(), err, size)
	}
	got := make([]byte, size+4096)
	n, err := f.ReadAt(got, 0)
	if int64(n) != size || err != io.EOF {
		t.Fatalf("%s: read %d bytes, %v; want %d, io.EOF", what, n, err, size)
	}
	gaps := zero.count()
	if first, bad := zero.firstDiff(got[:n], model); bad > 0 {
		t.Fatalf("%s: %d bytes of the regained range are not zero, the first at %d (%#x)", what, bad, first, got[first])
	}
	sameBytes(t, what, got[:n], model)
	fig.Add("gap_bytes_checked", gaps)
	fig.Add("bytes_checked", size)
	// The end page through a mapping: the file's bytes, then zeros to
	// the end of the page. (Mapping writes the cache back, so only once
	// the cache has been checked as it was.)
	if host && size > 0 {
		pageStart := (size - 1) &^ 4095
		m, err := f.Map(pageStart, 4096, false)
		if err != nil {
			t.Fatalf("%s: Map of the end page: %v", what, err)
		}
		pg := make([]byte, 4096)
		if n, err := m.ReadAt(pg, 0); n != 4096 || err != nil {
			t.Fatalf("%s: reading the end page through a mapping: %d, %v", what, n, err)
		}
		m.Close()
		tail := size - pageStart
		if !bytes.Equal(pg[:tail], model[pageStart:]) || firstNonzeroByte(pg[tail:]) >= 0 {
			t.Fatalf("%s: the end page through a mapping differs (tail nonzero at %d)", what, firstNonzeroByte(pg[tail:]))
		}
		fig.Add("bytes_checked", 4096)
	}
	if host {
		h := readHost(t, path)
		if first, bad := zero.firstDiff(h, model); bad > 0 {
			t.Fatalf("%s: %d bytes of the regained range are not zero on the host, the first at %d", what, bad, first)
		}
		sameBytes(t, what+": host", h, model)
		fig.Add("gap_bytes_checked", gaps)
		fig.Add("bytes_checked", size)
	}
}

// ---- S6 ----

// s6Configs are the engines of row S6; the caches are tiny, so that
// frames are reused between files and evicted mid-run.
var s6Configs = []fwConfig{
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
	{"exclusive/psync/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: "psync"}},
	{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
}

// s6Fault is a failure injected into the k-th write, ftruncate or
// fallocate the backend sees.
type s6Fault struct {
	name  string
	rules func(k uint64) []fault.Rule
}

func s6Match() fault.Predicate {
	return fault.Or(fault.Writes(), fault.OnOps(uring.OpFtruncate, uring.OpFallocate))
}

var s6Faults = []s6Fault{
	{"EIO before the kernel", func(k uint64) []fault.Rule {
		return []fault.Rule{{Name: "eio-issue", When: fault.And(s6Match(), fault.Nth(k)), Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EIO}}}
	}},
	{"EIO after the kernel ran it", func(k uint64) []fault.Rule {
		return []fault.Rule{{Name: "eio-complete", When: fault.And(s6Match(), fault.Nth(k)), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.EIO}}}
	}},
	{"short, then ENOSPC", func(k uint64) []fault.Rule {
		return []fault.Rule{
			{Name: "short", When: fault.And(s6Match(), fault.Nth(k)), Stage: fault.StageComplete, Do: fault.Effect{Short: 700}},
			{Name: "enospc", When: fault.And(s6Match(), fault.Nth(k)), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.ENOSPC}},
		}
	}},
}

// s6Junk is the byte the junk file is made of: it never appears in the
// target file, so any occurrence there came from elsewhere.
const s6Junk = 0xAA

// s6Base is the byte of the target file's initial data.
const s6Base = 0x33

// rowS6: a junk file of 0xAA is cycled through the (tiny) cache first, so
// free frames hold foreign bytes; then writes, truncates and allocations
// into fresh ranges of a target file (a hole, past the end, a new tail)
// run while the k-th write, ftruncate or fallocate fails — before the
// kernel, after it, or short and then ENOSPC — for k = 1, 2, ... until
// no fault hits. After healing, every byte the engine returns, and
// every byte on the host after a Sync, is one some call put there: the
// file's own data, zero, or a value a write attempted at that offset
// (exactly the written one where the call reported it written); never
// 0xAA or anything else. Figures: runs, faults_injected, failed_calls,
// bytes_checked, foreign_bytes (0).
func rowS6(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	dir := relDir(t)
	for _, cfg := range s6Configs {
		t.Run(cfg.name, func(t *testing.T) {
			for _, fl := range s6Faults {
				runs := 0
				for k := uint64(1); k <= 64; k++ {
					fired := s6Run(t, fig, cfg, fl, k, dir)
					runs++
					if fired == 0 {
						break
					}
				}
				t.Logf("%s: %d runs", fl.name, runs)
			}
		})
	}
	fig.Add("foreign_bytes", 0)
}

// s6Run is one run of row S6 and returns the faults injected.
func s6Run(t *testing.T, fig *Figures, cfg fwConfig, fl s6Fault, k uint64, dir string) uint64 {
	t.Helper()
	inj := fault.New()
	opts := cfg.opts
	opts.Injector = inj
	e := newEngine(t, opts)
	defer e.Close()
	fig.Add("runs", 1)
	if e.cache != nil {
		// Junk through every frame of the cache, then let it go.
		junk := filepath.Join(dir, "junk")
		writeHost(t, junk, bytes.Repeat([]byte{s6Junk}, int(e.cache.Capacity())+8192))
		j := openFile(t, e, junk, os.O_RDONLY)
		if _, err := j.ReadAt(make([]byte, e.cache.Capacity()+8192), 0); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, fmt.Sprintf("s6-%d", k))
	defer os.Remove(path)
	const base, size0 = 6000, 40000
	writeHost(t, path, bytes.Repeat([]byte{s6Base}, base))
	if err := os.Truncate(path, size0); err != nil {
		t.Fatal(err)
	}
	f := openFile(t, e, path, os.O_RDWR)
	if _, err := f.ReadAt(make([]byte, size0), 0); err != nil {
		t.Fatal(err)
	}
	// allowed[i] is the set of values byte i may hold: bit 0 zero, bit 1
	// the base byte, bit 2+j the value of call j.
	const limit = 128 << 10
	allowed := make([]uint16, limit)
	for i := range allowed {
		allowed[i] = 1
		if i < base {
			allowed[i] = 2
		}
	}
	value := func(j int) byte { return byte(0x40 + j) }
	var log []string
	minSize := int64(size0) // the file is at least this long
	for _, r := range fl.rules(k) {
		inj.Add(r)
	}
	type call struct {
		write   bool
		off     int64
		n       int
		trunc   int64 // Truncate to this (write false, alloc 0)
		alloc   int64 // Allocate(0, off, alloc)
		syncing bool
	}
	calls := []call{
		{write: true, off: 10000, n: 300},
		{write: true, off: 38000, n: 5000},
		{write: true, off: 60000, n: 100},
		{write: true, off: 4000, n: 9000},
		{trunc: 70000},
		{off: 70000, alloc: 8192},
		{write: true, off: 81920, n: 3 * 4096},
		{syncing: true},
		{write: true, off: 20000, n: 50},
		{write: true, off: 100, n: 8000},
		{syncing: true},
		{write: true, off: 94208 + 100, n: 4000},
		{syncing: true},
	}
	for j, c := range calls {
		var err error
		switch {
		case c.write:
			v := value(j)
			p := bytes.Repeat([]byte{v}, c.n)
			var n int
			n, err = f.WriteAt(p, c.off)
			for i := c.off; i < c.off+int64(c.n); i++ {
				if i < c.off+int64(n) {
					allowed[i] = 1 << (2 + j)
				} else {
					allowed[i] |= 1 << (2 + j)
				}
			}
			if n > 0 {
				minSize = max(minSize, c.off+int64(n))
			}
			log = append(log, fmt.Sprintf("write %#x [%d, +%d): %d, %v", v, c.off, c.n, n, err))
		case c.syncing:
			err = f.Sync()
			log = append(log, fmt.Sprintf("sync: %v", err))
		case c.alloc > 0:
			err = f.Allocate(0, c.off, c.alloc)
			log = append(log, fmt.Sprintf("allocate [%d, +%d): %v", c.off, c.alloc, err))
		default:
			err = f.Truncate(c.trunc)
			if err == nil {
				minSize = max(minSize, c.trunc)
			}
			log = append(log, fmt.Sprintf("truncate %d: %v", c.trunc, err))
		}
		if err != nil {
			fig.Add("failed_calls", 1)
			var pe *fs.PathError
			if !errors.As(err, &pe) || !(errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC)) {
				t.Fatalf("%s, %s, k=%d: call %d: %v (%T), want nil or an *fs.PathError with EIO or ENOSPC", cfg.name, fl.name, k, j, err, err)
			}
		}
	}
	fired := inj.Fired()
	fig.Add("faults_injected", int64(fired))
	inj.Heal()
	verify := func(what string, got []byte) {
		t.Helper()
		if int64(len(got)) < minSize || len(got) > limit {
			t.Fatalf("%s, %s, k=%d: %s: %d bytes, want at least %d\n%s", cfg.name, fl.name, k, what, len(got), minSize, strings.Join(log, "\n"))
		}
		for i, b := range got {
			var bit uint16
			switch {
			case b == 0:
				bit = 1
			case b == s6Base:
				bit = 2
			case b >= 0x40 && b < 0x40+byte(len(calls)):
				bit = 1 << (2 + int(b-0x40))
			}
			if allowed[i]&bit == 0 {
				fig.Add("foreign_bytes", 1)
				t.Fatalf("%s, %s, k=%d: %s: byte %d is %#x, allowed set %#b (0xAA: another file's bytes)\ncalls:\n  %s\nfaults: %v",
					cfg.name, fl.name, k, what, i, b, allowed[i], strings.Join(log, "\n  "), inj.Events())
			}
		}
		fig.Add("bytes_checked", int64(len(got)))
	}
	read := func() []byte {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		got := make([]byte, fi.Size())
		if n, err := f.ReadAt(got, 0); n != len(got) || err != nil {
			t.Fatalf("%s, %s, k=%d: read %d of %d bytes: %v", cfg.name, fl.name, k, n, len(got), err)
		}
		return got
	}
	verify("engine before healing's Sync", read())
	// A writeback error is reported once; then Sync succeeds.
	if err := f.Sync(); err != nil {
		if err := f.Sync(); err != nil {
			t.Fatalf("%s, %s, k=%d: Sync after healing: %v", cfg.name, fl.name, k, err)
		}
	}
	got := read()
	verify("engine after Sync", got)
	h := readHost(t, path)
	verify("host after Sync", h)
	if !bytes.Equal(h, got) {
		t.Fatalf("%s, %s, k=%d: after a Sync the host differs from the engine at %d\n%s", cfg.name, fl.name, k, diffAt(h, got), strings.Join(log, "\n"))
	}
	if err := e.Close(); err != nil {
		t.Fatalf("Engine.Close: %v", err)
	}
	return fired
}

// ---- S7 ----

// rowS7: running out of descriptors and memory gives clean errors and
// leaves nothing behind: EMFILE under a lowered RLIMIT_NOFILE (for
// handles, for a file's first handle, which needs two descriptors, and
// for a new engine's ring), ENOMEM at ring setup and at arena mapping
// under RLIMIT_AS and for absurd cache sizes (in a child process), and
// 1e5 handles open at once, then closed, with the heap measured.
// Figures: emfile_refusals, handles_at_limit, handles_cycled,
// handles_open (most at once), rounds, heap_per_handle_bytes,
// heap_left_bytes and heap_growth_after_first_round_bytes (after all
// closed), enomem_refusals.
func rowS7(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	t.Run("emfile", func(t *testing.T) { s7Emfile(t, fig) })
	t.Run("handles", func(t *testing.T) { s7Handles(t, fig) })
	t.Run("enomem", func(t *testing.T) { s7Enomem(t, fig) })
}

// nofileRoom returns the RLIMIT_NOFILE under which exactly room more
// descriptors can be opened: the kernel hands out the lowest free
// number, and refuses one at or above the limit (descriptors open above
// it stay valid).
func nofileRoom(t *testing.T, room int) uint64 {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	open := map[int]bool{}
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			open[n] = true
		}
	}
	n := 0
	for free := 0; ; n++ {
		if !open[n] {
			if free == room {
				return uint64(n)
			}
			free++
		}
	}
}

func countFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// withNofile runs fn with RLIMIT_NOFILE's soft limit at cur (and the
// hard limit raised to it when needed and allowed), and restores both.
func withNofile(t *testing.T, cur uint64, fn func(got uint64)) {
	t.Helper()
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := unix.Rlimit{Cur: cur, Max: max(old.Max, cur)}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		lim = unix.Rlimit{Cur: min(cur, old.Max), Max: old.Max}
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("restoring RLIMIT_NOFILE: %v", err)
		}
	}()
	fn(lim.Cur)
}

// s7Emfile: EMFILE from Open (later handles, and a file's first handle
// whose own descriptor fits but the engine's does not), and from New,
// each an *fs.PathError (New: an error) wrapping EMFILE, with no
// descriptor left behind; handles already open keep working.
func s7Emfile(t *testing.T, fig *Figures) {
	dir := t.TempDir()
	e := newEngine(t, Options{Mode: Exclusive, CacheSize: 1 << 20})
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	writeHost(t, a, pattern(10000, 7, 1))
	writeHost(t, b, pattern(10000, 7, 2))
	var handles []*File
	const room = 24
	withNofile(t, nofileRoom(t, room), func(uint64) {
		refused := func(what string, err error) {
			t.Helper()
			wantPathErr(t, what, err, syscall.EMFILE)
			if errnoOf(err) != syscall.EMFILE {
				t.Fatalf("%s: %v, want EMFILE", what, err)
			}
			fig.Add("emfile_refusals", 1)
		}
		for i := 0; ; i++ {
			if i > 10*room {
				t.Fatalf("%d opens under a limit of %d more descriptors", i, room)
			}
			f, err := e.Open(a, os.O_RDWR, 0)
			if err != nil {
				refused("Open at the descriptor limit", err)
				break
			}
			handles = append(handles, f)
		}
		fig.Set("handles_at_limit", int64(len(handles)))
		// The handles still work.
		h := handles[0]
		if _, err := h.WriteAt([]byte("still"), 100); err != nil {
			t.Fatalf("write at the descriptor limit: %v", err)
		}
		if err := h.Sync(); err != nil {
			t.Fatalf("Sync at the descriptor limit: %v", err)
		}
		// One descriptor free: b's handle gets it, the engine's own
		// descriptor for b does not.
		if err := handles[len(handles)-1].Close(); err != nil {
			t.Fatal(err)
		}
		handles = handles[:len(handles)-1]
		n0 := countFds(t)
		_, err := e.Open(b, os.O_RDWR, 0)
		refused("Open of a new file with one descriptor free", err)
		if n := countFds(t); n != n0 {
			t.Fatalf("refused Open left %d descriptors behind", n-n0)
		}
		// Its handle fills the last descriptor: a new engine's ring has none.
		last, err := e.Open(a, os.O_RDONLY, 0)
		if err != nil {
			t.Fatalf("Open of a cached file with one descriptor free: %v", err)
		}
		handles = append(handles, last)
		e2, err := New(Options{Mode: Exclusive, CacheSize: 1 << 20})
		if e2 != nil {
			e2.Close()
			t.Fatalf("New succeeded with no descriptor free")
		}
		if !errors.Is(err, syscall.EMFILE) {
			t.Fatalf("New with no descriptor free: %v, want EMFILE", err)
		}
		fig.Add("emfile_refusals", 1)
		if err := last.Close(); err != nil {
			t.Fatal(err)
		}
		handles = handles[:len(handles)-1]
		if n := countFds(t); n != n0 {
			t.Fatalf("refused New left %d descriptors behind", n-n0)
		}
	})
	for _, h := range handles {
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// With the limit back, everything works.
	f := openFile(t, e, b, os.O_RDWR)
	if _, err := f.WriteAt([]byte("again"), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readHost(t, a)[100:105]; string(got) != "still" {
		t.Fatalf("write made at the limit lost: %q", got)
	}
	if st := e.Stats(); st.OpenHandles != 0 {
		t.Fatalf("%d handles left open", st.OpenHandles)
	}
}

// s7Handles opens and closes 1e5 handles of one file, as many at once
// as the descriptor limit allows (raised for it where permitted; each
// refusal past it must be EMFILE), measuring the heap they take and
// checking that descriptors, handles, files and the heap are given back
// after every round: the memory is bounded by the handles open, not by
// the handles ever opened.
func s7Handles(t *testing.T, fig *Figures) {
	const total = 100_000
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	writeHost(t, path, pattern(8192, 7, 3))
	e := newEngine(t, Options{Mode: Exclusive, CacheSize: 1 << 20})
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	fds0 := countFds(t)
	withNofile(t, nofileRoom(t, total+64), func(cur uint64) {
		h0 := heap()
		var afterFirst int64
		done, rounds, peak := 0, 0, 0
		start := time.Now()
		for done < total {
			handles := make([]*File, 0, min(total-done, int(cur)))
			hStart := heap()
			for len(handles) < total-done {
				f, err := e.Open(path, os.O_RDWR, 0)
				if err != nil {
					wantPathErr(t, "Open past the descriptor limit", err, syscall.EMFILE)
					fig.Add("emfile_refusals", 1)
					break
				}
				handles = append(handles, f)
			}
			n := len(handles)
			if n < min(1000, total-done) {
				t.Fatalf("only %d handles opened (limit %d)", n, cur)
			}
			peak = max(peak, n)
			perHandle := max(0, heap()-hStart) / int64(n)
			fig.Set("heap_per_handle_bytes", max(perHandle, fig.snapshot()["heap_per_handle_bytes"]))
			if perHandle > 2048 {
				t.Fatalf("%d handles take %d heap bytes each", n, perHandle)
			}
			if st := e.Stats(); st.OpenHandles != n || st.OpenFiles != 1 {
				t.Fatalf("stats: %d handles, %d files; want %d, 1", st.OpenHandles, st.OpenFiles, n)
			}
			// Every handle works: a read through a sample of them.
			p := make([]byte, 16)
			for i := 0; i < n; i += max(1, n/97) {
				if _, err := handles[i].ReadAt(p, 100); err != nil {
					t.Fatalf("handle %d: %v", i, err)
				}
			}
			for _, f := range handles {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			done += n
			rounds++
			handles = nil
			if st := e.Stats(); st.OpenHandles != 0 || st.OpenFiles != 0 {
				t.Fatalf("after closing: %d handles, %d files", st.OpenHandles, st.OpenFiles)
			}
			if fds := countFds(t); fds != fds0 {
				t.Fatalf("after closing: %d descriptors, %d before", fds, fds0)
			}
			if rounds == 1 {
				afterFirst = heap()
			}
		}
		left, growth := heap()-h0, heap()-afterFirst
		fig.Set("handles_cycled", int64(done))
		fig.Set("handles_open", int64(peak))
		fig.Set("rounds", int64(rounds))
		fig.Set("heap_left_bytes", left)
		fig.Set("heap_growth_after_first_round_bytes", growth)
		// The handle table may keep its grown storage: a few bytes per
		// handle it once held at once, nothing like the handles.
		if left > int64(peak)*64+1<<20 || growth > 1<<20 {
			t.Fatalf("after %d handles in %d rounds the heap is %d bytes larger (%d since the first round)", done, rounds, left, growth)
		}
		t.Logf("%d handles in %d rounds of at most %d (descriptor limit %d) in %v; heap %d bytes larger after, %d since the first round",
			done, rounds, peak, cur, time.Since(start).Round(time.Millisecond), left, growth)
	})
}

// s7Enomem runs TestS7EnomemChild in a child process (address space
// limits are not for a process that other tests share) and takes its
// figures. Under a limit with no address space to spare, the Go runtime
// itself may need a new mapping for its own bookkeeping (a new block of
// span records, say) while New allocates, and then dies with "fatal
// error: runtime: cannot allocate memory" before New can fail: that run
// says nothing about ringfs, and the child runs again (child_retries).
// Any other failure, and a runtime death at every attempt, fail the row.
func s7Enomem(t *testing.T, fig *Figures) {
	runtimeOOM := func(out []byte) bool {
		return bytes.Contains(out, []byte("fatal error: runtime: cannot allocate memory")) ||
			bytes.Contains(out, []byte("fatal error: runtime: out of memory"))
	}
	if runChildTestRetry(t, fig, "TestS7EnomemChild", "RINGFS_S7_CHILD=1", "enomem:", "s7-figures:", runtimeOOM) == 0 {
		t.Fatalf("child reported no figures")
	}
}

// vmSize returns the process's address space size (VmSize) in bytes.
func vmSize(t *testing.T) uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmSize:"); ok {
			if n, err := strconv.ParseUint(strings.Fields(rest)[0], 10, 64); err == nil {
				return n << 10
			}
		}
	}
	t.Fatal("no VmSize in /proc/self/status")
	return 0
}

// TestS7EnomemChild is the child process of row S7 (it skips unless run
// by it): New under an RLIMIT_AS that leaves no room for the ring's
// mappings, then none for the cache's arena, and New with caches larger
// than the machine's memory, each failing with ENOMEM and leaving no
// descriptor, ring or arena mapped.
func TestS7EnomemChild(t *testing.T) {
	if os.Getenv("RINGFS_S7_CHILD") == "" {
		t.Skip("run by reliability row S7")
	}
	checkLeaks(t)
	// Let the heap grow now, so that the calls below need no new address
	// space of the runtime's while the limit is low.
	debug.SetGCPercent(-1)
	reserve := make([]byte, 64<<20)
	for i := 0; i < len(reserve); i += 4096 {
		reserve[i] = 1
	}
	reserve = nil
	runtime.GC()
	refusals := 0
	// limited runs fn under an RLIMIT_AS of the current address space
	// plus margin.
	limited := func(margin uint64, fn func() error) error {
		var old unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_AS, &old); err != nil {
			t.Fatal(err)
		}
		lim := unix.Rlimit{Cur: vmSize(t) + margin, Max: old.Max}
		if err := unix.Setrlimit(unix.RLIMIT_AS, &lim); err != nil {
			t.Fatal(err)
		}
		defer unix.Setrlimit(unix.RLIMIT_AS, &old)
		return fn()
	}
	check := func(what string, err error, prefix string, start time.Time) {
		t.Helper()
		if !errors.Is(err, syscall.ENOMEM) || !strings.HasPrefix(err.Error(), prefix) {
			t.Fatalf("%s: %v, want an error wrapping ENOMEM", what, err)
		}
		refusals++
		t.Logf("enomem: %s: %v (%v)", what, err, time.Since(start).Round(time.Microsecond))
	}
	enomem := func(what string, margin uint64, opts Options) {
		t.Helper()
		start := time.Now()
		err := limited(margin, func() error {
			e, err := New(opts)
			if e != nil {
				e.Close()
				t.Fatalf("%s: New succeeded", what)
			}
			return err
		})
		check(what, err, "engine: ", start)
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	ram := int64(si.Totalram) * int64(si.Unit)
	enomem("ring setup with no address space left", 0, Options{CacheSize: -1, Backend: "uring"})
	enomem("ring setup with no address space left, automatic backend", 0, Options{Mode: Shared})
	enomem("cache arena with 1 MiB of address space left", 1<<20, Options{CacheSize: 256 << 20})
	// Caches larger than the machine's memory: refused at once. The
	// address space limits are a safety net only: they leave room for
	// the arena, not for the bookkeeping of its frames, so that a
	// regression fails here quickly instead of exhausting the machine.
	enomem("cache of 1 TiB", 1<<40+2<<30, Options{CacheSize: 1 << 40})
	enomem("cache of the largest size accepted before", 8<<40+2<<30, Options{CacheSize: (1<<31 - 1) * 4096})
	// Twice the memory: its bookkeeping would fit, and registering the
	// arena would pin it all, so the cache is asked for without that.
	start := time.Now()
	err := limited(uint64(2*ram)+2<<30, func() error {
		be, err := uring.New(uring.Options{Backend: "psync"})
		if err != nil {
			t.Fatal(err)
		}
		defer be.Close()
		c, err := pagecache.New(pagecache.Options{Capacity: 2 * ram, Backend: be, NoRegister: true})
		if c != nil {
			c.Close()
			t.Fatalf("a cache of twice the memory was made")
		}
		return err
	})
	check("cache of twice the memory", err, "pagecache: ", start)
	t.Logf("s7-figures: enomem_refusals=%d", refusals)
}
