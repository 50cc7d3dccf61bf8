//go:build linux

package uring

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// mountType returns the filesystem type /proc/self/mounts gives for the
// mount that holds path (the longest mount point that is a prefix of it),
// or "" when none does.
func mountType(t *testing.T, path string) string {
	t.Helper()
	path, err := filepath.EvalSymlinks(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	best, typ := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		mp := strings.ReplaceAll(fields[1], `\040`, " ")
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/")) && len(mp) >= len(best) {
			best, typ = mp, fields[2]
		}
	}
	return typ
}

// TestInlineFile: InlineFile answers true exactly for files on tmpfs and
// ramfs, as /proc/self/mounts names their filesystems, and false for
// what fstatfs cannot answer for.
func TestInlineFile(t *testing.T) {
	type row struct {
		name string
		fd   int
		want bool
	}
	var rows []row
	dirs := []string{t.TempDir()}
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		dirs = append(dirs, "/dev/shm")
	}
	for _, dir := range dirs {
		f, err := os.CreateTemp(dir, "inline-")
		if err != nil {
			t.Logf("%s: %v", dir, err)
			continue
		}
		t.Cleanup(func() { f.Close(); os.Remove(f.Name()) })
		typ := mountType(t, f.Name())
		rows = append(rows, row{"file on " + typ + " (" + dir + ")", int(f.Fd()), typ == "tmpfs" || typ == "ramfs"})
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	rows = append(rows, row{"pipe", int(pr.Fd()), false}, row{"fd -1", -1, false})
	for _, r := range rows {
		if got := InlineFile(r.fd); got != r.want {
			t.Errorf("%s: InlineFile = %v, want %v", r.name, got, r.want)
		}
	}
	t.Logf("%d descriptors", len(rows))
}

// TestInlineRequests: requests marked Inline give the results they give
// through the ring, in batches of only such requests, mixed batches and
// lone Do calls, on every backend. A ring runs them as plain syscalls
// (Stats.Inline) and submits the others (Stats.SQEs); requests on
// registered files go to the ring even when marked; a closed backend
// fails them all with ErrClosed.
func TestInlineRequests(t *testing.T) {
	content := randomBytes(11, 64<<10)
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			be := openBackend(t, name, Options{})
			f := tempFile(t, "f", content, syscall.O_RDWR)
			fd := int32(f.Fd())
			if err := be.RegisterFiles([]int32{fd}); err != nil {
				t.Fatal(err)
			}
			cases := []struct {
				name   string
				inline []bool // one read each, at i*4 KiB
				fixed  bool
			}{
				{"all inline", []bool{true, true, true}, false},
				{"none inline", []bool{false, false}, false},
				{"mixed", []bool{true, false, true, false, false}, false},
				{"inline on a registered file", []bool{true, true}, true},
			}
			for _, c := range cases {
				reqs := make([]Request, len(c.inline))
				bufs := make([][]byte, len(c.inline))
				wantInline := 0
				for i, in := range c.inline {
					bufs[i] = make([]byte, 4096)
					reqs[i] = Request{Op: OpRead, Fd: fd, Off: int64(i) * 4096, Buf: bufs[i], Inline: in}
					if c.fixed {
						reqs[i].Fd, reqs[i].Fixed = 0, true
					} else if in {
						wantInline++
					}
				}
				before := be.Stats()
				if err := be.Submit(reqs); err != nil {
					t.Fatalf("%s: %v", c.name, err)
				}
				d := be.Stats().Sub(before)
				for i := range reqs {
					want := content[i*4096 : (i+1)*4096]
					if reqs[i].Err != nil || reqs[i].N != 4096 || !bytes.Equal(bufs[i], want) {
						t.Errorf("%s: read %d: %d, %v (bytes equal: %v)", c.name, i, reqs[i].N, reqs[i].Err, bytes.Equal(bufs[i], want))
					}
				}
				if name == BackendUring {
					if int(d.Inline) != wantInline || int(d.SQEs) != len(reqs)-wantInline {
						t.Errorf("%s: %d inline and %d SQEs, want %d and %d", c.name, d.Inline, d.SQEs, wantInline, len(reqs)-wantInline)
					}
				}
			}
			// Inline requests allocate nothing, vectored ones included
			// (iouringgo ignores Inline and allocates per request).
			vbuf := [][]byte{make([]byte, 100), make([]byte, 200)}
			batch := []Request{{Op: OpRead, Fd: fd, Buf: make([]byte, 512), Inline: true}, {Op: OpReadv, Fd: fd, Off: 4096, Vecs: vbuf, Inline: true}}
			if allocs := testing.AllocsPerRun(100, func() { be.Submit(batch) }); allocs != 0 && name != BackendIouringgo {
				t.Errorf("inline Submit: %.1f allocations, want 0", allocs)
			}
			if allocs := testing.AllocsPerRun(100, func() { Do(be, batch[1]) }); allocs != 0 && name != BackendIouringgo {
				t.Errorf("vectored Do: %.1f allocations, want 0", allocs)
			}
			// A lone inline write through Submit and through Do.
			p := bytes.Repeat([]byte{0xa5}, 4096)
			one := []Request{{Op: OpWrite, Fd: fd, Off: 8192, Buf: p, Inline: true}}
			if err := be.Submit(one); err != nil || one[0].Err != nil || one[0].N != 4096 {
				t.Fatalf("inline write: %v, %d, %v", err, one[0].N, one[0].Err)
			}
			if n, err := Do(be, Request{Op: OpWrite, Fd: fd, Off: 12288, Buf: p, Inline: true}); err != nil || n != 4096 {
				t.Fatalf("inline Do write: %d, %v", n, err)
			}
			got := fileBytes(t, f)
			if !bytes.Equal(got[8192:16384], bytes.Repeat([]byte{0xa5}, 8192)) || !bytes.Equal(got[:8192], content[:8192]) {
				t.Errorf("file after inline writes differs")
			}
			if err := be.Close(); err != nil {
				t.Fatal(err)
			}
			closed := []Request{{Op: OpRead, Fd: fd, Buf: make([]byte, 10), Inline: true}}
			if err := be.Submit(closed); !errors.Is(err, ErrClosed) || !errors.Is(closed[0].Err, ErrClosed) {
				t.Errorf("inline Submit on a closed backend: %v, %v; want ErrClosed", err, closed[0].Err)
			}
		})
	}
}

// TestInlineRequestsOnBreakingRing: when the ring breaks in the middle of
// a Submit that mixes inline requests with ring ones (more than the ring
// has slots, so that it queues them in rounds), every request ends either
// complete or with an error: none is left looking like a read at end of
// file (N 0, Err nil).
func TestInlineRequestsOnBreakingRing(t *testing.T) {
	content := randomBytes(14, 1<<20)
	f := tempFile(t, "f", content, syscall.O_RDONLY)
	r, err := newRing(Options{Entries: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Submit([]Request{{Op: OpNop}}); err != nil {
		t.Fatal(err)
	}
	r.testDrop.Store(1)
	reqs := make([]Request, 40)
	for i := range reqs {
		reqs[i] = Request{Op: OpRead, Fd: int32(f.Fd()), Off: int64(i) * 4096, Buf: make([]byte, 4096), Inline: i%3 == 0}
	}
	if err := r.Submit(reqs); !errors.Is(err, ErrBroken) {
		t.Fatalf("Submit returned %v, want ErrBroken", err)
	}
	var done, failed int
	for i, q := range reqs {
		switch {
		case q.Err == nil && q.N == 4096 && bytes.Equal(q.Buf, content[q.Off:q.Off+4096]):
			done++
		case errors.Is(q.Err, ErrBroken):
			failed++
		default:
			t.Errorf("request %d (inline %v): %d, %v", i, q.Inline, q.N, q.Err)
		}
	}
	t.Logf("%d complete, %d failed with ErrBroken", done, failed)
}

// TestUnsupportedOpcodeRunsInline: a request whose opcode the kernel lacks
// runs as a plain syscall in the same Submit as the ring's requests, with
// its own result (the ring on an older kernel: FTRUNCATE came in 6.9).
func TestUnsupportedOpcodeRunsInline(t *testing.T) {
	content := randomBytes(15, 64<<10)
	f := tempFile(t, "f", content, syscall.O_RDWR)
	r, err := newRing(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.probe.Supported[kernelOp[OpFtruncate]] = false
	buf := make([]byte, 4096)
	reqs := []Request{{Op: OpRead, Fd: int32(f.Fd()), Buf: buf}, {Op: OpFtruncate, Fd: int32(f.Fd()), Off: 8192}}
	before := r.Stats()
	if err := r.Submit(reqs); err != nil {
		t.Fatal(err)
	}
	d := r.Stats().Sub(before)
	if reqs[0].Err != nil || reqs[0].N != 4096 || !bytes.Equal(buf, content[:4096]) || reqs[1].Err != nil {
		t.Fatalf("read: %d, %v; ftruncate: %v", reqs[0].N, reqs[0].Err, reqs[1].Err)
	}
	if st, err := f.Stat(); err != nil || st.Size() != 8192 {
		t.Fatalf("size after ftruncate: %v, %v", st, err)
	}
	if d.SQEs != 1 || d.Inline != 1 {
		t.Errorf("%d SQEs and %d inline requests, want 1 and 1", d.SQEs, d.Inline)
	}
}
