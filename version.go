package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/coopr-gslb/coopr-gslb/internal/buildinfo"
)

// buildVersion reads the build information of the running binary, with
// the -ldflags "-X main.version=..." value winning.
func buildVersion() buildinfo.Build { return buildinfo.Read(version) }

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
