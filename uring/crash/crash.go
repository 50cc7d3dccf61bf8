//go:build linux

package crash

import (
	"fmt"
	"math/rand"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// BlockSize is the unit in which unsynced changes survive or not.
const BlockSize = 4096

// Key identifies a file.
type Key struct{ Dev, Ino uint64 }

// KeyOf returns the key of the file open as fd.
func KeyOf(fd int) (Key, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Key{}, err
	}
	return Key{st.Dev, st.Ino}, nil
}

type opKind uint8

const (
	opWrite opKind = iota // data at off
	opSize                // size becomes size (ftruncate)
	opZero                // [off, off+n) reads zero; size grows to size when size > 0
	opSync                // everything before is durable
)

// Op is one recorded change of a file.
type Op struct {
	Seq  int // position in the Host's record (1-based)
	kind opKind
	off  int64
	n    int64
	size int64
	data []byte
}

// String renders the op for replay logs.
func (o Op) String() string {
	switch o.kind {
	case opWrite:
		return fmt.Sprintf("#%d write %d %d", o.Seq, o.off, len(o.data))
	case opSize:
		return fmt.Sprintf("#%d truncate %d", o.Seq, o.size)
	case opZero:
		return fmt.Sprintf("#%d zero %d %d size=%d", o.Seq, o.off, o.n, o.size)
	}
	return fmt.Sprintf("#%d sync", o.Seq)
}

type fileLog struct {
	base []byte // content when tracking started (taken as durable)
	ops  []Op
}

// Host is a recording uring.Backend.
type Host struct {
	inner uring.Backend

	mu sync.Mutex
	// files are the tracked files; seq counts recorded ops. +checklocks:mu
	files map[Key]*fileLog
	seq   int
	keys  map[int32]Key // fd → key cache, filled per Submit; +checklocks:mu
}

var _ uring.Backend = (*Host)(nil)
var _ uring.Doer = (*Host)(nil)

// Wrap returns a Host recording the changes b makes to tracked files.
func Wrap(b uring.Backend) *Host {
	return &Host{inner: b, files: make(map[Key]*fileLog)}
}

// Track starts recording changes of the file open as fd; its current
// content is taken as durable.
func (h *Host) Track(fd int) error {
	k, err := KeyOf(fd)
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	base := make([]byte, st.Size)
	if _, err := unix.Pread(fd, base, 0); err != nil && st.Size > 0 {
		return err
	}
	h.mu.Lock()
	h.files[k] = &fileLog{base: base}
	h.mu.Unlock()
	return nil
}

// Seq returns the number of operations recorded so far: the crash points
// are 0 (nothing happened) to Seq().
func (h *Host) Seq() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seq
}

// Ops returns the operations recorded for k, oldest first.
func (h *Host) Ops(k Key) []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	if fl := h.files[k]; fl != nil {
		return slices.Clone(fl.ops)
	}
	return nil
}

// record notes the completed requests that change tracked files.
func (h *Host) record(reqs []uring.Request) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := range reqs {
		r := &reqs[i]
		if r.Fixed {
			continue // registered files are not resolved here
		}
		var o Op
		switch {
		case r.Op.IsWrite() && r.N > 0:
			o = Op{kind: opWrite, off: r.Off, data: gather(r, r.N)}
			if r.Flags&unix.RWF_APPEND != 0 {
				continue // the offset is the kernel's choice; not supported
			}
		case r.Op == uring.OpFtruncate && r.Err == nil:
			o = Op{kind: opSize, size: r.Off}
		case r.Op == uring.OpFallocate && r.Err == nil:
			o = fallocOp(r)
		case r.Op == uring.OpFsync && r.Err == nil:
			o = Op{kind: opSync}
		default:
			continue
		}
		k, ok := h.keyLocked(r.Fd)
		if !ok {
			continue
		}
		fl := h.files[k]
		if fl == nil {
			continue
		}
		h.seq++
		o.Seq = h.seq
		fl.ops = append(fl.ops, o)
	}
	clear(h.keys)
}

func fallocOp(r *uring.Request) Op {
	grow := int64(0)
	if r.Flags&unix.FALLOC_FL_KEEP_SIZE == 0 {
		grow = r.Off + r.Len
	}
	if r.Flags&(unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_ZERO_RANGE) != 0 {
		return Op{kind: opZero, off: r.Off, n: r.Len, size: grow}
	}
	return Op{kind: opZero, off: r.Off, n: 0, size: grow}
}

// gather copies the first n bytes a write request wrote.
func gather(r *uring.Request, n int) []byte {
	if r.Op == uring.OpWritev {
		out := make([]byte, 0, n)
		for _, v := range r.Vecs {
			out = append(out, v[:min(len(v), n-len(out))]...)
			if len(out) == n {
				break
			}
		}
		return out
	}
	return append([]byte(nil), r.Buf[:n]...)
}

// keyLocked maps an fd to its file key (fstat once per fd per batch).
//
// Preconditions: h.mu is held.
func (h *Host) keyLocked(fd int32) (Key, bool) {
	if k, ok := h.keys[fd]; ok {
		return k, true
	}
	k, err := KeyOf(int(fd))
	if err != nil {
		return Key{}, false
	}
	if h.keys == nil {
		h.keys = make(map[int32]Key)
	}
	h.keys[fd] = k
	return k, true
}

// Submit implements uring.Backend.
func (h *Host) Submit(reqs []uring.Request) error {
	err := h.inner.Submit(reqs)
	h.record(reqs)
	return err
}

// Do implements uring.Doer.
func (h *Host) Do(r uring.Request) (int, error) {
	n, err := uring.Do(h.inner, r)
	r.N, r.Err = n, err
	one := [1]uring.Request{r}
	h.record(one[:])
	return n, err
}

func (h *Host) Name() string                           { return h.inner.Name() }
func (h *Host) RegisterBuffers(bufs [][]byte) error    { return h.inner.RegisterBuffers(bufs) }
func (h *Host) UnregisterBuffers() error               { return h.inner.UnregisterBuffers() }
func (h *Host) RegisterFiles(fds []int32) error        { return h.inner.RegisterFiles(fds) }
func (h *Host) UpdateFiles(off int, fds []int32) error { return h.inner.UpdateFiles(off, fds) }
func (h *Host) UnregisterFiles() error                 { return h.inner.UnregisterFiles() }
func (h *Host) Supports(op uring.Op) bool              { return h.inner.Supports(op) }
func (h *Host) Stats() uring.Stats                     { return h.inner.Stats() }
func (h *Host) Close() error                           { return h.inner.Close() }

// image is a file's content and size while replaying.
type image struct{ b []byte }

func (im *image) apply(o Op) {
	switch o.kind {
	case opWrite:
		end := o.off + int64(len(o.data))
		if end > int64(len(im.b)) {
			im.b = append(im.b, make([]byte, end-int64(len(im.b)))...)
		}
		copy(im.b[o.off:], o.data)
	case opSize:
		im.resize(o.size)
	case opZero:
		if o.size > int64(len(im.b)) {
			im.resize(o.size)
		}
		if o.n > 0 {
			a, b := min(o.off, int64(len(im.b))), min(o.off+o.n, int64(len(im.b)))
			clear(im.b[a:b])
		}
	}
}

func (im *image) resize(n int64) {
	if n <= int64(len(im.b)) {
		im.b = im.b[:n]
		return
	}
	im.b = append(im.b, make([]byte, n-int64(len(im.b)))...)
}

// Durable returns the content of k made durable by the last successful
// fsync among the first at recorded operations (the state after a crash
// that lost everything unsynced), and the position of that fsync (0 when
// none).
func (h *Host) Durable(k Key, at int) ([]byte, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fl := h.files[k]
	if fl == nil {
		return nil, 0
	}
	last := -1
	for i, o := range fl.ops {
		if o.Seq > at {
			break
		}
		if o.kind == opSync {
			last = i
		}
	}
	im := image{b: slices.Clone(fl.base)}
	for _, o := range fl.ops[:last+1] {
		im.apply(o)
	}
	if last < 0 {
		return im.b, 0
	}
	return im.b, fl.ops[last].Seq
}

// Current returns the content of k after the first at recorded
// operations, as if nothing were lost.
func (h *Host) Current(k Key, at int) []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	fl := h.files[k]
	if fl == nil {
		return nil
	}
	im := image{b: slices.Clone(fl.base)}
	for _, o := range fl.ops {
		if o.Seq > at {
			break
		}
		im.apply(o)
	}
	return im.b
}

// Crash returns a content k could have after a crash right after the
// at-th recorded operation: every 4 KiB block changed since the last
// fsync is taken from the current content with probability keep, else
// from the durable content — or, with garbage set, filled with random
// bytes; the size is the current one with probability keep, else the
// durable one. The same rng gives the same image.
func (h *Host) Crash(k Key, at int, keep float64, garbage bool, rng *rand.Rand) []byte {
	durable, _ := h.Durable(k, at)
	current := h.Current(k, at)
	if durable == nil && current == nil {
		return nil
	}
	size := len(durable)
	if rng.Float64() < keep {
		size = len(current)
	}
	out := make([]byte, size)
	for off := 0; off < size; off += BlockSize {
		end := min(off+BlockSize, size)
		d, c := block(durable, off, end), block(current, off, end)
		switch {
		case string(d) == string(c):
			copy(out[off:end], d)
		case rng.Float64() < keep:
			copy(out[off:end], c)
		case garbage:
			rng.Read(out[off:end])
		default:
			copy(out[off:end], d)
		}
	}
	return out
}

// block returns b[off:end] padded with zeros where b is shorter.
func block(b []byte, off, end int) []byte {
	out := make([]byte, end-off)
	if off < len(b) {
		copy(out, b[off:min(end, len(b))])
	}
	return out
}

// Unsynced returns the 4 KiB blocks of k changed by operations after the
// last fsync among the first at ones: the only blocks a crash at that
// point may change.
func (h *Host) Unsynced(k Key, at int) []int64 {
	durable, _ := h.Durable(k, at)
	current := h.Current(k, at)
	var blocks []int64
	for off := 0; off < max(len(durable), len(current)); off += BlockSize {
		end := off + BlockSize
		if string(block(durable, off, end)) != string(block(current, off, end)) {
			blocks = append(blocks, int64(off/BlockSize))
		}
	}
	return blocks
}
