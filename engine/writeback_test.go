//go:build linux

package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/ringfs/ringfs/uring/fault"
)

// Writeback errors, reported per handle after Linux errseq, with the data
// kept until it is durable (TESTPLAN F3, F4, F5: the helpers below are
// run by those rows of reliability_faults_test.go), and Engine.Close with
// dirty data (K7, run by reliability_concurrency_test.go).

var wbModes = []struct {
	name string
	opts Options
}{
	{"exclusive", Options{Mode: Exclusive}},
	{"exclusive/tiny", Options{Mode: Exclusive, CacheSize: fsxTinyCache}},
	{"writethrough", Options{Mode: Writethrough}},
	{"shared", Options{Mode: Shared}},
	{"uncached", Options{Mode: Exclusive, CacheSize: -1}},
	{"exclusive/psync", Options{Mode: Exclusive, Backend: "psync"}},
}

// fsyncErrorEachHandle (F4): an fsync fails with EIO while several
// handles are open. Each handle's next Sync reports it once; the retried
// Sync writes the retained data again and succeeds; a handle opened after
// the failure was seen is not told; the host ends equal to the model.
func fsyncErrorEachHandle(t *testing.T) {
	checkLeaks(t)
	for _, handles := range []int{3, 10} {
		for _, mode := range wbModes {
			t.Run(fmt.Sprintf("%s/handles=%d", mode.name, handles), func(t *testing.T) {
				inj := fault.New()
				o := mode.opts
				o.Injector = inj
				e := newEngine(t, o)
				path := filepath.Join(t.TempDir(), "f")
				writeHost(t, path, pattern(20000, 13, 0))
				hs := make([]*File, handles)
				for i := range hs {
					hs[i] = openFile(t, e, path, os.O_RDWR)
				}
				model := readHost(t, path)
				if _, err := hs[0].ReadAt(make([]byte, len(model)), 0); err != nil { // cached, so the writes are dirty
					t.Fatal(err)
				}
				for i := range 5 {
					p := pattern(3000, 13, uint64(i+1))
					off := int64(i*4096 + 100) // one write per page: dirty spans are per page
					if _, err := hs[i%handles].WriteAt(p, off); err != nil {
						t.Fatal(err)
					}
					if end := int(off) + len(p); end > len(model) {
						model = append(model, make([]byte, end-len(model))...)
					}
					copy(model[off:], p)
				}
				// Bytes of those writes that missed the cache went to the
				// host at once; the rest is dirty, retained until an fsync
				// succeeds.
				var dirty int64
				if e.cache != nil {
					dirty = fileStats(t, e, path).DirtyBytes
					if mode.opts.Mode == Exclusive && mode.opts.CacheSize == 0 && dirty != 5*3000 {
						t.Fatalf("DirtyBytes %d, want %d", dirty, 5*3000)
					}
				}
				inj.Add(fault.Rule{Name: "fsync EIO", When: fault.And(fault.Syncs(), fault.Nth(1)), Do: fault.Effect{Errno: syscall.EIO}})
				wbBefore := e.Stats().Cache.WritebackBytes
				wantPathErr(t, "first Sync", hs[0].Sync(), syscall.EIO)
				late := openFile(t, e, path, os.O_RDWR) // opened after the error was seen
				for i := 1; i < handles; i++ {
					wantPathErr(t, fmt.Sprintf("Sync of handle %d", i), hs[i].Sync(), syscall.EIO)
				}
				if wb := e.Stats().Cache.WritebackBytes - wbBefore; wb < 2*uint64(dirty) {
					t.Fatalf("the retained pages were written %d bytes, want the %d dirty bytes written twice", wb, dirty)
				}
				for i, h := range append(hs, late) {
					if err := h.Sync(); err != nil {
						t.Fatalf("second Sync of handle %d: %v", i, err)
					}
					if err := h.Datasync(); err != nil {
						t.Fatalf("Datasync of handle %d: %v", i, err)
					}
				}
				if inj.Fired() != 1 {
					t.Fatalf("%d faults fired, want 1", inj.Fired())
				}
				sameBytes(t, "host", readHost(t, path), model)
				for i, h := range append(hs, late) {
					if err := h.Close(); err != nil {
						t.Fatalf("Close of handle %d: %v", i, err)
					}
				}
				t.Logf("1 fsync EIO with %d handles: reported once to each, 0 to the late handle; %d retained dirty bytes written again; 0 bytes lost", handles, dirty)
			})
		}
	}
}

// writebackErrorENOSPC (F3): lazy writeback fails with ENOSPC; the
// pages stay dirty, Sync reports ENOSPC (once per handle) and, after
// healing, Sync succeeds and the host equals the model.
func writebackErrorENOSPC(t *testing.T) {
	checkLeaks(t)
	for _, mode := range wbModes {
		t.Run(mode.name, func(t *testing.T) {
			inj := fault.New()
			o := mode.opts
			o.Injector = inj
			e := newEngine(t, o)
			path := filepath.Join(t.TempDir(), "f")
			writeHost(t, path, nil)
			f := openFile(t, e, path, os.O_RDWR)
			g := openFile(t, e, path, os.O_RDWR)
			lazy := e.cache != nil && mode.opts.Mode == Exclusive
			if lazy {
				inj.Add(fault.Rule{Name: "ENOSPC", When: fault.Writes(), Do: fault.Effect{Errno: syscall.ENOSPC}})
			}
			model := pattern(40000, 14, 0) // fits even the tiny cache
			if n, err := f.WriteAt(model, 0); !lazy && (n != len(model) || err != nil) {
				t.Fatalf("WriteAt: %d, %v", n, err)
			} else if lazy && (n != len(model) || err != nil) {
				t.Fatalf("cached WriteAt failed: %d, %v", n, err)
			}
			if !lazy {
				// The write reached the host at once; fail the fsync instead.
				inj.Add(fault.Rule{Name: "ENOSPC", When: fault.Syncs(), Do: fault.Effect{Errno: syscall.ENOSPC}})
			}
			for i := range 3 {
				wantPathErr(t, fmt.Sprintf("Sync %d while failing", i), f.Sync(), syscall.ENOSPC)
			}
			if lazy {
				if d := fileStats(t, e, path).DirtyBytes; d != int64(len(model)) {
					t.Fatalf("DirtyBytes %d after failed writebacks, want %d", d, len(model))
				}
			}
			inj.Heal()
			wantPathErr(t, "Sync of the other handle", g.Sync(), syscall.ENOSPC)
			if err := g.Sync(); err != nil {
				t.Fatalf("second Sync of the other handle: %v", err)
			}
			if err := f.Sync(); err != nil {
				t.Fatalf("Sync after healing: %v", err)
			}
			sameBytes(t, "host", readHost(t, path), model)
			t.Logf("%d ENOSPC injected; data kept dirty, reported, written after healing; 0 bytes lost", inj.Fired())
		})
	}
}

// lastCloseWritebackFails (F5): the writeback of a file's last Close
// fails. The data is kept (the file stays listed, dirty, with no handle);
// a failure nobody sees (Engine.Sync while no handle is open) is reported
// once by the next Open+Sync; after healing the data reaches the host.
func lastCloseWritebackFails(t *testing.T) {
	checkLeaks(t)
	for _, tc := range []struct {
		name           string
		opts           Options
		syncWhileNoone bool // fail again while no handle is open
	}{
		{"close", Options{Mode: Exclusive}, false},
		{"close+engine sync", Options{Mode: Exclusive}, true},
		{"tiny cache", Options{Mode: Exclusive, CacheSize: fsxTinyCache}, true},
		{"psync", Options{Mode: Exclusive, Backend: "psync"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inj := fault.New()
			o := tc.opts
			o.Injector = inj
			e := newEngine(t, o)
			path := filepath.Join(t.TempDir(), "f")
			writeHost(t, path, pattern(10000, 15, 0))
			f := openFile(t, e, path, os.O_RDWR)
			model := readHost(t, path)
			p := pattern(30000, 15, 1)
			if _, err := f.WriteAt(p, 5000); err != nil {
				t.Fatal(err)
			}
			model = append(model[:5000], p...)
			inj.Add(fault.Rule{Name: "EIO", When: fault.Writes(), Do: fault.Effect{Errno: syscall.EIO}})
			// The last Close: its writeback fails; this handle was open, so
			// Close reports it.
			wantPathErr(t, "last Close", f.Close(), syscall.EIO)
			st := fileStats(t, e, path)
			if st.Handles != 0 || st.DirtyBytes == 0 {
				t.Fatalf("after the failed last Close: %+v; want the file kept, dirty, without handles", st)
			}
			if tc.syncWhileNoone {
				if err := e.Sync(); !errors.Is(err, syscall.EIO) {
					t.Fatalf("Engine.Sync while failing: %v", err)
				}
				if !fileStats(t, e, path).PendingError {
					t.Fatalf("an error no handle has seen is not pending")
				}
			}
			inj.Heal()
			g := openFile(t, e, path, os.O_RDWR)
			if tc.syncWhileNoone {
				wantPathErr(t, "Open+Sync after an unseen failure", g.Sync(), syscall.EIO)
			}
			if err := g.Sync(); err != nil {
				t.Fatalf("Sync after healing: %v", err)
			}
			sameBytes(t, "host", readHost(t, path), model)
			if err := g.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			for _, fs := range e.Files() {
				if fs.Path == path {
					t.Fatalf("file still held after a clean last Close: %+v", fs)
				}
			}
			t.Logf("%d faults: data kept through a failed last Close, reported once, written after healing, 0 bytes lost", inj.Fired())
		})
	}
}

// engineCloseFlushes (K7): Engine.Close with dirty data in several files
// and open handles writes it all back (host equals model), leaving the
// mappings still open valid until their own Close; with a failing host
// it reports the failure. Either way the process is back to its
// baseline (goroutines, descriptors, rings, mappings) once the engine
// and its mappings are closed.
func engineCloseFlushes(t *testing.T, fig *Figures) {
	for _, mode := range wbModes {
		t.Run(mode.name, func(t *testing.T) {
			before := snapshotResources(t)
			e := newEngine(t, mode.opts)
			dir := t.TempDir()
			models := map[string][]byte{}
			maps := map[string]*Mapping{}
			for i := range 5 {
				path := filepath.Join(dir, fmt.Sprintf("f%d", i))
				f := openFile(t, e, path, os.O_RDWR|os.O_CREATE)
				p := pattern(50000+i*1000, 17, uint64(i))
				if _, err := f.WriteAt(p, int64(i*777)); err != nil {
					t.Fatal(err)
				}
				models[path] = append(make([]byte, i*777), p...)
				if i%2 == 0 {
					m, err := f.Map(0, 100, false) // a mapping left open too
					if err != nil {
						t.Fatal(err)
					}
					maps[path] = m
				}
			}
			dirty := int64(0)
			for _, fs := range e.Files() {
				dirty += fs.DirtyBytes
			}
			if err := e.Close(); err != nil {
				t.Fatalf("Engine.Close: %v", err)
			}
			for path, m := range models {
				if host := readHost(t, path); !bytes.Equal(host, m) {
					fig.Add("acked_bytes_lost", int64(len(m)))
					sameBytes(t, path, host, m)
				}
			}
			// A Mapping outlives its file and engine (see Mapping): still
			// readable, released by its own Close.
			for path, m := range maps {
				got := make([]byte, 100)
				if n, err := m.ReadAt(got, 0); n != 100 || err != nil {
					t.Fatalf("Mapping after Engine.Close: %d, %v", n, err)
				}
				sameBytes(t, "Mapping after Engine.Close", got, models[path][:100])
				if err := m.Close(); err != nil {
					t.Fatalf("Mapping.Close after Engine.Close: %v", err)
				}
			}
			backToBaseline(t, before, "after Engine.Close and the mappings' Close")
			fig.Add("closes_flushed", 1)
			fig.Add("dirty_bytes_flushed", dirty)
			fig.Add("baseline_checks", 1)
			t.Logf("Engine.Close flushed %d dirty bytes of %d files with open handles; %d mappings stayed valid until their Close; back to the baseline", dirty, len(models), len(maps))
		})
	}
	t.Run("failing", func(t *testing.T) {
		before := snapshotResources(t)
		inj := fault.New()
		e := newEngine(t, Options{Mode: Exclusive, Injector: inj})
		path := filepath.Join(t.TempDir(), "f")
		f := openFile(t, e, path, os.O_RDWR|os.O_CREATE)
		if _, err := f.WriteAt(pattern(10000, 18, 0), 0); err != nil {
			t.Fatal(err)
		}
		inj.Add(fault.Rule{Name: "EIO", When: fault.Any(), Do: fault.Effect{Errno: syscall.EIO}})
		if err := e.Close(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("Engine.Close with a failing host: %v", err)
		}
		if err := e.Close(); !errors.Is(err, fs.ErrClosed) {
			t.Fatalf("second Engine.Close: %v", err)
		}
		backToBaseline(t, before, "after a failed Engine.Close")
		fig.Add("closes_reported_error", 1)
		fig.Add("baseline_checks", 1)
		t.Logf("Engine.Close with a failing host reported EIO (%d faults) and released everything", inj.Fired())
	})
}

// TestSyncWritesDirect: Sync, Datasync and O_DSYNC writes write the cached
// pages back through O_DIRECT on the io_uring backend and buffered on
// psync; the last Close writes back buffered; pages past the host's end
// go buffered. In every case the host equals the model after the call,
// and the engine leaves no descriptor behind.
func TestSyncWritesDirect(t *testing.T) {
	const size = 64 << 12
	tests := []struct {
		name       string
		backend    string
		sync       func(f *File) error
		wantDirect bool
	}{
		{"uring/Sync", "uring", (*File).Sync, true},
		{"uring/Datasync", "uring", (*File).Datasync, true},
		{"uring/last Close", "uring", nil, false},
		{"psync/Sync", "psync", (*File).Sync, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeaks(t)
			dir := t.TempDir()
			if !directSupported(dir) {
				t.Skip("no O_DIRECT in " + dir)
			}
			path := filepath.Join(dir, "f")
			model := pattern(size, 7, 0)
			writeHost(t, path, model)
			e := newEngine(t, Options{Mode: Exclusive, Backend: tt.backend})
			f := openFile(t, e, path, os.O_RDWR)
			p := make([]byte, size)
			if _, err := f.ReadAt(p, 0); err != nil {
				t.Fatal(err)
			}
			before := e.Stats().Cache
			for i, off := range []int64{0, 8 << 12, 9<<12 + 100, 40 << 12, size - 10, size + 5000} {
				b := pattern(3000, 8, uint64(i))
				if _, err := f.WriteAt(b, off); err != nil {
					t.Fatal(err)
				}
				if end := off + int64(len(b)); end > int64(len(model)) {
					model = append(model, make([]byte, end-int64(len(model)))...)
				}
				copy(model[off:], b)
			}
			if tt.sync != nil {
				if err := tt.sync(f); err != nil {
					t.Fatal(err)
				}
			} else if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			d := e.Stats().Cache.Sub(before)
			if got := readHost(t, path); !bytes.Equal(got, model) {
				t.Fatalf("host differs from the model at %d", diffAt(got, model))
			}
			// Pages 0, 8-9 (joined), 40 and 63, below the old end, go
			// direct, whole; the bytes past the old end are buffered.
			if tt.wantDirect != (d.WritebackDirectBytes > 0) || d.WritebackDirectBytes > d.WritebackBytes ||
				tt.wantDirect && d.WritebackDirectBytes != 5<<12 {
				t.Fatalf("%d of %d bytes written back through O_DIRECT; want %v (5 pages)",
					d.WritebackDirectBytes, d.WritebackBytes, tt.wantDirect)
			}
			t.Logf("%d bytes written back, %d through O_DIRECT, %d merged across clean pages",
				d.WritebackBytes, d.WritebackDirectBytes, d.WritebackMergedBytes)
		})
	}
}
