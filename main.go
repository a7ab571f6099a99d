// Command coopr-gslb is a global server load balancer for Coopr run Hot-Hot in
// several datacenters: a health-aware HTTP reverse proxy and an authoritative
// DNS responder that send traffic only to healthy datacenters.
//
// main.go is the one place that wires the packages together.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `coopr-gslb: a global server load balancer for Coopr datacenters.

Usage:
  coopr-gslb run -config FILE      run every front door the config enables
  coopr-gslb check -config FILE    validate a config; print every problem with its line
  coopr-gslb demo                  run simulated datacenters on loopback with the GSLB in front
  coopr-gslb dnssec keygen|ds      make a DNSSEC signing key; print the DS for the parent
  coopr-gslb version               print the version, VCS revision and Go version

Talking to a running coopr-gslb (flags -admin ADDR, -token TOKEN; env COOPR_GSLB_ADMIN,
COOPR_GSLB_ADMIN_TOKEN):
  coopr-gslb status [-json]                      every service x datacenter at a glance
  coopr-gslb drain DC [-service S] [-endpoint ADDR] -reason TEXT [-mode hard|soft] [-deadline 10m]   (default hard)
  coopr-gslb undrain DC [-service S] [-endpoint ADDR]
  coopr-gslb reload                              load the configuration file again
  coopr-gslb explain HOST [-client IP]           what a client gets right now, and why
  coopr-gslb events [-since 5m] [-follow]        routing events (drains, failovers, reloads)

Run "coopr-gslb COMMAND -h" for the flags of a command.
`

func main() {
	os.Exit(realMain(os.Args[1:]))
}

func realMain(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return cmdRun(rest)
	case "check":
		return cmdCheck(rest)
	case "demo":
		return cmdDemo(rest)
	case "status":
		return cmdStatus(rest)
	case "drain":
		return cmdDrain(rest)
	case "undrain":
		return cmdUndrain(rest)
	case "reload":
		return cmdReload(rest)
	case "explain":
		return cmdExplain(rest)
	case "dnssec":
		return cmdDNSSEC(rest)
	case "events":
		return cmdEvents(rest)
	case "version", "-version", "--version":
		return cmdVersion(rest)
	case "help", "-h", "-help", "--help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "coopr-gslb: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// parseFlags parses a subcommand's flags; -h is a successful exit, not an error.
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, true
	case errors.Is(err, flag.ErrHelp):
		return 0, false
	default:
		return 2, false
	}
}
