//go:build linux

package uring

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCloseReleasesEverything: after I/O with registered buffers and files,
// Close leaves no goroutine, descriptor or io_uring mapping behind.
func TestCloseReleasesEverything(t *testing.T) {
	content := randomBytes(3, 1<<16)
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			f := tempFile(t, "f", content, os.O_RDWR)
			region := mmapBuffer(t, 1<<16)
			before := snapshotResources(t)
			be, err := New(Options{Backend: name, Entries: 8})
			if err != nil {
				t.Fatal(err)
			}
			during := snapshotResources(t)
			if name != BackendPsync && (during.ringFds != before.ringFds+1 || during.ringMaps <= before.ringMaps) {
				t.Errorf("an open ring should show as one io_uring fd and its mappings: before %v, open %v", before, during)
			}
			if err := be.RegisterBuffers([][]byte{region}); err != nil {
				t.Fatal(err)
			}
			if err := be.RegisterFiles([]int32{int32(f.Fd())}); err != nil {
				t.Fatal(err)
			}
			reqs := make([]Request, 40) // more than the SQ holds
			bufs := make([][]byte, len(reqs))
			for i := range reqs {
				bufs[i] = make([]byte, 1000)
				reqs[i] = Request{Op: OpRead, Fixed: true, Fd: 0, Off: int64(i) * 1000, Buf: bufs[i]}
			}
			reqs[0] = Request{Op: OpReadFixed, Fd: int32(f.Fd()), Buf: region[:1000]}
			bufs[0] = region[:1000]
			if err := be.Submit(reqs); err != nil {
				t.Fatal(err)
			}
			for i := range reqs {
				if reqs[i].Err != nil || !bytes.Equal(bufs[i], content[i*1000:i*1000+1000]) {
					t.Fatalf("request %d: (%d, %v)", i, reqs[i].N, reqs[i].Err)
				}
			}
			if err := be.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			checkNoLeaks(t, before)
		})
	}
}

// TestAfterClose: every method of a closed backend returns ErrClosed
// (which is EBADF), Submit marks every request, and nothing runs.
func TestAfterClose(t *testing.T) {
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			content := []byte("untouched")
			f := tempFile(t, "f", content, os.O_RDWR)
			be, err := New(Options{Backend: name})
			if err != nil {
				t.Fatal(err)
			}
			if err := be.Close(); err != nil {
				t.Fatal(err)
			}
			reqs := []Request{
				{Op: OpWrite, Fd: int32(f.Fd()), Buf: []byte("written!!")},
				{Op: OpRead, Fd: int32(f.Fd()), Buf: make([]byte, 4)},
				{Op: OpNop},
				{Op: OpFsync, Fd: int32(f.Fd())},
			}
			err = be.Submit(reqs)
			if !errors.Is(err, ErrClosed) || !errors.Is(err, syscall.EBADF) {
				t.Errorf("Submit after Close: %v", err)
			}
			for i, r := range reqs {
				if !errors.Is(r.Err, ErrClosed) || r.N != 0 {
					t.Errorf("request %d after Close: (%d, %v)", i, r.N, r.Err)
				}
			}
			calls := map[string]func() error{
				"Close":             be.Close,
				"RegisterBuffers":   func() error { return be.RegisterBuffers([][]byte{make([]byte, 4096)}) },
				"UnregisterBuffers": be.UnregisterBuffers,
				"RegisterFiles":     func() error { return be.RegisterFiles([]int32{int32(f.Fd())}) },
				"UpdateFiles":       func() error { return be.UpdateFiles(0, []int32{int32(f.Fd())}) },
				"UnregisterFiles":   be.UnregisterFiles,
			}
			for call, fn := range calls {
				if err := fn(); !errors.Is(err, ErrClosed) {
					t.Errorf("%s after Close: %v, want ErrClosed", call, err)
				}
			}
			// Do, which runs a lone request inline, is refused too.
			if n, err := Do(be, Request{Op: OpWrite, Fd: int32(f.Fd()), Buf: []byte("written!!")}); n != 0 || !errors.Is(err, ErrClosed) {
				t.Errorf("Do after Close: (%d, %v), want ErrClosed", n, err)
			}
			if got := fileBytes(t, f); !bytes.Equal(got, content) {
				t.Errorf("file changed after Close: %q", got)
			}
			t.Logf("%d requests and %d calls refused with ErrClosed", len(reqs), len(calls))
		})
	}
}

// TestCloseRacesSubmits closes a backend while goroutines submit: every
// request either completes correctly or fails with ErrClosed, no call
// hangs, and nothing leaks.
func TestCloseRacesSubmits(t *testing.T) {
	content := randomBytes(5, 1<<20)
	for _, name := range testBackends() {
		t.Run("backend="+name, func(t *testing.T) {
			f := tempFile(t, "f", content, os.O_RDONLY)
			before := snapshotResources(t)
			be, err := New(Options{Backend: name, Entries: 16})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			completed, refused := 0, 0
			start := make(chan struct{})
			for g := range 32 {
				wg.Go(func() {
					<-start
					for i := 0; ; i++ {
						reqs := make([]Request, 1+(g+i)%8)
						for j := range reqs {
							off := int64((g*131+i*17+j)%250) * 4096
							reqs[j] = Request{Op: OpRead, Fd: int32(f.Fd()), Off: off, Buf: make([]byte, 4096)}
						}
						err := be.Submit(reqs)
						ok, closed := 0, 0
						for _, r := range reqs {
							switch {
							case r.Err == nil && r.N == 4096 && bytes.Equal(r.Buf, content[r.Off:r.Off+4096]):
								ok++
							case errors.Is(r.Err, ErrClosed):
								closed++
							default:
								t.Errorf("request at %d: (%d, %v)", r.Off, r.N, r.Err)
								return
							}
						}
						if closed > 0 && !errors.Is(err, ErrClosed) {
							t.Errorf("Submit returned %v with refused requests", err)
						}
						mu.Lock()
						completed += ok
						refused += closed
						mu.Unlock()
						if err != nil {
							return
						}
					}
				})
			}
			close(start)
			time.Sleep(50 * time.Millisecond)
			if err := be.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			wg.Wait()
			if refused == 0 {
				t.Error("no request was refused: the goroutines stopped before Close")
			}
			t.Logf("%d requests completed, %d refused with ErrClosed", completed, refused)
			checkNoLeaks(t, before)
		})
	}
}

// TestCancelInflight cancels a read that cannot complete (an empty pipe):
// the read fails with ECANCELED and the cancel itself succeeds, whether
// the cancel names the descriptor or its registered index. psync runs
// requests synchronously, so it has nothing in flight to cancel.
func TestCancelInflight(t *testing.T) {
	for _, name := range testBackends() {
		if name == BackendPsync {
			continue
		}
		for _, fixed := range []bool{false, true} {
			t.Run(fmt.Sprintf("backend=%s/fixed=%v", name, fixed), func(t *testing.T) {
				be := openBackend(t, name, Options{})
				var p [2]int
				if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
					t.Fatal(err)
				}
				defer syscall.Close(p[0])
				defer syscall.Close(p[1])
				cancel := Request{Op: OpCancel, Fd: int32(p[0])}
				if fixed {
					if err := be.RegisterFiles([]int32{-1, int32(p[0])}); err != nil {
						t.Fatal(err)
					}
					cancel = Request{Op: OpCancel, Fixed: true, Fd: 1}
				}
				done := make(chan []Request)
				go func() {
					reqs := []Request{{Op: OpRead, Fd: int32(p[0]), Buf: make([]byte, 10)}}
					be.Submit(reqs)
					done <- reqs
				}()
				// Cancel until the read is found in flight (the first
				// cancels may run before it was submitted).
				cancels := 0
				for {
					select {
					case reqs := <-done:
						if !errors.Is(reqs[0].Err, syscall.ECANCELED) || reqs[0].N != 0 {
							t.Fatalf("cancelled read: (%d, %v), want ECANCELED", reqs[0].N, reqs[0].Err)
						}
						t.Logf("read cancelled after %d cancel requests", cancels)
						return
					case <-time.After(5 * time.Millisecond):
					}
					reqs := []Request{cancel}
					if err := be.Submit(reqs); err != nil || reqs[0].Err != nil || reqs[0].N != 0 {
						t.Fatalf("cancel: %v (%d, %v)", err, reqs[0].N, reqs[0].Err)
					}
					cancels++
					if cancels > 400 {
						// Unblock the read so the goroutine ends.
						syscall.Write(p[1], []byte("x"))
						<-done
						t.Fatal("the read was never cancelled")
					}
				}
			})
		}
	}
}

// TestCloseCancelsStuckRequests: Close of a ring with a request that would
// never complete asks the kernel to cancel it (after drainDeadline/2) and
// returns; the request fails.
func TestCloseCancelsStuckRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("waits drainDeadline/2")
	}
	for _, name := range testBackends() {
		if name == BackendPsync {
			continue
		}
		t.Run("backend="+name, func(t *testing.T) {
			before := snapshotResources(t)
			be, err := New(Options{Backend: name})
			if err != nil {
				t.Fatal(err)
			}
			var p [2]int
			if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			done := make(chan []Request)
			go func() {
				reqs := []Request{{Op: OpRead, Fd: int32(p[0]), Buf: make([]byte, 10)}}
				be.Submit(reqs)
				done <- reqs
			}()
			time.Sleep(20 * time.Millisecond)
			start := time.Now()
			if err := be.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			reqs := <-done
			if reqs[0].Err == nil {
				t.Fatalf("stuck read succeeded: %d", reqs[0].N)
			}
			syscall.Close(p[0])
			syscall.Close(p[1])
			t.Logf("Close returned after %v; the stuck read failed with %v", time.Since(start).Round(time.Millisecond), reqs[0].Err)
			checkNoLeaks(t, before)
		})
	}
}

// TestFallback: when io_uring_setup is refused (seccomp, sysctl), Backend ""
// falls back to psync and says why; Backend "uring" returns the error;
// other setup errors are returned, not hidden by a fallback.
func TestFallback(t *testing.T) {
	refused := func(errno syscall.Errno) func() error {
		return func() error { return &BackendError{Reason: "io_uring_setup", Errno: errno} }
	}
	cases := []struct {
		name     string
		backend  string
		hook     func() error
		wantName string        // backend used, "" for an error
		wantErr  syscall.Errno // errno of the error
	}{
		{"auto_eperm_falls_back", BackendAuto, refused(syscall.EPERM), BackendPsync, 0},
		{"auto_eacces_falls_back", BackendAuto, refused(syscall.EACCES), BackendPsync, 0},
		{"auto_enosys_falls_back", BackendAuto, refused(syscall.ENOSYS), BackendPsync, 0},
		{"auto_enomem_is_returned", BackendAuto, refused(syscall.ENOMEM), "", syscall.ENOMEM},
		{"uring_eperm_is_returned", BackendUring, refused(syscall.EPERM), "", syscall.EPERM},
		{"auto_without_refusal_is_uring", BackendAuto, nil, BackendUring, 0},
		{"unknown_backend", "nosuch", nil, "", syscall.EINVAL},
	}
	content := randomBytes(9, 10000)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			be, err := New(Options{Backend: c.backend, setupHook: c.hook})
			if c.wantName == "" {
				if err == nil {
					be.Close()
					t.Fatalf("got backend %s, want error %v", be.Name(), c.wantErr)
				}
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("error %v, want %v", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer be.Close()
			if be.Name() != c.wantName {
				t.Fatalf("backend %s, want %s", be.Name(), c.wantName)
			}
			s := be.Stats()
			if (c.wantName == BackendPsync) != (s.FallbackReason != "") {
				t.Fatalf("FallbackReason %q", s.FallbackReason)
			}
			// The fallback works like any backend.
			f := tempFile(t, "f", content, os.O_RDWR)
			buf := make([]byte, 5000)
			reqs := []Request{
				{Op: OpWrite, Fd: int32(f.Fd()), Off: 10000, Buf: []byte("tail")},
				{Op: OpRead, Fd: int32(f.Fd()), Off: 0, Buf: buf},
				{Op: OpFsync, Fd: int32(f.Fd())},
			}
			if err := be.Submit(reqs); err != nil {
				t.Fatal(err)
			}
			if reqs[0].N != 4 || reqs[1].N != 5000 || !bytes.Equal(buf, content[:5000]) || reqs[2].Err != nil {
				t.Fatalf("results %+v %+v %+v", reqs[0], reqs[1].N, reqs[2].Err)
			}
			t.Logf("backend %s, fallback reason %q", be.Name(), s.FallbackReason)
		})
	}
}
