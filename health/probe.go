package health

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
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
// NetProber builds one http.Client per distinct TLS setting and keeps it, so a
// check's CA file is read once, when the first probe needs it; a new NetProber
// reads it again. Connections are never reused: a dead server must not hide
// behind a pooled connection. The zero value is ready to use; a NetProber is
// safe for concurrent use and must not be copied after first use.
type NetProber struct {
	mu      sync.Mutex
	clients map[clientKey]*http.Client
}

var _ Prober = (*NetProber)(nil)

// clientKey is what distinguishes one http.Client from another: the TLS
// settings. Every plain-http check shares the zero key.
type clientKey struct {
	https      bool
	serverName string
	caFile     string
	skipVerify bool
}

// probeError is a failure already described in words, such as a status mismatch.
type probeError string

func (e probeError) Error() string { return string(e) }

var bufPool = sync.Pool{New: func() any { return new([maxBody]byte) }}

// Probe probes t once and describes the outcome.
func (p *NetProber) Probe(ctx context.Context, t Target) Result {
	timeout := t.Check.Timeout.D()
	if timeout <= 0 {
		timeout = config.DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	start := time.Now()
	var err error
	switch t.Check.Type {
	case "http", "https", "":
		err = p.probeHTTP(ctx, t)
	case "tcp":
		err = probeTCP(ctx, t.Endpoint)
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

// deadlineKey carries a probe's deadline to dialContext.
type deadlineKey struct{}

// dialContext dials for the probe transports. net/http detaches a dial from
// its request's cancellation (so the connection may serve a later request),
// which would let a dial to a black hole, or a TLS handshake with a server
// that never answers, outlive the probe for minutes. A probe's connection
// serves no other request, so the dial and the connection are bounded by the
// probe's deadline, carried as a context value because values survive the
// detaching.
func dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	deadline, ok := ctx.Value(deadlineKey{}).(time.Time)
	if !ok {
		return dialer.DialContext(ctx, network, addr)
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	conn, err := dialer.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(deadline) // bounds the TLS handshake and every read and write
	return conn, nil
}

func probeTCP(ctx context.Context, endpoint string) error {
	conn, err := dialer.DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return err
	}
	conn.Close()
	return nil
}

func (p *NetProber) probeHTTP(ctx context.Context, t Target) error {
	c := &t.Check
	client, err := p.client(t)
	if err != nil {
		return err
	}
	scheme := "http://"
	if c.Type == "https" {
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
	if deadline, ok := ctx.Deadline(); ok {
		ctx = context.WithValue(ctx, deadlineKey{}, deadline)
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+t.Endpoint+path, nil)
	if err != nil {
		return probeError("bad request: " + err.Error())
	}
	req.Header.Set("User-Agent", userAgent)
	for k, v := range c.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v // net/http ignores a Host entry in Header
			continue
		}
		req.Header.Set(k, v)
	}
	if c.Host != "" {
		req.Host = c.Host
	}

	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if !statusOK(resp.StatusCode, c.ExpectStatus) {
		return probeError("status " + strconv.Itoa(resp.StatusCode) + ", want " + wantStatus(c.ExpectStatus))
	}
	if c.ExpectBody == "" {
		return nil
	}
	buf := bufPool.Get().(*[maxBody]byte)
	defer bufPool.Put(buf)
	n, err := io.ReadFull(resp.Body, buf[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return err
	}
	if !bytes.Contains(buf[:n], []byte(c.ExpectBody)) {
		return probeError(fmt.Sprintf("body lacks %q", c.ExpectBody))
	}
	return nil
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

// CloseIdleConnections abandons the dials that probes cut short left behind
// (each would otherwise end by itself at its probe's deadline). The Checker
// calls it when Run returns if it created the NetProber itself.
func (p *NetProber) CloseIdleConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, cl := range p.clients {
		cl.CloseIdleConnections()
	}
}

// client returns the http.Client for t's TLS settings, building it on first use.
func (p *NetProber) client(t Target) (*http.Client, error) {
	var key clientKey
	if t.Check.Type == "https" {
		key = clientKey{
			https:      true,
			serverName: serverName(t.Check),
			caFile:     t.Check.CAFile,
			skipVerify: t.Check.SkipVerify,
		}
	}
	// Building a client (and reading a CA file) happens once per key, so
	// doing it under the lock costs nothing in the steady state.
	p.mu.Lock()
	defer p.mu.Unlock()
	if cl := p.clients[key]; cl != nil {
		return cl, nil
	}
	cl, err := newClient(key)
	if err != nil {
		return nil, err // not cached: a fixed CA file is picked up by the next probe
	}
	if p.clients == nil {
		p.clients = make(map[clientKey]*http.Client)
	}
	p.clients[key] = cl
	return cl, nil
}

// serverName is the name a TLS certificate must be valid for: the configured
// one, else the Host header's, else "" (net/http then uses the endpoint's host).
func serverName(c config.Check) string {
	if c.TLSServerName != "" {
		return c.TLSServerName
	}
	if host, _, err := net.SplitHostPort(c.Host); err == nil {
		return host
	}
	return c.Host
}

func newClient(key clientKey) (*http.Client, error) {
	tr := &http.Transport{
		Proxy:                  nil, // never from the environment
		DialContext:            dialContext,
		DisableKeepAlives:      true,
		DisableCompression:     true, // ExpectBody is matched against the bytes sent
		MaxResponseHeaderBytes: maxHeaderBytes,
	}
	if key.https {
		conf := &tls.Config{
			ServerName:         key.serverName,
			InsecureSkipVerify: key.skipVerify,
			MinVersion:         tls.VersionTLS12,
		}
		if key.caFile != "" {
			pem, err := os.ReadFile(key.caFile)
			if err != nil {
				return nil, probeError("TLS: CA file: " + err.Error())
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, probeError("TLS: CA file " + key.caFile + " holds no PEM certificate")
			}
			conf.RootCAs = pool
		}
		tr.TLSClientConfig = conf
	}
	return &http.Client{
		Transport: tr,
		// A redirect is an answer like any other, judged by its status.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
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
		return "certificate signed by unknown authority"
	case errors.As(err, &badHost):
		return fmt.Sprintf("certificate is not valid for %q", badHost.Host)
	case errors.As(err, &invalid):
		if invalid.Reason == x509.Expired {
			return "certificate expired or not yet valid"
		}
		return strings.TrimPrefix(invalid.Error(), "x509: ")
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
