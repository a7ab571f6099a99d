package simulator

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// Fleet is a set of simulated datacenters that share one cluster-ID
// increment, each with its own start, as Coopr requires.
type Fleet struct {
	dcs []*Datacenter
}

// NewFleet groups started datacenters. It rejects duplicate names and
// partitions that Coopr would reject: differing increments or two DCs with
// the same start modulo the increment.
func NewFleet(dcs ...*Datacenter) (*Fleet, error) {
	seen := make(map[string]bool)
	owner := make(map[int]string)
	for _, d := range dcs {
		if seen[d.name] {
			return nil, fmt.Errorf("simulator: two datacenters named %q", d.name)
		}
		seen[d.name] = true
		if d.idInc != dcs[0].idInc {
			return nil, fmt.Errorf("simulator: %s has ID increment %d but %s has %d; all DCs must share one",
				d.name, d.idInc, dcs[0].name, dcs[0].idInc)
		}
		p := PartitionOf(d.idStart, d.idInc)
		if other, ok := owner[p]; ok {
			return nil, fmt.Errorf("simulator: %s and %s share ID partition %d (mod %d)", other, d.name, p, d.idInc)
		}
		owner[p] = d.name
	}
	return &Fleet{dcs: slices.Clone(dcs)}, nil
}

// StartFleet starts one datacenter per DCOptions. Unnamed DCs are called
// dc1, dc2, ... by position. When no DCOptions sets IDStart or IDIncrement,
// StartFleet partitions the IDs itself: starts 1, 2, 3, ... and an increment
// of 10 (100 from ten DCs on), leaving room for more DCs as Coopr advises.
func StartFleet(opts ...DCOptions) (*Fleet, error) {
	opts = slices.Clone(opts)
	auto := !slices.ContainsFunc(opts, func(o DCOptions) bool { return o.IDStart != 0 || o.IDIncrement != 0 })
	inc := 10
	for inc <= len(opts) {
		inc *= 10
	}
	for i := range opts {
		if opts[i].Name == "" {
			opts[i].Name = "dc" + strconv.Itoa(i+1)
		}
		if auto {
			opts[i].IDStart, opts[i].IDIncrement = i+1, inc
		}
	}
	var dcs []*Datacenter
	closeAll := func() {
		for _, d := range dcs {
			d.Close()
		}
	}
	for _, o := range opts {
		d, err := StartDatacenter(o)
		if err != nil {
			closeAll()
			return nil, err
		}
		dcs = append(dcs, d)
	}
	f, err := NewFleet(dcs...)
	if err != nil {
		closeAll()
		return nil, err
	}
	return f, nil
}

// Datacenters returns the DCs in the order given.
func (f *Fleet) Datacenters() []*Datacenter { return slices.Clone(f.dcs) }

// Datacenter returns the DC with that name, or nil.
func (f *Fleet) Datacenter(name string) *Datacenter {
	for _, d := range f.dcs {
		if d.name == name {
			return d
		}
	}
	return nil
}

// Endpoint returns the endpoint with that address (host:port) or name, or
// nil.
func (f *Fleet) Endpoint(addrOrName string) *Server {
	for _, d := range f.dcs {
		for _, s := range d.Endpoints() {
			if s.addr == addrOrName || s.name == addrOrName {
				return s
			}
		}
	}
	return nil
}

// Close stops every datacenter.
func (f *Fleet) Close() error {
	var errs []error
	for _, d := range f.dcs {
		errs = append(errs, d.Close())
	}
	return errors.Join(errs...)
}

type fleetView struct {
	Datacenters []dcView `json:"datacenters"`
}

type dcView struct {
	Name        string         `json:"name"`
	IDStart     int            `json:"id_start"`
	IDIncrement int            `json:"id_increment"`
	Endpoints   []endpointView `json:"endpoints"`
}

type endpointView struct {
	Name        string `json:"name"`
	Addr        string `json:"addr"`
	URL         string `json:"url"`
	Role        string `json:"role"`
	Fault       Fault  `json:"fault"`
	Listening   bool   `json:"listening"`
	ListenError string `json:"listen_error,omitempty"`
	OwnedStarts []int  `json:"owned_starts,omitempty"`
	Requests    int64  `json:"requests"`
	Conflicts   int64  `json:"conflicts,omitempty"`
}

func viewEndpoint(s *Server) endpointView {
	v := endpointView{
		Name:        s.name,
		Addr:        s.addr,
		URL:         s.URL(),
		Role:        s.role,
		Fault:       s.Fault(),
		Listening:   s.Listening(),
		OwnedStarts: s.OwnedStarts(),
		Requests:    s.Requests(),
		Conflicts:   s.Conflicts(),
	}
	if err := s.ListenErr(); err != nil {
		v.ListenError = err.Error()
	}
	return v
}

func viewDC(d *Datacenter) dcView {
	v := dcView{Name: d.name, IDStart: d.idStart, IDIncrement: d.idInc}
	for _, s := range d.Endpoints() {
		v.Endpoints = append(v.Endpoints, viewEndpoint(s))
	}
	return v
}

// Handler returns the fleet's control API for demos and scripts:
//
//	GET  /                                 every DC, endpoint, role and fault
//	GET  /dc/{name}                        one DC
//	POST /dc/{name}/fail?mode=M&...        give every endpoint of a DC a fault
//	POST /dc/{name}/recover                heal every endpoint of a DC
//	POST /dc/{name}/own?starts=3,5         take over other partitions' writes
//	GET  /endpoint/{addr}                  one endpoint, by address or name
//	POST /endpoint/{addr}/fail?mode=M&...  give one endpoint a fault
//	POST /endpoint/{addr}/recover          heal one endpoint
//
// Fault parameters are those of ParseFault. Answers are JSON.
func (f *Fleet) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		v := fleetView{Datacenters: []dcView{}}
		for _, d := range f.dcs {
			v.Datacenters = append(v.Datacenters, viewDC(d))
		}
		writeJSONIndent(w, http.StatusOK, v)
	})
	mux.HandleFunc("GET /dc/{name}", f.withDC(func(w http.ResponseWriter, r *http.Request, d *Datacenter) {
		writeJSONIndent(w, http.StatusOK, viewDC(d))
	}))
	mux.HandleFunc("POST /dc/{name}/fail", f.withDC(func(w http.ResponseWriter, r *http.Request, d *Datacenter) {
		if fault, ok := parseFaultRequest(w, r); ok {
			d.SetFault(fault)
			writeJSONIndent(w, http.StatusOK, viewDC(d))
		}
	}))
	mux.HandleFunc("POST /dc/{name}/recover", f.withDC(func(w http.ResponseWriter, r *http.Request, d *Datacenter) {
		d.SetFault(Fault{})
		writeJSONIndent(w, http.StatusOK, viewDC(d))
	}))
	mux.HandleFunc("POST /dc/{name}/own", f.withDC(func(w http.ResponseWriter, r *http.Request, d *Datacenter) {
		starts, err := parseStarts(r.FormValue("starts"))
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		d.SetOwnedStarts(starts...)
		writeJSONIndent(w, http.StatusOK, viewDC(d))
	}))
	mux.HandleFunc("GET /endpoint/{addr}", f.withEndpoint(func(w http.ResponseWriter, r *http.Request, s *Server) {
		writeJSONIndent(w, http.StatusOK, viewEndpoint(s))
	}))
	mux.HandleFunc("POST /endpoint/{addr}/fail", f.withEndpoint(func(w http.ResponseWriter, r *http.Request, s *Server) {
		if fault, ok := parseFaultRequest(w, r); ok {
			s.SetFault(fault)
			writeJSONIndent(w, http.StatusOK, viewEndpoint(s))
		}
	}))
	mux.HandleFunc("POST /endpoint/{addr}/recover", f.withEndpoint(func(w http.ResponseWriter, r *http.Request, s *Server) {
		s.SetFault(Fault{})
		writeJSONIndent(w, http.StatusOK, viewEndpoint(s))
	}))
	return mux
}

func (f *Fleet) withDC(h func(http.ResponseWriter, *http.Request, *Datacenter)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		d := f.Datacenter(name)
		if d == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no datacenter %q", name))
			return
		}
		h(w, r, d)
	}
}

func (f *Fleet) withEndpoint(h func(http.ResponseWriter, *http.Request, *Server)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		addr := r.PathValue("addr")
		s := f.Endpoint(addr)
		if s == nil {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %q", addr))
			return
		}
		h(w, r, s)
	}
}

// parseFaultRequest reads a fault from the query or a form body; on error it
// answers 400 with the valid modes so a script author can fix the call.
func parseFaultRequest(w http.ResponseWriter, r *http.Request) (Fault, bool) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return Fault{}, false
	}
	mode := r.Form.Get("mode")
	if mode == "" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "missing mode", "valid_modes": ValidModes()})
		return Fault{}, false
	}
	fault, err := ParseFault(mode, r.Form)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": err.Error(), "valid_modes": ValidModes()})
		return Fault{}, false
	}
	return fault, true
}

func parseStarts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad partition start %q: want comma-separated non-negative integers", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func writeJSONIndent(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
