// Package notify sends routing events to operators' webhooks. Events wait in
// a bounded queue so that neither probing nor serving ever blocks on a slow
// receiver; what does not fit is dropped and counted.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/routing"
)

// QueueSize bounds the events waiting to be sent.
const QueueSize = 1024

// Payload is the JSON body POSTed to a webhook.
type Payload struct {
	Event   string    `json:"event"`
	Time    time.Time `json:"time"`
	DC      string    `json:"dc,omitempty"`
	Service string    `json:"service,omitempty"`
	Reason  string    `json:"reason,omitempty"`
	By      string    `json:"by,omitempty"`
	Mode    string    `json:"mode,omitempty"`
	// Text is a one-line summary for chat systems.
	Text string `json:"text"`

	// Endpoint is set for the drain of one endpoint.
	Endpoint string `json:"endpoint,omitempty"`
}

// Options tune a Notifier. The zero value is usable.
type Options struct {
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// RetryMax, RetryWaitMin and RetryWaitMax shape the retries of one POST.
	// Zero means 5, 200ms and 5s.
	RetryMax                   int
	RetryWaitMin, RetryWaitMax time.Duration
}

// Notifier delivers events to webhooks in order, one at a time. Create it
// with New, start it with Run; Notify never blocks.
type Notifier struct {
	hooks  atomic.Pointer[[]*config.Notify]
	queue  chan Payload
	client *retryablehttp.Client
	log    *slog.Logger

	sent    *prometheus.CounterVec
	dropped prometheus.Counter
}

// New returns a Notifier for the webhooks.
func New(hooks []*config.Notify, opts Options) *Notifier {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := retryablehttp.NewClient()
	c.RetryMax = cmpOr(opts.RetryMax, 5)
	c.RetryWaitMin = cmpOr(opts.RetryWaitMin, 200*time.Millisecond)
	c.RetryWaitMax = cmpOr(opts.RetryWaitMax, 5*time.Second)
	c.HTTPClient.Timeout = 10 * time.Second
	c.Logger = nil // failures are logged once per event below, not per attempt
	n := &Notifier{
		queue:  make(chan Payload, QueueSize),
		client: c,
		log:    opts.Logger,
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "notify", Name: "deliveries_total",
			Help: "Webhook deliveries by result (ok, failed after retries).",
		}, []string{"result"}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "notify", Name: "dropped_total",
			Help: "Events dropped because the notification queue was full.",
		}),
	}
	if opts.Registerer != nil {
		opts.Registerer.MustRegister(n.sent, n.dropped)
	}
	n.SetHooks(hooks)
	return n
}

// SetHooks replaces the webhooks, for a configuration reload.
func (n *Notifier) SetHooks(hooks []*config.Notify) {
	hs := slices.Clone(hooks)
	n.hooks.Store(&hs)
}

// Notify queues an event for the webhooks that want it. It never blocks: a
// full queue drops the event and counts it. Events that are not alerts
// (endpoint changes, the first state learned at start-up that is not a
// failure) are ignored.
func (n *Notifier) Notify(ev routing.Event) {
	kind, ok := alertKind(ev)
	if !ok || len(*n.hooks.Load()) == 0 {
		return
	}
	p := Payload{Event: kind, Time: ev.Time, DC: ev.DC, Service: ev.Service, Endpoint: ev.Endpoint, Reason: ev.Reason, By: ev.By, Mode: ev.Mode, Text: text(kind, ev)}
	select {
	case n.queue <- p:
	default:
		n.dropped.Inc()
	}
}

func alertKind(ev routing.Event) (string, bool) {
	switch ev.Kind {
	case routing.EventDCDown, routing.EventDrained, routing.EventUndrained, routing.EventAllDown, routing.EventDNSSECExpiring:
		return string(ev.Kind), true
	case routing.EventDCUp:
		return string(ev.Kind), !ev.Initial // "east is up" at start-up is no news
	}
	return "", false
}

func text(kind string, ev routing.Event) string {
	switch kind {
	case "dc_down":
		return fmt.Sprintf("coopr-gslb: %s is DOWN for %s: %s", ev.DC, ev.Service, ev.Reason)
	case "dc_up":
		return fmt.Sprintf("coopr-gslb: %s is up again for %s", ev.DC, ev.Service)
	case "drained":
		return fmt.Sprintf("coopr-gslb: %s drained (%s) by %s: %s", drainWhat(ev), ev.Mode, ev.By, ev.Reason)
	case "undrained":
		return fmt.Sprintf("coopr-gslb: %s undrained by %s", drainWhat(ev), ev.By)
	case "all_down":
		return fmt.Sprintf("coopr-gslb: no datacenter is healthy for %s: %s", ev.Service, ev.Reason)
	case "dnssec_expiring":
		return "coopr-gslb: DNSSEC: " + ev.Reason
	}
	return "coopr-gslb: " + kind
}

// drainWhat names what a drain event is about: "east", "east/api" or
// "east/api/10.0.0.1:8080".
func drainWhat(ev routing.Event) string {
	return routing.DrainScope{DC: ev.DC, Service: ev.Service, Endpoint: ev.Endpoint}.String()
}

// Run delivers queued events until ctx is done.
func (n *Notifier) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-n.queue:
			for _, h := range *n.hooks.Load() {
				if len(h.Events) > 0 && !slices.Contains(h.Events, p.Event) {
					continue
				}
				n.deliver(ctx, h, p)
			}
		}
	}
}

func (n *Notifier) deliver(ctx context.Context, h *config.Notify, p Payload) {
	body, _ := json.Marshal(p)
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		n.sent.WithLabelValues("failed").Inc()
		n.log.Warn("webhook", "url", h.URL, "error", err)
		return
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "coopr-gslb")
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	resp, err := n.client.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	if err != nil {
		n.sent.WithLabelValues("failed").Inc()
		n.log.Warn("webhook delivery failed after retries", "url", h.URL, "event", p.Event, "error", err)
		return
	}
	n.sent.WithLabelValues("ok").Inc()
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
