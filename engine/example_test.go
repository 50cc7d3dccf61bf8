//go:build linux

package engine_test

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"syscall"

	"github.com/ringfs/ringfs/engine"
)

// An engine in Exclusive mode caches reads and writes; Sync makes the
// written bytes durable on the host file, Close of the engine writes back
// whatever is left and closes every handle.
func Example() {
	dir, err := os.MkdirTemp("", "ringfs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "data")

	e, err := engine.New(engine.Options{Mode: engine.Exclusive, CacheSize: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	f, err := e.Open(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("hello, ringfs"), 0); err != nil {
		log.Fatal(err)
	}
	p := make([]byte, 5)
	if _, err := f.ReadAt(p, 7); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("read %q\n", p)
	if err := f.Sync(); err != nil {
		log.Fatal(err)
	}
	host, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("host file after Sync: %q\n", host)
	// Past the end of file: io.EOF, as with os.File.
	n, err := f.ReadAt(p, 10)
	fmt.Println(n, err)
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
	// Output:
	// read "ringf"
	// host file after Sync: "hello, ringfs"
	// 3 EOF
}

// Submit runs a batch: hits are served at once, and every read that
// misses goes to the kernel in one submission. Each Op carries its own
// result.
func ExampleEngine_Submit() {
	dir, err := os.MkdirTemp("", "ringfs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "data")
	if err := os.WriteFile(path, []byte("0123456789abcdef"), 0o644); err != nil {
		log.Fatal(err)
	}

	e, err := engine.New(engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	f, err := e.Open(path, os.O_RDWR, 0)
	if err != nil {
		log.Fatal(err)
	}
	ops := []engine.Op{
		{File: f, Buf: make([]byte, 4), Off: 0},
		{File: f, Buf: make([]byte, 4), Off: 10},
		{File: f, Buf: make([]byte, 4), Off: 14}, // 2 bytes, then end of file
		{File: f, Write: true, Buf: []byte("XY"), Off: 4},
	}
	if err := e.Submit(ops); err != nil {
		log.Fatal(err) // only when the engine is closed
	}
	for _, op := range ops {
		if op.Write {
			fmt.Printf("write at %d: %d bytes, %v\n", op.Off, op.N, op.Err)
			continue
		}
		fmt.Printf("read at %d: %q, %v\n", op.Off, op.Buf[:op.N], op.Err)
	}
	// Output:
	// read at 0: "0123", <nil>
	// read at 10: "abcd", <nil>
	// read at 14: "ef", EOF
	// write at 4: 2 bytes, <nil>
}

// Stats are plain counters; Sub gives the activity between two
// snapshots of one engine.
func ExampleStats_Sub() {
	dir, err := os.MkdirTemp("", "ringfs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "data")
	if err := os.WriteFile(path, make([]byte, 64<<10), 0o644); err != nil {
		log.Fatal(err)
	}

	e, err := engine.New(engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	f, err := e.Open(path, os.O_RDONLY, 0)
	if err != nil {
		log.Fatal(err)
	}
	p := make([]byte, 4096)
	f.ReadAt(p, 0) // a miss: the cache reads the file (and reads ahead)
	before := e.Stats()
	for range 10 {
		f.ReadAt(p, 4096) // hits
	}
	d := e.Stats().Sub(before)
	fmt.Printf("%d reads, %d from the cache, %d bytes\n", d.Reads.Ops(), d.Reads.CacheHit.Ops, d.Reads.CacheHit.Bytes)
	// Output:
	// 10 reads, 10 from the cache, 40960 bytes
}

// Errors are *fs.PathError values wrapping a syscall.Errno, so that
// errors.Is works with either.
func ExampleFile_ReadAt_errors() {
	dir, err := os.MkdirTemp("", "ringfs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "data")
	if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
		log.Fatal(err)
	}

	e, err := engine.New(engine.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	f, err := e.Open(path, os.O_RDONLY, 0)
	if err != nil {
		log.Fatal(err)
	}
	_, err = f.WriteAt([]byte("x"), 0)
	var pe *fs.PathError
	fmt.Println(errors.As(err, &pe), pe.Op, errors.Is(err, syscall.EBADF))
	_, err = f.ReadAt(make([]byte, 1), -1)
	fmt.Println(errors.Is(err, syscall.EINVAL))
	f.Close()
	_, err = f.ReadAt(make([]byte, 1), 0)
	fmt.Println(errors.Is(err, fs.ErrClosed))
	// Output:
	// true write true
	// true
	// true
}
