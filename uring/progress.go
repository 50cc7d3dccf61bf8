//go:build linux

package uring

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// maxRetries bounds the resubmissions of one request that make no progress
// (completions of -EINTR or -EAGAIN, zero-byte writes). Past it the request
// fails with the last errno.
const maxRetries = 64

// progress is what has happened to one request so far.
type progress struct {
	done    int    // bytes transferred by earlier completions
	retries int32  // resubmissions without progress
	cancels uint64 // counters.cancels when the request was last handed to the kernel
}

// settle applies one completion result res (bytes, or -errno) to r and
// reports whether r is finished. When it is not, the caller resubmits r for
// the remainder described by p.
func settle(r *Request, p *progress, res int32, c *counters) bool {
	if res < 0 {
		errno := syscall.Errno(-res)
		switch {
		case errno == syscall.EINTR && p.retries < maxRetries:
			p.retries++
			c.retryCQEEINTR.Add(1)
			return false
		case errno == syscall.EAGAIN && r.Flags&unix.RWF_NOWAIT == 0 && p.retries < maxRetries:
			p.retries++
			c.retryCQEAgain.Add(1)
			return false
		case errno == syscall.ENOENT && r.Op == OpCancel:
			errno = 0 // nothing was in flight to cancel
		}
		if errno != 0 {
			return finish(r, p.done, errno, c)
		}
		return finish(r, 0, 0, c)
	}
	if !r.Op.IsRead() && !r.Op.IsWrite() {
		return finish(r, 0, 0, c)
	}
	p.done += int(res)
	total := r.length()
	switch {
	case p.done >= total:
		return finish(r, total, 0, c)
	case res == 0 && r.Op.IsRead():
		return finish(r, p.done, 0, c) // end of file
	case res == 0:
		// A write that moved nothing: retry a bounded number of times.
		if p.retries >= maxRetries {
			return finish(r, p.done, syscall.EIO, c)
		}
		p.retries++
	}
	c.shortResubmits.Add(1)
	return false
}

// retryCanceled reports whether res is a -ECANCELED that nobody asked for
// and counts the retry, bounded like those of settle: the kernel cancels
// work it could not start, as when creating an io-wq worker fails because
// the submitting thread kept receiving signals (Go's preemption signals,
// a signal storm) or when the submitting thread has exited. Such a
// request never ran; it is resubmitted. A request handed to the kernel
// before an OpCancel was accepted may be that cancel's target: its
// -ECANCELED stands. Only an open ring asks: Close cancels on purpose.
func retryCanceled(r *Request, p *progress, res int32, c *counters) bool {
	if res != -int32(syscall.ECANCELED) || r.Op == OpCancel || p.retries >= maxRetries || p.cancels != c.cancels.Load() {
		return false
	}
	p.retries++
	c.retryCQECanceled.Add(1)
	return true
}

func finish(r *Request, n int, errno syscall.Errno, c *counters) bool {
	r.N = n
	if errno != 0 {
		r.Err = errno
		c.errors.Add(1)
	} else {
		r.Err = nil
	}
	return true
}

// chunk returns the part of r.Buf still to transfer after done bytes,
// capped at the kernel's per-call maximum.
func chunk(buf []byte, done int) []byte {
	b := buf[done:]
	if len(b) > maxRW {
		b = b[:maxRW]
	}
	return b
}

// fillIovecs writes into iov the iovecs for vecs after skipping done bytes,
// at most maxIovecs entries and maxRW bytes, and returns the filled prefix.
// Empty vectors are skipped.
func fillIovecs(iov []unix.Iovec, vecs [][]byte, done int) []unix.Iovec {
	iov = iov[:0]
	total := 0
	for _, v := range vecs {
		if done >= len(v) {
			done -= len(v)
			continue
		}
		v = v[done:]
		done = 0
		if len(v) > maxRW-total {
			v = v[:maxRW-total]
		}
		iov = append(iov, unix.Iovec{Base: &v[0], Len: uint64(len(v))})
		total += len(v)
		if total == maxRW || len(iov) == maxIovecs {
			break
		}
	}
	return iov
}
