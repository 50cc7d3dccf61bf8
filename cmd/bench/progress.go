//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// progress shows what is running on one line of stderr, only when stderr
// is a terminal (so logs and pipes stay clean).
type progress struct {
	w     io.Writer
	on    bool
	total int
	n     int

	mu   sync.Mutex
	stop chan struct{}
	wg   sync.WaitGroup
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w}
	if f, ok := w.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.on = err == nil
	}
	return p
}

// cell starts the line for c; ops, when not nil, counts the operations
// done so far.
func (p *progress) cell(c cell, start time.Time, d time.Duration, ops func() int64) {
	p.n++
	if !p.on {
		return
	}
	p.stop = make(chan struct{})
	p.wg.Add(1)
	label := fmt.Sprintf("[%d/%d] %s %s jobs=%d depth=%d", p.n, p.total, c.w.name, c.b.name, c.jobs, c.v.depth)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			el := time.Since(start)
			line := fmt.Sprintf("%s  %.1f/%.1fs", label, el.Seconds(), d.Seconds())
			if ops != nil && el > 0 {
				line += "  " + formatIOPS(float64(ops())/el.Seconds()) + " IOPS"
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
