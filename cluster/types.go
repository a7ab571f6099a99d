package cluster

import (
	"errors"
	"time"
)

// EndpointKey names one probed endpoint: a service's endpoint in a datacenter.
type EndpointKey struct {
	DC       string `json:"dc"`
	Service  string `json:"service"`
	Endpoint string `json:"endpoint"`
}

// String renders the key as "dc/service/endpoint", as health target IDs are.
func (k EndpointKey) String() string { return k.DC + "/" + k.Service + "/" + k.Endpoint }

// Observation is what one member's own probes say about one endpoint.
type Observation struct {
	EndpointKey
	Up bool `json:"up"`
	// Since is when the endpoint entered this state, by the observer's clock.
	Since time.Time `json:"since,omitzero"`
	// Reason says why it is down (the last probe's error); "" when up.
	Reason string `json:"reason,omitempty"`
}

// DrainKey names what a drain applies to: a whole datacenter today (Service
// and Endpoint empty); a service or an endpoint in it later.
type DrainKey struct {
	DC       string `json:"dc"`
	Service  string `json:"service,omitempty"`
	Endpoint string `json:"endpoint,omitempty"`
}

// String renders the key as "dc", "dc/service" or "dc/service/endpoint".
func (k DrainKey) String() string {
	s := k.DC
	if k.Service != "" || k.Endpoint != "" {
		s += "/" + k.Service
	}
	if k.Endpoint != "" {
		s += "/" + k.Endpoint
	}
	return s
}

// DrainRequest is what an operator asks for when draining.
type DrainRequest struct {
	Reason string
	// By is who asked (the API token's name, or the CLI user).
	By string
	// Mode is "hard" or "soft"; see routing.Drain.
	Mode string
	// Deadline is when a soft drain lets pinned sessions go.
	Deadline time.Time
}

// Drain is one replicated last-writer-wins register: the latest drain or
// undrain of its key. An undrain is a tombstone (Deleted), kept so that an
// older drain arriving late from a member that was cut off cannot revive it.
// Drains are values; they are safe to copy.
type Drain struct {
	Key      DrainKey  `json:"key"`
	Reason   string    `json:"reason,omitempty"`
	By       string    `json:"by,omitempty"`
	Mode     string    `json:"mode,omitempty"`
	Deadline time.Time `json:"deadline,omitzero"`
	// Origin is the member the drain (or undrain) was given to.
	Origin string `json:"origin"`
	// At is when it was given, by Origin's clock.
	At time.Time `json:"at"`
	// Stamp orders the writes of this key across members.
	Stamp   Stamp `json:"stamp"`
	Deleted bool  `json:"deleted,omitempty"`
}

// DrainInfo is an active drain and on how many members it is known.
type DrainInfo struct {
	Drain
	// KnownOn counts the alive members (self included) that hold this very
	// write, as their last state message said.
	KnownOn int `json:"known_on"`
	// Members is how many alive members there are, self included.
	Members int `json:"members"`
}

// DrainStore persists the replicated drains (tombstones included) of this
// member; the state package implements it over admin.state_dir. Save
// replaces what was saved; Load returns nothing (and no error) when nothing
// was saved. Both are called from one goroutine at a time.
type DrainStore interface {
	LoadClusterDrains() ([]Drain, error)
	SaveClusterDrains([]Drain) error
}

// ErrNotDrained is returned by Undrain when the key is not drained; the API
// answers 404 and nothing is written.
var ErrNotDrained = errors.New("not drained")
