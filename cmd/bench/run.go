//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/engine"
)

// cell is one backend running one variant of one workload.
type cell struct {
	w    *workload
	v    variant
	b    *backend
	gen  int // the generation this cell's writes carry
	jobs int
}

// region is the part of the file a cell's operations fall in.
func (r *runner) region(w *workload) int64 {
	if w.direct {
		return r.size
	}
	return r.workingSet
}

// latencyStride is 1 in how many operations a job times. Timing costs
// two clock reads (~50 ns), a sixth of a hot 4 KiB read; so random hot
// reads time 1 operation in 16 and the rest time every one.
func latencyStride(w *workload) int64 {
	if w.kind == randRead && w.hot() {
		return 16
	}
	return 1
}

const (
	verifyStride = 512 // 1 read in this many is checked against the pattern
	recordStride = 64  // 1 write in this many is recorded, to check after Sync
	maxRecorded  = 256 // per job
)

// job is one goroutine's state; padded so that jobs do not share cache
// lines.
type job struct {
	ops     atomic.Int64 // published every 64 operations, for progress
	hist    histogram
	err     error
	written []int64
	_       [64]byte
}

// live is an in-process cell in progress: its session stays open across
// its timed rounds, and the rounds' figures add up.
type live struct {
	c      cell
	s      *session
	res    result
	hist   histogram
	ops    int64
	busy   time.Duration // timed time, over all rounds
	cpu    time.Duration
	allocs uint64
	enters uint64 // io_uring_enter calls (engine backends)
	sqes   uint64
	reads  uint64 // engine reads, and how many filled the cache
	fills  uint64
	sync   time.Duration // in the write workloads' final Syncs
}

// maxRound is the longest timed round of a read-only workload. Their
// cells run in rounds taking turns, so that a burst of load from
// elsewhere on the machine hits every backend of a comparison alike.
const maxRound = 200 * time.Millisecond

// rounds is how many rounds the cells of w are split into. Workloads that
// write run in one round, one cell after another: a ringfs engine in
// Exclusive mode must be the only writer while it has the file open.
func (r *runner) rounds(w *workload) int {
	if w.writes() {
		return 1
	}
	return max(1, int((r.duration+maxRound-1)/maxRound))
}

// runGroup runs the in-process cells of one variant of one workload: all
// are opened and warmed, then timed in rounds taking turns (in a
// different order each round), then checked and closed.
func (r *runner) runGroup(ctx context.Context, cells []cell) []result {
	if len(cells) == 0 {
		return nil
	}
	if cells[0].w.writes() {
		out := make([]result, 0, len(cells))
		for _, c := range cells {
			out = append(out, r.runCells(ctx, []cell{c})...)
		}
		return out
	}
	return r.runCells(ctx, cells)
}

func (r *runner) runCells(ctx context.Context, cells []cell) []result {
	if cells[0].w.hot() {
		r.dropHostCache()
	}
	ls := make([]*live, len(cells))
	for i, c := range cells {
		ls[i] = r.open(c)
	}
	n := r.rounds(cells[0].w)
	per := r.duration / time.Duration(n)
	for round := range n {
		for k := range ls {
			l := ls[(k+round)%len(ls)]
			if l.res.Error != "" || ctx.Err() != nil {
				continue
			}
			r.progress.cell(l.c, time.Now(), per, round, n)
			r.timeRound(ctx, l, per)
			r.progress.done()
		}
	}
	out := make([]result, len(ls))
	for i, l := range ls {
		out[i] = r.finish(ctx, l)
	}
	return out
}

// open opens and, for hot workloads, warms a cell's session.
func (r *runner) open(c cell) *live {
	w, v, b := c.w, c.v, c.b
	l := &live{c: c, res: result{Workload: w.name, Backend: b.name, BlockSize: w.block, Jobs: c.jobs, Depth: v.depth, variant: v}}
	s, err := r.openSession(b, w.direct)
	if err != nil {
		l.res.Error = fmt.Sprintf("open: %v", err)
		return l
	}
	l.s = s
	if w.hot() {
		t := time.Now()
		if err := warm(s.h, r.workingSet); err != nil {
			l.res.Error = fmt.Sprintf("warming the working set: %v", err)
		}
		if trace {
			fmt.Fprintf(r.log, "trace: warm %s: %v\n", b.name, time.Since(t))
		}
	}
	return l
}

// timeRound runs one timed round of l for d: the jobs start together and
// stop together; a write workload's Sync is inside the round.
func (r *runner) timeRound(ctx context.Context, l *live, d time.Duration) {
	c, s := l.c, l.s
	w, v := c.w, c.v
	if r.stats != nil && s.eng != nil {
		r.stats.attach(s.eng)
		defer r.stats.detach(s.eng)
	}
	jobs := make([]*job, c.jobs)
	for i := range jobs {
		jobs[i] = &job{written: make([]int64, 0, maxRecorded)}
	}
	var stop atomic.Bool
	var ready, done sync.WaitGroup
	startGate := make(chan struct{})
	region := r.region(w)
	for i, j := range jobs {
		ready.Add(1)
		done.Add(1)
		// Each job allocates its buffers, then waits at the gate, so
		// that set-up is neither timed nor counted as allocations.
		wait := func() {
			ready.Done()
			<-startGate
		}
		go func() {
			defer done.Done()
			if v.batched {
				r.batchLoop(s, w, v, region, uint64(i), j, &stop, wait)
			} else {
				r.loop(s.h, w, c, region, uint64(i), len(jobs), j, &stop, wait)
			}
		}()
	}
	ready.Wait()

	var engBefore engine.Stats
	if s.eng != nil {
		engBefore = s.eng.Stats()
	}
	cpu0 := cpuTime()
	allocs0 := heapAllocs()
	start := time.Now()
	close(startGate)
	r.progress.ops(func() int64 {
		var n int64
		for _, j := range jobs {
			n += j.ops.Load()
		}
		return n
	})
	timer := time.NewTimer(d)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	stop.Store(true)
	done.Wait()
	var syncErr error
	if w.syncAtEnd {
		t := time.Now()
		syncErr = s.h.Sync()
		l.sync += time.Since(t)
	}
	l.busy += time.Since(start)
	l.cpu += cpuTime() - cpu0
	l.allocs += heapAllocs() - allocs0
	r.progress.ops(nil)

	for _, j := range jobs {
		l.ops += j.ops.Load()
		l.hist.merge(&j.hist)
		if j.err != nil && l.res.Error == "" {
			l.res.Error = j.err.Error()
		}
	}
	if l.res.Error == "" && syncErr != nil {
		l.res.Error = fmt.Sprintf("sync: %v", syncErr)
	}
	if s.eng != nil {
		dd := s.eng.Stats().Sub(engBefore)
		l.enters += dd.Ring.Enters
		l.sqes += dd.Ring.SQEs
		l.reads += dd.Reads.Ops()
		l.fills += dd.Reads.Fill.Ops
	}
	if l.res.Error == "" && w.writes() {
		if err := r.verifyWrites(s.h, c.gen, jobs, w); err != nil {
			l.res.Error = err.Error()
		}
	}
}

// finish turns l's totals into its result and closes its session.
func (r *runner) finish(ctx context.Context, l *live) result {
	res := l.res
	w, b := l.c.w, l.c.b
	if l.s != nil {
		if err := l.s.close(); err != nil && res.Error == "" {
			res.Error = fmt.Sprintf("close: %v", err)
		}
	}
	if ctx.Err() != nil && res.Error == "" {
		res.Error = "interrupted"
	}
	res.Ops = l.ops
	res.Seconds = l.busy.Seconds()
	res.finish()
	res.Lat = latency{P50: l.hist.quantile(0.50), P99: l.hist.quantile(0.99), Max: l.hist.max}
	if res.Ops > 0 {
		res.CPUPerOp = l.cpu.Seconds() / float64(res.Ops)
		res.AllocsPerOp = ptr(float64(l.allocs) / float64(res.Ops))
	}
	if st := latencyStride(w); st > 1 {
		res.Notes = append(res.Notes, fmt.Sprintf("latency timed on 1 op in %d", st))
	}
	if w.syncAtEnd && l.busy > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the final Sync took %v of the %v timed",
			l.sync.Round(time.Millisecond), l.busy.Round(time.Millisecond)))
	}
	if b.kind == kindEngine {
		if b.ring && l.enters > 0 {
			res.SQEsPerEnter = ptr(float64(l.sqes) / float64(l.enters))
		}
		if w.hot() && l.reads > 0 && l.fills*100 > l.reads {
			res.Notes = append(res.Notes, fmt.Sprintf("%.1f%% of reads missed the ringfs cache",
				100*float64(l.fills)/float64(l.reads)))
		}
	}
	return res
}

// loop is one goroutine of a cell: operations until stop.
func (r *runner) loop(h handle, w *workload, c cell, region int64, id uint64, njobs int, j *job, stop *atomic.Bool, wait func()) {
	bs := int64(w.block)
	rbuf := alignedBuf(w.block)
	wbuf := alignedBuf(w.block)
	prepare(wbuf, c.gen)
	rng := rand.NewPCG(r.seed, id)
	nblocks := uint64(region / bs)
	pos := (int64(id) * (region / int64(njobs))) / bs * bs // sequential jobs start spread out
	stride := latencyStride(w)
	verifyReads := w.kind != mixed // a read racing a write of the same block may see both
	var n int64
	wait()
	for !stop.Load() {
		var off int64
		switch w.kind {
		case seqRead, seqWrite:
			if pos+bs > region {
				pos = 0
			}
			off = pos
			pos += bs
		default:
			off = int64(rng.Uint64()%nblocks) * bs
		}
		write := w.kind == randWrite || w.kind == seqWrite ||
			(w.kind == mixed && rng.Uint64()%100 >= mixReadPercent)
		var m int
		var err error
		if write {
			stamp(wbuf, off, c.gen)
		}
		timed := n%stride == 0
		var t0 time.Time
		if timed {
			t0 = time.Now()
		}
		if write {
			m, err = h.WriteAt(wbuf, off)
		} else {
			m, err = h.ReadAt(rbuf, off)
		}
		if timed {
			j.hist.add(time.Since(t0))
		}
		if err != nil || m != len(rbuf) {
			j.err = opError(write, off, m, len(rbuf), err)
			break
		}
		if write {
			if n%recordStride == 0 && len(j.written) < cap(j.written) {
				j.written = append(j.written, off)
			}
		} else if verifyReads && n%verifyStride == 0 {
			if err := verify(rbuf, off, -1); err != nil {
				j.err = fmt.Errorf("verify: %w", err)
				break
			}
		}
		n++
		if n%64 == 0 {
			j.ops.Store(n)
		}
	}
	j.ops.Store(n)
}

// batchLoop keeps v.depth reads in flight with Engine.Submit batches.
// Every operation of a batch is given the batch's latency.
func (r *runner) batchLoop(s *session, w *workload, v variant, region int64, id uint64, j *job, stop *atomic.Bool, wait func()) {
	bs := int64(w.block)
	ops := make([]engine.Op, v.depth)
	bufs := make([][]byte, v.depth)
	for i := range bufs {
		bufs[i] = alignedBuf(w.block)
	}
	rng := rand.NewPCG(r.seed, id)
	nblocks := uint64(region / bs)
	var n int64
	wait()
	for !stop.Load() {
		for i := range ops {
			ops[i] = engine.Op{File: s.ef, Buf: bufs[i], Off: int64(rng.Uint64()%nblocks) * bs}
		}
		t0 := time.Now()
		err := s.eng.Submit(ops)
		j.hist.addN(time.Since(t0), uint64(len(ops)))
		if err != nil {
			j.err = fmt.Errorf("submit: %w", err)
			break
		}
		for i := range ops {
			if op := &ops[i]; op.Err != nil || op.N != len(op.Buf) {
				j.err = opError(false, op.Off, op.N, len(op.Buf), op.Err)
				break
			}
		}
		if j.err != nil {
			break
		}
		if n%verifyStride < int64(len(ops)) {
			if err := verify(ops[0].Buf, ops[0].Off, -1); err != nil {
				j.err = fmt.Errorf("verify: %w", err)
				break
			}
		}
		n += int64(len(ops))
		j.ops.Store(n)
	}
	j.ops.Store(n)
}

func opError(write bool, off int64, n, want int, err error) error {
	verb := "read"
	if write {
		verb = "write"
	}
	if err == nil {
		err = io.ErrShortWrite
		if !write {
			err = io.ErrUnexpectedEOF
		}
	}
	return fmt.Errorf("%s of %d bytes at offset %d: %d bytes: %w", verb, want, off, n, err)
}

// dropHostCache syncs the scratch file and drops its pages from the
// kernel's cache, so that every cell (or group of read cells) starts from
// the same kernel cache, filled by its own warm, and not from what the
// cell before it left. It matters for writes: on Linux 6.18, ext4 holds
// data read ahead or written in large pieces in large folios, where a
// 4 KiB buffered write costs several times what it costs in a 4 KiB
// folio, and the os row's 4 KiB writes ran 5.6 times faster (1.02M
// against 180K a second) right after a ringfs cell whose writeback
// used O_DIRECT than from a fresh start. Pages still mapped are not
// dropped; failures are ignored (the run goes on from a warm cache).
func (r *runner) dropHostCache() {
	f, err := os.Open(r.path)
	if err != nil {
		return
	}
	defer f.Close()
	f.Sync()
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// warm reads the working set once through h, so that it is resident in
// whatever cache h reads from, and checks a sample of it.
func warm(h handle, size int64) error {
	const chunk = 1 << 20
	buf := alignedBuf(chunk)
	for off := int64(0); off < size; off += chunk {
		n := int(min(chunk, size-off))
		m, err := h.ReadAt(buf[:n], off)
		if err != nil || m != n {
			return opError(false, off, m, n, err)
		}
		if off%(64*chunk) == 0 {
			if err := verify(buf[:n], off, -1); err != nil {
				return err
			}
		}
	}
	return nil
}

// verifyWrites checks, after a write cell's Sync, that the recorded
// writes read back as this cell's generation through the backend and
// through a separate descriptor (so from the host, not a cache of the
// backend), and that a random sample of the file holds the pattern.
func (r *runner) verifyWrites(h handle, gen int, jobs []*job, w *workload) error {
	host, err := os.Open(r.path)
	if err != nil {
		return err
	}
	defer host.Close()
	buf := alignedBuf(w.block)
	for _, j := range jobs {
		for _, off := range j.written {
			for _, rd := range []handle{h, host} {
				if n, err := rd.ReadAt(buf, off); err != nil || n != len(buf) {
					return fmt.Errorf("verify after sync: %w", opError(false, off, n, len(buf), err))
				}
				if err := verify(buf, off, gen); err != nil {
					return fmt.Errorf("verify after sync: %w", err)
				}
			}
		}
	}
	return r.sample(h, 64)
}

// sample checks n random blocks of the working set through h.
func (r *runner) sample(h handle, n int) error {
	rng := rand.NewPCG(r.seed, 1<<32)
	buf := alignedBuf(patternBlock)
	for range n {
		off := int64(rng.Uint64()%uint64(r.workingSet/patternBlock)) * patternBlock
		if m, err := h.ReadAt(buf, off); err != nil || m != len(buf) {
			return fmt.Errorf("sample: %w", opError(false, off, m, len(buf), err))
		}
		if err := verify(buf, off, -1); err != nil {
			return fmt.Errorf("sample: %w", err)
		}
	}
	return nil
}

// cpuTime is the process's user plus system time.
func cpuTime() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var allocSample = []metrics.Sample{{Name: "/gc/heap/allocs:objects"}}

// heapAllocs is the number of heap objects allocated so far.
func heapAllocs() uint64 {
	metrics.Read(allocSample)
	if allocSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return allocSample[0].Value.Uint64()
}
