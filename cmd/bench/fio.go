//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// fioInfo is the fio found on PATH.
type fioInfo struct {
	path    string
	version string
}

func findFio() *fioInfo {
	p, err := exec.LookPath("fio")
	if err != nil {
		return nil
	}
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		return nil
	}
	return &fioInfo{path: p, version: strings.TrimSpace(string(out))}
}

// fioArgs is fio's command line for cell c: the same file, region, block
// size, concurrency and duration as the in-process rows.
func (r *runner) fioArgs(c cell) []string {
	w, b := c.w, c.b
	v := c.v
	v.jobs = c.jobs
	numjobs, iodepth := fioShape(b.fio, v)
	rw := map[kind]string{randRead: "randread", randWrite: "randwrite", seqRead: "read", seqWrite: "write", mixed: "randrw"}[w.kind]
	args := []string{
		"--name=" + w.name,
		"--filename=" + fioFilename(r.path),
		"--ioengine=" + b.fio,
		"--rw=" + rw,
		"--bs=" + strconv.Itoa(w.block),
		"--size=" + strconv.FormatInt(r.region(w), 10),
		"--numjobs=" + strconv.Itoa(numjobs),
		"--iodepth=" + strconv.Itoa(iodepth),
		"--thread",
		"--time_based",
		"--runtime=" + strconv.FormatInt(max(r.duration.Milliseconds(), 1), 10) + "ms",
		"--group_reporting",
		"--lat_percentiles=1",
		"--percentile_list=50:99",
		"--norandommap",
		"--randrepeat=0",
		"--disk_util=0", // saves fio a third of a second of start-up
		"--output-format=json",
	}
	if w.direct {
		args = append(args, "--direct=1")
	} else {
		// Without it fio drops the file's pages from the kernel's cache
		// before it starts: the rows would not be hot.
		args = append(args, "--invalidate=0")
	}
	if w.syncAtEnd {
		args = append(args, "--end_fsync=1") // fio counts it in the runtime
	}
	if w.kind == mixed {
		args = append(args, "--rwmixread="+strconv.Itoa(mixReadPercent), "--unified_rw_reporting=both")
	}
	if b.fio == "mmap" && !w.writes() {
		// fio maps the file when it starts; its first pass over the
		// working set page-faults. The other backends were warmed
		// before timing, so fio-mmap is warmed by an untimed ramp.
		args = append(args, "--ramp_time="+strconv.FormatInt(max(r.duration.Milliseconds()/2, 100), 10)+"ms")
	}
	return args
}

// fioFilename is path as fio's --filename must spell it. fio splits the
// option at every ':' into several file names, except at a colon right
// after a backslash, where it drops that one backslash and keeps the
// colon; a backslash anywhere else is an ordinary character. So every
// colon gets a backslash and nothing else changes: F:\x is written
// F\:\x, and p\:q (a backslash in the name before the colon) p\\:q.
// The path is made absolute because fio reads the name "-" as stdin or
// stdout.
func fioFilename(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	return strings.ReplaceAll(path, ":", `\:`)
}

// runFio runs fio for c and converts its JSON report.
func (r *runner) runFio(ctx context.Context, c cell) result {
	w := c.w
	res := result{Workload: w.name, Backend: c.b.name, BlockSize: w.block, Jobs: c.jobs, Depth: c.v.depth, variant: c.v}
	numjobs, iodepth := fioShape(c.b.fio, variant{jobs: c.jobs, depth: c.v.depth, fioQueue: c.v.fioQueue})
	res.Jobs, res.Depth = numjobs, iodepth
	if w.hot() {
		// fio reads through the kernel's cache: make the working set
		// resident there, as warm does for the other backends, from the
		// same start (dropHostCache).
		r.dropHostCache()
		f, err := os.Open(r.path)
		if err != nil {
			res.Error = err.Error()
			return res
		}
		err = warm(f, r.workingSet)
		f.Close()
		if err != nil {
			res.Error = fmt.Sprintf("warming the working set: %v", err)
			return res
		}
	}
	args := r.fioArgs(c)
	cmd := exec.CommandContext(ctx, r.fio.path, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	r.progress.cell(c, start, r.duration, 0, 1)
	err := cmd.Run()
	r.progress.done()
	if err != nil {
		res.Error = fmt.Sprintf("fio: %v: %s", err, firstLine(stderr.String()))
		return res
	}
	fr, err := parseFio(stdout.Bytes(), w.kind)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	res.Ops, res.Seconds = fr.ops, fr.seconds
	res.finish()
	res.Lat = fr.lat
	if res.Ops > 0 {
		res.CPUPerOp = fr.cpuSeconds / float64(res.Ops)
	}
	if res.Ops == 0 {
		res.Error = "fio did no I/O"
	}
	return res
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// fioResult is what bench takes from fio's report.
type fioResult struct {
	ops        int64
	seconds    float64
	lat        latency
	cpuSeconds float64
}

// fioReport is the part of fio's --output-format=json document bench reads.
type fioReport struct {
	Version string   `json:"fio version"`
	Jobs    []fioJob `json:"jobs"`
}

type fioJob struct {
	Name       string  `json:"jobname"`
	Error      int     `json:"error"`
	Read       fioDir  `json:"read"`
	Write      fioDir  `json:"write"`
	Mixed      *fioDir `json:"mixed"`       // with --unified_rw_reporting=both
	JobRuntime float64 `json:"job_runtime"` // ms, summed over the group's jobs
	UsrCPU     float64 `json:"usr_cpu"`     // % of job_runtime
	SysCPU     float64 `json:"sys_cpu"`
}

type fioDir struct {
	IOBytes  int64   `json:"io_bytes"`
	TotalIOs int64   `json:"total_ios"`
	Runtime  float64 `json:"runtime"` // ms
	Lat      fioLat  `json:"lat_ns"`
}

type fioLat struct {
	Max        float64            `json:"max"`
	N          int64              `json:"N"`
	Percentile map[string]float64 `json:"percentile"`
}

// parseFio reads fio's JSON report (one group, --group_reporting). fio
// may print notices before the document; they are skipped. For mixed
// workloads the "mixed" section (reads and writes together) is used.
func parseFio(out []byte, k kind) (fioResult, error) {
	i := bytes.IndexByte(out, '{')
	if i < 0 {
		return fioResult{}, fmt.Errorf("fio printed no JSON report: %q", firstLine(string(out)))
	}
	var rep fioReport
	if err := json.Unmarshal(out[i:], &rep); err != nil {
		return fioResult{}, fmt.Errorf("parsing fio's report: %w", err)
	}
	if len(rep.Jobs) != 1 {
		return fioResult{}, fmt.Errorf("fio's report has %d job groups, want 1", len(rep.Jobs))
	}
	j := rep.Jobs[0]
	if j.Error != 0 {
		return fioResult{}, fmt.Errorf("fio job %s failed with error %d", j.Name, j.Error)
	}
	var d fioDir
	switch k {
	case randRead, seqRead:
		d = j.Read
	case randWrite, seqWrite:
		d = j.Write
	case mixed:
		if j.Mixed == nil {
			return fioResult{}, errors.New("fio's report has no mixed section (fio older than 3.25?)")
		}
		d = *j.Mixed
	}
	if d.Runtime <= 0 {
		return fioResult{}, fmt.Errorf("fio's report has no runtime for job %s", j.Name)
	}
	res := fioResult{
		ops:        d.TotalIOs,
		seconds:    d.Runtime / 1000,
		cpuSeconds: (j.UsrCPU + j.SysCPU) / 100 * j.JobRuntime / 1000,
		lat:        latency{Max: int64(d.Lat.Max)},
	}
	for key, v := range d.Lat.Percentile {
		q, err := strconv.ParseFloat(key, 64)
		if err != nil {
			continue
		}
		switch q {
		case 50:
			res.lat.P50 = int64(v)
		case 99:
			res.lat.P99 = int64(v)
		}
	}
	// fio's percentiles are approximations, a value within one of its
	// histogram buckets (each up to 1/64 of its values wide), while max
	// is exact, so a p99 can come out above max. No operation took
	// longer than max: cap them, as the in-process rows' histogram does.
	res.lat.P50 = min(res.lat.P50, res.lat.Max)
	res.lat.P99 = min(res.lat.P99, res.lat.Max)
	return res, nil
}
