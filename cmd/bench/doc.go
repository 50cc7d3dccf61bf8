//go:build linux

// Command bench compares ringfs with what a Go program would use instead
// (os.File, a plain mmap, and fio's psync, io_uring and mmap engines) on
// this machine, in about a minute:
//
//	go run ./cmd/bench
//
// # What it runs
//
// bench writes a scratch file (1 GiB in $TMPDIR, removed afterwards) with
// a deterministic pattern, then runs every workload against every
// backend, one cell at a time, and prints one table per workload.
//
// Workloads (the names appear in the JSON output and do not change):
//
//	randread-hot     4 KiB random reads over the working set, resident; 1 goroutine and --jobs goroutines
//	randread-direct  4 KiB random reads with O_DIRECT over the whole file, 32 in flight
//	                 (32 goroutines; for io_uring engines also 1 goroutine with Submit batches of 32)
//	randwrite        4 KiB random writes over the working set, then one Sync, inside the timed window
//	seqread          128 KiB sequential reads over the working set, resident
//	seqwrite         1 MiB sequential writes over the working set, then one Sync (timed)
//	mixed            70 % reads / 30 % writes, 4 KiB random, 8 goroutines, then one Sync (timed)
//
// Backends: ringfs (Exclusive mode, default options), ringfs-writethrough,
// ringfs-mmap (Options.HostMmap), ringfs-psync (the fallback backend), os
// (os.File ReadAt/WriteAt), mmap (one MAP_SHARED mapping, copy in and
// out), iouringgo (a ringfs engine on github.com/iceber/iouring-go; only
// in a binary built with -tags iouringgo -ldflags=-checklinkname=0), and
// fio-psync, fio-io_uring and fio-mmap when fio is on PATH. mmap and
// fio-mmap have no O_DIRECT form and sit out randread-direct.
//
// Fairness: "hot" means each backend reads the working set once before
// timing: os, mmap and fio through the kernel's page cache (fio also gets
// --invalidate=0, or it would drop that cache first, and fio-mmap an
// untimed --ramp_time, since it maps the file itself), ringfs through
// its own cache. The working set (192 MiB by default) fits ringfs's
// default 256 MiB cache; a larger --working-set gets a cache sized to fit
// (the table header says so). Every backend of a workload uses the same
// working set, block size, concurrency and duration. fio runs psync and
// mmap with one job per operation in flight, io_uring with the in-flight
// count as its queue depth when the workload is about depth
// (randread-direct: 1 job, iodepth 32).
//
// # Flags
//
//	--file PATH        run on PATH instead of a temporary file (kept afterwards). A PATH that
//	                   exists and does not hold bench's pattern is refused unless --overwrite.
//	                   A PATH bench creates is removed again if writing the pattern fails.
//	--size N           scratch file size (1GiB; 256MiB with --quick); a size beyond the file
//	                   system's free space is refused before the file is created
//	--working-set N    the hot and write workloads' region (192MiB; 64MiB with --quick)
//	--keep             keep the temporary file; --file it later to skip writing it again
//	--duration D       timed length of each cell (600ms; 100ms with --quick)
//	--quick            about 20 s: smaller file and working set, short cells, no fio unless named
//	--jobs N           goroutines of the multi-job randread-hot rows (number of CPUs)
//	--backends LIST    comma-separated backends; --workloads LIST likewise
//	--json             print one JSON document instead of the tables
//	--gobench          print Go benchmark lines instead (compare runs with benchstat)
//	--plot FILE        also write an SVG bar chart of IOPS per backend per workload, when
//	                   the run succeeds; a failed run leaves an existing FILE as it was
//	--stats-socket P   serve the running engine's stats on a Unix socket, for `fsctl stats`;
//	                   P's directory must be owned by the user running bench and not be
//	                   group- or world-writable (so not /tmp itself)
//	--cpuprofile FILE  profile the whole run
//	--seed N           seed of the random offsets
//
// An unknown backend or workload, or one not available here (iouringgo
// not built in, fio not installed), is a usage error: exit status 2.
//
// Ctrl-C (SIGINT), SIGTERM or SIGHUP stops the run within moments, also
// while the scratch file is being written: the tables show what ran,
// the files bench created are removed as at the end of any failed run,
// and the exit status is 1. A second signal removes them and exits at
// once.
//
// # Output
//
// Each row: IOPS, throughput, latency p50/p99/max, CPU time per
// operation, heap allocations per operation (in-process rows), SQEs per
// io_uring_enter (rows of io_uring engines that entered the kernel), and
// the speedup over the os row with as many operations in flight (jobs ×
// depth: one goroutine with Submit batches of 32 is compared with os's
// 32 goroutines).
//
// The JSON document is
//
//	{"schema_version":1,"config":{...},"results":[{"workload","backend","block_size_bytes","jobs",
//	 "depth","ops","seconds","iops","bw_bytes_per_sec","lat_ns":{"p50","p99","max"},
//	 "cpu_seconds_per_op","allocs_per_op","sqes_per_enter","speedup_vs_os","error","notes"}]}
//
// with null where a figure does not apply. config records the machine
// (CPU, kernel, file system, Go, fio) and the run's parameters.
//
// # How it measures
//
// In-process rows: the goroutines run for --duration; the write
// workloads' Sync is inside the timed window. Latency comes from a
// per-goroutine log-linear histogram (3 % buckets); randread-hot times one
// operation in 16, since reading the clock around every 4 KiB cache hit
// would slow the loop by a sixth; other workloads time every operation.
// Submit-batch rows give each operation its batch's latency. CPU is the
// process's user+system time (getrusage) over the timed window divided by
// operations; allocations come from runtime/metrics; SQEs per enter from
// the engine's Stats delta. fio rows take fio's own figures from its JSON
// report (its runtime includes --end_fsync; its CPU is its job threads',
// so time spent in io_uring's kernel workers is not counted for fio).
//
// Verification: every 4 KiB block of the file carries its offset and a
// generation number (0 for the initial fill, one per write cell), with a
// body that depends on the generation. One read in 512 is checked (not
// in mixed, where a read may overlap a write of the same block), a
// sample of each write cell's writes is read back after its Sync through
// the backend and through a separate descriptor, and a random sample of
// the working set is checked. fio writes its own data, so the pattern is
// rewritten after a fio write cell. Any I/O or verification error makes
// the exit status 1 (after the tables are printed).
//
// # Limits
//
// Linux only. Numbers are only comparable within one run: on a shared or
// virtual machine, absolute figures drift from run to run while the
// ratios hold better. Each engine backend keeps one engine for the whole
// run (its cache memory, up to 256 MiB, stays mapped until the end); a
// cell's file handle is closed after the cell, which drops its cached
// pages, so every cell starts from a cold ringfs cache and warms it. The
// file system must support O_DIRECT for randread-direct (tmpfs before
// Linux 6.6 does not: the workload is skipped with a notice). The
// progress line is printed only when stderr is a terminal.
package main
