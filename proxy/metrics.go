package proxy

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// noLabel stands for a service or DC a request never got, such as the
// service of an unknown host or the DC of a refused request.
const noLabel = "-"

// failKind classifies why a try failed, for retry reasons, upstream error
// metrics and the access log.
type failKind uint8

const (
	failNone failKind = iota
	// failConnect: the connection could not be made (refused, unreachable,
	// dial timeout); nothing reached the backend.
	failConnect
	// failNotSent: a connection was made but failed before the request was
	// written; nothing reached the backend.
	failNotSent
	// failReset: the connection broke after the request was written.
	failReset
	// failTimeout: no response headers in time.
	failTimeout
	// failOther is any other transport error.
	failOther
	// failHeaderTooLarge: the answer's header block exceeded
	// proxy.max_response_header_bytes.
	failHeaderTooLarge
	// failStatus500..504 and failStatus5xx are answers listed in
	// retry.on_status, which a safe request may be retried on.
	failStatus502
	failStatus503
	failStatus504
	failStatus500
	failStatus5xx
	numFailKinds
)

var failKindNames = [numFailKinds]string{
	failNone:           "none",
	failConnect:        "connect",
	failNotSent:        "not_sent",
	failReset:          "reset",
	failTimeout:        "timeout",
	failOther:          "other",
	failHeaderTooLarge: "header_too_large",
	failStatus502:      "status_502",
	failStatus503:      "status_503",
	failStatus504:      "status_504",
	failStatus500:      "status_500",
	failStatus5xx:      "status_5xx",
}

func (k failKind) String() string { return failKindNames[k] }

// reachedBackend reports whether a try that failed this way may have been
// seen by the backend.
func (k failKind) reachedBackend() bool { return k != failConnect && k != failNotSent }

// metrics are the proxy's Prometheus metrics. Label children are created once
// per service and DC and cached, so the request path only increments.
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	retries        *prometheus.CounterVec
	hedges         *prometheus.CounterVec
	ejections      *prometheus.CounterVec
	upstreamErrors [numFailKinds]prometheus.Counter
	shardRouted    *prometheus.CounterVec
	shardNoOwner   *prometheus.CounterVec
	connsOpen      *prometheus.GaugeVec
	connsRejected  *prometheus.CounterVec

	mu       sync.Mutex // guards the caches below; taken only on first use
	services map[string]*serviceMetrics
	dcs      map[string]*dcMetrics
}

// serviceMetrics are one service's cached children.
type serviceMetrics struct {
	retries [numFailKinds]prometheus.Counter
	hedges  [numHedgeOutcomes]prometheus.Counter
}

// The outcomes counted by hedges_total.
const (
	hedgeStarted = iota
	hedgeFirstWon
	hedgeBackupWon
	numHedgeOutcomes
)

var hedgeOutcomeNames = [numHedgeOutcomes]string{"started", "first_won", "backup_won"}

// dcMetrics are one service-and-DC pair's cached children.
type dcMetrics struct {
	service, dc string
	requests    *prometheus.CounterVec
	// codes caches the requests counter of each status code, filled on first use.
	codes     [600]atomic.Pointer[prometheus.Counter]
	duration  prometheus.Observer
	ejections prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "requests_total",
			Help: "HTTP requests answered by the proxy, by service, the DC that served (- for none) and status code.",
		}, []string{"service", "dc", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response, retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"service", "dc"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "retries_total",
			Help: "Requests sent again to another endpoint, by service and the failure that caused it.",
		}, []string{"service", "reason"}),
		hedges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "hedges_total",
			Help: "Backup tries started beside a first try that ran past its adaptive timeout (retry.hedge), by service and outcome: started, first_won or backup_won (neither, when both failed).",
		}, []string{"service", "outcome"}),
		ejections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "ejections_total",
			Help: "Endpoints ejected by outlier detection after consecutive failures.",
		}, []string{"service", "dc"}),
		shardRouted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "shard_routed_total",
			Help: "Requests for a Coopr cluster sent to the DC that owns its shard (shard_routing), by service, owner and whether the owner took the shard over.",
		}, []string{"service", "owner", "taken_over"}),
		shardNoOwner: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "shard_no_owner_total",
			Help: "Cluster writes refused with 503 because neither the shard's home DC nor any of its takeover DCs could write it, by service and home DC.",
		}, []string{"service", "home"}),
		connsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "connections_open",
			Help: "Client connections open on each proxy listener (http, https).",
		}, []string{"listener"}),
		connsRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "coopr_gslb", Subsystem: "proxy", Name: "connections_rejected_total",
			Help: "Client connections closed on accept because the listener had proxy.max_connections open.",
		}, []string{"listener"}),
		services: map[string]*serviceMetrics{},
		dcs:      map[string]*dcMetrics{},
	}
	upstream := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "coopr_gslb", Subsystem: "proxy", Name: "upstream_errors_total",
		Help: "Failed tries to reach an endpoint, by kind (connect, not_sent, reset, timeout, other, header_too_large).",
	}, []string{"kind"})
	for k := failConnect; k <= failHeaderTooLarge; k++ {
		m.upstreamErrors[k] = upstream.WithLabelValues(k.String())
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.retries, m.hedges, m.ejections, upstream, m.shardRouted, m.shardNoOwner, m.connsOpen, m.connsRejected)
	}
	return m
}

func (m *metrics) service(name string) *serviceMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sm := m.services[name]; sm != nil {
		return sm
	}
	sm := &serviceMetrics{}
	for k := failConnect; k < numFailKinds; k++ {
		sm.retries[k] = m.retries.WithLabelValues(name, k.String())
	}
	for o := range sm.hedges {
		sm.hedges[o] = m.hedges.WithLabelValues(name, hedgeOutcomeNames[o])
	}
	m.services[name] = sm
	return sm
}

func (m *metrics) dc(service, dc string) *dcMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := service + "/" + dc
	if dm := m.dcs[key]; dm != nil {
		return dm
	}
	dm := &dcMetrics{service: service, dc: dc, requests: m.requests, duration: m.duration.WithLabelValues(service, dc)}
	if dc != noLabel {
		dm.ejections = m.ejections.WithLabelValues(service, dc)
	}
	m.dcs[key] = dm
	return dm
}

// observe counts one answered request.
func (dm *dcMetrics) observe(code int, seconds float64) {
	dm.code(code).Inc()
	dm.duration.Observe(seconds)
}

func (dm *dcMetrics) code(code int) prometheus.Counter {
	if code < 0 || code >= len(dm.codes) {
		return dm.requests.WithLabelValues(dm.service, dm.dc, strconv.Itoa(code))
	}
	if c := dm.codes[code].Load(); c != nil {
		return *c
	}
	c := dm.requests.WithLabelValues(dm.service, dm.dc, strconv.Itoa(code))
	dm.codes[code].Store(&c)
	return c
}
