//go:build linux && iouringgo

package uring

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
)

// Tests of what is particular to the iouringgo backend; the shared tests
// run it like every other backend.

// TestIouringgoSplitsBatches: the library refuses a batch larger than its
// SQ; the backend submits it in pieces and every result is right.
func TestIouringgoSplitsBatches(t *testing.T) {
	content := randomBytes(41, 1<<20)
	f := tempFile(t, "f", content, os.O_RDONLY)
	be := openBackend(t, BackendIouringgo, Options{Entries: 4})
	reqs := make([]Request, 100)
	for i := range reqs {
		reqs[i] = Request{Op: OpRead, Fd: int32(f.Fd()), Off: int64(i) * 10000, Buf: make([]byte, 1+i*7)}
	}
	if err := be.Submit(reqs); err != nil {
		t.Fatal(err)
	}
	for i, r := range reqs {
		if r.Err != nil || r.N != len(r.Buf) || !bytes.Equal(r.Buf, content[r.Off:r.Off+int64(r.N)]) {
			t.Fatalf("request %d: (%d, %v)", i, r.N, r.Err)
		}
	}
	s := be.Stats()
	if s.SQEntries != 4 || s.CQEntries != 8 || s.SQEs != 100 || s.Enters < 25 || s.InflightHighMark > 8 {
		t.Fatalf("stats %+v", s)
	}
	t.Logf("100 requests through an SQ of 4: %d enters, in-flight high water %d", s.Enters, s.InflightHighMark)
}

// TestIouringgoFileTable: the registered file table (resolved by the
// backend) follows RegisterFiles, UpdateFiles and UnregisterFiles like
// psync's.
func TestIouringgoFileTable(t *testing.T) {
	a := tempFile(t, "a", []byte("aaaa"), os.O_RDONLY)
	b := tempFile(t, "b", []byte("bbbb"), os.O_RDONLY)
	for _, name := range []string{BackendIouringgo, BackendPsync, BackendUring} {
		t.Run("backend="+name, func(t *testing.T) {
			be := openBackend(t, name, Options{})
			read := func(idx int32) (string, error) {
				buf := make([]byte, 4)
				reqs := []Request{{Op: OpRead, Fixed: true, Fd: idx, Buf: buf}}
				if err := be.Submit(reqs); err != nil {
					t.Fatal(err)
				}
				return string(buf[:reqs[0].N]), reqs[0].Err
			}
			if err := be.RegisterFiles([]int32{int32(a.Fd()), -1, int32(b.Fd())}); err != nil {
				t.Fatal(err)
			}
			if s, err := read(0); s != "aaaa" || err != nil {
				t.Fatalf("index 0: %q %v", s, err)
			}
			if _, err := read(1); !errors.Is(err, syscall.EBADF) {
				t.Fatalf("hole: %v", err)
			}
			if s, err := read(2); s != "bbbb" || err != nil {
				t.Fatalf("index 2: %q %v", s, err)
			}
			if err := be.UpdateFiles(1, []int32{int32(b.Fd())}); err != nil {
				t.Fatal(err)
			}
			if s, err := read(1); s != "bbbb" || err != nil {
				t.Fatalf("updated index 1: %q %v", s, err)
			}
			if err := be.UnregisterFiles(); err != nil {
				t.Fatal(err)
			}
			if _, err := read(0); !errors.Is(err, syscall.EBADF) {
				t.Fatalf("after UnregisterFiles: %v", err)
			}
			if err := be.UnregisterFiles(); err == nil {
				t.Fatal("second UnregisterFiles succeeded")
			}
			t.Logf("%s: table with a hole, update and unregister behave alike", name)
		})
	}
}
