//go:build linux

package uring

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSignalsDuringWaits sends SIGUSR1 and SIGURG to every thread of the
// process in a tight loop while O_DIRECT reads (real device waits) and
// write+fsync batches run, so that waits in io_uring_enter and in the
// syscalls are interrupted. Every result must be right; the retries are
// reported.
func TestSignalsDuringWaits(t *testing.T) {
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	stop := make(chan struct{})
	var sent atomic.Int64
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-sigs:
			case <-stop:
				return
			}
		}
	})
	bg.Go(func() { signalStorm(stop, &sent) })
	defer func() {
		close(stop)
		bg.Wait()
	}()

	const fileSize = 8 << 20
	content := randomBytes(31, fileSize)
	dir := t.TempDir()
	path := filepath.Join(dir, "direct")
	if err := os.WriteFile(path, content, 0o644); err != nil {
		t.Fatal(err)
	}
	direct, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		t.Skipf("O_DIRECT not supported here: %v", err)
	}
	defer direct.Close()
	synced := tempFile(t, "synced", nil, os.O_RDWR)

	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			be := openBackend(t, name, Options{Entries: 32})
			before := sent.Load()
			// With one P the storm may not run during a short round of
			// work: run rounds until signals were sent during one (at
			// most 20).
			for round := 0; round < 20 && (round == 0 || sent.Load() == before); round++ {
				var wg sync.WaitGroup
				errs := make(chan error, 8)
				for g := range 4 {
					wg.Go(func() { errs <- directReads(be, direct, content, g) })
				}
				for g := range 2 {
					wg.Go(func() { errs <- writeSyncs(be, synced, g) })
				}
				wg.Wait()
				close(errs)
				for err := range errs {
					if err != nil {
						t.Error(err)
					}
				}
			}
			s := be.Stats()
			t.Logf("%s: %d signals sent during %d requests; RetryEnterEINTR %d, RetryCQEEINTR %d, RetryCQEAgain %d, RetryCQECanceled %d, ShortResubmits %d, waits %d",
				name, sent.Load()-before, s.Requests, s.RetryEnterEINTR, s.RetryCQEEINTR, s.RetryCQEAgain, s.RetryCQECanceled, s.ShortResubmits, s.Waits)
			if sent.Load() == before {
				t.Error("no signal was sent while the work ran")
			}
		})
	}
}

// signalStorm signals every thread of the process until stop closes.
func signalStorm(stop chan struct{}, sent *atomic.Int64) {
	pid := unix.Getpid()
	var tids []int
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		if i%64 == 0 {
			tids = tids[:0]
			ents, _ := os.ReadDir("/proc/self/task")
			for _, e := range ents {
				if tid, err := strconv.Atoi(e.Name()); err == nil {
					tids = append(tids, tid)
				}
			}
		}
		for _, tid := range tids {
			sig := syscall.SIGUSR1
			if i%2 == 1 {
				sig = syscall.SIGURG
			}
			if unix.Tgkill(pid, tid, sig) == nil {
				sent.Add(1)
			}
		}
	}
}

// directReads reads random aligned blocks with O_DIRECT in batches of 8.
func directReads(be Backend, f *os.File, content []byte, seed int) error {
	// O_DIRECT needs aligned memory: page-aligned anonymous mappings.
	mem, err := unix.Mmap(-1, 0, 8*4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return err
	}
	defer unix.Munmap(mem)
	blocks := int64(len(content) / 4096)
	x := uint64(seed)*2654435761 + 1
	for i := range 150 {
		reqs := make([]Request, 8)
		for j := range reqs {
			x = x*6364136223846793005 + 1442695040888963407
			off := int64(x>>33) % blocks * 4096
			reqs[j] = Request{Op: OpRead, Fd: int32(f.Fd()), Off: off, Buf: mem[j*4096 : (j+1)*4096]}
		}
		if err := be.Submit(reqs); err != nil {
			return err
		}
		for j := range reqs {
			r := &reqs[j]
			if r.Err != nil || r.N != 4096 || !bytes.Equal(r.Buf, content[r.Off:r.Off+4096]) {
				return fmt.Errorf("O_DIRECT read %d.%d at %d: (%d, %v)", i, j, r.Off, r.N, r.Err)
			}
		}
	}
	return nil
}

// writeSyncs writes a region, fsyncs it in the next batch and reads it back.
func writeSyncs(be Backend, f *os.File, seed int) error {
	base := int64(seed) << 20
	for i := range 40 {
		data := bytes.Repeat([]byte{byte(seed*50 + i)}, 64<<10)
		reqs := []Request{{Op: OpWrite, Fd: int32(f.Fd()), Off: base, Buf: data}}
		if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || reqs[0].N != len(data) {
			return fmt.Errorf("write %d: %v (%d, %v)", i, err, reqs[0].N, reqs[0].Err)
		}
		got := make([]byte, len(data))
		reqs = []Request{
			{Op: OpFsync, Fd: int32(f.Fd()), Flags: uint32(i % 2)},
			{Op: OpRead, Fd: int32(f.Fd()), Off: base, Buf: got},
		}
		if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || reqs[1].Err != nil || !bytes.Equal(got, data) {
			return fmt.Errorf("fsync+read %d: %v %v %v", i, err, reqs[0].Err, reqs[1].Err)
		}
	}
	return nil
}
