package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// Environment variables the CLI client reads.
const (
	adminAddrEnv = "COOPR_GSLB_ADMIN"
	defaultAdmin = "127.0.0.1:9090"
	// refusedRetryFor bounds how long a command keeps retrying a refused
	// connection (a server restarting under systemd is back within it); any
	// other failure is final at once. dialTimeout bounds a connect to an
	// address that does not answer at all.
	refusedRetryFor = 1500 * time.Millisecond
	dialTimeout     = 1500 * time.Millisecond
)

// apiClient talks to a running coopr-gslb's admin API. It retries refused
// connections for refusedRetryFor, so a command issued while the server
// restarts still lands, and a wrong address fails fast.
type apiClient struct {
	addr  string // as given, for messages
	base  string
	token string
	http  *retryablehttp.Client
}

type retryUntilKey struct{}

// clientFlags adds -admin and -token to a command's flags.
func clientFlags(fs *flag.FlagSet) func() *apiClient {
	addr := fs.String("admin", envOr(adminAddrEnv, defaultAdmin), "admin address of the running coopr-gslb (env "+adminAddrEnv+")")
	token := fs.String("token", "", "admin bearer token (env "+admin.TokenEnv+")")
	return func() *apiClient {
		base := *addr
		if !strings.Contains(base, "://") {
			base = "http://" + base
		}
		c := retryablehttp.NewClient()
		c.RetryMax = 100 // bounded by refusedRetryFor, not by count
		c.RetryWaitMin = 100 * time.Millisecond
		c.RetryWaitMax = 300 * time.Millisecond
		c.HTTPClient.Timeout = 30 * time.Second
		c.HTTPClient.Transport = &http.Transport{
			Proxy:       http.ProxyFromEnvironment,
			DialContext: (&net.Dialer{Timeout: dialTimeout}).DialContext,
		}
		c.Logger = nil
		c.CheckRetry = retryRefused
		// Only a refused connection is worth another try: any answer, also a
		// 500 (a drain in effect whose save failed), is final and the body
		// says why; repeating a POST would repeat its effect.
		c.ErrorHandler = retryablehttp.PassthroughErrorHandler
		tok := *token
		if tok == "" {
			tok = os.Getenv(admin.TokenEnv)
		}
		return &apiClient{addr: *addr, base: strings.TrimSuffix(base, "/"), token: tok, http: c}
	}
}

// retryRefused retries only a refused connection, and only until the
// deadline do put in the request's context.
func retryRefused(ctx context.Context, _ *http.Response, err error) (bool, error) {
	if ctx.Err() != nil || err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
		return false, nil
	}
	until, _ := ctx.Value(retryUntilKey{}).(time.Time)
	return time.Now().Before(until), nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// do sends a request and decodes a JSON answer into out. A non-2xx answer
// becomes an error carrying the server's message.
func (c *apiClient) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx := context.WithValue(context.Background(), retryUntilKey{}, time.Now().Add(refusedRetryFor))
	req, err := retryablehttp.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return fmt.Errorf("-admin %q: %w", c.addr, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach coopr-gslb's admin API at %s (-admin or %s): %w", c.addr, adminAddrEnv, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(data)))
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*json.RawMessage); ok {
		*raw = data
		return nil
	}
	return json.Unmarshal(data, out)
}

// datacenterArg parses "CMD DC -flags" (the DC may come before or after the
// flags) and insists on the DC.
func datacenterArg(fs *flag.FlagSet, args []string) (string, int, bool) {
	var dc string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		dc, args = args[0], args[1:]
	}
	if code, ok := parseFlags(fs, args); !ok {
		return "", code, false
	}
	if dc == "" && fs.NArg() > 0 {
		dc = fs.Arg(0)
	}
	if dc == "" {
		fs.Usage()
		return "", 2, false
	}
	return dc, 0, true
}

// drainPath is the admin API resource of a DC's drain.
func drainPath(dc string) string { return "/api/v1/datacenters/" + url.PathEscape(dc) + "/drain" }

func fail(err error) int {
	fmt.Fprintf(os.Stderr, "coopr-gslb: %v\n", err)
	return 1
}

func cmdStatus(args []string) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb status [-json] [-admin ADDR] [-token TOKEN]\n\nShows every service x datacenter of a running coopr-gslb.\n\n")
		fs.PrintDefaults()
	}
	asJSON := fs.Bool("json", false, "print the raw JSON of /api/v1/status")
	client := clientFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	c := client()
	if *asJSON {
		var raw json.RawMessage
		if err := c.do(http.MethodGet, "/api/v1/status", nil, &raw); err != nil {
			return fail(err)
		}
		os.Stdout.Write(raw)
		return 0
	}
	var st admin.Status
	if err := c.do(http.MethodGet, "/api/v1/status", nil, &st); err != nil {
		return fail(err)
	}
	printStatus(os.Stdout, st)
	printClusterLine(os.Stdout, c)
	return 0
}

func printStatus(w io.Writer, st admin.Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tDC\tSTATE\tPRIO/WEIGHT\tHEALTHY\tSINCE\tWHY")
	for _, svc := range st.Services {
		for _, dc := range svc.Datacenters {
			since := "-"
			if !dc.Since.IsZero() {
				since = time.Since(dc.Since).Round(time.Second).String() + " ago"
			}
			why := dc.Reason
			if d := dc.Drain; d != nil {
				why = strings.TrimSpace(why + " " + drainDeadline(d, time.Now()))
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%d/%d\t%s\t%s\n", svc.Name, dc.Name, strings.ToUpper(dc.State), dc.Priority, dc.Weight, dc.Healthy, dc.Total, since, why)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, svc := range st.Services {
		fmt.Fprintf(w, "%s: %s; proxy -> %s, DNS -> %s\n", svc.Name, svc.State, orNone(svc.ProxyTarget), orNone(strings.Join(svc.DNSAnswer, " ")))
	}
	if st.Reload != nil && !st.Reload.OK {
		fmt.Fprintf(w, "\nlast reload FAILED at %s (old configuration still serving): %s\n", st.Reload.Time.Format(time.RFC3339), st.Reload.Error)
	}
}

// drainDeadline says when a soft drain's pinned sessions leave ("" for a
// hard drain).
func drainDeadline(d *routing.Drain, now time.Time) string {
	if d.Mode != "soft" || d.Deadline.IsZero() {
		return ""
	}
	if left := d.Deadline.Sub(now); left > 0 {
		return fmt.Sprintf("(soft: pinned sessions leave at %s, in %s)", d.Deadline.Local().Format("15:04:05"), left.Round(time.Second))
	}
	return fmt.Sprintf("(soft: deadline %s passed, pinned sessions left)", d.Deadline.Local().Format("15:04:05"))
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// drainUsage is drain's help; the defaults it names are the flags' defaults.
const drainUsage = `Usage: coopr-gslb drain DC [-service S] [-endpoint ADDR] -reason TEXT [-mode hard|soft] [-deadline 10m]

Takes a datacenter out of DNS answers and the proxy.
  -mode hard (the default): everything leaves at once.
  -mode soft: DNS and new sessions leave at once; sessions pinned to the DC stay
              until the deadline (-deadline, default 10m), then leave too.
With -service, only that service leaves the DC; with -endpoint, only that endpoint
leaves its DC's healthy set.
The drain survives restarts (with admin.state_dir) until "coopr-gslb undrain DC".
Draining the last datacenter that is up for a service does not stop its traffic
when the service has when_all_down: serve_all (the default): with no DC left,
it serves every DC, drained ones included. The command warns when that happens.

`

func cmdDrain(args []string) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), drainUsage)
		fs.PrintDefaults()
	}
	reason := fs.String("reason", "", "why (shown on the status page, in events and webhooks)")
	mode := fs.String("mode", "hard", "hard or soft")
	scope := drainScopeFlags(fs)
	deadline := fs.Duration("deadline", admin.DefaultSoftDeadline, "soft drain only: how long sessions pinned to the DC may stay")
	client := clientFlags(fs)
	dc, code, ok := datacenterArg(fs, args)
	if !ok {
		return code
	}
	deadlineSet := false
	fs.Visit(func(f *flag.Flag) { deadlineSet = deadlineSet || f.Name == "deadline" })
	req := admin.DrainRequest{Reason: *reason, Mode: *mode}
	switch {
	case *mode == "soft":
		req.Deadline = deadline.String()
	case deadlineSet:
		fmt.Fprintln(os.Stderr, "coopr-gslb drain: -deadline applies only to -mode soft")
		return 2
	}
	c := client()
	var st admin.Status
	if err := c.do(http.MethodGet, "/api/v1/status", nil, &st); err != nil {
		return fail(err)
	}
	path, label := scope(dc)
	if err := c.do(http.MethodPost, path, req, nil); err != nil {
		return fail(err)
	}
	if *mode == "soft" {
		fmt.Printf("%s drained (soft: pinned sessions stay until %s, in %s)\n", label, time.Now().Add(*deadline).Format("15:04:05"), *deadline)
	} else {
		fmt.Printf("%s drained (hard)\n", label)
	}
	for _, svc := range lastUp(st, dc) {
		if label != dc {
			break // a service or endpoint drain leaves the DC up
		}
		fmt.Fprintf(os.Stderr, "warning: %s was the last datacenter up for service %s: with when_all_down: serve_all (the default) the service now serves every datacenter, %s included, so its traffic continues; with refuse it answers nothing\n", dc, svc, dc)
	}
	return 0
}

// lastUp lists the services for which dc is the only datacenter up in st.
func lastUp(st admin.Status, dc string) []string {
	var out []string
	for _, svc := range st.Services {
		mine, others := false, 0
		for _, d := range svc.Datacenters {
			if d.State != "up" {
				continue
			}
			if d.Name == dc {
				mine = true
			} else {
				others++
			}
		}
		if mine && others == 0 {
			out = append(out, svc.Name)
		}
	}
	return out
}

func cmdUndrain(args []string) int {
	fs := flag.NewFlagSet("undrain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb undrain DC [-service S] [-endpoint ADDR]\n\nEnds a manual drain (of the DC, or with -service and -endpoint of what they name); it\ntakes traffic again while it is healthy.\n\n")
		fs.PrintDefaults()
	}
	scope := drainScopeFlags(fs)
	client := clientFlags(fs)
	dc, code, ok := datacenterArg(fs, args)
	if !ok {
		return code
	}
	path, label := scope(dc)
	if err := client().do(http.MethodDelete, path, nil, nil); err != nil {
		return fail(err)
	}
	fmt.Printf("%s undrained\n", label)
	return 0
}

func cmdReload(args []string) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb reload\n\nAsks a running coopr-gslb to load its configuration file (and TLS certificate files)\nagain. A bad file is rejected, the error printed and the running configuration keeps\nserving; the exit status is then 1. Changed keys that only a restart applies\n(needs_restart) are listed.\n\n")
		fs.PrintDefaults()
	}
	client := clientFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	c := client()
	if err := c.do(http.MethodPost, "/api/v1/reload", nil, nil); err != nil {
		return fail(err)
	}
	var st admin.Status
	if err := c.do(http.MethodGet, "/api/v1/status", nil, &st); err != nil {
		return fail(err)
	}
	if st.Reload != nil && !st.Reload.OK {
		return fail(fmt.Errorf("reload failed; the previous configuration keeps serving: %s", st.Reload.Error))
	}
	fmt.Println("configuration reloaded")
	if st.Reload != nil && len(st.Reload.NeedsRestart) > 0 {
		fmt.Printf("needs_restart (changed, but keep their running values until a restart): %s\n", strings.Join(st.Reload.NeedsRestart, ", "))
	}
	return 0
}

const explainUsage = `Usage: coopr-gslb explain HOST [-client IP] [-json]
       coopr-gslb explain -name HOST [-client IP] [-json]

Prints what DNS and the proxy answer for that client right now, and why.

`

func cmdExplain(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), explainUsage)
		fs.PrintDefaults()
	}
	name := fs.String("name", "", "host name, e.g. api.coopr.example.com (or give it as the argument)")
	clientIP := fs.String("client", "", "client address (default: one that matches no client network)")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	client := clientFlags(fs)
	host, code, ok := positionalArg(fs, args)
	if !ok {
		return code
	}
	if host != "" && *name != "" && host != *name {
		fmt.Fprintf(os.Stderr, "coopr-gslb explain: two host names, %q and -name %q: give one\n", host, *name)
		return 2
	}
	if host == "" {
		host = *name
	}
	if host == "" {
		fmt.Fprint(os.Stderr, "coopr-gslb explain: missing the host name to explain, e.g. coopr-gslb explain api.coopr.example.com [-client 10.2.3.4]\n")
		return 2
	}
	q := url.Values{"name": {host}}
	if *clientIP != "" {
		q.Set("client", *clientIP)
	}
	var raw json.RawMessage
	if err := client().do(http.MethodGet, "/api/v1/explain?"+q.Encode(), nil, &raw); err != nil {
		return fail(err)
	}
	if *asJSON {
		os.Stdout.Write(raw)
		return 0
	}
	var ex admin.Explanation
	if err := json.Unmarshal(raw, &ex); err != nil {
		return fail(err)
	}
	fmt.Printf("%s for client %s (service %s):\n", host, ex.Client, ex.Service)
	fmt.Printf("  DNS answers:  %s\n", orNone(strings.Join(ex.DNSAnswer, " ")))
	fmt.Printf("  proxy sends:  %s\n", orNone(strings.Join(ex.Order, " -> ")))
	fmt.Println("  why:")
	for i, step := range ex.Steps {
		fmt.Printf("    %d. %s\n", i+1, step)
	}
	return 0
}

// positionalArg parses "CMD [ARG] -flags [ARG]" where ARG is optional.
func positionalArg(fs *flag.FlagSet, args []string) (string, int, bool) {
	var arg string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		arg, args = args[0], args[1:]
	}
	if code, ok := parseFlags(fs, args); !ok {
		return "", code, false
	}
	if arg == "" && fs.NArg() > 0 {
		arg = fs.Arg(0)
	}
	return arg, 0, true
}

// eventsPoll is how often events -follow asks for new events.
const eventsPoll = time.Second

func cmdEvents(args []string) int {
	fs := flag.NewFlagSet("events", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb events [-since 5m] [-follow] [-json]\n\nPrints the routing events of a running coopr-gslb (failovers, drains, reloads), oldest\nfirst; -follow keeps printing new ones as they happen (it polls /api/v1/events every\nsecond) until interrupted.\n\n")
		fs.PrintDefaults()
	}
	since := fs.String("since", "1h", "how far back: a duration (5m) or an RFC 3339 time")
	follow := fs.Bool("follow", false, "keep printing new events")
	asJSON := fs.Bool("json", false, "one JSON object per line, as -state-log writes them")
	client := clientFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if _, err := time.ParseDuration(*since); err != nil {
		if _, err := time.Parse(time.RFC3339Nano, *since); err != nil {
			fmt.Fprintf(os.Stderr, "coopr-gslb events: -since %q: want a duration (5m) or an RFC 3339 time (2026-11-26T10:00:00Z)\n", *since)
			return 2
		}
	}
	c := client()
	from := *since
	var lastSeq uint64
	seen := false
	warned := false
	enc := json.NewEncoder(os.Stdout)
	for {
		var page struct {
			Events []routing.Event `json:"events"`
		}
		if err := c.do(http.MethodGet, "/api/v1/events?since="+url.QueryEscape(from), nil, &page); err != nil {
			if !seen || !*follow {
				return fail(err)
			}
			if !warned {
				fmt.Fprintf(os.Stderr, "coopr-gslb events: %v; still trying\n", err)
				warned = true
			}
		} else {
			warned = false
			for _, ev := range page.Events {
				if seen && ev.Seq <= lastSeq {
					continue
				}
				if *asJSON {
					_ = enc.Encode(ev)
				} else {
					fmt.Println(formatEvent(ev))
				}
				lastSeq = ev.Seq
				from = ev.Time.Format(time.RFC3339Nano)
			}
			seen = true
		}
		if !*follow {
			return 0
		}
		time.Sleep(eventsPoll)
	}
}

func formatEvent(ev routing.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", ev.Time.Local().Format("2006-01-02 15:04:05.000"), ev.Kind)
	for _, kv := range [][2]string{{"dc", ev.DC}, {"service", ev.Service}, {"endpoint", ev.Endpoint}, {"mode", ev.Mode}, {"by", ev.By}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	if ev.Reason != "" {
		fmt.Fprintf(&b, " reason=%q", ev.Reason)
	}
	return b.String()
}
