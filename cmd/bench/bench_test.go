//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets a test run bench as a child process: the test binary
// started again with RINGFS_BENCH_AS_MAIN=1 is the command. With
// RINGFS_BENCH_FSIZE=N it first sets its RLIMIT_FSIZE to N bytes, so
// that writing a file past N fails with EFBIG (Go ignores SIGXFSZ).
func TestMain(m *testing.M) {
	if os.Getenv("RINGFS_BENCH_AS_MAIN") == "1" {
		if s := os.Getenv("RINGFS_BENCH_FSIZE"); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err == nil {
				err = unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: n, Max: n})
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "RINGFS_BENCH_FSIZE: %v\n", err)
				os.Exit(3)
			}
		}
		main()
	}
	os.Exit(m.Run())
}

// benchCommand is bench run with args as a child process (see TestMain),
// in dir and with TMPDIR=dir, and env added to its environment.
func benchCommand(dir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RINGFS_BENCH_AS_MAIN=1", "TMPDIR="+dir)
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// scratchFiles lists the files named like bench's temporary file in dir.
func scratchFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "ringfs-bench-*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestUsageErrors: a bad command line exits with status 2 and says what
// is wrong, before any file is written.
func TestUsageErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown backend", []string{"--backends", "ringfs,nosuch"}, `unknown backend "nosuch"`},
		{"unknown workload", []string{"--workloads", "randread-cold"}, `unknown workload "randread-cold"`},
		{"known names listed", []string{"--backends", "x"}, "known: ringfs, ringfs-writethrough"},
		{"empty backend list", []string{"--backends", ","}, "--backends names no backend"},
		{"bad size", []string{"--size", "lots"}, `--size "lots": want a size`},
		{"size too small", []string{"--size", "1MiB"}, "below the minimum"},
		{"bad working set", []string{"--working-set", "12x"}, "--working-set"},
		{"negative duration", []string{"--duration", "-1s"}, "negative"},
		{"bad duration", []string{"--duration", "soon"}, "invalid value"},
		{"jobs zero", []string{"--jobs", "0"}, "--jobs 0 is out of range"},
		{"two outputs", []string{"--json", "--gobench"}, "pick one"},
		{"keep with file", []string{"--keep", "--file", "/tmp/x"}, "--keep is for the temporary file"},
		{"positional", []string{"extra"}, `unexpected argument "extra"`},
		{"unknown flag", []string{"--fast"}, "flag provided but not defined: -fast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != exitUsage {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, exitUsage, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr does not say %q:\n%s", tt.want, stderr.String())
			}
			if want := "bench: " + tt.want; !strings.HasPrefix(stderr.String(), "bench: ") || strings.Count(stderr.String(), "\n") != 2 {
				t.Errorf("stderr is not %q and a pointer to -h:\n%s", want, stderr.String())
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout not empty: %q", stdout.String())
			}
		})
	}
}

// TestHelp: -h and --help print the help on stdout and exit 0, as fsctl
// does; the help says what the stats socket's directory must be, which
// the socket refuses otherwise.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{arg}, &stdout, &stderr)
		if code != exitOK || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "usage: bench") ||
			!strings.Contains(stdout.String(), "-working-set") {
			t.Errorf("%s: exit status %d, stdout %q, stderr %q; want 0 and the help on stdout only", arg, code, stdout.String(), stderr.String())
		}
		if !strings.Contains(stdout.String(), "its directory must be yours and not group- or world-writable") {
			t.Errorf("%s: the help does not say what the stats socket's directory must be", arg)
		}
	}
	// What the help says is what the socket checks.
	t.Setenv("TMPDIR", t.TempDir())
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--stats-socket", filepath.Join(open, "s")}, &stdout, &stderr)
	if code != exitError || !strings.Contains(stderr.String(), "not group/world-writable") {
		t.Errorf("a socket in a world-writable directory: exit status %d, stderr %q", code, stderr.String())
	}
}

// TestOutputsFailEarly: a --plot file or a --stats-socket that cannot
// be created fails the run before it starts (exit status 1, no scratch
// file written, no table), and a plot file whose run fails is not left
// behind empty.
func TestOutputsFailEarly(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	private := t.TempDir() // mode 0700, as a stats socket's directory must be
	taken := filepath.Join(private, "taken")
	if err := os.WriteFile(taken, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"plot in a missing directory", []string{"--plot", filepath.Join(tmp, "no", "such", "dir.svg")}, "bench: plot: create " + filepath.Join(tmp, "no", "such", "dir.svg")},
		{"plot on a directory", []string{"--plot", private}, "bench: plot: create " + private + ": is a directory"},
		{"stats socket on a file", []string{"--stats-socket", taken}, "bench: stats socket: listen"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"--quick", "--backends", "os"}, c.args...), &stdout, &stderr)
		if code != exitError || !strings.Contains(stderr.String(), c.want) || stdout.Len() != 0 {
			t.Errorf("%s: exit status %d, stdout %q, stderr %q; want 1, nothing, and %q", c.name, code, stdout.String(), stderr.String(), c.want)
		}
		if ents, _ := os.ReadDir(tmp); len(ents) != 0 || strings.Contains(stderr.String(), "test data") {
			t.Errorf("%s: the scratch file was written first: %s holds %d entries; stderr %q", c.name, tmp, len(ents), stderr.String())
		}
	}
	if b, err := os.ReadFile(taken); err != nil || string(b) != "keep me" {
		t.Errorf("the file in the socket's place changed: %q, %v", b, err)
	}
	plot := filepath.Join(tmp, "p.svg")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--backends", "os", "--file", tmp, "--plot", plot}, &stdout, &stderr)
	if code != exitUsage {
		t.Errorf("--file naming a directory: exit status %d, stderr %q", code, stderr.String())
	}
	if _, err := os.Stat(plot); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a run that failed left its plot file: %v", err)
	}
}

// TestCheckedBeforeCreating: a command line that bench refuses only
// after looking at the file, the working set or the workloads is still
// refused before any file is created or written, and before --cpuprofile
// is overwritten.
func TestCheckedBeforeCreating(t *testing.T) {
	notOurs := filepath.Join(t.TempDir(), "notours")
	if err := os.WriteFile(notOurs, bytes.Repeat([]byte("keep me "), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"working set larger than the file", []string{"--size", "16MiB", "--working-set", "32MiB", "--backends", "os"},
			"--working-set 32 MiB is larger than the file"},
		{"new --file, working set larger", []string{"--file", "NEW", "--size", "16MiB", "--working-set", "32MiB", "--backends", "os"},
			"--working-set 32 MiB is larger than the file"},
		{"no backend applies", []string{"--size", "16MiB", "--backends", "mmap", "--workloads", "randread-direct"},
			"no backend applies"},
		{"--file not ours", []string{"--file", notOurs, "--backends", "os"}, "--overwrite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			out := t.TempDir()
			profile := filepath.Join(out, "cpu.prof")
			if err := os.WriteFile(profile, []byte("an earlier profile"), 0o644); err != nil {
				t.Fatal(err)
			}
			newFile := filepath.Join(out, "new.dat")
			args := []string{"--cpuprofile", profile}
			for _, a := range tt.args {
				if a == "NEW" {
					a = newFile
				}
				args = append(args, a)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit status %d, stderr %q; want %d and %q", code, stderr.String(), exitUsage, tt.want)
			}
			if strings.Contains(stderr.String(), "test data") {
				t.Errorf("the scratch file was written first: %q", stderr.String())
			}
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("TMPDIR holds %d entries, want none: %s", len(ents), ents[0].Name())
			}
			if _, err := os.Stat(newFile); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("--file %s was created: %v", newFile, err)
			}
			if b, _ := os.ReadFile(profile); string(b) != "an earlier profile" {
				t.Errorf("--cpuprofile was overwritten: %d bytes", len(b))
			}
		})
	}
}

// TestSetupFailureRemovesWhatItCreated: when writing the scratch file
// fails (here the file size limit makes the first truncate fail, as a
// full disk or a --size past the file system's largest file does), a
// file bench created is removed, even with --keep, and a --file that
// existed before the run is kept.
func TestSetupFailureRemovesWhatItCreated(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "existing.dat")
	if err := os.WriteFile(existing, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r := &runner{path: existing, size: 16 << 20}
	if err := r.fill(context.Background(), r.size); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		file string // the --file, if any
		kept bool   // whether it must still exist
	}{
		{"temporary file", nil, "", false},
		{"temporary file with --keep", []string{"--keep"}, "", false},
		{"new --file", []string{"--file", "NEW"}, "NEW", false},
		{"existing --file", []string{"--file", existing, "--size", "32MiB"}, existing, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			newFile := filepath.Join(dir, "new.dat")
			args := []string{"--size", "16MiB", "--working-set", "1MiB", "--backends", "os", "--workloads", "seqread", "--duration", "1ms"}
			for _, a := range tt.args {
				args = append(args, strings.Replace(a, "NEW", newFile, 1))
			}
			file := strings.Replace(tt.file, "NEW", newFile, 1)
			cmd := benchCommand(dir, []string{"RINGFS_BENCH_FSIZE=" + strconv.Itoa(8<<20)}, args...)
			out, err := cmd.CombinedOutput()
			if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != exitError || !strings.Contains(string(out), "file too large") {
				t.Fatalf("bench: %v, want exit status 1 and EFBIG:\n%s", err, out)
			}
			if left := scratchFiles(t, dir); len(left) != 0 {
				t.Errorf("scratch file left behind: %v", left)
			}
			if file != "" {
				_, err := os.Stat(file)
				if exists := err == nil; exists != tt.kept {
					t.Errorf("--file %s exists: %v, want %v", file, exists, tt.kept)
				}
			}
		})
	}
}

// cancelOn is a log writer that cancels a run when a line it is given
// contains a string.
type cancelOn struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	s      string
	cancel func()
}

func (c *cancelOn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if bytes.Contains(p, []byte(c.s)) {
		c.cancel()
	}
	return c.buf.Write(p)
}

func (c *cancelOn) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// TestFailedRunKeepsOldPlot: a run that fails, whether on its command
// line, in its setup or interrupted while its cells run, writes no plot and leaves the
// file that was at the --plot path byte for byte, with no temporary file
// beside it.
func TestFailedRunKeepsOldPlot(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	notOurs := filepath.Join(t.TempDir(), "notours")
	if err := os.WriteFile(notOurs, bytes.Repeat([]byte("keep me "), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	old := []byte("<svg>old</svg>\n")
	tests := []struct {
		name     string
		args     []string
		cancelOn string // cancel the run when the log says this
	}{
		{"usage error", []string{"--file", notOurs, "--backends", "os"}, ""},
		{"setup failure", []string{"--file", filepath.Join(notOurs+".d", "x.dat"), "--backends", "os"}, ""},
		{"interrupted", []string{"--size", "16MiB", "--working-set", "1MiB", "--backends", "os",
			"--workloads", "seqread,randwrite", "--duration", "50ms"}, "trace: warm os"},
	}
	defer func(was bool) { trace = was }(trace)
	trace = true // the trace lines mark when the cells run
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			plot := filepath.Join(dir, "old.svg")
			if err := os.WriteFile(plot, old, 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			stderr := &cancelOn{s: tt.cancelOn, cancel: func() {}}
			if tt.cancelOn != "" {
				stderr.cancel = cancel
			}
			var stdout bytes.Buffer
			code := run(ctx, append(tt.args, "--plot", plot), &stdout, stderr)
			if code == exitOK {
				t.Fatalf("the run succeeded; stderr:\n%s", stderr.String())
			}
			if tt.cancelOn != "" && !strings.Contains(stderr.String(), "bench: interrupted") {
				t.Errorf("the run was not interrupted; stderr:\n%s", stderr.String())
			}
			if b, err := os.ReadFile(plot); !bytes.Equal(b, old) {
				t.Errorf("the old plot changed: %q, %v", b, err)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("%s holds %d entries, want only old.svg", dir, len(ents))
			}
		})
	}
}

// TestSignalWhileWriting: SIGINT, SIGTERM or SIGHUP (the terminal
// closed) while the scratch file is being written stops the writing
// within moments, removes the file and exits with status 1.
func TestSignalWhileWriting(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			// 4 GiB would take many seconds to write: only a prompt
			// stop ends the run within the deadline below.
			cmd := benchCommand(dir, nil, "--size", "4GiB", "--working-set", "1MiB", "--backends", "os",
				"--workloads", "seqread", "--duration", "1ms")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			lines := make(chan string, 16)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			var log strings.Builder
			for l := range lines {
				log.WriteString(l + "\n")
				if strings.Contains(l, "test data") {
					break
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			sent := time.Now()
			exited := make(chan struct{})
			go func() {
				for l := range lines {
					log.WriteString(l + "\n")
				}
				close(exited)
			}()
			select {
			case <-exited:
			case <-time.After(3 * time.Second):
				cmd.Process.Kill()
				<-exited
				t.Fatalf("bench still ran 3 s after %v; stderr:\n%s", sig, log.String())
			}
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != exitError || !strings.Contains(log.String(), "interrupted") {
				t.Errorf("exit status %d after %v, want 1 and a word of it; stderr:\n%s", code, time.Since(sent), log.String())
			}
			if left := scratchFiles(t, dir); len(left) != 0 {
				t.Errorf("scratch file left behind: %v", left)
			}
		})
	}
}

// TestSecondSignal: the first signal cancels the run; a second removes
// the files the run would have removed, and no others, and exits at
// once with status 1.
func TestSecondSignal(t *testing.T) {
	dir := t.TempDir()
	scratch, kept := filepath.Join(dir, "scratch"), filepath.Join(dir, "kept")
	for _, p := range []string{scratch, kept} {
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	forcedExit.add(scratch)
	forcedExit.add(kept)
	forcedExit.drop(kept)
	sigs := make(chan os.Signal, 2)
	canceled := make(chan struct{})
	exited := make(chan int, 1)
	var stderr bytes.Buffer
	go handleSignals(sigs, func() { close(canceled) }, &stderr, func(code int) { exited <- code })
	sigs <- syscall.SIGINT
	<-canceled
	if _, err := os.Stat(scratch); err != nil {
		t.Errorf("the first signal removed the scratch file: %v", err)
	}
	sigs <- syscall.SIGINT
	if code := <-exited; code != exitError {
		t.Errorf("exit status %d, want %d", code, exitError)
	}
	if _, err := os.Stat(scratch); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the scratch file is still there: %v", err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Errorf("a file the run keeps was removed: %v", err)
	}
}

// TestScratchFileMustFit: a scratch file larger than its file system's
// free space is refused before it is created (on tmpfs, writing it would
// first exhaust the machine's memory).
func TestScratchFileMustFit(t *testing.T) {
	for _, file := range []string{"", "new.dat"} {
		dir := t.TempDir()
		t.Setenv("TMPDIR", dir)
		args := []string{"--size", "1PiB", "--working-set", "1MiB", "--backends", "os", "--workloads", "seqread"}
		if file != "" {
			args = append(args, "--file", filepath.Join(dir, file))
		}
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, &stdout, &stderr)
		if code != exitError || !strings.Contains(stderr.String(), "scratch file does not fit in "+dir) ||
			strings.Contains(stderr.String(), "test data") {
			t.Errorf("--file %q: exit status %d, stderr %q; want 1 and that it does not fit, before writing", file, code, stderr.String())
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("--file %q: %s holds %s", file, dir, ents[0].Name())
		}
	}
}

// TestUnavailableBackend: naming a backend this binary or machine lacks
// is a usage error too.
func TestUnavailableBackend(t *testing.T) {
	r := &runner{cfg: &config{}}
	if ok, _ := r.available(backendByName("iouringgo")); ok {
		t.Skip("built with the iouringgo backend")
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--backends", "iouringgo"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "-tags iouringgo -ldflags=-checklinkname=0") {
		t.Errorf("exit status %d, stderr %q; want 2 and how to build it", code, stderr.String())
	}
}

// TestFileNotOurs: --file refuses to overwrite a file that does not hold
// bench's data.
func TestFileNotOurs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "precious")
	if err := os.WriteFile(path, bytes.Repeat([]byte("keep me "), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--file", path, "--backends", "os"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "--overwrite") {
		t.Errorf("exit status %d, stderr %q; want 2 and a pointer to --overwrite", code, stderr.String())
	}
	if data, _ := os.ReadFile(path); !bytes.HasPrefix(data, []byte("keep me keep me")) {
		t.Errorf("the file was changed")
	}
}

func TestParseFio(t *testing.T) {
	tests := []struct {
		file       string
		kind       kind
		ops        int64
		seconds    float64
		lat        latency
		cpuSeconds float64
	}{
		// fio 3.33, psync, 2 jobs, 4 KiB random reads of a hot file.
		{"fio-psync-randread.json", randRead, 97688, 0.300, latency{P50: 2064, P99: 79360, Max: 10520319},
			(15.833333 + 40.166667) / 100 * 0.600},
		// fio 3.33, io_uring, 8 jobs, 70/30 random reads/writes, end_fsync:
		// the "mixed" section (unified_rw_reporting=both) is used.
		{"fio-io_uring-mixed.json", mixed, 70915, 0.373, latency{P50: 2704, P99: 374784, Max: 24788082},
			(2.048481 + 8.159781) / 100 * 2.929},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			// fio can print notices before the document.
			for _, prefix := range []string{"", "fio: note: both iodepth >= 1 and synchronous I/O engine are selected\n"} {
				got, err := parseFio(append([]byte(prefix), data...), tt.kind)
				if err != nil {
					t.Fatal(err)
				}
				if got.ops != tt.ops || got.seconds != tt.seconds || got.lat != tt.lat {
					t.Errorf("got ops %d seconds %v lat %+v, want %d %v %+v", got.ops, got.seconds, got.lat, tt.ops, tt.seconds, tt.lat)
				}
				if d := got.cpuSeconds - tt.cpuSeconds; d > 1e-9 || d < -1e-9 {
					t.Errorf("cpu seconds %v, want %v", got.cpuSeconds, tt.cpuSeconds)
				}
			}
		})
	}
}

// TestParseFioCapsAtMax: fio's percentiles are bucket bounds and can
// exceed the exact max it reports (fio-io_uring printed p99 473.1µs with
// max 471.5µs); the row shows no percentile above its max.
func TestParseFioCapsAtMax(t *testing.T) {
	for _, tt := range []struct {
		name     string
		p50, p99 float64
		want     latency
	}{
		{"p99 above max", 20000, 473088, latency{P50: 20000, P99: 471500, Max: 471500}},
		{"both above max", 480000, 481000, latency{P50: 471500, P99: 471500, Max: 471500}},
		{"below max", 20000, 400000, latency{P50: 20000, P99: 400000, Max: 471500}},
	} {
		out := fmt.Sprintf(`{"jobs":[{"jobname":"x","read":{"total_ios":10,"runtime":100,
			"lat_ns":{"max":471500.0,"N":10,"percentile":{"50.000000":%v,"99.000000":%v}}}}]}`, tt.p50, tt.p99)
		got, err := parseFio([]byte(out), randRead)
		if err != nil {
			t.Fatal(err)
		}
		if got.lat != tt.want {
			t.Errorf("%s: latency %+v, want %+v", tt.name, got.lat, tt.want)
		}
	}
}

func TestParseFioErrors(t *testing.T) {
	psync, err := os.ReadFile("testdata/fio-psync-randread.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		out  string
		kind kind
		want string
	}{
		{"no json", "fio: failed parsing option\n", randRead, "no JSON report"},
		{"truncated", string(psync[:len(psync)/2]), randRead, "parsing fio's report"},
		{"no jobs", `{"fio version":"fio-3.33","jobs":[]}`, randRead, "0 job groups"},
		{"job error", `{"jobs":[{"jobname":"x","error":5}]}`, randRead, "failed with error 5"},
		{"no mixed section", string(psync), mixed, "no mixed section"},
		{"no runtime", `{"jobs":[{"jobname":"x","read":{"total_ios":1}}]}`, randRead, "no runtime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseFio([]byte(tt.out), tt.kind)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

// TestFioArgs: fio gets the same file, region, block size, concurrency
// and duration as the in-process rows, and is kept hot.
func TestFioArgs(t *testing.T) {
	r := &runner{path: "/f", size: 1 << 30, workingSet: 192 << 20, duration: 800e6}
	hot := workloadByName("randread-hot")
	args := strings.Join(r.fioArgs(cell{w: hot, v: hot.variants[0], b: backendByName("fio-io_uring"), jobs: 1}), " ")
	for _, want := range []string{"--filename=/f", "--ioengine=io_uring", "--rw=randread", "--bs=4096",
		"--size=201326592", "--numjobs=1", "--iodepth=1", "--runtime=800ms", "--invalidate=0", "--output-format=json"} {
		if !strings.Contains(args, want) {
			t.Errorf("randread-hot args lack %s: %s", want, args)
		}
	}
	direct := workloadByName("randread-direct")
	args = strings.Join(r.fioArgs(cell{w: direct, v: direct.variants[0], b: backendByName("fio-io_uring"), jobs: 32}), " ")
	for _, want := range []string{"--direct=1", "--numjobs=1", "--iodepth=32", "--size=1073741824"} {
		if !strings.Contains(args, want) {
			t.Errorf("randread-direct io_uring args lack %s: %s", want, args)
		}
	}
	args = strings.Join(r.fioArgs(cell{w: direct, v: direct.variants[0], b: backendByName("fio-psync"), jobs: 32}), " ")
	if !strings.Contains(args, "--numjobs=32") || !strings.Contains(args, "--iodepth=1") {
		t.Errorf("randread-direct psync args: %s", args)
	}
	rw := workloadByName("randwrite")
	args = strings.Join(r.fioArgs(cell{w: rw, v: rw.variants[0], b: backendByName("fio-psync"), jobs: 1}), " ")
	if !strings.Contains(args, "--end_fsync=1") {
		t.Errorf("randwrite args lack the final fsync: %s", args)
	}
}

// TestFioFilename: fio reads ':' in --filename as a separator unless a
// backslash precedes it, and "-" as stdin or stdout.
func TestFioFilename(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{"/tmp/plain.dat", "/tmp/plain.dat"},
		{"/tmp/a:b.dat", `/tmp/a\:b.dat`},
		{"/tmp/F:\\x", `/tmp/F\:\x`},
		{`/tmp/p\:q`, `/tmp/p\\:q`},
		{"/tmp/:lead:trail:", `/tmp/\:lead\:trail\:`},
		{`/tmp/back\slash`, `/tmp/back\slash`},
		{"-", wd + "/-"},
		{"rel:x", wd + `/rel\:x`},
	}
	for _, tt := range tests {
		if got := fioFilename(tt.path); got != tt.want {
			t.Errorf("fioFilename(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestFioOddNames runs fio's rows on files whose names fio would
// otherwise misread (when fio is installed): fio reads and reports on
// the file asked for, and creates no other.
func TestFioOddNames(t *testing.T) {
	if _, err := exec.LookPath("fio"); err != nil {
		t.Skip("fio is not installed")
	}
	for _, name := range []string{"a:b.dat", `p\:q:.dat`, "-"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			t.Chdir(dir) // fio would create a misread relative name here
			t.Setenv("TMPDIR", dir)
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"--json", "--file", name, "--size", "16MiB", "--working-set", "1MiB",
				"--backends", "os,fio-psync", "--workloads", "randread-hot", "--jobs", "1", "--duration", "1ms"}, &stdout, &stderr)
			if code != exitOK {
				t.Fatalf("exit status %d; stderr:\n%s", code, stderr.String())
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 1 || ents[0].Name() != name {
				var names []string
				for _, e := range ents {
					names = append(names, e.Name())
				}
				t.Errorf("the directory holds %q, want only %q", names, name)
			}
			var doc document
			if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
				t.Fatal(err)
			}
			for _, r := range doc.Results {
				if r.Ops <= 0 || r.Error != "" {
					t.Errorf("%s: ops %d, error %q", r.Backend, r.Ops, r.Error)
				}
			}
		})
	}
}

// TestHeaderNamesEnlargedCache: a working set beyond the default ringfs
// cache's reach gets a larger cache, and the table header says so.
func TestHeaderNamesEnlargedCache(t *testing.T) {
	tests := []struct {
		workingSet int64
		want       string // in the header; "" for no mention of the cache
	}{
		{192 << 20, ""},
		{224 << 20, ""},
		{240 << 20, "; ringfs cache 304 MiB (the default 256 MiB, enlarged to hold the working set)"},
		{1 << 30, "; ringfs cache 1.1 GiB (the default 256 MiB, enlarged"},
	}
	for _, tt := range tests {
		r := &runner{cfg: &config{size: 2 << 30, workingSet: tt.workingSet}}
		if err := r.checkFile(); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if err := writeTables(&out, r.document(nil, nil)); err != nil {
			t.Fatal(err)
		}
		header, _, _ := strings.Cut(out.String(), "\n\n")
		if tt.want == "" && strings.Contains(header, "ringfs cache") || !strings.Contains(header, tt.want) {
			t.Errorf("working set %s: header\n%s\nwant it to say %q", describeSize(tt.workingSet), header, tt.want)
		}
	}
}

// TestSpeedups: a row is compared with the os row of its workload that
// has as many operations in flight, and the footer says so.
func TestSpeedups(t *testing.T) {
	rows := []result{
		{Workload: "randread-direct", Backend: "os", Jobs: 32, Depth: 1, IOPS: 100},
		{Workload: "randread-direct", Backend: "os", Jobs: 1, Depth: 1, IOPS: 10}, // no such row today; it must not be picked
		{Workload: "randread-direct", Backend: "ringfs", Jobs: 1, Depth: 32, IOPS: 200},
		{Workload: "randread-direct", Backend: "fio-io_uring", Jobs: 1, Depth: 32, IOPS: 150},
		{Workload: "randread-direct", Backend: "ringfs", Jobs: 1, Depth: 1, IOPS: 30},
		{Workload: "randread-direct", Backend: "ringfs", Jobs: 4, Depth: 1, IOPS: 40},
		{Workload: "randread-hot", Backend: "ringfs", Jobs: 32, Depth: 1, IOPS: 1000},
	}
	setSpeedups(rows)
	want := []float64{1, 1, 2, 1.5, 3, -1, -1} // -1: none
	for i, r := range rows {
		got := -1.0
		if r.SpeedupVsOS != nil {
			got = *r.SpeedupVsOS
		}
		if got != want[i] {
			t.Errorf("%s/%s jobs=%d depth=%d: speedup %v, want %v", r.Workload, r.Backend, r.Jobs, r.Depth, got, want[i])
		}
	}
	var out bytes.Buffer
	doc := &document{Config: docConfig{Date: "2026-01-01", RingfsCacheBytes: 256 << 20}, Results: rows}
	if err := writeTables(&out, doc); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "vs os: IOPS over the os row with as many operations in flight (jobs × depth).") {
		t.Errorf("the footer does not say what is compared:\n%s", out.String())
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for v := int64(1); v <= 100000; v++ {
		h.add(timeNs(v))
	}
	for _, tt := range []struct {
		q    float64
		want int64
	}{{0.5, 50000}, {0.99, 99000}, {1, 100000}} {
		got := h.quantile(tt.q)
		if d := float64(got-tt.want) / float64(tt.want); d > 0.03 || d < -0.03 {
			t.Errorf("quantile(%v) = %d, want %d within 3%%", tt.q, got, tt.want)
		}
	}
	if h.max != 100000 {
		t.Errorf("max %d", h.max)
	}
	for v := uint64(0); v < 1<<20; v += 7 {
		if b := bucketOf(v); b < 0 || b >= histBuckets || (b > 0 && bucketOf(v) < bucketOf(v/2)) {
			t.Fatalf("bucketOf(%d) = %d", v, b)
		}
	}
}

func TestPatternCatchesBadData(t *testing.T) {
	buf := alignedBuf(2 * patternBlock)
	prepare(buf, 3)
	stamp(buf, 8192, 3)
	if err := verify(buf, 8192, 3); err != nil {
		t.Fatal(err)
	}
	if err := verify(buf, 8192, -1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		off   int64
		want  int
		dirty func(b []byte)
		msg   string
	}{
		{"wrong offset", 4096, -1, nil, "header names offset"},
		{"stale generation", 8192, 4, nil, "a write was lost"},
		{"body", 8192, 3, func(b []byte) { b[patternBlock+100] ^= 1 }, "body differs"},
		{"garbage generation", 8192, -1, func(b []byte) { b[patternBlock+12] ^= 0x40 }, "bad generation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := append([]byte(nil), buf...)
			if tt.dirty != nil {
				tt.dirty(b)
			}
			if err := verify(b, tt.off, tt.want); err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("verify = %v, want an error saying %q", err, tt.msg)
			}
		})
	}
}

var inProcessBackends = []string{"ringfs", "ringfs-writethrough", "ringfs-mmap", "ringfs-psync", "os", "mmap"}

// buildBench builds the command without -race (the race detector would
// make the timed loops crawl) and returns its path.
func buildBench(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bench")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestEndToEnd builds the command and runs every workload on every
// in-process backend on a small file: every applicable pair has a row
// with operations and no error, the JSON has its schema, the plot is
// well-formed SVG, and the Go benchmark lines are in benchstat's format.
func TestEndToEnd(t *testing.T) {
	bin := buildBench(t)
	dir := t.TempDir()
	plot := filepath.Join(dir, "bench.svg")
	if err := os.WriteFile(plot, []byte("<svg>old</svg>\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--quick", "--json", "--size", "64MiB", "--working-set", "16MiB", "--duration", "30ms",
		"--jobs", "2", "--backends", strings.Join(inProcessBackends, ","), "--plot", plot)
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	var doc document
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatalf("JSON: %v\n%s", err, stdout.String())
	}
	if doc.SchemaVersion != 1 {
		t.Errorf("schema_version %d", doc.SchemaVersion)
	}
	if doc.Config.FileSizeBytes != 64<<20 || doc.Config.WorkingSetBytes != 16<<20 {
		t.Errorf("config: file %d, working set %d", doc.Config.FileSizeBytes, doc.Config.WorkingSetBytes)
	}
	for _, w := range workloads {
		for _, name := range inProcessBackends {
			b := backendByName(name)
			found := 0
			for _, r := range doc.Results {
				if r.Workload != w.name || r.Backend != name {
					continue
				}
				found++
				if r.Ops <= 0 || r.Error != "" || r.IOPS <= 0 || r.Seconds <= 0 {
					t.Errorf("%s/%s jobs=%d: ops %d, iops %v, error %q", w.name, name, r.Jobs, r.Ops, r.IOPS, r.Error)
				}
				if r.BlockSize != w.block || r.AllocsPerOp == nil || r.Lat.P50 <= 0 || r.Lat.Max < r.Lat.P99 {
					t.Errorf("%s/%s: block %d, allocs %v, latency %+v", w.name, name, r.BlockSize, r.AllocsPerOp, r.Lat)
				}
				if r.SpeedupVsOS == nil {
					t.Errorf("%s/%s: no speedup_vs_os", w.name, name)
				}
			}
			want := 0
			for _, v := range w.variants {
				if ok, _ := applies(w, v, b); ok {
					want++
				}
			}
			if found != want {
				t.Errorf("%s/%s: %d rows, want %d", w.name, name, found, want)
			}
			if want == 0 && !(w.direct && name == "mmap") {
				t.Errorf("%s/%s: no row applies", w.name, name)
			}
		}
	}
	if leftovers, _ := filepath.Glob(filepath.Join(dir, "ringfs-bench-*")); len(leftovers) > 0 {
		t.Errorf("scratch file left behind: %v", leftovers)
	}

	svg, err := os.ReadFile(plot)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		if _, err := dec.Token(); err != nil {
			if err.Error() != "EOF" {
				t.Errorf("plot is not well-formed XML: %v", err)
			}
			break
		}
	}
	if !bytes.Contains(svg, []byte("randread-hot")) || !bytes.Contains(svg, []byte("<rect")) {
		t.Errorf("plot lacks bars")
	}

	var gb bytes.Buffer
	if err := writeGobench(&gb, &doc); err != nil {
		t.Fatal(err)
	}
	line := regexp.MustCompile(`^BenchmarkBench/workload=[a-z-]+/backend=[a-z_-]+/bs=\d+[KM]iB/jobs=\d+/depth=\d+-\d+\t\d+\t[\d.]+ ns/op\t[\d.]+ MB/s\t`)
	n := 0
	for _, l := range strings.Split(gb.String(), "\n") {
		if strings.HasPrefix(l, "Benchmark") {
			n++
			if !line.MatchString(l) {
				t.Errorf("not a benchmark line: %q", l)
			}
		}
	}
	if n != len(doc.Results) {
		t.Errorf("%d benchmark lines for %d results", n, len(doc.Results))
	}
}

// TestEndToEndFio runs fio's rows of a read and a write workload, when
// fio is installed: its report parses, and the pattern is restored after
// fio wrote its own data (the cells after it verify their reads).
func TestEndToEndFio(t *testing.T) {
	if _, err := exec.LookPath("fio"); err != nil {
		t.Skip("fio is not installed")
	}
	bin := buildBench(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--json", "--size", "32MiB", "--working-set", "8MiB", "--duration", "50ms",
		"--workloads", "randwrite,seqread", "--backends", "fio-psync,fio-io_uring,os")
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	var doc document
	if err := json.Unmarshal(stdout.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Results) != 6 {
		t.Fatalf("%d results, want 6", len(doc.Results))
	}
	for _, r := range doc.Results {
		if r.Ops <= 0 || r.Error != "" {
			t.Errorf("%s/%s: ops %d, error %q", r.Workload, r.Backend, r.Ops, r.Error)
		}
		if strings.HasPrefix(r.Backend, "fio-") && (r.AllocsPerOp != nil || r.Lat.P99 <= 0) {
			t.Errorf("%s/%s: allocs %v, latency %+v", r.Workload, r.Backend, r.AllocsPerOp, r.Lat)
		}
	}
}
