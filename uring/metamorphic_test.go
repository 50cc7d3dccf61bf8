//go:build linux

package uring

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The same random sequence of batches runs through every backend, each on
// its own file, and through an in-memory model. Every result (count,
// errno, bytes read) must match the model, and the files must end equal to
// it and to each other. A batch holds either only reads, or only writes to
// disjoint ranges, or a single other operation, so that its outcome does
// not depend on the order in which the kernel completes its requests.
//
// On failure the seed and the path of a replayable op log are printed.
// RINGFS_SEED=n reruns a seed; RINGFS_REPLAY=path replays a log; the logs
// under testdata/replay are replayed by every plain go test.

// mop is one logged operation: "op offset length size flags", where size
// is the file size the model had before the batch. A line "submit" ends a
// batch.
type mop struct {
	op    string
	off   int64
	n     int64
	size  int64
	flags uint32
}

func (m mop) String() string {
	return fmt.Sprintf("%s %d %d %d %d", m.op, m.off, m.n, m.size, m.flags)
}

// The operations of the log. truncate is not a Request: it is run with
// ftruncate on every file alike, to move EOF around.
var mopKinds = map[string]bool{
	"read": true, "readv": true, "read_fixed": true, "write": true, "writev": true, "write_fixed": true,
	"fallocate": true, "fsync": true, "sfr": true, "nop": true, "truncate": true,
}

const (
	metaMaxFile  = 192 << 10 // the generator keeps files about this small
	metaMaxIO    = 24 << 10  // largest read or write
	metaMaxBatch = 16
)

// genBatches generates batches totalling at least nops operations.
func genBatches(seed uint64, nops int) [][]mop {
	rng := rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1))
	var out [][]mop
	var size int64
	count := 0
	for count < nops {
		var b []mop
		switch k := rng.IntN(100); {
		case k < 40: // reads, anywhere around EOF
			for range 1 + rng.IntN(metaMaxBatch) {
				op := []string{"read", "readv", "read_fixed"}[rng.IntN(3)]
				b = append(b, mop{op: op, off: rng.Int64N(size + 3*4096 + 1), n: 1 + rng.Int64N(metaMaxIO), size: size})
			}
		case k < 75: // writes to disjoint ranges
			used := [][2]int64{}
			for range 1 + rng.IntN(metaMaxBatch) {
				n := 1 + rng.Int64N(metaMaxIO)
				off := rng.Int64N(max(1, min(size+2*4096, metaMaxFile)))
				if overlaps(used, off, off+n) {
					continue
				}
				used = append(used, [2]int64{off, off + n})
				op := []string{"write", "writev", "write_fixed"}[rng.IntN(3)]
				var flags uint32
				if rng.IntN(8) == 0 {
					flags = unix.RWF_DSYNC
				}
				b = append(b, mop{op: op, off: off, n: n, size: size, flags: flags})
			}
		default:
			m := mop{size: size}
			switch j := rng.IntN(9); j {
			case 0, 1:
				m.op = "fallocate"
				m.flags = []uint32{0, unix.FALLOC_FL_KEEP_SIZE, unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE,
					unix.FALLOC_FL_ZERO_RANGE, unix.FALLOC_FL_ZERO_RANGE | unix.FALLOC_FL_KEEP_SIZE}[rng.IntN(5)]
				m.off = rng.Int64N(size + 8192 + 1)
				m.n = rng.Int64N(3 * 4096) // 0 is EINVAL, logged like any result
			case 2:
				m.op = "fsync"
				m.flags = uint32(rng.IntN(2)) // FsyncDatasync or not
				if rng.IntN(2) == 0 {
					m.off, m.n = rng.Int64N(size+1), rng.Int64N(1<<16)
				}
			case 3:
				m.op = "sfr"
				m.flags = []uint32{unix.SYNC_FILE_RANGE_WRITE, 7}[rng.IntN(2)]
				m.off, m.n = rng.Int64N(size+1), rng.Int64N(1<<16)
			case 4:
				m.op = "nop"
			default:
				m.op = "truncate"
				m.n = rng.Int64N(metaMaxFile)
			}
			b = append(b, m)
		}
		// Track the size the way the model will.
		for _, m := range b {
			size = modelSize(m, size)
		}
		out = append(out, b)
		count += len(b)
	}
	return out
}

func overlaps(used [][2]int64, a, b int64) bool {
	for _, u := range used {
		if a < u[1] && u[0] < b {
			return true
		}
	}
	return false
}

// modelSize is the file size after m (errors leave it alone).
func modelSize(m mop, size int64) int64 {
	switch m.op {
	case "write", "writev", "write_fixed":
		return max(size, m.off+m.n)
	case "truncate":
		return m.n
	case "fallocate":
		if m.n > 0 && m.flags&unix.FALLOC_FL_KEEP_SIZE == 0 && m.flags&unix.FALLOC_FL_PUNCH_HOLE == 0 {
			return max(size, m.off+m.n)
		}
	}
	return size
}

// model is the truth: the bytes a file must hold.
type model struct{ data []byte }

func (md *model) resize(n int64) {
	if n <= int64(len(md.data)) {
		md.data = md.data[:n]
		return
	}
	md.data = append(md.data, make([]byte, n-int64(len(md.data)))...)
}

// apply runs m on the model; payload is the data of a write. It returns
// the result the backend must report.
func (md *model) apply(m mop, payload []byte) (int, unix.Errno) {
	size := int64(len(md.data))
	switch m.op {
	case "read", "readv", "read_fixed":
		if m.off >= size {
			return 0, 0
		}
		return int(min(m.n, size-m.off)), 0
	case "write", "writev", "write_fixed":
		md.resize(max(size, m.off+m.n))
		copy(md.data[m.off:], payload)
		return int(m.n), 0
	case "truncate":
		md.resize(m.n)
	case "fallocate":
		if m.n == 0 {
			return 0, unix.EINVAL
		}
		keep := m.flags&unix.FALLOC_FL_KEEP_SIZE != 0
		zero := m.flags&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0
		if !keep {
			md.resize(max(size, m.off+m.n))
		}
		if zero {
			end := min(m.off+m.n, int64(len(md.data)))
			for i := m.off; i < end; i++ {
				md.data[i] = 0
			}
		}
	}
	return 0, 0
}

// payloadOf is the deterministic data a write of the log carries.
func payloadOf(m mop) []byte {
	pool := dataPool()
	k := int((m.off*7919 + m.n*31) % int64(len(pool)-int(m.n)))
	return pool[k : k+int(m.n)]
}

// metaRunner runs batches on one backend and file.
type metaRunner struct {
	name   string
	be     Backend
	f      *os.File
	region []byte
}

// run submits one batch and returns each op's (N, errno) and read bytes.
func (mr *metaRunner) run(t *testing.T, batch []mop) ([]Request, [][]byte) {
	reqs := make([]Request, 0, len(batch))
	bufs := make([][]byte, len(batch))
	fd := int32(mr.f.Fd())
	cursor := 0
	for i, m := range batch {
		if m.op == "truncate" {
			if err := mr.f.Truncate(m.n); err != nil {
				t.Fatal(err)
			}
			reqs = append(reqs, Request{Op: OpNop})
			continue
		}
		r := Request{Fd: fd, Off: m.off, Flags: m.flags}
		var buf []byte
		if m.op == "read_fixed" || m.op == "write_fixed" {
			buf = mr.region[cursor : cursor+int(m.n)]
			cursor += int(m.n) + 13 // distinct and unaligned
		} else if m.op != "fallocate" && m.op != "fsync" && m.op != "sfr" && m.op != "nop" {
			buf = make([]byte, m.n)
		}
		switch m.op {
		case "write", "writev", "write_fixed":
			copy(buf, payloadOf(m))
		}
		bufs[i] = buf
		switch m.op {
		case "read":
			r.Op, r.Buf = OpRead, buf
		case "readv":
			r.Op, r.Vecs = OpReadv, splitVecs(buf)
		case "read_fixed":
			r.Op, r.Buf = OpReadFixed, buf
		case "write":
			r.Op, r.Buf = OpWrite, buf
		case "writev":
			r.Op, r.Vecs = OpWritev, splitVecs(buf)
		case "write_fixed":
			r.Op, r.Buf = OpWriteFixed, buf
		case "fallocate":
			r.Op, r.Len = OpFallocate, m.n
		case "fsync":
			r.Op, r.Len, r.Flags = OpFsync, m.n, m.flags&FsyncDatasync
		case "sfr":
			r.Op, r.Len = OpSyncFileRange, m.n
		case "nop":
			r.Op, r.Fd = OpNop, 0
		}
		reqs = append(reqs, r)
	}
	if err := mr.be.Submit(reqs); err != nil {
		t.Fatalf("%s: Submit: %v", mr.name, err)
	}
	return reqs, bufs
}

// runMetamorphic runs batches through every backend and the model;
// it returns a failure description and the op index it happened at.
func runMetamorphic(t *testing.T, batches [][]mop) (string, int) {
	if !zeroRangeSupported(t) {
		t.Skip("the temp dir's file system has no FALLOC_FL_ZERO_RANGE (tmpfs), which the model expects")
	}
	var runners []*metaRunner
	for _, name := range testBackends() {
		be := openBackend(t, name, Options{Entries: 32})
		region := mmapBuffer(t, 1<<20)
		if err := be.RegisterBuffers([][]byte{region}); err != nil {
			t.Fatal(err)
		}
		f := tempFile(t, "meta-"+name, nil, os.O_RDWR)
		runners = append(runners, &metaRunner{name: name, be: be, f: f, region: region})
	}
	var md model
	opIndex := 0
	for bi, batch := range batches {
		// The model applies writes in log order; they are disjoint, so
		// any completion order gives the same bytes.
		want := make([]struct {
			n     int
			errno unix.Errno
			data  []byte
		}, len(batch))
		for i, m := range batch {
			if int64(len(md.data)) != m.size {
				return fmt.Sprintf("batch %d: log says size %d, model has %d", bi, m.size, len(md.data)), opIndex + i
			}
		}
		for i, m := range batch {
			var payload []byte
			if strings.HasPrefix(m.op, "write") {
				payload = payloadOf(m)
			}
			want[i].n, want[i].errno = md.apply(m, payload)
			if strings.HasPrefix(m.op, "read") {
				want[i].data = []byte{}
				if want[i].n > 0 {
					want[i].data = md.data[m.off : m.off+int64(want[i].n)]
				}
			}
		}
		for _, mr := range runners {
			reqs, bufs := mr.run(t, batch)
			for i, m := range batch {
				got := reqs[i]
				if got.N != want[i].n || errnoOfErr(got.Err) != want[i].errno {
					return fmt.Sprintf("%s: op %q gave (%d, %v), model (%d, %v)",
						mr.name, m, got.N, got.Err, want[i].n, want[i].errno), opIndex + i
				}
				if want[i].data != nil && !bytes.Equal(bufs[i][:got.N], want[i].data) {
					return fmt.Sprintf("%s: op %q read wrong bytes: %s", mr.name, m,
						firstDiff(bufs[i][:got.N], want[i].data)), opIndex + i
				}
			}
		}
		opIndex += len(batch)
		if bi%200 == 199 || bi == len(batches)-1 {
			for _, mr := range runners {
				if got := fileBytes(t, mr.f); !bytes.Equal(got, md.data) {
					return fmt.Sprintf("%s: file differs from the model after op %d: %s",
						mr.name, opIndex, firstDiff(got, md.data)), opIndex
				}
			}
		}
	}
	return "", opIndex
}

// writeLog writes batches as a replayable log and returns its path.
func writeLog(t *testing.T, seed uint64, batches [][]mop) string {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("ringfs-uring-metamorphic-%d-%d.log", seed, time.Now().UnixNano()))
	var sb strings.Builder
	fmt.Fprintf(&sb, "# seed %d\n", seed)
	for _, b := range batches {
		for _, m := range b {
			sb.WriteString(m.String() + "\n")
		}
		sb.WriteString("submit\n")
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Logf("cannot write the op log: %v", err)
	}
	return path
}

// parseLog reads a log written by writeLog (or by hand).
func parseLog(text string) ([][]mop, error) {
	var out [][]mop
	var cur []mop
	sc := bufio.NewScanner(strings.NewReader(text))
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if s == "submit" {
			if len(cur) > 0 {
				out = append(out, cur)
			}
			cur = nil
			continue
		}
		f := strings.Fields(s)
		if len(f) != 5 || !mopKinds[f[0]] {
			return nil, fmt.Errorf("line %d: want \"op offset length size flags\", got %q", line, s)
		}
		var v [4]int64
		for i := range 4 {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %v", line, err)
			}
			v[i] = n
		}
		cur = append(cur, mop{op: f[0], off: v[0], n: v[1], size: v[2], flags: uint32(v[3])})
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out, sc.Err()
}

func TestMetamorphic(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("RINGFS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		seed = v
	}
	nops := 10_000
	if os.Getenv("RINGFS_SOAK") != "" {
		nops = 200_000
	}
	var batches [][]mop
	if path := os.Getenv("RINGFS_REPLAY"); path != "" {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if batches, err = parseLog(string(text)); err != nil {
			t.Fatal(err)
		}
		t.Logf("replaying %s", path)
	} else {
		batches = genBatches(seed, nops)
	}
	msg, at := runMetamorphic(t, batches)
	if msg != "" {
		path := writeLog(t, seed, batches)
		t.Fatalf("seed %d: at op %d: %s\nreplay: RINGFS_REPLAY=%s go test -run TestMetamorphic ./uring/\nor rerun: RINGFS_SEED=%d",
			seed, at, msg, path, seed)
	}
	t.Logf("seed %d: %d ops in %d batches identical through %v and the model", seed, at, len(batches), testBackends())
}

// TestReplayCorpus replays every op log under testdata/replay.
func TestReplayCorpus(t *testing.T) {
	paths, err := filepath.Glob("testdata/replay/*.log")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no logs in testdata/replay")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			text, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			batches, err := parseLog(string(text))
			if err != nil {
				t.Fatal(err)
			}
			if msg, at := runMetamorphic(t, batches); msg != "" {
				t.Fatalf("%s: at op %d: %s", p, at, msg)
			} else {
				t.Logf("%d ops identical through %v and the model", at, testBackends())
			}
		})
	}
}

// TestLogRoundTrip checks that a generated log parses back to itself, so a
// printed log really replays the failing run.
func TestLogRoundTrip(t *testing.T) {
	batches := genBatches(1, 2000)
	var sb strings.Builder
	for _, b := range batches {
		for _, m := range b {
			sb.WriteString(m.String() + "\n")
		}
		sb.WriteString("submit\n")
	}
	back, err := parseLog(sb.String())
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(back) != fmt.Sprint(batches) {
		t.Fatal("log does not parse back to the generated batches")
	}
	if _, err := parseLog("read 1 2 3\n"); err == nil {
		t.Fatal("a short line was accepted")
	}
	// The runner notices a log that disagrees with the model.
	bad, err := parseLog("write 0 10 0 0\nsubmit\nread 0 10 11 0\nsubmit\n")
	if err != nil {
		t.Fatal(err)
	}
	if msg, _ := runMetamorphic(t, bad); msg == "" {
		t.Fatal("a log with a wrong size column replayed without complaint")
	}
	t.Logf("%d batches round-tripped through the log format", len(back))
}

// zeroRangeSupported reports whether the file system of t's temp dir
// takes FALLOC_FL_ZERO_RANGE.
func zeroRangeSupported(t *testing.T) bool {
	f := tempFile(t, "zero-range-probe", make([]byte, 8192), os.O_RDWR)
	return unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_ZERO_RANGE, 0, 4096) != unix.EOPNOTSUPP
}
