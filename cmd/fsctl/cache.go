//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"

	"github.com/ringfs/ringfs/engine"
)

var cacheCommand = &command{
	name:    "cache",
	args:    "--socket PATH [--json] [--timeout DURATION]",
	summary: "list the files a running engine holds (GET /files on its socket)",
	detail: `
Cache lists every file the running engine holds: path, size, bytes
resident in its page cache, dirty bytes not yet written back, open
handles and mappings, and whether a writeback error is pending (not yet
reported to a handle). The most resident files come first.`,
	setup: func(fs *flag.FlagSet) runFunc {
		var f socketFlags
		f.register(fs)
		return func(ctx context.Context, s *streams, args []string) error {
			c, err := f.client(args, s)
			if err != nil {
				return err
			}
			defer c.close()
			// An empty list says nothing of who answered: the stats
			// say whether an engine does.
			if _, err := c.getStats(ctx); err != nil {
				return err
			}
			files, err := c.getFiles(ctx)
			if err != nil {
				return err
			}
			doc := newCacheDoc(files)
			if f.json {
				return writeJSON(s.out, doc)
			}
			return renderCache(s.out, doc)
		}
	},
}

// cacheDoc is the JSON document of "fsctl cache" (schema_version 1).
type cacheDoc struct {
	SchemaVersion int       `json:"schema_version"`
	Kind          string    `json:"kind"` // "cache"
	Files         []fileDoc `json:"files"`
	Total         totalDoc  `json:"total"`
}

type fileDoc struct {
	Path          string `json:"path"`
	SizeBytes     int64  `json:"size_bytes"`
	ResidentBytes int64  `json:"resident_bytes"`
	DirtyBytes    int64  `json:"dirty_bytes"`
	Handles       int    `json:"handles"`
	Mappings      int    `json:"mappings"`
	PendingError  bool   `json:"pending_writeback_error"`
}

type totalDoc struct {
	Files         int   `json:"files"`
	SizeBytes     int64 `json:"size_bytes"`
	ResidentBytes int64 `json:"resident_bytes"`
	DirtyBytes    int64 `json:"dirty_bytes"`
	Handles       int   `json:"handles"`
	Mappings      int   `json:"mappings"`
	PendingErrors int   `json:"files_pending_writeback_error"`
}

// newCacheDoc sorts the files by resident bytes, most first, then path.
func newCacheDoc(files []engine.FileStats) cacheDoc {
	d := cacheDoc{SchemaVersion: schemaVersion, Kind: "cache", Files: make([]fileDoc, 0, len(files))}
	for _, f := range files {
		d.Files = append(d.Files, fileDoc{Path: f.Path, SizeBytes: f.SizeBytes, ResidentBytes: f.ResidentBytes,
			DirtyBytes: f.DirtyBytes, Handles: f.Handles, Mappings: f.Mappings, PendingError: f.PendingError})
		t := &d.Total
		t.Files++
		t.SizeBytes += f.SizeBytes
		t.ResidentBytes += f.ResidentBytes
		t.DirtyBytes += f.DirtyBytes
		t.Handles += f.Handles
		t.Mappings += f.Mappings
		if f.PendingError {
			t.PendingErrors++
		}
	}
	sort.SliceStable(d.Files, func(i, j int) bool {
		a, b := &d.Files[i], &d.Files[j]
		if a.ResidentBytes != b.ResidentBytes {
			return a.ResidentBytes > b.ResidentBytes
		}
		return a.Path < b.Path
	})
	return d
}

func renderCache(w io.Writer, d cacheDoc) error {
	if len(d.Files) == 0 {
		_, err := fmt.Fprintln(w, "the engine holds no files")
		return err
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "PATH\tSIZE\tRESIDENT\tDIRTY\tHANDLES\tMAPPINGS\tWRITEBACK\n")
	for _, f := range d.Files {
		wb := "ok"
		if f.PendingError {
			wb = "ERROR PENDING"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", safe(f.Path), ibytes(f.SizeBytes), ibytes(f.ResidentBytes),
			ibytes(f.DirtyBytes), count(f.Handles), count(f.Mappings), wb)
	}
	t := &d.Total
	fmt.Fprintf(tw, "total: %s\t%s\t%s\t%s\t%s\t%s\t%s\n", plural(t.Files, "file"), ibytes(t.SizeBytes), ibytes(t.ResidentBytes),
		ibytes(t.DirtyBytes), count(t.Handles), count(t.Mappings), plural(t.PendingErrors, "error"))
	return tw.Flush()
}
