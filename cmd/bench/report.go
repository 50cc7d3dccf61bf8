//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/engine"
)

// schemaVersion changes when the JSON document changes incompatibly.
const schemaVersion = 1

// document is the --json output.
type document struct {
	SchemaVersion int       `json:"schema_version"`
	Config        docConfig `json:"config"`
	Results       []result  `json:"results"`
}

type docConfig struct {
	Command          string   `json:"command"`
	Date             string   `json:"date"`
	File             string   `json:"file"`
	Filesystem       string   `json:"filesystem"`
	FileSizeBytes    int64    `json:"file_size_bytes"`
	WorkingSetBytes  int64    `json:"working_set_bytes"`
	RingfsCacheBytes int64    `json:"ringfs_cache_bytes"`
	DurationSeconds  float64  `json:"duration_seconds"`
	Jobs             int      `json:"jobs"`
	Quick            bool     `json:"quick"`
	Seed             uint64   `json:"seed"`
	Backends         []string `json:"backends"`
	Workloads        []string `json:"workloads"`
	RingfsBackend    string   `json:"ringfs_backend"` // the backend engine.New picked by default
	FallbackReason   string   `json:"ringfs_fallback_reason,omitempty"`
	GoVersion        string   `json:"go_version"`
	GOOS             string   `json:"goos"`
	GOARCH           string   `json:"goarch"`
	GOMAXPROCS       int      `json:"gomaxprocs"`
	NumCPU           int      `json:"num_cpu"`
	CPU              string   `json:"cpu"`
	Kernel           string   `json:"kernel"`
	Fio              string   `json:"fio_version,omitempty"`
}

func (r *runner) document(sel []*backend, results []result) *document {
	cfg := r.cfg
	c := docConfig{
		Command:         "bench " + strings.Join(os.Args[1:], " "),
		Date:            time.Now().UTC().Format(time.RFC3339),
		File:            r.path,
		Filesystem:      filesystem(r.path),
		FileSizeBytes:   r.size,
		WorkingSetBytes: r.workingSet,
		DurationSeconds: r.duration.Seconds(),
		Jobs:            cfg.jobs,
		Quick:           cfg.quick,
		Seed:            cfg.seed,
		GoVersion:       runtime.Version(),
		GOOS:            runtime.GOOS,
		GOARCH:          runtime.GOARCH,
		GOMAXPROCS:      runtime.GOMAXPROCS(0),
		NumCPU:          runtime.NumCPU(),
		CPU:             cpuModel(),
		Kernel:          kernelRelease(),
	}
	c.RingfsCacheBytes = r.cacheSize
	if c.RingfsCacheBytes == 0 {
		c.RingfsCacheBytes = engine.DefaultCacheSize
	}
	for _, b := range sel {
		c.Backends = append(c.Backends, b.name)
	}
	for _, w := range cfg.workloads {
		c.Workloads = append(c.Workloads, w.name)
	}
	if e, err := engine.New(engine.Options{CacheSize: -1}); err == nil {
		st := e.Stats()
		c.RingfsBackend, c.FallbackReason = st.Backend, st.FallbackReason
		e.Close()
	}
	if r.fio != nil {
		c.Fio = r.fio.version
	}
	if results == nil {
		results = []result{}
	}
	return &document{SchemaVersion: schemaVersion, Config: c, Results: results}
}

func writeJSON(w io.Writer, doc *document) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

// writeTables prints one table per workload.
func writeTables(out io.Writer, doc *document) error {
	bw := bufio.NewWriter(out)
	c := doc.Config
	fmt.Fprintf(bw, "ringfs bench: %s, %s, %s (%s), kernel %s, %d CPUs, %s\n",
		c.Date[:10], c.CPU, c.Filesystem, c.File, c.Kernel, c.NumCPU, c.GoVersion)
	fmt.Fprintf(bw, "file %s, working set %s, %v per cell; ringfs backend %s",
		describeSize(c.FileSizeBytes), describeSize(c.WorkingSetBytes),
		time.Duration(c.DurationSeconds*float64(time.Second)), c.RingfsBackend)
	if c.FallbackReason != "" {
		fmt.Fprintf(bw, " (%s)", c.FallbackReason)
	}
	if c.RingfsCacheBytes != engine.DefaultCacheSize {
		fmt.Fprintf(bw, "; ringfs cache %s (the default %s, enlarged to hold the working set)",
			describeSize(c.RingfsCacheBytes), describeSize(engine.DefaultCacheSize))
	}
	if c.Fio != "" {
		fmt.Fprintf(bw, "; %s", c.Fio)
	}
	fmt.Fprintln(bw)
	for _, w := range workloads {
		var rows []result
		for _, r := range doc.Results {
			if r.Workload == w.name {
				rows = append(rows, r)
			}
		}
		if len(rows) == 0 {
			continue
		}
		fmt.Fprintf(bw, "\n%s: %s\n", w.name, w.summary)
		if w.direct {
			fmt.Fprintf(bw, "  region: the whole %s file, nothing cached\n", describeSize(c.FileSizeBytes))
		} else {
			fmt.Fprintf(bw, "  working set: the first %s of the file, read once through each backend before timing\n",
				describeSize(c.WorkingSetBytes))
		}
		tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "backend\tjobs\tdepth\tIOPS\tthroughput\tp50\tp99\tmax\tCPU/op\tallocs/op\tSQEs/enter\tvs os\t")
		var notes []string
		for _, r := range rows {
			if r.Error != "" {
				fmt.Fprintf(tw, "%s\t%d\t%d\tFAILED\t\t\t\t\t\t\t\t\t\n", r.Backend, r.Jobs, r.Depth)
				notes = append(notes, fmt.Sprintf("%s: %s", r.Backend, r.Error))
				continue
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s/s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
				r.Backend, r.Jobs, r.Depth, formatIOPS(r.IOPS), humanize.IBytes(uint64(r.BW)),
				formatNs(float64(r.Lat.P50)), formatNs(float64(r.Lat.P99)), formatNs(float64(r.Lat.Max)),
				formatNs(r.CPUPerOp*1e9), formatOpt(r.AllocsPerOp, "%.2f"), formatOpt(r.SQEsPerEnter, "%.1f"),
				formatOpt(r.SpeedupVsOS, "%.2f×"))
			for _, n := range r.Notes {
				if !strings.HasPrefix(n, "latency timed") && !strings.HasPrefix(n, "the final Sync") {
					notes = append(notes, fmt.Sprintf("%s jobs=%d: %s", r.Backend, r.Jobs, n))
				}
			}
		}
		tw.Flush()
		if w.syncAtEnd {
			var parts []string
			for _, r := range rows {
				for _, n := range r.Notes {
					if d, ok := strings.CutPrefix(n, "the final Sync took "); ok {
						parts = append(parts, fmt.Sprintf("%s %s", r.Backend, strings.TrimSuffix(strings.Replace(d, " of the ", " of ", 1), " timed")))
					}
				}
			}
			if len(parts) > 0 {
				fmt.Fprintf(bw, "  time in the final Sync (of the timed time): %s\n", strings.Join(parts, ", "))
			}
		}
		if latencyStride(w) > 1 {
			fmt.Fprintf(bw, "  latency of in-process rows: 1 op in %d timed (timing every op would slow the loop)\n", latencyStride(w))
		}
		for _, n := range notes {
			fmt.Fprintf(bw, "  note: %s\n", n)
		}
	}
	fmt.Fprintf(bw, "\nvs os: IOPS over the os row with as many operations in flight (jobs × depth). CPU/op: process CPU time (user+system) per op; fio: its job threads'.\n")
	return bw.Flush()
}

// writeGobench prints the results as Go benchmark lines, so that
// benchstat can compare runs.
func writeGobench(out io.Writer, doc *document) error {
	bw := bufio.NewWriter(out)
	c := doc.Config
	fmt.Fprintf(bw, "goos: %s\ngoarch: %s\npkg: github.com/ringfs/ringfs/cmd/bench\ncpu: %s\n", c.GOOS, c.GOARCH, c.CPU)
	fmt.Fprintf(bw, "kernel: %s\nfilesystem: %s\nworking-set: %s\n", c.Kernel, c.Filesystem, strings.ReplaceAll(describeSize(c.WorkingSetBytes), " ", ""))
	for _, r := range doc.Results {
		if r.Error != "" || r.Ops == 0 {
			continue
		}
		fmt.Fprintf(bw, "BenchmarkBench/workload=%s/backend=%s/bs=%s/jobs=%d/depth=%d-%d\t%d\t%.1f ns/op\t%.2f MB/s\t%d p50-ns\t%d p99-ns\t%d max-ns\t%.1f cpu-ns/op",
			r.Workload, r.Backend, blockLabel(r.BlockSize), r.Jobs, r.Depth, c.GOMAXPROCS, r.Ops,
			r.Seconds*1e9/float64(r.Ops), r.BW/1e6, r.Lat.P50, r.Lat.P99, r.Lat.Max, r.CPUPerOp*1e9)
		if r.AllocsPerOp != nil {
			fmt.Fprintf(bw, "\t%.3f allocs/op", *r.AllocsPerOp)
		}
		if r.SQEsPerEnter != nil {
			fmt.Fprintf(bw, "\t%.2f sqes/enter", *r.SQEsPerEnter)
		}
		fmt.Fprintln(bw)
	}
	return bw.Flush()
}

func formatIOPS(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fK", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func formatNs(ns float64) string {
	switch {
	case ns <= 0:
		return "0"
	case ns < 1e3:
		return fmt.Sprintf("%.0fns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%.1fµs", ns/1e3)
	case ns < 1e9:
		return fmt.Sprintf("%.1fms", ns/1e6)
	}
	return fmt.Sprintf("%.2fs", ns/1e9)
}

func formatOpt(v *float64, format string) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf(format, *v)
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// filesystem names the file system holding path.
func filesystem(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlayfs"
	case unix.F2FS_SUPER_MAGIC:
		return "f2fs"
	}
	return fmt.Sprintf("fs type %#x", st.Type)
}
