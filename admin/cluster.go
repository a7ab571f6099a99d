package admin

import (
	"errors"
	"html/template"
	"net/http"
	"slices"

	"github.com/coopr-gslb/coopr-gslb/cluster"
)

// ErrNotDrained is what Options.Undrain wraps for a datacenter that is not
// drained where that is an error (a cluster's replicated drains: nothing is
// written). The API answers 404.
var ErrNotDrained = errors.New("not drained")

// ErrNotSupported is what Options.Drain and Undrain wrap for a change this
// instance cannot make (answered 501).
var ErrNotSupported = errors.New("not supported")

// ClusterStatus is GET /api/v1/cluster: the cluster's snapshot (self,
// quorum, alone, members with their own views, drains) plus what this
// instance answers from.
type ClusterStatus struct {
	cluster.Snapshot
	// DNSView says whose observations DNS answers from: "cluster" (a
	// quorum of the live members), "self" (alone: its own probes), "peers"
	// (restarted, its own first probe round not in yet) or "none".
	DNSView string `json:"dns_view"`
	// Decision is the cluster's state (up, down, drained) per service and
	// DC: what DNS answers from.
	Decision map[string]map[string]string `json:"decision"`
	// Outvoted lists the endpoints ("dc/service/endpoint") this member's
	// own probes judge differently from the cluster.
	Outvoted []string `json:"outvoted"`
	// ProxyDiffers lists the service x DC states where the proxy's own view
	// (local probes and passive signals) differs from the cluster's.
	ProxyDiffers []ViewDiff `json:"proxy_differs"`
}

// ViewDiff is one service x DC whose state differs between the proxy's view
// and the cluster's.
type ViewDiff struct {
	Service string `json:"service"`
	DC      string `json:"dc"`
	Proxy   string `json:"proxy"`
	DNS     string `json:"dns"`
}

// cluster serves GET /api/v1/cluster. Without a cluster it answers 404.
func (s *Server) cluster(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Cluster == nil {
		writeError(w, http.StatusNotFound, "this instance runs alone: its configuration has no cluster: block")
		return
	}
	st := s.opts.Cluster()
	if st == nil {
		writeError(w, http.StatusServiceUnavailable, "the cluster is not running yet")
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// clusterPage is the status page's cluster section: the members and each
// one's own view per service x DC side by side, a cell highlighted where the
// member's view differs from the cluster's decision.
type clusterPage struct {
	*ClusterStatus
	Columns []clusterColumn
	Rows    []clusterRow
}

type clusterColumn struct{ Service, DC, Decision string }

type clusterRow struct {
	cluster.Member
	Cells []clusterCell
}

type clusterCell struct {
	State   string
	Differs bool
}

// clusterSection builds the page's cluster section; nil without a cluster.
func (s *Server) clusterSection() *clusterPage {
	if s.opts.Cluster == nil {
		return nil
	}
	st := s.opts.Cluster()
	if st == nil {
		return nil
	}
	p := &clusterPage{ClusterStatus: st}
	for _, svc := range sortedKeys(st.Decision) {
		for _, dc := range sortedKeys(st.Decision[svc]) {
			p.Columns = append(p.Columns, clusterColumn{Service: svc, DC: dc, Decision: st.Decision[svc][dc]})
		}
	}
	for _, m := range st.Members {
		row := clusterRow{Member: m}
		for _, c := range p.Columns {
			state := m.View[c.Service][c.DC]
			want := c.Decision
			if want == "drained" {
				want = state // a drain is not a member's observation
			}
			row.Cells = append(row.Cells, clusterCell{State: state, Differs: state != "" && state != want})
		}
		p.Rows = append(p.Rows, row)
	}
	return p
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// The cluster section joins the page's template set (see page.go).
var _ = template.Must(pageTmpl.New("cluster").Parse(`{{with .}}<h2>Cluster <small>{{.Self}} · quorum {{.Quorum}} · DNS answers from the {{.DNSView}} view{{if .Alone}} · <b>alone: no live peer</b>{{end}}</small></h2>
{{if .Outvoted}}<p class="warn">Outvoted: this instance's own probes disagree with the cluster on {{range .Outvoted}}{{.}} {{end}}</p>{{end}}
{{if .ProxyDiffers}}<p class="reason">The proxy's own view differs from the cluster's (DNS): {{range .ProxyDiffers}}{{.Service}}/{{.DC}} proxy {{.Proxy}}, DNS {{.DNS}}; {{end}}</p>{{end}}
<table><tr><th>member</th><th>address</th><th>state</th><th>last seen</th><th>config</th>{{range .Columns}}<th>{{.Service}} {{.DC}}<br><small>cluster: {{.Decision}}</small></th>{{end}}</tr>
{{range .Rows}}<tr class="{{if eq .State "alive"}}up{{else}}down{{end}}"><td>{{.Name}}</td><td>{{.Address}}</td><td><span class="badge {{if eq .State "alive"}}up{{else}}down{{end}}">{{.State}}</span></td><td>{{ago .LastSeen}}</td><td>{{.ConfigHash}}{{if .ConfigDiffers}} <b class="ep down">differs</b>{{end}}</td>{{range .Cells}}<td class="{{if .Differs}}warn{{end}}">{{or .State "-"}}</td>{{end}}</tr>
{{end}}</table>{{end}}`))
