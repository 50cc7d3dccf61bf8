package uring

import (
	"os"
	"testing"
)

func TestFtruncateAllBackends(t *testing.T) {
	for _, be := range []string{"uring", "psync"} {
		b, err := New(Options{Backend: be})
		if err != nil {
			t.Fatal(err)
		}
		f, _ := os.CreateTemp(t.TempDir(), "x")
		reqs := []Request{{Op: OpFtruncate, Fd: int32(f.Fd()), Off: 12345}}
		if err := b.Submit(reqs); err != nil || reqs[0].Err != nil {
			t.Fatal(err, reqs[0].Err)
		}
		fi, _ := f.Stat()
		if fi.Size() != 12345 {
			t.Fatalf("%s: size %d", be, fi.Size())
		}
		reqs[0] = Request{Op: OpFtruncate, Fd: int32(f.Fd()), Off: -1}
		b.Submit(reqs)
		if reqs[0].Err == nil {
			t.Fatal("negative size accepted")
		}
		if n, err := Do(b, Request{Op: OpFtruncate, Fd: int32(f.Fd()), Off: 7}); n != 0 || err != nil {
			t.Fatal(err)
		}
		fi, _ = f.Stat()
		if fi.Size() != 7 {
			t.Fatalf("%s: size %d after Do", be, fi.Size())
		}
		b.Close()
	}
}
