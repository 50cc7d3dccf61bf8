//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/hostmap"
)

// Coherence, mapper and security rows of the reliability matrix
// (TESTPLAN C1–C5, Mp1–Mp4, S1, S3, S5). Where a focused test of
// semantics_test.go, mapping_test.go or serve_test.go already proves part
// of a row, the row runs it (as a helper, so that it runs once) and adds
// what the row asks beyond it: random mixes of the paths checked against
// a model, another process, racing goroutines, /proc/self/maps.

func init() {
	addRow("C1", "buffered vs O_DIRECT on one file, both ways, sub-page mixes", rowC1)
	addRow("C2", "engine writes seen through Mappings, Mapping writes seen by the engine", rowC2)
	addRow("C3", "Shared sees another process's writes; Writethrough writes seen by another process without Sync", rowC3)
	addRow("C4", "O_APPEND records from many goroutines and handles; WriteAt on an append handle rejected", rowC4)
	addRow("C5", "SEEK_DATA/SEEK_HOLE over dirty cached data, punches, a 1-byte file, a large hole", rowC5)
	addRow("Mp1", "Map and Mapping.Close racing on overlapping ranges", rowMp1)
	addRow("Mp2", "double Close of a Mapping", rowMp2)
	addRow("Mp3", "truncate below a live mapping", rowMp3)
	addRow("Mp4", "File and Engine closed while mappings live", rowMp4)
	addRow("S1", "setuid/setgid cleared by writes and allocations", rowS1)
	addRow("S3", "stats socket: 0600, owner only, symlinks not followed, clients bounded", rowS3)
	addRow("S5", "cache pages reused across files never leak old contents", rowS5)
}

// rowModes are the modes of mapModes with caches of 4 MiB instead of the
// default 256 MiB (as big as the rows' files need, and much cheaper to
// set up under the race detector); the focused tests the rows run keep
// the default.
var rowModes = func() []struct {
	name string
	opts Options
} {
	out := slices.Clone(mapModes)
	for i := range out {
		if out[i].opts.CacheSize == 0 && out[i].opts.Mode != Shared && !out[i].opts.HostMmap {
			out[i].opts.CacheSize = 4 << 20
		}
	}
	return out
}()

// readCheck counts reads checked against a model and the stale ones. A
// read of p at off is right when it returns exactly the model's bytes in
// [off, off+len(p)) clipped to the model's size and, when that is short,
// io.EOF.
type readCheck struct {
	reads, stale int64
	first        string // the first stale read
}

func (c *readCheck) check(what string, p []byte, n int, err error, model []byte, off int64) {
	c.reads++
	size := int64(len(model))
	want := model[min(off, size):min(off+int64(len(p)), size)]
	ok := n == len(want) && bytes.Equal(p[:n], want)
	if n < len(p) {
		ok = ok && err == io.EOF
	} else {
		ok = ok && err == nil
	}
	if !ok && c.first == "" {
		c.first = fmt.Sprintf("%s of %d bytes at %d: %d bytes, %v; want %d bytes, first difference at %d",
			what, len(p), off, n, err, len(want), diffAt(p[:min(n, len(p))], want))
	}
	if !ok {
		c.stale++
	}
}

// failIfStale fails the test when c counted a stale read, with the
// configuration and seed (replayed with RINGFS_FSX_SEED) and the last
// operations.
func (c *readCheck) failIfStale(t *testing.T, name string, seed uint64, log []string) {
	t.Helper()
	if c.stale > 0 {
		t.Fatalf("%s seed %d (RINGFS_FSX_SEED): %d of %d reads stale; first: %s\nlast operations:\n%s",
			name, seed, c.stale, c.reads, c.first, tail(log, 30))
	}
}

// modelWrite applies a write of p at off to model (zeros fill a gap).
func modelWrite(model, p []byte, off int64) []byte {
	if end := off + int64(len(p)); end > int64(len(model)) {
		model = append(model, make([]byte, end-int64(len(model)))...)
	}
	copy(model[off:], p)
	return model
}

// ---- C1 ----

var c1Configs = []fwConfig{
	{"exclusive", Options{Mode: Exclusive, CacheSize: 4 << 20}},
	{"exclusive/directio", Options{Mode: Exclusive, CacheSize: 4 << 20, DirectIO: true}},
	{"exclusive/tiny/ra=4KiB", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
	{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, HostMmap: true}},
}

// rowC1 runs directCoherence (a cached sub-page write then a direct read
// of its page; a direct page write then buffered reads across it) and a
// random mix per configuration of buffered writes and reads at any offset
// and length, direct writes of whole pages from aligned and unaligned
// buffers, direct reads at any offset and length (bounced) or of whole
// pages, and Submit batches reading one range both ways, each read
// checked against the model, on a filesystem with O_DIRECT.
func rowC1(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT on the test directory's filesystem")
	}
	var fixed int
	t.Run("fixed", func(t *testing.T) { fixed = directCoherence(t) })
	seed := fsxSeed(t)
	var total readCheck
	var ops, directOps int64
	for ci, cfg := range c1Configs {
		t.Run(cfg.name, func(t *testing.T) {
			var r c1Result
			defer func() { // also when the subtest fails
				total.reads += r.rc.reads
				total.stale += r.rc.stale
				ops += r.ops
				directOps += r.direct
			}()
			c1Mix(t, cfg, dir, seed+uint64(ci), 400*soakFactor(), &r)
		})
	}
	fig.Set("configs", int64(len(c1Configs)))
	fig.Set("fixed_cross_path_reads", int64(fixed))
	fig.Set("ops", ops)
	fig.Set("direct_ops", directOps)
	fig.Set("reads_checked", total.reads)
	fig.Set("stale_reads", total.stale)
}

type c1Result struct {
	rc          readCheck
	ops, direct int64
}

// c1Mix runs ops random operations on one file through a buffered and an
// O_DIRECT handle of one engine, counting them, the direct ones and the
// reads checked in r.
func c1Mix(t *testing.T, cfg fwConfig, dir string, seed uint64, ops int, r *c1Result) {
	e := newEngine(t, cfg.opts)
	path := filepath.Join(dir, "c1-"+strings.ReplaceAll(cfg.name, "/", "-"))
	model := pattern(16*4096, seed, 0)
	writeHost(t, path, model)
	buf := openFile(t, e, path, os.O_RDWR)
	dio := openFile(t, e, path, os.O_RDWR|syscall.O_DIRECT)
	rng := rand.New(rand.NewPCG(seed, 0xc1))
	rc := &r.rc
	var log []string
	const maxSize = 40 * 4096
	for i := range ops {
		size := int64(len(model))
		switch k := rng.IntN(10); {
		case k < 3: // buffered, any offset up to a page past the end, 1..6000 bytes
			off := rng.Int64N(min(size+4096, maxSize))
			p := pattern(1+rng.IntN(6000), seed, uint64(i+1))
			log = append(log, fmt.Sprintf("write %d %d (size %d)", off, len(p), size))
			if n, err := buf.WriteAt(p, off); n != len(p) || err != nil {
				t.Fatalf("%s seed %d: buffered WriteAt(%d, %d): %d, %v\n%s", cfg.name, seed, off, len(p), n, err, tail(log, 30))
			}
			model = modelWrite(model, p, off)
		case k < 5: // direct, whole pages, from an aligned or an unaligned buffer
			pages := 1 + rng.IntN(3)
			off := rng.Int64N(min((size+4095)/4096+1, maxSize/4096)) * 4096
			p := alignedBuf(pages * 4096)
			if rng.IntN(2) == 0 {
				p = alignedBuf(pages*4096 + 1)[1:] // bounced
			}
			fillData(p, seed, uint64(i+1))
			log = append(log, fmt.Sprintf("dwrite %d %d (size %d)", off, len(p), size))
			if n, err := dio.WriteAt(p, off); n != len(p) || err != nil {
				t.Fatalf("%s seed %d: direct WriteAt(%d, %d): %d, %v\n%s", cfg.name, seed, off, len(p), n, err, tail(log, 30))
			}
			model = modelWrite(model, p, off)
			r.direct++
		case k == 7: // one Submit batch: a buffered and a direct read of one range
			off := rng.Int64N(size/4096+1) * 4096
			n := 4096 * (1 + rng.IntN(3))
			if rng.IntN(2) == 0 {
				off, n = rng.Int64N(size+100), 1+rng.IntN(9000) // direct one bounced
			}
			ops := []Op{{File: buf, Buf: make([]byte, n), Off: off}, {File: dio, Buf: alignedBuf(n), Off: off}}
			log = append(log, fmt.Sprintf("submit read+dread %d %d (size %d)", off, n, size))
			e.Submit(ops)
			rc.check("Submit buffered read", ops[0].Buf, ops[0].N, ops[0].Err, model, off)
			rc.check("Submit direct read", ops[1].Buf, ops[1].N, ops[1].Err, model, off)
			r.direct++
		case k < 7: // direct read: any offset and length (bounced), or whole pages
			var off int64
			var p []byte
			if rng.IntN(3) == 0 {
				off = rng.Int64N(size/4096+1) * 4096
				p = alignedBuf(4096 * (1 + rng.IntN(3)))
			} else {
				off = rng.Int64N(size + 100)
				p = make([]byte, 1+rng.IntN(9000))
			}
			log = append(log, fmt.Sprintf("dread %d %d (size %d)", off, len(p), size))
			n, err := dio.ReadAt(p, off)
			rc.check("direct read", p, n, err, model, off)
			r.direct++
		default: // buffered read
			off := rng.Int64N(size + 100)
			p := make([]byte, 1+rng.IntN(9000))
			log = append(log, fmt.Sprintf("read %d %d (size %d)", off, len(p), size))
			n, err := buf.ReadAt(p, off)
			rc.check("buffered read", p, n, err, model, off)
		}
		if i%64 == 63 {
			p := make([]byte, len(model)+10)
			n, err := buf.ReadAt(p, 0)
			rc.check("whole buffered read", p, n, err, model, 0)
			q := alignedBuf((len(model) + 4095) &^ 4095)
			n, err = dio.ReadAt(q, 0)
			rc.check("whole direct read", q, n, err, model, 0)
		}
		r.ops++
		rc.failIfStale(t, cfg.name, seed, log)
	}
	if err := buf.Sync(); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, cfg.name+": host after Sync", readHost(t, path), model)
	t.Logf("%s seed %d: %d operations (%d direct), %d reads checked, none stale; host = model", cfg.name, seed, r.ops, r.direct, rc.reads)
}

// ---- C2 ----

// rowC2 runs mappingCoherence and, per mode, rounds of: engine writes
// with nothing mapped (dirty in the cache in the caching modes), a
// Mapping of a random range that must show them, then random writes and
// reads through the Mapping (ReadAt/WriteAt and Bytes) and the engine,
// every read checked against the model, and the Mapping closed.
func rowC2(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	var modes int
	t.Run("fixed", func(t *testing.T) { modes = mappingCoherence(t) })
	seed := fsxSeed(t)
	dir := relDir(t)
	var total readCheck
	var maps, mapWrites, engineWrites, racing int64
	for mi, mode := range rowModes {
		t.Run(mode.name, func(t *testing.T) {
			var r c2Result
			defer func() { // also when the subtest fails
				total.reads += r.rc.reads
				total.stale += r.rc.stale
				maps += r.maps
				mapWrites += r.mapWrites
				engineWrites += r.engineWrites
			}()
			c2Mix(t, mode.name, mode.opts, dir, seed+uint64(mi), 12*soakFactor(), &r)
			racing += c2Race(t, mode.name, mode.opts, dir, seed+uint64(mi), 15*soakFactor())
		})
	}
	fig.Set("modes", int64(modes))
	fig.Set("mappings", maps)
	fig.Set("mapping_writes", mapWrites)
	fig.Set("engine_writes", engineWrites)
	fig.Set("reads_checked", total.reads)
	fig.Set("stale_reads", total.stale)
	fig.Set("maps_and_closes_racing_io", racing)
}

// c2Race: engine writes and reads (cache fills) race Map and
// Mapping.Close; once both are done the engine and the Mapping agree,
// a write through the Mapping is in the engine's next read, and after
// the Close and a Sync the host holds what the engine reads. It returns
// the Maps and Closes raced.
func c2Race(t *testing.T, name string, opts Options, dir string, seed uint64, rounds int) int64 {
	e := newEngine(t, opts)
	path := filepath.Join(dir, "c2race-"+strings.ReplaceAll(name, "/", "-"))
	const size = 16 * 4096
	writeHost(t, path, pattern(size, seed, 0))
	f := openFile(t, e, path, os.O_RDWR)
	var raced int64
	traffic := func(round int) (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		var failed atomic.Value
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(seed, uint64(round*2+g)))
				for i := 0; ; i++ {
					select {
					case <-done:
						return
					default:
					}
					off := rng.Int64N(size - 1)
					n := 1 + rng.Int64N(min(6000, size-off))
					var err error
					if g == 0 {
						_, err = f.WriteAt(pattern(int(n), seed, uint64(round<<20|i)), off)
					} else {
						_, err = f.ReadAt(make([]byte, n), off)
					}
					if err != nil {
						failed.CompareAndSwap(nil, err)
						return
					}
				}
			}()
		}
		return func() {
			close(done)
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				t.Fatalf("%s: engine I/O racing Map/Close: %v", name, err)
			}
		}
	}
	got := make([]byte, size)
	for round := range rounds {
		stop := traffic(round)
		m, err := f.Map(0, size, true)
		if err != nil {
			t.Fatal(err)
		}
		stop()
		if n, err := f.ReadAt(got, 0); n != size || err != nil {
			t.Fatalf("%s: ReadAt: %d, %v", name, n, err)
		}
		if i := diffAt(got, m.Bytes()); i >= 0 {
			t.Fatalf("%s round %d: after a Map racing engine I/O, byte %d reads %#x through the engine and %#x through the Mapping",
				name, round, i, got[i], m.Bytes()[i])
		}
		w := pattern(3000, seed, uint64(1000+round))
		off := int64(round*997) % (size - 3000)
		if n, err := m.WriteAt(w, off); n != len(w) || err != nil {
			t.Fatal(err)
		}
		if n, err := f.ReadAt(got[:len(w)], off); n != len(w) || err != nil || !bytes.Equal(got[:len(w)], w) {
			t.Fatalf("%s round %d: a write through the Mapping made after engine I/O raced its Map is not in the engine's read (%d, %v)", name, round, n, err)
		}
		stop = traffic(round + rounds)
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		stop()
		raced += 2
		if n, err := f.ReadAt(got, 0); n != size || err != nil {
			t.Fatalf("%s: ReadAt: %d, %v", name, n, err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if host := readHost(t, path); !bytes.Equal(host, got) {
			i := diffAt(host, got)
			t.Fatalf("%s round %d: after a Close racing engine I/O and a Sync, byte %d is %#x on the host and %#x through the engine", name, round, i, host[i], got[i])
		}
	}
	return raced
}

type c2Result struct {
	rc                            readCheck
	maps, mapWrites, engineWrites int64
}

func c2Mix(t *testing.T, name string, opts Options, dir string, seed uint64, rounds int, r *c2Result) {
	e := newEngine(t, opts)
	path := filepath.Join(dir, "c2-"+strings.ReplaceAll(name, "/", "-"))
	model := pattern(6*4096+100, seed, 0)
	writeHost(t, path, model)
	f := openFile(t, e, path, os.O_RDWR)
	rng := rand.New(rand.NewPCG(seed, 0xc2))
	var log []string
	engineWrite := func(tag uint64, extend bool) {
		size := int64(len(model))
		off := rng.Int64N(size)
		n := 1 + rng.Int64N(5000)
		if !extend {
			n = min(n, size-off)
		}
		p := pattern(int(n), seed, tag)
		log = append(log, fmt.Sprintf("engine write %d %d (size %d)", off, n, size))
		if m, err := f.WriteAt(p, off); m != len(p) || err != nil {
			t.Fatalf("%s: WriteAt(%d, %d): %d, %v", name, off, n, m, err)
		}
		model = modelWrite(model, p, off)
		r.engineWrites++
	}
	engineRead := func() {
		size := int64(len(model))
		off := rng.Int64N(size)
		p := make([]byte, 1+rng.IntN(8000))
		n, err := f.ReadAt(p, off)
		r.rc.check("engine read", p, n, err, model, off)
	}
	for round := range rounds {
		for k := range 3 {
			engineWrite(uint64(round*100+k+1), rng.IntN(4) == 0)
		}
		engineRead()
		size := int64(len(model))
		a := rng.Int64N(size)
		b := a + 1 + rng.Int64N(size-a)
		log = append(log, fmt.Sprintf("map %d %d", a, b-a))
		m, err := f.Map(a, b-a, true)
		if err != nil {
			t.Fatalf("%s: Map(%d, %d): %v", name, a, b-a, err)
		}
		r.maps++
		whole := make([]byte, b-a)
		n, err := m.ReadAt(whole, 0)
		r.rc.check("Mapping read after engine writes", whole, n, err, model, a)
		for k := range 10 {
			tag := uint64(round*100 + 50 + k)
			switch rng.IntN(5) {
			case 0, 1: // through the Mapping: WriteAt or a store into Bytes
				rel := rng.Int64N(b - a)
				p := pattern(int(1+rng.Int64N(min(3000, b-a-rel))), seed, tag)
				log = append(log, fmt.Sprintf("mapping write %d %d", a+rel, len(p)))
				if rng.IntN(2) == 0 {
					if n, err := m.WriteAt(p, rel); n != len(p) || err != nil {
						t.Fatalf("%s: Mapping.WriteAt(%d, %d): %d, %v", name, rel, len(p), n, err)
					}
				} else {
					copy(m.Bytes()[rel:], p) // inside the file: no fault
				}
				model = modelWrite(model, p, a+rel)
				r.mapWrites++
			case 2:
				engineWrite(tag, false)
			case 3:
				engineRead()
			case 4: // through the Mapping
				rel := rng.Int64N(b - a)
				p := make([]byte, 1+rng.Int64N(b-a-rel))
				n, err := m.ReadAt(p, rel)
				r.rc.check("Mapping read", p, n, err, model, a+rel)
			}
			r.rc.failIfStale(t, name, seed, log)
		}
		n, err = m.ReadAt(whole, 0)
		r.rc.check("whole Mapping read", whole, n, err, model, a)
		all := make([]byte, len(model)+1)
		n, err = f.ReadAt(all, 0)
		r.rc.check("whole engine read, mapped", all, n, err, model, 0)
		if err := m.Close(); err != nil {
			t.Fatalf("%s: Mapping.Close: %v", name, err)
		}
		n, err = f.ReadAt(all, 0)
		r.rc.check("whole engine read after the Mapping closed", all, n, err, model, 0)
		r.rc.failIfStale(t, name, seed, log)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, name+": host after Sync", readHost(t, path), model)
	t.Logf("%s seed %d: %d Mappings, %d writes through them, %d engine writes, %d reads checked, none stale; host = model",
		name, seed, r.maps, r.mapWrites, r.engineWrites, r.rc.reads)
}

// ---- C3 ----

// peer is another process (this test binary, running
// TestReliabilityC3Peer) that reads, writes, truncates and stats files
// with plain system calls when asked over a pipe.
type peer struct {
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr bytes.Buffer
	reqs   int64
}

func startPeer(t *testing.T) *peer {
	t.Helper()
	p := &peer{cmd: exec.Command(os.Args[0], "-test.run=^TestReliabilityC3Peer$", "-test.count=1")}
	p.cmd.Env = append(os.Environ(), "RINGFS_C3_PEER=1")
	p.cmd.Stderr = &p.stderr
	var err error
	if p.in, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.out = bufio.NewScanner(out)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop() })
	return p
}

// stop ends the peer (closing its input) and returns what it printed on
// stderr.
func (p *peer) stop() string {
	if p.cmd.ProcessState == nil {
		p.in.Close()
		done := make(chan struct{})
		go func() {
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.cmd.Process.Kill()
			}
		}()
		p.cmd.Wait()
		close(done)
	}
	return p.stderr.String()
}

// do sends one command and returns the fields of its answer.
func (p *peer) do(t *testing.T, format string, args ...any) []string {
	t.Helper()
	p.reqs++
	cmd := fmt.Sprintf(format, args...)
	if _, err := fmt.Fprintln(p.in, cmd); err != nil {
		t.Fatalf("peer %q: %v\n%s", cmd, err, p.stop())
	}
	for p.out.Scan() {
		if rest, ok := strings.CutPrefix(p.out.Text(), "peer: "); ok {
			f := strings.Fields(rest)
			if len(f) == 0 || f[0] == "err" {
				t.Fatalf("peer %q: %s", cmd, rest)
			}
			return f
		}
	}
	t.Fatalf("peer %q: it exited (%v)\n%s", cmd, p.out.Err(), p.stop())
	return nil
}

// write has the peer write pattern(n, seed, tag) at off.
func (p *peer) write(t *testing.T, path string, off int64, n int, seed, tag uint64) {
	p.do(t, "w %s %d %d %d %d", path, off, n, seed, tag)
}

// sum has the peer read n bytes at off and returns how many it got and
// their CRC-32.
func (p *peer) sum(t *testing.T, path string, off int64, n int) (int, uint32) {
	f := p.do(t, "r %s %d %d", path, off, n)
	got, _ := strconv.Atoi(f[1])
	crc, _ := strconv.ParseUint(f[2], 10, 32)
	return got, uint32(crc)
}

// size has the peer stat the file.
func (p *peer) size(t *testing.T, path string) int64 {
	f := p.do(t, "s %s", path)
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n
}

// TestReliabilityC3Peer is the other process of row C3; it does nothing
// unless started by it.
func TestReliabilityC3Peer(t *testing.T) {
	if os.Getenv("RINGFS_C3_PEER") == "" {
		t.Skip("the other process of reliability row C3")
	}
	files := map[string]*os.File{}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Printf("peer: %s\n", peerCommand(files, strings.Fields(in.Text())))
	}
	for _, f := range files {
		f.Close()
	}
}

func peerCommand(files map[string]*os.File, cmd []string) string {
	if len(cmd) < 2 {
		return "err no command"
	}
	f := files[cmd[1]]
	if f == nil {
		var err error
		if f, err = os.OpenFile(cmd[1], os.O_RDWR, 0); err != nil {
			return "err " + err.Error()
		}
		files[cmd[1]] = f
	}
	arg := func(i int) int64 {
		if i >= len(cmd) {
			return 0
		}
		v, _ := strconv.ParseInt(cmd[i], 10, 64)
		return v
	}
	switch cmd[0] {
	case "w":
		if _, err := f.WriteAt(pattern(int(arg(3)), uint64(arg(4)), uint64(arg(5))), arg(2)); err != nil {
			return "err " + err.Error()
		}
		return "ok"
	case "t":
		if err := f.Truncate(arg(2)); err != nil {
			return "err " + err.Error()
		}
		return "ok"
	case "r":
		p := make([]byte, arg(3))
		n, err := f.ReadAt(p, arg(2))
		if err != nil && err != io.EOF {
			return "err " + err.Error()
		}
		return fmt.Sprintf("r %d %d", n, crc32.ChecksumIEEE(p[:n]))
	case "s":
		fi, err := f.Stat()
		if err != nil {
			return "err " + err.Error()
		}
		return fmt.Sprintf("s %d", fi.Size())
	}
	return "err unknown command " + cmd[0]
}

// rowC3 runs sharedSeesOthers and writethroughVisible (another writer
// and reader in this process) and the same with another process: in
// Shared mode the peer writes, extends and truncates while the engine
// reads, stats, writes and appends (an append lands at the end the peer
// made); in Writethrough mode (default and tiny cache) every engine
// write, truncate, punch and allocation is checked by the peer right
// after it returns, and no Sync is ever called.
func rowC3(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	if testing.Short() {
		t.Skip("starts a child process")
	}
	checkLeaks(t)
	var inProcess int
	t.Run("os.File", func(t *testing.T) { inProcess = sharedSeesOthers(t) + writethroughVisible(t) })
	p := startPeer(t)
	dir := relDir(t)
	seed := fsxSeed(t)
	var rc readCheck
	var peerWrites, seenByPeer int64
	t.Run("shared", func(t *testing.T) {
		peerWrites = c3Shared(t, p, dir, seed, &rc)
	})
	for i, o := range []Options{{Mode: Writethrough}, {Mode: Writethrough, CacheSize: fsxTinyCache}} {
		t.Run(fmt.Sprintf("writethrough/cache=%d", o.CacheSize), func(t *testing.T) {
			seenByPeer += c3Writethrough(t, p, o, dir, seed+uint64(i+1))
		})
	}
	fig.Set("in_process_writes_checked", int64(inProcess))
	fig.Set("peer_writes_seen_by_engine", peerWrites)
	fig.Set("engine_writes_seen_by_peer", seenByPeer)
	fig.Set("peer_requests", p.reqs)
	fig.Set("reads_checked", rc.reads)
	fig.Set("stale_reads", rc.stale)
}

// c3Shared: the peer changes the file; the engine (Shared) must see each
// change at once. It returns the peer's writes checked.
func c3Shared(t *testing.T, p *peer, dir string, seed uint64, rc *readCheck) int64 {
	e := newEngine(t, Options{Mode: Shared})
	path := filepath.Join(dir, "c3-shared")
	model := pattern(8192, seed, 0)
	writeHost(t, path, model)
	f := openFile(t, e, path, os.O_RDWR)
	app := openFile(t, e, path, os.O_WRONLY|os.O_APPEND)
	rng := rand.New(rand.NewPCG(seed, 0xc3))
	var log []string
	var writes int64
	for i := range 200 {
		size := int64(len(model))
		tag := uint64(i + 1)
		switch k := rng.IntN(10); {
		case k < 4: // the peer writes; the engine reads the range and a random one
			off := rng.Int64N(size + 2000)
			n := 1 + rng.IntN(5000)
			log = append(log, fmt.Sprintf("peer write %d %d", off, n))
			p.write(t, path, off, n, seed, tag)
			model = modelWrite(model, pattern(n, seed, tag), off)
			got := make([]byte, n)
			if i%2 == 0 {
				m, err := f.ReadAt(got, off)
				rc.check("engine read of the peer's write", got, m, err, model, off)
			} else {
				ops := []Op{{File: f, Buf: got, Off: off}}
				e.Submit(ops)
				rc.check("Submit read of the peer's write", got, ops[0].N, ops[0].Err, model, off)
			}
			writes++
		case k == 4: // the peer truncates (shrinks or grows)
			ns := rng.Int64N(2*size + 1)
			log = append(log, fmt.Sprintf("peer truncate %d", ns))
			p.do(t, "t %s %d", path, ns)
			if ns < size {
				model = model[:ns]
			} else {
				model = append(model, make([]byte, ns-size)...)
			}
			got := make([]byte, 5000)
			off := max(0, ns-2500)
			m, err := f.ReadAt(got, off)
			rc.check("engine read across the end the peer set", got, m, err, model, off)
		case k < 7: // the engine writes; the peer reads
			off := rng.Int64N(size + 2000)
			w := pattern(1+rng.IntN(5000), seed, tag)
			log = append(log, fmt.Sprintf("engine write %d %d", off, len(w)))
			if m, err := f.WriteAt(w, off); m != len(w) || err != nil {
				t.Fatalf("WriteAt: %d, %v", m, err)
			}
			model = modelWrite(model, w, off)
			if n, crc := p.sum(t, path, off, len(w)); n != len(w) || crc != crc32.ChecksumIEEE(w) {
				t.Fatalf("the peer reads %d bytes (crc %#x) where the engine wrote %d (crc %#x)\n%s", n, crc, len(w), crc32.ChecksumIEEE(w), tail(log, 20))
			}
		case k == 7: // an engine append lands at the end the peer made
			w := pattern(1+rng.IntN(300), seed, tag)
			log = append(log, fmt.Sprintf("engine append %d at %d", len(w), size))
			if m, err := app.Write(w); m != len(w) || err != nil {
				t.Fatalf("append: %d, %v", m, err)
			}
			model = append(model, w...)
			if n, crc := p.sum(t, path, size, len(w)); n != len(w) || crc != crc32.ChecksumIEEE(w) {
				t.Fatalf("append of %d bytes not at the peer's end %d (peer reads %d bytes there)\n%s", len(w), size, n, tail(log, 20))
			}
		default: // size and offset ends
			fi, err := f.Stat()
			if err != nil || fi.Size() != size {
				t.Fatalf("engine Stat size %d (%v), the peer made %d\n%s", fi.Size(), err, size, tail(log, 20))
			}
			if pos, err := f.Seek(0, io.SeekEnd); pos != size || err != nil {
				t.Fatalf("Seek(0, SeekEnd) = %d, %v; the peer made %d", pos, err, size)
			}
		}
		rc.failIfStale(t, "shared", seed, log)
	}
	all := make([]byte, len(model)+1)
	n, err := f.ReadAt(all, 0)
	rc.check("whole engine read", all, n, err, model, 0)
	rc.failIfStale(t, "shared", seed, log)
	if n, crc := p.sum(t, path, 0, len(model)+1); n != len(model) || crc != crc32.ChecksumIEEE(model) {
		t.Fatalf("the peer reads %d bytes, crc %#x; model %d, crc %#x", n, crc, len(model), crc32.ChecksumIEEE(model))
	}
	t.Logf("seed %d: %d writes, truncates and extensions by another process each seen by the engine at once; engine writes and appends seen by it", seed, writes)
	return writes
}

// c3Writethrough: every engine change must be visible to the peer when
// the call returns, without Sync. It returns the writes checked.
func c3Writethrough(t *testing.T, p *peer, opts Options, dir string, seed uint64) int64 {
	e := newEngine(t, opts)
	path := filepath.Join(dir, fmt.Sprintf("c3-wt-%d", opts.CacheSize))
	model := pattern(5*4096, seed, 0)
	writeHost(t, path, model)
	f := openFile(t, e, path, os.O_RDWR)
	if _, err := f.ReadAt(make([]byte, len(model)), 0); err != nil { // cached
		t.Fatal(err)
	}
	before := e.Stats()
	rng := rand.New(rand.NewPCG(seed, 0xc3))
	var log []string
	var writes int64
	peerHas := func(what string, off int64, want []byte) {
		t.Helper()
		if n, crc := p.sum(t, path, off, len(want)); n != len(want) || crc != crc32.ChecksumIEEE(want) {
			t.Fatalf("%s: the peer reads %d bytes at %d (crc %#x), want %d (crc %#x), without Sync\n%s",
				what, n, off, crc, len(want), crc32.ChecksumIEEE(want), tail(log, 20))
		}
		if s := p.size(t, path); s != int64(len(model)) {
			t.Fatalf("%s: the peer sees size %d, want %d\n%s", what, s, len(model), tail(log, 20))
		}
	}
	for i := range 150 {
		size := int64(len(model))
		switch k := rng.IntN(10); {
		case k < 7: // sub-page and multi-page writes, some extending
			off := rng.Int64N(size + 3000)
			w := pattern(1+rng.IntN(6000), seed, uint64(i+1))
			log = append(log, fmt.Sprintf("write %d %d", off, len(w)))
			if n, err := f.WriteAt(w, off); n != len(w) || err != nil {
				t.Fatalf("WriteAt: %d, %v", n, err)
			}
			model = modelWrite(model, w, off)
			peerHas("write", off, w)
			writes++
		case k == 7:
			ns := size/2 + rng.Int64N(size)
			log = append(log, fmt.Sprintf("truncate %d", ns))
			if err := f.Truncate(ns); err != nil {
				t.Fatal(err)
			}
			if ns < size {
				model = model[:ns]
			} else {
				model = append(model, make([]byte, ns-size)...)
			}
			peerHas("truncate", max(0, ns-3000), model[max(0, ns-3000):])
		case k == 8:
			off := rng.Int64N(size)
			n := 1 + rng.Int64N(min(10000, size-off))
			log = append(log, fmt.Sprintf("punch %d %d", off, n))
			if err := f.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
				t.Fatal(err)
			}
			clear(model[off : off+n])
			peerHas("punch", off, model[off:off+n])
		default:
			n := 1 + rng.Int64N(8000)
			log = append(log, fmt.Sprintf("allocate %d %d", size, n))
			if err := f.Allocate(0, size, n); err != nil {
				t.Fatal(err)
			}
			model = append(model, make([]byte, n)...)
			peerHas("allocate", size-100, model[size-100:])
		}
		if d := fileStats(t, e, path).DirtyBytes; d != 0 {
			t.Fatalf("%d dirty bytes in Writethrough mode after %s", d, log[len(log)-1])
		}
		if i%25 == 24 {
			peerHas("whole file", 0, model)
		}
	}
	if s := e.Stats().Sub(before).Syncs; s != 0 {
		t.Fatalf("%d Syncs ran: the check must not depend on them", s)
	}
	t.Logf("cache %d seed %d: %d writes and every truncate, punch and allocation seen by another process when the call returned, no Sync",
		opts.CacheSize, seed, writes)
	return writes
}

// ---- C4 ----

// rowC4 runs engineAppendRecords (8 goroutines, 6 handles, every mode)
// and sharedAppendInterleaved (engine and os.File appenders in Shared
// mode), then checks that WriteAt and WriteAtFlags on an O_APPEND handle,
// and a write of a Submit batch, are rejected as os.File rejects WriteAt
// there — whatever the offset and length, nothing written, the handle
// still appending at the end — and that a closed append handle reports
// fs.ErrClosed, as every call on a closed handle does.
func rowC4(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	var records int
	t.Run("engine", func(t *testing.T) { records += engineAppendRecords(t) })
	t.Run("engine+os.File", func(t *testing.T) { records += sharedAppendInterleaved(t) })
	var rejected, modes int64
	for _, cfg := range fwConfigs {
		t.Run("writeat/"+cfg.name, func(t *testing.T) {
			rejected += appendWriteAtRejected(t, cfg.opts)
			modes++
		})
	}
	fig.Set("records_found_once", int64(records))
	fig.Set("writeat_modes", modes)
	fig.Set("writeat_rejected", rejected)
}

// appendWriteAtRejected returns the calls rejected.
func appendWriteAtRejected(t *testing.T, opts Options) int64 {
	e := newEngine(t, opts)
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	model := pattern(5000, 14, 0)
	writeHost(t, path, model)
	osf, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer osf.Close()
	var rejected int64
	for _, flag := range []int{os.O_WRONLY | os.O_APPEND, os.O_RDWR | os.O_APPEND} {
		f := openFile(t, e, path, flag)
		for _, c := range []struct {
			name string
			n    int
			off  int64
		}{
			{"1 byte at 0", 1, 0},
			{"inside", 100, 10},
			{"at the end", 100, int64(len(model))},
			{"past the end", 10, int64(len(model)) + 5000},
			{"0 bytes", 0, 0},
			{"negative offset", 1, -1},
		} {
			p := pattern(c.n, 14, 1)
			on, oerr := osf.WriteAt(p, c.off)
			if on != 0 || oerr == nil {
				t.Fatalf("os.File.WriteAt %s on O_APPEND: %d, %v (the reference rejects it)", c.name, on, oerr)
			}
			n, err := f.WriteAt(p, c.off)
			if n != 0 || !errors.Is(err, ErrWriteAtInAppendMode) {
				t.Fatalf("WriteAt %s on an O_APPEND handle: %d, %v; want 0, ErrWriteAtInAppendMode as os.File (%v)", c.name, n, err, oerr)
			}
			var pe *fs.PathError
			if !errors.As(err, &pe) || pe.Op != "writeat" || !errors.Is(err, syscall.EINVAL) {
				t.Fatalf("WriteAt %s on an O_APPEND handle: %#v; want an *fs.PathError \"writeat\" matching EINVAL", c.name, err)
			}
			if n, err := f.WriteAtFlags(p, c.off, unix.RWF_DSYNC); n != 0 || !errors.Is(err, ErrWriteAtInAppendMode) {
				t.Fatalf("WriteAtFlags %s on an O_APPEND handle: %d, %v", c.name, n, err)
			}
			// A batch's write is rejected too (a negative offset may be
			// refused first, with EINVAL all the same).
			ops := []Op{{File: f, Write: true, Buf: p, Off: c.off}}
			e.Submit(ops)
			if ops[0].N != 0 || !errors.Is(ops[0].Err, syscall.EINVAL) || (c.off >= 0 && len(p) > 0 && !errors.Is(ops[0].Err, ErrWriteAtInAppendMode)) {
				t.Fatalf("Submit write %s on an O_APPEND handle: %d, %v", c.name, ops[0].N, ops[0].Err)
			}
			rejected += 3
		}
		// Nothing was written, by the engine or by the reference.
		r := openFile(t, e, path, os.O_RDONLY)
		got := make([]byte, len(model)+1)
		n, err := r.ReadAt(got, 0)
		if n != len(model) || err != io.EOF || !bytes.Equal(got[:n], model) {
			t.Fatalf("after rejected WriteAts the engine reads %d bytes (%v); want the %d untouched", n, err, len(model))
		}
		r.Close()
		// The handle still appends at the end.
		rec := pattern(77, 14, uint64(flag))
		if n, err := f.Write(rec); n != len(rec) || err != nil {
			t.Fatalf("Write after rejected WriteAts: %d, %v", n, err)
		}
		model = append(model, rec...)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		sameBytes(t, "host after an append", readHost(t, path), model)
		// Closed: fs.ErrClosed, as for every call on a closed handle (row
		// B7; os.File, which learns it only from its descriptor, says
		// ErrWriteAtInAppendMode here).
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if n, err := f.WriteAt([]byte("x"), 0); n != 0 || !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("WriteAt on a closed O_APPEND handle: %d, %v; want fs.ErrClosed", n, err)
		}
		if n, err := f.WriteAtFlags([]byte("x"), 0, 0); n != 0 || !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("WriteAtFlags on a closed O_APPEND handle: %d, %v; want fs.ErrClosed", n, err)
		}
	}
	return rejected
}

// ---- C5 ----

// rowC5 runs seekDataHole (fixed cases: data in the middle of a hole,
// over cached data, after a punch, a 1-byte file, data past the host's
// end), then per mode a file of 1 GiB with data in the middle and at the
// last byte (before and after Sync), and a random sequence of writes
// (dirty in the cache where there is one), punches (some inside fresh
// writes), truncates and Syncs on a sparse file, each followed by a walk
// of every extent with SEEK_DATA/SEEK_HOLE: no written byte may lie in a
// reported hole, every reported hole reads zero, and at random offsets
// the two answers agree (o is in a hole for one exactly when it is for
// the other).
func rowC5(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	var fixed int
	t.Run("fixed", func(t *testing.T) { fixed = seekDataHole(t) })
	seed := fsxSeed(t)
	dir := relDir(t)
	var seeks, extents, holeBytes, ops, bad int64
	for mi, mode := range rowModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			seeks += c5LargeHole(t, e, filepath.Join(dir, "c5-large-"+strings.ReplaceAll(mode.name, "/", "-")))
			w := &c5State{t: t}
			defer func() { // also when the subtest fails
				seeks += w.seeks
				extents += w.extents
				holeBytes += w.holeBytes
				ops += w.ops
				bad += w.bad
			}()
			c5Walk(w, e, filepath.Join(dir, "c5-"+strings.ReplaceAll(mode.name, "/", "-")), seed+uint64(mi), 40*soakFactor())
		})
	}
	fig.Set("modes", int64(len(rowModes)))
	fig.Set("fixed_seeks", int64(fixed))
	fig.Set("ops", ops)
	fig.Set("seeks", seeks)
	fig.Set("extents_walked", extents)
	fig.Set("hole_bytes_read_zero", holeBytes)
	fig.Set("written_bytes_in_holes", bad)
}

// c5LargeHole checks SEEK_DATA/SEEK_HOLE in a 1 GiB file with 100 bytes
// at 512 MiB + 50 and one at the last byte, before and after Sync, and
// returns the seeks made.
func c5LargeHole(t *testing.T, e *Engine, path string) int64 {
	const size, mid = 1 << 30, 512 << 20
	writeHost(t, path, nil)
	defer os.Remove(path)
	f := openFile(t, e, path, os.O_RDWR)
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(pattern(100, 15, 0), mid+50); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{1}, size-1); err != nil {
		t.Fatal(err)
	}
	var seeks int64
	within := func(what string, off int64, whence int, lo, hi int64) {
		t.Helper()
		seeks++
		got, err := f.Seek(off, whence)
		if err != nil || got < lo || got > hi {
			t.Fatalf("%s: Seek(%d, %d) = %d, %v; want [%d, %d]", what, off, whence, got, err, lo, hi)
		}
	}
	for _, when := range []string{"cached", "after Sync"} {
		within(when+": data from the middle of the first hole", 256<<20, SeekData, mid, mid+50)
		within(when+": hole in the middle of the first hole", 300<<20, SeekHole, 300<<20, 300<<20)
		within(when+": hole after the middle data", mid+60, SeekHole, mid+150, mid+4096)
		within(when+": data from the middle of the second hole", mid+(100<<20), SeekData, size-4096, size-1)
		within(when+": hole at the last byte", size-1, SeekHole, size, size)
		seeks++
		if _, err := f.Seek(size, SeekData); !errors.Is(err, syscall.ENXIO) {
			t.Fatalf("%s: SEEK_DATA at the size: %v, want ENXIO", when, err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	return seeks
}

// c5State is the model of a c5Walk: the bytes, and which of them were
// written (and so must be reported as data).
type c5State struct {
	t       *testing.T
	f       *File
	rng     *rand.Rand
	seed    uint64
	data    []byte
	written byteSet
	log     []string

	ops, seeks, extents, holeBytes, bad int64
}

// c5Walk runs ops random operations on a sparse file, checking every
// extent after each, and counts in w.
func c5Walk(w *c5State, e *Engine, path string, seed uint64, ops int) {
	const size = 1 << 20
	t := w.t
	writeHost(t, path, nil)
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	w.f, w.rng, w.seed = openFile(t, e, path, os.O_RDWR), rand.New(rand.NewPCG(seed, 0xc5)), seed
	w.data, w.written = make([]byte, size), make(byteSet, size)
	w.check("start")
	for i := range ops {
		size := int64(len(w.data))
		tag := uint64(i + 1)
		switch k := w.rng.IntN(10); {
		case k < 5:
			off := w.rng.Int64N(size + 3000)
			w.write(off, 1+w.rng.IntN(5000), seed, tag)
		case k < 7:
			off := w.rng.Int64N(size)
			w.punch(off, 1+w.rng.Int64N(min(20000, size-off)))
		case k == 7: // dirty data with a punch inside it
			off := w.rng.Int64N(size - 12000)
			w.write(off, 12000, seed, tag)
			w.punch(off+100+w.rng.Int64N(4000), 1+w.rng.Int64N(6000))
		case k == 8:
			ns := size/2 + w.rng.Int64N(size)
			w.log = append(w.log, fmt.Sprintf("truncate %d", ns))
			if err := w.f.Truncate(ns); err != nil {
				t.Fatal(err)
			}
			if ns < size {
				w.data = w.data[:ns]
			} else {
				w.data = append(w.data, make([]byte, ns-size)...)
			}
			w.written.resize(ns, 0)
		default:
			w.log = append(w.log, "sync")
			if err := w.f.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		w.ops++
		w.check(w.log[len(w.log)-1])
	}
	t.Logf("seed %d: %d operations, %d seeks, %d extents walked, %d hole bytes read zero, no written byte in a hole",
		seed, w.ops, w.seeks, w.extents, w.holeBytes)
	w.f.Close()
}

func (w *c5State) write(off int64, n int, seed, tag uint64) {
	p := pattern(n, seed, tag)
	w.log = append(w.log, fmt.Sprintf("write %d %d", off, n))
	if m, err := w.f.WriteAt(p, off); m != n || err != nil {
		w.t.Fatalf("WriteAt(%d, %d): %d, %v", off, n, m, err)
	}
	w.data = modelWrite(w.data, p, off)
	w.written.resize(int64(len(w.data)), 0)
	w.written.set(off, off+int64(n), 1)
}

func (w *c5State) punch(off, n int64) {
	w.log = append(w.log, fmt.Sprintf("punch %d %d", off, n))
	if err := w.f.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
		w.t.Fatalf("punch(%d, %d): %v", off, n, err)
	}
	end := min(off+n, int64(len(w.data)))
	clear(w.data[off:end])
	w.written.set(off, end, 0)
}

func (w *c5State) failf(format string, args ...any) {
	w.t.Helper()
	w.t.Fatalf("seed %d (RINGFS_FSX_SEED): %s\nlast operations:\n%s", w.seed, fmt.Sprintf(format, args...), tail(w.log, 20))
}

// seek returns SEEK_DATA or SEEK_HOLE from off, with the size for ENXIO.
func (w *c5State) seek(off int64, whence int) int64 {
	w.t.Helper()
	w.seeks++
	got, err := w.f.Seek(off, whence)
	size := int64(len(w.data))
	switch {
	case errors.Is(err, syscall.ENXIO) && whence == SeekData:
		return size
	case err != nil:
		w.failf("Seek(%d, %d) (size %d): %v", off, whence, size, err)
	case got < off || got > size || (whence == SeekData && got == size):
		w.failf("Seek(%d, %d) = %d, size %d", off, whence, got, size)
	}
	return got
}

// check walks every extent and probes random offsets.
func (w *c5State) check(when string) {
	w.t.Helper()
	size := int64(len(w.data))
	for _, whence := range []int{SeekData, SeekHole} {
		w.seeks++
		if _, err := w.f.Seek(size, whence); !errors.Is(err, syscall.ENXIO) {
			w.failf("after %s: Seek(size %d, %d): %v, want ENXIO", when, size, whence, err)
		}
	}
	for pos := int64(0); pos < size; {
		d := w.seek(pos, SeekData)
		w.hole(when, pos, d)
		if d == size {
			break
		}
		h := w.seek(d, SeekHole)
		if h == d {
			w.failf("after %s: SEEK_DATA(%d) = %d but SEEK_HOLE(%d) = %d: an empty extent", when, pos, d, d, h)
		}
		w.extents++
		pos = h
	}
	for range 4 {
		o := w.rng.Int64N(size)
		d, h := w.seek(o, SeekData), w.seek(o, SeekHole)
		if (d == o) == (h == o) {
			w.failf("after %s: at %d SEEK_DATA = %d and SEEK_HOLE = %d disagree", when, o, d, h)
		}
	}
}

// hole checks a reported hole [a, b): nothing written in it, reads zero.
func (w *c5State) hole(when string, a, b int64) {
	w.t.Helper()
	if a >= b {
		return
	}
	if i := bytes.IndexByte(w.written[a:b], 1); i >= 0 {
		w.bad++
		w.failf("after %s: byte %d was written but lies in the hole [%d, %d) SEEK_DATA/SEEK_HOLE report", when, a+int64(i), a, b)
	}
	for _, r := range [][2]int64{{a, min(b, a+64<<10)}, {max(a, b-4096), b}} {
		p := make([]byte, r[1]-r[0])
		if n, err := w.f.ReadAt(p, r[0]); n != len(p) || err != nil {
			w.failf("after %s: reading the hole [%d, %d): %d, %v", when, r[0], r[1], n, err)
		}
		if i := firstNonzeroByte(p); i >= 0 {
			w.failf("after %s: byte %d of the reported hole [%d, %d) reads %#x", when, r[0]+int64(i), a, b, p[i])
		}
		w.holeBytes += int64(len(p))
	}
}

// ---- Mapper ----

// vma is one line of /proc/self/maps.
type vma struct {
	start, end, off uint64
	perms           string
}

// fileVMAs returns the process's mappings of the file with device dev
// and inode number ino, from /proc/self/maps.
func fileVMAs(t testing.TB, dev, ino uint64) []vma {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%02x:%02x", unix.Major(dev), unix.Minor(dev))
	var out []vma
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || f[3] != want || f[4] != strconv.FormatUint(ino, 10) {
			continue
		}
		a, z, _ := strings.Cut(f[0], "-")
		var v vma
		v.start, _ = strconv.ParseUint(a, 16, 64)
		v.end, _ = strconv.ParseUint(z, 16, 64)
		v.off, _ = strconv.ParseUint(f[2], 16, 64)
		v.perms = f[1]
		out = append(out, v)
	}
	return out
}

// fileID returns the device and inode number of path.
func fileID(t testing.TB, path string) (dev, ino uint64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Dev, st.Ino
}

// coveredBy reports whether the memory of m is mapped, all of it, by
// vmas of its file at the file offsets it stands for.
func coveredBy(m *Mapping, vmas []vma) bool {
	b := m.Bytes()
	if len(b) == 0 {
		return true
	}
	addr := uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b))))
	end, off := addr+uint64(len(b)), uint64(m.Offset())
	for addr < end {
		found := false
		for _, v := range vmas {
			if v.start <= addr && addr < v.end {
				if v.off+(addr-v.start) != off {
					return false
				}
				off += v.end - addr
				addr = v.end
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// rowMp1: per mode, 8 goroutines Map random overlapping ranges of a file
// of two and a half 2 MiB chunks (windows inside a chunk near its ends,
// spans across chunk boundaries, empty ones, some writable), verify them
// through Mapping.ReadAt (a chunk unmapped under a live Mapping reads
// EFAULT or other memory), write the same bytes back through writable
// ones (upgrading chunks in place), hand Mappings to each other to
// close, race two Closes of one Mapping, and read through the engine
// (the file switches in and out of the cache). A sampler checks that no
// count of the engine's and mapper's stats goes negative. With every
// Mapping made open, /proc/self/maps must map each at its file offset;
// once all are closed, every chunk and span mapped must have been
// unmapped exactly once (mapped = unmapped), nothing referenced, and no
// mapping of the file left in /proc/self/maps.
func rowMp1(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	seed := fsxSeed(t)
	dir := relDir(t)
	var total mp1Counts
	for mi, mode := range rowModes {
		t.Run(mode.name, func(t *testing.T) {
			c := &mp1Counts{}
			defer total.add(c) // also when the subtest fails
			mp1Race(t, mode.name, mode.opts, dir, seed+uint64(mi), 150*soakFactor(), c)
		})
	}
	fig.Set("modes", int64(len(rowModes)))
	fig.Set("goroutines", mp1Goroutines)
	fig.Set("maps", total.maps.Load())
	fig.Set("closes", total.closes.Load())
	fig.Set("handed_off_closes", total.handoffs.Load())
	fig.Set("handles_closed_under_mappings", total.handles.Load())
	fig.Set("racing_double_closes", total.races.Load())
	fig.Set("reads_verified", total.verified.Load())
	fig.Set("stat_samples", total.samples.Load())
	fig.Set("negative_counts", total.negative.Load())
	fig.Set("chunks_mapped", total.chunksMapped.Load())
	fig.Set("chunks_unmapped", total.chunksUnmapped.Load())
	fig.Set("spans_mapped", total.spansMapped.Load())
	fig.Set("spans_unmapped", total.spansUnmapped.Load())
	fig.Set("mappings_found_in_proc_maps", total.vmasChecked.Load())
	fig.Set("vmas_left", total.vmasLeft.Load())
}

const mp1Goroutines = 8

type mp1Counts struct {
	maps, closes, handoffs, races, verified, samples, negative atomic.Int64
	handles                                                    atomic.Int64
	chunksMapped, chunksUnmapped, spansMapped, spansUnmapped   atomic.Int64
	vmasChecked, vmasLeft                                      atomic.Int64
}

func (c *mp1Counts) add(o *mp1Counts) {
	for _, p := range [][2]*atomic.Int64{{&c.maps, &o.maps}, {&c.closes, &o.closes}, {&c.handoffs, &o.handoffs},
		{&c.races, &o.races}, {&c.verified, &o.verified}, {&c.samples, &o.samples}, {&c.negative, &o.negative},
		{&c.chunksMapped, &o.chunksMapped}, {&c.chunksUnmapped, &o.chunksUnmapped}, {&c.spansMapped, &o.spansMapped},
		{&c.spansUnmapped, &o.spansUnmapped}, {&c.vmasChecked, &o.vmasChecked}, {&c.vmasLeft, &o.vmasLeft},
		{&c.handles, &o.handles}} {
		p[0].Add(p[1].Load())
	}
}

func mp1Race(t *testing.T, name string, opts Options, dir string, seed uint64, iters int, c *mp1Counts) {
	const chunk = hostmap.ChunkSize
	const size = 2*chunk + chunk/2 + 100
	e := newEngine(t, opts)
	path := filepath.Join(dir, "mp1-"+strings.ReplaceAll(name, "/", "-"))
	content := pattern(size, seed, 0)
	writeHost(t, path, content)
	dev, ino := fileID(t, path)
	f := openFile(t, e, path, os.O_RDWR)
	var failed atomic.Value
	fail := func(format string, args ...any) {
		failed.CompareAndSwap(nil, fmt.Sprintf(format, args...))
	}
	randRange := func(rng *rand.Rand) (int64, int64) {
		var off, n int64
		switch rng.IntN(4) {
		case 0: // empty
			return rng.Int64N(size), 0
		case 1: // inside a chunk, near its start or end
			base := chunk * rng.Int64N(3)
			if rng.IntN(2) == 0 {
				off = base + rng.Int64N(64<<10)
			} else {
				off = base + chunk - 1 - rng.Int64N(64<<10)
			}
			n = 1 + rng.Int64N(base+chunk-off)
			n = min(n, 128<<10)
		case 2: // across a chunk boundary
			b := chunk * (1 + rng.Int64N(2))
			off = b - 1 - rng.Int64N(128<<10)
			n = b - off + 1 + rng.Int64N(128<<10)
		default:
			off = rng.Int64N(size - 1)
			n = 1 + rng.Int64N(256<<10)
		}
		if off >= size { // near the end of the last, partial chunk
			off = size - 1 - rng.Int64N(64<<10)
		}
		return off, max(1, min(n, size-off))
	}
	verify := func(rng *rand.Rand, m *Mapping) {
		if m.Len() == 0 {
			return
		}
		rel := rng.Int64N(int64(m.Len()))
		p := make([]byte, min(int64(m.Len())-rel, 1+rng.Int64N(8192)))
		n, err := m.ReadAt(p, rel)
		c.verified.Add(1)
		at := m.Offset() + rel
		if n != len(p) || err != nil || !bytes.Equal(p, content[at:at+int64(len(p))]) {
			fail("Mapping [%d, +%d) read at %d: %d, %v, equal %v", m.Offset(), m.Len(), at, n, err, bytes.Equal(p[:n], content[at:at+int64(n)]))
		}
	}
	// The sampler: no count may go negative.
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := e.Stats().Mmap
			c.samples.Add(1)
			if s.MappedBytes < 0 || s.ChunksLive < 0 || s.SpansLive < 0 || s.LiveRefs < 0 || s.MappingsOpen < 0 {
				c.negative.Add(1)
				fail("negative count in %+v", s)
			}
			for _, fst := range e.Files() {
				if fst.Mappings < 0 || fst.Handles < 0 {
					c.negative.Add(1)
					fail("negative count in %+v", fst)
				}
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	handoff := make(chan *Mapping, 8)
	kept := make([][]*Mapping, mp1Goroutines)
	var wg sync.WaitGroup
	for g := range mp1Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			var own []*Mapping
			closeOne := func(m *Mapping) {
				if err := m.Close(); err != nil {
					fail("Close of [%d, +%d): %v", m.Offset(), m.Len(), err)
				}
				c.closes.Add(1)
			}
			for range iters {
				if failed.Load() != nil {
					break
				}
				switch k := rng.IntN(10); {
				case k < 4:
					off, n := randRange(rng)
					writable := rng.IntN(3) == 0
					h := f
					if rng.IntN(4) == 0 {
						// Through a handle of its own, closed at once:
						// the Mapping outlives it.
						var err error
						if h, err = e.Open(path, os.O_RDWR, 0); err != nil {
							fail("Open: %v", err)
							return
						}
					}
					m, err := h.Map(off, n, writable)
					if h != f {
						if cerr := h.Close(); cerr != nil {
							fail("Close of a handle with a Mapping: %v", cerr)
						}
						c.handles.Add(1)
					}
					if err != nil {
						fail("Map(%d, %d, %v): %v", off, n, writable, err)
						return
					}
					c.maps.Add(1)
					verify(rng, m)
					own = append(own, m)
				case k < 6 && len(own) > 0:
					i := rng.IntN(len(own))
					closeOne(own[i])
					own = append(own[:i], own[i+1:]...)
				case k == 6 && len(own) > 0:
					i := rng.IntN(len(own))
					select {
					case handoff <- own[i]:
					default:
						closeOne(own[i])
					}
					own = append(own[:i], own[i+1:]...)
				case k == 7:
					select {
					case m := <-handoff:
						closeOne(m)
						c.handoffs.Add(1)
					default:
					}
				case k == 8: // two Closes of one Mapping at once
					off, n := randRange(rng)
					m, err := f.Map(off, n, false)
					if err != nil {
						fail("Map(%d, %d): %v", off, n, err)
						return
					}
					c.maps.Add(1)
					var errs [2]error
					var both sync.WaitGroup
					for j := range 2 {
						both.Add(1)
						go func() { defer both.Done(); errs[j] = m.Close() }()
					}
					both.Wait()
					if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs[0], errs[1]), fs.ErrClosed) {
						fail("racing Closes of [%d, +%d): %v, %v; want one nil, one fs.ErrClosed", off, n, errs[0], errs[1])
					}
					c.closes.Add(1)
					c.races.Add(1)
				default: // through the engine, and the same bytes back through a writable Mapping
					off, n := randRange(rng)
					p := make([]byte, n)
					if m, err := f.ReadAt(p, off); m != len(p) || (err != nil && err != io.EOF) || !bytes.Equal(p, content[off:off+n]) {
						fail("engine ReadAt(%d, %d): %d, %v", off, n, m, err)
					}
					for _, m := range own {
						if m.Writable() && m.Len() > 0 {
							rel := rng.Int64N(int64(m.Len()))
							q := content[m.Offset()+rel : m.Offset()+rel+min(int64(m.Len())-rel, 4096)]
							if n, err := m.WriteAt(q, rel); n != len(q) || err != nil {
								fail("Mapping.WriteAt at %d: %d, %v", m.Offset()+rel, n, err)
							}
							break
						}
					}
				}
				if len(own) > 0 {
					verify(rng, own[rng.IntN(len(own))])
				}
				// Few Mappings each, so that chunks often drop to zero.
				for len(own) > 3 {
					closeOne(own[0])
					own = own[1:]
				}
			}
			kept[g] = own
		}()
	}
	wg.Wait()
	close(handoff)
	for m := range handoff {
		kept[0] = append(kept[0], m)
	}
	if msg := failed.Load(); msg != nil {
		close(stop)
		<-sampled
		t.Fatalf("%s seed %d: %s", name, seed, msg)
	}
	// Every Mapping still open is mapped where /proc/self/maps says, at
	// its file offset; the engine counts them all.
	vmas := fileVMAs(t, dev, ino)
	open, nonEmpty := 0, int64(0)
	for _, own := range kept {
		for _, m := range own {
			open++
			if m.Len() > 0 {
				nonEmpty++
			}
			if !coveredBy(m, vmas) {
				t.Fatalf("%s: Mapping [%d, +%d) at %p is not mapped at its file offset in /proc/self/maps: %+v",
					name, m.Offset(), m.Len(), unsafe.SliceData(m.Bytes()), vmas)
			}
			c.vmasChecked.Add(1)
		}
	}
	if fsts := fileStats(t, e, path); fsts.Mappings != open {
		t.Fatalf("%s: the engine counts %d Mappings, %d are open", name, fsts.Mappings, open)
	}
	if s := e.Stats().Mmap; s.MappingsOpen != nonEmpty {
		t.Fatalf("%s: the mapper counts %d open Mappings, %d are (not counting empty ones)", name, s.MappingsOpen, nonEmpty)
	}
	// Close them all, each from another goroutine than its maker's.
	for g := range mp1Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, m := range kept[(g+1)%mp1Goroutines] {
				if err := m.Close(); err != nil {
					fail("final Close: %v", err)
				}
				c.closes.Add(1)
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled
	if msg := failed.Load(); msg != nil {
		t.Fatalf("%s seed %d: %s", name, seed, msg)
	}
	s := e.Stats().Mmap
	if fsts := fileStats(t, e, path); fsts.Mappings != 0 {
		t.Fatalf("%s: %d Mappings counted after all closed", name, fsts.Mappings)
	}
	internal := opts.HostMmap // the engine's own references keep chunks mapped
	switch {
	case s.MappingsOpen != 0 || s.SpansLive != 0 || s.UnmapFailures != 0:
		t.Fatalf("%s: after every Mapping closed: %+v", name, s)
	case s.SpansMapped != s.SpansUnmapped:
		t.Fatalf("%s: %d spans mapped, %d unmapped", name, s.SpansMapped, s.SpansUnmapped)
	case !internal && (s.ChunksLive != 0 || s.LiveRefs != 0 || s.ChunksMapped != s.ChunksUnmapped):
		t.Fatalf("%s: chunks not unmapped exactly once at zero: %+v", name, s)
	case internal && int64(s.ChunksMapped-s.ChunksUnmapped) != s.ChunksLive:
		t.Fatalf("%s: chunks mapped %d, unmapped %d, live %d", name, s.ChunksMapped, s.ChunksUnmapped, s.ChunksLive)
	}
	left := fileVMAs(t, dev, ino)
	if !internal && len(left) != 0 {
		t.Fatalf("%s: %d mappings of the file left in /proc/self/maps after every Mapping closed: %+v", name, len(left), left)
	}
	got := make([]byte, size)
	if n, err := f.ReadAt(got, 0); n != size || err != nil || !bytes.Equal(got, content) {
		t.Fatalf("%s: engine read after the race: %d, %v", name, n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if fsts := e.Files(); len(fsts) != 0 {
		t.Fatalf("%s: the file is kept after its last handle and Mapping closed: %+v", name, fsts)
	}
	after := fileVMAs(t, dev, ino)
	c.vmasLeft.Add(int64(len(after)))
	if len(after) != 0 {
		t.Fatalf("%s: %d mappings of the file left after its last handle closed: %+v", name, len(after), after)
	}
	c.chunksMapped.Add(int64(s.ChunksMapped))
	c.chunksUnmapped.Add(int64(s.ChunksUnmapped))
	c.spansMapped.Add(int64(s.SpansMapped))
	c.spansUnmapped.Add(int64(s.SpansUnmapped))
	t.Logf("%s seed %d: %d Maps, %d Closes (%d handed off, %d racing pairs), %d reads verified, %d samples never negative; chunks %d mapped / %d unmapped, spans %d / %d; %d Mappings found at their offsets in /proc/self/maps, none left after",
		name, seed, c.maps.Load(), c.closes.Load(), c.handoffs.Load(), c.races.Load(), c.verified.Load(), c.samples.Load(),
		s.ChunksMapped, s.ChunksUnmapped, s.SpansMapped, s.SpansUnmapped, c.vmasChecked.Load())
}

// rowMp2 runs mappingDoubleClose, then per mode and kind of Mapping
// (window inside a chunk, sub-page, span across chunks, empty): three
// Mappings of the same range; one closed twice in a row, one closed by
// two goroutines at once (exactly one Close succeeds); the closed ones
// refuse every access with fs.ErrClosed, and the third still reads and
// writes the file, counted once by the engine and the mapper.
func rowMp2(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	t.Run("fixed", mappingDoubleClose)
	const chunk = hostmap.ChunkSize
	var doubles, races, others int64
	for _, mode := range rowModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(relDir(t), "mp2")
			model := pattern(chunk+64<<10, 16, 0)
			writeHost(t, path, model)
			f := openFile(t, e, path, os.O_RDWR)
			for ki, k := range []struct {
				name   string
				off, n int64
			}{{"window", 4096, 8192}, {"sub-page", 10, 100}, {"span", chunk - 4096, 8192}, {"empty", 100, 0}} {
				a, err := f.Map(k.off, k.n, true)
				if err != nil {
					t.Fatal(err)
				}
				b, err := f.Map(k.off, k.n, true)
				if err != nil {
					t.Fatal(err)
				}
				c, err := f.Map(k.off, k.n, false)
				if err != nil {
					t.Fatal(err)
				}
				if err := b.Close(); err != nil {
					t.Fatalf("%s: first Close: %v", k.name, err)
				}
				if err := b.Close(); !errors.Is(err, fs.ErrClosed) {
					t.Fatalf("%s: second Close: %v, want fs.ErrClosed", k.name, err)
				}
				doubles++
				var errs [2]error
				var wg sync.WaitGroup
				for j := range 2 {
					wg.Add(1)
					go func() { defer wg.Done(); errs[j] = c.Close() }()
				}
				wg.Wait()
				if (errs[0] == nil) == (errs[1] == nil) || !errors.Is(errors.Join(errs[:]...), fs.ErrClosed) {
					t.Fatalf("%s: racing Closes: %v, %v; want one nil and one fs.ErrClosed", k.name, errs[0], errs[1])
				}
				races++
				for _, m := range []*Mapping{b, c} {
					if m.Bytes() != nil {
						t.Fatalf("%s: Bytes of a closed Mapping", k.name)
					}
					if _, err := m.ReadAt(make([]byte, 1), 0); !errors.Is(err, fs.ErrClosed) {
						t.Fatalf("%s: ReadAt on a closed Mapping: %v", k.name, err)
					}
				}
				if _, err := b.WriteAt([]byte{1}, 0); !errors.Is(err, fs.ErrClosed) {
					t.Fatalf("%s: WriteAt on a closed writable Mapping: %v", k.name, err)
				}
				// The other Mapping of the same pages is unaffected.
				if fsts := fileStats(t, e, path); fsts.Mappings != 1 {
					t.Fatalf("%s: the engine counts %d Mappings after double Closes, 1 is open", k.name, fsts.Mappings)
				}
				if want := min(k.n, 1); e.Stats().Mmap.MappingsOpen != want {
					t.Fatalf("%s: the mapper counts %d open Mappings, want %d", k.name, e.Stats().Mmap.MappingsOpen, want)
				}
				got := make([]byte, k.n)
				if n, err := a.ReadAt(got, 0); n != len(got) || err != nil || !bytes.Equal(got, model[k.off:k.off+k.n]) {
					t.Fatalf("%s: the other Mapping after the double Closes: %d, %v", k.name, n, err)
				}
				if k.n > 0 {
					w := pattern(int(k.n), 16, uint64(ki+1))
					if n, err := a.WriteAt(w, 0); n != len(w) || err != nil {
						t.Fatalf("%s: writing through the other Mapping: %d, %v", k.name, n, err)
					}
					copy(model[k.off:], w)
					sameBytes(t, k.name+": host after writing through the other Mapping", readHost(t, path), model)
				}
				others++
				if err := a.Close(); err != nil {
					t.Fatal(err)
				}
				if fsts := fileStats(t, e, path); fsts.Mappings != 0 {
					t.Fatalf("%s: %d Mappings counted after all closed", k.name, fsts.Mappings)
				}
			}
			got := make([]byte, len(model))
			if n, err := f.ReadAt(got, 0); n != len(model) || err != nil || !bytes.Equal(got, model) {
				t.Fatalf("engine read after the Mappings: %d, %v", n, err)
			}
		})
	}
	fig.Set("modes", int64(len(rowModes)))
	fig.Set("double_closes", doubles)
	fig.Set("racing_closes", races)
	fig.Set("other_mappings_intact", others)
}

// rowMp3 runs mappingTruncateBelow, then per mode and case (mid-page,
// page boundary, to zero, below the Mapping's start, a span across
// chunks; in Shared mode the truncation is made by another writer, not
// the engine) truncates below a live writable Mapping while a goroutine
// keeps reading through it: every access past the end is EFAULT, never
// a crash; the bytes before the end are intact; the tail of the EOF
// page reads zero; a read across the end stops exactly at the EOF page;
// extending the file again resurrects nothing (zeros through the Mapping
// and the engine); and a store into the EOF page's tail through the
// Mapping does not change the file's size.
func rowMp3(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	t.Run("fixed", mappingTruncateBelow)
	const chunk = hostmap.ChunkSize
	var truncations, faults, racingFaults, tailZero, zeroAfterExtend int64
	for _, mode := range rowModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			dir := relDir(t)
			for ci, c := range []struct {
				name                 string
				mapOff, mapLen, size int64
			}{
				{"mid-page", 0, 4 * 4096, 4096 + 100},
				{"page boundary", 0, 4 * 4096, 2 * 4096},
				{"to zero", 0, 4 * 4096, 0},
				{"below the start", 2 * 4096, 2 * 4096, 4096 + 7},
				{"span", chunk - 8192, 16384, chunk - 4096 + 1},
			} {
				path := filepath.Join(dir, fmt.Sprintf("mp3-%d", ci))
				old := c.mapOff + c.mapLen + 4096
				content := pattern(int(old), 17, uint64(ci))
				writeHost(t, path, content)
				f := openFile(t, e, path, os.O_RDWR)
				m, err := f.Map(c.mapOff, c.mapLen, true)
				if err != nil {
					t.Fatal(err)
				}
				// A reader through the Mapping while the file shrinks.
				stop := make(chan struct{})
				var odd atomic.Value
				var n0 atomic.Int64
				done := make(chan struct{})
				go func() {
					defer close(done)
					p := make([]byte, 3000)
					for i := int64(0); ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						rel := (i * 1237) % (c.mapLen - int64(len(p)))
						if _, err := m.ReadAt(p, rel); err != nil {
							if !errors.Is(err, syscall.EFAULT) {
								odd.CompareAndSwap(nil, err)
							}
							n0.Add(1)
						}
					}
				}()
				time.Sleep(time.Millisecond)
				truncate := func(size int64) {
					t.Helper()
					var err error
					if mode.opts.Mode == Shared {
						err = os.Truncate(path, size) // another writer
					} else {
						err = f.Truncate(size)
					}
					if err != nil {
						t.Fatal(err)
					}
					truncations++
				}
				truncate(c.size)
				time.Sleep(time.Millisecond)
				close(stop)
				<-done
				if err, _ := odd.Load().(error); err != nil {
					t.Fatalf("%s: reading through the Mapping during the truncation: %v, want nil or EFAULT", c.name, err)
				}
				racingFaults += n0.Load()
				mapEnd := c.mapOff + c.mapLen
				eofPage := (c.size + 4095) &^ 4095
				// Before the end: intact.
				if lo, hi := c.mapOff, min(c.size, mapEnd); lo < hi {
					p := make([]byte, hi-lo)
					if n, err := m.ReadAt(p, 0); n != len(p) || err != nil || !bytes.Equal(p, content[lo:hi]) {
						t.Fatalf("%s: bytes before the new end through the Mapping: %d, %v", c.name, n, err)
					}
				}
				// The EOF page's tail: zero.
				if lo, hi := max(c.size, c.mapOff), min(eofPage, mapEnd); lo < hi {
					p := make([]byte, hi-lo)
					if n, err := m.ReadAt(p, lo-c.mapOff); n != len(p) || err != nil {
						t.Fatalf("%s: EOF page tail [%d, %d) through the Mapping: %d, %v", c.name, lo, hi, n, err)
					}
					if i := firstNonzeroByte(p); i >= 0 {
						t.Fatalf("%s: EOF page tail byte %d reads %#x after the truncation", c.name, lo+int64(i), p[i])
					}
					tailZero += hi - lo
				}
				// Every page past the EOF page: EFAULT both ways.
				for pg := max(eofPage, c.mapOff); pg < mapEnd; pg += 4096 {
					if n, err := m.ReadAt(make([]byte, 1), pg-c.mapOff); n != 0 || !errors.Is(err, syscall.EFAULT) {
						t.Fatalf("%s: read at %d past the end through the Mapping: %d, %v; want EFAULT", c.name, pg, n, err)
					}
					if n, err := m.WriteAt([]byte{1}, pg-c.mapOff); n != 0 || !errors.Is(err, syscall.EFAULT) {
						t.Fatalf("%s: write at %d past the end through the Mapping: %d, %v; want EFAULT", c.name, pg, n, err)
					}
					faults += 2
				}
				// A read across the end stops exactly at the EOF page.
				if eofPage < mapEnd {
					p := make([]byte, c.mapLen)
					n, err := m.ReadAt(p, 0)
					if want := max(0, eofPage-c.mapOff); int64(n) != want || !errors.Is(err, syscall.EFAULT) {
						t.Fatalf("%s: read of the whole Mapping: %d, %v; want %d, EFAULT", c.name, n, err, want)
					}
					faults++
				}
				got := make([]byte, old)
				if n, err := f.ReadAt(got, 0); int64(n) != c.size || err != io.EOF || !bytes.Equal(got[:n], content[:n]) {
					t.Fatalf("%s: engine read after the truncation: %d, %v; want %d, EOF", c.name, n, err, c.size)
				}
				// Extending again brings nothing back.
				truncate(old)
				p := make([]byte, c.mapLen)
				if n, err := m.ReadAt(p, 0); n != len(p) || err != nil {
					t.Fatalf("%s: Mapping after extending again: %d, %v", c.name, n, err)
				}
				if n, err := f.ReadAt(got, 0); int64(n) != old || err != nil {
					t.Fatalf("%s: engine read after extending again: %d, %v", c.name, n, err)
				}
				for _, v := range []struct {
					what string
					b    []byte
					at   int64
				}{{"Mapping", p, c.mapOff}, {"engine", got, 0}} {
					lo := max(c.size, v.at) - v.at
					if i := firstNonzeroByte(v.b[lo:]); i >= 0 {
						t.Fatalf("%s: after extending again, byte %d reads %#x through the %s: resurrected", c.name, v.at+lo+int64(i), v.b[lo+int64(i)], v.what)
					}
					if !bytes.Equal(v.b[:lo], content[v.at:v.at+lo]) {
						t.Fatalf("%s: after extending again, bytes before %d changed through the %s", c.name, c.size, v.what)
					}
					zeroAfterExtend += int64(len(v.b)) - lo
				}
				// A store into the EOF page's tail is not part of the file.
				truncate(c.size)
				if lo, hi := max(c.size, c.mapOff), min(eofPage, mapEnd); lo < hi {
					if n, err := m.WriteAt(bytes.Repeat([]byte{0xee}, int(hi-lo)), lo-c.mapOff); n != int(hi-lo) || err != nil {
						t.Fatalf("%s: store into the EOF page tail: %d, %v", c.name, n, err)
					}
					fi, err := f.Stat()
					if err != nil || fi.Size() != c.size {
						t.Fatalf("%s: size %d (%v) after a store past the end through a Mapping, want %d", c.name, fi.Size(), err, c.size)
					}
					if n, err := f.ReadAt(got, 0); int64(n) != c.size || err != io.EOF {
						t.Fatalf("%s: engine read after a store past the end: %d, %v", c.name, n, err)
					}
				}
				if err := m.Close(); err != nil {
					t.Fatal(err)
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
	fig.Set("modes", int64(len(rowModes)))
	fig.Set("truncations", truncations)
	fig.Set("efaults_past_eof", faults)
	fig.Set("efaults_while_truncating", racingFaults)
	fig.Set("eof_tail_bytes_zero", tailZero)
	fig.Set("bytes_zero_after_extend", zeroAfterExtend)
}

// rowMp4 runs mappingOutlivesFile, then per mode: a dirty cached write,
// two Mappings, the File closed: the Mappings still read the write and
// write the file (seen on the host at once), the engine keeps the file
// (no handle, the Mappings counted); a new handle of the file sees the
// Mapping's writes and its writes are seen through the Mapping; the last
// Mapping's Close releases the file (no descriptor, no mapping of it
// left in /proc/self). Then Engine.Close with a Mapping live: the
// Mapping stays valid until its own Close (package doc: Bytes is valid
// from Map until the Mapping's Close), which then succeeds and leaves
// nothing mapped.
func rowMp4(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	t.Run("fixed", mappingOutlivesFile)
	var outlived, writesAfter, engineCloses int64
	for _, mode := range rowModes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEngine(t, mode.opts)
			path := filepath.Join(relDir(t), "mp4")
			model := pattern(3*4096+100, 18, 0)
			writeHost(t, path, model)
			dev, ino := fileID(t, path)
			f := openFile(t, e, path, os.O_RDWR)
			w := pattern(500, 18, 1)
			if _, err := f.WriteAt(w, 1000); err != nil {
				t.Fatal(err)
			}
			copy(model[1000:], w)
			m, err := f.Map(0, int64(len(model)), true)
			if err != nil {
				t.Fatal(err)
			}
			m2, err := f.Map(4096, 4096, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(model))
			if n, err := m.ReadAt(got, 0); n != len(model) || err != nil || !bytes.Equal(got, model) {
				t.Fatalf("Mapping after its File closed: %d, %v, equal %v", n, err, bytes.Equal(got, model))
			}
			fsts := e.Files()
			if len(fsts) != 1 || fsts[0].Handles != 0 || fsts[0].Mappings != 2 || e.Stats().OpenHandles != 0 {
				t.Fatalf("with no handle and two Mappings the engine holds %+v", fsts)
			}
			outlived += 2
			v := pattern(300, 18, 2)
			if n, err := m.WriteAt(v, 2000); n != len(v) || err != nil {
				t.Fatalf("write through a Mapping whose File closed: %d, %v", n, err)
			}
			copy(model[2000:], v)
			sameBytes(t, "host after a write through a Mapping whose File closed", readHost(t, path), model)
			writesAfter++
			if err := m2.Close(); err != nil {
				t.Fatal(err)
			}
			g := openFile(t, e, path, os.O_RDWR)
			if n, err := g.ReadAt(got, 0); n != len(model) || err != nil || !bytes.Equal(got, model) {
				t.Fatalf("a new handle does not read the Mapping's writes: %d, %v", n, err)
			}
			u := pattern(200, 18, 3)
			if _, err := g.WriteAt(u, 3000); err != nil {
				t.Fatal(err)
			}
			copy(model[3000:], u)
			if n, err := m.ReadAt(got, 0); n != len(model) || err != nil || !bytes.Equal(got, model) {
				t.Fatalf("the Mapping does not show the new handle's write: %d, %v", n, err)
			}
			if err := g.Close(); err != nil {
				t.Fatal(err)
			}
			if fsts := e.Files(); len(fsts) != 1 || fsts[0].Mappings != 1 {
				t.Fatalf("the engine holds %+v; want the file, with one Mapping", fsts)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if fsts := e.Files(); len(fsts) != 0 {
				t.Fatalf("the file is kept after its last Mapping closed: %+v", fsts)
			}
			if vmas := fileVMAs(t, dev, ino); len(vmas) != 0 {
				t.Fatalf("the file is still mapped after its last Mapping closed: %+v", vmas)
			}
			if fds := fdsOf(t, path); len(fds) != 0 {
				t.Fatalf("descriptors of the file left open: %v", fds)
			}
			sameBytes(t, "host", readHost(t, path), model)
			// Engine.Close with a Mapping live.
			h := openFile(t, e, path, os.O_RDWR)
			m3, err := h.Map(0, int64(len(model)), true)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatalf("Engine.Close with a Mapping live: %v", err)
			}
			engineCloses++
			if n, err := m3.ReadAt(got, 0); n != len(model) || err != nil || !bytes.Equal(got, model) {
				t.Fatalf("a Mapping after Engine.Close: %d, %v", n, err)
			}
			x := pattern(100, 18, 4)
			if n, err := m3.WriteAt(x, 50); n != len(x) || err != nil {
				t.Fatalf("write through a Mapping after Engine.Close: %d, %v", n, err)
			}
			copy(model[50:], x)
			sameBytes(t, "host after a write through a Mapping after Engine.Close", readHost(t, path), model)
			writesAfter++
			if err := m3.Close(); err != nil {
				t.Fatalf("Close of a Mapping after Engine.Close: %v", err)
			}
			if err := m3.Close(); !errors.Is(err, fs.ErrClosed) {
				t.Fatalf("second Close of a Mapping after Engine.Close: %v", err)
			}
			if vmas := fileVMAs(t, dev, ino); len(vmas) != 0 {
				t.Fatalf("the file is still mapped after its Mapping closed after Engine.Close: %+v", vmas)
			}
		})
	}
	fig.Set("modes", int64(len(rowModes)))
	fig.Set("mappings_outliving_file", outlived)
	fig.Set("writes_seen_after_close", writesAfter)
	fig.Set("engine_closes_with_live_mappings", engineCloses)
}

// fdsOf returns this process's descriptors open on path.
func fdsOf(t testing.TB, path string) []int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil && target == path {
			n, _ := strconv.Atoi(e.Name())
			out = append(out, n)
		}
	}
	return out
}

// ---- Security ----

// rowS1 is privilegesCleared: in every mode, files of mode 6755, 6745,
// 4700 and 2710 written (WriteAt, Write, WriteAtFlags, Submit, O_DSYNC,
// O_DIRECT, append) and allocated (plain, keep size, punch, zero range):
// setuid cleared by every write of n > 0 bytes and every allocation,
// setgid only where group-execute is set, nothing cleared by writes of 0
// bytes; checked on the host and through Stat.
func rowS1(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	checked, cleared := privilegesCleared(t)
	t.Run("set from outside, seen at Stat", func(t *testing.T) {
		// doc.go "Limits": the engine learns a mode changed from outside
		// at the next Open or Stat of a handle; a write after that clears
		// setuid again.
		e := newEngine(t, Options{})
		path := filepath.Join(t.TempDir(), "f")
		writeHost(t, path, make([]byte, 8192))
		f := openFile(t, e, path, os.O_RDWR)
		// The page is cached, so the write below stays in the cache: the
		// kernel, which drops setuid on its own writes, sees none.
		if _, err := f.ReadAt(make([]byte, 4096), 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Chmod(path, 0o4755); err != nil {
			t.Fatal(err)
		}
		if fi, err := f.Stat(); err != nil || fi.Mode()&fs.ModeSetuid == 0 {
			t.Fatalf("Stat after chmod 04755 from outside: %v, %v; want setuid", fi, err)
		}
		if _, err := f.WriteAt([]byte("x"), 100); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		if fi.Mode()&fs.ModeSetuid != 0 {
			t.Fatalf("setuid set from outside, then Stat and a write: mode %v, want setuid cleared", fi.Mode())
		}
		cleared++
	})
	fig.Set("mode_checks", int64(checked))
	fig.Set("cleared_as_expected", int64(cleared))
	fig.Set("kept_as_expected", int64(checked-cleared))
}

// rowS3 runs serveStats, listenStatsRefuses and limitConnCloseOnce, and
// adds: another user cannot connect to the socket (a thread of this
// process takes uid and gid 65534 for one connect, when run as root; as
// a control the same connect succeeds once the socket is made 0666); a
// symlink planted at the path pointing to a directory is refused and
// nothing is created in that directory; a symlink swapped in for the
// live socket is removed at Close, its target untouched; 16 slow clients
// that never finish their request hold every slot, so the 17th client is
// not served until the read timeout drops them, and then it is; 64
// clients at once are all answered; an oversized request header is
// refused with 431.
func rowS3(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	// The slow clients wait for the server's read timeout: start them
	// first and collect them at the end.
	bounded := s3Bounded(t)
	var answered, refused, closedTwice int
	t.Run("serve", func(t *testing.T) { answered = serveStats(t) })
	t.Run("refuses", func(t *testing.T) { refused = listenStatsRefuses(t) })
	t.Run("close once", func(t *testing.T) { closedTwice = limitConnCloseOnce(t) })
	var otherUser, symlinks int64
	t.Run("owner only", func(t *testing.T) { otherUser = s3OwnerOnly(t) })
	t.Run("symlinks", func(t *testing.T) { symlinks = s3Symlinks(t) })
	b := bounded()
	fig.Set("requests_answered", int64(answered)+b.answered)
	fig.Set("planted_paths_refused", int64(refused)+symlinks)
	fig.Set("other_user_connects_refused", otherUser)
	fig.Set("slow_clients_dropped", b.dropped)
	fig.Set("blocked_client_wait_ms", b.waited.Milliseconds())
	fig.Set("oversized_requests_refused", b.oversized)
	fig.Set("racing_conn_closes", int64(closedTwice))
}

// connectAs connects to the Unix socket at path from a thread running
// with the given uid and gid (raw setresuid/setresgid change only the
// calling thread, locked to this goroutine; if they cannot be restored,
// the thread is not unlocked and ends with the goroutine).
func connectAs(path string, uid, gid int) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		keep := ^uintptr(0)
		egid, euid := uintptr(os.Getegid()), uintptr(os.Geteuid())
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, keep, uintptr(gid), keep); e != 0 {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("setresgid: %w", e)
			return
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(uid), keep); e != 0 {
			if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, keep, egid, keep); e == 0 {
				runtime.UnlockOSThread()
			}
			done <- fmt.Errorf("setresuid: %w", e)
			return
		}
		var err error
		fd, serr := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if serr != nil {
			err = serr
		} else {
			err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
			unix.Close(fd)
		}
		_, _, e1 := unix.RawSyscall(unix.SYS_SETRESUID, keep, euid, keep)
		_, _, e2 := unix.RawSyscall(unix.SYS_SETRESGID, keep, egid, keep)
		if e1 == 0 && e2 == 0 {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// s3OwnerOnly returns the connects by another user refused.
func s3OwnerOnly(t *testing.T) int64 {
	if os.Geteuid() != 0 {
		t.Skip("needs root to act as another user")
	}
	// A directory others may enter (and not write), so that only the
	// socket's own mode stands in their way.
	dir, err := os.MkdirTemp("", "ringfs-s3-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "stats.sock")
	l, err := ListenStats(sock)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Options{Mode: Exclusive, CacheSize: fsxTinyCache})
	served := make(chan error, 1)
	go func() { served <- e.ServeStats(l) }()
	const nobody = 65534
	if err := connectAs(sock, nobody, nobody); !errors.Is(err, syscall.EACCES) {
		t.Fatalf("uid %d connecting to the 0600 socket: %v, want EACCES", nobody, err)
	}
	// The control: with the mode opened, the same connect works, so the
	// refusal came from the mode.
	if err := os.Chmod(sock, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := connectAs(sock, nobody, nobody); err != nil {
		t.Fatalf("uid %d connecting to the socket made 0666: %v (the control)", nobody, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	var s Stats
	getJSON(t, unixClient(sock), "http://ringfs/stats", &s)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-served; err != nil {
		t.Fatalf("ServeStats: %v", err)
	}
	t.Logf("uid %d refused (EACCES) by the socket's mode 0600; admitted with 0666 (control); the owner served", nobody)
	return 1
}

// s3Symlinks returns the planted symlinks refused or not followed.
func s3Symlinks(t *testing.T) int64 {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// A symlink to a directory at the path.
	target := filepath.Join(dir, "target-dir")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "dir.sock")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if l, err := ListenStats(link); err == nil {
		l.Close()
		t.Fatalf("ListenStats on a symlink to a directory succeeded")
	} else {
		wantPathErr(t, "ListenStats on a symlink to a directory", err, syscall.ELOOP)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Fatalf("ListenStats created %d entries in a planted symlink's target directory", len(ents))
	}
	// A symlink swapped in for the live socket: Close removes the link,
	// never its target.
	sock := filepath.Join(dir, "live.sock")
	l, err := ListenStats(sock)
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	writeHost(t, victim, []byte("keep"))
	if err := os.Remove(sock); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, sock); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if got := string(readHost(t, victim)); got != "keep" {
		t.Fatalf("the target of a symlink swapped in for the socket changed: %q", got)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the swapped-in symlink: %v, want it removed", err)
	}
	t.Logf("symlink to a directory refused (ELOOP), nothing made in it; a symlink swapped in for the socket removed at Close, its target kept")
	return 2
}

type s3Result struct {
	answered, dropped, oversized int64
	waited                       time.Duration
}

// s3Bounded starts a server and its slow clients, and returns a function
// that waits for them and checks what happened.
func s3Bounded(t *testing.T) func() s3Result {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "stats.sock")
	l, err := ListenStats(sock)
	if err != nil {
		t.Fatal(err)
	}
	e := newEngine(t, Options{Mode: Exclusive, CacheSize: fsxTinyCache})
	served := make(chan error, 1)
	go func() { served <- e.ServeStats(l) }()
	c := unixClient(sock)
	var r s3Result
	// Many at once: all answered.
	var wg sync.WaitGroup
	var bad atomic.Value
	var ok atomic.Int64
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Get("http://ringfs/stats")
			if err != nil {
				bad.CompareAndSwap(nil, err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				bad.CompareAndSwap(nil, errors.New(resp.Status))
				return
			}
			ok.Add(1)
		}()
	}
	wg.Wait()
	if err, _ := bad.Load().(error); err != nil {
		t.Fatalf("64 clients at once: %v", err)
	}
	r.answered = ok.Load()
	// An oversized header.
	req, _ := http.NewRequest("GET", "http://ringfs/stats", nil)
	req.Header.Set("X-Pad", strings.Repeat("a", 4*statsMaxHeader))
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversized header: %v, %v; want 431", resp, err)
	} else {
		resp.Body.Close()
		r.oversized++
	}
	// Slow clients take every slot: each sends part of a request and
	// stalls. The server's read timeout for each starts after start.
	start := time.Now()
	held := make([]net.Conn, statsMaxConns)
	for i := range held {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write([]byte("GET /stats HTTP/1.1\r\nHost: ringfs\r\n")); err != nil {
			t.Fatal(err)
		}
		held[i] = conn
	}
	type answer struct {
		at  time.Time
		err error
	}
	blocked := make(chan answer, 1)
	go func() {
		slow := unixClient(sock)
		slow.Timeout = statsReadTimeout + 20*time.Second
		resp, err := slow.Get("http://ringfs/stats")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		blocked <- answer{time.Now(), err}
	}()
	drops := make(chan time.Duration, len(held))
	for _, conn := range held {
		go func() {
			conn.SetReadDeadline(time.Now().Add(statsReadTimeout + 20*time.Second))
			io.Copy(io.Discard, conn) // until the server drops it
			drops <- time.Since(start)
			conn.Close()
		}()
	}
	return func() s3Result {
		t.Helper()
		select {
		case a := <-blocked:
			if a.err != nil {
				t.Fatalf("the client behind the slow ones: %v", a.err)
			}
			r.waited = a.at.Sub(start)
		case <-time.After(statsReadTimeout + 30*time.Second):
			t.Fatalf("the client behind the slow ones was never answered")
		}
		for range held {
			d := <-drops
			if d > statsReadTimeout+10*time.Second {
				t.Fatalf("a slow client was held %v, past the read timeout %v", d, statsReadTimeout)
			}
			r.dropped++
		}
		// Served only once the slow clients were dropped: not before the
		// read timeout (less the timers' slack).
		if r.waited < statsReadTimeout-250*time.Millisecond {
			t.Fatalf("the 17th client was answered after %v, while %d slow clients held every slot", r.waited, len(held))
		}
		r.answered++
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-served; err != nil {
			t.Fatalf("ServeStats: %v", err)
		}
		t.Logf("64 clients at once answered; 431 for an oversized header; %d slow clients held every slot and were dropped by the read timeout; the client behind them answered after %v",
			r.dropped, r.waited.Round(time.Millisecond))
		return r
	}
}

// rowS5: per caching configuration (tiny caches, so that every frame is
// reused), a junk file of 0xAA is written, synced and read through the
// cache before every step, so that the frames the next step gets last
// held junk; the steps read and change other files whose bytes never
// include 0xAA: sparse files, partial EOF pages of sizes 1..3*4096+7,
// writes past the end leaving gaps in the EOF page, truncations down
// into a page and up again, punches, allocations, Submit batches, and
// the EOF page through a Mapping. Every byte read (and every byte of a
// read buffer past what a short read returned) is checked: no 0xAA.
func rowS5(t *testing.T, fig *Figures) {
	rowOutcome(t, fig)
	checkLeaks(t)
	configs := []fwConfig{
		{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache}},
		{"exclusive/tiny/ra=4KiB", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Readahead: 4096}},
		{"exclusive/tiny/psync", Options{Mode: Exclusive, CacheSize: fsxTinyCache, Backend: "psync"}},
		{"exclusive/tiny/directio", Options{Mode: Exclusive, CacheSize: fsxTinyCache, DirectIO: true}},
		{"writethrough/tiny", Options{Mode: Writethrough, CacheSize: fsxTinyCache}},
	}
	var checked, leaked, steps, recycled int64
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			dir := relDir(t)
			if cfg.opts.DirectIO {
				dir = t.TempDir() // a filesystem with O_DIRECT, so fills are direct
			}
			s := &s5State{t: t}
			defer func() { // also when the subtest fails
				checked += s.checked
				leaked += s.leaked
				steps += s.steps
				recycled += s.recycled
			}()
			s5Run(s, cfg.opts, dir)
		})
	}
	fig.Set("configs", int64(len(configs)))
	fig.Set("steps", steps)
	fig.Set("frames_recycled", recycled)
	fig.Set("bytes_checked", checked)
	fig.Set("junk_bytes_seen", leaked)
}

type s5State struct {
	t    *testing.T
	e    *Engine
	dir  string
	junk *File

	checked, leaked, steps, recycled int64
}

const s5Junk = 0xaa

// s5Data returns n bytes of pattern with no junk byte.
func s5Data(n int, tag uint64) []byte {
	p := pattern(n, 19, tag)
	for i := range p {
		if p[i] == s5Junk {
			p[i] = s5Junk + 1
		}
	}
	return p
}

func s5Run(s *s5State, opts Options, dir string) {
	t := s.t
	s.e, s.dir = newEngine(t, opts), dir
	junkPath := filepath.Join(dir, "junk")
	writeHost(t, junkPath, nil)
	s.junk = openFile(t, s.e, junkPath, os.O_RDWR)
	junk := bytes.Repeat([]byte{s5Junk}, 3*int(fsxTinyCache))
	if _, err := s.junk.WriteAt(junk, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.junk.Sync(); err != nil {
		t.Fatal(err)
	}
	before := s.e.Stats().Cache
	// Sparse: data pages among holes.
	s.step("sparse", func(f *File, m []byte) []byte {
		return m
	}, func(path string) []byte {
		m := make([]byte, 64<<10)
		copy(m[8<<10:], s5Data(4096, 1))
		copy(m[40<<10+100:], s5Data(300, 2))
		writeHost(t, path, m[:40<<10+400])
		if err := os.Truncate(path, int64(len(m))); err != nil {
			t.Fatal(err)
		}
		return m
	})
	// Partial EOF pages, then extended: the tail of the old EOF page must
	// read zero.
	for _, size := range []int{1, 100, 4095, 4097, 3*4096 + 7} {
		s.step(fmt.Sprintf("EOF page of %d bytes, extended", size), func(f *File, m []byte) []byte {
			if err := f.Truncate(int64(size + 5000)); err != nil {
				t.Fatal(err)
			}
			return append(m, make([]byte, 5000)...)
		}, func(path string) []byte {
			m := s5Data(size, uint64(size))
			writeHost(t, path, m)
			return m
		})
	}
	s.step("writes past the end, gaps in the EOF page", func(f *File, m []byte) []byte {
		for _, off := range []int64{3000, 9000, 4096*5 + 1} {
			w := s5Data(10, uint64(off))
			if _, err := f.WriteAt(w, off); err != nil {
				t.Fatal(err)
			}
			m = modelWrite(m, w, off)
		}
		return m
	}, func(path string) []byte {
		m := s5Data(100, 3)
		writeHost(t, path, m)
		return m
	})
	for _, recycle := range []bool{false, true} {
		s.step(fmt.Sprintf("truncated into a page and extended (recycled between: %v)", recycle), func(f *File, m []byte) []byte {
			if err := f.Truncate(4096 + 50); err != nil {
				t.Fatal(err)
			}
			if recycle {
				s.recycle() // the frame of the cut page goes and comes back
				s.verify("truncated into a page", f, m[:4096+50])
			}
			if err := f.Truncate(5 * 4096); err != nil {
				t.Fatal(err)
			}
			m = append(m[:4096+50], make([]byte, 5*4096-(4096+50))...)
			return m
		}, func(path string) []byte {
			m := s5Data(5*4096, 4)
			writeHost(t, path, m)
			return m
		})
	}
	s.step("punched", func(f *File, m []byte) []byte {
		if err := f.Allocate(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096+10, 2*4096-20); err != nil {
			t.Fatal(err)
		}
		clear(m[4096+10 : 3*4096-10])
		return m
	}, func(path string) []byte {
		m := s5Data(5*4096, 5)
		writeHost(t, path, m)
		return m
	})
	s.step("allocated past the end", func(f *File, m []byte) []byte {
		if err := f.Allocate(0, int64(len(m)), 3*4096); err != nil {
			t.Fatal(err)
		}
		return append(m, make([]byte, 3*4096)...)
	}, func(path string) []byte {
		m := s5Data(4096+33, 6)
		writeHost(t, path, m)
		return m
	})
	s.step("new file, sub-page writes", func(f *File, m []byte) []byte {
		for _, off := range []int64{5000, 20000, 20010} {
			w := s5Data(7, uint64(off))
			if _, err := f.WriteAt(w, off); err != nil {
				t.Fatal(err)
			}
			m = modelWrite(m, w, off)
		}
		return m
	}, func(path string) []byte {
		writeHost(t, path, nil)
		return nil
	})
	// The junk file closed: its frames go back to the free list.
	if err := s.junk.Close(); err != nil {
		t.Fatal(err)
	}
	s.junk = openFile(t, s.e, junkPath, os.O_RDWR)
	s.step("after the junk file closed", func(f *File, m []byte) []byte { return m }, func(path string) []byte {
		m := make([]byte, 6*4096+3)
		copy(m[4096:], s5Data(4096, 7))
		writeHost(t, path, m[:2*4096])
		if err := os.Truncate(path, int64(len(m))); err != nil {
			t.Fatal(err)
		}
		return m
	})
	s.recycled = int64(s.e.Stats().Cache.Sub(before).Evictions)
	if s.recycled == 0 {
		t.Fatalf("no frame was evicted: the junk did not cycle through the cache")
	}
	t.Logf("%d steps, %d bytes checked, %d frames recycled, no 0xAA", s.steps, s.checked, s.recycled)
}

// recycle reads the junk file through the cache: every frame ends up
// having held 0xAA.
func (s *s5State) recycle() {
	s.t.Helper()
	p := make([]byte, 3*fsxTinyCache)
	if n, err := s.junk.ReadAt(p, 0); n != len(p) || err != nil || bytes.IndexByte(p, 0) >= 0 {
		s.t.Fatalf("reading the junk: %d, %v", n, err)
	}
}

// step creates a file (create), recycles, checks it (filling frames
// that last held junk), applies do to the pages just filled, checks the
// file, recycles and checks it again (filled anew).
func (s *s5State) step(name string, do func(f *File, m []byte) []byte, create func(path string) []byte) {
	s.t.Helper()
	path := filepath.Join(s.dir, fmt.Sprintf("s5-%d", s.steps))
	m := create(path)
	s.recycle()
	f := openFile(s.t, s.e, path, os.O_RDWR)
	s.verify(name+": before", f, m)
	m = do(f, m)
	s.verify(name, f, m)
	s.recycle()
	s.verify(name+": filled again", f, m)
	if err := f.Sync(); err != nil {
		s.t.Fatal(err)
	}
	sameBytes(s.t, name+": host", readHost(s.t, path), m)
	if err := f.Close(); err != nil {
		s.t.Fatal(err)
	}
	s.steps++
}

// verify reads f whole, page by page with odd lengths, through Submit
// and its EOF page through a Mapping, and checks every byte against m;
// read buffers start zeroed, and their bytes past a short read must
// stay free of junk too.
func (s *s5State) verify(what string, f *File, m []byte) {
	s.t.Helper()
	look := func(how string, p []byte, n int, err error, off int64) {
		s.t.Helper()
		want := m[min(off, int64(len(m))):min(off+int64(len(p)), int64(len(m)))]
		if k := int64(bytes.Count(p, []byte{s5Junk})); k > 0 {
			s.leaked += k
			s.t.Fatalf("%s: %s at %d: %d bytes of another file's junk (0x%x) at %d", what, how, off, k, s5Junk, off+int64(bytes.IndexByte(p, s5Junk)))
		}
		if n != len(want) || !bytes.Equal(p[:n], want) || (n < len(p) && err != io.EOF) || (n == len(p) && err != nil) {
			s.t.Fatalf("%s: %s of %d bytes at %d: %d, %v; want %d bytes, first difference at %d", what, how, len(p), off, n, err, len(want), diffAt(p[:n], want))
		}
		s.checked += int64(len(p))
	}
	p := make([]byte, len(m)+8192)
	n, err := f.ReadAt(p, 0)
	look("whole read", p, n, err, 0)
	for off := int64(0); off < int64(len(m)); off += 4096 {
		q := make([]byte, 4096+int(off%7))
		n, err := f.ReadAt(q, off)
		look("page read", q, n, err, off)
	}
	ops := make([]Op, 0, 8)
	for off := int64(0); off < int64(len(m))+4096; off += 4096 {
		ops = append(ops, Op{File: f, Buf: make([]byte, 4096), Off: off})
	}
	s.e.Submit(ops)
	for _, op := range ops {
		look("Submit read", op.Buf, op.N, op.Err, op.Off)
	}
	if len(m) > 0 {
		eofPage := int64(len(m)-1) &^ 4095
		// The whole EOF page mapped: past the size it reads zero.
		mp, err := f.Map(eofPage, 4096, false)
		if err != nil {
			s.t.Fatal(err)
		}
		q := make([]byte, 4096)
		if n, err := mp.ReadAt(q, 0); n != 4096 || err != nil {
			s.t.Fatalf("%s: the EOF page through a Mapping: %d, %v", what, n, err)
		}
		if err := mp.Close(); err != nil {
			s.t.Fatal(err)
		}
		want := append(bytes.Clone(m[eofPage:]), make([]byte, 4096-(int64(len(m))-eofPage))...)
		if k := int64(bytes.Count(q, []byte{s5Junk})); k > 0 || !bytes.Equal(q, want) {
			s.leaked += k
			s.t.Fatalf("%s: the EOF page through a Mapping: %d junk bytes, first difference at %d", what, k, eofPage+int64(diffAt(q, want)))
		}
		s.checked += 4096
	}
}
