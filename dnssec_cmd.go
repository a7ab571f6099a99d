package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/dnssec"
)

const dnssecUsage = `Usage:
  coopr-gslb dnssec keygen -zone ZONE -out FILE   write a new signing key; print its DS
  coopr-gslb dnssec ds -config FILE               print the DS of every configured key

The key is ECDSA P-256 (algorithm 13), one combined signing key (flags 257) per
file, holding the DNSKEY and the private key. Every instance of a cluster uses
the same key file(s), set in dns.dnssec.key_file. Publish the DS at the parent.
`

func cmdDNSSEC(args []string) int {
	return dnssecMain(args, os.Stdout, os.Stderr)
}

func dnssecMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, dnssecUsage)
		return 2
	}
	switch args[0] {
	case "keygen":
		return dnssecKeygen(args[1:], stdout, stderr)
	case "ds":
		return dnssecDS(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, dnssecUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "coopr-gslb dnssec: unknown command %q\n\n%s", args[0], dnssecUsage)
		return 2
	}
}

func dnssecKeygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dnssec keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb dnssec keygen -zone ZONE -out FILE\n\nWrites a new ECDSA P-256 (algorithm 13) combined signing key for ZONE to FILE\n(mode 0600; an existing FILE is never overwritten) and prints the DS record\n(SHA-256) to publish at the parent zone.\n\n")
		fs.PrintDefaults()
	}
	zone := fs.String("zone", "", "the signed zone, e.g. coopr.example.com.")
	out := fs.String("out", "", "key file to create")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *zone == "" || *out == "" {
		fmt.Fprintln(stderr, "coopr-gslb dnssec keygen: -zone and -out are required")
		return 2
	}
	k, err := dnssec.GenerateKey(*zone)
	if err == nil {
		err = dnssec.WriteKeyFile(*out, k, time.Now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "coopr-gslb dnssec keygen: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "wrote %s (key tag %d); publish this DS at the parent of %s:\n", *out, k.Tag, k.DNSKEY.Hdr.Name)
	fmt.Fprintln(stdout, k.DS())
	return 0
}

func dnssecDS(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dnssec ds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb dnssec ds -config FILE\n\nPrints the DS record (SHA-256) of every key in dns.dnssec.key_file, the\nsigning key first, for the parent zone.\n\n")
		fs.PrintDefaults()
	}
	path := fs.String("config", "config.yaml", "configuration file")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, problems, err := config.LoadFile(*path)
	if err != nil {
		for _, p := range problems.Errors() {
			fmt.Fprintln(stderr, p)
		}
		if !errors.Is(err, config.ErrInvalid) {
			fmt.Fprintf(stderr, "coopr-gslb dnssec ds: %v\n", err)
		}
		return 1
	}
	if len(cfg.DNS.DNSSEC.KeyFiles) == 0 {
		fmt.Fprintf(stderr, "coopr-gslb dnssec ds: %s: dns.dnssec.key_file is not set\n", *path)
		return 1
	}
	keys, err := dnssec.LoadKeys(cfg.DNS.Zone, cfg.DNSSECKeyPaths())
	if err != nil {
		fmt.Fprintf(stderr, "coopr-gslb dnssec ds: %v\n", err)
		return 1
	}
	for _, k := range keys {
		fmt.Fprintln(stdout, k.DS())
	}
	return 0
}
