package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// build names this binary: its version, VCS revision and Go version. An
// -ldflags "-X main.version=..." value wins; otherwise the module version
// `go install ...@vX` records, else "dev". The revision comes from the VCS
// stamp `go build` adds in a checkout ("+dirty" when it had local changes).
type build struct {
	Version, Revision, GoVersion string
}

// buildVersion reads the build information of the running binary.
func buildVersion() build {
	b := build{Version: version, Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	return fromBuildInfo(version, bi)
}

func fromBuildInfo(ldflagsVersion string, bi *debug.BuildInfo) build {
	b := build{Version: ldflagsVersion, Revision: "unknown", GoVersion: bi.GoVersion}
	if b.GoVersion == "" {
		b.GoVersion = runtime.Version()
	}
	if b.Version == "" || b.Version == "dev" {
		b.Version = "dev"
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			b.Version = v
		}
	}
	var dirty bool
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if dirty && b.Revision != "unknown" {
		b.Revision += "+dirty"
	}
	return b
}

// String is the one-line form the version command and the log print.
func (b build) String() string {
	return fmt.Sprintf("%s (revision %s, %s)", b.Version, b.Revision, b.GoVersion)
}

// labels are coopr_gslb_build_info's labels.
func (b build) labels() map[string]string {
	return map[string]string{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion}
}

func init() {
	// Everything that prints `version` (the admin API, the page, the log)
	// gets the resolved one.
	version = buildVersion().Version
}

func cmdVersion(args []string) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb version [-short]\n\nPrints the version, the VCS revision it was built from and the Go version.\n\n")
		fs.PrintDefaults()
	}
	short := fs.Bool("short", false, "print the version only")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "coopr-gslb version: unexpected argument %q\n", strings.Join(fs.Args(), " "))
		return 2
	}
	b := buildVersion()
	if *short {
		fmt.Println(b.Version)
		return 0
	}
	fmt.Println("coopr-gslb", b)
	return 0
}

// logStart writes the main log's first line: which build is starting. The
// lifecycle code calls it once, before anything else is logged.
//
//lint:ignore U1000 the lifecycle code (serve) calls it; see notes/ops.md
func logStart(log *slog.Logger) {
	b := buildVersion()
	log.Info("coopr-gslb starting", "version", b.Version, "revision", b.Revision, "goversion", b.GoVersion)
}
