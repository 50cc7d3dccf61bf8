//go:build linux

package main

import (
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer serves handler on a Unix socket in a private directory and
// counts the connections it accepts.
type fakeServer struct {
	path  string
	conns atomic.Int64
}

func startFakeServer(t *testing.T, handler http.Handler) *fakeServer {
	t.Helper()
	s := &fakeServer{path: filepath.Join(t.TempDir(), "fake.sock")}
	l, err := net.Listen("unix", s.path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

// runInProcess runs the command line through run, as main does.
func runInProcess(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb strings.Builder
	code := run(t.Context(), args, &streams{out: &out, err: &errb})
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// TestBadInput: every misuse gets a clear message on stderr, nothing on
// stdout, and the right exit status.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	regular := filepath.Join(dir, "regular")
	os.WriteFile(regular, []byte("x"), 0o600)

	// A live socket behind a symlink: refused without connecting.
	live := startFakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("{}"))
	}))
	link := filepath.Join(dir, "link.sock")
	if err := os.Symlink(live.path, link); err != nil {
		t.Fatal(err)
	}
	// A server that never answers, and one that answers too much.
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	silent := startFakeServer(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { <-hang }))
	huge := startFakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(`{"mode": "`))
		chunk := []byte(strings.Repeat("a", 1<<20))
		for range 10 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	broken := startFakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "no \x1b[31mstats\x1b[0m here", http.StatusNotFound)
	}))
	garbage := startFakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("<html>"))
	}))

	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
		exec   bool // also run the built binary, for the real exit status
	}{
		{"no command", nil, 2, "Usage:", true},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`, false},
		{"unknown flag", []string{"stats", "--frob"}, 2, "flag provided but not defined: -frob", true},
		{"flag without value", []string{"stats", "--socket"}, 2, "flag needs an argument: -socket", false},
		{"no socket flag", []string{"stats"}, 2, "--socket PATH is required", false},
		{"no socket flag (cache)", []string{"cache", "--json"}, 2, "--socket PATH is required", false},
		{"stray argument", []string{"stats", "--socket", live.path, "extra"}, 2, `unexpected argument "extra"`, false},
		{"watch too short", []string{"stats", "--socket", live.path, "--watch", "1ms"}, 2, "--watch must be at least 50ms", false},
		{"bad duration", []string{"stats", "--socket", live.path, "--watch", "soon"}, 2, `invalid value "soon" for flag -watch`, false},
		{"bad timeout", []string{"cache", "--socket", live.path, "--timeout", "-1s"}, 2, "--timeout must be between", false},
		{"missing socket", []string{"stats", "--socket", filepath.Join(dir, "nope.sock")}, 1, "no socket at " + filepath.Join(dir, "nope.sock"), true},
		{"missing socket (cache)", []string{"cache", "--socket", filepath.Join(dir, "nope.sock")}, 1, "is the engine running", false},
		{"symlink socket", []string{"stats", "--socket", link}, 1, "refusing " + link + ": it is a symbolic link", true},
		{"symlink socket (cache)", []string{"cache", "--socket", link, "--json"}, 1, "symbolic link", false},
		{"not a socket", []string{"stats", "--socket", regular}, 1, regular + " is not a Unix socket", false},
		{"silent server", []string{"stats", "--socket", silent.path, "--timeout", "300ms"}, 1, "no answer within the timeout", false},
		{"oversized response", []string{"stats", "--socket", huge.path}, 1, "response larger than 8.0 MiB, refused", true},
		{"error status", []string{"cache", "--socket", broken.path}, 1, `404 Not Found: "no \x1b[31mstats`, false},
		{"not JSON", []string{"stats", "--socket", garbage.path}, 1, "malformed response", false},
		{"inspect nothing", []string{"inspect"}, 2, "no FILE given", false},
		{"inspect missing", []string{"inspect", filepath.Join(dir, "nope")}, 1, filepath.Join(dir, "nope") + ": stat: no such file or directory", true},
		{"inspect directory", []string{"inspect", dir}, 1, "open: is a directory", false},
		{"inspect socket", []string{"inspect", live.path}, 1, "open: not a regular file", false},
		{"probe argument", []string{"probe", "x"}, 2, `unexpected argument "x"`, false},
		{"version argument", []string{"version", "x"}, 2, `unexpected argument "x"`, false},
		{"help unknown", []string{"help", "frobnicate"}, 2, `unknown command "frobnicate"`, false},
		{"help too many", []string{"help", "stats", "cache"}, 2, "at most one command", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := runInProcess(t, tc.args...)
			if tc.exec {
				if b := runFsctl(t, tc.args...); b != r {
					t.Errorf("the binary differs from run():\n%+v\n%+v", b, r)
				}
			}
			if r.code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", r.code, tc.code, r.stderr)
			}
			if !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stderr %q, want it to contain %q", r.stderr, tc.stderr)
			}
			if tc.code == 2 && tc.args != nil && !strings.Contains(r.stderr, "fsctl help") {
				t.Errorf("usage error without a pointer to help: %q", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout %q, want nothing", r.stdout)
			}
		})
	}
	t.Cleanup(func() { // after the parallel subtests
		if n := live.conns.Load(); n != 0 {
			t.Errorf("the server behind the symlink got %d connections", n)
		}
	})
}

// TestHelp: help and -h print usage on stdout and exit 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"help", "stats"}, {"stats", "-h"},
		{"inspect", "--help"}, {"cache", "-h"}, {"probe", "-h"}, {"version", "-h"}} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			t.Parallel()
			r := runInProcess(t, args...)
			if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Usage") {
				t.Errorf("%q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
			}
		})
	}
	r := runFsctl(t, "stats", "-h")
	if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "Usage: fsctl stats") {
		t.Errorf("binary stats -h: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runInProcess(t, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "fsctl ") {
		t.Errorf("version: exit %d, %q", r.code, r.stdout)
	}
}

// TestSocketSwappedForSymlink: a symlink put in place of the socket after
// fsctl checked it is still not followed when fsctl connects.
func TestSocketSwappedForSymlink(t *testing.T) {
	target := startFakeServer(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("{}")) }))
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	s := &streams{out: &strings.Builder{}, err: &strings.Builder{}}
	c, err := newStatsClient(path, time.Second, s)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	os.Remove(path)
	if err := os.Symlink(target.path, path); err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	err = c.get(t.Context(), "/stats", &v, nil)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("get through a swapped-in symlink: %v", err)
	}
	if n := target.conns.Load(); n != 0 {
		t.Errorf("the symlink's target got %d connections", n)
	}
}

// TestParseArgs: flags may follow arguments, and "--" ends the flags.
func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  string
		json bool
	}{
		{[]string{"a", "b"}, "a,b", false},
		{[]string{"--json", "a"}, "a", true},
		{[]string{"a", "--json", "b"}, "a,b", true},
		{[]string{"a", "--", "--json"}, "a,--json", false},
		{[]string{"--", "-x"}, "-x", false},
	} {
		var pos []string
		var asJSON bool
		fs := newFlagSetForTest(&asJSON)
		pos, err := parseArgs(fs, tc.args)
		if err != nil || strings.Join(pos, ",") != tc.pos || asJSON != tc.json {
			t.Errorf("%q: %q json=%v err=%v, want %q json=%v", tc.args, pos, asJSON, err, tc.pos, tc.json)
		}
	}
}

func newFlagSetForTest(asJSON *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.BoolVar(asJSON, "json", false, "")
	return fs
}

// engineStatsJSON is the least an engine's GET /stats answer holds.
const engineStatsJSON = `{"mode":"exclusive","backend":"uring","started_unix_ns":1700000000000000000,"uptime_ns":5000000000}`

// answering serves stats for GET /stats and files for GET /files.
func answering(stats, files string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(stats)) })
	mux.HandleFunc("GET /files", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(files)) })
	return mux
}

// TestNotAnEngine: JSON that no engine sends is refused (exit status 1,
// a clear message) rather than shown as an engine's zeros or as an
// engine that holds no files.
func TestNotAnEngine(t *testing.T) {
	for _, tc := range []struct {
		name, stats, files string
		cmd                string
		code               int
		stderr             string // for exit status 1
	}{
		{"error object", `{"message":"page not found"}`, `[]`, "stats", 1, "no mode, no backend, no started_unix_ns"},
		{"empty object", `{}`, `[]`, "stats", 1, "not a ringfs engine's answer"},
		{"null stats", `null`, `[]`, "stats", 1, "not a ringfs engine's answer"},
		{"array for stats", `[]`, `[]`, "stats", 1, "malformed response"},
		{"no start time", `{"mode":"exclusive","backend":"uring","uptime_ns":1}`, `[]`, "stats", 1, "no started_unix_ns"},
		{"negative uptime", `{"mode":"exclusive","backend":"uring","started_unix_ns":1,"uptime_ns":-1}`, `[]`, "stats", 1, "negative uptime"},
		{"engine", engineStatsJSON, `[]`, "stats", 0, ""},
		{"null files", engineStatsJSON, `null`, "cache", 1, "GET /files on"},
		{"empty list, not an engine", `{}`, `[]`, "cache", 1, "GET /stats on"},
		{"file without path", engineStatsJSON, `[{}]`, "cache", 1, "file 0 has no path"},
		{"null file", engineStatsJSON, `[null]`, "cache", 1, "file 0 has no path"},
		{"negative size", engineStatsJSON, `[{"path":"/d","size_bytes":-1}]`, "cache", 1, "negative size"},
		{"engine with no files", engineStatsJSON, `[]`, "cache", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startFakeServer(t, answering(tc.stats, tc.files))
			for _, asJSON := range []bool{false, true} {
				args := []string{tc.cmd, "--socket", s.path}
				if asJSON {
					args = append(args, "--json")
				}
				r := runInProcess(t, args...)
				if r.code != tc.code {
					t.Fatalf("%q: exit %d, want %d; stderr %q", args, r.code, tc.code, r.stderr)
				}
				if tc.code == 0 {
					if r.stdout == "" {
						t.Errorf("%q: no output", args)
					}
					continue
				}
				if r.stdout != "" || !strings.Contains(r.stderr, tc.stderr) || !strings.Contains(r.stderr, "fsctl: "+tc.cmd+": ") {
					t.Errorf("%q: stdout %q, stderr %q, want it to contain %q", args, r.stdout, r.stderr, tc.stderr)
				}
			}
		})
	}
	// GET /files answering otherwise than an engine leaves the dirty
	// bytes unknown in stats, which still shows the engine's stats.
	s := startFakeServer(t, answering(engineStatsJSON, `null`))
	r := runInProcess(t, "stats", "--socket", s.path)
	if r.code != 0 || !strings.Contains(r.stderr, "dirty bytes unknown") || !strings.Contains(r.stdout, "exclusive mode, uring backend") {
		t.Errorf("stats with GET /files answering null: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
