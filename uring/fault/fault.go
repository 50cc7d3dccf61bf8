//go:build linux

package fault

import (
	"fmt"
	"math/rand"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ringfs/ringfs/uring"
)

// Info describes one operation to a predicate.
type Info struct {
	Op  uring.Op
	Fd  int32
	Off int64
	Len int64 // bytes for reads/writes, Len for fallocate and ranged syncs
}

// Predicate decides whether a rule applies to an operation. Predicates
// with state (Nth, From, Random) count only operations that reach them.
type Predicate func(Info) bool

// Any matches every operation.
func Any() Predicate { return func(Info) bool { return true } }

// OnOps matches operations of the given kinds.
func OnOps(ops ...uring.Op) Predicate {
	return func(i Info) bool {
		for _, o := range ops {
			if o == i.Op {
				return true
			}
		}
		return false
	}
}

// Reads matches every kind of read; Writes every kind of write.
func Reads() Predicate  { return func(i Info) bool { return i.Op.IsRead() } }
func Writes() Predicate { return func(i Info) bool { return i.Op.IsWrite() } }

// Syncs matches fsync, fdatasync and sync_file_range.
func Syncs() Predicate { return OnOps(uring.OpFsync, uring.OpSyncFileRange) }

// OnFd matches operations on fd.
func OnFd(fd int32) Predicate { return func(i Info) bool { return i.Fd == fd } }

// InRange matches operations whose bytes overlap [off, end).
func InRange(off, end int64) Predicate {
	return func(i Info) bool {
		l := i.Len
		if l == 0 {
			l = 1
		}
		return i.Off < end && i.Off+l > off
	}
}

// And matches when every predicate does; evaluation stops at the first
// that does not, so stateful predicates placed last count only the
// operations the others accepted.
func And(ps ...Predicate) Predicate {
	return func(i Info) bool {
		for _, p := range ps {
			if !p(i) {
				return false
			}
		}
		return true
	}
}

// Or matches when any predicate does.
func Or(ps ...Predicate) Predicate {
	return func(i Info) bool {
		for _, p := range ps {
			if p(i) {
				return true
			}
		}
		return false
	}
}

// Nth matches the n-th operation it sees (1-based) and no other.
func Nth(n uint64) Predicate {
	var seen uint64
	return func(Info) bool { seen++; return seen == n }
}

// From matches the n-th operation it sees and every one after it.
func From(n uint64) Predicate {
	var seen uint64
	return func(Info) bool { seen++; return seen >= n }
}

// Random matches each operation with probability p, from a seeded source.
func Random(seed int64, p float64) Predicate {
	rng := rand.New(rand.NewSource(seed))
	return func(Info) bool { return rng.Float64() < p }
}

// Stage says where a rule acts.
type Stage uint8

const (
	// StageComplete replaces the result after the kernel ran the operation.
	StageComplete Stage = iota
	// StageIssue fails the operation before the kernel sees it.
	StageIssue
)

// Effect is what a rule does to a matching operation.
type Effect struct {
	// Errno, when set, is reported as the operation's result.
	Errno syscall.Errno
	// Short, when positive and the operation moved more bytes, reports
	// only this many (the backend then resubmits the rest).
	Short int32
	// ShortWrite0 reports a write of zero bytes.
	ShortWrite0 bool
	// Delay sleeps before the result is reported.
	Delay time.Duration
}

// Rule is a predicate, a stage and an effect.
type Rule struct {
	Name  string
	When  Predicate
	Stage Stage
	Do    Effect
}

// EnterRule fails io_uring_enter calls: When is given the 1-based index of
// the call.
type EnterRule struct {
	Name  string
	When  func(call uint64) bool
	Errno syscall.Errno
}

// Event is one injected fault, for logs.
type Event struct {
	Rule string
	Info Info
	Res  int32 // result reported
}

// Injector implements uring.Injector.
type Injector struct {
	healed atomic.Bool
	fired  atomic.Uint64
	calls  atomic.Uint64

	mu sync.Mutex
	// rules and enterRules are evaluated in order; the first match acts. +checklocks:mu
	rules      []Rule
	enterRules []EnterRule
	// events keeps the most recent injected faults (at most maxEvents). +checklocks:mu
	events []Event
}

const maxEvents = 1024

var _ uring.Injector = (*Injector)(nil)

// New returns an Injector with the given rules.
func New(rules ...Rule) *Injector {
	return &Injector{rules: rules}
}

// Add appends a rule.
func (in *Injector) Add(r Rule) {
	in.mu.Lock()
	in.rules = append(in.rules, r)
	in.mu.Unlock()
}

// AddEnter appends an io_uring_enter rule.
func (in *Injector) AddEnter(r EnterRule) {
	in.mu.Lock()
	in.enterRules = append(in.enterRules, r)
	in.mu.Unlock()
}

// Reset removes every rule and re-enables injection.
func (in *Injector) Reset() {
	in.mu.Lock()
	in.rules, in.enterRules = nil, nil
	in.mu.Unlock()
	in.healed.Store(false)
}

// Heal stops all injection; rules are kept but no longer consulted.
func (in *Injector) Heal() { in.healed.Store(true) }

// Fired returns the number of faults injected so far.
func (in *Injector) Fired() uint64 { return in.fired.Load() }

// Events returns the most recent injected faults, oldest first.
func (in *Injector) Events() []Event {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]Event(nil), in.events...)
}

func info(r *uring.Request) Info {
	i := Info{Op: r.Op, Fd: r.Fd, Off: r.Off, Len: r.Len}
	switch {
	case r.Op.IsRead() || r.Op.IsWrite():
		n := len(r.Buf)
		for _, v := range r.Vecs {
			n += len(v)
		}
		i.Len = int64(n)
	}
	return i
}

// Enter implements uring.Injector.
func (in *Injector) Enter() syscall.Errno {
	call := in.calls.Add(1)
	if in.healed.Load() {
		return 0
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, r := range in.enterRules {
		if r.When(call) {
			in.record(Event{Rule: r.Name, Res: -int32(r.Errno)})
			return r.Errno
		}
	}
	return 0
}

// Issue implements uring.Injector.
func (in *Injector) Issue(r *uring.Request) (int32, bool) {
	if in.healed.Load() {
		return 0, false
	}
	rule, ok := in.match(StageIssue, r)
	if !ok {
		return 0, false
	}
	if rule.Do.Delay > 0 {
		time.Sleep(rule.Do.Delay)
	}
	if rule.Do.Errno == 0 {
		return 0, false // a pure delay
	}
	res := -int32(rule.Do.Errno)
	in.log(rule, r, res)
	return res, true
}

// Complete implements uring.Injector.
func (in *Injector) Complete(r *uring.Request, res int32) int32 {
	if in.healed.Load() {
		return res
	}
	rule, ok := in.match(StageComplete, r)
	if !ok {
		return res
	}
	if rule.Do.Delay > 0 {
		time.Sleep(rule.Do.Delay)
	}
	out := res
	switch {
	case rule.Do.Errno != 0:
		out = -int32(rule.Do.Errno)
	case rule.Do.ShortWrite0 && r.Op.IsWrite() && res > 0:
		out = 0
	case rule.Do.Short > 0 && res > rule.Do.Short:
		out = rule.Do.Short
	}
	if out != res || rule.Do.Delay > 0 {
		in.log(rule, r, out)
	}
	return out
}

func (in *Injector) match(stage Stage, r *uring.Request) (Rule, bool) {
	i := info(r)
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, rule := range in.rules {
		if rule.Stage == stage && rule.When(i) {
			return rule, true
		}
	}
	return Rule{}, false
}

func (in *Injector) log(rule Rule, r *uring.Request, res int32) {
	in.mu.Lock()
	in.record(Event{Rule: rule.Name, Info: info(r), Res: res})
	in.mu.Unlock()
}

// record keeps ev in the event log.
//
// Preconditions: in.mu is held.
func (in *Injector) record(ev Event) {
	in.fired.Add(1)
	if len(in.events) == maxEvents {
		copy(in.events, in.events[1:])
		in.events = in.events[:maxEvents-1]
	}
	in.events = append(in.events, ev)
}

// String renders an event as "rule op fd off len -> res".
func (e Event) String() string {
	return fmt.Sprintf("%s %s fd=%d off=%d len=%d -> %d", e.Rule, e.Info.Op, e.Info.Fd, e.Info.Off, e.Info.Len, e.Res)
}
