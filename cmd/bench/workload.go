//go:build linux

package main

import (
	"fmt"
	"strings"
)

// kind is what a workload does per operation.
type kind uint8

const (
	randRead kind = iota
	randWrite
	seqRead
	seqWrite
	mixed // mixReadPercent % random reads, the rest random writes
)

const mixReadPercent = 70

// workload is one row group of the standard matrix. Names are part of the
// JSON output and never change.
type workload struct {
	name  string
	kind  kind
	block int // bytes per operation
	// direct: O_DIRECT over the whole file, nothing warmed. Otherwise the
	// operations stay in the working set, which every backend has read
	// once before timing (hot).
	direct bool
	// syncAtEnd: one Sync after the timed loop, inside the timed window.
	syncAtEnd bool
	// variants are the (goroutines, depth) pairs run for in-process
	// backends; jobsFlag marks the goroutine count taken from --jobs.
	variants []variant
	summary  string
}

// variant is a concurrency shape: jobs goroutines, each keeping depth
// operations in flight (depth > 1 only with Engine.Submit batches).
type variant struct {
	jobs, depth int
	fromFlag    bool // jobs comes from --jobs
	batched     bool // Submit batches of depth ops (engine backends only)
	// fioQueue: fio's io_uring engine runs this variant as one job with
	// jobs×depth in flight (how a program with one ring would do it).
	fioQueue bool
}

// directDepth is how many O_DIRECT reads randread-direct keeps in flight.
const directDepth = 32

// mixedJobs is the goroutine count of the mixed workload.
const mixedJobs = 8

var workloads = []*workload{
	{name: "randread-hot", kind: randRead, block: 4 << 10,
		variants: []variant{{jobs: 1, depth: 1}, {depth: 1, fromFlag: true}},
		summary:  "4 KiB random reads, working set resident"},
	{name: "randread-direct", kind: randRead, block: 4 << 10, direct: true,
		variants: []variant{{jobs: directDepth, depth: 1, fioQueue: true}, {jobs: 1, depth: directDepth, batched: true}},
		summary:  "4 KiB random reads, O_DIRECT, 32 in flight, whole file"},
	{name: "randwrite", kind: randWrite, block: 4 << 10, syncAtEnd: true,
		variants: []variant{{jobs: 1, depth: 1}},
		summary:  "4 KiB random writes over the working set, then one Sync (timed)"},
	{name: "seqread", kind: seqRead, block: 128 << 10,
		variants: []variant{{jobs: 1, depth: 1}},
		summary:  "128 KiB sequential reads, working set resident"},
	{name: "seqwrite", kind: seqWrite, block: 1 << 20, syncAtEnd: true,
		variants: []variant{{jobs: 1, depth: 1}},
		summary:  "1 MiB sequential writes over the working set, then one Sync (timed)"},
	{name: "mixed", kind: mixed, block: 4 << 10, syncAtEnd: true,
		variants: []variant{{jobs: mixedJobs, depth: 1}},
		summary:  "70 % reads / 30 % writes, 4 KiB random, 8 goroutines, then one Sync (timed)"},
}

func (w *workload) writes() bool { return w.kind == randWrite || w.kind == seqWrite || w.kind == mixed }

// hot reports whether the working set is made resident before timing.
func (w *workload) hot() bool { return !w.direct }

func workloadByName(name string) *workload {
	for _, w := range workloads {
		if w.name == name {
			return w
		}
	}
	return nil
}

func workloadNames() string {
	names := make([]string, len(workloads))
	for i, w := range workloads {
		names[i] = w.name
	}
	return strings.Join(names, ", ")
}

// fioShape is the (numjobs, iodepth) fio runs a variant with: psync and
// mmap have no queue depth, so their in-flight count is made of jobs;
// io_uring keeps the depth in one job, as a program with one ring would.
func fioShape(engine string, v variant) (numjobs, iodepth int) {
	inflight := v.jobs * v.depth
	if engine == "io_uring" && v.fioQueue {
		return 1, inflight
	}
	return inflight, 1
}

// blockLabel formats a block size the way benchmark names spell it.
func blockLabel(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// blockWords formats a block size for people: "4 KiB".
func blockWords(n int) string {
	l := blockLabel(n)
	for i, c := range l {
		if c < '0' || c > '9' {
			return l[:i] + " " + l[i:]
		}
	}
	return l
}
