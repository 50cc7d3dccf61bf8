//go:build linux

package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ringfs/ringfs/uring"
)

// TestProbeJSON: the probe document parses, and on a kernel where
// io_uring works it lists READ, WRITE and FSYNC as supported.
func TestProbeJSON(t *testing.T) {
	r := runFsctl(t, "probe", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var d probeDoc
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	if d.SchemaVersion != 1 || d.Kind != "probe" || d.Kernel.Release == "" || d.IOUringDisabled == "" {
		t.Fatalf("probe document %+v", d)
	}
	if len(d.Opcodes.Used) != len(usedOpcodes) {
		t.Errorf("%d opcodes listed, want %d", len(d.Opcodes.Used), len(usedOpcodes))
	}
	if !d.Setup.Works {
		if d.Backend.Selected != "psync" || d.Backend.FallbackReason == "" || len(d.Fix) == 0 {
			t.Errorf("io_uring blocked but backend %+v, fix %q", d.Backend, d.Fix)
		}
		t.Skipf("io_uring_setup fails here (%s): opcodes not probed", d.Setup.Error)
	}
	if d.Backend.Selected != "uring" || d.Backend.FallbackReason != "" {
		t.Errorf("io_uring works but the default backend is %+v", d.Backend)
	}
	supported := map[string]bool{}
	for _, op := range d.Opcodes.Used {
		supported[op.Name] = op.Supported
	}
	for _, name := range []string{"READ", "WRITE", "FSYNC"} {
		if !supported[name] {
			t.Errorf("%s not listed as supported: %+v", name, d.Opcodes.Used)
		}
	}
	if d.Features.Bits == 0 || len(d.Features.Names) == 0 || !strings.Contains(strings.Join(d.Features.Names, " "), "NODROP") {
		t.Errorf("features %+v", d.Features)
	}
	if d.Opcodes.LastOp < 23 || d.Opcodes.Supported < len(usedOpcodes) {
		t.Errorf("opcodes %+v", d.Opcodes)
	}
}

// TestOpcodeTable: each kernel opcode number fsctl lists is the one
// package uring submits for that operation: a probe that supports only
// that number supports only that uring.Op.
func TestOpcodeTable(t *testing.T) {
	for _, row := range usedOpcodes {
		var p uring.Probe
		p.Supported[row.number] = true
		for _, other := range usedOpcodes {
			if got := p.Supports(other.op); got != (other.number == row.number) {
				t.Errorf("probe with only opcode %d (%s): Supports(%v) = %v", row.number, row.name, other.op, got)
			}
		}
		if !strings.EqualFold(strings.ReplaceAll(row.name, "ASYNC_", ""), row.op.String()) {
			t.Errorf("%s names uring.%v", row.name, row.op)
		}
	}
}

// TestAdvice: the fix probe suggests matches why io_uring is blocked.
func TestAdvice(t *testing.T) {
	for _, tc := range []struct {
		name     string
		disabled string
		seccomp  string
		errno    syscall.Errno
		want     string
	}{
		{"sysctl 2", "2", "disabled", syscall.EPERM, "sysctl -w kernel.io_uring_disabled=0"},
		{"sysctl 1", "1", "disabled", syscall.EPERM, "kernel.io_uring_group"},
		{"seccomp", "0", "filter", syscall.EPERM, "allow io_uring_setup, io_uring_enter and io_uring_register"},
		{"seccomp ENOSYS", "absent", "filter", syscall.ENOSYS, "seccomp"},
		{"no io_uring", "absent", "disabled", syscall.ENOSYS, "CONFIG_IO_URING"},
		{"memlock", "0", "disabled", syscall.ENOMEM, "RLIMIT_MEMLOCK"},
		{"unexplained EPERM", "0", "disabled", syscall.EPERM, "seccomp profile, or run 'sysctl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := probeDoc{IOUringDisabled: tc.disabled, IOUringGroup: "-1", Seccomp: tc.seccomp,
				Setup: setupDoc{Error: "uring: io_uring_setup: " + tc.errno.Error()}}
			fix := advice(&d, tc.errno)
			if len(fix) != 1 || !strings.Contains(fix[0], tc.want) {
				t.Errorf("fix %q, want one mentioning %q", fix, tc.want)
			}
		})
	}
	d := probeDoc{Setup: setupDoc{Works: true}, Opcodes: opcodesDoc{Probed: true,
		Used: []opcodeDoc{{"READ", 22, true}, {"FALLOCATE", 17, false}}}}
	if fix := advice(&d, 0); len(fix) != 1 || !strings.Contains(fix[0], "FALLOCATE") {
		t.Errorf("missing opcode: fix %q", fix)
	}
	d.Opcodes.Used[1].Supported = true
	if fix := advice(&d, 0); len(fix) != 0 {
		t.Errorf("nothing to fix, got %q", fix)
	}
}

func TestSeccompMode(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ status, want string }{
		{"Name:\tx\nSeccomp:\t0\n", "disabled"},
		{"Seccomp:\t2\nSeccomp_filters:\t1\n", "filter"},
		{"Seccomp:\t1\n", "strict"},
		{"Name:\tx\n", "unknown"},
	} {
		p := filepath.Join(dir, "status")
		os.WriteFile(p, []byte(tc.status), 0o600)
		if got := seccompMode(p); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.status, got, tc.want)
		}
	}
	if got := seccompMode(filepath.Join(dir, "none")); got != "unknown" {
		t.Errorf("missing file: %q", got)
	}
	if got := readSysctl(filepath.Join(dir, "none")); got != "absent" {
		t.Errorf("missing sysctl: %q", got)
	}
}
