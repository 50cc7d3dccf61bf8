//go:build linux

package engine

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Pieces shared by the fault, crash and exerciser rows of the
// reliability matrix: byte-range sets for models that must stay fast
// under the race detector, the leak and race figures, a watchdog that
// turns a hang into a failure with every goroutine's stack, and sizes
// that grow with RINGFS_SOAK.

// byteSet marks bytes of a file: flag[i] is 1 when byte i is in the set.
// Its operations work on runs (memmove, IndexByte), not byte loops, so
// that models of whole files stay cheap under -race.
type byteSet []byte

var onesPage = bytes.Repeat([]byte{1}, 1<<16)

// fill sets flag[a:b] to v.
func fillFlags(flag []byte, v byte) {
	if v == 0 {
		clear(flag)
		return
	}
	for len(flag) > 0 {
		flag = flag[copy(flag, onesPage):]
	}
}

// resize makes the set n bytes long; new bytes take v.
func (s *byteSet) resize(n int64, v byte) {
	old := int64(len(*s))
	if n <= old {
		*s = (*s)[:n]
		return
	}
	*s = append(*s, make([]byte, n-old)...)
	fillFlags((*s)[old:], v)
}

// set sets [a, b) (clipped to the set's length) to v.
func (s byteSet) set(a, b int64, v byte) {
	a, b = max(a, 0), min(b, int64(len(s)))
	if a < b {
		fillFlags(s[a:b], v)
	}
}

// runs calls fn for every maximal run [a, b) of bytes in the set.
func (s byteSet) runs(fn func(a, b int64)) {
	for i := 0; i < len(s); {
		j := bytes.IndexByte(s[i:], 1)
		if j < 0 {
			return
		}
		a := i + j
		k := bytes.IndexByte(s[a:], 0)
		b := len(s)
		if k >= 0 {
			b = a + k
		}
		fn(int64(a), int64(b))
		i = b
	}
}

// count returns the number of bytes in the set.
func (s byteSet) count() int64 {
	var n int64
	s.runs(func(a, b int64) { n += b - a })
	return n
}

// firstDiff compares got with want on the bytes of s (got may be shorter:
// bytes past its end count as different) and returns the first differing
// offset and the number of differing bytes in the set, or -1, 0.
func (s byteSet) firstDiff(got, want []byte) (int64, int64) {
	first, n := int64(-1), int64(0)
	s.runs(func(a, b int64) {
		for a < b {
			end := min(b, int64(len(got)))
			if a >= end {
				if first < 0 {
					first = a
				}
				n += b - a
				return
			}
			if bytes.Equal(got[a:end], want[a:end]) {
				a = end
				continue
			}
			for i := a; i < end; i++ {
				if got[i] != want[i] {
					if first < 0 {
						first = i
					}
					n++
				}
			}
			a = end
		}
	})
	return first, n
}

// rowOutcome records the races and leaks figures of a row, and any
// other figures named whose breach fails the row (acked_bytes_lost: every
// check of acknowledged bytes fails the row at the first byte missing),
// once its cleanups (the leak check among them) have run: 0 when the row
// passed, -1 (unknown) when it failed. It must be called before
// checkLeaks, so that its cleanup runs after the leak check's.
func rowOutcome(t *testing.T, fig *Figures, failsRow ...string) {
	t.Cleanup(func() {
		v := int64(0)
		if t.Failed() {
			v = -1 // unknown: the row failed
		}
		fig.Set("leaks", v)
		if raceEnabled {
			fig.Set("races", v)
		}
		for _, name := range failsRow {
			fig.Set(name, v)
		}
	})
}

// watchdog fails the process with every goroutine's stack and the given
// context when stop is not called within d: a hang becomes a report.
func watchdog(d time.Duration, context func() string) (stop func()) {
	var stopped atomic.Bool
	tm := time.AfterFunc(d, func() {
		if stopped.Load() {
			return
		}
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		panic(fmt.Sprintf("no progress for %v: %s\n\nrings, as the kernel sees them:\n%s\ngoroutines:\n%s", d, context(), uringFdinfo(), buf))
	})
	return func() { stopped.Store(true); tm.Stop() }
}

// uringFdinfo returns /proc/self/fdinfo of every io_uring descriptor of
// the process: the kernel's view of each ring's queues (heads, tails,
// overflowed completions, requests it holds).
func uringFdinfo() string {
	var b strings.Builder
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, ent := range ents {
		if link, _ := os.Readlink("/proc/self/fd/" + ent.Name()); link != "anon_inode:[io_uring]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + ent.Name())
		if err != nil {
			continue
		}
		const max = 8 << 10 // a ring can list many requests
		if len(info) > max {
			info = append(info[:max], "...\n"...)
		}
		fmt.Fprintf(&b, "fd %s:\n%s\n", ent.Name(), info)
	}
	return b.String()
}

// soakFactor is how many times larger tests run under RINGFS_SOAK: for a
// duration d, d ÷ 2 minutes (the matrix takes about two minutes without
// -race at factor 1, so RINGFS_SOAK=10m runs it five times as large, for
// about ten minutes); ten for any other value.
func soakFactor() int {
	v := os.Getenv("RINGFS_SOAK")
	if v == "" {
		return 1
	}
	if d, err := time.ParseDuration(v); err == nil {
		return max(1, int(d/(2*time.Minute)))
	}
	return 10
}

// envInt returns the integer in the environment variable name, or def.
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return n
}

// relDir returns a directory for a row's files: /dev/shm (tmpfs: no
// disk I/O, fsync is free) when usable, else t.TempDir().
func relDir(t testing.TB) string {
	return fsxDir(t, fsxConfig{})
}

// tail returns the last n lines of log, numbered, for failure reports.
func tail(log []string, n int) string {
	var b strings.Builder
	for i := max(0, len(log)-n); i < len(log); i++ {
		fmt.Fprintf(&b, "  %5d %s\n", i, log[i])
	}
	return b.String()
}

// runChildTest runs the test named test of this binary in a child process
// with env added, fails unless it passed, logs the child's lines holding
// logTag, adds to fig the k=v figures of its lines holding figTag, and
// returns how many such lines there were.
func runChildTest(t *testing.T, fig *Figures, test, env, logTag, figTag string) int {
	t.Helper()
	return runChildTestRetry(t, fig, test, env, logTag, figTag, nil)
}

// childAttempts bounds the runs of a child whose failure runChildTestRetry
// is told to retry.
const childAttempts = 3

// runChildTestRetry is runChildTest that runs the child again, up to
// childAttempts times in all, while it fails with output that retry
// accepts (nil: never); the retries are counted in fig as child_retries.
func runChildTestRetry(t *testing.T, fig *Figures, test, env, logTag, figTag string, retry func(out []byte) bool) int {
	t.Helper()
	var out []byte
	var err error
	if retry != nil {
		fig.Add("child_retries", 0)
	}
	for attempt := 1; ; attempt++ {
		cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), env)
		out, err = cmd.CombinedOutput()
		if err == nil || retry == nil || !retry(out) || attempt == childAttempts {
			break
		}
		fig.Add("child_retries", 1)
		t.Logf("child attempt %d failed (%v), running it again:\n%s", attempt, err, tail(strings.Split(string(out), "\n"), 8))
	}
	if err != nil {
		t.Fatalf("child failed (%v):\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+test)) {
		t.Fatalf("child did not run the test:\n%s", out)
	}
	reports := 0
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, logTag) {
			t.Log(strings.TrimSpace(line))
		}
		if _, rest, ok := strings.Cut(line, figTag); ok {
			reports++
			for _, kv := range strings.Fields(rest) {
				k, v, _ := strings.Cut(kv, "=")
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					t.Fatalf("child figure %q: %v", kv, err)
				}
				fig.Add(k, n)
			}
		}
	}
	return reports
}

// TestChildRetry checks runChildTestRetry: a child that fails twice with
// output the predicate accepts passes at its third run, with two retries
// counted, and its figures are taken from the run that passed.
func TestChildRetry(t *testing.T) {
	dir := t.TempDir()
	var fig Figures
	reports := runChildTestRetry(t, &fig, "TestChildRetryChild", "RINGFS_RETRY_CHILD="+dir, "retry-child:", "retry-figures:",
		func(out []byte) bool { return bytes.Contains(out, []byte("retry-child: transient")) })
	got := fig.snapshot()
	if reports != 1 || got["child_retries"] != 2 || got["attempt"] != 3 {
		t.Fatalf("%d reports, figures %v; want 1 report, child_retries=2, attempt=3", reports, got)
	}
}

// TestChildRetryChild is TestChildRetry's child (it skips unless run by
// it): it counts its runs in a file and fails, saying the failure is
// transient, at its first two.
func TestChildRetryChild(t *testing.T) {
	dir := os.Getenv("RINGFS_RETRY_CHILD")
	if dir == "" {
		t.Skip("run by TestChildRetry")
	}
	path := filepath.Join(dir, "runs")
	b, _ := os.ReadFile(path)
	runs := len(b) + 1
	if err := os.WriteFile(path, append(b, 'x'), 0o600); err != nil {
		t.Fatal(err)
	}
	if runs < childAttempts {
		t.Fatalf("retry-child: transient failure at run %d", runs)
	}
	t.Logf("retry-figures: attempt=%d", runs)
}
