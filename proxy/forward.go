package proxy

import (
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
)

// rewrite prepares the outgoing request. ReverseProxy has already removed
// hop-by-hop headers and every Forwarded and X-Forwarded-* header the client
// sent; every other end-to-end header (Coopr-UserID, Coopr-TenantID,
// Coopr-ApiKey, cookies, ...) passes untouched.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In)
	out := pr.Out
	// The endpoint is set per try; the client's Host is kept unless the
	// service names another.
	out.URL.Scheme = "http"
	if st.sv.upstreamHost != "" {
		out.Host = st.sv.upstreamHost
	}
	h := out.Header
	if keep := st.forwarded(); keep != nil {
		h["Forwarded"] = keep
	}
	h["X-Forwarded-For"] = st.fwd[0:1:1]
	h["X-Forwarded-Proto"] = st.fwd[1:2:2]
	if st.fwd[2] != "" {
		h["X-Forwarded-Host"] = st.fwd[2:3:3]
	}
}

// forwarded sets st.fwd to the X-Forwarded-For, -Proto and -Host values to
// send upstream (no -Host when empty), and returns the client's Forwarded
// values to send on, if any. A trusted proxy's forwarding headers are kept
// and extended; anyone else's are dropped so that they cannot spoof them.
func (st *reqState) forwarded() (keep []string) {
	in := st.in
	xff := st.peerIP
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	fwdHost := in.Host
	if st.trusted {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			xff = strings.Join(prior, ", ") + ", " + xff
		}
		if v := in.Header.Get("X-Forwarded-Proto"); v != "" {
			proto = v
		}
		if v := in.Header.Get("X-Forwarded-Host"); v != "" {
			fwdHost = v
		}
		if v := in.Header["Forwarded"]; len(v) > 0 {
			keep = v
		}
	}
	st.fwd = [3]string{xff, proto, fwdHost}
	return keep
}

// clientAddr returns the connection's address as text, the client's address
// for routing, and whether the connection comes from a trusted proxy. Behind
// trusted proxies the client is the right-most address of X-Forwarded-For
// that is not itself a trusted proxy: addresses to its left were written by
// the client and prove nothing.
func clientAddr(r *http.Request, trusted []netip.Prefix) (peer string, client netip.Addr, isTrusted bool) {
	peer = r.RemoteAddr
	if h, _, err := net.SplitHostPort(peer); err == nil {
		peer = h
	}
	client, err := netip.ParseAddr(peer)
	if err != nil {
		return peer, netip.Addr{}, false
	}
	client = client.WithZone("").Unmap()
	if !contains(trusted, client) {
		return peer, client, false
	}
	values := r.Header["X-Forwarded-For"]
	for i := len(values) - 1; i >= 0; i-- {
		v := values[i]
		for v != "" {
			item := v
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				item, v = v[j+1:], v[:j]
			} else {
				v = ""
			}
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			a, ok := parseForwardedAddr(item)
			if !ok {
				// Garbage: trust nothing further left, and keep the last
				// address we could vouch for.
				return peer, client, true
			}
			client = a
			if !contains(trusted, a) {
				return peer, client, true
			}
		}
	}
	return peer, client, true
}

// parseForwardedAddr parses one X-Forwarded-For item: an address, possibly
// with a port or in brackets.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.WithZone("").Unmap(), true
		}
	}
	return netip.Addr{}, false
}

func contains(nets []netip.Prefix, a netip.Addr) bool {
	for _, n := range nets {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// recorder remembers the status and size of the answer for the log and the
// metrics. Unwrap lets ReverseProxy flush and hijack the real writer.
type recorder struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *recorder) WriteHeader(code int) {
	if w.code == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }
