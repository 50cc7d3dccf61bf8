//go:build linux

package fault

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ringfs/ringfs/uring"
)

// matches runs p over infos and returns which matched.
func matches(p Predicate, infos []Info) []bool {
	out := make([]bool, len(infos))
	for i, in := range infos {
		out[i] = p(in)
	}
	return out
}

func TestPredicates(t *testing.T) {
	rd := Info{Op: uring.OpRead, Fd: 3, Off: 0, Len: 4096}
	wr := Info{Op: uring.OpWrite, Fd: 4, Off: 4096, Len: 100}
	fs := Info{Op: uring.OpFsync, Fd: 3}
	sfr := Info{Op: uring.OpSyncFileRange, Fd: 5, Off: 10, Len: 0}
	rv := Info{Op: uring.OpReadv, Fd: 4, Off: 8192, Len: 10}
	wf := Info{Op: uring.OpWriteFixed, Fd: 3, Off: 100, Len: 1}
	seq := []Info{rd, wr, fs, sfr, rv, wf}
	T, F := true, false
	cases := []struct {
		name string
		p    Predicate
		want []bool
	}{
		{"Any", Any(), []bool{T, T, T, T, T, T}},
		{"Nth_3", Nth(3), []bool{F, F, T, F, F, F}},
		{"Nth_0_never", Nth(0), []bool{F, F, F, F, F, F}},
		{"From_4", From(4), []bool{F, F, F, T, T, T}},
		{"From_1", From(1), []bool{T, T, T, T, T, T}},
		{"OnOps_read_fsync", OnOps(uring.OpRead, uring.OpFsync), []bool{T, F, T, F, F, F}},
		{"Reads", Reads(), []bool{T, F, F, F, T, F}},
		{"Writes", Writes(), []bool{F, T, F, F, F, T}},
		{"Syncs", Syncs(), []bool{F, F, T, T, F, F}},
		{"OnFd_3", OnFd(3), []bool{T, F, T, F, F, T}},
		// [4096, 4196) overlaps wr only; a zero-length op counts as 1 byte.
		{"InRange_wr", InRange(4096, 4196), []bool{F, T, F, F, F, F}},
		{"InRange_edge_exclusive", InRange(4196, 8192), []bool{F, F, F, F, F, F}},
		{"InRange_zero_length_op", InRange(10, 11), []bool{T, F, F, T, F, F}},
		{"InRange_last_byte", InRange(4095, 4096), []bool{T, F, F, F, F, F}},
		{"And_fd3_write", And(OnFd(3), Writes()), []bool{F, F, F, F, F, T}},
		// And stops at the first false: Nth counts only fd-4 operations.
		{"And_counts_only_accepted", And(OnFd(4), Nth(2)), []bool{F, F, F, F, T, F}},
		{"Or_fsync_or_fd5", Or(OnOps(uring.OpFsync), OnFd(5)), []bool{F, F, T, T, F, F}},
		{"Or_empty_never", Or(), []bool{F, F, F, F, F, F}},
		{"And_empty_always", And(), []bool{T, T, T, T, T, T}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := matches(c.p, seq); fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Fatalf("got %v, want %v", got, c.want)
			}
		})
	}
	t.Logf("%d predicate rows checked", len(cases))
}

func TestRandomIsSeeded(t *testing.T) {
	const n = 20000
	run := func(seed int64, p float64) []bool {
		infos := make([]Info, n)
		return matches(Random(seed, p), infos)
	}
	a, b, c := run(7, 0.3), run(7, 0.3), run(8, 0.3)
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatal("same seed, different sequence")
	}
	if fmt.Sprint(a) == fmt.Sprint(c) {
		t.Fatal("different seeds, same sequence")
	}
	hits := 0
	for _, m := range a {
		if m {
			hits++
		}
	}
	if hits < n*27/100 || hits > n*33/100 {
		t.Fatalf("%d of %d matched at p=0.3", hits, n)
	}
	for _, p := range []float64{0, 1} {
		for i, m := range run(1, p) {
			if m != (p == 1) {
				t.Fatalf("p=%v: op %d matched=%v", p, i, m)
			}
		}
	}
	t.Logf("seed 7 p=0.3: %d of %d matched, reproducibly", hits, n)
}

func TestEffects(t *testing.T) {
	read := &uring.Request{Op: uring.OpRead, Fd: 3, Buf: make([]byte, 4096)}
	write := &uring.Request{Op: uring.OpWritev, Fd: 3, Vecs: [][]byte{make([]byte, 100), make([]byte, 50)}}
	cases := []struct {
		name    string
		rule    Rule
		req     *uring.Request
		res     int32 // kernel result given to Complete
		issue   int32 // want from Issue (when failIss)
		failIss bool
		out     int32 // want from Complete
	}{
		{name: "issue_errno", rule: Rule{When: Any(), Stage: StageIssue, Do: Effect{Errno: syscall.EIO}},
			req: read, res: 4096, issue: -int32(syscall.EIO), failIss: true, out: 4096},
		{name: "issue_rule_leaves_completion", rule: Rule{When: Any(), Stage: StageIssue, Do: Effect{Errno: syscall.ENOSPC}},
			req: write, res: 150, issue: -int32(syscall.ENOSPC), failIss: true, out: 150},
		{name: "issue_delay_only_passes", rule: Rule{When: Any(), Stage: StageIssue, Do: Effect{Delay: time.Millisecond}},
			req: read, res: 4096, out: 4096},
		{name: "complete_errno", rule: Rule{When: Any(), Stage: StageComplete, Do: Effect{Errno: syscall.EIO}},
			req: read, res: 4096, out: -int32(syscall.EIO)},
		{name: "complete_errno_replaces_error", rule: Rule{When: Any(), Stage: StageComplete, Do: Effect{Errno: syscall.EINTR}},
			req: read, res: -int32(syscall.EBADF), out: -int32(syscall.EINTR)},
		{name: "short", rule: Rule{When: Any(), Stage: StageComplete, Do: Effect{Short: 1000}},
			req: read, res: 4096, out: 1000},
		{name: "short_not_longer_than_result", rule: Rule{When: Any(), Stage: StageComplete, Do: Effect{Short: 1000}},
			req: read, res: 500, out: 500},
		{name: "short_leaves_errors", rule: Rule{When: Any(), Stage: StageComplete, Do: Effect{Short: 1}},
			req: read, res: -int32(syscall.EIO), out: -int32(syscall.EIO)},
		{name: "zero_write", rule: Rule{When: Any(), Stage: StageComplete, Do: Effect{ShortWrite0: true}},
			req: write, res: 150, out: 0},
		{name: "zero_write_ignores_reads", rule: Rule{When: Any(), Stage: StageComplete, Do: Effect{ShortWrite0: true}},
			req: read, res: 4096, out: 4096},
		{name: "complete_delay_keeps_result", rule: Rule{When: Any(), Stage: StageComplete, Do: Effect{Delay: time.Millisecond}},
			req: read, res: 4096, out: 4096},
		{name: "no_match", rule: Rule{When: OnFd(9), Stage: StageComplete, Do: Effect{Errno: syscall.EIO}},
			req: read, res: 4096, out: 4096},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.rule.Name = c.name
			in := New(c.rule)
			res, fail := in.Issue(c.req)
			if fail != c.failIss || (fail && res != c.issue) {
				t.Fatalf("Issue = (%d, %v), want (%d, %v)", res, fail, c.issue, c.failIss)
			}
			if out := in.Complete(c.req, c.res); out != c.out {
				t.Fatalf("Complete(%d) = %d, want %d", c.res, out, c.out)
			}
		})
	}
	t.Logf("%d effect rows checked", len(cases))
}

func TestInjectorBookkeeping(t *testing.T) {
	req := &uring.Request{Op: uring.OpRead, Fd: 3, Off: 10, Buf: make([]byte, 7)}
	in := New(
		Rule{Name: "first", When: Nth(1), Stage: StageComplete, Do: Effect{Errno: syscall.EIO}},
		Rule{Name: "second", When: Any(), Stage: StageComplete, Do: Effect{Errno: syscall.ENOSPC}},
	)
	// The first matching rule acts.
	if got := in.Complete(req, 7); got != -int32(syscall.EIO) {
		t.Fatalf("first completion: %d", got)
	}
	if got := in.Complete(req, 7); got != -int32(syscall.ENOSPC) {
		t.Fatalf("second completion: %d", got)
	}
	ev := in.Events()
	if in.Fired() != 2 || len(ev) != 2 || ev[0].Rule != "first" || ev[1].Rule != "second" {
		t.Fatalf("fired %d, events %v", in.Fired(), ev)
	}
	if s := ev[0].String(); s != "first read fd=3 off=10 len=7 -> -5" {
		t.Fatalf("event renders as %q", s)
	}
	// Heal stops injection; Reset removes the rules and re-enables it.
	in.Heal()
	if got := in.Complete(req, 7); got != 7 {
		t.Fatalf("healed: %d", got)
	}
	in.Reset()
	if got := in.Complete(req, 7); got != 7 {
		t.Fatalf("reset: %d", got)
	}
	in.Add(Rule{Name: "again", When: Any(), Stage: StageComplete, Do: Effect{Errno: syscall.EIO}})
	if got := in.Complete(req, 7); got != -int32(syscall.EIO) {
		t.Fatalf("after Reset and Add: %d", got)
	}
	// Enter rules see 1-based call numbers.
	in.AddEnter(EnterRule{Name: "odd", When: func(c uint64) bool { return c%2 == 1 }, Errno: syscall.EINTR})
	var got []syscall.Errno
	for range 4 {
		got = append(got, in.Enter())
	}
	if fmt.Sprint(got) != fmt.Sprint([]syscall.Errno{syscall.EINTR, 0, syscall.EINTR, 0}) {
		t.Fatalf("Enter results %v", got)
	}
	// The event log keeps the most recent maxEvents.
	for range maxEvents + 10 {
		in.Complete(req, 7)
	}
	if n := len(in.Events()); n != maxEvents {
		t.Fatalf("event log holds %d, want %d", n, maxEvents)
	}
	t.Logf("%d faults fired; event log capped at %d", in.Fired(), maxEvents)
}

// TestConcurrentUse exercises an Injector from many goroutines (under
// -race): stateful predicates stay consistent, Nth fires exactly once.
func TestConcurrentUse(t *testing.T) {
	in := New(Rule{Name: "once", When: Nth(500), Stage: StageComplete, Do: Effect{Errno: syscall.EIO}})
	in.AddEnter(EnterRule{Name: "e", When: func(c uint64) bool { return c == 77 }, Errno: syscall.EAGAIN})
	req := &uring.Request{Op: uring.OpRead, Buf: make([]byte, 1)}
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed, enterFailed := 0, 0
	for range 8 {
		wg.Go(func() {
			for range 250 {
				if in.Complete(req, 1) < 0 {
					mu.Lock()
					failed++
					mu.Unlock()
				}
				if in.Enter() != 0 {
					mu.Lock()
					enterFailed++
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if failed != 1 || enterFailed != 1 || in.Fired() != 2 {
		t.Fatalf("Nth fired %d times, enter rule %d times, Fired %d", failed, enterFailed, in.Fired())
	}
	t.Log("2000 completions and enters from 8 goroutines: Nth(500) and call 77 fired once each")
}

// TestThroughBackend drives the psync backend: only the chosen fd fails,
// the other file's writes land.
func TestThroughBackend(t *testing.T) {
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	a, b := open("a"), open("b")
	in := New(Rule{Name: "a-fails", When: And(OnFd(int32(a.Fd())), Writes()), Stage: StageIssue, Do: Effect{Errno: syscall.ENOSPC}})
	be, err := uring.New(uring.Options{Backend: uring.BackendPsync, Injector: in})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	reqs := []uring.Request{
		{Op: uring.OpWrite, Fd: int32(a.Fd()), Buf: []byte("aaaa")},
		{Op: uring.OpWrite, Fd: int32(b.Fd()), Buf: []byte("bbbb")},
	}
	if err := be.Submit(reqs); err != nil {
		t.Fatal(err)
	}
	if reqs[0].Err != syscall.ENOSPC || reqs[1].Err != nil || reqs[1].N != 4 {
		t.Fatalf("results %v / (%d, %v)", reqs[0].Err, reqs[1].N, reqs[1].Err)
	}
	sa, _ := a.Stat()
	sb, _ := b.Stat()
	if sa.Size() != 0 || sb.Size() != 4 {
		t.Fatalf("sizes %d and %d, want 0 and 4", sa.Size(), sb.Size())
	}
	t.Logf("fd filter: 1 of 2 writes failed with ENOSPC, the file untouched")
}
