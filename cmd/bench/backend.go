//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/engine"
)

// backendKind is how a backend is driven.
type backendKind uint8

const (
	kindEngine backendKind = iota // a ringfs engine in this process
	kindOS                        // *os.File ReadAt/WriteAt
	kindMmap                      // a plain MAP_SHARED mapping, copy in and out
	kindFio                       // fio, a child process
)

// backend is one column of the comparison. Names are part of the JSON
// output and never change.
type backend struct {
	name  string
	kind  backendKind
	opts  engine.Options // kindEngine
	fio   string         // kindFio: fio's ioengine
	ring  bool           // an io_uring engine: report SQEs per enter, run Submit batches
	about string
}

var backends = []*backend{
	{name: "ringfs", kind: kindEngine, opts: engine.Options{Mode: engine.Exclusive}, ring: true,
		about: "ringfs engine, Exclusive mode, default options (io_uring backend, 256 MiB cache)"},
	{name: "ringfs-writethrough", kind: kindEngine, opts: engine.Options{Mode: engine.Writethrough}, ring: true,
		about: "ringfs engine, Writethrough mode"},
	{name: "ringfs-mmap", kind: kindEngine, opts: engine.Options{Mode: engine.Exclusive, HostMmap: true}, ring: true,
		about: "ringfs engine, Exclusive mode, HostMmap (reads and writes copy through 2 MiB mappings)"},
	{name: "ringfs-psync", kind: kindEngine, opts: engine.Options{Mode: engine.Exclusive, Backend: "psync"},
		about: "ringfs engine, Exclusive mode, psync backend (the fallback where io_uring is blocked)"},
	{name: "iouringgo", kind: kindEngine, opts: engine.Options{Mode: engine.Exclusive, Backend: "iouringgo"}, ring: true,
		about: "ringfs engine, Exclusive mode, github.com/iceber/iouring-go backend (tagged builds only)"},
	{name: "os", kind: kindOS, about: "os.File ReadAt/WriteAt (pread/pwrite), Sync = fsync"},
	{name: "mmap", kind: kindMmap, about: "one MAP_SHARED mapping of the file, copy in and out, Sync = msync"},
	{name: "fio-psync", kind: kindFio, fio: "psync", about: "fio 'psync' engine (pread/pwrite)"},
	{name: "fio-io_uring", kind: kindFio, fio: "io_uring", about: "fio 'io_uring' engine"},
	{name: "fio-mmap", kind: kindFio, fio: "mmap", about: "fio 'mmap' engine"},
}

func backendByName(name string) *backend {
	for _, b := range backends {
		if b.name == name {
			return b
		}
	}
	return nil
}

func backendNames() string {
	names := make([]string, len(backends))
	for i, b := range backends {
		names[i] = b.name
	}
	return strings.Join(names, ", ")
}

func (b *backend) inProcess() bool { return b.kind != kindFio }

// applies reports whether b runs variant v of w, and why not.
func applies(w *workload, v variant, b *backend) (bool, string) {
	if w.direct && (b.kind == kindMmap || b.fio == "mmap") {
		return false, "a mapping cannot bypass the kernel's page cache"
	}
	if v.batched && !(b.kind == kindEngine && b.ring) {
		return false, "Submit batches are an io_uring engine feature"
	}
	return true, ""
}

// handle is what a timed loop drives.
type handle interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Sync() error
}

// session is one in-process backend opened on the file for one cell.
type session struct {
	h   handle
	eng *engine.Engine // engine backends
	ef  *engine.File
	mm  *mmapFile
	osf *os.File
}

// openSession opens the file through b; direct asks for O_DIRECT. Engine
// backends reuse the runner's engine for b: a file's cached pages are
// dropped when its last handle closes, so every cell starts cold, but the
// cache memory stays mapped, and faulting in a fresh arena (hundreds of
// milliseconds in some VMs) is paid once per run, not per cell.
func (r *runner) openSession(b *backend, direct bool) (*session, error) {
	flag := os.O_RDWR
	if direct {
		flag |= syscall.O_DIRECT
	}
	switch b.kind {
	case kindEngine:
		e, err := r.engineFor(b)
		if err != nil {
			return nil, err
		}
		f, err := e.Open(r.path, flag, 0)
		if err != nil {
			return nil, err
		}
		return &session{h: f, eng: e, ef: f}, nil
	case kindOS:
		f, err := os.OpenFile(r.path, flag, 0)
		if err != nil {
			return nil, err
		}
		return &session{h: f, osf: f}, nil
	case kindMmap:
		m, err := openMmap(r.path, r.size)
		if err != nil {
			return nil, err
		}
		return &session{h: m, mm: m}, nil
	}
	return nil, fmt.Errorf("backend %s does not run in this process", b.name)
}

// engineFor returns the run's engine for b, creating it on first use.
func (r *runner) engineFor(b *backend) (*engine.Engine, error) {
	if e := r.engines[b]; e != nil {
		return e, nil
	}
	opts := b.opts
	if r.cacheSize > 0 && !opts.HostMmap {
		opts.CacheSize = r.cacheSize
	}
	e, err := engine.New(opts)
	if err != nil {
		return nil, err
	}
	if r.engines == nil {
		r.engines = make(map[*backend]*engine.Engine)
	}
	r.engines[b] = e
	return e, nil
}

// closeEngines closes the run's engines.
func (r *runner) closeEngines() error {
	var errs []error
	for b, e := range r.engines {
		if err := e.Close(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", b.name, err))
		}
	}
	r.engines = nil
	return errors.Join(errs...)
}

func (s *session) close() error {
	switch {
	case s.ef != nil:
		return s.ef.Close()
	case s.osf != nil:
		return s.osf.Close()
	case s.mm != nil:
		return s.mm.close()
	}
	return nil
}

// mmapFile is the plain mmap backend: the whole file mapped MAP_SHARED.
type mmapFile struct {
	f    *os.File
	data []byte
}

func openMmap(path string, size int64) (*mmapFile, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, &os.PathError{Op: "mmap", Path: path, Err: err}
	}
	return &mmapFile{f: f, data: data}, nil
}

func (m *mmapFile) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.data)) {
		return 0, io.EOF
	}
	n := copy(p, m.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *mmapFile) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.data)) {
		return 0, &os.PathError{Op: "write", Path: m.f.Name(), Err: syscall.EFBIG}
	}
	return copy(m.data[off:], p), nil
}

func (m *mmapFile) Sync() error {
	if err := unix.Msync(m.data, unix.MS_SYNC); err != nil {
		return &os.PathError{Op: "msync", Path: m.f.Name(), Err: err}
	}
	return nil
}

func (m *mmapFile) close() error {
	return errors.Join(unix.Munmap(m.data), m.f.Close())
}

// alignedBuf returns n bytes aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	skip := 0
	if r := int(uintptrOf(b) % align); r != 0 {
		skip = align - r
	}
	return b[skip : skip+n : skip+n]
}
