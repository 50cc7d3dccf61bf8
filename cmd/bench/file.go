//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkFile decides the scratch file's size, working set and ringfs
// cache size, and checks an existing --file, without creating or
// changing any file: a bad command line is refused before anything is
// written.
func (r *runner) checkFile() error {
	cfg := r.cfg
	r.size = cfg.size
	r.needsFill = true
	if cfg.file != "" {
		st, err := os.Stat(cfg.file)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return err
		case !st.Mode().IsRegular():
			return usagef("--file %s is not a regular file", cfg.file)
		default:
			r.exists = true
			if st.Size() == 0 {
				break
			}
			if !cfg.sizeSet && st.Size() >= minSize {
				r.size = st.Size() &^ (1<<20 - 1)
			}
			holds := holdsPattern(cfg.file, st.Size())
			if !holds && !cfg.overwrite {
				return usagef("--file %s exists and does not hold bench's data; bench overwrites the file it runs on: pass --overwrite to allow it", cfg.file)
			}
			r.needsFill = !holds || st.Size() < r.size
		}
	}
	if err := r.checkSpace(); err != nil {
		return err
	}
	r.workingSet = cfg.workingSet
	if r.workingSet == 0 {
		r.workingSet = defaultWorkingSet
		if cfg.quick {
			r.workingSet = quickWorkingSet
		}
		r.workingSet = min(r.workingSet, r.size)
	}
	if r.workingSet > r.size {
		return usagef("--working-set %s is larger than the file (%s)", describeSize(r.workingSet), describeSize(r.size))
	}
	// The ringfs cache must hold the working set for the hot rows to be
	// hot; beyond the default's reach, size the cache to fit.
	if r.workingSet > defaultWorkingSet+32<<20 {
		r.cacheSize = r.workingSet + 64<<20
	}
	return nil
}

// checkSpace refuses a scratch file larger than its file system's free
// space before it is created: writing it would fail only at the end,
// and on tmpfs it would first take the machine's memory.
func (r *runner) checkSpace() error {
	if !r.needsFill {
		return nil
	}
	dir := os.TempDir()
	need := r.size
	if r.cfg.file != "" {
		dir = filepath.Dir(r.cfg.file)
		if st, err := os.Stat(r.cfg.file); err == nil {
			need -= st.Size()
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return nil // the file's creation will say what is wrong
	}
	if free := int64(st.Bavail) * st.Bsize; need > free {
		return fmt.Errorf("a %s scratch file does not fit in %s (%s free): use a smaller --size, or set TMPDIR or --file elsewhere",
			describeSize(r.size), dir, describeSize(free))
	}
	return nil
}

// prepareFile makes the scratch file checkFile decided on: a new
// temporary file, or --file, filled with the pattern (generation 0). A
// --file that already holds the pattern at the wanted size is used as it
// is.
func (r *runner) prepareFile(ctx context.Context) error {
	var f *os.File
	var err error
	if r.cfg.file == "" {
		f, err = os.CreateTemp("", "ringfs-bench-*.dat")
		if err != nil {
			return fmt.Errorf("creating the scratch file: %w (set TMPDIR or use --file)", err)
		}
		r.temp = true
	} else {
		flags := os.O_RDWR
		if !r.exists {
			flags |= os.O_CREATE | os.O_EXCL // so that created is true only of a file bench made
		}
		f, err = os.OpenFile(r.cfg.file, flags, 0o644)
		if err != nil {
			return err
		}
	}
	r.path, r.created = f.Name(), !r.exists
	f.Close()
	if r.created {
		forcedExit.add(r.path)
	}
	if r.needsFill {
		fmt.Fprintf(r.log, "bench: writing %s of test data to %s\n", describeSize(r.size), r.path)
		if err := r.fill(ctx, r.size); err != nil {
			return err
		}
	}
	r.written = true
	if r.keepFile() {
		forcedExit.drop(r.path) // complete, and kept at the end: kept at a forced exit too
	}
	r.directOK = probeDirect(r.path)
	return nil
}

// fill writes generation 0 of the pattern over [0, n) of the file (and
// sets its size to r.size), then fsyncs it. It stops with ctx's error
// when ctx is done (a signal), checking between 1 MiB writes.
func (r *runner) fill(ctx context.Context, n int64) error {
	f, err := os.OpenFile(r.path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(r.size); err != nil {
		return err
	}
	const chunk = 1 << 20
	buf := alignedBuf(chunk)
	prepare(buf, 0)
	for off := int64(0); off < n; off += chunk {
		if err := ctx.Err(); err != nil {
			return err
		}
		b := buf[:min(chunk, n-off)]
		stamp(b, off, 0)
		if _, err := f.WriteAt(b, off); err != nil {
			return err
		}
	}
	return f.Sync()
}

// holdsPattern reports whether a sample of the file's blocks holds the
// pattern (of any generation): a file bench wrote before.
func holdsPattern(path string, size int64) bool {
	f, err := os.Open(path)
	if err != nil || size < patternBlock {
		return false
	}
	defer f.Close()
	buf := make([]byte, patternBlock)
	rng := rand.NewPCG(7, 7)
	for i := range 64 {
		off := int64(0)
		if i > 0 {
			off = int64(rng.Uint64()%uint64(size/patternBlock)) * patternBlock
		}
		if n, err := f.ReadAt(buf, off); err != nil || n != len(buf) || verify(buf, off, -1) != nil {
			return false
		}
	}
	return true
}

// probeDirect reports whether path can be opened and read with O_DIRECT.
func probeDirect(path string) bool {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	_, err = f.ReadAt(alignedBuf(patternBlock), 0)
	return err == nil
}

func (r *runner) keepFile() bool { return !r.temp || r.cfg.keep }

// cleanup removes the file if bench created it and either did not
// finish writing the pattern (setup failed or was interrupted) or it is
// the temporary file without --keep. A --file that existed before the
// run is never removed.
func (r *runner) cleanup() {
	switch {
	case r.path == "":
	case r.created && (!r.written || r.temp && !r.cfg.keep):
		os.Remove(r.path)
		forcedExit.drop(r.path)
	case r.temp:
		fmt.Fprintf(r.log, "bench: kept %s\n", r.path)
	}
}
