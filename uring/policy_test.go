//go:build linux

package uring_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
	"github.com/ringfs/ringfs/uring/fault"
)

// Each branch of the error policy, driven through every backend by the
// fault injector. A table row sets up rules, runs requests on a 64 KiB file
// and checks the results, the file and the counters.

// first matches the first n operations that reach it.
func first(n int) fault.Predicate {
	seen := 0
	return func(fault.Info) bool { seen++; return seen <= n }
}

// policyEnv is what a row works with.
type policyEnv struct {
	be      uring.Backend
	in      *fault.Injector
	f       *os.File
	fd      int32
	content []byte // the file's content before the row ran
}

// submit runs reqs; a backend failure is fatal.
func (e *policyEnv) submit(t *testing.T, reqs ...uring.Request) []uring.Request {
	t.Helper()
	if err := e.be.Submit(reqs); err != nil {
		t.Fatalf("Submit: %v", err)
	}
	return reqs
}

// file returns the file's bytes now.
func (e *policyEnv) file(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(e.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// expectResult checks one request's outcome.
func expectResult(t *testing.T, r uring.Request, n int, errno syscall.Errno) {
	t.Helper()
	var got syscall.Errno
	if r.Err != nil && !errors.As(r.Err, &got) {
		t.Fatalf("error %v is no errno", r.Err)
	}
	if r.N != n || got != errno {
		t.Fatalf("%v: got (%d, %v), want (%d, %v)", r.Op, r.N, r.Err, n, errno)
	}
}

// retried is every retry counter the policy can use: which one depends on
// whether the backend has an io_uring_enter (psync turns Enter faults into
// the syscall's own failure, which settle then retries).
func retried(s uring.Stats) uint64 {
	return s.RetryEnterEINTR + s.RetryEnterBusy + s.RetryCQEEINTR + s.RetryCQEAgain
}

type policyRow struct {
	name  string
	soak  bool // only with RINGFS_SOAK (slow: waits out backoff)
	setup func(in *fault.Injector)
	// run performs the row's requests and checks them; it returns the
	// figure to log.
	run func(t *testing.T, e *policyEnv, backend string) string
}

var policyRows = []policyRow{
	{
		name: "enter_EINTR_retried",
		setup: func(in *fault.Injector) {
			in.AddEnter(fault.EnterRule{Name: "eintr", When: func(c uint64) bool { return c <= 3 }, Errno: syscall.EINTR})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			data := bytes.Repeat([]byte("w"), 8192)
			r := e.submit(t, uring.Request{Op: uring.OpWrite, Fd: e.fd, Off: 1000, Buf: data})
			expectResult(t, r[0], 8192, 0)
			want := append(append([]byte{}, e.content[:1000]...), data...)
			want = append(want, e.content[9192:]...)
			if got := e.file(t); !bytes.Equal(got, want) {
				t.Fatal("file content wrong after retried enters")
			}
			s := e.be.Stats()
			if retried(s) != 3 || e.in.Fired() != 3 {
				t.Fatalf("retries %d, faults %d; want 3 and 3", retried(s), e.in.Fired())
			}
			return fmt.Sprintf("3 EINTR from enter, RetryEnterEINTR %d, RetryCQEEINTR %d", s.RetryEnterEINTR, s.RetryCQEEINTR)
		},
	},
	{
		name: "enter_EAGAIN_reaped_and_retried",
		setup: func(in *fault.Injector) {
			in.AddEnter(fault.EnterRule{Name: "eagain", When: func(c uint64) bool { return c <= 5 }, Errno: syscall.EAGAIN})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			buf := make([]byte, 30000)
			r := e.submit(t, uring.Request{Op: uring.OpRead, Fd: e.fd, Off: 7, Buf: buf})
			expectResult(t, r[0], 30000, 0)
			if !bytes.Equal(buf, e.content[7:30007]) {
				t.Fatal("wrong bytes")
			}
			s := e.be.Stats()
			if retried(s) != 5 {
				t.Fatalf("retries %d, want 5", retried(s))
			}
			return fmt.Sprintf("5 EAGAIN from enter, RetryEnterBusy %d, RetryCQEAgain %d", s.RetryEnterBusy, s.RetryCQEAgain)
		},
	},
	{
		name: "enter_EBUSY_reaped_and_retried",
		setup: func(in *fault.Injector) {
			in.AddEnter(fault.EnterRule{Name: "ebusy", When: func(c uint64) bool { return c <= 4 }, Errno: syscall.EBUSY})
		},
		run: func(t *testing.T, e *policyEnv, backend string) string {
			buf := make([]byte, 4096)
			r := e.submit(t, uring.Request{Op: uring.OpRead, Fd: e.fd, Buf: buf})
			if backend == uring.BackendPsync {
				// psync has no io_uring_enter: the fault is the syscall's
				// own failure, and EBUSY is not a retryable one.
				expectResult(t, r[0], 0, syscall.EBUSY)
				return "psync: EBUSY reported as the syscall's failure"
			}
			expectResult(t, r[0], 4096, 0)
			if s := e.be.Stats(); s.RetryEnterBusy != 4 {
				t.Fatalf("RetryEnterBusy %d, want 4", s.RetryEnterBusy)
			}
			return "4 EBUSY from enter retried"
		},
	},
	{
		name: "enter_EAGAIN_bounded",
		soak: true,
		setup: func(in *fault.Injector) {
			in.AddEnter(fault.EnterRule{Name: "eagain", When: func(uint64) bool { return true }, Errno: syscall.EAGAIN})
		},
		run: func(t *testing.T, e *policyEnv, backend string) string {
			start := time.Now()
			reqs := []uring.Request{{Op: uring.OpRead, Fd: e.fd, Buf: make([]byte, 4096)}}
			err := e.be.Submit(reqs)
			s := e.be.Stats()
			switch backend {
			case uring.BackendUring:
				// The ring gives up and breaks: the request fails, later
				// Submits are refused.
				if !errors.Is(err, uring.ErrBroken) || !errors.Is(reqs[0].Err, uring.ErrBroken) {
					t.Fatalf("Submit %v, request %v; want ErrBroken", err, reqs[0].Err)
				}
			default:
				expectResult(t, reqs[0], 0, syscall.EAGAIN)
			}
			if got := retried(s); got < uring.MaxRetriesForTest || got > uring.MaxBusyRetriesForTest+200 {
				t.Fatalf("%d retries: unbounded or none", got)
			}
			return fmt.Sprintf("gave up after %d retries in %v: %v", retried(s), time.Since(start).Round(time.Millisecond), reqs[0].Err)
		},
	},
	{
		name: "cqe_EINTR_resubmitted",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "eintr", When: first(3), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.EINTR}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			data := bytes.Repeat([]byte("x"), 10000)
			r := e.submit(t, uring.Request{Op: uring.OpWrite, Fd: e.fd, Off: 100, Buf: data})
			expectResult(t, r[0], 10000, 0)
			if got := e.file(t); !bytes.Equal(got[100:10100], data) || !bytes.Equal(got[10100:], e.content[10100:]) {
				t.Fatal("file wrong")
			}
			if s := e.be.Stats(); s.RetryCQEEINTR != 3 {
				t.Fatalf("RetryCQEEINTR %d, want 3", s.RetryCQEEINTR)
			}
			return "3 completions of -EINTR resubmitted"
		},
	},
	{
		name: "cqe_EAGAIN_resubmitted",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "eagain", When: first(3), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.EAGAIN}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			bufs := [][]byte{make([]byte, 100), make([]byte, 5000)}
			r := e.submit(t, uring.Request{Op: uring.OpReadv, Fd: e.fd, Off: 50, Vecs: bufs})
			expectResult(t, r[0], 5100, 0)
			if !bytes.Equal(append(bufs[0], bufs[1]...), e.content[50:5150]) {
				t.Fatal("wrong bytes")
			}
			if s := e.be.Stats(); s.RetryCQEAgain != 3 {
				t.Fatalf("RetryCQEAgain %d, want 3", s.RetryCQEAgain)
			}
			return "3 completions of -EAGAIN resubmitted"
		},
	},
	{
		name: "cqe_ECANCELED_resubmitted",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "canceled", When: first(3), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.ECANCELED}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			data := RandomBytes(22, 6000)
			r := e.submit(t, uring.Request{Op: uring.OpWrite, Fd: e.fd, Off: 700, Buf: data})
			expectResult(t, r[0], 6000, 0)
			want := append(append(append([]byte{}, e.content[:700]...), data...), e.content[6700:]...)
			if got := e.file(t); !bytes.Equal(got, want) {
				t.Fatal("file wrong after resubmitted cancellations")
			}
			if s := e.be.Stats(); s.RetryCQECanceled != 3 {
				t.Fatalf("RetryCQECanceled %d, want 3", s.RetryCQECanceled)
			}
			return "3 completions of -ECANCELED nobody asked for resubmitted"
		},
	},
	{
		name: "cqe_ECANCELED_bounded",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "canceled", When: fault.Any(), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.ECANCELED}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			r := e.submit(t, uring.Request{Op: uring.OpRead, Fd: e.fd, Buf: make([]byte, 4096)})
			expectResult(t, r[0], 0, syscall.ECANCELED)
			if s := e.be.Stats(); s.RetryCQECanceled != 64 {
				t.Fatalf("RetryCQECanceled %d, want 64 (maxRetries)", s.RetryCQECanceled)
			}
			return "-ECANCELED on every completion: 64 resubmissions, then the error"
		},
	},
	{
		name: "nowait_EAGAIN_returned",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "eagain", When: fault.Reads(), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.EAGAIN}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			r := e.submit(t, uring.Request{Op: uring.OpRead, Fd: e.fd, Buf: make([]byte, 4096), Flags: unix.RWF_NOWAIT})
			expectResult(t, r[0], 0, syscall.EAGAIN)
			if s := e.be.Stats(); s.RetryCQEAgain != 0 || e.in.Fired() != 1 {
				t.Fatalf("RetryCQEAgain %d, faults %d; want 0 and 1", s.RetryCQEAgain, e.in.Fired())
			}
			return "RWF_NOWAIT read: -EAGAIN returned, not retried"
		},
	},
	{
		name: "short_read_resumed",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "short", When: fault.And(fault.Reads(), first(2)), Stage: fault.StageComplete, Do: fault.Effect{Short: 1000}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			buf := make([]byte, 16384)
			r := e.submit(t, uring.Request{Op: uring.OpRead, Fd: e.fd, Off: 3, Buf: buf})
			expectResult(t, r[0], 16384, 0)
			if !bytes.Equal(buf, e.content[3:16387]) {
				t.Fatal("wrong bytes")
			}
			if s := e.be.Stats(); s.ShortResubmits != 2 {
				t.Fatalf("ShortResubmits %d, want 2", s.ShortResubmits)
			}
			return "2 short reads of 1000 bytes resumed"
		},
	},
	{
		name: "short_write_resumed",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "short", When: fault.And(fault.Writes(), first(2)), Stage: fault.StageComplete, Do: fault.Effect{Short: 1000}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			// The kernel wrote everything each time; the backend believes
			// it wrote 1000 bytes and writes the rest again: same bytes.
			data := RandomBytes(21, 20000)
			r := e.submit(t, uring.Request{Op: uring.OpWrite, Fd: e.fd, Off: 5000, Buf: data})
			expectResult(t, r[0], 20000, 0)
			want := append(append(append([]byte{}, e.content[:5000]...), data...), e.content[25000:]...)
			if got := e.file(t); !bytes.Equal(got, want) {
				t.Fatal("file wrong after resumed short writes")
			}
			if s := e.be.Stats(); s.ShortResubmits != 2 {
				t.Fatalf("ShortResubmits %d, want 2", s.ShortResubmits)
			}
			return "2 short writes of 1000 bytes resumed, file intact"
		},
	},
	{
		name: "short_read_then_eof",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "short", When: first(1), Stage: fault.StageComplete, Do: fault.Effect{Short: 1000}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			buf := make([]byte, 8192)
			off := int64(len(e.content) - 5000)
			r := e.submit(t, uring.Request{Op: uring.OpRead, Fd: e.fd, Off: off, Buf: buf})
			expectResult(t, r[0], 5000, 0) // N < length and no error: EOF
			if !bytes.Equal(buf[:5000], e.content[off:]) {
				t.Fatal("wrong bytes")
			}
			return "short read resumed up to EOF: N 5000 of 8192, Err nil"
		},
	},
	{
		name: "read_of_0_bytes_is_eof",
		run: func(t *testing.T, e *policyEnv, _ string) string {
			n := int64(len(e.content))
			r := e.submit(t,
				uring.Request{Op: uring.OpRead, Fd: e.fd, Off: n, Buf: make([]byte, 10)},
				uring.Request{Op: uring.OpRead, Fd: e.fd, Off: n + 1<<20, Buf: make([]byte, 10)},
				uring.Request{Op: uring.OpReadv, Fd: e.fd, Off: n - 3, Vecs: [][]byte{make([]byte, 2), make([]byte, 2)}})
			expectResult(t, r[0], 0, 0)
			expectResult(t, r[1], 0, 0)
			expectResult(t, r[2], 3, 0)
			return "reads at, past and across EOF end with N < length and Err nil"
		},
	},
	{
		name: "zero_byte_write_retried",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "zero", When: first(3), Stage: fault.StageComplete, Do: fault.Effect{ShortWrite0: true}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			r := e.submit(t, uring.Request{Op: uring.OpWrite, Fd: e.fd, Off: 0, Buf: []byte("hello")})
			expectResult(t, r[0], 5, 0)
			if s := e.be.Stats(); s.ShortResubmits != 3 {
				t.Fatalf("ShortResubmits %d, want 3", s.ShortResubmits)
			}
			return "3 zero-byte writes retried"
		},
	},
	{
		name: "zero_byte_write_bounded_EIO",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "zero", When: fault.Writes(), Stage: fault.StageComplete, Do: fault.Effect{ShortWrite0: true}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			r := e.submit(t, uring.Request{Op: uring.OpWrite, Fd: e.fd, Off: 0, Buf: []byte("hello")})
			expectResult(t, r[0], 0, syscall.EIO)
			if e.in.Fired() != uring.MaxRetriesForTest+1 {
				t.Fatalf("%d attempts, want maxRetries+1 = %d", e.in.Fired(), uring.MaxRetriesForTest+1)
			}
			return fmt.Sprintf("EIO after %d zero-byte writes", e.in.Fired())
		},
	},
	{
		name: "cqe_EINTR_bounded",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "eintr", When: fault.Any(), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.EINTR}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			r := e.submit(t, uring.Request{Op: uring.OpFsync, Fd: e.fd})
			expectResult(t, r[0], 0, syscall.EINTR)
			s := e.be.Stats()
			if s.RetryCQEEINTR != uring.MaxRetriesForTest || e.in.Fired() != uring.MaxRetriesForTest+1 {
				t.Fatalf("RetryCQEEINTR %d, faults %d", s.RetryCQEEINTR, e.in.Fired())
			}
			return fmt.Sprintf("EINTR returned after %d resubmissions", s.RetryCQEEINTR)
		},
	},
	{
		name: "issue_errno_leaves_file_untouched",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "eio", When: fault.Writes(), Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EIO}})
			in.Add(fault.Rule{Name: "enospc", When: fault.OnOps(uring.OpFallocate), Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.ENOSPC}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			r := e.submit(t,
				uring.Request{Op: uring.OpWrite, Fd: e.fd, Off: 0, Buf: []byte("must not land")},
				uring.Request{Op: uring.OpWritev, Fd: e.fd, Off: 1 << 20, Vecs: [][]byte{[]byte("nor this")}},
				uring.Request{Op: uring.OpFallocate, Fd: e.fd, Off: 0, Len: 1 << 20},
				uring.Request{Op: uring.OpRead, Fd: e.fd, Off: 0, Buf: make([]byte, 100)})
			expectResult(t, r[0], 0, syscall.EIO)
			expectResult(t, r[1], 0, syscall.EIO)
			expectResult(t, r[2], 0, syscall.ENOSPC)
			expectResult(t, r[3], 100, 0)
			if got := e.file(t); !bytes.Equal(got, e.content) {
				t.Fatal("a request failed at issue changed the file")
			}
			return "writes failed at issue: file and size untouched"
		},
	},
	{
		name: "issue_EINTR_retried",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "eintr", When: first(2), Stage: fault.StageIssue, Do: fault.Effect{Errno: syscall.EINTR}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			r := e.submit(t, uring.Request{Op: uring.OpWrite, Fd: e.fd, Off: 0, Buf: []byte("landed")})
			expectResult(t, r[0], 6, 0)
			if got := e.file(t); string(got[:6]) != "landed" {
				t.Fatal("write lost")
			}
			return "2 EINTR at issue retried"
		},
	},
	{
		name: "completion_errno_reported",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "eio", When: fault.InRange(8192, 12288), Stage: fault.StageComplete, Do: fault.Effect{Errno: syscall.EIO}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			r := e.submit(t,
				uring.Request{Op: uring.OpRead, Fd: e.fd, Off: 0, Buf: make([]byte, 4096)},
				uring.Request{Op: uring.OpRead, Fd: e.fd, Off: 8192, Buf: make([]byte, 4096)},
				uring.Request{Op: uring.OpRead, Fd: e.fd, Off: 16384, Buf: make([]byte, 4096)})
			expectResult(t, r[0], 4096, 0)
			expectResult(t, r[1], 0, syscall.EIO)
			expectResult(t, r[2], 4096, 0)
			if s := e.be.Stats(); s.Errors != 1 {
				t.Fatalf("Errors %d, want 1", s.Errors)
			}
			return "EIO on the one request in range; its neighbours in the batch succeed"
		},
	},
	{
		name: "delayed_completion",
		setup: func(in *fault.Injector) {
			in.Add(fault.Rule{Name: "slow", When: fault.Reads(), Stage: fault.StageComplete, Do: fault.Effect{Delay: 5 * time.Millisecond}})
		},
		run: func(t *testing.T, e *policyEnv, _ string) string {
			var wg sync.WaitGroup
			for g := range 4 {
				wg.Go(func() {
					buf := make([]byte, 1000)
					reqs := []uring.Request{{Op: uring.OpRead, Fd: e.fd, Off: int64(g) * 1000, Buf: buf}}
					if err := e.be.Submit(reqs); err != nil || reqs[0].N != 1000 || !bytes.Equal(buf, e.content[g*1000:g*1000+1000]) {
						t.Errorf("delayed read: %v (%d, %v)", err, reqs[0].N, reqs[0].Err)
					}
				})
			}
			wg.Wait()
			if ev := e.in.Events(); len(ev) != 4 || ev[0].Rule != "slow" {
				t.Fatalf("events %v", ev)
			}
			return "4 concurrent delayed reads correct"
		},
	},
}

// RandomBytes is shorthand for the package's seeded generator.
func RandomBytes(seed uint64, n int) []byte { return uring.RandomBytesForTest(seed, n) }

func TestErrorPolicy(t *testing.T) {
	soak := os.Getenv("RINGFS_SOAK") != ""
	content := RandomBytes(20, 64<<10)
	for _, name := range uring.BackendsForTest() {
		t.Run("backend="+name, func(t *testing.T) {
			for _, row := range policyRows {
				t.Run(row.name, func(t *testing.T) {
					if row.soak && !soak && name != uring.BackendPsync {
						t.Skip("waits out maxBusyRetries of backoff; set RINGFS_SOAK=1")
					}
					path := filepath.Join(t.TempDir(), "f")
					if err := os.WriteFile(path, content, 0o644); err != nil {
						t.Fatal(err)
					}
					f, err := os.OpenFile(path, os.O_RDWR, 0)
					if err != nil {
						t.Fatal(err)
					}
					defer f.Close()
					in := fault.New()
					if row.setup != nil {
						row.setup(in)
					}
					be := uring.OpenForTest(t, name, uring.Options{Injector: in})
					e := &policyEnv{be: be, in: in, f: f, fd: int32(f.Fd()), content: content}
					t.Logf("%s: %s (faults injected: %d)", name, row.run(t, e, name), in.Fired())
				})
			}
		})
	}
}
