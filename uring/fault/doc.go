//go:build linux

// Package fault injects failures at the uring boundary, so that every
// layer above can be tested against EIO, ENOSPC, EINTR, EAGAIN, short I/O,
// delays and io_uring_enter failures.
//
// An Injector holds rules. Each rule has a predicate on the operation (its
// kind, fd, byte range, its index among matching operations, or a seeded
// coin) and an effect. Rules at StageIssue stop the operation before it
// reaches the kernel (it has no effect on the file); rules at
// StageComplete replace the kernel's result after the operation ran. Enter
// rules fail io_uring_enter itself (each syscall in psync).
//
// Pass the Injector as uring.Options.Injector. Heal disables every rule,
// so a test can fail a stretch of work and then check recovery.
//
// # Invariants
//
//   - Rules are consulted in the order they were added, those of the
//     operation's stage only; the first whose predicate matches acts and
//     no later one is asked (so a stateful predicate of a later rule does
//     not count that operation).
//   - After Heal no rule is consulted and no predicate runs, until Reset.
//   - Fired counts every injected fault: a failed enter, an error or a
//     short result, and a delay at completion (a delay at issue, with no
//     errno, is not counted). Events keeps the newest 1,024 of them
//     (older ones are dropped), so memory stays bounded however long a
//     test runs.
//   - A StageIssue effect with no Errno only delays: the operation then
//     goes to the kernel unchanged.
//
// # Lock order
//
//	Injector.mu  rules, enter rules, event log
//
// Predicates run with Injector.mu held and must not call back into the
// Injector. Delays sleep without it, so a delayed operation does not hold
// up the rules of others.
//
// # Memory ownership
//
// The Injector never keeps a Request: predicates and events see an Info,
// a copy of the operation's kind, descriptor and range, made during the
// call. Rules belong to the Injector from Add (or New) until Reset.
package fault
