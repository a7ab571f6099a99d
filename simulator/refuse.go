package simulator

import (
	"net/http"
	"net/netip"
)

// RefuseFrom makes the endpoint hang up on every request whose connection
// comes from one of addrs (its source address), and serve everyone else as
// before: one vantage point sees the endpoint down while the others see it
// up, as when only one GSLB instance's path to a DC is broken. No address
// clears it. It is independent of the endpoint's Fault.
func (s *Server) RefuseFrom(addrs ...netip.Addr) {
	set := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		set[a.Unmap()] = true
	}
	s.refuseFrom.Store(&set)
}

// RefuseFrom applies Server.RefuseFrom to every endpoint of the datacenter.
func (d *Datacenter) RefuseFrom(addrs ...netip.Addr) {
	for _, s := range d.Endpoints() {
		s.RefuseFrom(addrs...)
	}
}

// refusing wraps the endpoint's handler with RefuseFrom's check.
func (s *Server) refusing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if set := s.refuseFrom.Load(); set != nil && len(*set) > 0 {
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && (*set)[ap.Addr().Unmap()] {
				hangUp(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// hangUp closes the request's connection without an answer.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	conn, _, err := hj.Hijack()
	if err != nil {
		return
	}
	conn.Close()
}
