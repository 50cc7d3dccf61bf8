//go:build linux

package engine

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
)

// The reliability matrix of TESTPLAN.md: one subtest of TestReliability
// per row, named by the row's id, so that
//
//	go test -run 'Reliability/F4' ./engine/
//
// runs one row. Rows are registered by reliability_*_test.go files with
// addRow; each records the figures it proves (ops, faults, crash points,
// acknowledged bytes lost, races, leaks) with Figures.Set and logs them.
// TestReliability prints the table at the end and writes it to
// reliabilityReport, where TestReliabilitySummary finds the last run's.

// row is one row of the matrix.
type row struct {
	id   string // "B1", "F4", ...
	what string // what the row drives
	run  func(t *testing.T, fig *Figures)
}

var rows []row

// addRow registers a row; ids must be unique.
func addRow(id, what string, run func(t *testing.T, fig *Figures)) {
	rows = append(rows, row{id: id, what: what, run: run})
}

// Figures are the numbers a row proves.
type Figures struct {
	mu sync.Mutex
	// m holds the figures by name. +checklocks:mu
	m map[string]int64
}

// Set records a figure (later values replace earlier ones).
func (f *Figures) Set(name string, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]int64{}
	}
	f.m[name] = v
}

// Add adds to a figure.
func (f *Figures) Add(name string, v int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]int64{}
	}
	f.m[name] += v
}

func (f *Figures) snapshot() map[string]int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[string]int64, len(f.m))
	for k, v := range f.m {
		out[k] = v
	}
	return out
}

// rowResult is one row of the report.
type rowResult struct {
	ID      string           `json:"id"`
	What    string           `json:"what"`
	Passed  bool             `json:"passed"`
	Skipped bool             `json:"skipped,omitempty"`
	Figures map[string]int64 `json:"figures"`
}

// reliabilityReport is where the last run's table is kept.
var reliabilityReport = filepath.Join(os.TempDir(), "ringfs-reliability.json")

// rowOrder sorts ids by letter group in TESTPLAN order, then number.
func rowOrder(a, b string) int {
	const groups = "BFDXCKMS"
	ga, gb := strings.IndexByte(groups, a[0]), strings.IndexByte(groups, b[0])
	if ga != gb {
		return ga - gb
	}
	var na, nb int
	fmt.Sscanf(strings.TrimLeft(a, "BFDXCKMSp"), "%d", &na)
	fmt.Sscanf(strings.TrimLeft(b, "BFDXCKMSp"), "%d", &nb)
	if na != nb {
		return na - nb
	}
	return strings.Compare(a, b)
}

func TestReliability(t *testing.T) {
	sorted := slices.Clone(rows)
	slices.SortFunc(sorted, func(a, b row) int { return rowOrder(a.id, b.id) })
	var results []rowResult
	for i, r := range sorted {
		if i > 0 && sorted[i-1].id == r.id {
			t.Fatalf("row %s registered twice", r.id)
		}
		fig := &Figures{}
		var skipped bool
		passed := t.Run(r.id, func(t *testing.T) {
			defer func() { skipped = t.Skipped() }()
			r.run(t, fig)
		})
		// After the row's cleanups, which record its outcome figures.
		if m := fig.snapshot(); len(m) > 0 {
			t.Logf("%s figures: %s", r.id, formatFigures(m))
		}
		results = append(results, rowResult{ID: r.id, What: r.what, Passed: passed, Skipped: skipped, Figures: fig.snapshot()})
	}
	if len(results) == 0 {
		return
	}
	t.Logf("reliability matrix (%d rows):\n%s", len(results), renderReport(results))
	if b, err := json.MarshalIndent(results, "", "  "); err == nil {
		os.WriteFile(reliabilityReport, b, 0o644)
	}
}

// TestReliabilitySummary prints the table of the last TestReliability run
// (from any earlier go test invocation on this machine).
func TestReliabilitySummary(t *testing.T) {
	b, err := os.ReadFile(reliabilityReport)
	if err != nil {
		t.Skipf("no reliability report yet (%v): run go test -run TestReliability first", err)
	}
	var results []rowResult
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatalf("%s: %v", reliabilityReport, err)
	}
	t.Logf("last reliability run, from %s:\n%s", reliabilityReport, renderReport(results))
}

func formatFigures(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var sb strings.Builder
	for i, k := range keys {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s=%d", k, m[k])
	}
	return sb.String()
}

func renderReport(results []rowResult) string {
	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROW\tRESULT\tWHAT\tFIGURES")
	for _, r := range results {
		res := "pass"
		switch {
		case r.Skipped:
			res = "skip"
		case !r.Passed:
			res = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.ID, res, r.What, formatFigures(r.Figures))
	}
	tw.Flush()
	return sb.String()
}
