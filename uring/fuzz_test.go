//go:build linux

package uring

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/internal/fuzzbytes"
)

// FuzzMetamorphic decodes batches of operations from the input and runs
// them through every backend and the model of TestMetamorphic, which must
// all agree. Where TestMetamorphic draws batches at random, the fuzzer
// steers them towards new code paths, and the decoder makes the offsets
// that matter (EOF, block and page boundaries) easy to hit. `go test` runs
// the seed corpus in testdata/fuzz/FuzzMetamorphic.
//
// On failure the op log is printed and written to a file that
// RINGFS_REPLAY replays through TestMetamorphic.
//
// One input takes a millisecond or more (it sets up every backend), and
// go test minimizes each new interesting input by trying up to
// quadratically many shorter ones; with the default -fuzzminimizetime of
// 60s that minimizing takes most of a run, and the execs of one that runs
// out of time are not counted. -fuzzminimizetime=100x keeps it fuzzing.
func FuzzMetamorphic(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		batches := decodeBatches(data)
		if len(batches) == 0 {
			return
		}
		msg, at := runMetamorphic(t, batches)
		if msg == "" {
			return
		}
		text := opLog(batches)
		path := filepath.Join(os.TempDir(), fmt.Sprintf("ringfs-uring-fuzz-%d.log", time.Now().UnixNano()))
		if err := os.WriteFile(path, []byte("# FuzzMetamorphic\n"+text), 0o644); err != nil {
			t.Logf("cannot write the op log: %v", err)
		}
		t.Fatalf("at op %d: %s\nreplay: RINGFS_REPLAY=%s go test -run TestMetamorphic ./uring/\nop log:\n%s",
			at, msg, path, text)
	})
}

// fuzzMaxOps bounds the operations decoded from one input, and
// fuzzMaxSyncs the ones among them that wait for the disk (fsync,
// sync_file_range, RWF_DSYNC writes), each of which can take tens of
// milliseconds; so one input runs in well under a second.
const (
	fuzzMaxOps   = 300
	fuzzMaxSyncs = 8
)

// isSync reports whether m waits for the disk.
func isSync(m mop) bool {
	return m.op == "fsync" || m.op == "sfr" || m.flags == unix.RWF_DSYNC && isWrite(m)
}

// The values the decoder picks from; they are the ones genBatches uses.
var (
	fuzzReadOps    = [...]string{"read", "readv", "read_fixed"}
	fuzzWriteOps   = [...]string{"write", "writev", "write_fixed"}
	fuzzFallocates = [...]uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
		unix.FALLOC_FL_ZERO_RANGE, unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE}
	fuzzSfrFlags = [...]uint32{unix.SYNC_FILE_RANGE_WRITE, 7}
)

// fuzzReader decodes a fuzz input (fuzzbytes.Reader: zeros past its
// end) into the positions and lengths of requests.
type fuzzReader struct{ *fuzzbytes.Reader }

// pos returns an offset in [0, hi]. The low two bits of its first byte
// choose the encoding, so that one small mutation moves an offset onto a
// page boundary or next to EOF, where a backend's edge cases are:
//
//	0: a page number, in the rest of the byte
//	1: size (EOF) plus a signed 16-bit distance in the next two bytes
//	2: a multiple of 512 chosen by the next two bytes
//	3: any offset, chosen by the next three bytes
func (r *fuzzReader) pos(hi, size int64) int64 {
	m := r.Byte()
	var v int64
	switch m & 3 {
	case 0:
		v = int64(m>>2) * 4096
	case 1:
		v = size + int64(int16(r.Uint(2)))
	case 2:
		v = int64(r.Uint(2)) % (hi/512 + 1) * 512
	case 3:
		v = int64(r.Uint(3)) % (hi + 1)
	}
	return min(max(v, 0), hi)
}

// length returns a length in [lo, hi], encoded like pos:
//
//	0: lo plus the rest of the byte (0 to 63)
//	1: whole pages, their number in the rest of the byte
//	2: a page multiple minus one (bit 2 clear) or plus one (bit 2 set),
//	   the number of pages in the top five bits
//	3: any length, chosen by the next two bytes
func (r *fuzzReader) length(lo, hi int64) int64 {
	m := r.Byte()
	var v int64
	switch m & 3 {
	case 0:
		v = lo + int64(m>>2)
	case 1:
		v = int64(m>>2) * 4096
	case 2:
		v = int64(m>>3)*4096 + int64(m>>2&1)*2 - 1
	case 3:
		v = lo + int64(r.Uint(2))%(hi-lo+1)
	}
	return min(max(v, lo), hi)
}

// decodeBatches turns any input into batches that follow the rules of
// genBatches, in the same value ranges, so that a mismatch is a bug in a
// backend and never in the batches. Each batch starts with a byte h: its
// low three bits choose reads (0-2), writes to disjoint ranges (3-5) or
// one other operation (6-7), and 1 + (h>>3)%metaMaxBatch is the number of
// reads or writes. Every read and write then takes one byte for the
// operation (its value mod 3; a write whose top three bits are set carries
// RWF_DSYNC), then an offset (pos) and a length. A single operation takes
// one byte s: s%5 picks fallocate, fsync, sync_file_range, nop or
// truncate, and s/5 its flags; then its offset and length as needed.
//
// Decoding stops at the end of the input or at fuzzMaxOps operations.
// Past fuzzMaxSyncs operations that wait for the disk, a write decodes
// without RWF_DSYNC and an fsync or sync_file_range as a nop.
// Offsets past EOF are bounded as in genBatches; fallocate's offset is also
// kept at most metaMaxFile, so that no file grows past
// metaMaxFile+metaMaxIO.
func decodeBatches(data []byte) [][]mop {
	r := fuzzReader{fuzzbytes.New(data)}
	var out [][]mop
	var size int64
	total, syncs := 0, 0
	for r.Left() > 0 && total < fuzzMaxOps {
		h := r.Byte()
		count := min(1+int(h>>3)%metaMaxBatch, fuzzMaxOps-total)
		var b []mop
		switch h & 7 {
		case 0, 1, 2:
			// An input that ends inside a batch ends the batch there.
			for i := 0; i < count && (i == 0 || r.Left() > 0); i++ {
				op := fuzzReadOps[r.Byte()%3]
				off := r.pos(size+3*4096, size)
				n := r.length(1, metaMaxIO)
				b = append(b, mop{op: op, off: off, n: n, size: size})
			}
		case 3, 4, 5:
			var used [][2]int64
			hi := min(size+2*4096, metaMaxFile) - 1
			for i := 0; i < count && (i == 0 || r.Left() > 0); i++ {
				o := r.Byte()
				off := r.pos(hi, size)
				n := r.length(1, metaMaxIO)
				// A write that overlaps an earlier one of the batch is
				// dropped, as genBatches does; the first one never is.
				if overlaps(used, off, off+n) {
					continue
				}
				used = append(used, [2]int64{off, off + n})
				var flags uint32
				if o>>5 == 7 && syncs < fuzzMaxSyncs {
					syncs++
					flags = unix.RWF_DSYNC
				}
				b = append(b, mop{op: fuzzWriteOps[o%3], off: off, n: n, size: size, flags: flags})
			}
		default:
			s := r.Byte()
			p := s / 5
			m := mop{size: size}
			switch s % 5 {
			case 0:
				m.op = "fallocate"
				m.flags = fuzzFallocates[p%5]
				m.off = r.pos(min(size+2*4096, metaMaxFile), size)
				m.n = r.length(0, 3*4096-1) // 0 is EINVAL, checked like any result
			case 1:
				m.op = "fsync"
				m.flags = uint32(p & 1) // FsyncDatasync or not
				if p&2 != 0 {
					m.off = r.pos(size, size)
					m.n = r.length(0, 1<<16-1)
				}
			case 2:
				m.op = "sfr"
				m.flags = fuzzSfrFlags[p&1]
				m.off = r.pos(size, size)
				m.n = r.length(0, 1<<16-1)
			case 3:
				m.op = "nop"
			case 4:
				m.op = "truncate"
				m.n = r.pos(metaMaxFile-1, size)
			}
			if isSync(m) {
				if syncs == fuzzMaxSyncs {
					m = mop{op: "nop", size: size}
				} else {
					syncs++
				}
			}
			b = append(b, m)
		}
		for _, m := range b {
			size = modelSize(m, size)
		}
		out = append(out, b)
		total += len(b)
	}
	return out
}

// opLog formats batches as writeLog does, for parseLog to read back.
func opLog(batches [][]mop) string {
	var sb strings.Builder
	for _, b := range batches {
		for _, m := range b {
			sb.WriteString(m.String() + "\n")
		}
		sb.WriteString("submit\n")
	}
	return sb.String()
}

// validateBatches checks the rules runMetamorphic relies on and genBatches
// follows: a batch holds 1 to metaMaxBatch operations, either only reads,
// or only writes to pairwise disjoint ranges, or exactly one other
// operation; every size column is the model's size before the batch; and
// every offset, length and flags value is one genBatches could produce.
func validateBatches(batches [][]mop) error {
	var size int64
	for bi, b := range batches {
		if len(b) == 0 || len(b) > metaMaxBatch {
			return fmt.Errorf("batch %d holds %d operations", bi, len(b))
		}
		reads, writes, fixed := 0, 0, int64(0)
		for _, m := range b {
			if m.size != size {
				return fmt.Errorf("batch %d: %q has size %d, the model %d", bi, m, m.size, size)
			}
			switch m.op {
			case "read", "readv", "read_fixed":
				reads++
			case "write", "writev", "write_fixed":
				writes++
			}
			if m.op == "read_fixed" || m.op == "write_fixed" {
				fixed += m.n + 13 // as metaRunner.run lays them out
			}
		}
		if reads > 0 && reads != len(b) || writes > 0 && writes != len(b) || reads+writes == 0 && len(b) != 1 {
			return fmt.Errorf("batch %d is neither only reads, only writes, nor one other operation: %v", bi, b)
		}
		if fixed > 1<<20 {
			return fmt.Errorf("batch %d needs %d bytes of the registered buffer", bi, fixed)
		}
		for i, m := range b {
			if err := validateMop(m, size); err != nil {
				return fmt.Errorf("batch %d: %q: %v", bi, m, err)
			}
			for _, o := range b[:i] {
				if writes > 0 && m.off < o.off+o.n && o.off < m.off+m.n {
					return fmt.Errorf("batch %d: %q overlaps %q", bi, m, o)
				}
			}
		}
		for _, m := range b {
			size = modelSize(m, size)
		}
	}
	return nil
}

// validateMop checks the offset, length and flags of m, run on a file of
// the given size, against the ranges of genBatches. It spells out the
// flags values rather than use the decoder's tables, so that a wrong
// entry there fails it.
func validateMop(m mop, size int64) error {
	in := func(v, lo, hi int64) bool { return lo <= v && v <= hi }
	ok := true
	switch m.op {
	case "read", "readv", "read_fixed":
		ok = m.flags == 0 && in(m.off, 0, size+3*4096) && in(m.n, 1, metaMaxIO)
	case "write", "writev", "write_fixed":
		ok = (m.flags == 0 || m.flags == unix.RWF_DSYNC) &&
			in(m.off, 0, max(1, min(size+2*4096, metaMaxFile))-1) && in(m.n, 1, metaMaxIO)
	case "fallocate":
		ok = slices.Contains([]uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
			unix.FALLOC_FL_ZERO_RANGE, unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE}, m.flags) &&
			in(m.off, 0, size+2*4096) && in(m.n, 0, 3*4096-1)
	case "fsync":
		ok = m.flags <= 1 && (m.off == 0 && m.n == 0 || in(m.off, 0, size) && in(m.n, 0, 1<<16-1))
	case "sfr":
		ok = (m.flags == unix.SYNC_FILE_RANGE_WRITE || m.flags == 7) && in(m.off, 0, size) && in(m.n, 0, 1<<16-1)
	case "nop":
		ok = m.off == 0 && m.n == 0 && m.flags == 0
	case "truncate":
		ok = m.off == 0 && m.flags == 0 && in(m.n, 0, metaMaxFile-1)
	default:
		return fmt.Errorf("unknown operation")
	}
	if !ok {
		return fmt.Errorf("offset, length or flags out of range for size %d", size)
	}
	return nil
}

// fuzzSeeds says what each seed in testdata/fuzz/FuzzMetamorphic must
// decode to, so that a change to the decoder cannot silently turn a seed
// into something its name no longer describes.
var fuzzSeeds = map[string]func([][]mop) bool{
	"read-past-eof": func(bs [][]mop) bool {
		return anyMop(bs, func(m mop) bool { return isRead(m) && m.off >= m.size && m.size > 0 }) &&
			anyMop(bs, func(m mop) bool { return isRead(m) && m.off < m.size && m.off+m.n > m.size })
	},
	"disjoint-writes-then-truncate": func(bs [][]mop) bool {
		for i := 1; i < len(bs); i++ {
			if len(bs[i-1]) >= 2 && isWrite(bs[i-1][0]) && bs[i][0].op == "truncate" && bs[i][0].n < bs[i][0].size {
				return true
			}
		}
		return false
	},
	"punch-hole-then-read": func(bs [][]mop) bool {
		for i, b := range bs {
			p := b[0]
			if p.op != "fallocate" || p.flags&unix.FALLOC_FL_PUNCH_HOLE == 0 || p.n == 0 || p.off >= p.size {
				continue
			}
			if anyMop(bs[i+1:], func(m mop) bool { return isRead(m) && m.off < p.off+p.n && p.off < m.off+m.n }) {
				return true
			}
		}
		return false
	},
	"dsync-writes": func(bs [][]mop) bool {
		return anyMop(bs, func(m mop) bool { return isWrite(m) && m.flags == unix.RWF_DSYNC }) &&
			anyMop(bs, func(m mop) bool { return isWrite(m) && m.flags == 0 })
	},
	"fsync-range": func(bs [][]mop) bool {
		return anyMop(bs, func(m mop) bool { return m.op == "fsync" && m.n > 0 && m.flags == FsyncDatasync }) &&
			anyMop(bs, func(m mop) bool { return m.op == "sfr" })
	},
	"zero-range-extend": func(bs [][]mop) bool {
		return anyMop(bs, func(m mop) bool {
			return m.op == "fallocate" && m.flags == unix.FALLOC_FL_ZERO_RANGE && m.off < m.size && m.off+m.n > m.size
		})
	},
	"fixed-buffers-full-batch": func(bs [][]mop) bool {
		full := func(op string) bool {
			return slices.ContainsFunc(bs, func(b []mop) bool {
				return len(b) == metaMaxBatch && !slices.ContainsFunc(b, func(m mop) bool { return m.op != op })
			})
		}
		return full("write_fixed") && full("read_fixed")
	},
}

func isRead(m mop) bool  { return strings.HasPrefix(m.op, "read") }
func isWrite(m mop) bool { return strings.HasPrefix(m.op, "write") }

func anyMop(bs [][]mop, f func(mop) bool) bool {
	return slices.ContainsFunc(bs, func(b []mop) bool { return slices.ContainsFunc(b, f) })
}

// readSeed returns the input stored in a corpus file of the form
// `go test fuzz v1` followed by one []byte("...") line.
func readSeed(t *testing.T, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(text)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a go test fuzz v1 file with one value", path)
	}
	q, ok1 := strings.CutPrefix(lines[1], "[]byte(")
	q, ok2 := strings.CutSuffix(q, ")")
	if !ok1 || !ok2 {
		t.Fatalf("%s: the value is not a []byte", path)
	}
	s, err := strconv.Unquote(q)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s)
}

// TestDecodeBatchesValid checks that any input decodes to batches that
// follow the rules, so that FuzzMetamorphic reports only backend bugs;
// that the decoder reaches every operation and flags value; that the
// printed log replays the decoded batches; and that each seed exercises
// what its name says.
func TestDecodeBatchesValid(t *testing.T) {
	// The rules are those of genBatches: its batches pass.
	for seed := range uint64(5) {
		if err := validateBatches(genBatches(seed, 3000)); err != nil {
			t.Fatalf("genBatches(%d): %v", seed, err)
		}
	}
	// And the check is real: logs that break a rule fail it.
	for _, bad := range []string{
		"write 0 10 0 0\nwrite 5 10 0 0\nsubmit\n",        // overlapping writes
		"write 0 10 0 0\nread 0 10 0 0\nsubmit\n",         // reads and writes
		"nop 0 0 0 0\nnop 0 0 0 0\nsubmit\n",              // two single operations
		"write 0 10 0 0\nsubmit\nread 0 10 0 0\nsubmit\n", // a stale size column
		"read 0 0 0 0\nsubmit\n",                          // an empty read
		"write 8192 1 0 0\nsubmit\n",                      // a write too far past EOF
		"write 0 24577 0 0\nsubmit\n",                     // a write longer than metaMaxIO
		"write 0 10 0 1\nsubmit\n",                        // flags no write takes
		"fallocate 0 10 0 4\nsubmit\n",                    // flags genBatches never uses
		"truncate 0 196608 0 0\nsubmit\n",                 // a truncate to metaMaxFile
		"sfr 1 10 0 2\nsubmit\n",                          // a range starting past EOF
		"fsync 0 65536 0 0\nsubmit\n",                     // a range too long
		strings.Repeat("read 0 1 0 0\n", 17) + "submit\n", // more than metaMaxBatch
	} {
		batches, err := parseLog(bad)
		if err != nil {
			t.Fatal(err)
		}
		if validateBatches(batches) == nil {
			t.Fatalf("validateBatches accepted %q", bad)
		}
	}

	seeds, err := filepath.Glob("testdata/fuzz/FuzzMetamorphic/*")
	if err != nil {
		t.Fatal(err)
	}
	for name := range fuzzSeeds {
		if !slices.Contains(seeds, filepath.Join("testdata/fuzz/FuzzMetamorphic", name)) {
			t.Fatalf("seed %s is missing", name)
		}
	}
	inputs := map[string][]byte{
		"nil":       nil,
		"one byte":  {0x03},
		"all 0x00":  make([]byte, 4096),
		"all 0xff":  []byte(strings.Repeat("\xff", 4096)),
		"all 0x06":  []byte(strings.Repeat("\x06", 4096)),
		"all 0x7b":  []byte(strings.Repeat("\x7b", 4096)),
		"truncated": {0x7b, 0x02},
	}
	// A file the fuzzer kept (named by its hash) is only checked for
	// validity below.
	for _, p := range seeds {
		inputs[p] = readSeed(t, p)
		if want := fuzzSeeds[filepath.Base(p)]; want != nil && !want(decodeBatches(inputs[p])) {
			t.Fatalf("seed %s does not decode to what its name says:\n%s", p, opLog(decodeBatches(inputs[p])))
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		b := make([]byte, rng.IntN(2048))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		inputs[fmt.Sprintf("random %d", i)] = b
	}

	// The decoder must reach every operation and flags value, a read past
	// EOF and a full batch, or the fuzzer could never try them.
	seen := map[mop]bool{}
	pastEOF, fullBatch := false, false
	for name, in := range inputs {
		batches := decodeBatches(in)
		if err := validateBatches(batches); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, opLog(batches))
		}
		if len(in) > 0 && len(batches) == 0 {
			t.Fatalf("%s: %d bytes decoded to nothing", name, len(in))
		}
		total, syncs := 0, 0
		size := int64(0)
		for _, b := range batches {
			total += len(b)
			for _, m := range b {
				seen[mop{op: m.op, flags: m.flags}] = true
				if isSync(m) {
					syncs++
				}
				pastEOF = pastEOF || isRead(m) && m.off >= m.size
				size = modelSize(m, size)
				if size > metaMaxFile+metaMaxIO {
					t.Fatalf("%s: %q grows the file to %d", name, m, size)
				}
			}
			fullBatch = fullBatch || len(b) == metaMaxBatch
		}
		if total > fuzzMaxOps || syncs > fuzzMaxSyncs {
			t.Fatalf("%s: %d operations, %d of them wait for the disk", name, total, syncs)
		}
		back, err := parseLog(opLog(batches))
		if err != nil {
			t.Fatal(err)
		}
		same := func(a, b [][]mop) bool { return slices.EqualFunc(a, b, slices.Equal) }
		if !same(back, batches) || !same(decodeBatches(in), batches) {
			t.Fatalf("%s: the log does not replay the decoded batches", name)
		}
	}
	if !pastEOF || !fullBatch {
		t.Errorf("no read past EOF (%v) or no batch of %d (%v) decoded", pastEOF, metaMaxBatch, fullBatch)
	}
	want := []mop{{op: "nop"}, {op: "truncate"}, {op: "fsync"}, {op: "fsync", flags: FsyncDatasync}}
	for _, op := range fuzzReadOps {
		want = append(want, mop{op: op})
	}
	for _, op := range fuzzWriteOps {
		want = append(want, mop{op: op}, mop{op: op, flags: unix.RWF_DSYNC})
	}
	for _, fl := range fuzzFallocates {
		want = append(want, mop{op: "fallocate", flags: fl})
	}
	for _, fl := range fuzzSfrFlags {
		want = append(want, mop{op: "sfr", flags: fl})
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no input decoded to %s with flags %d", w.op, w.flags)
		}
	}
	t.Logf("%d inputs decoded to valid batches; %d operation and flags values seen", len(inputs), len(seen))
}
