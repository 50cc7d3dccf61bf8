//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/ringfs/ringfs/engine"
)

// minWatch is the shortest --watch interval: the stats server serves few
// connections, and a redraw faster than this is unreadable anyway.
const minWatch = 50 * time.Millisecond

var statsCommand = &command{
	name:    "stats",
	args:    "--socket PATH [--watch DURATION] [--json] [--timeout DURATION]",
	summary: "show a running engine's stats (GET /stats on its socket)",
	detail: `
Stats reads a running engine's counters over its stats socket and shows
the mode and backend, the page cache (resident, dirty and capacity bytes,
hit ratio, readahead, writeback, evictions, waits for a file's lock),
reads and writes by the path that served them, SQEs per io_uring_enter,
requests in flight, errors and latency percentiles. Rates are averages
since the engine started.

With --watch it redraws every DURATION with that interval's counts and
rates (the difference of two snapshots), until SIGINT or SIGTERM, which
end it with exit status 0. When another engine answers (or the engine
restarted, or a counter went down) a frame shows the totals since its
start instead, and stderr says why. With --json it prints one JSON document, or
with --watch one document per line (its "interval" holds the counts of
the last interval).`,
	setup: func(fs *flag.FlagSet) runFunc {
		var f socketFlags
		f.register(fs)
		watch := fs.Duration("watch", 0, "redraw every `DURATION` (e.g. 1s) with per-interval rates, until interrupted")
		return func(ctx context.Context, s *streams, args []string) error {
			if *watch != 0 && *watch < minWatch {
				return usageErrorf("--watch must be at least %v, got %v", minWatch, *watch)
			}
			c, err := f.client(args, s)
			if err != nil {
				return err
			}
			defer c.close()
			st := &statsSource{c: c, s: s}
			if *watch == 0 {
				cur, files, err := st.fetch(ctx)
				if err != nil {
					return err
				}
				doc := newStatsDoc(cur, nil, files)
				if f.json {
					return writeJSON(s.out, doc)
				}
				return renderStats(s.out, doc)
			}
			return watchStats(ctx, s, st, *watch, f.json)
		}
	},
}

// statsSource fetches snapshots from one engine.
type statsSource struct {
	c           *statsClient
	s           *streams
	filesWarned bool
}

// fetch returns the engine's stats and, if GET /files answers, the dirty
// bytes and pending errors summed over its files (nil otherwise: the
// stats alone are still worth showing).
func (st *statsSource) fetch(ctx context.Context) (engine.Stats, *filesSummary, error) {
	cur, err := st.c.getStats(ctx)
	if err != nil {
		return cur, nil, err
	}
	files, err := st.c.getFiles(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return cur, nil, ctx.Err()
		}
		if !st.filesWarned {
			st.s.warnf("stats: dirty bytes unknown: %v", err)
			st.filesWarned = true
		}
		return cur, nil, nil
	}
	return cur, summarizeFiles(files), nil
}

// watchStats prints a snapshot, then every interval the counts of that
// interval, until ctx is done (SIGINT, SIGTERM): that is a clean end.
func watchStats(ctx context.Context, s *streams, st *statsSource, every time.Duration, asJSON bool) error {
	frames := 0
	emit := func(doc statsDoc) error {
		var buf bytes.Buffer
		if asJSON {
			b, err := json.Marshal(doc)
			if err != nil {
				return err
			}
			buf.Write(append(b, '\n'))
		} else {
			switch {
			case s.outTTY:
				buf.WriteString("\x1b[H\x1b[2J") // home, clear screen
			case frames > 0:
				buf.WriteString("\n")
			}
			if err := renderStats(&buf, doc); err != nil {
				return err
			}
		}
		frames++
		_, err := s.out.Write(buf.Bytes())
		return err
	}
	ended := func(err error) error {
		if ctx.Err() != nil { // interrupted mid-request: a clean end too
			return nil
		}
		return err
	}

	prev, files, err := st.fetch(ctx)
	if err != nil {
		return ended(err)
	}
	if err := emit(newStatsDoc(prev, nil, files)); err != nil {
		return err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// A new connection for every snapshot: a server in front of
		// several engines (bench --stats-socket) may hand each
		// connection to the engine running when it was made.
		st.c.close()
		cur, files, err := st.fetch(ctx)
		if err != nil {
			return ended(err)
		}
		base := &prev
		if why := discontinuity(prev, cur); why != "" {
			s.warnf("stats: %s: counting from the engine's start", why)
			base = nil
		}
		if err := emit(newStatsDoc(cur, base, files)); err != nil {
			return err
		}
		prev = cur
	}
}

// renderStats writes the human view of d: totals with average rates, or
// for a watch interval that interval's counts and rates.
func renderStats(w io.Writer, d statsDoc) error {
	c, period := &d.Totals, d.Engine.UptimeNs
	scope := "totals since start; rates are averages over the uptime"
	if d.Interval != nil {
		c, period = &d.Interval.countersDoc, d.Interval.IntervalNs
		scope = "the last " + duration(period) + " (counts and rates of this interval)"
	}
	e, g := &d.Engine, &d.Gauges
	tw := newTable(w)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }

	p("engine\t%s mode, %s backend, up %s\n", safe(e.Mode), safe(e.Backend), duration(e.UptimeNs))
	if e.FallbackReason != "" {
		p("fallback\t%s\n", safe(e.FallbackReason))
	}
	p("open\t%s, %s\n", plural(e.OpenFiles, "file"), plural(e.OpenHandles, "handle"))
	p("showing\t%s\n\n", scope)

	if !g.CacheEnabled {
		p("cache\toff (shared mode, no cache, or host mmap)\n")
	} else {
		dirty := "unknown"
		if g.CacheDirtyBytes != nil {
			dirty = ibytes(*g.CacheDirtyBytes)
		}
		p("cache\t%s resident of %s (%s), %s dirty\n", ibytes(g.CacheResidentBytes), ibytes(g.CacheCapacityBytes),
			percent(float64(g.CacheResidentBytes), float64(g.CacheCapacityBytes)), dirty)
		// Hits and misses as the engine counts them: reads served from the
		// cache, and reads that had to fill it.
		k, hits, misses := &c.Cache, c.Reads.CacheHit.Ops, c.Reads.Fill.Ops
		p("hit ratio\t%s\t%s hits, %s misses\n", percent(float64(hits), float64(hits+misses)), count(hits), count(misses))
		p("readahead\t%s\t%s\n", ibytes(k.ReadaheadBytes), byteRate(k.ReadaheadBytes, period))
		// Misses a full cache served straight from the host: many of them
		// mean the working set is larger than the cache.
		p("read around\t%s\t%s\t%s kept out\n", ibytes(k.BypassBytes), byteRate(k.BypassBytes, period),
			plural(k.AdmissionSkips, "page"))
		p("writeback\t%s\t%s\t%s\n", ibytes(k.WritebackBytes), byteRate(k.WritebackBytes, period), plural(k.WritebackBatches, "batch/batches"))
		p("evictions\t%s\t%s\t%s dirty\n", count(k.Evictions), opRate(k.Evictions, period), count(k.EvictionsDirty))
		// Goroutines that queued for a file's lock: many, or long ones,
		// mean goroutines contend for one file.
		if k.FileLockWaits > 0 {
			p("lock waits\t%s\t%s\t%s each\n", count(k.FileLockWaits), opRate(k.FileLockWaits, period),
				duration(int64(k.FileLockWaitNs/k.FileLockWaits)))
		}
	}
	if g.MappingsOpen > 0 || g.MappedBytes > 0 {
		p("mmap\t%s mapped, %s open\n", ibytes(g.MappedBytes), plural(g.MappingsOpen, "mapping"))
	}

	p("\n\tOPS\tBYTES\tOPS/S\tBYTES/S\n")
	for _, row := range []struct {
		name string
		io   *ioDoc
	}{{"reads", &c.Reads}, {"writes", &c.Writes}} {
		p("%s\t%s\t%s\t%s\t%s\n", row.name, count(row.io.Ops), ibytes(row.io.Bytes), opRate(row.io.Ops, period), byteRate(row.io.Bytes, period))
		for _, path := range []struct {
			name string
			ps   engine.PathStats
		}{{"cache hit", row.io.CacheHit}, {"cache fill", row.io.Fill}, {"into cache", row.io.Cache},
			{"direct", row.io.Direct}, {"mmap", row.io.Mmap}, {"host", row.io.Host}} {
			if path.ps.Ops > 0 {
				p("  %s\t%s\t%s\t%s\t%s\n", path.name, count(path.ps.Ops), ibytes(path.ps.Bytes), opRate(path.ps.Ops, period), byteRate(path.ps.Bytes, period))
			}
		}
	}
	p("syncs\t%s\t\t%s\n\n", count(c.Syncs), opRate(c.Syncs, period))

	r := &c.Ring
	perEnter := "-"
	if r.Enters > 0 {
		perEnter = fmt.Sprintf("%.1f", float64(r.SQEs)/float64(r.Enters))
	}
	plain := ""
	if r.PlainSyscalls > 0 {
		plain = fmt.Sprintf("; %s run as plain syscalls", plural(r.PlainSyscalls, "request"))
	}
	p("SQEs per enter\t%s (%s SQEs in %s enters), %s%s\n", perEnter, count(r.SQEs), count(r.Enters), plural(r.Retries, "retry/retries"), plain)
	p("in flight\t%s now, %s at most\n", count(g.RingInflight), count(g.RingInflightHigh))
	er := &c.Errors
	p("errors\t%s I/O, %s ring, %s cache fill, %s writeback (%s at eviction)\n",
		count(er.IO), count(er.Ring), count(er.CacheFill), count(er.CacheWriteback), count(er.EvictionWriteback))
	if g.FilesPendingError == nil {
		p("pending\tunknown: files with writeback errors not yet reported\n")
	} else if *g.FilesPendingError > 0 {
		p("pending\t%s with a writeback error not yet reported (fsctl cache lists them)\n", plural(*g.FilesPendingError, "file"))
	}
	if r.CQOverflows > 0 || r.DroppedCQEs > 0 {
		p("ring trouble\t%s CQ overflows, %s dropped CQEs\n", count(r.CQOverflows), count(r.DroppedCQEs))
	}

	maxMark := "" // the maximum of an interval is a bucket's upper bound
	if d.Interval != nil {
		maxMark = "≤"
	}
	p("\nlatency\tCOUNT\tP50\tP99\tMAX\n")
	for _, row := range []struct {
		name string
		l    latencyDoc
	}{{"read", c.Latency.Read}, {"write", c.Latency.Write}, {"sync", c.Latency.Sync}} {
		if row.l.Count == 0 {
			p("%s\t0\t-\t-\t-\n", row.name)
			continue
		}
		p("%s\t%s\t≤%s\t≤%s\t%s%s\n", row.name, count(row.l.Count), duration(row.l.P50Ns), duration(row.l.P99Ns), maxMark, duration(row.l.MaxNs))
	}
	return tw.Flush()
}
