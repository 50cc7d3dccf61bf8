//go:build linux

package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
)

var versionCommand = &command{
	name:    "version",
	args:    "[--json]",
	summary: "show fsctl's version, the commit it was built from, and its Go version",
	detail: `
Version prints fsctl's module version, the VCS revision it was built from
(when the build recorded one), and the Go toolchain and platform.`,
	setup: func(fs *flag.FlagSet) runFunc {
		asJSON := fs.Bool("json", false, "print a JSON document")
		return func(_ context.Context, s *streams, args []string) error {
			if len(args) > 0 {
				return usageErrorf("unexpected argument %q", args[0])
			}
			v := buildVersion()
			if *asJSON {
				return writeJSON(s.out, v)
			}
			rev := v.Revision
			if rev == "" {
				rev = "unknown revision"
			}
			if v.Modified {
				rev += " (modified)"
			}
			_, err := fmt.Fprintf(s.out, "fsctl %s, %s, %s %s\n", v.Version, rev, v.GoVersion, v.Platform)
			return err
		}
	},
}

// versionDoc is the JSON document of "fsctl version" (schema_version 1).
type versionDoc struct {
	SchemaVersion int    `json:"schema_version"`
	Kind          string `json:"kind"` // "version"
	Version       string `json:"version"`
	Revision      string `json:"revision"`
	RevisionTime  string `json:"revision_time"`
	Modified      bool   `json:"modified"`
	GoVersion     string `json:"go_version"`
	Platform      string `json:"platform"`
}

func buildVersion() versionDoc {
	v := versionDoc{SchemaVersion: schemaVersion, Kind: "version", Version: "(devel)",
		GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	if bi.Main.Version != "" {
		v.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.RevisionTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}
