//go:build linux

package uring

import "testing"

// Test helpers for the external tests of this directory (package
// uring_test), which import package fault and so cannot live in package
// uring.

// BackendsForTest lists the backends built into this test binary.
func BackendsForTest() []string { return testBackends() }

// OpenForTest opens a backend closed at t's cleanup.
func OpenForTest(t testing.TB, name string, opts Options) Backend { return openBackend(t, name, opts) }

// RandomBytesForTest returns n seeded random bytes.
func RandomBytesForTest(seed uint64, n int) []byte { return randomBytes(seed, n) }

// Limits of the error policy.
const (
	MaxRetriesForTest     = maxRetries
	MaxBusyRetriesForTest = maxBusyRetries
)
