package instance

import (
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestGossipDropEnv names a file of gossip addresses (host:port, one a line)
// this instance must neither send to nor dial: a test-only hook that cuts
// cluster links (a partition) without root, iptables or stopping the
// process. The file is read again at most every 100 ms, so emptying it heals
// the partition. It is for the e2e tests only; production configurations
// never set it.
const TestGossipDropEnv = "COOPR_GSLB_TEST_GOSSIP_DROP"

// testGossipDrop returns the transport wrapper of TestGossipDropEnv, or nil
// when it is not set.
func testGossipDrop() func(memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
	path := os.Getenv(TestGossipDropEnv)
	if path == "" {
		return nil
	}
	return func(tr memberlist.NodeAwareTransport) memberlist.NodeAwareTransport {
		return &dropTransport{NodeAwareTransport: tr, path: path}
	}
}

// dropTransport is memberlist's transport with the links of a file cut.
type dropTransport struct {
	memberlist.NodeAwareTransport
	path string

	mu      sync.Mutex
	checked time.Time
	drop    map[string]bool
}

func (t *dropTransport) blocked(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now := time.Now(); now.Sub(t.checked) > 100*time.Millisecond {
		t.checked = now
		t.drop = map[string]bool{}
		if data, err := os.ReadFile(t.path); err == nil {
			for _, l := range strings.Fields(string(data)) {
				t.drop[l] = true
			}
		}
	}
	return t.drop[addr]
}

func (t *dropTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.blocked(addr) {
		return time.Now(), nil // lost on the way, as UDP may be
	}
	return t.NodeAwareTransport.WriteTo(b, addr)
}

func (t *dropTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.blocked(a.Addr) {
		return time.Now(), nil
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *dropTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if t.blocked(addr) {
		return nil, fmt.Errorf("dial %s: cut by %s", addr, TestGossipDropEnv)
	}
	return t.NodeAwareTransport.DialTimeout(addr, timeout)
}

func (t *dropTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.blocked(a.Addr) {
		return nil, fmt.Errorf("dial %s: cut by %s", a.Addr, TestGossipDropEnv)
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}
