package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-retryablehttp"

	"github.com/coopr-gslb/coopr-gslb/admin"
)

// Environment variables the CLI client reads.
const (
	adminAddrEnv  = "COOPR_GSLB_ADMIN"
	defaultAdmin  = "127.0.0.1:9090"
	cliRetryLimit = 6
)

// apiClient talks to a running coopr-gslb's admin API. It retries refused
// connections and 5xx answers with backoff, so a command issued while the
// server restarts still lands.
type apiClient struct {
	base  string
	token string
	http  *retryablehttp.Client
}

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
		c.RetryMax = cliRetryLimit
		c.RetryWaitMin = 200 * time.Millisecond
		c.RetryWaitMax = 2 * time.Second
		c.HTTPClient.Timeout = 10 * time.Second
		c.Logger = nil
		// Only connection errors are worth another try: any answer, also a
		// 500 (a drain in effect whose save failed), is final and the body
		// says why; repeating a POST would repeat its effect.
		c.ErrorHandler = retryablehttp.PassthroughErrorHandler
		c.CheckRetry = func(ctx context.Context, resp *http.Response, err error) (bool, error) {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return err != nil && resp == nil, nil
		}
		tok := *token
		if tok == "" {
			tok = os.Getenv(admin.TokenEnv)
		}
		return &apiClient{base: strings.TrimSuffix(base, "/"), token: tok, http: c}
	}
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
	req, err := retryablehttp.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach coopr-gslb at %s: %w", c.base, err)
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
	fmt.Fprintln(tw, "SERVICE\tDC\tSTATE\tHEALTHY\tSINCE\tWHY")
	for _, svc := range st.Services {
		for _, dc := range svc.Datacenters {
			since := "-"
			if !dc.Since.IsZero() {
				since = time.Since(dc.Since).Round(time.Second).String() + " ago"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", svc.Name, dc.Name, strings.ToUpper(dc.State), dc.Healthy, dc.Total, since, dc.Reason)
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

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func cmdDrain(args []string) int {
	fs := flag.NewFlagSet("drain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb drain DC -reason TEXT [-mode soft|hard] [-deadline 10m]\n\nTakes a datacenter out of DNS answers and the proxy. soft: DNS and new sessions leave\nat once, sessions pinned to the DC stay until the deadline; hard: everything leaves at once.\nThe drain survives restarts until undrained.\n\n")
		fs.PrintDefaults()
	}
	reason := fs.String("reason", "", "why (shown on the status page and in alerts)")
	mode := fs.String("mode", "hard", "soft or hard")
	deadline := fs.String("deadline", "", "soft drain: how long pinned sessions may stay (e.g. 10m)")
	client := clientFlags(fs)
	dc, code, ok := datacenterArg(fs, args)
	if !ok {
		return code
	}
	req := admin.DrainRequest{Reason: *reason, Mode: *mode, Deadline: *deadline}
	if err := client().do(http.MethodPost, drainPath(dc), req, nil); err != nil {
		return fail(err)
	}
	fmt.Printf("%s drained (%s)\n", dc, *mode)
	return 0
}

func cmdUndrain(args []string) int {
	fs := flag.NewFlagSet("undrain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb undrain DC\n\nEnds a manual drain; the datacenter takes traffic again while it is healthy.\n\n")
		fs.PrintDefaults()
	}
	client := clientFlags(fs)
	dc, code, ok := datacenterArg(fs, args)
	if !ok {
		return code
	}
	if err := client().do(http.MethodDelete, drainPath(dc), nil, nil); err != nil {
		return fail(err)
	}
	fmt.Printf("%s undrained\n", dc)
	return 0
}

func cmdReload(args []string) int {
	fs := flag.NewFlagSet("reload", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb reload\n\nAsks a running coopr-gslb to load its configuration file again. A bad file is\nrejected and the running configuration keeps serving.\n\n")
		fs.PrintDefaults()
	}
	client := clientFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := client().do(http.MethodPost, "/api/v1/reload", nil, nil); err != nil {
		return fail(err)
	}
	fmt.Println("configuration reloaded")
	return 0
}

func cmdExplain(args []string) int {
	fs := flag.NewFlagSet("explain", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb explain -name HOST [-client IP] [-json]\n\nPrints what DNS and the proxy answer for that client right now, and why.\n\n")
		fs.PrintDefaults()
	}
	name := fs.String("name", "", "host name, e.g. api.coopr.example.com")
	clientIP := fs.String("client", "", "client address (default: one that matches no client network)")
	asJSON := fs.Bool("json", false, "print the raw JSON")
	client := clientFlags(fs)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *name == "" {
		fs.Usage()
		return 2
	}
	q := url.Values{"name": {*name}}
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
	fmt.Printf("%s for client %s (service %s):\n", *name, ex.Client, ex.Service)
	fmt.Printf("  DNS answers:  %s\n", orNone(strings.Join(ex.DNSAnswer, " ")))
	fmt.Printf("  proxy sends:  %s\n", orNone(strings.Join(ex.Order, " -> ")))
	fmt.Println("  why:")
	for i, step := range ex.Steps {
		fmt.Printf("    %d. %s\n", i+1, step)
	}
	return 0
}
