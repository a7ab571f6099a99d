package admin

import (
	"html/template"
	"net/http"
	"time"
)

// The page is rendered on the server and refreshed by fetching the same
// rendering as a fragment every second: one renderer, no external assets, and
// it works on an offline network.
var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
}).Parse(`{{define "body"}}
{{if .Locked}}<p class="warn">This page needs the admin token: enter it below.</p>{{else}}
{{with .Reload}}{{if not .OK}}<p class="warn">Last reload failed at {{.Time.Format "15:04:05"}}; the previous configuration keeps serving: {{.Error}}</p>{{end}}{{end}}
<p class="meta">generation {{.Generation}} · updated {{.Updated.Format "15:04:05"}}{{if not .Ready}} · <b>waiting for the first probe round</b>{{end}}</p>
{{range .Services}}
<section>
<h2>{{.Name}} <small>policy {{.Policy}}</small> <span class="badge {{.State}}">{{.State}}</span></h2>
<p>DNS answer: <code>{{range .DNSAnswer}}{{.}} {{else}}none{{end}}</code> (TTL {{.DNSTTL}} s) · proxy target: <b>{{or .ProxyTarget "none"}}</b> · worst-case failover {{printf "%.1f" .WorstCaseFailoverSeconds}} s (detection {{printf "%.1f" .DetectionSeconds}} s + TTL; {{.TTLReason}})</p>
<p class="reason">{{.Reason}}</p>
<table>
<tr><th>datacenter</th><th>state</th><th>healthy</th><th>why</th><th>since</th><th>endpoints</th></tr>
{{range .Datacenters}}
<tr class="{{.State}}">
<td>{{.Name}}</td>
<td><span class="badge {{.State}}">{{.State}}</span>{{with .Drain}}<br><small>{{.Mode}} drain by {{.By}}{{if .Reason}}: {{.Reason}}{{end}}</small>{{end}}</td>
<td>{{.Healthy}}/{{.Total}}</td>
<td>{{.Reason}}</td>
<td>{{ago .Since}}</td>
<td>{{range .Endpoints}}<div class="ep {{if .Up}}up{{else}}down{{end}}">{{.Address}}: {{if .Up}}up{{else}}down{{end}}{{if .Probed}} · {{printf "%.1f" .LatencyMS}} ms{{end}}{{if .LastError}} · {{.LastError}}{{end}}</div>{{end}}</td>
</tr>
{{end}}
</table>
{{if .Shards}}<p><b>Cluster shards</b> (shard_routing: {{.ShardRouting}})</p>
<table><tr><th>partition</th><th>home</th><th>owner now</th><th>why</th><th>since</th></tr>
{{range .Shards}}<tr class="{{if not .Owner}}down{{else if .TakenOver}}drained{{else}}up{{end}}"><td>IDs ≡ {{.Start}} mod {{.Increment}}</td><td>{{.Home}}</td><td><b>{{or .Owner "none"}}</b></td><td>{{.Reason}}</td><td>{{ago .Since}}</td></tr>
{{end}}</table>{{end}}
</section>
{{end}}
{{template "cluster" .Cluster}}
<h2>Recent events</h2>
<ul class="events">{{range .Events}}<li>{{.Time.Format "15:04:05.000"}} <b>{{.Kind}}</b> {{.DC}} {{.Service}} {{.Endpoint}} {{.Reason}}</li>{{else}}<li>none yet</li>{{end}}</ul>
{{if .Authorized}}<h2>Drain</h2>
<p>{{range .DCNames}}<span class="dc">{{.}}:
<button data-dc="{{.}}" data-op="soft">soft drain</button>
<button data-dc="{{.}}" data-op="hard">hard drain</button>
<button data-dc="{{.}}" data-op="undrain">undrain</button></span> {{end}}
<input id="reason" placeholder="reason" size="24"></p>{{end}}
{{end}}{{end}}
{{define "page"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>coopr-gslb status</title>
<style>
body{font-family:system-ui,sans-serif;margin:1rem;background:#fafafa;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:1.5rem}small{color:#666;font-weight:normal}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.badge{padding:.1rem .5rem;border-radius:.6rem;font-size:.85rem;color:#fff;background:#777}
.badge.up,.badge.ok{background:#1b7f3a}.badge.down,.badge.refusing{background:#b3261e}.badge.drained{background:#8a6d00}.badge.serving_all{background:#c25e00}
.ep.down{color:#b3261e}.ep.up{color:#1b7f3a}.reason,.meta{color:#555;font-size:.9rem}
.warn{background:#fdecea;border:1px solid #b3261e;padding:.5rem}.dc{margin-right:1rem}
.events{font-size:.85rem;max-height:20rem;overflow:auto;background:#fff;border:1px solid #ddd;padding:.5rem 1.5rem}
@media (min-width:1600px){body{font-size:1.3rem}}
</style></head>
<body><h1>coopr-gslb {{.Version}}</h1>
<div id="live">{{template "body" .}}</div>
<p><small>admin token (kept in this tab only): <input id="token" type="password" size="24"></small></p>
<script>
var tok=document.getElementById("token");
tok.value=sessionStorage.getItem("coopr-gslb-token")||"";
tok.addEventListener("change",function(){sessionStorage.setItem("coopr-gslb-token",tok.value);refresh()});
function auth(){return tok.value?{"Authorization":"Bearer "+tok.value}:{}}
function refresh(){
  fetch("?fragment=1",{cache:"no-store",headers:auth()}).then(function(r){return r.ok?r.text():null})
  .then(function(t){if(t!==null){document.getElementById("live").innerHTML=t}}).catch(function(){});
}
document.addEventListener("click",function(e){
  var b=e.target;if(!b.dataset||!b.dataset.dc){return}
  var reason=(document.getElementById("reason")||{}).value||"";
  var url="api/v1/datacenters/"+encodeURIComponent(b.dataset.dc)+"/drain";
  var opt=b.dataset.op==="undrain"?{method:"DELETE",headers:auth()}:
    {method:"POST",headers:Object.assign({"Content-Type":"application/json"},auth()),body:JSON.stringify({reason:reason,mode:b.dataset.op})};
  fetch(url,opt).then(function(r){return r.json()}).then(function(j){if(j.error){alert(j.error)}refresh()});
});
if(tok.value){refresh()}
setInterval(refresh,1000);
</script>
</body></html>{{end}}`))

type pageData struct {
	Status
	Events []eventView
	// Locked hides everything when reads need a token the viewer lacks.
	Locked bool
	// Authorized shows the drain buttons: the viewer supplied a valid token.
	Authorized bool
	DCNames    []string
	Cluster    *clusterPage // nil without a cluster
}

type eventView struct {
	Time                                time.Time
	Kind, DC, Service, Endpoint, Reason string
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	_, authorized := s.opts.Tokens.who(r)
	data := pageData{Authorized: authorized, Locked: s.opts.ReadRequiresToken && !authorized}
	if data.Locked {
		s.render(w, r, data)
		return
	}
	data.Status = s.buildStatus()
	data.Cluster = s.clusterSection()
	for _, dc := range s.opts.Snapshot().Config.Datacenters {
		data.DCNames = append(data.DCNames, dc.Name)
	}
	if s.opts.Events != nil {
		evs := s.opts.Events(time.Now().Add(-24 * time.Hour))
		for i := len(evs) - 1; i >= 0 && len(data.Events) < 50; i-- {
			e := evs[i]
			data.Events = append(data.Events, eventView{e.Time, string(e.Kind), e.DC, e.Service, e.Endpoint, e.Reason})
		}
	}
	s.render(w, r, data)
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, data pageData) {
	data.Version = s.opts.Version
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	name := "page"
	if r.URL.Query().Get("fragment") != "" {
		name = "body"
	}
	if err := pageTmpl.ExecuteTemplate(w, name, data); err != nil {
		http.Error(w, "rendering the status page failed", http.StatusInternalServerError)
	}
}
