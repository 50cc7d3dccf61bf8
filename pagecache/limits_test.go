//go:build linux

package pagecache

import (
	"bytes"
	"errors"
	"syscall"
	"testing"

	"github.com/ringfs/ringfs/uring"
)

// TestMaxFileSize: nothing reaches into the last page of the offset space
// (MaxFileSize): calls that would fail with EFBIG (EOVERFLOW for NewFile,
// EINVAL for a read range past int64, as pread) and change nothing,
// whatever the host takes, and the bytes just below the limit are served
// as any others. The host here is tmpfs where usable, which takes files up
// to 2^63-1 bytes.
func TestMaxFileSize(t *testing.T) {
	const top = 1<<63 - 1
	tests := []struct {
		name string
		call func(f *File) error
		want syscall.Errno
	}{
		{"write in the last page", func(f *File) error {
			_, _, err := f.WriteAt(make([]byte, 50), top-100, 0)
			return err
		}, syscall.EFBIG},
		{"write across the limit", func(f *File) error {
			_, _, err := f.WriteAt(make([]byte, 200), MaxFileSize-100, 0)
			return err
		}, syscall.EFBIG},
		{"write-through in the last page", func(f *File) error {
			_, _, err := f.WriteAt(make([]byte, 50), top-100, Through)
			return err
		}, syscall.EFBIG},
		{"direct write across the limit", func(f *File) error {
			_, _, err := f.DirectWrite(make([]byte, PageSize), MaxFileSize-PageSize/2, 0, f.fd)
			return err
		}, syscall.EFBIG},
		{"truncate past the limit", func(f *File) error { return f.Truncate(top) }, syscall.EFBIG},
		{"allocate across the limit", func(f *File) error {
			return f.Allocate(0, MaxFileSize-10, 20)
		}, syscall.EFBIG},
		{"read range past int64", func(f *File) error {
			_, err := f.ReadAt(make([]byte, 100), top-50)
			return err
		}, syscall.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHostFile(t, bytes.Repeat([]byte{'a'}, PageSize), false)
			c := newCache(t, openBackend(t, uring.BackendPsync, nil), Options{Capacity: 64 * PageSize})
			f := openFile(t, c, h, PageSize)
			if err := tt.call(f); !errors.Is(err, tt.want) {
				t.Fatalf("%v, want %v", err, tt.want)
			}
			if f.Size() != PageSize || len(h.bytes(t)) != PageSize {
				t.Fatalf("size now %d, host %d bytes; want both unchanged (%d)", f.Size(), len(h.bytes(t)), PageSize)
			}
		})
	}
	t.Run("a file past the limit", func(t *testing.T) {
		h := newHostFile(t, nil, false)
		c := newCache(t, openBackend(t, uring.BackendPsync, nil), Options{Capacity: 64 * PageSize})
		if f, err := c.NewFile(h.fd(), -1, top); !errors.Is(err, syscall.EOVERFLOW) {
			t.Fatalf("NewFile of a %d-byte file: %v, %v; want EOVERFLOW", int64(top), f, err)
		}
	})
	t.Run("the bytes below the limit", func(t *testing.T) {
		h := newHostFile(t, nil, false)
		c := newCache(t, openBackend(t, uring.BackendPsync, nil), Options{Capacity: 64 * PageSize})
		f := openFile(t, c, h, 0)
		data := bytes.Repeat([]byte{'x'}, 100)
		if n, _, err := f.WriteAt(data, MaxFileSize-100, 0); n != 100 || err != nil {
			if errors.Is(err, syscall.EFBIG) {
				t.Skipf("the host takes no file of %d bytes: %v", int64(MaxFileSize), err)
			}
			t.Fatalf("cached write of the last 100 bytes below the limit: %d, %v", n, err)
		}
		if err := f.Writeback(Range{0, top}, SyncNone); err != nil {
			t.Skipf("the host takes no file of %d bytes: %v", int64(MaxFileSize), err)
		}
		for _, off := range []int64{MaxFileSize - 100, MaxFileSize - 50} {
			got := make([]byte, 200)
			n, err := f.ReadAt(got, off)
			if want := int(MaxFileSize - off); n != want || err != nil || !bytes.Equal(got[:n], data[100-want:]) {
				t.Fatalf("ReadAt(200 bytes at limit-%d) = %d, %v; want %d bytes of x", MaxFileSize-off, n, err, want)
			}
		}
		if f.Size() != MaxFileSize {
			t.Fatalf("size %d, want %d", f.Size(), int64(MaxFileSize))
		}
	})
}
