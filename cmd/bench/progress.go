//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// progress shows what is running on one line of stderr, only when stderr
// is a terminal (so logs and pipes stay clean).
type progress struct {
	w     io.Writer
	on    bool
	total int // cells in the run
	n     int // cells started

	count atomic.Pointer[func() int64] // operations so far in the running round
	stop  chan struct{}
	wg    sync.WaitGroup
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.on = err == nil
	}
	return p
}

// cell starts the line for round (of rounds) of c, which runs for d.
func (p *progress) cell(c cell, start time.Time, d time.Duration, round, rounds int) {
	if round == 0 {
		p.n++
	}
	if !p.on {
		return
	}
	p.stop = make(chan struct{})
	p.wg.Add(1)
	label := fmt.Sprintf("[%d/%d] %s %s jobs=%d depth=%d", p.n, p.total, c.w.name, c.b.name, c.jobs, c.v.depth)
	if rounds > 1 {
		label += fmt.Sprintf(" round %d/%d", round+1, rounds)
	}
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			el := time.Since(start)
			line := fmt.Sprintf("%s  %.1f/%.1fs", label, el.Seconds(), d.Seconds())
			if f := p.count.Load(); f != nil && el > 0 {
				line += "  " + formatIOPS(float64((*f)())/el.Seconds()) + " IOPS"
			}
			fmt.Fprintf(p.w, "\r\x1b[K%s", line)
			select {
			case <-p.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// ops sets the counter of operations of the running round (nil: none).
func (p *progress) ops(f func() int64) {
	if f == nil {
		p.count.Store(nil)
		return
	}
	p.count.Store(&f)
}

// done clears the line.
func (p *progress) done() {
	if !p.on || p.stop == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.stop = nil
	fmt.Fprint(p.w, "\r\x1b[K")
}
