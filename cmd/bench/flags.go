//go:build linux

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
)

// config is what the flags ask for.
type config struct {
	file        string
	size        int64
	sizeSet     bool
	workingSet  int64 // 0: min(defaultWorkingSet, size)
	keep        bool
	overwrite   bool
	duration    time.Duration
	quick       bool
	jobs        int
	backends    []*backend
	backendsSet bool
	workloads   []*workload
	json        bool
	gobench     bool
	plot        string
	statsSocket string
	cpuProfile  string
	seed        uint64
}

const (
	defaultSize       = 1 << 30
	quickSize         = 256 << 20
	minSize           = 16 << 20
	defaultWorkingSet = 192 << 20 // fits the default 256 MiB ringfs cache
	quickWorkingSet   = 64 << 20
	defaultDuration   = 600 * time.Millisecond
	quickDuration     = 100 * time.Millisecond
)

// usageError is a bad command line: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// parseFlags parses args (without the program name). -h and --help
// write the help to help and return flag.ErrHelp; errors are returned,
// for the caller to report, and print nothing.
func parseFlags(args []string, help io.Writer) (*config, error) {
	cfg := &config{}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var size, workingSet, backendList, workloadList string
	fs.StringVar(&cfg.file, "file", "", "run on this `path` instead of a temporary file; it is kept afterwards (see --overwrite)")
	fs.StringVar(&size, "size", "", "size of the scratch file, e.g. 1GiB, 256MiB (default 1GiB, 256MiB with --quick)")
	fs.StringVar(&workingSet, "working-set", "", "bytes the hot and write workloads stay in (default: the smaller of 192MiB (64MiB with --quick) and --size)")
	fs.BoolVar(&cfg.keep, "keep", false, "keep the temporary scratch file and print its path")
	fs.BoolVar(&cfg.overwrite, "overwrite", false, "let --file overwrite an existing file that does not hold bench's pattern")
	fs.DurationVar(&cfg.duration, "duration", 0, "timed length of each cell (default 600ms, 100ms with --quick)")
	fs.BoolVar(&cfg.quick, "quick", false, "a short run: 256MiB file, 64MiB working set, 100ms cells, no fio unless named in --backends (about 20 s)")
	fs.IntVar(&cfg.jobs, "jobs", runtime.NumCPU(), "goroutines (fio jobs) of the multi-job randread-hot rows")
	fs.StringVar(&backendList, "backends", "", "comma-separated backends to run (default: every one available): "+backendNames())
	fs.StringVar(&workloadList, "workloads", "", "comma-separated workloads to run (default: all): "+workloadNames())
	fs.BoolVar(&cfg.json, "json", false, "print one JSON document instead of tables")
	fs.BoolVar(&cfg.gobench, "gobench", false, "print Go benchmark lines (for benchstat) instead of tables")
	fs.StringVar(&cfg.plot, "plot", "", "write a bar chart of IOPS to this SVG `file` when the run succeeds")
	fs.StringVar(&cfg.statsSocket, "stats-socket", "", "serve the running engine's stats on this Unix socket `path` (for fsctl stats); its directory must be yours and not group- or world-writable")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to `file`")
	fs.Uint64Var(&cfg.seed, "seed", 1, "seed of the random offsets")
	fs.Usage = func() {} // the flag package calls it on every error too
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(help, "usage: bench [flags]\n\nbench compares ringfs with os.File, mmap and fio on this machine.\n")
			fmt.Fprintf(help, "Exit status: 0 ok, 1 an I/O, verification or setup error, 2 a usage error.\n\n")
			fs.SetOutput(help)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, &usageError{msg: err.Error()}
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (flags only)", fs.Arg(0))
	}

	cfg.size = defaultSize
	if cfg.quick {
		cfg.size = quickSize
	}
	if size != "" {
		n, err := parseBytes("--size", size)
		if err != nil {
			return nil, err
		}
		if n < minSize {
			return nil, usagef("--size %s is below the minimum of %s", size, humanize.IBytes(minSize))
		}
		cfg.size, cfg.sizeSet = n&^(1<<20-1), true
	}
	if workingSet != "" {
		n, err := parseBytes("--working-set", workingSet)
		if err != nil {
			return nil, err
		}
		if n < 1<<20 {
			return nil, usagef("--working-set %s is below the minimum of 1 MiB", workingSet)
		}
		cfg.workingSet = n &^ (1<<20 - 1)
	}
	if cfg.duration < 0 {
		return nil, usagef("--duration %v is negative", cfg.duration)
	}
	if cfg.duration == 0 {
		cfg.duration = defaultDuration
		if cfg.quick {
			cfg.duration = quickDuration
		}
	}
	if cfg.jobs < 1 || cfg.jobs > 1024 {
		return nil, usagef("--jobs %d is out of range 1..1024", cfg.jobs)
	}
	if cfg.json && cfg.gobench {
		return nil, usagef("--json and --gobench both choose the output: pick one")
	}
	if cfg.keep && cfg.file != "" {
		return nil, usagef("--keep is for the temporary file; a --file is always kept")
	}
	if backendList != "" {
		cfg.backendsSet = true
		for _, name := range splitList(backendList) {
			b := backendByName(name)
			if b == nil {
				return nil, usagef("unknown backend %q (known: %s)", name, backendNames())
			}
			if !slices.Contains(cfg.backends, b) {
				cfg.backends = append(cfg.backends, b)
			}
		}
		if len(cfg.backends) == 0 {
			return nil, usagef("--backends names no backend")
		}
	}
	if workloadList != "" {
		for _, name := range splitList(workloadList) {
			w := workloadByName(name)
			if w == nil {
				return nil, usagef("unknown workload %q (known: %s)", name, workloadNames())
			}
			if !slices.Contains(cfg.workloads, w) {
				cfg.workloads = append(cfg.workloads, w)
			}
		}
		if len(cfg.workloads) == 0 {
			return nil, usagef("--workloads names no workload")
		}
	} else {
		cfg.workloads = workloads
	}
	return cfg, nil
}

func parseBytes(name, s string) (int64, error) {
	n, err := humanize.ParseBytes(s)
	if err != nil || n > 1<<50 {
		return 0, usagef("%s %q: want a size such as 1GiB or 256MiB", name, s)
	}
	return int64(n), nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
