package cluster

import "slices"

// Where a decision came from.
const (
	// SourceCluster: a quorum of the live members that observe the endpoint.
	SourceCluster = "cluster"
	// SourceSelf: this member alone (no live peers), from its own probes.
	SourceSelf = "self"
	// SourcePeers: the peers only, because this member has no observation of
	// its own yet (it has just started).
	SourcePeers = "peers"
	// SourceNone: nobody observes the endpoint yet.
	SourceNone = "none"
)

// decide applies the quorum rule to one endpoint's votes: it is down when at
// least required of the voters see it down. quorum 0 means a majority of the
// voters; a quorum larger than the voters falls back to a majority of them
// (fallback true). With no voter the endpoint is not down.
func decide(upVotes, downVotes, quorum int) (down bool, required int, fallback bool) {
	voters := upVotes + downVotes
	if voters == 0 {
		return false, 0, false
	}
	majority := voters/2 + 1
	switch {
	case quorum <= 0:
		required = majority
	case quorum > voters:
		required, fallback = majority, true
	default:
		required = quorum
	}
	return downVotes >= required, required, fallback
}

// EndpointView is the cluster's decision about one endpoint and the votes
// behind it.
type EndpointView struct {
	EndpointKey
	// Down is the decision: a quorum of the voters see the endpoint down.
	Down bool `json:"down"`
	// Source says whose observations decided (SourceCluster, SourceSelf,
	// SourcePeers or SourceNone).
	Source string `json:"source"`
	// UpVotes and DownVotes count the alive members with an observation of
	// the endpoint, self included.
	UpVotes   int `json:"up_votes"`
	DownVotes int `json:"down_votes"`
	// Required is how many down votes make it down.
	Required int `json:"required"`
	// Fallback reports that the configured quorum was larger than the voters,
	// so a majority of them was used.
	Fallback bool `json:"fallback,omitempty"`
	// SelfObserved reports whether this member has an observation of its own;
	// SelfUp is what it says.
	SelfObserved bool `json:"self_observed"`
	SelfUp       bool `json:"self_up"`
	// Outvoted reports that this member's own observation disagrees with the
	// decision.
	Outvoted bool `json:"outvoted,omitempty"`
	// DownBy names the members that see it down, sorted.
	DownBy []string `json:"down_by,omitempty"`
}

// View is the cluster's decision for every endpoint some alive member
// observes. It is a value built for the caller; it is not shared.
type View struct {
	// Alone reports that no peer is alive: every decision is this member's own.
	Alone bool `json:"alone"`
	// Quorum is the configured rule ("majority" or a count).
	Quorum    string                       `json:"quorum"`
	Endpoints map[EndpointKey]EndpointView `json:"-"`
}

// Down reports whether the cluster counts k down. An endpoint no member
// observes is not down.
func (v View) Down(k EndpointKey) bool { return v.Endpoints[k].Down }

// buildView decides every endpoint from the ballots of the alive members.
func buildView(self string, ballots map[EndpointKey][]ballot, quorum int, alone bool, quorumText string) View {
	v := View{Alone: alone, Quorum: quorumText, Endpoints: make(map[EndpointKey]EndpointView, len(ballots))}
	for k, bs := range ballots {
		ev := EndpointView{EndpointKey: k}
		for _, b := range bs {
			if b.Up {
				ev.UpVotes++
			} else {
				ev.DownVotes++
				ev.DownBy = append(ev.DownBy, b.Member)
			}
			if b.Member == self {
				ev.SelfObserved, ev.SelfUp = true, b.Up
			}
		}
		slices.Sort(ev.DownBy)
		ev.Down, ev.Required, ev.Fallback = decide(ev.UpVotes, ev.DownVotes, quorum)
		switch {
		case ev.UpVotes+ev.DownVotes == 0:
			ev.Source = SourceNone
		case alone:
			ev.Source = SourceSelf
		case !ev.SelfObserved:
			ev.Source = SourcePeers
		default:
			ev.Source = SourceCluster
		}
		ev.Outvoted = ev.SelfObserved && ev.SelfUp == ev.Down
		v.Endpoints[k] = ev
	}
	return v
}
