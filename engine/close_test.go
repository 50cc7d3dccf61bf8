//go:build linux

package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// fsyncRecorder wraps an engine's backend and notes, per host file,
// whether it was written after its last fsync, and fsyncs issued on
// descriptors that were not open.
type fsyncRecorder struct {
	uring.Backend
	mu sync.Mutex
	// unsynced: written since the last fsync; fsyncs: fsyncs that
	// succeeded; staleFsyncs: fsyncs that found no open descriptor.
	// +checklocks:mu
	unsynced    map[inodeKey]bool
	fsyncs      map[inodeKey]int
	staleFsyncs int
}

// recordFsyncs returns opts with its backend wrapped by a new recorder.
func recordFsyncs(opts Options) (Options, *fsyncRecorder) {
	r := &fsyncRecorder{unsynced: map[inodeKey]bool{}, fsyncs: map[inodeKey]int{}}
	opts.WrapBackend = func(b uring.Backend) uring.Backend { r.Backend = b; return r }
	return opts, r
}

func (r *fsyncRecorder) Submit(reqs []uring.Request) error {
	err := r.Backend.Submit(reqs)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range reqs {
		q := &reqs[i]
		if q.Fixed {
			continue
		}
		if q.Op == uring.OpFsync && errors.Is(q.Err, syscall.EBADF) {
			r.staleFsyncs++
			continue
		}
		var st unix.Stat_t
		if q.Err != nil || unix.Fstat(int(q.Fd), &st) != nil {
			continue
		}
		k := inodeKey{st.Dev, st.Ino}
		switch {
		case q.Op.IsWrite() || q.Op == uring.OpFtruncate || q.Op == uring.OpFallocate:
			r.unsynced[k] = true
		case q.Op == uring.OpFsync && q.Len == 0:
			r.unsynced[k] = false
			r.fsyncs[k]++
		}
	}
	return err
}

// durable fails t unless path was fsynced after its last write.
func (r *fsyncRecorder) durable(t *testing.T, path string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	k := inodeKey{st.Dev, st.Ino}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unsynced[k] || r.fsyncs[k] == 0 {
		t.Errorf("%s: written after its last fsync (%d fsyncs)", filepath.Base(path), r.fsyncs[k])
	}
}

// closeModes are the engine setups whose Engine.Close must leave written
// files durable: every mode, with and without a cache, and host mappings.
var closeModes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive}},
	{"writethrough", Options{Mode: Writethrough}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"hostmmap", Options{Mode: Exclusive, CacheSize: -1, HostMmap: true}},
	{"exclusive/psync", Options{Mode: Exclusive, Backend: "psync"}},
}

// TestEngineCloseFsyncs: Engine.Close fsyncs every file it holds that was
// open for writing (written, truncated or only opened so), after the
// file's last write; a file only ever open for reading gets no fsync.
// A file whose last handle closed before is not the engine's any more
// and is not fsynced by it.
func TestEngineCloseFsyncs(t *testing.T) {
	for _, m := range closeModes {
		t.Run(m.name, func(t *testing.T) {
			opts, rec := recordFsyncs(m.opts)
			e := newEngine(t, opts)
			dir := t.TempDir()
			var written []string
			for i := range 3 {
				path := filepath.Join(dir, fmt.Sprintf("w%d", i))
				f := openFile(t, e, path, os.O_RDWR|os.O_CREATE)
				if _, err := f.WriteAt(pattern(9000+i, 1, uint64(i)), int64(i)*4096); err != nil {
					t.Fatal(err)
				}
				written = append(written, path)
			}
			trunc := filepath.Join(dir, "truncated")
			if err := openFile(t, e, trunc, os.O_RDWR|os.O_CREATE).Truncate(12345); err != nil {
				t.Fatal(err)
			}
			ro := filepath.Join(dir, "readonly")
			writeHost(t, ro, pattern(5000, 2, 0))
			if _, err := openFile(t, e, ro, os.O_RDONLY).ReadAt(make([]byte, 100), 0); err != nil {
				t.Fatal(err)
			}
			if err := e.Close(); err != nil {
				t.Fatalf("Engine.Close: %v", err)
			}
			for _, path := range append(written, trunc) {
				rec.durable(t, path)
			}
			var st unix.Stat_t
			if err := unix.Stat(ro, &st); err != nil {
				t.Fatal(err)
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if n := rec.fsyncs[inodeKey{st.Dev, st.Ino}]; n != 0 {
				t.Errorf("a file only read was fsynced %d times", n)
			}
		})
	}
}

// TestSyncRacingEngineClose: Engine.Sync running while Engine.Close
// begins finishes first, so that neither reports a failure that is not
// one (EBADF from a descriptor Close released under Sync), and no fsync
// reaches a descriptor that is not open (TESTPLAN B7). Sync after Close
// fails with fs.ErrClosed.
func TestSyncRacingEngineClose(t *testing.T) {
	for _, m := range closeModes {
		t.Run(m.name, func(t *testing.T) {
			opts, rec := recordFsyncs(m.opts)
			for iter := range 30 {
				e, err := New(opts)
				if err != nil {
					t.Fatal(err)
				}
				dir := t.TempDir()
				for i := range 6 {
					f := openFile(t, e, filepath.Join(dir, fmt.Sprint(i)), os.O_RDWR|os.O_CREATE)
					if _, err := f.WriteAt(pattern(8192, 3, uint64(i)), 0); err != nil {
						t.Fatal(err)
					}
				}
				syncErr := make(chan error, 1)
				go func() {
					for {
						err := e.Sync()
						if errors.Is(err, fs.ErrClosed) {
							syncErr <- nil
							return
						}
						if err != nil {
							syncErr <- err
							return
						}
					}
				}()
				time.Sleep(time.Duration(iter%5) * 100 * time.Microsecond)
				if err := e.Close(); err != nil {
					t.Fatalf("round %d: Engine.Close with Sync running: %v", iter, err)
				}
				if err := <-syncErr; err != nil {
					t.Fatalf("round %d: Engine.Sync racing Engine.Close: %v", iter, err)
				}
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			if rec.staleFsyncs != 0 {
				t.Errorf("%d fsyncs on descriptors that were not open", rec.staleFsyncs)
			}
		})
	}
}

// TestDirectAppendOffset: a Write on an O_APPEND|O_DIRECT handle leaves
// the handle's offset at the end of what it wrote, as os.File's does, on
// every path a direct write takes.
func TestDirectAppendOffset(t *testing.T) {
	dir := t.TempDir()
	if !directSupported(dir) {
		t.Skip("no O_DIRECT here")
	}
	for _, m := range closeModes {
		t.Run(m.name, func(t *testing.T) {
			e := newEngine(t, m.opts)
			name := strings.ReplaceAll(m.name, "/", "-")
			path, opath := filepath.Join(dir, name), filepath.Join(dir, name+".os")
			writeHost(t, path, pattern(4096, 4, 0))
			writeHost(t, opath, pattern(4096, 4, 0))
			const flag = os.O_RDWR | os.O_APPEND | syscall.O_DIRECT
			f := openFile(t, e, path, flag)
			of, err := os.OpenFile(opath, flag, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer of.Close()
			buf := alignedBuf(4096)
			fillData(buf, 5, 0)
			for round := range 2 {
				n, err := f.Write(buf)
				on, oerr := of.Write(buf)
				if n != on || !errors.Is(err, oerr) {
					t.Fatalf("round %d: Write = %d, %v; os.File: %d, %v", round, n, err, on, oerr)
				}
				pos, _ := f.Seek(0, io.SeekCurrent)
				opos, _ := of.Seek(0, io.SeekCurrent)
				if pos != opos {
					t.Fatalf("round %d: offset after the Write %d, os.File's %d", round, pos, opos)
				}
			}
			// At the end of file, Read finds nothing more.
			if n, err := f.Read(alignedBuf(4096)); n != 0 || err != io.EOF {
				t.Fatalf("Read after the appends: %d, %v; want 0, EOF", n, err)
			}
		})
	}
}

// TestMmapStatsMonotonic: the mapping counters of Stats are totals since
// New: they keep the counts of files released since (a file's last Close
// with a mapping used before), so Sub of two snapshots never wraps.
func TestMmapStatsMonotonic(t *testing.T) {
	for _, m := range closeModes {
		t.Run(m.name, func(t *testing.T) {
			e := newEngine(t, m.opts)
			path := filepath.Join(t.TempDir(), "f")
			writeHost(t, path, bytes.Repeat([]byte{1}, 8192))
			f := openFile(t, e, path, os.O_RDWR)
			mp, err := f.Map(0, 4096, false)
			if err != nil {
				t.Fatal(err)
			}
			if err := mp.Close(); err != nil {
				t.Fatal(err)
			}
			s1 := e.Stats()
			if s1.Mmap.ChunksMapped+s1.Mmap.SpansMapped == 0 {
				t.Fatalf("no mapping counted: %+v", s1.Mmap)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			s2 := e.Stats()
			if s2.OpenFiles != 0 {
				t.Fatalf("%d files still held after the last Close", s2.OpenFiles)
			}
			d := s2.Sub(s1).Mmap
			if s2.Mmap.ChunksMapped < s1.Mmap.ChunksMapped || s2.Mmap.SpansMapped < s1.Mmap.SpansMapped ||
				d.ChunksUnmapped > 1<<32 || d.SpansUnmapped > 1<<32 {
				t.Fatalf("mapping counters went back when the file was released: %+v, then %+v", s1.Mmap, s2.Mmap)
			}
			if s2.Mmap.MappedBytes != 0 || s2.Mmap.ChunksLive != 0 {
				t.Fatalf("mappings still counted live after the file's release: %+v", s2.Mmap)
			}
		})
	}
}

// TestMappingAfterClose: every method of a closed Mapping fails with
// fs.ErrClosed, whatever else is wrong with the call (TESTPLAN B7), and
// Close waits for ReadAt and WriteAt in flight: copies racing Close end
// whole or fail with fs.ErrClosed, never on unmapped memory.
func TestMappingAfterClose(t *testing.T) {
	e := newEngine(t, Options{Mode: Exclusive})
	path := filepath.Join(t.TempDir(), "f")
	writeHost(t, path, bytes.Repeat([]byte{7}, 1<<20))
	f := openFile(t, e, path, os.O_RDWR)
	for _, writable := range []bool{false, true} {
		mp, err := f.Map(0, 4096, writable)
		if err != nil {
			t.Fatal(err)
		}
		if err := mp.Close(); err != nil {
			t.Fatal(err)
		}
		_, rerr := mp.ReadAt(make([]byte, 1), 0)
		_, werr := mp.WriteAt([]byte("x"), 0)
		for _, err := range []error{rerr, werr, mp.Close()} {
			if !errors.Is(err, fs.ErrClosed) {
				t.Errorf("writable=%v: after Close: %v, want fs.ErrClosed", writable, err)
			}
		}
	}
	for round := range 50 {
		mp, err := f.Map(0, 1<<20, true)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for g := range 4 {
			wg.Go(func() {
				p := make([]byte, 256<<10)
				for i := 0; ; i++ {
					var err error
					if (g+i)%2 == 0 {
						_, err = mp.ReadAt(p, int64(i%4)*(256<<10))
					} else {
						_, err = mp.WriteAt(p[:4096], int64(i%256)*4096)
					}
					if err != nil {
						if !errors.Is(err, fs.ErrClosed) {
							errs <- err
						}
						return
					}
				}
			})
		}
		time.Sleep(time.Duration(round%5) * 50 * time.Microsecond)
		if err := mp.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: a copy racing Close: %v", round, err)
		}
	}
}
