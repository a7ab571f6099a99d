package routing

import (
	"fmt"
	"strings"
	"time"

	"github.com/coopr-gslb/coopr-gslb/config"
)

// maxPartitions bounds the direct-indexed shard table; Coopr increments are
// small (the number of DCs plus room to grow), so this is never the limit in
// practice, and larger increments fall back to a map.
const maxPartitions = 1 << 16

// Shard is one DC's partition of Coopr's cluster-ID space and who owns it now.
type Shard struct {
	// Partition is start mod increment: IDs n with n mod increment ==
	// Partition were created by Home.
	Partition int
	Start     int
	Increment int
	Home      string
	// Owner is the DC that may write the partition now: Home while it is up
	// and undrained, else the first healthy, undrained DC of Home's takeover
	// list; "" when none can.
	Owner string
	// Reason says why Owner owns it, in words.
	Reason string
	// Since is when Owner last changed.
	Since time.Time

	target *Target   // Owner's target in this service, nil when Owner is ""
	alone  []*Target // {target}: where a write of the shard goes
}

// Target returns the owner's target, or nil when no DC may write the shard.
func (s *Shard) Target() *Target { return s.target }

// shardTable finds a cluster ID's shard in O(1).
type shardTable struct {
	increment uint64
	direct    []*Shard       // indexed by partition, when increment <= maxPartitions
	sparse    map[int]*Shard // otherwise
	all       []*Shard       // in configuration order
}

func (t *shardTable) lookup(id uint64) *Shard {
	if t.increment == 0 {
		return nil
	}
	p := id % t.increment
	if t.direct != nil {
		return t.direct[p]
	}
	return t.sparse[int(p)]
}

// Shards lists the service's shards in configuration order; empty when the
// configuration has no coopr_ids.
func (s *Service) Shards() []*Shard { return s.shards.all }

// ShardOf returns the shard that holds cluster id, or nil when no DC's
// partition holds it. It does not allocate.
func (s *Service) ShardOf(id uint64) *Shard { return s.shards.lookup(id) }

// buildShards computes each partition's owner from the DCs' states.
func buildShards(cfg *config.Config, svc *Service) shardTable {
	var t shardTable
	for _, dc := range cfg.Datacenters {
		if dc.CooprIDs != nil && dc.CooprIDs.Increment > 0 {
			t.increment = uint64(dc.CooprIDs.Increment)
			break
		}
	}
	if t.increment == 0 {
		return t
	}
	if t.increment <= maxPartitions {
		t.direct = make([]*Shard, t.increment)
	} else {
		t.sparse = map[int]*Shard{}
	}
	for _, dc := range cfg.Datacenters {
		ids := dc.CooprIDs
		if ids == nil || uint64(ids.Increment) != t.increment {
			continue // config validation reports this; route such IDs normally
		}
		sh := &Shard{Partition: ids.Start % ids.Increment, Start: ids.Start, Increment: ids.Increment, Home: dc.Name}
		home := svc.DC(dc.Name)
		switch {
		case home != nil && home.State == StateUp:
			sh.Owner, sh.target, sh.Reason = dc.Name, home.Target, "owner healthy"
		default:
			why := "not deployed for this service"
			if home != nil {
				why = home.State.String()
				switch {
				case strings.HasPrefix(home.Reason, why):
					why = home.Reason // "drained: maint" already names the state
				case home.Reason != "":
					why += ": " + home.Reason
				}
			}
			sh.Reason = fmt.Sprintf("%s is %s; ", dc.Name, why)
			for _, name := range dc.Takeover {
				if st := svc.DC(name); st != nil && st.State == StateUp {
					sh.Owner, sh.target = name, st.Target
					sh.Reason += "taken over by " + name
					break
				}
			}
			if sh.Owner == "" {
				if len(dc.Takeover) == 0 {
					sh.Reason += "no takeover datacenter is configured"
				} else {
					sh.Reason += fmt.Sprintf("no takeover datacenter (%v) is healthy and undrained", dc.Takeover)
				}
			}
		}
		if sh.target != nil {
			sh.alone = []*Target{sh.target}
		}
		if t.direct != nil {
			t.direct[sh.Partition] = sh
		} else {
			t.sparse[sh.Partition] = sh
		}
		t.all = append(t.all, sh)
	}
	return t
}

// ClusterID extracts the numeric cluster ID from a Coopr API path
// /v2/clusters/{id} or one of its sub-paths. It reports false for other
// paths, for the collection itself (/v2/clusters) and for a non-numeric ID.
// It does not allocate.
func ClusterID(path string) (uint64, bool) {
	const prefix = "/v2/clusters/"
	if len(path) <= len(prefix) || path[:len(prefix)] != prefix {
		return 0, false
	}
	rest := path[len(prefix):]
	var id uint64
	n := 0
	for n < len(rest) && rest[n] != '/' {
		c := rest[n]
		if c < '0' || c > '9' || n >= 19 {
			return 0, false
		}
		id = id*10 + uint64(c-'0')
		n++
	}
	if n == 0 {
		return 0, false
	}
	return id, true
}
