//go:build linux

package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrency (TESTPLAN K1, K3, K7), run under -race.

var concModes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive}},
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
	{"exclusive/tiny/psync", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: "psync"}},
	{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
	{"directio/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache, DirectIO: true}},
}

// TestDisjointGoroutines (K1): 64 goroutines own disjoint ranges of one
// file (their edges share pages) and write, read, batch and sync them
// through several handles; every read is checked against the
// goroutine's own model, and the host ends equal to all of them.
func TestDisjointGoroutines(t *testing.T) {
	checkLeaks(t)
	const goroutines = 64
	const span = 16<<10 + 100 // not a page multiple: neighbours share pages
	ops := 150
	if !raceEnabled {
		ops = 600
	}
	seed := uint64(time.Now().UnixNano())
	for _, mode := range concModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(t.TempDir(), "f")
			writeHost(t, path, nil)
			var handles []*File
			for range 4 {
				handles = append(handles, openFile(t, e, path, os.O_RDWR))
			}
			ro := openFile(t, e, path, os.O_RDONLY)
			models := make([][]byte, goroutines)
			var wg sync.WaitGroup
			var failed atomic.Pointer[error]
			fail := func(err error) { failed.CompareAndSwap(nil, &err) }
			var total atomic.Int64
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(seed, uint64(g)))
					base := int64(g) * span
					model := make([]byte, span) // zeros: the file is sparse until written
					h := handles[g%len(handles)]
					for i := 0; i < ops && failed.Load() == nil; i++ {
						off := rng.Int64N(span)
						n := 1 + rng.Int64N(min(span-off, 6000))
						switch k := rng.IntN(20); {
						case k < 8:
							p := pattern(int(n), seed, uint64(g)<<32|uint64(i))
							if w, err := h.WriteAt(p, base+off); w != int(n) || err != nil {
								fail(fmt.Errorf("goroutine %d: WriteAt(%d, %d): %d, %v", g, n, base+off, w, err))
								return
							}
							copy(model[off:], p)
						case k < 16:
							r := h
							if k == 15 {
								r = ro
							}
							p := make([]byte, n)
							got, err := r.ReadAt(p, base+off)
							// Bytes past the file's end read short; ranges
							// above this one may not be written yet.
							if err != nil && err != io.EOF {
								fail(fmt.Errorf("goroutine %d: ReadAt: %v", g, err))
								return
							}
							if !bytes.Equal(p[:got], model[off:off+int64(got)]) {
								fail(fmt.Errorf("goroutine %d: ReadAt(%d, %d): data differs at %d", g, n, base+off, base+off+int64(diffAt(p[:got], model[off:off+int64(got)]))))
								return
							}
							if int64(got) < n && firstNonzeroByte(model[off+int64(got):off+n]) >= 0 {
								fail(fmt.Errorf("goroutine %d: ReadAt(%d, %d) stopped at %d before written bytes", g, n, base+off, got))
								return
							}
						case k < 18:
							// A batch: a write and a read of disjoint halves.
							half := int64(span / 2)
							p := pattern(int(min(n, half)), seed, uint64(g)<<32|uint64(i)|1<<31)
							woff := rng.Int64N(half - int64(len(p)) + 1)
							q := make([]byte, min(n, half))
							roff := half + rng.Int64N(half-int64(len(q))+1)
							batch := []Op{{File: h, Write: true, Buf: p, Off: base + woff}, {File: h, Buf: q, Off: base + roff}}
							if err := e.Submit(batch); err != nil {
								fail(err)
								return
							}
							if batch[0].N != len(p) || batch[0].Err != nil {
								fail(fmt.Errorf("goroutine %d: Submit write: %d, %v", g, batch[0].N, batch[0].Err))
								return
							}
							got := batch[1].N
							if (batch[1].Err != nil && batch[1].Err != io.EOF) || !bytes.Equal(q[:got], model[roff:roff+int64(got)]) {
								fail(fmt.Errorf("goroutine %d: Submit read: %d, %v", g, got, batch[1].Err))
								return
							}
							copy(model[woff:], p)
						case k < 19:
							if err := h.Sync(); err != nil {
								fail(fmt.Errorf("goroutine %d: Sync: %v", g, err))
								return
							}
						default:
							if _, err := h.Stat(); err != nil {
								fail(err)
								return
							}
						}
						total.Add(1)
					}
					models[g] = model
				}()
			}
			wg.Wait()
			if p := failed.Load(); p != nil {
				t.Fatal(*p)
			}
			for _, h := range append(handles, ro) {
				if err := h.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			want := bytes.Join(models, nil)
			host := readHost(t, path)
			if len(host) > len(want) {
				t.Fatalf("host %d bytes, more than the %d written", len(host), len(want))
			}
			sameBytes(t, "host", host, want[:len(host)])
			if firstNonzeroByte(want[len(host):]) >= 0 {
				t.Fatalf("host ends at %d, before written bytes", len(host))
			}
			t.Logf("%d goroutines, %d operations (seed %d): every read right, host equals the models", goroutines, total.Load(), seed)
		})
	}
}

// TestCloseRacingIO (K3): many goroutines keep calling a handle while it
// is closed. Each call succeeds or fails with fs.ErrClosed, nothing else;
// and a file opened right after, which will likely get the closed
// descriptor's number, is never touched by the stragglers.
func TestCloseRacingIO(t *testing.T) {
	checkLeaks(t)
	for _, mode := range concModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			dir := t.TempDir()
			victim := filepath.Join(dir, "victim")
			writeHost(t, victim, make([]byte, 64<<10))
			h := openFile(t, e, victim, os.O_RDWR)
			oldFd := h.Fd()
			const goroutines = 32
			var wg sync.WaitGroup
			var ok, closed, calls atomic.Int64
			var failed atomic.Pointer[error]
			stop := make(chan struct{})
			started := make(chan struct{}, goroutines)
			junk := bytes.Repeat([]byte{0xEE}, 4096)
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(g), 1))
					started <- struct{}{}
					for {
						select {
						case <-stop:
							return
						default:
						}
						var err error
						off := rng.Int64N(60 << 10)
						switch rng.IntN(8) {
						case 0, 1:
							_, err = h.WriteAt(junk[:1+rng.IntN(4096)], off)
						case 2, 3:
							p := make([]byte, 1+rng.IntN(8192))
							_, err = h.ReadAt(p, off)
							if err == io.EOF {
								err = nil
							}
						case 4:
							err = h.Sync()
						case 5:
							_, err = h.Stat()
						case 6:
							_, err = h.Seek(off, io.SeekStart)
						default:
							ops := []Op{{File: h, Buf: make([]byte, 100), Off: off}, {File: h, Write: true, Buf: junk[:10], Off: off + 200}}
							e.Submit(ops)
							err = ops[0].Err
							if err == io.EOF {
								err = nil
							}
							if err == nil {
								err = ops[1].Err
							}
						}
						calls.Add(1)
						switch {
						case err == nil:
							ok.Add(1)
						case errors.Is(err, fs.ErrClosed):
							closed.Add(1)
						default:
							failed.CompareAndSwap(nil, &err)
						}
					}
				}()
			}
			for range goroutines {
				<-started
			}
			time.Sleep(20 * time.Millisecond)
			if err := h.Close(); err != nil {
				t.Fatalf("Close under load: %v", err)
			}
			// The next files opened likely get the closed descriptor's
			// number; the stragglers keep calling the closed handle.
			fresh := filepath.Join(dir, "fresh")
			content := pattern(64<<10, 19, 0)
			writeHost(t, fresh, content)
			nf := openFile(t, e, fresh, os.O_RDWR)
			osf, err := os.OpenFile(fresh, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			reused := nf.Fd() == oldFd || osf.Fd() == oldFd
			time.Sleep(20 * time.Millisecond)
			close(stop)
			wg.Wait()
			osf.Close()
			if p := failed.Load(); p != nil {
				t.Fatalf("a call racing Close failed with neither success nor fs.ErrClosed: %v", *p)
			}
			got := make([]byte, len(content)+1)
			n, _ := nf.ReadAt(got, 0)
			sameBytes(t, "the file opened after Close, through the engine", got[:n], content)
			if err := nf.Close(); err != nil {
				t.Fatal(err)
			}
			sameBytes(t, "the file opened after Close, on the host", readHost(t, fresh), content)
			if closed.Load() == 0 {
				t.Fatalf("no call saw the handle closed")
			}
			t.Logf("%d calls racing Close: %d succeeded, %d fs.ErrClosed, 0 other; descriptor %d reused by the next open: %v; new file untouched",
				calls.Load(), ok.Load(), closed.Load(), oldFd, reused)
		})
	}
}

// TestEngineCloseRacingIO (K7): Engine.Close while goroutines do I/O on
// its handles: every call succeeds or fails with fs.ErrClosed, Close
// returns, and nothing is left behind (checkLeaks).
func TestEngineCloseRacingIO(t *testing.T) {
	checkLeaks(t)
	for _, mode := range concModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			dir := t.TempDir()
			var files []*File
			for i := range 4 {
				files = append(files, openFile(t, e, filepath.Join(dir, fmt.Sprint(i)), os.O_RDWR|os.O_CREATE))
			}
			var wg sync.WaitGroup
			var calls, closed atomic.Int64
			var failed atomic.Pointer[error]
			for g := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f := files[g%len(files)]
					p := pattern(3000, 20, uint64(g))
					for i := 0; ; i++ {
						var err error
						switch i % 4 {
						case 0, 1:
							_, err = f.WriteAt(p, int64(g*3000))
						case 2:
							_, err = f.ReadAt(p[:100], int64(g*3000))
						default:
							err = f.Sync()
						}
						calls.Add(1)
						if errors.Is(err, fs.ErrClosed) {
							closed.Add(1)
							return
						}
						if err != nil {
							failed.CompareAndSwap(nil, &err)
							return
						}
					}
				}()
			}
			time.Sleep(20 * time.Millisecond)
			if err := e.Close(); err != nil {
				t.Fatalf("Engine.Close under load: %v", err)
			}
			wg.Wait()
			if p := failed.Load(); p != nil {
				t.Fatalf("call racing Engine.Close: %v", *p)
			}
			t.Logf("%d calls racing Engine.Close; all 16 goroutines ended on fs.ErrClosed (%d)", calls.Load(), closed.Load())
		})
	}
}
