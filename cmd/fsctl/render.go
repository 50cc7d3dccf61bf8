//go:build linux

package main

import (
	"encoding/json"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"
)

// newTable returns the tabwriter every human view uses: columns separated
// by two spaces.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// writeJSON prints v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// safe makes text that came from outside (file paths, server strings)
// safe to print on a terminal: text with control characters, invalid
// UTF-8 or tabs (which would break table columns) is printed quoted.
func safe(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// ibytes formats a byte count with binary units ("1.5 MiB").
func ibytes[T int64 | uint64 | int | uint32](n T) string {
	if n < 0 {
		return "-" + humanize.IBytes(uint64(-int64(n)))
	}
	return humanize.IBytes(uint64(n))
}

// count formats a count with thousands separators.
func count[T int64 | uint64 | int](n T) string {
	if uint64(n) > math.MaxInt64 && n > 0 {
		return strconv.FormatUint(uint64(n), 10)
	}
	return humanize.Comma(int64(n))
}

// perSecond returns n per second over ns nanoseconds, or -1 when ns is
// not positive.
func perSecond(n uint64, ns int64) float64 {
	if ns <= 0 {
		return -1
	}
	return float64(n) * 1e9 / float64(ns)
}

// byteRate formats a rate of bytes per second.
func byteRate(n uint64, ns int64) string {
	r := perSecond(n, ns)
	if r < 0 {
		return "-"
	}
	return humanize.IBytes(uint64(math.Round(r))) + "/s"
}

// opRate formats a rate of operations per second.
func opRate(n uint64, ns int64) string {
	r := perSecond(n, ns)
	switch {
	case r < 0:
		return "-"
	case r > 0 && r < 10:
		return strconv.FormatFloat(r, 'f', 1, 64) + "/s"
	}
	return humanize.Comma(int64(math.Round(r))) + "/s"
}

// percent formats part/whole as a percentage with one decimal, or "-"
// when whole is 0.
func percent(part, whole float64) string {
	if whole <= 0 {
		return "-"
	}
	return strconv.FormatFloat(100*part/whole, 'f', 1, 64) + " %"
}

// duration formats ns with three significant digits ("1.23ms", "65µs").
func duration(ns int64) string {
	d := time.Duration(ns)
	switch {
	case d <= 0:
		return "0"
	case d < time.Microsecond:
		return d.String()
	}
	for _, unit := range []time.Duration{time.Hour, time.Minute, time.Second, time.Millisecond, time.Microsecond} {
		if d >= unit {
			digits := len(strconv.FormatInt(int64(d/unit), 10))
			round := unit
			for i := digits; i < 3; i++ {
				round /= 10
			}
			return d.Round(max(round, 1)).String()
		}
	}
	return d.String()
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// plural returns "1 file" or "2 files"; words whose plural is not
// word+"s" give it after a slash: "batch/batches".
func plural[T int | int64 | uint64](n T, word string) string {
	one, many, ok := strings.Cut(word, "/")
	if !ok {
		many = one + "s"
	}
	if n == 1 {
		return "1 " + one
	}
	return count(n) + " " + many
}
