//go:build linux

package pagecache

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
)

// TestErrSeq is the Linux errseq contract, one row per rule. A script is
// a sequence of steps: "open A" samples a handle, "record EIO" notes an
// error, "check A" asserts what A's check reports (an errno name or nil).
func TestErrSeq(t *testing.T) {
	tests := []struct {
		name   string
		script string
	}{
		{"no error, nothing reported", "open A; check A nil; check A nil"},
		{"open before the error: reported once", "open A; record EIO; check A EIO; check A nil"},
		{"every handle open at the time sees it once", "open A; open B; record EIO; check A EIO; check B EIO; check A nil; check B nil"},
		{"handle opened after a seen error does not see it", "open A; record EIO; check A EIO; open B; check B nil"},
		{"unseen error goes to the next sampler", "record EIO; open A; check A EIO; check A nil"},
		{"unseen error goes to one later sampler only", "record EIO; open A; check A EIO; open B; check B nil"},
		{"two samplers before anyone checks both see it", "record EIO; open A; open B; check A EIO; check B EIO"},
		{"unseen sampled error also reaches earlier handles", "open A; record EIO; open B; check B EIO; check A EIO"},
		{"latest of several errors reported once", "open A; record EIO; record ENOSPC; check A ENOSPC; check A nil"},
		{"a new error after a seen one is reported again", "open A; record EIO; check A EIO; record EIO; check A EIO; check A nil"},
		{"each handle sees each error once", "open A; record EIO; check A EIO; open B; record ENOSPC; check B ENOSPC; check A ENOSPC; check A nil; check B nil"},
		{"nil records nothing", "open A; record nil; check A nil"},
		{"a checker of an old error does not hide a new one", "open A; open B; record EIO; check A EIO; record ENOSPC; check B ENOSPC; check A ENOSPC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e ErrSeq
			handles := map[string]*uint64{}
			for _, step := range strings.Split(tt.script, ";") {
				f := strings.Fields(step)
				switch f[0] {
				case "open":
					c := e.Sample()
					handles[f[1]] = &c
				case "record":
					e.Record(errnoNamed(t, f[1]))
				case "check":
					got := e.Check(handles[f[1]])
					want := errnoNamed(t, f[2])
					if (want == nil) != (got == nil) || (want != nil && !errors.Is(got, want)) {
						t.Fatalf("%q: got %v, want %v", step, got, want)
					}
				default:
					t.Fatalf("bad step %q", step)
				}
			}
			t.Logf("%s: ok", tt.script)
		})
	}
}

func errnoNamed(t *testing.T, name string) error {
	switch name {
	case "nil":
		return nil
	case "EIO":
		return syscall.EIO
	case "ENOSPC":
		return syscall.ENOSPC
	}
	t.Fatalf("unknown errno %q", name)
	return nil
}

// TestErrSeqPending: Pending tells whether an error is waiting for a handle.
func TestErrSeqPending(t *testing.T) {
	var e ErrSeq
	steps := []struct {
		do   func()
		want bool
	}{
		{func() {}, false},
		{func() { e.Record(syscall.EIO) }, true},
		{func() { c := e.Sample(); e.Check(&c) }, false},
		{func() { e.Record(fmt.Errorf("wrapped: %w", syscall.ENOSPC)) }, true},
	}
	for i, s := range steps {
		s.do()
		if got := e.Pending(); got != s.want {
			t.Fatalf("step %d: Pending = %v, want %v", i, got, s.want)
		}
	}
	t.Logf("%d Pending transitions checked", len(steps))
}
