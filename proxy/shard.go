package proxy

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// ShardOwnerHeader names, on an answer to a request routed by shard, the DC
// that owns the cluster's shard and served the request.
const ShardOwnerHeader = "X-Coopr-GSLB-Shard-Owner"

// shardOwnerKey is ShardOwnerHeader in canonical form, so the answer's
// header map can be set without canonicalizing on every request.
var shardOwnerKey = http.CanonicalHeaderKey(ShardOwnerHeader)

// shardMode is a service's parsed shard_routing.
type shardMode uint8

const (
	shardOff    shardMode = iota
	shardWrites           // requests that change a cluster go to its owner
	shardAll              // every request for a cluster goes to its owner
)

func parseShardMode(s string) shardMode {
	switch s {
	case "writes":
		return shardWrites
	case "all":
		return shardAll
	}
	return shardOff
}

// shardView is one shard of a service in a view: where its owner is and
// what to count and say, all prepared once per snapshot so that routing a
// request by shard neither allocates nor formats.
type shardView struct {
	sh *routing.Shard
	// owner is the owner DC's view; nil when no DC may write the shard.
	owner *targetView
	// routed counts requests sent to owner; nil when owner is nil.
	routed prometheus.Counter
	// noOwner counts writes refused because no DC may write the shard.
	noOwner prometheus.Counter
	// refusal is the body of the 503 that refuses such a write.
	refusal string
}

// buildShards prepares sv's shard views from its service's shard map.
func (p *Proxy) buildShards(sv *serviceView) {
	if sv.shardMode == shardOff {
		return
	}
	shards := sv.svc.Shards()
	sv.shards = make([]shardView, len(shards))
	for i, sh := range shards {
		v := &sv.shards[i]
		v.sh = sh
		if t := sh.Target(); t != nil {
			v.owner = sv.target(t)
		}
		if v.owner != nil {
			v.routed = p.metrics.shardRouted.WithLabelValues(sv.name, v.owner.dc, strconv.FormatBool(v.owner.dc != sh.Home))
		}
		v.noOwner = p.metrics.shardNoOwner.WithLabelValues(sv.name, sh.Home)
		v.refusal = fmt.Sprintf("no datacenter may write clusters of %s's shard (IDs = %d mod %d) right now: %s; try again shortly\n",
			sh.Home, sh.Partition, sh.Increment, sh.Reason)
	}
}

// shardViewOf returns the view of shard sh, nil if the view lacks it. A
// handful of DCs: a scan beats a map.
func (sv *serviceView) shardViewOf(sh *routing.Shard) *shardView {
	for i := range sv.shards {
		if sv.shards[i].sh == sh {
			return &sv.shards[i]
		}
	}
	return nil
}

// isRead reports whether method only reads. Every other method is taken to
// write, so that an unusual method errs towards the owner.
func isRead(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// refuseShardWrite answers a write to a shard no DC may write now.
func (p *Proxy) refuseShardWrite(st *reqState, shv *shardView) {
	shv.noOwner.Inc()
	st.rw.Header().Set("Retry-After", retryAfter)
	plainError(&st.rw, http.StatusServiceUnavailable, shv.refusal)
}
