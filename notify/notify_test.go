package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

func TestDeliversWithRetries(t *testing.T) {
	var calls atomic.Int32
	var mu sync.Mutex
	var got []Payload
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable) // the receiver fails its first two calls
			return
		}
		var p Payload
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &p)
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	n := New([]*config.Notify{{URL: srv.URL, Events: []string{"dc_down", "dc_up"}}}, Options{Registerer: reg, RetryWaitMin: time.Millisecond, RetryWaitMax: 5 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.Run(ctx)

	n.Notify(routing.Event{Kind: routing.EventDCUp, DC: "east", Service: "api", Initial: true}) // start-up: no news
	n.Notify(routing.Event{Kind: routing.EventEndpointDown, DC: "east"})                        // not an alert
	n.Notify(routing.Event{Kind: routing.EventDrained, DC: "east"})                             // not subscribed
	n.Notify(routing.Event{Kind: routing.EventDCDown, DC: "east", Service: "api", Reason: "2/2 endpoints failing"})
	n.Notify(routing.Event{Kind: routing.EventDCUp, DC: "east", Service: "api"})

	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := len(got) == 2
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].Event != "dc_down" || got[1].Event != "dc_up" || got[0].DC != "east" {
		t.Fatalf("delivered %+v", got)
	}
	if got[0].Text == "" || got[0].Reason != "2/2 endpoints failing" {
		t.Errorf("payload %+v", got[0])
	}
	if v := testutil.ToFloat64(n.sent.WithLabelValues("ok")); v != 2 {
		t.Errorf("ok deliveries %v", v)
	}
}

func TestFullQueueDropsAndCounts(t *testing.T) {
	n := New([]*config.Notify{{URL: "http://127.0.0.1:9/"}}, Options{})
	// Run is not started: nothing drains the queue.
	for range QueueSize + 5 {
		n.Notify(routing.Event{Kind: routing.EventDCDown, DC: "east"})
	}
	if v := testutil.ToFloat64(n.dropped); v != 5 {
		t.Errorf("dropped %v, want 5", v)
	}
}
