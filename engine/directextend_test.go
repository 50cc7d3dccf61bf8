//go:build linux

package engine

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/ringfs/ringfs/uring/fault"
)

// TestDirectReadExtendedMeanwhile: a cached write that extends the file
// after an O_DIRECT read wrote back its range, but before the read
// returns, is either seen by the read or not at all (TESTPLAN K2: a state
// some order of the two produces), never as zeros: in one Submit batch,
// where the write runs as the batch is built, and with a direct ReadAt
// slowed down while another goroutine writes.
func TestDirectReadExtendedMeanwhile(t *testing.T) {
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT here")
	}
	old := bytes.Repeat([]byte{'A'}, 4096)
	extension := bytes.Repeat([]byte{'B'}, 4096)
	check := func(t *testing.T, p []byte, n int, err error) {
		t.Helper()
		switch {
		case n == 4096 && err == io.EOF && bytes.Equal(p[:n], old): // before the write
		case n == 8192 && err == nil && bytes.Equal(p[:4096], old) && bytes.Equal(p[4096:n], extension): // after it
		case err != nil && err != io.EOF:
			t.Fatalf("direct read: %v", err)
		default:
			t.Fatalf("direct read of 8 KiB: %d bytes, page 1 starts %q: neither the file before the write nor after it", n, p[4096:4104])
		}
	}
	for _, via := range []string{"Submit", "ReadAt"} {
		t.Run(via, func(t *testing.T) {
			inj := fault.New()
			e := newEngine(t, Options{Mode: Exclusive, Injector: inj})
			path := filepath.Join(dir, via)
			writeHost(t, path, old)
			f := openFile(t, e, path, os.O_RDWR)
			d := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
			p := alignedBuf(8192)
			if via == "Submit" {
				ops := []Op{
					{File: d, Buf: p},
					{File: f, Write: true, Buf: extension, Off: 4096},
				}
				if err := e.Submit(ops); err != nil || ops[1].Err != nil {
					t.Fatalf("Submit: %v, write %v", err, ops[1].Err)
				}
				check(t, p, ops[0].N, ops[0].Err)
				return
			}
			inj.Add(fault.Rule{Name: "slow direct read", When: fault.And(fault.Reads(), fault.OnFd(d.fd)),
				Do: fault.Effect{Delay: 200 * time.Millisecond}})
			type result struct {
				n   int
				err error
			}
			done := make(chan result)
			go func() {
				n, err := d.ReadAt(p, 0)
				done <- result{n, err}
			}()
			time.Sleep(50 * time.Millisecond) // the read has flushed and waits in the backend
			if _, err := f.WriteAt(extension, 4096); err != nil {
				t.Fatal(err)
			}
			r := <-done
			check(t, p, r.n, r.err)
		})
	}
}

// TestSubmitOSyncErrorOnce: an O_SYNC write whose fsync fails reports the
// error to its handle once, whether it ran in a Submit batch or as
// WriteAt: the handle's next Sync does not report it again.
func TestSubmitOSyncErrorOnce(t *testing.T) {
	for _, m := range closeModes {
		for _, viaSubmit := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/submit=%v", m.name, viaSubmit), func(t *testing.T) {
				inj := fault.New()
				opts := m.opts
				opts.Injector = inj
				e := newEngine(t, opts)
				path := filepath.Join(t.TempDir(), "f")
				writeHost(t, path, nil)
				f := openFile(t, e, path, os.O_RDWR|os.O_SYNC)
				inj.Add(fault.Rule{Name: "fsync EIO", When: fault.And(fault.Syncs(), fault.Nth(1)), Do: fault.Effect{Errno: syscall.EIO}})
				p := pattern(4096, 1, 1)
				var err error
				if viaSubmit {
					ops := []Op{{File: f, Write: true, Buf: p}}
					if serr := e.Submit(ops); serr != nil {
						t.Fatal(serr)
					}
					err = ops[0].Err
				} else {
					_, err = f.WriteAt(p, 0)
				}
				if inj.Fired() == 0 {
					t.Skip("no fsync reached the backend") // (a mapping's msync path)
				}
				wantPathErr(t, "O_SYNC write whose fsync fails", err, syscall.EIO)
				if err := f.Sync(); err != nil {
					t.Fatalf("Sync after the O_SYNC write reported its EIO: %v (a second time)", err)
				}
			})
		}
	}
}
