//go:build linux

// Fsctl shows what an embedded ringfs engine is doing, and inspects files
// and the host the way ringfs sees them.
//
// # Commands
//
//	fsctl stats --socket PATH [--watch DURATION] [--json] [--timeout DURATION]
//	fsctl cache --socket PATH [--json] [--timeout DURATION]
//	fsctl inspect [--json] FILE...
//	fsctl probe [--json]
//	fsctl version [--json]
//	fsctl help [COMMAND]
//
// stats reads GET /stats (and GET /files, for the dirty bytes) from the
// stats socket of a running engine (engine.ListenStats and
// Engine.ServeStats): mode, backend and why it fell back, page cache
// resident, dirty and capacity bytes, hit ratio, readahead and writeback
// bytes and rates, evictions, waits for a file's lock (count, rate and
// mean wait; the line shows once there was one), reads and writes by the
// path that served them, SQEs per io_uring_enter (and the requests run
// as plain syscalls instead), requests in flight,
// errors and latency percentiles. With --watch it prints a frame every interval with the
// counts and rates of that interval (engine.Stats.Sub of consecutive
// snapshots), redrawing in place on a terminal, until SIGINT or SIGTERM.
// It connects anew for every snapshot, so that a socket served in front of
// several engines in turn (bench --stats-socket) is followed from one to
// the next. Two snapshots that do not follow one another (another engine answers
// on the socket, as it restarted or as bench moved to its next engine, or
// any counter went down) give no interval: fsctl says why on stderr, and
// that frame shows the totals since the engine started.
//
// cache reads GET /stats, to check that an engine answers, and GET
// /files: every file the engine holds with its size,
// resident and dirty bytes, open handles and mappings, and whether a
// writeback error is pending; most resident first.
//
// inspect needs no engine. For each regular file it shows the size and
// allocated bytes, the data and hole extents (lseek SEEK_DATA/SEEK_HOLE),
// the filesystem (statfs f_type, and whether ringfs runs its I/O there as
// plain syscalls rather than through io_uring: tmpfs and ramfs), the
// O_DIRECT alignment (statx
// STATX_DIOALIGN, "unknown" where the kernel or filesystem does not
// report it), and the kernel page-cache residency: cachestat(2) on Linux
// 6.5 and later, mincore(2) on a read-only mapping otherwise, drawn as a
// vmtouch-style bar ('O' a fully resident run of pages, 'o' a partly
// resident one, ' ' none). The kernel reveals a file's residency only to
// its owner and to whoever may write to it (cachestat refuses the others,
// and mincore answers them that every page is resident): for anyone else
// inspect reports the residency as unknown, with that reason, rather than
// what mincore claims. It reads no file data, so it leaves the page
// cache as it found it, and opens files with O_NOATIME when allowed.
//
// probe reports the kernel version, kernel.io_uring_disabled ("absent" on
// kernels without it), the seccomp mode, whether io_uring_setup works, the
// opcodes ringfs submits and whether the kernel supports each
// (IORING_REGISTER_PROBE), the ring's feature bits (uring.FeatureNames),
// RLIMIT_MEMLOCK, and the backend uring.New picks by default; when
// io_uring is blocked it says what to change (the seccomp profile, or the
// sysctl).
//
// # Output
//
// The human view goes to stdout: binary units (KiB, MiB), counts with
// thousands separators, latencies as durations. Latency percentiles are
// upper bounds of the engine's power-of-two buckets, shown as "≤".
// Diagnostics go to stderr, prefixed "fsctl:".
//
// With --json every command but help prints one JSON document (with
// --watch, one document per line). Each carries "schema_version": 1 and
// a "kind" naming the command. Values are integers (or strings and
// booleans) and keys end in their unit: resident_bytes, p99_ns,
// interval_ns; a plain count has no unit. A key is never removed or given
// a new meaning without a new schema_version; keys may be added. A value
// fsctl could not learn is null (cache_dirty_bytes when GET /files
// failed, dirty_pages under mincore). In stats, "totals" are counters
// since the engine started, "interval" (with --watch) the counters of the
// last interval, and "gauges" the state at the snapshot. The human view's
// hit ratio is reads.cache_hit.ops / (reads.cache_hit.ops + reads.fill.ops):
// the engine's count of reads served from its cache. The page cache's own
// "cache.hits" and "cache.misses" count only lookups made through the
// cache's fill path.
//
// # Exit status
//
//	0  success; also a --watch ended by SIGINT or SIGTERM, and a probe
//	   that found io_uring blocked (the report says so)
//	1  failure: the engine could not be reached or answered badly, a file
//	   could not be inspected (inspect goes on with the others first; a
//	   file inspected but for an unknown page-cache residency or O_DIRECT
//	   alignment is not a failure: the report says what is unknown, and why).
//	   An answer that is not an engine's is a bad one: stats without the
//	   mode, backend and start time every engine gives (such as {} or
//	   null), or a file list that is null or holds a file without a path
//	2  usage error: unknown command or flag, missing or bad argument
//
// # Security
//
// The stats socket is refused if it is a symbolic link: fsctl lstats the
// path and says so rather than follow a link that someone may have
// planted. It then opens the path with O_PATH|O_NOFOLLOW, checks that it
// is a socket, and connects through /proc/self/fd, so a link swapped in
// after the check is not followed either. A socket owned by another user
// draws a warning. Every request has a deadline (--timeout, 5s by
// default), response headers are limited to 64 KiB and bodies to 8 MiB,
// and redirects are refused. Strings that come from the engine or the
// file system (paths, reasons) are quoted when they hold control
// characters, so they cannot drive the terminal. inspect refuses anything
// but regular files before opening them (opening a FIFO or device can
// block or act), and opens with O_NONBLOCK.
//
// # Limits
//
// inspect lists at most 10,000 extents per file (16 in the human view)
// and maps at most 1 GiB at a time for mincore; the residency bar has 60
// cells. --watch is at least 50ms.
package main
