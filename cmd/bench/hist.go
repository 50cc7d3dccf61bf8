//go:build linux

package main

import (
	"math/bits"
	"time"
)

// histogram is a log-linear latency histogram: values below 32 ns have a
// bucket each, larger ones 32 buckets per power of two (3 % wide), so
// percentiles are exact to within 3 % from 1 ns to hours. Adding is
// allocation-free; each goroutine has its own and they are merged after.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	max    int64
}

const (
	histSubBits = 5
	histBuckets = (64 - histSubBits + 1) << histSubBits
)

func bucketOf(v uint64) int {
	if v < 1<<histSubBits {
		return int(v)
	}
	k := bits.Len64(v) - 1 // v in [2^k, 2^(k+1))
	shift := k - histSubBits
	return (shift+1)<<histSubBits + int(v>>shift) - 1<<histSubBits
}

// bucketValue is the middle of bucket i.
func bucketValue(i int) int64 {
	if i < 2<<histSubBits {
		return int64(i)
	}
	shift := i>>histSubBits - 1
	mant := int64(i&(1<<histSubBits-1) + 1<<histSubBits)
	return mant<<shift + (int64(1)<<shift)/2
}

func (h *histogram) add(d time.Duration) { h.addN(d, 1) }

// addN records n operations that each took d (a batch's operations).
func (h *histogram) addN(d time.Duration, n uint64) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(uint64(v))] += n
	h.n += n
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q ≤ 1), never more than the max.
func (h *histogram) quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1
	var seen uint64
	for i, c := range h.counts {
		if seen += c; seen >= rank {
			return min(bucketValue(i), h.max)
		}
	}
	return h.max
}

func timeNs(v int64) time.Duration { return time.Duration(v) }
