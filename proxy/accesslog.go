package proxy

import (
	"context"
	"log/slog"
	"strings"
	"time"
)

// logAccess writes the request's access-log record: one JSON line with a
// JSON handler. Fields that a request never reached are "-".
func (p *Proxy) logAccess(st *reqState, code int, dur time.Duration) {
	service, dc, ep := noLabel, noLabel, noLabel
	if st.sv != nil {
		service = st.sv.name
	}
	if st.served != nil {
		dc = st.served.dc
	}
	if st.ep != nil {
		ep = st.ep.addr
	}
	owner := noLabel
	if st.shard != nil {
		owner = st.shard.owner.dc
	}
	client := noLabel
	if st.client.IsValid() {
		client = st.client.String()
	}
	r := st.in
	attrs := [...]slog.Attr{
		slog.String("service", service),
		slog.String("dc", dc),
		slog.String("endpoint", ep),
		slog.String("method", r.Method),
		slog.String("host", r.Host),
		slog.String("path", r.URL.Path),
		slog.String("client", client),
		slog.Int("status", code),
		slog.Float64("duration_ms", float64(dur.Microseconds())/1000),
		slog.Int64("bytes", st.rw.bytes),
		slog.Int("retries", st.retries),
		slog.String("retry_reasons", st.retryReasons()),
		slog.String("shard_owner", owner),
	}
	p.opts.Logger.LogAttrs(context.Background(), slog.LevelInfo, "access", attrs[:]...)
}

// retryReasons lists the reasons of the request's retries, comma-separated.
func (st *reqState) retryReasons() string {
	n := min(st.retries, len(st.reasons))
	switch n {
	case 0:
		return ""
	case 1:
		return st.reasons[0].String()
	}
	var b strings.Builder
	for i, k := range st.reasons[:n] {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k.String())
	}
	return b.String()
}
