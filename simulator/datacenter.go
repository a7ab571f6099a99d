package simulator

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
)

// DCOptions configures a simulated datacenter.
type DCOptions struct {
	// Name names the DC; default "dc1".
	Name string
	// IDStart and IDIncrement partition cluster IDs; zero means 1.
	IDStart, IDIncrement int
	// Servers is the number of coopr-server endpoints: 0 means 2, negative
	// means none.
	Servers int
	// UIs is the number of coopr-ui endpoints: 0 means 1, negative means
	// none.
	UIs int
	// TLS, if not nil, makes every endpoint of the DC serve HTTPS with it
	// (see Options.TLS).
	TLS *tls.Config
}

// Datacenter is a group of endpoints that share one cluster store and ID
// sequence, as the servers of a real DC share one database.
type Datacenter struct {
	name           string
	idStart, idInc int
	servers, uis   []*Server
}

// StartDatacenter starts every endpoint of a DC; if one fails, the others are
// closed.
func StartDatacenter(opts DCOptions) (*Datacenter, error) {
	if opts.Name == "" {
		opts.Name = "dc1"
	}
	if opts.IDStart == 0 {
		opts.IDStart = 1
	}
	if opts.IDIncrement == 0 {
		opts.IDIncrement = 1
	}
	servers := countOrDefault(opts.Servers, 2)
	uis := countOrDefault(opts.UIs, 1)
	d := &Datacenter{name: opts.Name, idStart: opts.IDStart, idInc: opts.IDIncrement}
	store := newClusterStore(opts.Name, opts.IDStart, opts.IDIncrement)
	start := func(role string, i int) (*Server, error) {
		return Start(Options{
			DC:          opts.Name,
			Role:        role,
			IDStart:     opts.IDStart,
			IDIncrement: opts.IDIncrement,
			Name:        fmt.Sprintf("%s-%s-%d", opts.Name, role, i),
			TLS:         opts.TLS,
			store:       store,
		})
	}
	for i := 1; i <= servers; i++ {
		s, err := start(RoleServer, i)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.servers = append(d.servers, s)
	}
	for i := 1; i <= uis; i++ {
		s, err := start(RoleUI, i)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.uis = append(d.uis, s)
	}
	return d, nil
}

func countOrDefault(n, def int) int {
	switch {
	case n == 0:
		return def
	case n < 0:
		return 0
	}
	return n
}

// Name returns the DC's name.
func (d *Datacenter) Name() string { return d.name }

// IDStart returns the first cluster ID of the DC's partition.
func (d *Datacenter) IDStart() int { return d.idStart }

// IDIncrement returns the step between the DC's cluster IDs.
func (d *Datacenter) IDIncrement() int { return d.idInc }

// Servers returns the coopr-server endpoints.
func (d *Datacenter) Servers() []*Server { return slices.Clone(d.servers) }

// UIs returns the coopr-ui endpoints.
func (d *Datacenter) UIs() []*Server { return slices.Clone(d.uis) }

// Endpoints returns the servers followed by the UIs.
func (d *Datacenter) Endpoints() []*Server { return slices.Concat(d.servers, d.uis) }

// SetFault gives every endpoint of the DC the same fault, as when the whole
// DC goes down.
func (d *Datacenter) SetFault(f Fault) {
	for _, s := range d.Endpoints() {
		s.SetFault(f)
	}
}

// SetOwnedStarts makes every server of the DC also accept writes for the
// given partitions, as after taking over a failed DC's shards.
func (d *Datacenter) SetOwnedStarts(starts ...int) {
	for _, s := range d.servers {
		s.SetOwnedStarts(starts...)
	}
}

// Close stops every endpoint of the DC.
func (d *Datacenter) Close() error {
	var errs []error
	for _, s := range d.Endpoints() {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}
