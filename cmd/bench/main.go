//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"sync"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/ringfs/ringfs/engine"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	// SIGHUP: the terminal closed; the run must still clean up.
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go handleSignals(sigs, cancel, os.Stderr, os.Exit)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	os.Exit(code)
}

// handleSignals stops the run at the first signal: cancel makes it wind
// down and remove its files (the scratch file's writing stops within a
// megabyte, a cell within its current operations). A second signal
// removes what the run would have removed (forcedExit) and ends the
// process at once with exit status 1.
func handleSignals(sigs <-chan os.Signal, cancel func(), stderr io.Writer, exit func(int)) {
	sig := <-sigs
	fmt.Fprintf(stderr, "\nbench: %v: stopping (a second signal exits at once)\n", sig)
	cancel()
	<-sigs
	forcedExit.removeAll()
	fmt.Fprintf(stderr, "bench: second signal: exiting\n")
	exit(exitError)
}

// forcedExit is what a second signal removes before the process exits:
// the files of the run that its end would remove.
var forcedExit removals

// removals is a set of paths to remove, safe for concurrent use.
type removals struct {
	mu    sync.Mutex
	paths map[string]bool // +checklocks:mu
}

func (x *removals) add(path string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.paths == nil {
		x.paths = make(map[string]bool)
	}
	x.paths[path] = true
}

func (x *removals) drop(path string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	delete(x.paths, path)
}

// removeAll removes every path in the set and empties it.
func (x *removals) removeAll() {
	x.mu.Lock()
	defer x.mu.Unlock()
	for p := range x.paths {
		os.Remove(p)
	}
	x.paths = nil
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // an I/O or verification error, or a failed setup
	exitUsage = 2 // a bad command line
)

// runner holds what every cell of a run shares.
type runner struct {
	cfg        *config
	path       string
	size       int64
	workingSet int64
	cacheSize  int64 // ringfs cache, 0 for the default
	duration   time.Duration
	seed       uint64
	fio        *fioInfo
	stats      *statsHub
	progress   *progress
	log        io.Writer
	// fioWrote is set when fio has written the working set with its own
	// data; the pattern is restored before the next cell.
	fioWrote bool
	// directOK: the file system accepts O_DIRECT.
	directOK bool
	// temp: the file is bench's own, removed at the end unless --keep.
	temp bool
	// exists: --file names an existing file (checkFile).
	exists bool
	// created: bench created the file in this run (the temporary file,
	// or a --file that did not exist).
	created bool
	// written: the file holds the pattern; until then a file bench
	// created is removed at the end, whatever --keep says.
	written bool
	// needsFill: the file must be written with the pattern (checkFile).
	needsFill bool
	// engines are the engine backends' engines, one per backend for the
	// run (see openSession).
	engines map[*backend]*engine.Engine
}

// trace (RINGFS_BENCH_TRACE=1) prints each cell's wall time and each
// warm-up's on stderr, to see where a run's time goes.
var trace = os.Getenv("RINGFS_BENCH_TRACE") != ""

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\nRun 'bench -h' for the flags.\n", err)
		return exitUsage
	}
	r := &runner{cfg: cfg, duration: cfg.duration, seed: cfg.seed, log: stderr}
	r.fio = findFio()
	sel, err := r.selectBackends()
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitUsage
	}
	// Everything the command line can get wrong is checked before any
	// file is created or written.
	if err := r.checkFile(); err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		var ue *usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitError
	}
	if len(r.plan(sel, true)) == 0 {
		fmt.Fprintf(stderr, "bench: no backend applies to the chosen workloads\n")
		return exitUsage
	}
	// The outputs that can fail are set up before the scratch file is
	// written and any cell runs.
	if cfg.statsSocket != "" {
		if r.stats, err = newStatsHub(cfg.statsSocket); err != nil {
			fmt.Fprintf(stderr, "bench: stats socket: %v\n", err)
			return exitError
		}
		defer r.stats.close()
		fmt.Fprintf(stderr, "bench: serving engine stats on %s\n", cfg.statsSocket)
	}
	var plot *plotOutput
	if cfg.plot != "" {
		if plot, err = createPlot(cfg.plot); err != nil {
			fmt.Fprintf(stderr, "bench: plot: %v\n", err)
			return exitError
		}
		defer plot.discard()
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "bench: %v\n", err)
			return exitError
		}
		pprof.StartCPUProfile(f)
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
	}
	defer r.cleanup() // also after a failed prepareFile: it may have created the file
	if err := r.prepareFile(ctx); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintf(stderr, "bench: interrupted while writing the scratch file\n")
			return exitError
		}
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitError
	}
	r.progress = newProgress(stderr)

	cells := r.plan(sel, r.directOK)
	if len(cells) == 0 {
		fmt.Fprintf(stderr, "bench: nothing to run: the file system of %s does not support O_DIRECT\n", r.path)
		return exitError
	}
	r.progress.total = len(cells)
	results := make([]result, 0, len(cells))
	ioFailed := false
	for _, g := range groupCells(cells) {
		if ctx.Err() != nil {
			break
		}
		var inproc []cell
		for _, c := range g {
			if c.b.inProcess() {
				inproc = append(inproc, c)
			}
		}
		if err := r.restorePattern(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			fmt.Fprintf(stderr, "bench: restoring the pattern after fio: %v\n", err)
			return exitError
		}
		start := time.Now()
		results = append(results, r.runGroup(ctx, inproc)...)
		if trace {
			fmt.Fprintf(stderr, "trace: %s jobs=%d in-process: %v\n", g[0].w.name, g[0].jobs, time.Since(start))
		}
		for _, c := range g {
			if c.b.inProcess() || ctx.Err() != nil {
				continue
			}
			if err := r.restorePattern(ctx); err != nil {
				if ctx.Err() != nil {
					break
				}
				fmt.Fprintf(stderr, "bench: restoring the pattern after fio: %v\n", err)
				return exitError
			}
			start := time.Now()
			results = append(results, r.runFio(ctx, c))
			if c.w.writes() {
				r.fioWrote = true
			}
			if trace {
				fmt.Fprintf(stderr, "trace: %s %s: %v\n", c.w.name, c.b.name, time.Since(start))
			}
		}
	}
	if err := r.closeEngines(); err != nil {
		fmt.Fprintf(stderr, "bench: closing engines: %v\n", err)
		ioFailed = true
	}
	if r.fioWrote && r.keepFile() {
		if err := r.fill(ctx, r.workingSet); err != nil {
			fmt.Fprintf(stderr, "bench: restoring the pattern after fio: %v\n", err)
		}
	}
	setSpeedups(results)

	doc := r.document(sel, results)
	switch {
	case cfg.json:
		err = writeJSON(stdout, doc)
	case cfg.gobench:
		err = writeGobench(stdout, doc)
	default:
		err = writeTables(stdout, doc)
	}
	if err != nil {
		fmt.Fprintf(stderr, "bench: %v\n", err)
		return exitError
	}
	code := exitOK
	if ioFailed {
		code = exitError
	}
	for _, res := range results {
		if res.Error != "" {
			fmt.Fprintf(stderr, "bench: %s/%s jobs=%d depth=%d: %s\n", res.Workload, res.Backend, res.Jobs, res.Depth, res.Error)
			code = exitError
		}
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "bench: interrupted\n")
		code = exitError
	}
	// A failed run has no plot: the deferred discard removes it.
	if plot != nil && code == exitOK {
		if err := plot.write(doc); err != nil {
			fmt.Fprintf(stderr, "bench: plot: %v\n", err)
			return exitError
		}
	}
	return code
}

// groupCells splits cells (in plan order) into runs of one variant of
// one workload.
func groupCells(cells []cell) [][]cell {
	var out [][]cell
	for i, c := range cells {
		if i == 0 || c.w != cells[i-1].w || c.v != cells[i-1].v {
			out = append(out, nil)
		}
		out[len(out)-1] = append(out[len(out)-1], c)
	}
	return out
}

// restorePattern rewrites the working set with the pattern after fio
// wrote its own data there.
func (r *runner) restorePattern(ctx context.Context) error {
	if !r.fioWrote {
		return nil
	}
	r.fioWrote = false
	return r.fill(ctx, r.workingSet)
}

// selectBackends returns the backends to run: the ones asked for, or
// every available one. Asking for one that is not available is a usage
// error.
func (r *runner) selectBackends() ([]*backend, error) {
	var sel []*backend
	for _, b := range backends {
		if r.cfg.backendsSet {
			continue
		}
		if b.kind == kindFio && r.cfg.quick {
			continue // fio's start-up alone is half a second a cell
		}
		if ok, _ := r.available(b); ok {
			sel = append(sel, b)
		}
	}
	if !r.cfg.backendsSet && r.cfg.quick && r.fio != nil {
		fmt.Fprintf(r.log, "bench: --quick leaves fio out; name fio backends in --backends to include them\n")
	}
	for _, b := range r.cfg.backends {
		if ok, why := r.available(b); !ok {
			return nil, fmt.Errorf("backend %s is not available: %s", b.name, why)
		}
		sel = append(sel, b)
	}
	return sel, nil
}

func (r *runner) available(b *backend) (bool, string) {
	switch {
	case b.kind == kindFio && r.fio == nil:
		return false, "fio is not on PATH (apt-get install fio)"
	case b.kind == kindEngine && b.opts.Backend == "iouringgo":
		e, err := engine.New(engine.Options{Backend: "iouringgo", CacheSize: -1})
		if err != nil {
			return false, "this binary was built without it (go run -tags iouringgo -ldflags=-checklinkname=0 ./cmd/bench)"
		}
		e.Close()
	}
	return true, ""
}

// plan lists the cells in run order: workload by workload, each variant,
// each backend. directOK says whether the file system takes O_DIRECT;
// without it the direct workloads are left out, with a notice.
func (r *runner) plan(sel []*backend, directOK bool) []cell {
	var cells []cell
	for wi, w := range workloads {
		if !containsWorkload(r.cfg.workloads, w) {
			continue
		}
		if w.direct && !directOK {
			fmt.Fprintf(r.log, "bench: skipping %s: the file system of %s does not support O_DIRECT\n", w.name, r.path)
			continue
		}
		for _, v := range w.variants {
			jobs := v.jobs
			if v.fromFlag {
				jobs = r.cfg.jobs
				if jobs == 1 {
					continue // the 1-job variant already covers it
				}
			}
			for _, b := range sel {
				if ok, _ := applies(w, v, b); !ok {
					continue
				}
				bi := 0
				for i, x := range backends {
					if x == b {
						bi = i
					}
				}
				cells = append(cells, cell{w: w, v: v, b: b, jobs: jobs, gen: 1 + wi*16 + bi})
			}
		}
	}
	return cells
}

func containsWorkload(ws []*workload, w *workload) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
	}
	return false
}

// describeSize is a size for people: 1 GiB, 192 MiB.
func describeSize(n int64) string { return humanize.IBytes(uint64(n)) }
