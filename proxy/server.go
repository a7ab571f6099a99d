package proxy

import (
	"context"

	"github.com/coopr-gslb/coopr-gslb/h1server"
)

// GracefulServer is a server Shutdown can stop: an *http.Server (the TLS
// listener) or an *h1server.Server (the plain-HTTP one).
type GracefulServer interface {
	Shutdown(ctx context.Context) error
	Close() error
}

// PlainServer returns the lean HTTP/1.1 server for the plain-HTTP listener,
// with the timeouts and header limit of proxy config: what
// a busy proxy spends on net/http's server per request, it saves. Serve it
// with Serve, and stop it with p.Shutdown.
func (p *Proxy) PlainServer() *h1server.Server {
	c := p.opts.Snapshot().Config.Proxy
	return &h1server.Server{
		Handler:           p,
		ReadHeaderTimeout: c.ReadHeaderTimeout.D(),
		IdleTimeout:       c.IdleTimeout.D(),
		MaxHeaderBytes:    c.MaxHeaderBytes,
	}
}
