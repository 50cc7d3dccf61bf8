//go:build linux

package hostmap

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	kib = 1 << 10
	mib = 1 << 20
)

// pattern is the byte newFile writes at off.
func pattern(off int64) byte { return byte(off*7 + off>>12 + 1) }

// newFile creates a file of size bytes holding pattern and opens it with
// flag; the file is closed when the test ends.
func newFile(t testing.TB, size int64, flag int) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	buf := make([]byte, min(size, 1*mib))
	w, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		for i := range n {
			buf[i] = pattern(off + i)
		}
		if _, err := w.WriteAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// newMapper returns a Mapper of f, closed (if still open) when the test
// ends, after checking that it left nothing mapped.
func newMapper(t testing.TB, f *os.File) *Mapper {
	t.Helper()
	m := NewMapper(int(f.Fd()))
	t.Cleanup(func() {
		m.Close()
		if s := m.Stats(); s.MappingsOpen == 0 && s.MappedBytes != 0 {
			t.Errorf("after Close: %d bytes still mapped", s.MappedBytes)
		}
	})
	return m
}

// vma is one line of /proc/self/maps.
type vma struct {
	start, end uintptr
	perms      string
	offset     int64
	inode      uint64
}

// fileVMAs returns the mappings of f's inode in this process.
func fileVMAs(t testing.TB, f *os.File) []vma {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return vmasOf(t, st.Ino)
}

func vmasOf(t testing.TB, ino uint64) []vma {
	t.Helper()
	pm, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	var out []vma
	sc := bufio.NewScanner(pm)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		in, _ := strconv.ParseUint(fields[4], 10, 64)
		if in != ino {
			continue
		}
		addrs := strings.SplitN(fields[0], "-", 2)
		s, _ := strconv.ParseUint(addrs[0], 16, 64)
		e, _ := strconv.ParseUint(addrs[1], 16, 64)
		o, _ := strconv.ParseInt(fields[2], 16, 64)
		out = append(out, vma{uintptr(s), uintptr(e), fields[1], o, in})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// mappedAt returns the permissions of the VMA of f covering
// [addr, addr+size) at file offset off, or "" if there is none.
func mappedAt(t testing.TB, f *os.File, addr uintptr, size uintptr, off int64) string {
	t.Helper()
	for _, v := range fileVMAs(t, f) {
		if v.start <= addr && addr+size <= v.end && v.offset+int64(addr-v.start) == off {
			return v.perms
		}
	}
	return ""
}

// mappedBytesOf returns how many bytes of f are mapped in this process.
func mappedBytesOf(t testing.TB, f *os.File) int64 {
	var n int64
	for _, v := range fileVMAs(t, f) {
		n += int64(v.end - v.start)
	}
	return n
}

// counts returns chunk ci's counts, and whether it has a record.
func (m *Mapper) counts(ci int64) (refs, user, pins int32, ok bool) {
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	c := m.chunks[ci]
	if c == nil {
		return 0, 0, 0, false
	}
	return c.refs, c.userRefs, c.pins, true
}

// refTable returns every chunk's IncRef count.
func (m *Mapper) refTable() map[int64]int32 {
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	out := make(map[int64]int32)
	for ci, c := range m.chunks {
		out[ci] = c.refs
	}
	return out
}

// userTable returns every chunk's Mapping count.
func (m *Mapper) userTable() map[int64]int32 {
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	out := make(map[int64]int32)
	for ci, c := range m.chunks {
		out[ci] = c.userRefs
	}
	return out
}

// chunkAddr returns chunk ci's address, or 0 if it is not mapped.
func (m *Mapper) chunkAddr(ci int64) uintptr {
	m.mapsMu.RLock()
	defer m.mapsMu.RUnlock()
	if c := m.chunks[ci]; c != nil {
		return uintptr(c.base)
	}
	return 0
}

// checkInvariants checks the bookkeeping at one instant.
func (m *Mapper) checkInvariants() error {
	m.refsMu.Lock()
	defer m.refsMu.Unlock()
	m.mapsMu.RLock()
	defer m.mapsMu.RUnlock()
	var refs, mapped int64
	for ci, c := range m.chunks {
		if c.refs < 0 || c.userRefs < 0 || c.pins < 0 {
			return fmt.Errorf("chunk %d: negative count %d/%d/%d", ci, c.refs, c.userRefs, c.pins)
		}
		if c.idle() {
			return fmt.Errorf("chunk %d: idle but recorded", ci)
		}
		if max := ChunkSize / pageSize; int64(c.refs) > max*1000 || int64(c.userRefs) > max*1000 {
			return fmt.Errorf("chunk %d: implausible counts %d/%d", ci, c.refs, c.userRefs)
		}
		refs += int64(c.refs) + int64(c.userRefs)
		if c.base != nil {
			mapped++
		}
	}
	if got := m.stats.liveRefs.Load(); got != refs {
		return fmt.Errorf("live_refs %d, counts sum to %d", got, refs)
	}
	if got := m.stats.chunksLive.Load(); got != mapped {
		return fmt.Errorf("chunks_live %d, %d chunks mapped", got, mapped)
	}
	return nil
}

// addrOf returns the address of b[0].
func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// wantErrno fails the test unless err is errno.
func wantErrno(t testing.TB, what string, err error, errno syscall.Errno) {
	t.Helper()
	if errno == 0 {
		if err != nil {
			t.Errorf("%s: %v, want success", what, err)
		}
		return
	}
	if e, ok := err.(syscall.Errno); !ok || e != errno {
		t.Errorf("%s: %v (%T), want %v", what, err, err, errno)
	}
}

func needPage4K(t testing.TB) {
	if pageSize != 4096 {
		t.Skipf("tables assume 4 KiB pages, host has %d", pageSize)
	}
}
