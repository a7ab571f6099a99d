package dnsserver

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestUDPBurstsFromManyClients sends bursts from several clients at once,
// so that the workers read batches mixing them, and checks that every
// client gets exactly the answers to its own queries, on a concrete and on
// a wildcard address.
func TestUDPBurstsFromManyClients(t *testing.T) {
	f := start(t, "")
	wild, err := New(Options{Addr: "0.0.0.0:0", Snapshot: f.engine.Snapshot})
	if err != nil {
		t.Fatal(err)
	}
	if err := wild.Start(); err != nil {
		t.Fatal(err)
	}
	defer wild.Shutdown(context.Background())

	for _, addr := range []string{f.addr, net.JoinHostPort("127.0.0.2", strconv.Itoa(wild.UDPAddr().Port))} {
		t.Run(addr, func(t *testing.T) {
			const clients, burst = 6, 20 // within a socket buffer: loopback loses nothing
			names := []string{"api.gslb.example.com.", "txt.gslb.example.com.", "nope.gslb.example.com.", "all.gslb.example.com."}
			var wg sync.WaitGroup
			for c := range clients {
				wg.Go(func() {
					conn, err := net.Dial("udp", addr)
					if err != nil {
						t.Error(err)
						return
					}
					defer conn.Close()
					want := map[uint16]string{}
					for i := range burst {
						q := query(names[(c+i)%len(names)], dns.TypeA)
						q.Id = uint16(c<<8 | i)
						want[q.Id] = q.Question[0].Name
						if _, err := conn.Write(packet(t, q)); err != nil {
							t.Error(err)
							return
						}
					}
					buf := make([]byte, 4096)
					conn.SetReadDeadline(time.Now().Add(3 * time.Second))
					for len(want) > 0 {
						n, err := conn.Read(buf)
						if err != nil {
							t.Errorf("client %d: %v with %d answers missing", c, err, len(want))
							return
						}
						var m dns.Msg
						if err := m.Unpack(buf[:n]); err != nil {
							t.Error(err)
							return
						}
						name, ok := want[m.Id]
						if !ok || len(m.Question) != 1 || m.Question[0].Name != name {
							t.Errorf("client %d got an answer not for its queries:\n%v", c, &m)
							return
						}
						delete(want, m.Id)
					}
				})
			}
			wg.Wait()
		})
	}
}
