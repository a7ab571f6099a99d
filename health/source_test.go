package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// TestProbeSourceAddress checks that health.source_address is the address
// probes leave from, for HTTP and TCP checks, with the endpoint given as an
// IP or as a name.
func TestProbeSourceAddress(t *testing.T) {
	from := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		from <- host
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			from <- host
			c.Close()
		}
	}()
	_, tcpPort, _ := net.SplitHostPort(l.Addr().String())

	for _, tc := range []struct {
		name, typ, endpoint, source, want string
	}{
		{"http by IP", "http", "127.0.0.1:" + port, "127.0.0.2", "127.0.0.2"},
		{"http by name", "http", "localhost:" + port, "127.0.0.3", "127.0.0.3"},
		{"http default", "http", "127.0.0.1:" + port, "", "127.0.0.1"},
		{"tcp by IP", "tcp", "127.0.0.1:" + tcpPort, "127.0.0.4", "127.0.0.4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.endpoint[:9] == "localhost" {
				if ips, _ := net.LookupHost("localhost"); len(ips) == 0 || ips[0] != "127.0.0.1" {
					t.Skip("localhost does not resolve to 127.0.0.1 first")
				}
			}
			var p NetProber
			r := p.Probe(context.Background(), Target{Endpoint: tc.endpoint, Check: config.Check{Type: tc.typ, Path: "/", SourceAddress: tc.source}})
			if !r.OK {
				t.Fatalf("probe failed: %s", r.Err)
			}
			if got := <-from; got != tc.want {
				t.Errorf("probe came from %s, want %s", got, tc.want)
			}
		})
	}
}
