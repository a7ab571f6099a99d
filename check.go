package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

func cmdCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb check -config FILE\n\nValidates the configuration and prints every problem as FILE:LINE: FIELD: MESSAGE.\nExits 1 on any error, 0 otherwise (warnings are printed).\n\n")
		fs.PrintDefaults()
	}
	path := fs.String("config", "config.yaml", "configuration file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	return check(*path, os.Stdout, os.Stderr)
}

func check(path string, stdout, stderr io.Writer) int {
	cfg, problems, err := config.LoadFile(path)
	for _, p := range problems {
		fmt.Fprintln(stderr, p)
	}
	if err != nil {
		if !errors.Is(err, config.ErrInvalid) {
			fmt.Fprintf(stderr, "coopr-gslb: %v\n", err)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: OK (%d datacenters, %d services, %d warnings)\n", path, len(cfg.Datacenters), len(cfg.Services), len(problems.Warnings()))
	printFailover(stdout, cfg)
	printCooprSite(stdout, cfg)
	return 0
}

// printFailover shows what each service's settings buy: the worst time a
// client may still be sent to a failed DC (detection plus DNS TTL).
func printFailover(w io.Writer, cfg *config.Config) {
	fmt.Fprintln(w, "\nworst-case failover (detection + DNS TTL):")
	for _, name := range cfg.ServiceNames {
		s := cfg.Services[name]
		det := cfg.Detection(name)
		ttl, from := int(s.DNSTTL), "dns_ttl"
		if s.FailoverBudget > 0 {
			ttl, from = cfg.BudgetTTL(name), "failover_budget "+s.FailoverBudget.String()
		}
		// A NODATA answer (no address of one family, or when_all_down:
		// refuse) is cached for min(negative_ttl, TTL), never longer than
		// the answer, so the worst case holds for it too.
		nodata := min(ttl, int(cfg.DNS.SOA.NegativeTTL.D()/time.Second))
		fmt.Fprintf(w, "  %s: %s (detection %s + TTL %ds from %s; NODATA TTL %ds)\n", name, det+time.Duration(max(ttl, nodata))*time.Second, det, ttl, from, nodata)
	}
}

// printCooprSite prints the coopr-site.xml properties each DC needs for its
// cluster-ID partition, so operators can copy them.
func printCooprSite(w io.Writer, cfg *config.Config) {
	for _, dc := range cfg.Datacenters {
		if dc.CooprIDs == nil {
			continue
		}
		fmt.Fprintf(w, "\ncoopr-site.xml for %s:\n", dc.Name)
		fmt.Fprintf(w, "  <property><name>server.ids.start.num</name><value>%d</value></property>\n", dc.CooprIDs.Start)
		fmt.Fprintf(w, "  <property><name>server.ids.increment.by</name><value>%d</value></property>\n", dc.CooprIDs.Increment)
	}
}
