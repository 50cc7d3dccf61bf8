//go:build linux

package uring

import "golang.org/x/sys/unix"

// InlineFile reports whether fd is on a filesystem whose reads and writes
// gain nothing from a ring: tmpfs and ramfs. Their files cannot be read or
// written without the possibility of blocking as io_uring asks, so the
// kernel hands every ring request on them to a worker thread, and a 4 KiB
// read or write through the ring costs over twenty times pread's or
// pwrite's: 8.7–9.1 µs against 0.33–0.38 µs on Linux 6.18, and 0.37–0.42
// µs marked Inline (go test -run '^$' -bench InlineFile ./uring/).
// Requests on such files should set Request.Inline. An fd fstatfs fails
// on is reported false.
//
// Only memory-backed filesystems are named. overlayfs on Linux 6.18 also
// hands every ring request to a worker, but its files sit on a device,
// and the workers overlap the device's latency: through the engine, 32
// goroutines of O_DIRECT reads made 1.39× os.File's IOPS on the ring and
// 0.90× as plain syscalls, and a Submit of 32 made 3.7× and 0.94×, where
// reads that miss ringfs's cache gained about 10% as plain syscalls
// (RINGFS_BENCH_DIR on an overlay mount, go test -bench
// 'DirectRead|Submit|ReadMiss' ./engine/, once as it is and once with
// OVERLAYFS_SUPER_MAGIC added to the list below).
func InlineFile(fd int) bool {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.TMPFS_MAGIC, unix.RAMFS_MAGIC:
		return true
	}
	return false
}

// inlineOnly reports whether every request of reqs asks to run inline
// (and none is on a registered file, which only the ring can resolve, nor
// a cancel, which only the ring can run).
func inlineOnly(reqs []Request) bool {
	for i := range reqs {
		if !reqs[i].Inline || reqs[i].Fixed || reqs[i].Op == OpCancel {
			return false
		}
	}
	return len(reqs) > 0
}

// runsInline reports whether a ring runs req with a plain syscall rather
// than submitting it: it asks to (Inline, not on a registered file nor a
// cancel), or this kernel lacks its opcode.
//
// Preconditions: req.Op < numOps.
func (r *Ring) runsInline(req *Request) bool {
	// A cancel acts on the ring's requests: it has no syscall of its own.
	return (req.Inline && !req.Fixed && req.Op != OpCancel) || !r.probe.Supported[kernelOp[req.Op]]
}
