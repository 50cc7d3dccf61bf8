//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"

	"github.com/ringfs/ringfs/uring"
	"golang.org/x/sys/unix"
)

var probeCommand = &command{
	name:    "probe",
	args:    "[--json]",
	summary: "check this host for io_uring: sysctl, seccomp, opcodes, features, memlock, backend",
	detail: `
Probe reports what ringfs finds on this host: the kernel version,
kernel.io_uring_disabled, whether a seccomp filter is active, whether
io_uring_setup works, which of the opcodes ringfs uses the kernel
supports (IORING_REGISTER_PROBE), the ring's feature bits, RLIMIT_MEMLOCK,
and which backend ringfs picks by default ("uring", or "psync" and why).
When io_uring is blocked it says what to change.

Probe exits with status 0 whenever it could make its report, whether or
not io_uring is usable: read "backend" (or "io_uring_setup.works" in the
JSON) for that.`,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print a JSON document instead of the human view")
		return func(_ context.Context, s *streams, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unexpected argument %q", args[0])
			}
			doc := probeHost()
			if *asJSON {
				return writeJSON(s.out, doc)
			}
			return renderProbe(s.out, doc)
		}
	},
}

// opcode is an io_uring opcode ringfs uses: its uapi name (without
// IORING_OP_), its number in the kernel's enum io_uring_op, and the
// uring.Op it serves.
type opcode struct {
	name   string
	number uint8
	op     uring.Op
}

// usedOpcodes are the opcodes ringfs submits, in kernel order.
var usedOpcodes = []opcode{
	{"NOP", 0, uring.OpNop},
	{"READV", 1, uring.OpReadv},
	{"WRITEV", 2, uring.OpWritev},
	{"FSYNC", 3, uring.OpFsync},
	{"READ_FIXED", 4, uring.OpReadFixed},
	{"WRITE_FIXED", 5, uring.OpWriteFixed},
	{"SYNC_FILE_RANGE", 8, uring.OpSyncFileRange},
	{"ASYNC_CANCEL", 14, uring.OpCancel},
	{"FALLOCATE", 17, uring.OpFallocate},
	{"READ", 22, uring.OpRead},
	{"WRITE", 23, uring.OpWrite},
}

// probeDoc is the JSON document of "fsctl probe" (schema_version 1).
type probeDoc struct {
	SchemaVersion   int        `json:"schema_version"`
	Kind            string     `json:"kind"` // "probe"
	Kernel          kernelDoc  `json:"kernel"`
	IOUringDisabled string     `json:"io_uring_disabled"` // the sysctl's value, or "absent"
	IOUringGroup    string     `json:"io_uring_group"`    // kernel.io_uring_group, or "absent"
	Seccomp         string     `json:"seccomp"`           // "disabled", "strict", "filter" or "unknown"
	Setup           setupDoc   `json:"io_uring_setup"`
	Opcodes         opcodesDoc `json:"opcodes"`
	Features        featureDoc `json:"features"`
	Memlock         memlockDoc `json:"rlimit_memlock"`
	Backend         backendDoc `json:"backend"`
	Fix             []string   `json:"fix"` // what to change so that ringfs gets io_uring; empty when nothing
}

type kernelDoc struct {
	Release string `json:"release"`
	Version string `json:"version"`
	Machine string `json:"machine"`
}

type setupDoc struct {
	Works bool   `json:"works"`
	Errno string `json:"errno,omitempty"` // "EPERM", ... when it failed
	Error string `json:"error,omitempty"`
}

type opcodesDoc struct {
	Probed    bool        `json:"probed"`  // IORING_REGISTER_PROBE answered
	LastOp    int         `json:"last_op"` // highest opcode the kernel knows
	Supported int         `json:"supported_count"`
	Used      []opcodeDoc `json:"used"` // the opcodes ringfs submits
}

type opcodeDoc struct {
	Name      string `json:"name"`
	Number    int    `json:"number"`
	Supported bool   `json:"supported"`
}

type featureDoc struct {
	Bits        uint32   `json:"bits"`
	Names       []string `json:"names"`
	UnnamedBits uint32   `json:"unnamed_bits"` // bits newer than uring.FeatureNames
}

// memlockDoc: -1 is unlimited.
type memlockDoc struct {
	SoftBytes int64 `json:"soft_bytes"`
	HardBytes int64 `json:"hard_bytes"`
}

type backendDoc struct {
	Selected       string `json:"selected"` // what uring.New picks with Backend ""
	FallbackReason string `json:"fallback_reason"`
	Error          string `json:"error,omitempty"` // uring.New failed outright
}

// probeHost gathers the report.
func probeHost() probeDoc {
	d := probeDoc{SchemaVersion: schemaVersion, Kind: "probe", Fix: []string{}}
	var uts unix.Utsname
	if unix.Uname(&uts) == nil {
		d.Kernel = kernelDoc{Release: unix.ByteSliceToString(uts.Release[:]),
			Version: unix.ByteSliceToString(uts.Version[:]), Machine: unix.ByteSliceToString(uts.Machine[:])}
	}
	d.IOUringDisabled = readSysctl("/proc/sys/kernel/io_uring_disabled")
	d.IOUringGroup = readSysctl("/proc/sys/kernel/io_uring_group")
	d.Seccomp = seccompMode("/proc/self/status")
	d.Memlock = memlock()

	var errno syscall.Errno
	be, err := uring.New(uring.Options{Backend: uring.BackendUring})
	if err == nil {
		d.Setup.Works = true
		if ring, ok := be.(*uring.Ring); ok {
			d.Opcodes, d.Features = probeRing(ring.Probe(), ring.Features())
		}
		be.Close()
	} else {
		d.Setup.Error = err.Error()
		if errors.As(err, &errno) {
			d.Setup.Errno = unix.ErrnoName(errno)
		}
		d.Opcodes, d.Features = probeRing(uring.Probe{}, 0)
	}

	if auto, err := uring.New(uring.Options{Backend: uring.BackendAuto}); err == nil {
		st := auto.Stats()
		d.Backend = backendDoc{Selected: st.Backend, FallbackReason: st.FallbackReason}
		auto.Close()
	} else {
		d.Backend = backendDoc{Error: err.Error()}
	}
	d.Fix = advice(&d, errno)
	return d
}

func probeRing(p uring.Probe, features uint32) (opcodesDoc, featureDoc) {
	o := opcodesDoc{LastOp: int(p.LastOp), Used: make([]opcodeDoc, 0, len(usedOpcodes))}
	for _, s := range p.Supported {
		if s {
			o.Supported++
		}
	}
	o.Probed = o.Supported > 0
	for _, op := range usedOpcodes {
		o.Used = append(o.Used, opcodeDoc{Name: op.name, Number: int(op.number), Supported: p.Supported[op.number]})
	}
	f := featureDoc{Bits: features, Names: []string{}, UnnamedBits: features}
	for _, fn := range uring.FeatureNames {
		if features&fn.Bit != 0 {
			f.Names = append(f.Names, fn.Name)
			f.UnnamedBits &^= fn.Bit
		}
	}
	return o, f
}

// readSysctl returns the trimmed contents of a /proc/sys file, or
// "absent".
func readSysctl(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "absent"
	}
	return strings.TrimSpace(string(b))
}

// seccompMode reads the Seccomp field of /proc/self/status.
func seccompMode(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "Seccomp:")
		if !ok {
			continue
		}
		switch strings.TrimSpace(v) {
		case "0":
			return "disabled"
		case "1":
			return "strict"
		case "2":
			return "filter"
		}
	}
	return "unknown"
}

func memlock() memlockDoc {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl); err != nil {
		return memlockDoc{SoftBytes: -1, HardBytes: -1}
	}
	lim := func(v uint64) int64 {
		if v == unix.RLIM_INFINITY || v > 1<<62 {
			return -1
		}
		return int64(v)
	}
	return memlockDoc{SoftBytes: lim(rl.Cur), HardBytes: lim(rl.Max)}
}

// advice says what to change so that ringfs gets io_uring, given why
// io_uring_setup failed.
func advice(d *probeDoc, errno syscall.Errno) []string {
	fix := []string{}
	if !d.Setup.Works {
		blocked := errno == unix.EPERM || errno == unix.EACCES || errno == unix.ENOSYS
		switch {
		case blocked && d.IOUringDisabled == "2":
			fix = append(fix, "io_uring is disabled for every process: run 'sysctl -w kernel.io_uring_disabled=0' (and set it in /etc/sysctl.d/ to keep it)")
		case blocked && d.IOUringDisabled == "1":
			fix = append(fix, fmt.Sprintf("io_uring is limited to processes with CAP_SYS_ADMIN or in group kernel.io_uring_group (%s): run ringfs in that group, or run 'sysctl -w kernel.io_uring_disabled=0'", d.IOUringGroup))
		case blocked && d.Seccomp == "filter":
			fix = append(fix, "a seccomp filter blocks io_uring (Docker's and containerd's default profiles do): allow io_uring_setup, io_uring_enter and io_uring_register in the profile (docker run --security-opt seccomp=PROFILE.json; in Kubernetes a Localhost seccompProfile)")
		case errno == unix.ENOSYS:
			fix = append(fix, "this kernel has no io_uring (built without CONFIG_IO_URING, or older than 5.1): use Linux 5.15 or newer")
		case errno == unix.ENOMEM:
			fix = append(fix, "io_uring_setup ran out of locked memory: raise RLIMIT_MEMLOCK (ulimit -l; kernels before 5.12 charge rings to it)")
		case blocked:
			fix = append(fix, "io_uring_setup is refused: allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile, or run 'sysctl -w kernel.io_uring_disabled=0'")
		default:
			fix = append(fix, "io_uring_setup failed: "+d.Setup.Error)
		}
		return fix
	}
	var missing []string
	for _, op := range d.Opcodes.Used {
		if !op.Supported {
			missing = append(missing, op.Name)
		}
	}
	if d.Opcodes.Probed && len(missing) > 0 {
		fix = append(fix, fmt.Sprintf("the kernel lacks opcodes ringfs uses (%s): use Linux 5.15 or newer", strings.Join(missing, ", ")))
	}
	return fix
}

func renderProbe(w io.Writer, d probeDoc) error {
	tw := newTable(w)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format, a...) }
	p("kernel\tLinux %s %s (%s)\n", safe(d.Kernel.Release), safe(d.Kernel.Machine), safe(d.Kernel.Version))
	disabled := d.IOUringDisabled
	switch disabled {
	case "0":
		disabled += " (enabled for all)"
	case "1":
		disabled += " (only CAP_SYS_ADMIN and group kernel.io_uring_group " + safe(d.IOUringGroup) + ")"
	case "2":
		disabled += " (disabled for all)"
	}
	p("io_uring_disabled\t%s\n", safe(disabled))
	p("seccomp\t%s\n", d.Seccomp)
	if d.Setup.Works {
		p("io_uring_setup\tworks\n")
	} else {
		p("io_uring_setup\tfails: %s\n", safe(d.Setup.Error))
	}
	lim := func(v int64) string {
		if v < 0 {
			return "unlimited"
		}
		return ibytes(v)
	}
	p("RLIMIT_MEMLOCK\t%s (hard %s)\n", lim(d.Memlock.SoftBytes), lim(d.Memlock.HardBytes))
	switch {
	case d.Backend.Error != "":
		p("backend\tnone: %s\n", safe(d.Backend.Error))
	case d.Backend.FallbackReason != "":
		p("backend\t%s, because %s\n", safe(d.Backend.Selected), safe(d.Backend.FallbackReason))
	default:
		p("backend\t%s\n", safe(d.Backend.Selected))
	}
	if d.Setup.Works {
		names := "none"
		if len(d.Features.Names) > 0 {
			names = strings.Join(d.Features.Names, " ")
		}
		if d.Features.UnnamedBits != 0 {
			names += fmt.Sprintf(" (and %#x, not named here)", d.Features.UnnamedBits)
		}
		p("features\t%#x: %s\n", d.Features.Bits, names)
		if d.Opcodes.Probed {
			p("opcodes\t%d supported, highest %d\n", d.Opcodes.Supported, d.Opcodes.LastOp)
		} else {
			p("opcodes\tunknown (IORING_REGISTER_PROBE refused; before Linux 5.6)\n")
		}
	}
	if d.Setup.Works && d.Opcodes.Probed {
		p("\nOPCODE\tNUMBER\tSUPPORTED\n")
		for _, op := range d.Opcodes.Used {
			yes := "yes"
			if !op.Supported {
				yes = "NO"
			}
			p("%s\t%d\t%s\n", op.Name, op.Number, yes)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range d.Fix {
		if _, err := fmt.Fprintf(w, "\nfix: %s\n", f); err != nil {
			return err
		}
	}
	return nil
}
