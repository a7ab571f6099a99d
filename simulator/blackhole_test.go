package simulator

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// TestBlackholeConnectTimesOut checks, on the kernel running the test, that a
// Blackhole fault makes connects time out (neither refused nor accepted),
// that a request on a connection opened before it is never answered, and
// that the endpoint serves again on the same port once it clears.
func TestBlackholeConnectTimesOut(t *testing.T) {
	s := startServer(t, Options{DC: "east"})
	// A kept-alive connection opened before the fault.
	keep := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{}}
	defer keep.CloseIdleConnections()
	if r, err := keep.Get(s.URL() + "/status"); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	// /status answers Connection: close; open a reusable one on /echo.
	if r, err := keep.Get(s.URL() + "/echo"); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}

	s.SetFault(Fault{Mode: Blackhole})
	if err := s.ListenErr(); err != nil {
		t.Fatal(err)
	}
	if got := s.Fault().Mode; got != Blackhole {
		t.Fatalf("mode %v", got)
	}
	for i := range 3 {
		start := time.Now()
		c, err := net.DialTimeout("tcp", s.Addr(), 400*time.Millisecond)
		if err == nil {
			c.Close()
			t.Fatalf("connect %d succeeded in a black hole", i)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("connect %d: %v after %s, want a timeout (not refused)", i, err, time.Since(start))
		}
	}
	start := time.Now()
	_, err := keep.Get(s.URL() + "/echo")
	if err == nil {
		t.Fatal("a request on an open connection was answered in a black hole")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("request on an open connection failed after %s (%v), want it to hang until the client timeout", d, err)
	}

	s.SetFault(Fault{})
	if err := s.ListenErr(); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "GET", s.URL()+"/status", "", nil); r.code != 200 {
		t.Fatalf("after the black hole: %d", r.code)
	}
	// And again, then Close while in it: nothing leaks (goleak in TestMain).
	s.SetFault(Fault{Mode: Blackhole})
	s.SetFault(Fault{Mode: Blackhole})
	s.SetFault(Fault{Mode: Refuse})
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Error("refuse after black hole accepted a connection")
	}
	s.SetFault(Fault{Mode: Blackhole})
}

func TestBlackholeThroughControlAPI(t *testing.T) {
	fleet, err := StartFleet(DCOptions{Name: "east"})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	ctl := httptest.NewServer(fleet.Handler())
	defer ctl.Close()
	api := ctl.URL
	resp, err := http.PostForm(api+"/dc/east/fail?mode=blackhole", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("POST /dc/east/fail?mode=blackhole: %d", resp.StatusCode)
	}
	for _, ep := range fleet.Datacenter("east").Endpoints() {
		if ep.Fault().Mode != Blackhole {
			t.Errorf("%s: mode %v", ep.Name(), ep.Fault().Mode)
		}
		if c, err := net.DialTimeout("tcp", ep.Addr(), 300*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("%s: connect succeeded", ep.Name())
		}
	}
}
