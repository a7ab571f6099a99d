package admin

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/netutil"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// ListenOptions bound the admin listener. Zero timeouts mean none, zero
// MaxConnections no cap; ListenOptionsFrom fills them from the config.
type ListenOptions struct {
	// ReadTimeout bounds reading a request, headers and body; WriteTimeout
	// writing its answer; IdleTimeout a keep-alive connection between
	// requests.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxHeaderBytes bounds request headers. Zero means net/http's 1 MiB.
	MaxHeaderBytes int
	// MaxConnections caps open connections: more wait in the kernel's
	// listen backlog until one closes.
	MaxConnections int
	// AllowedHosts are Host values answered besides the listener's own
	// addresses and loopback names (see HostGuard).
	AllowedHosts []string
}

// ListenOptionsFrom returns the admin listener's limits of cfg
// (admin.read_timeout, write_timeout, idle_timeout, max_connections,
// allowed_hosts; proxy.max_header_bytes).
func ListenOptionsFrom(cfg *config.Config) ListenOptions {
	a := cfg.Admin
	return ListenOptions{
		ReadTimeout:    a.ReadTimeout.D(),
		WriteTimeout:   a.WriteTimeout.D(),
		IdleTimeout:    a.IdleTimeout.D(),
		MaxHeaderBytes: cfg.Proxy.MaxHeaderBytes,
		MaxConnections: a.MaxConnections,
		AllowedHosts:   a.AllowedHosts,
	}
}

// NewServer binds addr (listen.admin) and returns the server that serves h
// on it, hardened: the timeouts and connection cap of o, and HostGuard in
// front of h. The caller serves it with srv.Serve(ln) and stops it with
// Shutdown or Close.
func NewServer(addr string, h http.Handler, o ListenOptions) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("listen.admin %s: %w", addr, err)
	}
	srv, ln := ServerOn(ln, addr, h, o)
	return srv, ln, nil
}

// ServerOn is NewServer for a listener the caller already bound (or
// inherited across an upgrade) for listen.admin addr.
func ServerOn(ln net.Listener, addr string, h http.Handler, o ListenOptions) (*http.Server, net.Listener) {
	guard := NewHostGuard(addr, ln.Addr().String(), o.AllowedHosts)
	srv := &http.Server{
		Handler:           guard.Wrap(h),
		ReadHeaderTimeout: o.ReadTimeout,
		ReadTimeout:       o.ReadTimeout,
		WriteTimeout:      o.WriteTimeout,
		IdleTimeout:       o.IdleTimeout,
		MaxHeaderBytes:    o.MaxHeaderBytes,
	}
	if o.MaxConnections > 0 {
		ln = netutil.LimitListener(ln, o.MaxConnections)
	}
	return srv, ln
}

// HostGuard refuses requests whose Host header is not a name of the admin
// listener, so that a web page on another site cannot reach the API
// through DNS rebinding (its name resolving to this host): the browser
// sends that site's name as Host. It answers:
//   - loopback names: localhost (and *.localhost), any loopback address;
//   - the host of listen.admin and the address the listener is bound to;
//   - when listen.admin is a wildcard (0.0.0.0, [::] or no host), every
//     address of the machine's interfaces and its host name, so an operator
//     can browse to http://HOST-IP:9090/;
//   - admin.allowed_hosts (a name behind a reverse proxy, say).
//
// The port is not checked (a port forward changes it; DNS rebinding is about
// the name). /healthz and /readyz answer any Host, for load balancers.
// Refused requests get 421 Misdirected Request. It is safe for concurrent use.
type HostGuard struct {
	names    map[string]bool // lower-case host names and addresses
	wildcard bool

	mu      sync.Mutex
	ifAddrs map[netip.Addr]bool
	expires time.Time
}

// ifAddrsTTL is how long the interface addresses are trusted before they
// are listed again (DHCP may change them).
const ifAddrsTTL = 30 * time.Second

// NewHostGuard returns the guard of a listener configured as configured
// (listen.admin) and bound to bound, answering allowed besides.
func NewHostGuard(configured, bound string, allowed []string) *HostGuard {
	g := &HostGuard{names: map[string]bool{"localhost": true}}
	for _, a := range []string{configured, bound} {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			continue
		}
		if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
			g.wildcard = true
			continue
		}
		g.names[normalizeHostName(host)] = true
	}
	for _, a := range allowed {
		g.names[normalizeHostName(hostOnly(a))] = true
	}
	if g.wildcard {
		if h, err := os.Hostname(); err == nil && h != "" {
			g.names[normalizeHostName(h)] = true
			if short, _, ok := strings.Cut(h, "."); ok {
				g.names[normalizeHostName(short)] = true
			}
		}
	}
	return g
}

// hostOnly strips a port, and the brackets of an IPv6 literal.
func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(hostport, "["), "]")
}

func normalizeHostName(h string) string {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Unmap().WithZone("").String()
	}
	return h
}

// Allowed reports whether a request with this Host header is answered.
func (g *HostGuard) Allowed(hostHeader string) bool {
	h := normalizeHostName(hostOnly(hostHeader))
	if h == "" {
		return false
	}
	if g.names[h] || strings.HasSuffix(h, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(h)
	if err != nil {
		return false
	}
	if ip.IsLoopback() {
		return true
	}
	return g.wildcard && g.isInterfaceAddr(ip)
}

func (g *HostGuard) isInterfaceAddr(ip netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := time.Now(); now.After(g.expires) {
		g.ifAddrs = map[netip.Addr]bool{}
		if addrs, err := net.InterfaceAddrs(); err == nil {
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok {
						g.ifAddrs[ip.Unmap()] = true
					}
				}
			}
		}
		g.expires = now.Add(ifAddrsTTL)
	}
	return g.ifAddrs[ip]
}

// Wrap returns h behind the guard.
func (g *HostGuard) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" && r.URL.Path != "/readyz" && !g.Allowed(r.Host) {
			setSecurityHeaders(w.Header())
			writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf("the admin listener does not answer Host %q: use its address, a loopback name, or add the name to admin.allowed_hosts", r.Host))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// contentSecurityPolicy allows the status page exactly what it needs: its
// own inline style and script (by hash) and fetches to this origin.
var contentSecurityPolicy = buildCSP()

func buildCSP() string {
	var page bytes.Buffer
	if err := pageTmpl.ExecuteTemplate(&page, "page", pageData{}); err != nil {
		panic("admin: rendering the status page for its CSP hashes: " + err.Error())
	}
	scripts := inlineHashes(page.Bytes(), "<script>", "</script>")
	styles := inlineHashes(page.Bytes(), "<style>", "</style>")
	return "default-src 'none'; script-src " + scripts + "; style-src " + styles +
		"; connect-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'"
}

// inlineHashes returns the CSP sources ('sha256-...') of every element of
// page between open and close.
func inlineHashes(page []byte, open, close string) string {
	var srcs []string
	for rest := page; ; {
		_, after, ok := bytes.Cut(rest, []byte(open))
		if !ok {
			break
		}
		body, tail, ok := bytes.Cut(after, []byte(close))
		if !ok {
			break
		}
		sum := sha256.Sum256(body)
		srcs = append(srcs, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		rest = tail
	}
	if len(srcs) == 0 {
		return "'none'"
	}
	return strings.Join(srcs, " ")
}

// setSecurityHeaders marks every admin answer as not to be framed, sniffed
// or given more than the status page needs.
func setSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
}
