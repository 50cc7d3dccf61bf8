//go:build linux

package uring

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Every operation is run through each backend on one file and as the
// equivalent syscall on a twin file with the same content; the results
// (count and errno), the bytes read and the files afterwards (content,
// size, allocated blocks) must be identical.

var opFileSizes = []int64{0, 1, 4095, 4096, 1<<20 + 1}

// rwPositions places a transfer of n bytes relative to the end of a file
// of the given size.
var rwPositions = []struct {
	name string
	off  func(size int64, n int) int64
}{
	{"start", func(int64, int) int64 { return 0 }},
	{"inside", func(size int64, n int) int64 { return max(0, size/2-int64(n)/2) }},
	{"at_eof", func(size int64, _ int) int64 { return size }},
	{"across_eof", func(size int64, n int) int64 { return max(0, size-int64(n)/2) }},
	{"past_eof", func(size int64, _ int) int64 { return size + 5000 }},
}

var rwLengths = []int{1, 4096, 1<<20 + 1}

// dataPool is random data to write, generated once.
var dataPool = sync.OnceValue(func() []byte { return randomBytes(42, 3<<20) })

// fillPool is the filler read buffers start with, so that bytes a read
// does not touch are compared too.
var fillPool = sync.OnceValue(func() []byte { return bytes.Repeat([]byte{0xee}, 2<<20) })

// scratch returns two buffers for one case; reusing them keeps the test
// quick under the race detector, which pays for every allocation.
var scratch = sync.OnceValues(func() ([]byte, []byte) { return make([]byte, 2<<20), make([]byte, 2<<20) })

// twin is a file under test and its reference copy.
type twin struct {
	a, b    *os.File
	content []byte
}

func newTwin(t *testing.T, size int64, seed uint64) *twin {
	content := randomBytes(seed, int(size))
	return &twin{
		a:       tempFile(t, "a", content, os.O_RDWR),
		b:       tempFile(t, "b", content, os.O_RDWR),
		content: content,
	}
}

// reset gives both files the original content again.
func (tw *twin) reset(t *testing.T) {
	for _, f := range []*os.File{tw.a, tw.b} {
		if err := f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(tw.content, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// compare fails t unless both files have the same bytes and shape.
func (tw *twin) compare(t *testing.T, checkBlocks bool) {
	t.Helper()
	ba, bb := fileBytes(t, tw.a), fileBytes(t, tw.b)
	if !bytes.Equal(ba, bb) {
		t.Fatalf("file content differs from the syscall twin: %s", firstDiff(ba, bb))
	}
	sa, sb := shapeOf(t, tw.a), shapeOf(t, tw.b)
	if sa.size != sb.size || (checkBlocks && sa.blocks != sb.blocks) {
		t.Fatalf("file shape %+v, syscall twin %+v", sa, sb)
	}
}

// refRW runs a read or write as one syscall on fd, as a program without
// ringfs would.
func refRW(op Op, fd int, buf []byte, vecs [][]byte, off int64, flags int) (int, syscall.Errno) {
	var n int
	var err error
	switch op {
	case OpRead, OpReadFixed:
		n, err = unix.Preadv2(fd, [][]byte{buf}, off, flags)
	case OpWrite, OpWriteFixed:
		n, err = unix.Pwritev2(fd, [][]byte{buf}, off, flags)
	case OpReadv:
		n, err = unix.Preadv2(fd, vecs, off, flags)
	case OpWritev:
		n, err = unix.Pwritev2(fd, vecs, off, flags)
	}
	if err != nil {
		return 0, errnoOfErr(err)
	}
	return n, 0
}

// splitVecs cuts b into three vectors of uneven length plus an empty one.
func splitVecs(b []byte) [][]byte {
	a := len(b) / 3
	c := 2 * len(b) / 3
	return [][]byte{b[:a], b[a:a], b[a:c], b[c:]}
}

func TestOpsMatchSyscalls_ReadWrite(t *testing.T) {
	ops := []Op{OpRead, OpReadv, OpReadFixed, OpWrite, OpWritev, OpWriteFixed}
	total := 0
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			be := openBackend(t, name, Options{})
			// Registered memory must stay put: mmap it, off the Go heap.
			region := mmapBuffer(t, 4<<20)
			if err := be.RegisterBuffers([][]byte{region}); err != nil {
				t.Fatalf("RegisterBuffers: %v", err)
			}
			for si, size := range opFileSizes {
				tw := newTwin(t, size, uint64(si+1))
				for _, op := range ops {
					for _, pos := range rwPositions {
						for _, n := range rwLengths {
							name := fmt.Sprintf("size=%d/%s/%s/len=%d", size, op, pos.name, n)
							off := pos.off(size, n)
							runRWCase(t, name, be, tw, region, op, off, n)
							total++
						}
					}
				}
			}
		})
	}
	t.Logf("%d read/write cases matched the syscall results byte for byte", total)
}

func runRWCase(t *testing.T, name string, be Backend, tw *twin, region []byte, op Op, off int64, n int) {
	scratchA, scratchB := scratch()
	t.Helper()
	if op.IsWrite() {
		tw.reset(t)
	}
	// Buffers: a heap buffer (or a slice of the registered region, at an
	// unaligned address, for the fixed ops) for the backend and a heap
	// buffer for the syscall; writes carry the same data, reads start
	// from the same filler so untouched bytes compare too.
	var bufA []byte
	if op == OpReadFixed || op == OpWriteFixed {
		bufA = region[17 : 17+n]
	} else {
		bufA = scratchA[:n]
	}
	bufB := scratchB[:n]
	if op.IsWrite() {
		k := int(off*31+int64(n)) % (len(dataPool()) - n)
		copy(bufA, dataPool()[k:k+n])
		copy(bufB, dataPool()[k:k+n])
	} else {
		copy(bufA, fillPool()[:n])
		copy(bufB, fillPool()[:n])
	}
	req := Request{Op: op, Fd: int32(tw.a.Fd()), Off: off}
	var vecsB [][]byte
	switch op {
	case OpReadv, OpWritev:
		req.Vecs = splitVecs(bufA)
		vecsB = splitVecs(bufB)
	default:
		req.Buf = bufA
	}
	reqs := []Request{req}
	if err := be.Submit(reqs); err != nil {
		t.Fatalf("%s: Submit: %v", name, err)
	}
	wantN, wantErrno := refRW(op, int(tw.b.Fd()), bufB, vecsB, off, 0)
	got := reqs[0]
	if got.N != wantN || errnoOfErr(got.Err) != wantErrno {
		t.Fatalf("%s: got (%d, %v), syscall gave (%d, %v)", name, got.N, got.Err, wantN, wantErrno)
	}
	if !bytes.Equal(bufA, bufB) {
		t.Fatalf("%s: buffer differs from the syscall's: %s", name, firstDiff(bufA, bufB))
	}
	if op.IsWrite() {
		tw.compare(t, false)
	}
}

// metaCase is one non-transfer operation and its syscall equivalent.
type metaCase struct {
	name   string
	req    func(size int64) Request
	ref    func(fd int, size int64) error
	blocks bool // compare allocated blocks too
}

var metaCases = []metaCase{
	{"nop", func(int64) Request { return Request{Op: OpNop} },
		func(int, int64) error { return nil }, false},
	{"cancel_idle", func(int64) Request { return Request{Op: OpCancel} },
		func(int, int64) error { return nil }, false},
	{"fsync", func(int64) Request { return Request{Op: OpFsync} },
		func(fd int, _ int64) error { return unix.Fsync(fd) }, false},
	{"fdatasync", func(int64) Request { return Request{Op: OpFsync, Flags: FsyncDatasync} },
		func(fd int, _ int64) error { return unix.Fdatasync(fd) }, false},
	// A ranged fsync has no syscall of its own; it must succeed like fsync.
	{"fsync_ranged", func(int64) Request { return Request{Op: OpFsync, Off: 0, Len: 4096} },
		func(fd int, _ int64) error { return unix.Fsync(fd) }, false},
	{"fdatasync_ranged", func(size int64) Request {
		return Request{Op: OpFsync, Flags: FsyncDatasync, Off: size / 2, Len: 8192}
	}, func(fd int, _ int64) error { return unix.Fdatasync(fd) }, false},
	{"fallocate_grow", func(size int64) Request { return Request{Op: OpFallocate, Off: size, Len: 10000} },
		func(fd int, size int64) error { return unix.Fallocate(fd, 0, size, 10000) }, true},
	{"fallocate_inside", func(size int64) Request { return Request{Op: OpFallocate, Off: 0, Len: max(1, size)} },
		func(fd int, size int64) error { return unix.Fallocate(fd, 0, 0, max(1, size)) }, true},
	{"fallocate_past_eof", func(size int64) Request { return Request{Op: OpFallocate, Off: size + 1<<20, Len: 4096} },
		func(fd int, size int64) error { return unix.Fallocate(fd, 0, size+1<<20, 4096) }, true},
	{"fallocate_keep_size", func(size int64) Request {
		return Request{Op: OpFallocate, Flags: unix.FALLOC_FL_KEEP_SIZE, Off: size, Len: 1 << 20}
	}, func(fd int, size int64) error { return unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, size, 1<<20) }, true},
	{"punch_hole", func(int64) Request {
		return Request{Op: OpFallocate, Flags: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, Off: 4096, Len: 8192}
	}, func(fd int, _ int64) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192)
	}, true},
	{"punch_hole_unaligned", func(size int64) Request {
		return Request{Op: OpFallocate, Flags: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, Off: 1, Len: max(1, size-2)}
	}, func(fd int, size int64) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 1, max(1, size-2))
	}, true},
	{"punch_hole_without_keep_size", func(int64) Request {
		return Request{Op: OpFallocate, Flags: unix.FALLOC_FL_PUNCH_HOLE, Off: 0, Len: 4096}
	}, func(fd int, _ int64) error { return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE, 0, 4096) }, true},
	{"zero_range", func(int64) Request {
		return Request{Op: OpFallocate, Flags: unix.FALLOC_FL_ZERO_RANGE, Off: 100, Len: 5000}
	}, func(fd int, _ int64) error { return unix.Fallocate(fd, unix.FALLOC_FL_ZERO_RANGE, 100, 5000) }, true},
	{"fallocate_len0", func(int64) Request { return Request{Op: OpFallocate, Off: 0, Len: 0} },
		func(fd int, _ int64) error { return unix.Fallocate(fd, 0, 0, 0) }, true},
	{"sync_file_range_write", func(int64) Request {
		return Request{Op: OpSyncFileRange, Flags: unix.SYNC_FILE_RANGE_WRITE, Off: 0, Len: 4096}
	}, func(fd int, _ int64) error { return unix.SyncFileRange(fd, 0, 4096, unix.SYNC_FILE_RANGE_WRITE) }, false},
	{"sync_file_range_wait_all_to_eof", func(int64) Request {
		return Request{Op: OpSyncFileRange, Flags: 7, Off: 0, Len: 0}
	}, func(fd int, _ int64) error { return unix.SyncFileRange(fd, 0, 0, 7) }, false},
	{"sync_file_range_bad_flags", func(int64) Request {
		return Request{Op: OpSyncFileRange, Flags: 8, Off: 0, Len: 4096}
	}, func(fd int, _ int64) error { return unix.SyncFileRange(fd, 0, 4096, 8) }, false},
}

func TestOpsMatchSyscalls_Meta(t *testing.T) {
	total := 0
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			be := openBackend(t, name, Options{})
			for si, size := range opFileSizes {
				tw := newTwin(t, size, uint64(si+100))
				for _, mc := range metaCases {
					label := fmt.Sprintf("size=%d/%s", size, mc.name)
					tw.reset(t)
					req := mc.req(size)
					if req.Op != OpNop {
						req.Fd = int32(tw.a.Fd())
					}
					reqs := []Request{req}
					if err := be.Submit(reqs); err != nil {
						t.Fatalf("%s: Submit: %v", label, err)
					}
					want := errnoOfErr(mc.ref(int(tw.b.Fd()), size))
					if got := errnoOfErr(reqs[0].Err); got != want || reqs[0].N != 0 {
						t.Fatalf("%s: got (%d, %v), syscall gave (0, %v)", label, reqs[0].N, reqs[0].Err, want)
					}
					tw.compare(t, mc.blocks)
					total++
				}
			}
		})
	}
	t.Logf("%d fsync/fallocate/sync_file_range/nop/cancel cases matched the syscall results", total)
}

// TestErrnos checks errno cases against what the syscall itself says.
func TestErrnos(t *testing.T) {
	const badFd = 999_999
	type errCase struct {
		name string
		req  func(rw, ro, wo int32, buf []byte) Request
		// want is the errno; ref, when set, computes it with a syscall
		// and the two must agree.
		want syscall.Errno
		ref  func(rw, ro, wo int, buf []byte) error
		// kernelOnly cases check the kernel's registered-buffer checks,
		// which psync does not have.
		kernelOnly bool
	}
	cases := []errCase{
		{name: "read_bad_fd", want: syscall.EBADF,
			req: func(_, _, _ int32, b []byte) Request { return Request{Op: OpRead, Fd: badFd, Buf: b} },
			ref: func(_, _, _ int, b []byte) error { _, err := unix.Pread(badFd, b, 0); return err }},
		{name: "write_bad_fd", want: syscall.EBADF,
			req: func(_, _, _ int32, b []byte) Request { return Request{Op: OpWrite, Fd: badFd, Buf: b} },
			ref: func(_, _, _ int, b []byte) error { _, err := unix.Pwrite(badFd, b, 0); return err }},
		{name: "fsync_bad_fd", want: syscall.EBADF,
			req: func(_, _, _ int32, b []byte) Request { return Request{Op: OpFsync, Fd: badFd} },
			ref: func(_, _, _ int, b []byte) error { return unix.Fsync(badFd) }},
		{name: "negative_fd", want: syscall.EBADF,
			req: func(_, _, _ int32, b []byte) Request { return Request{Op: OpRead, Fd: -1, Buf: b} },
			ref: func(_, _, _ int, b []byte) error { _, err := unix.Pread(-1, b, 0); return err }},
		{name: "read_negative_offset", want: syscall.EINVAL,
			req: func(rw, _, _ int32, b []byte) Request { return Request{Op: OpRead, Fd: rw, Buf: b, Off: -1} },
			ref: func(rw, _, _ int, b []byte) error { _, err := unix.Pread(rw, b, -1); return err }},
		{name: "write_negative_offset", want: syscall.EINVAL,
			req: func(rw, _, _ int32, b []byte) Request { return Request{Op: OpWrite, Fd: rw, Buf: b, Off: -4096} },
			ref: func(rw, _, _ int, b []byte) error { _, err := unix.Pwrite(rw, b, -4096); return err }},
		{name: "readv_negative_offset", want: syscall.EINVAL,
			req: func(rw, _, _ int32, b []byte) Request {
				return Request{Op: OpReadv, Fd: rw, Vecs: [][]byte{b}, Off: -1}
			}},
		{name: "fallocate_negative_offset", want: syscall.EINVAL,
			req: func(rw, _, _ int32, b []byte) Request { return Request{Op: OpFallocate, Fd: rw, Off: -1, Len: 1} },
			ref: func(rw, _, _ int, b []byte) error { return unix.Fallocate(rw, 0, -1, 1) }},
		{name: "offset_overflow", want: syscall.EINVAL,
			req: func(rw, _, _ int32, b []byte) Request { return Request{Op: OpRead, Fd: rw, Buf: b, Off: 1<<63 - 2} }},
		{name: "fallocate_range_overflow", want: syscall.EFBIG,
			req: func(rw, _, _ int32, b []byte) Request {
				return Request{Op: OpFallocate, Fd: rw, Off: 1 << 62, Len: 1 << 62}
			},
			ref: func(rw, _, _ int, b []byte) error { return unix.Fallocate(rw, 0, 1<<62, 1<<62) }},
		{name: "unknown_op", want: syscall.EINVAL,
			req: func(rw, _, _ int32, b []byte) Request { return Request{Op: Op(200), Fd: rw} }},
		{name: "write_on_read_only", want: syscall.EBADF,
			req: func(_, ro, _ int32, b []byte) Request { return Request{Op: OpWrite, Fd: ro, Buf: b} },
			ref: func(_, ro, _ int, b []byte) error { _, err := unix.Pwrite(ro, b, 0); return err }},
		{name: "writev_on_read_only", want: syscall.EBADF,
			req: func(_, ro, _ int32, b []byte) Request { return Request{Op: OpWritev, Fd: ro, Vecs: [][]byte{b}} }},
		{name: "read_on_write_only", want: syscall.EBADF,
			req: func(_, _, wo int32, b []byte) Request { return Request{Op: OpRead, Fd: wo, Buf: b} },
			ref: func(_, _, wo int, b []byte) error { _, err := unix.Pread(wo, b, 0); return err }},
		{name: "fallocate_on_read_only", want: syscall.EBADF,
			req: func(_, ro, _ int32, b []byte) Request { return Request{Op: OpFallocate, Fd: ro, Len: 4096} },
			ref: func(_, ro, _ int, b []byte) error { return unix.Fallocate(ro, 0, 0, 4096) }},
		{name: "fixed_index_out_of_range", want: syscall.EBADF,
			req: func(_, _, _ int32, b []byte) Request { return Request{Op: OpRead, Fixed: true, Fd: 7, Buf: b} }},
		{name: "fixed_index_hole", want: syscall.EBADF,
			req: func(_, _, _ int32, b []byte) Request { return Request{Op: OpRead, Fixed: true, Fd: 1, Buf: b} }},
		{name: "fixed_fsync_out_of_range", want: syscall.EBADF,
			req: func(_, _, _ int32, b []byte) Request { return Request{Op: OpFsync, Fixed: true, Fd: 100} }},
		{name: "read_fixed_buffer_outside_region", want: syscall.EFAULT, kernelOnly: true,
			req: func(rw, _, _ int32, b []byte) Request { return Request{Op: OpReadFixed, Fd: rw, Buf: b} }},
		{name: "read_fixed_bad_buffer_index", want: syscall.EFAULT, kernelOnly: true,
			req: func(rw, _, _ int32, b []byte) Request { return Request{Op: OpReadFixed, Fd: rw, Buf: b, BufIndex: 9} }},
	}
	content := randomBytes(7, 8192)
	checked := 0
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			be := openBackend(t, name, Options{})
			rw := tempFile(t, "rw", content, os.O_RDWR)
			ro := tempFile(t, "ro", content, os.O_RDONLY)
			wo := tempFile(t, "wo", content, os.O_WRONLY)
			region := mmapBuffer(t, 1<<20)
			if err := be.RegisterBuffers([][]byte{region}); err != nil {
				t.Fatal(err)
			}
			// Index 0 is rw, index 1 is a hole; 2 entries in all.
			if err := be.RegisterFiles([]int32{int32(rw.Fd()), -1}); err != nil {
				t.Fatal(err)
			}
			for _, c := range cases {
				if c.kernelOnly && name == BackendPsync {
					continue
				}
				buf := make([]byte, 4096)
				reqs := []Request{c.req(int32(rw.Fd()), int32(ro.Fd()), int32(wo.Fd()), buf)}
				if err := be.Submit(reqs); err != nil {
					t.Fatalf("%s: Submit: %v", c.name, err)
				}
				if got := errnoOfErr(reqs[0].Err); got != c.want || reqs[0].N != 0 {
					t.Errorf("%s: got (%d, %v), want (0, %v)", c.name, reqs[0].N, reqs[0].Err, c.want)
				}
				if c.ref != nil {
					if ref := errnoOfErr(c.ref(int(rw.Fd()), int(ro.Fd()), int(wo.Fd()), buf)); ref != c.want {
						t.Errorf("%s: the syscall says %v, the table %v", c.name, ref, c.want)
					}
				}
				checked++
			}
			for _, f := range []*os.File{rw, ro, wo} {
				if got := fileBytes(t, f); !bytes.Equal(got, content) {
					t.Fatalf("%s changed by failing requests: %s", f.Name(), firstDiff(got, content))
				}
			}
			// The valid fixed index works.
			buf := make([]byte, 4096)
			reqs := []Request{{Op: OpRead, Fixed: true, Fd: 0, Buf: buf, Off: 4096}}
			if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || reqs[0].N != 4096 || !bytes.Equal(buf, content[4096:]) {
				t.Fatalf("fixed index 0: Submit %v, (%d, %v)", err, reqs[0].N, reqs[0].Err)
			}
		})
	}
	t.Logf("%d errno cases matched, files untouched", checked)
}
