package simulator

import (
	"bufio"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParseFault(t *testing.T) {
	tests := []struct {
		mode    string
		query   string
		want    Fault
		wantErr bool
	}{
		{"none", "", Fault{}, false},
		{"refuse", "", Fault{Mode: Refuse}, false},
		{"HANG", "", Fault{Mode: Hang}, false},
		{"slow", "", Fault{Mode: Slow, Delay: DefaultSlowDelay}, false},
		{"slow", "delay=250ms", Fault{Mode: Slow, Delay: 250 * time.Millisecond}, false},
		{"500", "", Fault{Mode: Error500}, false},
		{"error500", "failnext=2", Fault{Mode: Error500, FailNext: 2}, false},
		{"flap", "period=3s", Fault{Mode: Flap, FlapPeriod: 3 * time.Second}, false},
		{"flap", "", Fault{Mode: Flap, FlapPeriod: DefaultFlapPeriod}, false},
		{"failnext", "", Fault{FailNext: 1}, false},
		{"failnext", "n=3", Fault{FailNext: 3}, false},
		{"bogus", "", Fault{}, true},
		{"slow", "delay=soon", Fault{}, true},
		{"flap", "period=-1s", Fault{}, true},
		{"failnext", "n=x", Fault{}, true},
	}
	for _, tt := range tests {
		q, _ := url.ParseQuery(tt.query)
		got, err := ParseFault(tt.mode, q)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseFault(%q, %q) = %+v, %v; want %+v, error %v", tt.mode, tt.query, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFaultTextAndJSON(t *testing.T) {
	f := Fault{Mode: Slow, Delay: 1500 * time.Millisecond, FailNext: 2}
	if got := f.String(); got != "slow(1.5s)+failnext(2)" {
		t.Errorf("String() = %q", got)
	}
	b, err := json.Marshal(f)
	if err != nil || string(b) != `{"mode":"slow","delay":"1.5s","fail_next":2}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	var back Fault
	if err := json.Unmarshal(b, &back); err != nil || back != f {
		t.Errorf("round trip = %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"mode":"melt"}`), &back); err == nil {
		t.Error("unknown mode decoded without error")
	}
	if FaultMode(42).String() != "FaultMode(42)" {
		t.Error("String of an unknown mode")
	}
}

func TestRefuseClosesAndReopensSamePort(t *testing.T) {
	s := startServer(t, Options{})
	addr := s.Addr()
	// An open stream must be cut, not left running on a "refusing" server.
	resp, err := newClient(5 * time.Second).Get(s.URL() + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}

	s.SetFault(Fault{Mode: Refuse})
	if s.Listening() {
		t.Error("Listening() after Refuse")
	}
	_, err = net.DialTimeout("tcp", addr, time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dial during Refuse: %v, want connection refused", err)
	}
	streamCut := false
	for i := 0; i < 100 && !streamCut; i++ {
		_, err := br.ReadString('\n')
		streamCut = err != nil
	}
	if !streamCut {
		t.Error("open stream survived Refuse")
	}

	s.SetFault(Fault{})
	if s.Addr() != addr || !s.Listening() || s.ListenErr() != nil {
		t.Fatalf("after recovery: addr %s (was %s), listening %v, err %v", s.Addr(), addr, s.Listening(), s.ListenErr())
	}
	if r := do(t, "GET", "http://"+addr+"/status", "", nil); r.code != 200 {
		t.Errorf("status after recovery: %d", r.code)
	}
}

func TestHangHoldsUntilRecovery(t *testing.T) {
	s := startServer(t, Options{})
	s.SetFault(Fault{Mode: Hang})
	start := time.Now()
	_, err := tryDo(newClient(200*time.Millisecond), "GET", s.URL()+"/status", "", nil)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("hung request: %v, want a client timeout", err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Error("hung request ended before the client timeout")
	}

	// A request held when the fault clears is dropped, not left hanging.
	held := make(chan error, 1)
	go func() {
		_, err := tryDo(newClient(5*time.Second), "GET", s.URL()+"/status", "", nil)
		held <- err
	}()
	eventually(t, 2*time.Second, "the held request to arrive", func() bool { return s.Requests() == 2 })
	s.SetFault(Fault{})
	select {
	case err := <-held:
		if err == nil {
			t.Error("held request got an answer; want the connection dropped")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("held request still hanging after recovery")
	}
	if r := do(t, "GET", s.URL()+"/status", "", nil); r.code != 200 {
		t.Errorf("status after recovery: %d", r.code)
	}
}

func TestSlowDelaysEveryRequest(t *testing.T) {
	s := startServer(t, Options{})
	const delay = 150 * time.Millisecond
	s.SetFault(Fault{Mode: Slow, Delay: delay})
	for _, path := range []string{"/status", "/v2/clusters"} {
		start := time.Now()
		r := do(t, "GET", s.URL()+path, "", nil)
		if took := time.Since(start); r.code != 200 || took < delay {
			t.Errorf("%s: %d after %v, want 200 after at least %v", path, r.code, took, delay)
		}
	}
	if got := s.Fault(); got != (Fault{Mode: Slow, Delay: delay}) {
		t.Errorf("Fault() = %+v", got)
	}
}

func TestError500AnswersEverything(t *testing.T) {
	s := startServer(t, Options{DC: "east"})
	s.SetFault(Fault{Mode: Error500})
	for _, path := range []string{"/status", "/v2/clusters", "/echo", "/ws", "/nope"} {
		r := do(t, "GET", s.URL()+path, "", nil)
		if r.code != http.StatusInternalServerError || r.header.Get(HeaderDC) != "east" {
			t.Errorf("%s: %d with DC %q, want 500 from east", path, r.code, r.header.Get(HeaderDC))
		}
	}
}

func TestFailNextFailsExactlyThatManyProbes(t *testing.T) {
	s := startServer(t, Options{})
	s.SetFault(Fault{FailNext: 1})
	if r := do(t, "GET", s.URL()+"/v2/clusters", "", nil); r.code != 200 {
		t.Errorf("FailNext touched a non-probe request: %d", r.code)
	}
	if s.Fault().FailNext != 1 {
		t.Errorf("FailNext left = %d, want 1", s.Fault().FailNext)
	}
	var codes []int
	for range 3 {
		codes = append(codes, do(t, "GET", s.URL()+"/status", "", nil).code)
	}
	if codes[0] != 500 || codes[1] != 200 || codes[2] != 200 {
		t.Errorf("probe codes %v, want [500 200 200]", codes)
	}
	if s.Fault().FailNext != 0 {
		t.Errorf("FailNext left = %d, want 0", s.Fault().FailNext)
	}
}

func TestFlapPhases(t *testing.T) {
	t0 := time.Now()
	st := &faultState{fault: Fault{Mode: Flap, FlapPeriod: 100 * time.Millisecond}, since: t0}
	for _, tt := range []struct {
		at   time.Duration
		fail bool
	}{{0, true}, {99 * time.Millisecond, true}, {100 * time.Millisecond, false}, {199 * time.Millisecond, false}, {200 * time.Millisecond, true}} {
		if got := st.failing(t0.Add(tt.at)); got != tt.fail {
			t.Errorf("failing at %v = %v, want %v", tt.at, got, tt.fail)
		}
	}
}

func TestFlapAlternatesOnTheWire(t *testing.T) {
	s := startServer(t, Options{})
	s.SetFault(Fault{Mode: Flap, FlapPeriod: 80 * time.Millisecond})
	var seen []int
	deadline := time.Now().Add(3 * time.Second)
	for len(seen) < 3 && time.Now().Before(deadline) {
		code := do(t, "GET", s.URL()+"/status", "", nil).code
		if len(seen) == 0 || seen[len(seen)-1] != code {
			seen = append(seen, code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(seen) < 3 || seen[0] != 500 || seen[1] != 200 || seen[2] != 500 {
		t.Errorf("flap codes %v, want 500, 200, 500", seen)
	}
}

// TestFaultChangesRaceWithTraffic gives the race detector something to chew
// on: faults change while clients hammer the endpoint.
func TestFaultChangesRaceWithTraffic(t *testing.T) {
	s := startServer(t, Options{})
	faults := []Fault{
		{Mode: Error500}, {Mode: Slow, Delay: 5 * time.Millisecond}, {Mode: Hang},
		{Mode: Flap, FlapPeriod: 5 * time.Millisecond}, {Mode: Refuse}, {FailNext: 3}, {},
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := newClient(100 * time.Millisecond)
			for i := 0; i < 200; i++ {
				select {
				case <-stop:
					return
				default:
				}
				tryDo(c, "POST", s.URL()+"/v2/clusters", "{}", map[string]string{"X-Request-Id": "r"})
				tryDo(c, "GET", s.URL()+"/status", "", nil)
			}
		}()
	}
	for i := range 40 {
		s.SetFault(faults[i%len(faults)])
		_ = s.Fault()
		_ = s.RequestIDs()
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	s.SetFault(Fault{})
	if r := do(t, "GET", s.URL()+"/status", "", nil); r.code != 200 {
		t.Errorf("status after the storm: %d", r.code)
	}
}
