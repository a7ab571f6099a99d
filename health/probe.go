package health

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/upstreamtls"
)

// Result is one probe's outcome.
type Result struct {
	OK bool
	// Latency is how long the probe took, whether it succeeded or not.
	Latency time.Duration
	// Err says why the probe failed, in words a person understands
	// ("connection refused", "status 503, want 200"); it is "" when OK.
	Err string
	// Hard marks a failure that leaves no doubt the endpoint is down right
	// now, such as a refused connection.
	Hard bool
	// At is when the probe finished. The Checker sets it from its Clock.
	At time.Time
}

// Prober runs one probe of a target. Probe must return soon after ctx is done
// and must be safe for concurrent use.
type Prober interface {
	Probe(ctx context.Context, t Target) Result
}

// ProberFunc adapts a function to the Prober interface.
type ProberFunc func(ctx context.Context, t Target) Result

// Probe calls f(ctx, t).
func (f ProberFunc) Probe(ctx context.Context, t Target) Result { return f(ctx, t) }

const (
	// maxBody bounds how much of a response body a probe reads: health pages
	// are short, and a probe must not be held up by a large or endless body.
	maxBody        = 4 << 10
	maxHeaderBytes = 16 << 10
	userAgent      = "coopr-gslb-health/1"
)

// NetProber probes over the network: "http" and "https" checks send one
// request and judge its status and body; "tcp" checks only connect. Each probe
// is bounded by the check's timeout (config.DefaultTimeout if zero) and by ctx.
//
// An HTTP probe is one connection carrying one request, written with
// (*http.Request).Write and read with http.ReadResponse, with no
// http.Transport: it would spend two goroutines and its pool bookkeeping on
// every connection, most of a probe's cost when connections are never reused.
// (They must not be: a dead server must not hide behind a pooled
// connection.) As with the Transport the probes used before, redirects are
// not followed, responses are not decompressed (ExpectBody is matched against
// the bytes sent), no proxy is used and failures are worded the same.
//
// NetProber builds one tls.Config per distinct TLS setting and keeps it, so a
// check's CA file is read once, when the first probe needs it; a new NetProber
// reads it again. A target's UpstreamTLS carries its files' contents, so its
// config is built once per loaded configuration (a reload brings new
// settings) and verifies server_name, else the endpoint's host; with it,
// "http" checks are sent over TLS and "tcp" checks complete a handshake.
// The zero value is ready to use; a NetProber is safe for
// concurrent use and must not be copied after first use.
type NetProber struct {
	mu      sync.Mutex
	configs map[tlsKey]*tls.Config
	roots   map[string]*x509.CertPool // by CA file
	// upstream are the configs built from targets' UpstreamTLS, by the
	// settings' identity (one per service and DC of a loaded Config; the
	// file contents are in the settings, so a reload that changes a file
	// changes the target and brings new settings) and the verified name.
	upstream map[upstreamKey]*tls.Config
}

type upstreamKey struct {
	u          *config.UpstreamTLS
	serverName string
}

// maxUpstreamConfigs bounds the upstream cache: settings of configurations
// reloaded away are dropped with everything else when it is full, and the
// configs in use are built again on their next probe.
const maxUpstreamConfigs = 4096

var _ Prober = (*NetProber)(nil)

// tlsKey is what distinguishes one tls.Config from another. serverName is the
// name the certificate is checked against, so it is always set: for a check
// that names none, it is the endpoint's host, as net/http would use.
type tlsKey struct {
	serverName string
	caFile     string
	skipVerify bool
}

// probeError is a failure already described in words, such as a status mismatch.
type probeError string

func (e probeError) Error() string { return string(e) }

// probeBufs is the memory one HTTP probe reads and writes through. Pooling it
// makes a probe's buffers free after the first few.
type probeBufs struct {
	limit io.LimitedReader // bounds the response headers
	r     *bufio.Reader
	w     *bufio.Writer
	body  [maxBody]byte
}

var bufPool = sync.Pool{New: func() any {
	b := new(probeBufs)
	b.r = bufio.NewReaderSize(nil, 4<<10)
	b.w = bufio.NewWriterSize(nil, 1<<10)
	return b
}}

// Probe probes t once and describes the outcome.
func (p *NetProber) Probe(ctx context.Context, t Target) Result {
	timeout := t.Check.Timeout.D()
	if timeout <= 0 {
		timeout = config.DefaultTimeout
	}
	start := time.Now()
	deadline := start.Add(timeout)
	if d, ok := ctx.Deadline(); ok && !d.After(deadline) {
		deadline = d // the Checker's; a context of our own would add nothing
	} else {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}

	var err error
	switch t.Check.Type {
	case "http", "https", "":
		err = p.probeHTTP(ctx, t, deadline)
	case "tcp":
		err = p.probeTCP(ctx, t, deadline)
	default:
		err = probeError(fmt.Sprintf("unknown check type %q", t.Check.Type))
	}
	end := time.Now()

	r := Result{OK: err == nil, Latency: end.Sub(start), At: end}
	if err != nil {
		r.Err, r.Hard = describe(ctx, err, timeout)
	}
	return r
}

var dialer = net.Dialer{KeepAlive: -1} // probe connections live for one request

// aLongTimeAgo is a deadline in the past: setting it on a connection makes
// every blocked read and write on it return at once.
var aLongTimeAgo = time.Unix(1, 0)

// probeTCP connects to t's endpoint; with upstream TLS it also completes a
// TLS handshake, so a certificate problem takes the endpoint down.
func (p *NetProber) probeTCP(ctx context.Context, t Target, deadline time.Time) error {
	var conf *tls.Config
	if t.UpstreamTLS != nil {
		var err error
		if conf, err = p.tlsConfig(t); err != nil {
			return err
		}
	}
	conn, err := dial(ctx, t.Endpoint, t.Check.SourceAddress)
	if err != nil {
		return err
	}
	defer conn.Close()
	if conf == nil {
		return nil
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	return tls.Client(conn, conf).Handshake()
}

// dial connects to addr, skipping the resolver when it is an IP address and
// port, as endpoints mostly are. A non-empty source (health.source_address,
// validated by config) is the local address the connection leaves from.
func dial(ctx context.Context, addr, source string) (net.Conn, error) {
	var local netip.AddrPort
	if source != "" {
		src, err := netip.ParseAddr(source)
		if err != nil {
			return nil, fmt.Errorf("health.source_address: %w", err)
		}
		local = netip.AddrPortFrom(src, 0)
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return dialer.DialTCP(ctx, "tcp", local, ap)
	}
	if !local.IsValid() {
		return dialer.DialContext(ctx, "tcp", addr)
	}
	d := dialer
	d.LocalAddr = net.TCPAddrFromAddrPort(local)
	return d.DialContext(ctx, "tcp", addr)
}

// probeHTTP sends t's request and judges the response. The connection, and
// with it the TLS handshake and every read and write, is bounded by deadline
// (ctx's own) and cut short if ctx is cancelled earlier.
func (p *NetProber) probeHTTP(ctx context.Context, t Target, deadline time.Time) error {
	c := &t.Check
	req, err := newRequest(t)
	if err != nil {
		return err
	}
	var conf *tls.Config
	if req.URL.Scheme == "https" {
		if conf, err = p.tlsConfig(t); err != nil {
			return err
		}
	}

	raw, err := dial(ctx, dialAddr(req.URL), c.SourceAddress)
	if err != nil {
		return err
	}
	defer raw.Close()
	raw.SetDeadline(deadline)
	// A deadline does not see cancellation (Run's shutdown); this does.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(aLongTimeAgo) })
	defer stop()

	conn := raw
	if conf != nil {
		tc := tls.Client(raw, conf)
		if err := tc.Handshake(); err != nil {
			return err
		}
		conn = tc
	}

	b := bufPool.Get().(*probeBufs)
	defer func() {
		b.limit.R = nil
		b.r.Reset(nil)
		b.w.Reset(nil)
		bufPool.Put(b)
	}()
	b.w.Reset(conn)
	if err := req.Write(b.w); err != nil {
		return err
	}
	if err := b.w.Flush(); err != nil {
		return err
	}

	resp, err := readResponse(b, conn, req)
	if err != nil {
		return err
	}
	if !statusOK(resp.StatusCode, c.ExpectStatus) {
		return probeError("status " + strconv.Itoa(resp.StatusCode) + ", want " + wantStatus(c.ExpectStatus))
	}
	if c.ExpectBody == "" {
		return nil
	}
	n, err := io.ReadFull(resp.Body, b.body[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	if !bytes.Contains(b.body[:n], []byte(c.ExpectBody)) {
		return probeError(fmt.Sprintf("body lacks %q", c.ExpectBody))
	}
	return nil
}

// readResponse reads the final response to req from conn, skipping
// informational (1xx) ones as net/http's Transport does, with all their
// headers together bounded by maxHeaderBytes. The body reads from b and is
// not bounded; the caller bounds it.
func readResponse(b *probeBufs, conn net.Conn, req *http.Request) (*http.Response, error) {
	b.limit = io.LimitedReader{R: conn, N: maxHeaderBytes}
	b.r.Reset(&b.limit)
	for {
		resp, err := http.ReadResponse(b.r, req)
		if err != nil {
			if b.limit.N <= 0 {
				err = fmt.Errorf("net/http: server response headers exceeded %d bytes; aborted", maxHeaderBytes)
			}
			// The words net/http's Transport used, so that reasons (and
			// alerts on them) read as they did before probes bypassed it.
			return nil, fmt.Errorf("net/http: HTTP/1.x transport connection broken: %w", err)
		}
		code := resp.StatusCode
		if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
			continue
		}
		b.limit.N = math.MaxInt64
		if code == http.StatusSwitchingProtocols {
			// What follows is the new protocol's, as Transport hands it over.
			resp.Body = io.NopCloser(b.r)
		}
		return resp, nil
	}
}

// newRequest builds t's request. It checks what net/http's Transport would
// check before sending, with the same words.
func newRequest(t Target) (*http.Request, error) {
	c := &t.Check
	scheme := "http://"
	if c.Type == "https" || t.UpstreamTLS != nil {
		scheme = "https://"
	}
	path := c.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	req, err := http.NewRequest(method, scheme+t.Endpoint+path, nil)
	if err != nil {
		return nil, probeError("bad request: " + err.Error())
	}
	if req.URL.Host == "" {
		return nil, errors.New("http: no Host in request URL")
	}
	req.Close = true // "Connection: close"; the connection serves this request only
	req.Header.Set("User-Agent", userAgent)
	for k, v := range c.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v // net/http ignores a Host entry in Header
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return nil, fmt.Errorf("net/http: invalid header field name %q", k)
		}
		if !httpguts.ValidHeaderFieldValue(v) {
			return nil, fmt.Errorf("net/http: invalid header field value for %q", k)
		}
		req.Header.Set(k, v)
	}
	if c.Host != "" {
		req.Host = c.Host
	}
	return req, nil
}

// dialAddr is the address to connect to for u: its host and port, the
// scheme's port if it has none.
func dialAddr(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func statusOK(code int, want []int) bool {
	if len(want) == 0 {
		return code == http.StatusOK
	}
	for _, w := range want {
		if code == w {
			return true
		}
	}
	return false
}

// wantStatus renders the expected statuses: "200", "200 or 204", "200, 204 or 301".
func wantStatus(want []int) string {
	if len(want) == 0 {
		return "200"
	}
	var b strings.Builder
	for i, w := range want {
		switch {
		case i == 0:
		case i == len(want)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(strconv.Itoa(w))
	}
	return b.String()
}

// tlsConfig returns the tls.Config for t's TLS settings, building it on first use.
func (p *NetProber) tlsConfig(t Target) (*tls.Config, error) {
	if t.UpstreamTLS != nil {
		return p.upstreamConfig(t)
	}
	key := tlsKey{serverName: serverName(t.Check), caFile: t.Check.CAFile, skipVerify: t.Check.SkipVerify}
	if key.serverName == "" {
		host, _, err := net.SplitHostPort(t.Endpoint)
		if err != nil {
			host = t.Endpoint
		}
		key.serverName = host
	}
	// Building a config (and reading a CA file) happens once per key, so
	// doing it under the lock costs nothing in the steady state.
	p.mu.Lock()
	defer p.mu.Unlock()
	if conf := p.configs[key]; conf != nil {
		return conf, nil
	}
	conf := &tls.Config{
		ServerName:         key.serverName,
		InsecureSkipVerify: key.skipVerify,
		MinVersion:         tls.VersionTLS12,
	}
	if key.caFile != "" {
		pool, err := p.rootsLocked(key.caFile)
		if err != nil {
			return nil, err // not cached: a fixed CA file is picked up by the next probe
		}
		conf.RootCAs = pool
	}
	if p.configs == nil {
		p.configs = make(map[tlsKey]*tls.Config)
	}
	p.configs[key] = conf
	return conf, nil
}

// upstreamConfig returns the tls.Config of t's UpstreamTLS, verifying
// server_name or else the endpoint's host, as the proxy's Transport does.
// A failure to build it (settings not loaded by config.Load) is the probe's
// failure.
func (p *NetProber) upstreamConfig(t Target) (*tls.Config, error) {
	key := upstreamKey{u: t.UpstreamTLS, serverName: t.UpstreamTLS.ServerName}
	if key.serverName == "" {
		host, _, err := net.SplitHostPort(t.Endpoint)
		if err != nil {
			host = t.Endpoint
		}
		key.serverName = host
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if conf := p.upstream[key]; conf != nil {
		return conf, nil
	}
	conf, err := upstreamtls.ClientConfig(t.UpstreamTLS)
	if err != nil {
		return nil, probeError("TLS: " + err.Error())
	}
	conf = upstreamtls.ForHost(conf, key.serverName)
	if p.upstream == nil || len(p.upstream) >= maxUpstreamConfigs {
		p.upstream = make(map[upstreamKey]*tls.Config)
	}
	p.upstream[key] = conf
	return conf, nil
}

// rootsLocked returns the certificates of a CA file, reading it on first use.
// p.mu must be held.
func (p *NetProber) rootsLocked(file string) (*x509.CertPool, error) {
	if pool := p.roots[file]; pool != nil {
		return pool, nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, probeError("TLS: CA file: " + err.Error())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, probeError("TLS: CA file " + file + " holds no PEM certificate")
	}
	if p.roots == nil {
		p.roots = make(map[string]*x509.CertPool)
	}
	p.roots[file] = pool
	return pool, nil
}

// serverName is the name a TLS certificate must be valid for: the configured
// one, else the Host header's, else "" (the endpoint's host).
func serverName(c config.Check) string {
	if c.TLSServerName != "" {
		return c.TLSServerName
	}
	if host, _, err := net.SplitHostPort(c.Host); err == nil {
		return host
	}
	return c.Host
}

// describe turns a probe error into words, and says whether it is hard.
func describe(ctx context.Context, err error, timeout time.Duration) (reason string, hard bool) {
	var pe probeError
	if errors.As(err, &pe) {
		return string(pe), false
	}
	switch ctx.Err() {
	case context.DeadlineExceeded:
		return "timeout after " + timeout.String(), false
	case context.Canceled:
		return "canceled", false
	}
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", true
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset", false
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "host unreachable", false
	case errors.Is(err, syscall.ENETUNREACH):
		return "network unreachable", false
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without a response", false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		switch {
		case dnsErr.IsNotFound:
			return "no such host", false
		case dnsErr.IsTimeout:
			return "DNS timeout", false
		}
		return "DNS: " + dnsErr.Err, false
	}
	if s := tlsReason(err); s != "" {
		return "TLS: " + s, false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout after " + timeout.String(), false
	}
	// Strip the wrappers that repeat what the operator already knows
	// (`Get "http://10.0.0.1:55054/status": dial tcp 10.0.0.1:55054: `).
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		err = oe.Err
	}
	var se *os.SyscallError
	if errors.As(err, &se) {
		err = se.Err
	}
	return err.Error(), false
}

// tlsReason describes a TLS failure briefly, or returns "" if err is not one.
func tlsReason(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		badHost   x509.HostnameError
		invalid   x509.CertificateInvalidError
		record    tls.RecordHeaderError
		oe        *net.OpError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "x509: certificate signed by unknown authority"
	case errors.As(err, &badHost):
		return fmt.Sprintf("x509: certificate is not valid for %q", badHost.Host)
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "x509: certificate expired or not yet valid"
		}
		return invalid.Error()
	case errors.As(err, &record), errors.Is(err, http.ErrSchemeMismatch):
		return "server does not speak TLS"
	case errors.As(err, &oe) && oe.Op == "remote error":
		return "server sent alert: " + strings.TrimPrefix(oe.Err.Error(), "tls: ")
	}
	if s := err.Error(); strings.Contains(s, "tls: ") {
		return s[strings.LastIndex(s, "tls: ")+len("tls: "):]
	}
	return ""
}
