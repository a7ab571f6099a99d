package h1server

import (
	"context"
	"sync"
)

// connContext is the context of a connection's requests: it ends when the
// client is seen to leave or the connection closes. It also holds one abort
// hook, which a handler sets for what it is waiting on (the proxy's
// upstream exchange) and which runs when the context ends: what
// context.AfterFunc does, without its allocations and registration on
// every request.
type connContext struct {
	context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	hook  func()
	id    uint64
	ended bool
}

func newConnContext(parent context.Context) *connContext {
	cc := &connContext{}
	cc.Context, cc.cancel = context.WithCancel(parent)
	return cc
}

// SetAbort arranges for abort to run once when the context ends, until
// ClearAbort is called with the returned id. If the context has already
// ended, abort runs at once. A later SetAbort replaces an earlier hook.
func (cc *connContext) SetAbort(abort func()) uint64 {
	cc.mu.Lock()
	if cc.ended {
		cc.mu.Unlock()
		abort()
		return 0
	}
	cc.id++
	cc.hook = abort
	id := cc.id
	cc.mu.Unlock()
	return id
}

// ClearAbort removes the hook set with id, if it is still the current one.
func (cc *connContext) ClearAbort(id uint64) {
	cc.mu.Lock()
	if cc.id == id {
		cc.hook = nil
	}
	cc.mu.Unlock()
}

// end ends the context and runs the abort hook.
func (cc *connContext) end() {
	cc.cancel()
	cc.mu.Lock()
	hook := cc.hook
	cc.hook, cc.ended = nil, true
	cc.mu.Unlock()
	if hook != nil {
		hook()
	}
}
