package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// The upstream side is net/http's Transport, tuned for a proxy: a keep-alive
// pool per endpoint, a bound on answer headers, and no transparent
// decompression. The Transport already refuses what a hand-written client
// has to rediscover: it discards a pooled connection on which a backend sent
// bytes nobody asked for (a stray second answer would otherwise reach the
// next, unrelated client), validates the request it writes, bounds the
// answer's header block (MaxResponseHeaderBytes, 1xx answers included) and
// speaks TLS.

// maxIdlePerEndpoint bounds the idle keep-alive connections kept per endpoint.
const maxIdlePerEndpoint = 256

// max1xx bounds the informational answers (103 Early Hints, ...) read before
// the final one. Each is bounded in size by max_response_header_bytes; the
// Transport leaves their number to whoever forwards them (ReverseProxy does
// not count them), so the attempt's trace does.
const max1xx = 5

// upstreams are the Transports the proxy sends requests with: one for plain
// HTTP, and, when services set upstream TLS, one per distinct *tls.Config
// (a Transport holds one TLS client configuration, and its pool is keyed by
// scheme and address, so endpoints share a Transport safely).
//
// Upstream TLS plugs in here: build the per-(service, DC) *tls.Config once
// per config load, and in buildView set the target's transport and scheme
// with forTLS (see targetView.rt). Nothing else in the request path changes.
type upstreams struct {
	p   *Proxy
	cfg config.Proxy // the settings read at New

	plain *http.Transport

	mu    sync.Mutex // guards byTLS; taken only while building a view
	byTLS map[*tls.Config]*http.Transport
}

func (u *upstreams) init(p *Proxy, c *config.Proxy) {
	u.p, u.cfg = p, *c
	u.plain = u.newTransport(nil)
	u.byTLS = map[*tls.Config]*http.Transport{}
}

// newTransport returns a Transport with the proxy's settings that dials
// endpoints with tc when tc is not nil.
func (u *upstreams) newTransport(tc *tls.Config) *http.Transport {
	maxHdr := u.cfg.MaxResponseHeaderBytes
	if maxHdr <= 0 {
		maxHdr = 1 << 20
	}
	return &http.Transport{
		Proxy:       nil, // never an environment proxy: endpoints are addressed directly
		DialContext: u.p.dial,
		// A keep-alive pool sized for throughput: a busy endpoint should not
		// pay a dial per request.
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: maxIdlePerEndpoint,
		IdleConnTimeout:     u.cfg.IdleTimeout.D(),
		// A backend that does not answer 100 Continue within a second gets
		// the body anyway, as curl does.
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: maxHdr,
		// Pass Accept-Encoding and compressed bodies through untouched.
		DisableCompression: true,
		// Response header timeouts are enforced per try by the retry loop,
		// which knows whether another try may follow.
		ResponseHeaderTimeout: 0,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   10 * time.Second,
		// HTTP/1.1 to backends, also over TLS: upgrades (WebSockets) need it,
		// and Coopr servers speak it.
		ForceAttemptHTTP2: false,
		WriteBufferSize:   4 << 10,
		ReadBufferSize:    4 << 10,
	}
}

// forTLS returns the Transport for endpoints dialled with tc, and "https";
// with tc nil, the plain one and "http". tc is compared by identity: pass the
// same *tls.Config for the same settings, or each gets its own pool.
func (u *upstreams) forTLS(tc *tls.Config) (*http.Transport, string) {
	if tc == nil {
		return u.plain, "http"
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	t := u.byTLS[tc]
	if t == nil {
		t = u.newTransport(tc)
		u.byTLS[tc] = t
	}
	return t, "https"
}

// closeIdle closes every idle upstream connection.
func (u *upstreams) closeIdle() {
	u.plain.CloseIdleConnections()
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, t := range u.byTLS {
		t.CloseIdleConnections()
	}
}

// dial connects to an endpoint. It waits dialMultiple times the
// address's recent connect latency (at least dialTimeoutFloor), at most the
// current proxy.dial_timeout, so a black-holed endpoint (SYNs dropped) fails
// over in a fraction of the configured timeout. Each dial has its own
// timeout: the Transport starts a new dial for a try rather than queueing it
// behind a pending one (MaxConnsPerHost is unlimited).
func (p *Proxy) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	lat := p.connectLat.of(addr)
	timeout := lat.bound(dialTimeoutFloor, p.currentView().cfg.DialTimeout.D(), dialMultiple, dialMinSamples)
	start := time.Now()
	var c net.Conn
	var err error
	if p.opts.Dial != nil {
		dctx, cancel := context.WithTimeout(ctx, timeout)
		c, err = p.opts.Dial(dctx, network, addr)
		cancel()
	} else {
		d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
		c, err = d.DialContext(ctx, network, addr)
	}
	if err == nil {
		lat.observe(time.Since(start))
	}
	return c, err
}

// retain drops the Transports of TLS configurations the current view no
// longer uses, closing their idle connections. It is called while building a
// view, with the configurations that view uses.
func (u *upstreams) retain(used map[*tls.Config]bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for tc, t := range u.byTLS {
		if !used[tc] {
			t.CloseIdleConnections()
			delete(u.byTLS, tc)
		}
	}
}

// isHeaderTooLarge reports whether err is the Transport's refusal of an
// answer whose header block exceeded MaxResponseHeaderBytes. net/http has no
// sentinel for it, only this text (transport.go, readResponse).
func isHeaderTooLarge(err error) bool {
	return err != nil && strings.Contains(err.Error(), "server response headers exceeded")
}
