//go:build linux

package engine

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSeekWritebackBetween runs a Sync between SEEK_DATA's or SEEK_HOLE's
// look at the host and its look at the cache (as an eviction in another
// goroutine could write the file back): dirty bytes over a host hole must
// be found either on the host or in the cache, never in neither. The
// Sync waits for the seek (it may not run in between) and succeeds after.
func TestSeekWritebackBetween(t *testing.T) {
	checkLeaks(t)
	const size, dataOff = 64 << 10, 16 << 10
	tests := []struct {
		name   string
		whence int
		off    int64
		want   int64
	}{
		{"SEEK_DATA before the dirty page", SeekData, 0, dataOff},
		{"SEEK_HOLE inside the dirty page", SeekHole, dataOff + 100, dataOff + 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "sparse")
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			if h, err := os.Open(path); err == nil {
				_, serr := unix.Seek(int(h.Fd()), 0, SeekData)
				h.Close()
				if serr != syscall.ENXIO {
					t.Skipf("the filesystem reports no holes (SEEK_DATA of a sparse file: %v)", serr)
				}
			}
			e := newEngine(t, Options{Mode: Exclusive})
			f := openFile(t, e, path, os.O_RDWR)
			if _, err := f.WriteAt(pattern(4096, 31, 0), dataOff); err != nil {
				t.Fatal(err)
			}
			syncDone := make(chan error, 1)
			synced := false
			testHookSeekHost = func() {
				testHookSeekHost = nil
				go func() { syncDone <- f.Sync() }()
				// A bound, not a timing assertion: a Sync that ran in
				// between finishes well within it.
				select {
				case err := <-syncDone:
					synced = true
					syncDone <- err
				case <-time.After(100 * time.Millisecond):
				}
			}
			defer func() { testHookSeekHost = nil }()
			got, err := f.Seek(tt.off, tt.whence)
			if err := <-syncDone; err != nil {
				t.Fatalf("Sync: %v", err)
			}
			if err != nil || got != tt.want {
				t.Fatalf("Seek(%d, %d) with a Sync between its looks (Sync ran in between: %v): %d, %v; want %d",
					tt.off, tt.whence, synced, got, err, tt.want)
			}
			if synced {
				t.Fatalf("the Sync ran between the seek's look at the host and at the cache")
			}
		})
	}
}
