//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ringfs/ringfs/engine"
)

// The test binary doubles as the engine the end-to-end tests watch: run
// with helperEnv set, it embeds an engine and takes commands on stdin.
const (
	helperEnv       = "FSCTL_TEST_ENGINE"
	helperSocketEnv = "FSCTL_TEST_SOCKET"
	helperFileEnv   = "FSCTL_TEST_FILE"
	helperCacheSize = 4 << 20
	// helperMincoreEnv names a file whose residency the test binary
	// measures with mincore alone, printing the report as JSON.
	helperMincoreEnv = "FSCTL_TEST_MINCORE"
)

var binDir string // holds the fsctl binary built by TestMain

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		os.Exit(runEngineHelper(os.Stdin, os.Stdout))
	}
	if path := os.Getenv(helperMincoreEnv); path != "" {
		os.Exit(writeJSONExit(os.Stdout, inspectFile(path, residencyMincore)))
	}
	var err error
	if binDir, err = os.MkdirTemp("", "fsctl-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(binDir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// fsctlBinary builds fsctl once per test run (with -race when this test
// binary has it, so that the build reuses its packages).
func fsctlBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		gobin, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("go build: no go command on PATH: %v", err)
			return
		}
		buildPath = filepath.Join(binDir, "fsctl")
		args := []string{"build", "-o", buildPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command(gobin, append(args, ".")...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// result is one run of the fsctl binary.
type result struct {
	code           int
	stdout, stderr string
}

// runFsctl runs the fsctl binary with args and returns its exit status
// and output.
func runFsctl(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, fsctlBinary(t), args...)
	return runCmd(t, cmd, "fsctl "+strings.Join(args, " "))
}

// runCmd runs cmd and returns its exit status and output; it fails t
// when cmd could not run (what names it).
func runCmd(t *testing.T, cmd *exec.Cmd, what string) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", what, err)
	}
	return r
}

// engineProc is a running helper engine.
type engineProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	socket string
	file   string
}

// startEngine starts the helper engine, serving stats at a socket in a
// fresh directory, with one open file.
func startEngine(t *testing.T) *engineProc {
	t.Helper()
	dir := t.TempDir()
	p := &engineProc{t: t, socket: filepath.Join(dir, "stats.sock"), file: filepath.Join(dir, "data")}
	p.cmd = exec.Command(os.Args[0], "-test.run=^$")
	p.cmd.Env = append(os.Environ(), helperEnv+"=1", helperSocketEnv+"="+p.socket, helperFileEnv+"="+p.file)
	p.cmd.Stderr = os.Stderr
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewScanner(stdout)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.in.Close()
		done := make(chan error, 1)
		go func() { done <- p.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("engine helper: %v", err)
			}
		case <-time.After(20 * time.Second):
			p.cmd.Process.Kill()
			<-done
			t.Errorf("engine helper did not exit")
		}
	})
	if line := p.reply(); line != "ready" {
		t.Fatalf("engine helper: %q", line)
	}
	return p
}

func (p *engineProc) reply() string {
	p.t.Helper()
	if !p.out.Scan() {
		p.t.Fatalf("engine helper ended: %v", p.out.Err())
	}
	return p.out.Text()
}

// do sends one command to the helper and waits for its "ok".
func (p *engineProc) do(format string, a ...any) {
	p.t.Helper()
	cmd := fmt.Sprintf(format, a...)
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		p.t.Fatal(err)
	}
	if line := p.reply(); line != "ok" {
		p.t.Fatalf("engine helper %q: %s", cmd, line)
	}
}

// runEngineHelper is the helper engine's main. Commands, one per line:
//
//	write OFF LEN   WriteAt LEN bytes at OFF
//	read OFF LEN    ReadAt LEN bytes at OFF
//	sync            Sync the file
//	busy            read and write in the background until calm
//	calm            stop the background I/O
//
// Each is answered "ok" or "error: ..."; end of input closes the engine.
func runEngineHelper(in io.Reader, out io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(out, "error:", err)
		return 1
	}
	e, err := engine.New(engine.Options{Mode: engine.Exclusive, CacheSize: helperCacheSize, LatencySampling: 1})
	if err != nil {
		return fail(err)
	}
	l, err := engine.ListenStats(os.Getenv(helperSocketEnv))
	if err != nil {
		return fail(err)
	}
	served := make(chan error, 1)
	go func() { served <- e.ServeStats(l) }()
	f, err := e.Open(os.Getenv(helperFileEnv), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fail(err)
	}
	fmt.Fprintln(out, "ready")

	var stop atomic.Bool
	var busy sync.WaitGroup
	sc := bufio.NewScanner(in)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		arg := func(i int) int64 {
			if i >= len(fields) {
				return 0
			}
			n, _ := strconv.ParseInt(fields[i], 10, 64)
			return n
		}
		err = nil
		switch fields[0] {
		case "write":
			p := bytes.Repeat([]byte{0x5a}, int(arg(2)))
			_, err = f.WriteAt(p, arg(1))
		case "read":
			p := make([]byte, arg(2))
			if _, err = f.ReadAt(p, arg(1)); err == io.EOF {
				err = nil
			}
		case "sync":
			err = f.Sync()
		case "busy":
			stop.Store(false)
			busy.Add(1)
			go func() {
				defer busy.Done()
				rng := rand.New(rand.NewPCG(1, 2))
				p := make([]byte, 4096)
				for !stop.Load() {
					off := rng.Int64N(256) * 4096
					f.WriteAt(p, off)
					f.ReadAt(p, off)
					time.Sleep(time.Millisecond)
				}
			}()
		case "calm":
			stop.Store(true)
			busy.Wait()
		default:
			err = fmt.Errorf("unknown command %q", fields[0])
		}
		if err != nil {
			fmt.Fprintln(out, "error:", err)
			continue
		}
		fmt.Fprintln(out, "ok")
	}
	stop.Store(true)
	busy.Wait()
	if err := f.Close(); err != nil {
		return fail(err)
	}
	if err := e.Close(); err != nil {
		return fail(err)
	}
	if err := <-served; err != nil && !errors.Is(err, net.ErrClosed) {
		return fail(err)
	}
	return 0
}

func writeJSONExit(w io.Writer, v any) int {
	if err := writeJSON(w, v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}
