//go:build linux

package engine

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// truncRaceTime is how long each of the tests below races reads with
// Truncate.
const truncRaceTime = 1500 * time.Millisecond

// TestReadRacingTruncate: reads racing a Truncate that moves the size up
// and down, through ReadAt and through Submit (whose fills plan their
// pages before they lock the file), fill every byte they count: the
// buffer starts as 0xEE, a byte the file never holds (0x5A, or zeros
// past a shrink).
func TestReadRacingTruncate(t *testing.T) {
	const size = 192 << 10
	for _, via := range []string{"ReadAt", "Submit"} {
		t.Run(via, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "f")
			writeHost(t, path, bytes.Repeat([]byte{0x5A}, size))
			e := newEngine(t, Options{Mode: Exclusive, CacheSize: 64 << 10})
			f := openFile(t, e, path, os.O_RDWR)
			var stop atomic.Bool
			var wg sync.WaitGroup
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(1, 2))
				for !stop.Load() {
					if err := f.Truncate(size/2 + rng.Int64N(size/2)); err != nil {
						t.Errorf("Truncate: %v", err)
						return
					}
				}
			})
			var reads, bad atomic.Int64
			for g := range 2 {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(3, uint64(g)))
					for !stop.Load() {
						p := bytes.Repeat([]byte{0xEE}, 1+rng.IntN(40<<10))
						off := rng.Int64N(size)
						var n int
						if via == "Submit" {
							ops := []Op{{File: f, Buf: p, Off: off}}
							e.Submit(ops)
							n = ops[0].N
						} else {
							n, _ = f.ReadAt(p, off)
						}
						reads.Add(1)
						if i := bytes.IndexByte(p[:n], 0xEE); i >= 0 && bad.Add(1) <= 3 {
							t.Errorf("read of %d bytes at %d: %d bytes, but the one at %d was never filled", len(p), off, n, off+int64(i))
						}
					}
				})
			}
			time.Sleep(truncRaceTime)
			stop.Store(true)
			wg.Wait()
			t.Logf("%d reads racing Truncate, %d with bytes never filled", reads.Load(), bad.Load())
		})
	}
}

// TestHostMmapReadRacingTruncate: with HostMmap, a ReadAt racing
// Truncates that shrink and regrow the file never fails with EFAULT: a
// fault that a Truncate caused ends the read at the size it set.
func TestHostMmapReadRacingTruncate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	writeHost(t, path, make([]byte, 256<<10))
	e := newEngine(t, Options{Mode: Exclusive, HostMmap: true})
	f := openFile(t, e, path, os.O_RDWR)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var efault, reads atomic.Int64
	for range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				size := int64(4096)
				if i%2 == 0 {
					size = 256 << 10
				}
				if err := f.Truncate(size); err != nil {
					t.Errorf("Truncate: %v", err)
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			p := make([]byte, 200<<10)
			for !stop.Load() {
				reads.Add(1)
				if _, err := f.ReadAt(p, 8192); errors.Is(err, syscall.EFAULT) && efault.Add(1) == 1 {
					t.Errorf("ReadAt racing Truncate: %v", err)
				}
			}
		})
	}
	time.Sleep(truncRaceTime)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d reads racing Truncate, %d failed with EFAULT", reads.Load(), efault.Load())
}
