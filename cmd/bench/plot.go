//go:build linux

package main

import (
	"errors"
	"fmt"
	"html"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// plotOutput is the --plot file. The chart goes to a temporary file in
// the same directory, created before the run, so that a directory that
// cannot be written fails at once rather than after minutes of
// benchmarks; it is renamed to the path only when the run succeeded, so
// that a failed run leaves whatever was at the path as it was.
type plotOutput struct {
	path    string
	f       *os.File // the temporary file
	written bool
}

func createPlot(path string) (*plotOutput, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return nil, &fs.PathError{Op: "create", Path: path, Err: syscall.EISDIR}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the temporary name would only confuse
		}
		return nil, &fs.PathError{Op: "create", Path: path, Err: err}
	}
	forcedExit.add(f.Name())
	return &plotOutput{path: path, f: f}, nil
}

// write writes plotSVG(doc) to the temporary file, closes it and renames
// it to the path.
func (p *plotOutput) write(doc *document) error {
	_, err := p.f.WriteString(plotSVG(doc))
	if err == nil {
		err = p.f.Chmod(0o644) // CreateTemp made it 0600
	}
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(p.f.Name(), p.path)
	}
	p.written = err == nil
	if p.written {
		forcedExit.drop(p.f.Name())
	}
	return err
}

// discard removes the temporary file unless write succeeded.
func (p *plotOutput) discard() {
	if !p.written {
		p.f.Close()
		os.Remove(p.f.Name())
		forcedExit.drop(p.f.Name())
	}
}

// Plot geometry, in SVG user units.
const (
	plotCols     = 2
	plotPanelW   = 460
	plotLabelW   = 150 // backend names
	plotValueW   = 60  // the IOPS figure after a bar
	plotRowH     = 18
	plotTitleH   = 34
	plotPanelGap = 18
	plotMargin   = 16
	plotHeaderH  = 46
)

// plotGroup is one panel: the rows of one variant of one workload.
type plotGroup struct {
	title string
	rows  []result
}

func plotGroups(doc *document) []plotGroup {
	var gs []plotGroup
	for _, w := range workloads {
		var cur *plotGroup
		var curV variant
		for _, r := range doc.Results {
			if r.Workload != w.name {
				continue
			}
			if cur == nil || r.variant != curV {
				title := fmt.Sprintf("%s: %s", w.name, blockWords(w.block))
				switch {
				case r.variant.batched:
					title += fmt.Sprintf(", 1 goroutine, Submit batches of %d", r.variant.depth)
				case r.variant.jobs == 1:
					title += ", 1 goroutine"
				case r.variant.jobs > 0 || r.variant.fromFlag:
					title += fmt.Sprintf(", %d goroutines", r.Jobs)
				}
				gs = append(gs, plotGroup{title: title})
				cur, curV = &gs[len(gs)-1], r.variant
			}
			cur.rows = append(cur.rows, r)
		}
	}
	return gs
}

// barColor groups backends by family: ringfs blues, plain Go greys, fio
// oranges.
func barColor(backend string) string {
	switch {
	case backend == "ringfs":
		return "#1f5fa8"
	case strings.HasPrefix(backend, "ringfs-"):
		return "#5b8fd0"
	case backend == "iouringgo":
		return "#7b5ea7"
	case backend == "os":
		return "#555555"
	case backend == "mmap":
		return "#999999"
	case strings.HasPrefix(backend, "fio-"):
		return "#e08a2c"
	}
	return "#888888"
}

// plotSVG draws IOPS per backend, one panel per workload variant, each
// with its own linear scale (the workloads differ by orders of
// magnitude). It is self-contained SVG with no scripts or external
// references.
func plotSVG(doc *document) string {
	gs := plotGroups(doc)
	colH := [plotCols]int{}
	type placed struct {
		g    plotGroup
		x, y int
	}
	var ps []placed
	for _, g := range gs {
		c := 0
		for i := range colH {
			if colH[i] < colH[c] {
				c = i
			}
		}
		h := plotTitleH + len(g.rows)*plotRowH
		ps = append(ps, placed{g: g, x: plotMargin + c*(plotPanelW+plotPanelGap), y: plotHeaderH + colH[c]})
		colH[c] += h + plotPanelGap
	}
	height := plotHeaderH + max(colH[0], colH[1]) + plotMargin
	width := 2*plotMargin + plotCols*plotPanelW + (plotCols-1)*plotPanelGap

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	c := doc.Config
	date := c.Date
	if len(date) >= 10 {
		date = date[:10]
	}
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">ringfs bench: IOPS per backend (longer is better)</text>`+"\n", plotMargin)
	fmt.Fprintf(&b, `<text x="%d" y="37" fill="#555">%s</text>`+"\n", plotMargin, html.EscapeString(fmt.Sprintf(
		"%s · %s · %d CPUs · kernel %s · %s · file %s, working set %s",
		date, c.CPU, c.NumCPU, c.Kernel, c.Filesystem, describeSize(c.FileSizeBytes), describeSize(c.WorkingSetBytes))))
	for _, p := range ps {
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s</text>`+"\n", p.x, p.y+18, html.EscapeString(p.g.title))
		top := 0.0
		for _, r := range p.g.rows {
			top = max(top, r.IOPS)
		}
		barMax := float64(plotPanelW - plotLabelW - plotValueW)
		for i, r := range p.g.rows {
			y := p.y + plotTitleH + i*plotRowH - 8
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n",
				p.x+plotLabelW-6, y+12, html.EscapeString(r.Backend))
			if r.Error != "" {
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#b00">failed</text>`+"\n", p.x+plotLabelW, y+12)
				continue
			}
			w := 0.0
			if top > 0 {
				w = r.IOPS / top * barMax
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`+"\n",
				p.x+plotLabelW, y+2, max(w, 1), plotRowH-5, barColor(r.Backend),
				html.EscapeString(fmt.Sprintf("%s %s: %.0f IOPS", r.Workload, r.Backend, r.IOPS)))
			fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(p.x+plotLabelW)+w+4, y+12, formatIOPS(r.IOPS))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}
