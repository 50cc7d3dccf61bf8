//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ringfs/ringfs/uring"
)

// Limits of one inspection.
const (
	maxExtents     = 10000   // extents listed in JSON; the scan stops there
	humanExtents   = 16      // extents listed in the human view
	residencyCells = 60      // width of the residency bar and entries of "map"
	mincoreWindow  = 1 << 30 // bytes mapped at a time for mincore
)

var inspectCommand = &command{
	name:    "inspect",
	args:    "[--json] FILE...",
	summary: "show a file's extents, filesystem, O_DIRECT alignment and page-cache residency",
	detail: `
Inspect reports, for each regular FILE: its size and allocated bytes, its
data and hole extents (SEEK_DATA/SEEK_HOLE), the filesystem type (statfs)
and whether ringfs runs its I/O there as plain syscalls (tmpfs, ramfs: the
kernel would hand every io_uring request to a worker thread), the O_DIRECT
alignment the kernel reports (statx STATX_DIOALIGN; "unknown"
where the kernel or filesystem does not say), and how much of it is in the
kernel's page cache (cachestat(2), or mincore(2) on a mapping on kernels
without it), drawn as a bar: 'O' a fully resident run of pages, 'o' a
partly resident one, ' ' none. The kernel reveals the residency only to a
file's owner and to whoever may write to it; for others it is shown as
unknown, with the reason.

Inspect reads no data: the page cache is left as it was. It goes on past
a file it cannot inspect and exits with status 1 at the end if any failed;
an unknown residency or alignment is not a failure.`,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print a JSON document instead of the human view")
		return func(_ context.Context, s *streams, args []string) error {
			if len(args) == 0 {
				return usageErrorf("no FILE given")
			}
			doc := inspectDoc{SchemaVersion: schemaVersion, Kind: "inspect", Files: make([]fileReport, 0, len(args))}
			failed := false
			for _, path := range args {
				r := inspectFile(path, residencyAuto)
				if r.Error != "" {
					failed = true
					s.warnf("inspect: %s: %s", safe(path), r.Error)
				}
				doc.Files = append(doc.Files, r)
			}
			var err error
			if *asJSON {
				err = writeJSON(s.out, doc)
			} else {
				err = renderInspect(s.out, doc)
			}
			if err != nil {
				return err
			}
			if failed {
				return errReported
			}
			return nil
		}
	},
}

// inspectDoc is the JSON document of "fsctl inspect" (schema_version 1).
type inspectDoc struct {
	SchemaVersion int          `json:"schema_version"`
	Kind          string       `json:"kind"` // "inspect"
	Files         []fileReport `json:"files"`
}

// fileReport is one file: its path and either an error or the details.
// (Details is exported only so that encoding/json decodes it in tests.)
type fileReport struct {
	Path  string `json:"path"`
	Error string `json:"error,omitempty"`
	*Details
}

type Details struct {
	SizeBytes      int64        `json:"size_bytes"`
	AllocatedBytes int64        `json:"allocated_bytes"`  // st_blocks × 512
	BlockSizeBytes int64        `json:"block_size_bytes"` // st_blksize, the preferred I/O size
	Filesystem     fsDoc        `json:"filesystem"`
	DirectIO       dioDoc       `json:"direct_io"`
	Extents        extentsDoc   `json:"extents"`
	PageCache      pageCacheDoc `json:"page_cache"`
}

type fsDoc struct {
	Type  string `json:"type"`  // "ext4", "xfs", ... or "unknown"
	Magic int64  `json:"magic"` // statfs f_type
	// PlainSyscalls is set where ringfs runs a file's I/O as plain
	// syscalls rather than through io_uring (tmpfs, ramfs:
	// uring.InlineFile), whose kernel would hand each request to a worker
	// thread.
	PlainSyscalls bool `json:"ringfs_plain_syscalls"`
}

type dioDoc struct {
	// Alignment is "reported", "unknown" (the kernel or the filesystem
	// does not report it) or "unsupported" (reported: no O_DIRECT here).
	Alignment            string `json:"alignment"`
	MemoryAlignmentBytes uint32 `json:"memory_alignment_bytes"`
	OffsetAlignmentBytes uint32 `json:"offset_alignment_bytes"`
	ReadOffsetAlignBytes uint32 `json:"read_offset_alignment_bytes"` // 0: same as offset_alignment_bytes
}

type extentsDoc struct {
	// Method is "seek" (SEEK_DATA/SEEK_HOLE) or "none" when the
	// filesystem refuses them; without holes support a filesystem reports
	// the whole file as one data extent.
	Method      string   `json:"method"`
	DataExtents int      `json:"data_extents"`
	Holes       int      `json:"holes"`
	DataBytes   int64    `json:"data_bytes"`
	HoleBytes   int64    `json:"hole_bytes"`
	Truncated   bool     `json:"truncated"` // more than maxExtents: the scan stopped
	List        []extent `json:"list"`
}

type extent struct {
	Type        string `json:"type"` // "data" or "hole"
	OffsetBytes int64  `json:"offset_bytes"`
	LengthBytes int64  `json:"length_bytes"`
}

type pageCacheDoc struct {
	// Method is "cachestat", "mincore", "none" (an empty file) or
	// "unavailable" (Error says why).
	Method        string `json:"method"`
	Error         string `json:"error,omitempty"`
	PageSizeBytes int64  `json:"page_size_bytes"`
	Pages         int64  `json:"pages"` // pages the file spans
	ResidentPages int64  `json:"resident_pages"`
	ResidentBytes int64  `json:"resident_bytes"` // resident pages × page size, at most the size
	// Counted by cachestat only; null with mincore.
	DirtyPages           *int64 `json:"dirty_pages"`
	WritebackPages       *int64 `json:"writeback_pages"`
	EvictedPages         *int64 `json:"evicted_pages"`
	RecentlyEvictedPages *int64 `json:"recently_evicted_pages"`
	// Map cuts the file into up to residencyCells runs of pages, the
	// cells of the human view's bar.
	Map []residencyCell `json:"map"`
}

// MarshalJSON writes resident_pages and resident_bytes as null when the
// residency is unavailable: 0 would read as nothing resident.
func (pc pageCacheDoc) MarshalJSON() ([]byte, error) {
	type plain pageCacheDoc // (without this method)
	if pc.Method != "unavailable" {
		return json.Marshal(plain(pc))
	}
	return json.Marshal(struct {
		plain
		ResidentPages *int64 `json:"resident_pages"`
		ResidentBytes *int64 `json:"resident_bytes"`
	}{plain: plain(pc)})
}

type residencyCell struct {
	OffsetBytes   int64 `json:"offset_bytes"`
	Pages         int64 `json:"pages"`
	ResidentPages int64 `json:"resident_pages"`
}

// residencyMethod chooses how page-cache residency is measured.
type residencyMethod int

const (
	residencyAuto    residencyMethod = iota // cachestat, else mincore
	residencyMincore                        // mincore only (tests of the fallback)
)

// inspectFile inspects one file. It never reads the file's data.
func inspectFile(path string, method residencyMethod) fileReport {
	r := fileReport{Path: path}
	fail := func(op string, err error) fileReport {
		r.Error = op + ": " + errText(err)
		return r
	}
	// Refuse anything but a regular file before opening it: opening a
	// device or FIFO can block or have side effects.
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fail("stat", err)
	}
	if err := regular(&st); err != nil {
		return fail("open", err)
	}
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	fd, err := unix.Open(path, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) { // O_NOATIME needs ownership
		fd, err = unix.Open(path, flags, 0)
	}
	if err != nil {
		return fail("open", err)
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return fail("fstat", err)
	}
	if err := regular(&fst); err != nil {
		return fail("open", err)
	}
	d := &Details{SizeBytes: fst.Size, AllocatedBytes: fst.Blocks * 512, BlockSizeBytes: int64(fst.Blksize)}
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return fail("statfs", err)
	}
	d.Filesystem = fsDoc{Type: fsName(sfs.Type), Magic: int64(sfs.Type), PlainSyscalls: uring.InlineFile(fd)}
	d.DirectIO = dioAlignment(fd)
	if d.Extents, err = scanExtents(fd, fst.Size); err != nil {
		return fail("lseek", err)
	}
	d.PageCache = residency(fd, fst.Size, method, mincoreTruthful(fd, path, &fst, &sfs))
	r.Details = d
	return r
}

func regular(st *unix.Stat_t) error {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return nil
	case unix.S_IFDIR:
		return unix.EISDIR
	}
	return errors.New("not a regular file")
}

// errText is an error's message without the operation and path that
// fileReport already gives.
func errText(err error) string {
	var en unix.Errno
	if errors.As(err, &en) {
		return en.Error()
	}
	return err.Error()
}

// dioAlignment asks statx for STATX_DIOALIGN (Linux 6.1+, and only from
// filesystems that fill it in).
func dioAlignment(fd int) dioDoc {
	var stx unix.Statx_t
	err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN|unix.STATX_DIO_READ_ALIGN, &stx)
	switch {
	case err != nil || stx.Mask&unix.STATX_DIOALIGN == 0:
		return dioDoc{Alignment: "unknown"}
	case stx.Dio_mem_align == 0:
		return dioDoc{Alignment: "unsupported"}
	}
	d := dioDoc{Alignment: "reported", MemoryAlignmentBytes: stx.Dio_mem_align, OffsetAlignmentBytes: stx.Dio_offset_align}
	if stx.Mask&unix.STATX_DIO_READ_ALIGN != 0 && stx.Dio_read_offset_align != stx.Dio_offset_align {
		d.ReadOffsetAlignBytes = stx.Dio_read_offset_align
	}
	return d
}

// scanExtents walks the file with SEEK_DATA and SEEK_HOLE, at most
// maxExtents extents.
func scanExtents(fd int, size int64) (extentsDoc, error) {
	x := extentsDoc{Method: "seek", List: []extent{}}
	add := func(typ string, off, end int64) {
		if end <= off {
			return
		}
		if len(x.List) == maxExtents {
			x.Truncated = true
			return
		}
		x.List = append(x.List, extent{Type: typ, OffsetBytes: off, LengthBytes: end - off})
		if typ == "data" {
			x.DataExtents++
			x.DataBytes += end - off
		} else {
			x.Holes++
			x.HoleBytes += end - off
		}
	}
	for off := int64(0); off < size && !x.Truncated; {
		data, err := seek(fd, off, unix.SEEK_DATA)
		switch {
		case errors.Is(err, unix.ENXIO): // no data past off
			add("hole", off, size)
			return x, nil
		case errors.Is(err, unix.EINVAL) && off == 0: // no SEEK_DATA here
			x = extentsDoc{Method: "none", List: []extent{}}
			add("data", 0, size)
			return x, nil
		case err != nil:
			return x, err
		}
		add("hole", off, min(data, size))
		hole, err := seek(fd, data, unix.SEEK_HOLE)
		if errors.Is(err, unix.ENXIO) { // truncated under us
			return x, nil
		} else if err != nil {
			return x, err
		}
		hole = min(hole, size)
		add("data", data, hole)
		if hole <= off {
			break // the file shrank under us
		}
		off = hole
	}
	return x, nil
}

func seek(fd int, off int64, whence int) (int64, error) {
	for {
		n, err := unix.Seek(fd, off, whence)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// concealed is why residency is unknown where the kernel keeps it from
// the caller: since Linux 5.0 it reveals a file's page-cache residency
// only to the file's owner (or a holder of CAP_FOWNER) and to whoever may
// write to the file. cachestat refuses the others with EPERM; mincore
// answers them, but with every page resident, whatever is cached.
const concealed = "the kernel reveals a file's page-cache residency only to its owner and to whoever may write to it"

// residency measures how much of the file is in the kernel's page cache:
// with cachestat(2) (Linux 6.5+), or where that is missing, with
// mincore(2) on a read-only shared mapping (which faults nothing in).
// mincoreOK says whether mincore would tell the truth (mincoreTruthful);
// where neither call would, the residency is unavailable, never guessed.
func residency(fd int, size int64, method residencyMethod, mincoreOK bool) pageCacheDoc {
	ps := int64(unix.Getpagesize())
	pc := pageCacheDoc{Method: "none", PageSizeBytes: ps, Pages: (size + ps - 1) / ps, Map: []residencyCell{}}
	if size == 0 {
		return pc
	}
	pc.Map = cells(pc.Pages, ps)
	var err error
	if method == residencyAuto {
		err = cachestatResidency(fd, &pc)
		switch {
		case err == nil:
			return pc.finish(size)
		case errors.Is(err, unix.EPERM):
			// The kernel applies the same rule to cachestat and to
			// mincore: refused here, mincore would claim every page.
			return pc.unavailable("cachestat", fmt.Errorf("%v: %s", err, concealed))
		case !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EOPNOTSUPP):
			return pc.unavailable("cachestat", err)
		}
		pc.Map = cells(pc.Pages, ps)
	}
	if !mincoreOK {
		return pc.unavailable("mincore", errors.New(concealed+"; to others mincore reports every page resident"))
	}
	if err = mincoreResidency(fd, size, &pc); err != nil {
		return pc.unavailable("mincore", err)
	}
	return pc.finish(size)
}

// mincoreTruthful reports whether mincore tells this process the truth
// about the open file fd (at path), by the kernel's rule (mm/mincore.c,
// can_do_mincore): the caller owns the file or holds CAP_FOWNER, or may
// write to it. Otherwise mincore reports every page resident. Where the
// answer is in doubt the check says no: on a read-only mount nobody but
// the owner may write (whether the kernel looks at the mount or only at
// the filesystem).
func mincoreTruthful(fd int, path string, st *unix.Stat_t, sfs *unix.Statfs_t) bool {
	if st.Uid == uint32(unix.Geteuid()) || hasCapability(unix.CAP_FOWNER) {
		return true
	}
	if sfs.Flags&unix.ST_RDONLY != 0 {
		return false
	}
	// Through /proc/self/fd the check is of the open file itself, not of
	// whatever is at path now.
	err := unix.Faccessat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), unix.W_OK, unix.AT_EACCESS)
	if errors.Is(err, unix.ENOENT) { // no /proc
		err = unix.Faccessat(unix.AT_FDCWD, path, unix.W_OK, unix.AT_EACCESS)
	}
	return err == nil
}

// hasCapability reports whether capability c is in the effective set.
func hasCapability(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil || c/32 >= len(data) {
		return false
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}

func (pc pageCacheDoc) finish(size int64) pageCacheDoc {
	pc.ResidentPages = min(pc.ResidentPages, pc.Pages)
	pc.ResidentBytes = min(pc.ResidentPages*pc.PageSizeBytes, size)
	return pc
}

func (pc pageCacheDoc) unavailable(op string, err error) pageCacheDoc {
	return pageCacheDoc{Method: "unavailable", Error: op + ": " + errText(err), PageSizeBytes: pc.PageSizeBytes,
		Pages: pc.Pages, Map: []residencyCell{}}
}

// cells cuts pages into at most residencyCells runs of nearly equal size.
func cells(pages, ps int64) []residencyCell {
	n := min(pages, residencyCells)
	out := make([]residencyCell, n)
	for i := range n {
		lo, hi := i*pages/n, (i+1)*pages/n
		out[i] = residencyCell{OffsetBytes: lo * ps, Pages: hi - lo}
	}
	return out
}

func cachestatResidency(fd int, pc *pageCacheDoc) error {
	var cs unix.Cachestat_t
	if err := cachestat(fd, 0, 0, &cs); err != nil { // length 0: to the end
		return err
	}
	pc.Method = "cachestat"
	pc.ResidentPages = int64(cs.Cache)
	dirty, wb, ev, rev := int64(cs.Dirty), int64(cs.Writeback), int64(cs.Evicted), int64(cs.Recently_evicted)
	pc.DirtyPages, pc.WritebackPages, pc.EvictedPages, pc.RecentlyEvictedPages = &dirty, &wb, &ev, &rev
	for i := range pc.Map {
		c := &pc.Map[i]
		if err := cachestat(fd, c.OffsetBytes, c.Pages*pc.PageSizeBytes, &cs); err != nil {
			return err
		}
		c.ResidentPages = min(int64(cs.Cache), c.Pages)
	}
	return nil
}

func cachestat(fd int, off, length int64, cs *unix.Cachestat_t) error {
	rng := unix.CachestatRange{Off: uint64(off), Len: uint64(length)}
	for {
		err := unix.Cachestat(uint(fd), &rng, cs, 0)
		if err != unix.EINTR {
			return err
		}
	}
}

// mincoreResidency maps the file a window at a time and asks mincore
// which pages are resident. Mapping and mincore fault nothing in.
func mincoreResidency(fd int, size int64, pc *pageCacheDoc) error {
	ps := pc.PageSizeBytes
	for off := int64(0); off < size; off += mincoreWindow {
		n := min(int64(mincoreWindow), size-off)
		mem, err := unix.Mmap(fd, off, int(n), unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			return err
		}
		vec := make([]byte, (n+ps-1)/ps)
		err = mincore(mem, vec)
		unix.Munmap(mem)
		if err != nil {
			return err
		}
		tally(pc, off/ps, vec)
	}
	pc.Method = "mincore"
	return nil
}

// tally counts the resident pages of a mincore vector whose first entry
// is page first of the file, in total and in the cells of pc.Map.
func tally(pc *pageCacheDoc, first int64, vec []byte) {
	ps := pc.PageSizeBytes
	cell := 0
	for i, v := range vec {
		if v&1 == 0 {
			continue
		}
		pc.ResidentPages++
		page := first + int64(i)
		for page*ps >= pc.Map[cell].OffsetBytes+pc.Map[cell].Pages*ps {
			cell++
		}
		pc.Map[cell].ResidentPages++
	}
}

func mincore(mem, vec []byte) error {
	_, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(len(mem)), uintptr(unsafe.Pointer(&vec[0])))
	if e != 0 {
		return e
	}
	return nil
}

// fsNames names the filesystems of statfs f_type values.
var fsNames = map[int64]string{
	unix.EXT4_SUPER_MAGIC:      "ext4", // also ext2 and ext3: they share the magic
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	0x2fc12fc1:                 "zfs",
	unix.F2FS_SUPER_MAGIC:      "f2fs",
	unix.BCACHEFS_SUPER_MAGIC:  "bcachefs",
	unix.NFS_SUPER_MAGIC:       "nfs",
	unix.FUSE_SUPER_MAGIC:      "fuse",
	unix.CIFS_SUPER_MAGIC:      "cifs",
	unix.SMB2_SUPER_MAGIC:      "smb2",
	unix.CEPH_SUPER_MAGIC:      "ceph",
	0x01021997:                 "9p",
	unix.RAMFS_MAGIC:           "ramfs",
	unix.HUGETLBFS_MAGIC:       "hugetlbfs",
	unix.SQUASHFS_MAGIC:        "squashfs",
	0xe0f5e1e2:                 "erofs",
	unix.EXFAT_SUPER_MAGIC:     "exfat",
	unix.MSDOS_SUPER_MAGIC:     "vfat",
	unix.ISOFS_SUPER_MAGIC:     "iso9660",
	0x01161970:                 "gfs2",
	unix.OCFS2_SUPER_MAGIC:     "ocfs2",
	unix.NILFS_SUPER_MAGIC:     "nilfs2",
	unix.PROC_SUPER_MAGIC:      "proc",
	unix.SYSFS_MAGIC:           "sysfs",
}

func fsName(magic int64) string {
	if n, ok := fsNames[magic]; ok {
		return n
	}
	return "unknown"
}

// renderInspect writes the human view of each inspected file; files that
// failed are left out (their errors are on stderr).
func renderInspect(w io.Writer, d inspectDoc) error {
	first := true
	for _, f := range d.Files {
		if f.Details == nil {
			continue
		}
		if !first {
			fmt.Fprintln(w)
		}
		first = false
		if err := renderFile(w, f); err != nil {
			return err
		}
	}
	return nil
}

func renderFile(w io.Writer, f fileReport) error {
	tw := newTable(w)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("%s\n", safe(f.Path))
	p("  size\t%s (%s bytes), %s allocated\n", ibytes(f.SizeBytes), count(f.SizeBytes), ibytes(f.AllocatedBytes))
	p("  filesystem\t%s (%#x), preferred I/O size %s\n", f.Filesystem.Type, f.Filesystem.Magic, ibytes(f.BlockSizeBytes))
	if f.Filesystem.PlainSyscalls {
		p("  ringfs I/O\tplain syscalls (io_uring would hand every request on this filesystem to a kernel worker thread)\n")
	}
	switch dio := f.DirectIO; dio.Alignment {
	case "reported":
		read := ""
		if dio.ReadOffsetAlignBytes != 0 {
			read = fmt.Sprintf(" (%s for reads)", ibytes(dio.ReadOffsetAlignBytes))
		}
		p("  O_DIRECT\tbuffers aligned to %s, offsets and lengths to %s%s\n",
			ibytes(dio.MemoryAlignmentBytes), ibytes(dio.OffsetAlignmentBytes), read)
	case "unsupported":
		p("  O_DIRECT\tnot supported on this file\n")
	default:
		p("  O_DIRECT\talignment unknown (not reported by this kernel or filesystem)\n")
	}
	x := &f.Extents
	more := ""
	if x.Truncated {
		more = fmt.Sprintf(", scan stopped after %s extents", count(maxExtents))
	}
	if x.Method == "none" {
		more += "; the filesystem does not report holes"
	}
	p("  extents\t%s (%s), %s (%s)%s\n", plural(x.DataExtents, "data extent"), ibytes(x.DataBytes),
		plural(x.Holes, "hole"), ibytes(x.HoleBytes), more)
	for i, e := range x.List {
		if i == humanExtents {
			p("\t… %s more (see --json)\n", count(len(x.List)-humanExtents))
			break
		}
		p("\t%s\t%s–%s\t%s\n", e.Type, count(e.OffsetBytes), count(e.OffsetBytes+e.LengthBytes), ibytes(e.LengthBytes))
	}
	pc := &f.PageCache
	switch pc.Method {
	case "none":
		p("  page cache\tempty file\n")
	case "unavailable":
		p("  page cache\tunknown (%s)\n", safe(pc.Error))
	default:
		extra := ""
		if pc.DirtyPages != nil {
			extra = fmt.Sprintf("; %s dirty, %s under writeback, %s evicted", count(*pc.DirtyPages),
				count(*pc.WritebackPages), count(*pc.EvictedPages))
		}
		p("  page cache\t%s %s/%s pages, %s (%s) by %s%s\n", residencyBar(pc.Map), count(pc.ResidentPages),
			count(pc.Pages), ibytes(pc.ResidentBytes), percent(float64(pc.ResidentPages), float64(pc.Pages)),
			pc.Method, extra)
	}
	return tw.Flush()
}

// residencyBar draws the map as vmtouch does: 'O' a fully resident cell,
// 'o' a partly resident one, ' ' none.
func residencyBar(m []residencyCell) string {
	var b strings.Builder
	b.WriteByte('[')
	for _, c := range m {
		switch {
		case c.ResidentPages == 0:
			b.WriteByte(' ')
		case c.ResidentPages >= c.Pages:
			b.WriteByte('O')
		default:
			b.WriteByte('o')
		}
	}
	b.WriteByte(']')
	return b.String()
}
