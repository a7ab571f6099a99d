package dnsserver

import (
	"errors"
	"sync/atomic"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// transport is how a query arrived.
type transport uint8

const (
	udp transport = iota
	tcp
	numTransports
)

func (t transport) String() string {
	if t == tcp {
		return "tcp"
	}
	return "udp"
}

// Label values of coopr_gslb_dns_queries_total. Query types and response
// codes are folded into small fixed sets so that a client cannot grow the
// number of series, and so the counter of a query is found by indexing
// arrays rather than by building label strings.
var (
	qtypeLabels = [...]string{"A", "AAAA", "CNAME", "MX", "NS", "SOA", "TXT", "SRV", "CAA", "PTR",
		"DS", "DNSKEY", "HTTPS", "SVCB", "ANY", "AXFR", "IXFR", "other", "none"}
	rcodeLabels = [...]string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
		"BADVERS", "other", "dropped"}
)

const (
	qtypeOther = len(qtypeLabels) - 2
	// qtypeNone labels packets whose question was never read (rejected on
	// their header, or unparsable).
	qtypeNone = len(qtypeLabels) - 1
	// rcodeDropped labels queries that got no response at all (rate
	// limited, or too broken to answer).
	rcodeDropped = len(rcodeLabels) - 1
	rcodeOther   = len(rcodeLabels) - 2
)

// qtypeIndex maps a query type to its label index.
var qtypeIndex = func() map[uint16]int {
	m := map[uint16]int{}
	for i, l := range qtypeLabels[:qtypeOther] {
		m[dns.StringToType[l]] = i
	}
	return m
}()

func qtypeLabel(t uint16) int {
	if i, ok := qtypeIndex[t]; ok {
		return i
	}
	return qtypeOther
}

func rcodeLabel(rcode int) int {
	switch rcode {
	case dns.RcodeSuccess:
		return 0
	case dns.RcodeFormatError:
		return 1
	case dns.RcodeServerFailure:
		return 2
	case dns.RcodeNameError:
		return 3
	case dns.RcodeNotImplemented:
		return 4
	case dns.RcodeRefused:
		return 5
	case dns.RcodeBadVers:
		return 6
	}
	return rcodeOther
}

// metrics are the server's Prometheus metrics. The children a query touches
// are resolved once (queries lazily, per label combination; GSLB answers per
// configuration, see zone.go) so that counting costs an array index and an
// atomic add. All methods are safe for concurrent use.
type metrics struct {
	queries     *prometheus.CounterVec
	gslbAnswers *prometheus.CounterVec
	rrl         *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	tcpRejected prometheus.Counter
	tcpEvicted  prometheus.Counter

	rrlDropped, rrlSlipped prometheus.Counter
	durations              [numTransports]prometheus.Observer
	queryCounters          [numTransports][len(qtypeLabels)][len(rcodeLabels)]atomic.Pointer[prometheus.Counter]
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coopr_gslb_dns_queries_total",
			Help: "DNS queries by query type, transport and response code (rcode \"dropped\": no response was sent, because of rate limiting or a malformed packet).",
		}, []string{"qtype", "transport", "rcode"}),
		gslbAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coopr_gslb_dns_gslb_answers_total",
			Help: "GSLB answers by service and the datacenter they named (dc \"none\": no datacenter may serve).",
		}, []string{"service", "dc"}),
		rrl: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coopr_gslb_dns_rrl_total",
			Help: "UDP responses held back by response rate limiting: dropped, or slipped (sent truncated so the client retries over TCP).",
		}, []string{"action"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "coopr_gslb_dns_query_duration_seconds",
			Help:    "Time from receiving a query to handing its response to the socket; over UDP, queries read together in one batch are answered and written together, and each is observed with the batch's time.",
			Buckets: []float64{5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2, 0.1},
		}, []string{"transport"}),
		tcpEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coopr_gslb_dns_tcp_evicted_connections_total",
			Help: "Idle TCP connections closed to make room for a new one at the connection caps.",
		}),
		tcpRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coopr_gslb_dns_tcp_rejected_connections_total",
			Help: "TCP connections closed on accept because dns.tcp_max_connections were open.",
		}),
	}
	if reg != nil {
		var err error
		m.queries = register(reg, m.queries, &err)
		m.gslbAnswers = register(reg, m.gslbAnswers, &err)
		m.rrl = register(reg, m.rrl, &err)
		m.duration = register(reg, m.duration, &err)
		m.tcpRejected = register(reg, m.tcpRejected, &err)
		m.tcpEvicted = register(reg, m.tcpEvicted, &err)
		if err != nil {
			return nil, err
		}
	}
	m.rrlDropped = m.rrl.WithLabelValues("dropped")
	m.rrlSlipped = m.rrl.WithLabelValues("slipped")
	for t := range numTransports {
		m.durations[t] = m.duration.WithLabelValues(t.String())
	}
	return m, nil
}

// register registers c, or adopts the collector already registered under the
// same description (a second Server on one registry, as in tests).
func register[C prometheus.Collector](reg prometheus.Registerer, c C, errp *error) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	*errp = errors.Join(*errp, err)
	return c
}

// query counts one query.
func (m *metrics) query(t transport, qtype, rcode int) {
	p := &m.queryCounters[t][qtype][rcode]
	c := p.Load()
	if c == nil {
		child := m.queries.WithLabelValues(qtypeLabels[qtype], t.String(), rcodeLabels[rcode])
		p.CompareAndSwap(nil, &child)
		c = p.Load()
	}
	(*c).Inc()
}
