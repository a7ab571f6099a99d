package proxy

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// streamCheckInterval is how often the watcher compares open streams with
// the current snapshot. Streams are few, so the check is cheap.
const streamCheckInterval = 200 * time.Millisecond

// stream is a long-lived answer (a WebSocket or another upgrade, or
// server-sent events) from one DC of one service.
type stream struct {
	service, dc string
	cancel      context.CancelFunc
}

// streamSet holds the open streams. Only streaming requests take its lock.
type streamSet struct {
	mu sync.Mutex
	m  map[*stream]struct{}
}

func (s *streamSet) add(st *stream) {
	s.mu.Lock()
	s.m[st] = struct{}{}
	s.mu.Unlock()
}

func (s *streamSet) remove(st *stream) {
	s.mu.Lock()
	delete(s.m, st)
	s.mu.Unlock()
}

func (s *streamSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for st := range s.m {
		st.cancel()
		delete(s.m, st)
	}
}

// watch registers the request's answer as a stream. Closing it cancels the
// try's context, which aborts a streamed body, and closes conn, the upstream
// connection of an upgrade, which the transport no longer watches; either
// ends the stream to the client, who then reconnects through the proxy to a
// DC that is up.
func (st *reqState) watch(tv *targetView, conn io.Closer) {
	cancel := st.cancel
	if cancel == nil {
		return
	}
	if conn != nil {
		ctxCancel := cancel
		cancel = func() {
			ctxCancel()
			_ = conn.Close()
		}
	}
	st.stream = &stream{service: st.sv.name, dc: tv.dc, cancel: cancel}
	st.p.streams.add(st.stream)
}

// watchStreams closes streams to DCs that stop serving until ctx ends.
func (p *Proxy) watchStreams(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			p.checkStreams()
			// The same loop closes the idle upstream connections when a
			// reload removed an endpoint.
			if p.flushIdle.Swap(false) {
				p.upstreams.closeIdle()
			}
		}
	}
}

// checkStreams closes every stream whose DC went down or was drained (hard,
// or soft past its deadline). A DC or service that a reload removed is left
// alone: a reload never closes streams.
func (p *Proxy) checkStreams() {
	p.streams.mu.Lock()
	defer p.streams.mu.Unlock()
	if len(p.streams.m) == 0 {
		return
	}
	snap := p.opts.Snapshot()
	now := p.now()
	for s := range p.streams.m {
		svc := snap.Service(s.service)
		if svc == nil {
			continue
		}
		dc := svc.DC(s.dc)
		if dc == nil || !mustLeave(svc, dc, now) {
			continue
		}
		s.cancel()
		delete(p.streams.m, s)
	}
}

// mustLeave reports whether sessions on dc must move now: it is down while
// another DC can serve, or drained and no longer holding pinned sessions.
func mustLeave(svc *routing.Service, dc *routing.DCStatus, now time.Time) bool {
	switch dc.State {
	case routing.StateDown:
		// When every DC is down, moving gains nothing.
		return !svc.AllDown
	case routing.StateDrained:
		return !dc.Drain.HoldsPinned(now)
	}
	return false
}
