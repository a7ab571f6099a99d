package simulator

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

func TestRefuseFrom(t *testing.T) {
	s, err := Start(Options{DC: "east"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	from := func(src string) error {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext,
		}}
		defer c.CloseIdleConnections()
		resp, err := c.Get(s.URL() + "/status")
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
	steps := []struct {
		refuse   []netip.Addr
		src      string
		wantFail bool
	}{
		{nil, "127.0.0.2", false},
		{[]netip.Addr{netip.MustParseAddr("127.0.0.2")}, "127.0.0.2", true},
		{[]netip.Addr{netip.MustParseAddr("127.0.0.2")}, "127.0.0.3", false},
		{[]netip.Addr{netip.MustParseAddr("127.0.0.2")}, "127.0.0.1", false},
		{nil, "127.0.0.2", false},
	}
	for _, st := range steps {
		s.RefuseFrom(st.refuse...)
		if err := from(st.src); (err != nil) != st.wantFail {
			t.Errorf("refusing %v, request from %s: error %v, want failure %v", st.refuse, st.src, err, st.wantFail)
		}
	}
}
