package admin

import (
	"html/template"
	"net/http"
	"net/netip"
	"time"

	"github.com/coopr-gslb/coopr-gslb/routing"
)

// The page is rendered on the server and refreshed by fetching the same
// rendering as a fragment every second: one renderer, no external assets, and
// it works on an offline network. Traffic rates and sparklines are drawn by
// the page's script from the counters GET /?traffic=1 returns. All script and
// style are inline in the one page, with no inline event handlers, so a
// nonce- or hash-based Content-Security-Policy can cover them.
var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"until": func(t time.Time) string {
		d := time.Until(t).Round(time.Second)
		if d <= 0 {
			return "passed"
		}
		return "in " + d.String()
	},
}).Parse(`{{define "body"}}
{{if .Authorized}}<span id="authorized" hidden></span>{{end}}
{{if .Locked}}<p class="warn">This page needs the admin token: enter it below.</p>{{else}}
{{with .Reload}}{{if not .OK}}<p class="warn">Last reload failed at {{.Time.Format "15:04:05"}}; the previous configuration keeps serving: {{.Error}}</p>{{end}}{{end}}
<p class="meta">generation {{.Generation}} · updated <span id="updated" data-time="{{.Updated.Format "2006-01-02T15:04:05Z07:00"}}">{{.Updated.Format "15:04:05"}}</span>{{if not .Ready}} · <b>waiting for the first probe round</b>{{end}}</p>
{{with .DNSSEC}}<p class="{{if .Expiring}}warn{{else}}meta{{end}}" id="dnssec">DNSSEC: signed with key {{range $i, $t := .KeyTags}}{{if $i}}, {{end}}{{$t}}{{end}} · earliest signature expiry {{.EarliestExpiry.Format "2006-01-02 15:04:05 MST"}}{{if .Expiring}} · <b>refresh is failing</b>{{end}}</p>{{end}}
<section id="glance">
<h2>At a glance</h2>
{{range .Glance}}<div class="svc" data-service="{{.Name}}"><b>{{.Name}}</b> <span class="badge {{.Badge}}">{{.Badge}}</span>{{range .Out}} <span class="out">{{.}}</span>{{end}}{{range .ServiceDrains}} <span class="sdrain-note" data-dc="{{.DC}}">{{.DC}}: service drained ({{.Mode}}){{with .Reason}}: {{.}}{{end}}</span>{{end}}
<div class="routes">DNS → {{range .Answer}}<code>{{.Addr}}</code> <small>({{.DC}})</small> {{else}}<b>none</b>{{end}} · proxy → <b>{{or .Proxy "none"}}</b>
{{range .Networks}}<br><small>clients in {{.Network}}: DNS → {{or .DNS "none"}} · proxy → {{or .Proxy "none"}}</small>{{end}}</div></div>
{{end}}
{{if or .DrainList .ScopedDrains}}<div class="drains">{{range .DrainList}}<div class="drain" data-dc="{{.DC}}"><b>{{.DC}}</b> {{.Mode}} drain{{with .By}} by {{.}}{{end}}{{with .Reason}}: {{.}}{{end}}{{if eq .Mode "soft"}} · pinned sessions leave at <b class="deadline">{{.Deadline.Format "15:04:05"}}</b> ({{until .Deadline}}){{end}} · since {{ago .Since}}{{if $.Authorized}} <button type="button" class="undrain" data-dc="{{.DC}}">undrain</button>{{end}}</div>{{end}}
{{range .ScopedDrains}}<div class="sdrain" data-dc="{{.DC}}" data-service="{{.Service}}" data-endpoint="{{.Endpoint}}"><b>{{.DC}}{{with .Service}}/{{.}}{{end}}{{with .Endpoint}}/{{.}}{{end}}</b> {{if .Endpoint}}endpoint{{else}}service{{end}} drained ({{.Mode}}){{with .By}} by {{.}}{{end}}{{with .Reason}}: {{.}}{{end}}{{if eq .Mode "soft"}} · pinned sessions leave at <b class="deadline">{{.Deadline.Format "15:04:05"}}</b> ({{until .Deadline}}){{end}} · since {{ago .Since}} <small>(<code>coopr-gslb undrain {{.DC}}{{with .Service}} -service {{.}}{{end}}{{with .Endpoint}} -endpoint {{.}}{{end}}</code>)</small></div>{{end}}</div>{{end}}
</section>
<div id="traffic-slot"></div>
<h2>Details</h2>
{{range .Services}}
<section class="detail">
<h3>{{.Name}} <small>policy {{.Policy}}</small> <span class="badge {{.State}}">{{.State}}</span></h3>
<p>DNS answer TTL {{.DNSTTL}} s · worst-case failover {{printf "%.1f" .WorstCaseFailoverSeconds}} s (detection {{printf "%.1f" .DetectionSeconds}} s + TTL; {{.TTLReason}})</p>
<p class="reason">{{.Reason}}</p>
<table class="dcs">
<tr><th>datacenter</th><th>state</th><th>priority / weight</th><th>healthy</th><th>why</th><th>since</th><th>endpoints</th></tr>
{{range .Datacenters}}
<tr class="{{.State}}">
<td data-l="datacenter">{{.Name}}</td>
<td data-l="state"><span class="badge {{.State}}">{{.State}}</span>{{$scope := .DrainScope}}{{with .Drain}}<br><small>{{if eq $scope "service"}}service drained ({{.Mode}}){{else}}{{.Mode}} drain{{end}} by {{.By}}{{if .Reason}}: {{.Reason}}{{end}}{{if eq .Mode "soft"}}; deadline {{.Deadline.Format "15:04:05"}} ({{until .Deadline}}){{end}}</small>{{end}}</td>
<td data-l="priority / weight">{{.Priority}} / {{.Weight}}</td>
<td data-l="healthy">{{.Healthy}}/{{.Total}} <small>(needs {{.Required}})</small></td>
<td data-l="why">{{.Reason}}</td>
<td data-l="since">{{ago .Since}}</td>
<td data-l="endpoints">{{range .Endpoints}}<div class="ep {{if .Up}}up{{else}}down{{end}}{{if .Drain}} drained{{end}}">{{.Address}}: {{if .Up}}up{{else}}down{{end}}{{with .Drain}} · <b class="epdrain">drained ({{.Mode}})</b>{{with .Reason}}: {{.}}{{end}}{{end}}{{if .Probed}} · {{printf "%.1f" .LatencyMS}} ms{{end}}{{if .LastError}} · {{.LastError}}{{end}}</div>{{end}}</td>
</tr>
{{end}}
</table>
{{if and .Shards (ne .ShardRouting "off")}}<p><b>Cluster shards</b> (shard_routing: {{.ShardRouting}})</p>
<table class="shards"><tr><th>partition</th><th>home</th><th>owner now</th><th>why</th><th>since</th></tr>
{{range .Shards}}<tr class="{{if not .Owner}}down{{else if .TakenOver}}drained{{else}}up{{end}}"><td data-l="partition">IDs ≡ {{.Start}} mod {{.Increment}}</td><td data-l="home">{{.Home}}</td><td data-l="owner now"><b>{{or .Owner "none"}}</b></td><td data-l="why">{{.Reason}}</td><td data-l="since">{{ago .Since}}</td></tr>
{{end}}</table>{{end}}
</section>
{{end}}
{{template "cluster" .Cluster}}
<h2>Recent events</h2>
<ul class="events">{{range .Events}}<li>{{.Time.Format "15:04:05.000"}} <b>{{.Kind}}</b> {{.DC}} {{.Service}} {{.Endpoint}} {{.Reason}}</li>{{else}}<li>none yet</li>{{end}}</ul>
{{end}}{{end}}
{{define "page"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>coopr-gslb status</title>
<style>
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:1rem;background:#fafafa;color:#222;overflow-wrap:anywhere}
h1{font-size:1.4rem;margin:.2rem 0}h2{font-size:1.15rem;margin-top:1.2rem}h3{font-size:1.05rem}small{color:#666;font-weight:normal}
table{border-collapse:collapse;width:100%;background:#fff}td,th{border:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
.badge{padding:.1rem .5rem;border-radius:.6rem;font-size:.85rem;color:#fff;background:#777;white-space:nowrap}
.badge.up,.badge.ok{background:#1b7f3a}.badge.down,.badge.refusing{background:#b3261e}.badge.drained{background:#8a6d00}
.badge.serving_all{background:#c25e00}.badge.degraded{background:#c25e00}
.out{color:#b3261e;font-size:.9rem}
.ep.down{color:#b3261e}.ep.up{color:#1b7f3a}.ep.drained{color:#8a6d00}.reason,.meta{color:#555;font-size:.9rem}
.warn{background:#fdecea;border:1px solid #b3261e;padding:.5rem}
#blind{background:#b3261e;color:#fff;padding:.6rem;font-weight:bold;margin:.5rem 0}
.svc{background:#fff;border:1px solid #ddd;padding:.5rem;margin:.3rem 0}.routes{font-size:.9rem;margin-top:.2rem}
.drain,.sdrain{background:#fff8e1;border:1px solid #8a6d00;padding:.4rem;margin:.3rem 0}
#controls{background:#fff;border:1px solid #ddd;padding:.5rem;margin:.5rem 0}
#controls label{display:inline-block;margin:.2rem .6rem .2rem 0}
#controls input,#controls select{max-width:100%}
#confirm{background:#fdecea;border:1px solid #b3261e;padding:.5rem;margin-top:.4rem}
#traffic{display:flex;flex-wrap:wrap;gap:.5rem}
.tdc{background:#fff;border:1px solid #ddd;padding:.4rem;flex:1 1 14rem;min-width:0}
.tdc svg{display:block;width:100%;height:40px}
.tdc .num{font-variant-numeric:tabular-nums}
.events{font-size:.85rem;max-height:20rem;overflow:auto;background:#fff;border:1px solid #ddd;padding:.5rem 1.5rem}
@media (max-width:700px){
 body{margin:.5rem}
 table,tbody,tr,td{display:block;width:100%}
 tr:first-child{display:none}
 tr{margin-bottom:.5rem;border:1px solid #ddd}
 td{border:none;border-bottom:1px solid #eee}
 td::before{content:attr(data-l) ": ";color:#666;font-size:.85rem}
}
@media (min-width:1600px){body{font-size:1.3rem}}
</style></head>
<body><h1>coopr-gslb {{.Version}}</h1>
<div id="blind" hidden></div>
<form id="controls" autocomplete="off" hidden><b>Drain</b>
<label>datacenter <select id="drain-dc">{{range .DCNames}}<option>{{.}}</option>{{end}}</select></label>
<label>mode <select id="drain-mode"><option value="hard" selected>hard (all traffic leaves now)</option><option value="soft">soft (pinned sessions stay until the deadline)</option></select></label>
<label>deadline <input id="drain-deadline" value="10m" size="6" disabled></label>
<label>reason <input id="drain-reason" placeholder="why" size="20"></label>
<button type="submit" id="drain-go">drain</button>
<div id="confirm" hidden><span id="confirm-text"></span> <button type="button" id="confirm-yes">yes, drain</button> <button type="button" id="confirm-no">cancel</button></div>
<div id="drain-msg" class="reason"></div></form>
<div id="live">{{template "body" .}}</div>
<div id="traffic-box"><h2>Traffic per datacenter <small>(last minute)</small></h2><div id="traffic"></div></div>
<p><small>admin token (kept in this tab only): <input id="token" type="password" size="24"></small></p>
<script>
(function(){
"use strict";
var tok=document.getElementById("token");
tok.value=sessionStorage.getItem("coopr-gslb-token")||"";
tok.addEventListener("change",function(){sessionStorage.setItem("coopr-gslb-token",tok.value);location.reload()});
function auth(){return tok.value?{"Authorization":"Bearer "+tok.value}:{}}
var live=document.getElementById("live"),blind=document.getElementById("blind"),box=document.getElementById("traffic-box");
var lastGood=new Date(),failures=0,lastErr="";
var form=document.getElementById("controls");
if(form){form.hidden=!document.getElementById("authorized")}
function place(){var slot=document.getElementById("traffic-slot");if(slot&&box.parentNode!==slot){slot.appendChild(box)}}
place();
function good(){failures=0;lastGood=new Date();blind.hidden=true;blind.textContent=""}
function bad(err){
  failures++;lastErr=String(err&&err.message||err);
  if(failures>=2){blind.hidden=false;
    blind.textContent="Not updating: refreshes are failing ("+lastErr+"). What you see is from the last good update at "+lastGood.toLocaleTimeString()+"; retrying every second."}
}
function refresh(){
  fetch("?fragment=1",{cache:"no-store",headers:auth()}).then(function(r){
    if(!r.ok){throw new Error("HTTP "+r.status)}return r.text()})
  .then(function(t){live.innerHTML=t;place();good();
    if(form){form.hidden=!document.getElementById("authorized")}}).catch(bad);
  fetch("?traffic=1",{cache:"no-store",headers:auth()}).then(function(r){if(!r.ok){throw new Error("HTTP "+r.status)}return r.json()})
  .then(traffic).catch(function(){});
}
// Traffic: rates from the differences of the counters, 60 samples kept.
var prev=null,hist={};
function rate(a,b,dt){return dt>0?Math.max(0,(a-b)/dt):0}
function traffic(t){
  var now=Date.parse(t.time)/1000;
  if(prev){var dt=now-prev.time;
    Object.keys(t.datacenters).forEach(function(dc){
      var c=t.datacenters[dc],p=prev.dcs[dc]||c,h=hist[dc]||(hist[dc]=[]);
      h.push({req:rate(c.requests,p.requests,dt),err:rate(c.errors,p.errors,dt),dns:rate(c.dns_answers,p.dns_answers,dt)});
      while(h.length>60){h.shift()}
    });
  }
  prev={time:now,dcs:t.datacenters};
  draw();
}
function line(vals,max,color){
  var pts=vals.map(function(v,i){return (i*100/59).toFixed(1)+","+(38-36*v/max).toFixed(1)}).join(" ");
  return '<polyline fill="none" stroke-width="1.5" vector-effect="non-scaling-stroke" stroke="'+color+'" points="'+pts+'"/>';
}
function fmt(v){return v<10?v.toFixed(1):Math.round(v).toString()}
function draw(){
  var root=document.getElementById("traffic");root.textContent="";
  Object.keys(hist).sort().forEach(function(dc){
    var h=hist[dc],last=h[h.length-1]||{req:0,err:0,dns:0};
    var d=document.createElement("div");d.className="tdc";d.dataset.dc=dc;
    var head=document.createElement("div");
    head.innerHTML="<b></b> <span class=num></span>";
    head.firstChild.textContent=dc;
    head.lastChild.textContent=fmt(last.req)+" req/s · "+fmt(last.err)+" err/s · "+fmt(last.dns)+" DNS answers/s";
    d.appendChild(head);
    var max=1;h.forEach(function(s){max=Math.max(max,s.req,s.dns,s.err)});
    var sp=document.createElement("div");
    sp.innerHTML='<svg class="spark" viewBox="0 0 100 40" preserveAspectRatio="none" role="img">'+
      line(h.map(function(s){return s.req}),max,"#1b5fb3")+line(h.map(function(s){return s.dns}),max,"#1b7f3a")+
      line(h.map(function(s){return s.err}),max,"#b3261e")+'</svg>';
    d.appendChild(sp.firstChild);
    var key=document.createElement("small");key.textContent="blue requests · green DNS answers · red errors";d.appendChild(key);
    root.appendChild(d);
  });
}
// Drain controls, shown while the fragment says the token is valid.
function msg(t){var m=document.getElementById("drain-msg");if(m){m.textContent=t}}
function send(url,opt){
  return fetch(url,opt).then(function(r){return r.json().then(function(j){if(!r.ok){throw new Error(j.error||("HTTP "+r.status))}return j})})
  .then(function(){refresh()}).catch(function(e){msg(String(e.message||e))});
}
function drainNow(){
  var dc=document.getElementById("drain-dc").value,mode=document.getElementById("drain-mode").value;
  var body={reason:document.getElementById("drain-reason").value,mode:mode};
  if(mode==="soft"){body.deadline=document.getElementById("drain-deadline").value}
  msg("");
  send("api/v1/datacenters/"+encodeURIComponent(dc)+"/drain",{method:"POST",headers:Object.assign({"Content-Type":"application/json"},auth()),body:JSON.stringify(body)});
}
if(form){
  var mode=document.getElementById("drain-mode"),dl=document.getElementById("drain-deadline"),conf=document.getElementById("confirm");
  mode.addEventListener("change",function(){dl.disabled=mode.value!=="soft"});
  form.addEventListener("submit",function(e){
    e.preventDefault();
    if(mode.value==="hard"){
      document.getElementById("confirm-text").textContent="Hard drain "+document.getElementById("drain-dc").value+"? All its traffic, pinned sessions included, leaves at once.";
      conf.hidden=false;return;
    }
    drainNow();
  });
  document.getElementById("confirm-yes").addEventListener("click",function(){conf.hidden=true;drainNow()});
  document.getElementById("confirm-no").addEventListener("click",function(){conf.hidden=true});
}
document.addEventListener("click",function(e){
  var b=e.target;if(!b.classList||!b.classList.contains("undrain")){return}
  send("api/v1/datacenters/"+encodeURIComponent(b.dataset.dc)+"/drain",{method:"DELETE",headers:auth()});
});
refresh();
setInterval(refresh,1000);
})();
</script>
</body></html>{{end}}`))

type pageData struct {
	Status
	Events []eventView
	// Locked hides everything when reads need a token the viewer lacks.
	Locked bool
	// Authorized shows the drain controls and undrain buttons: the viewer
	// supplied a valid token (the page's script sends it with every refresh).
	Authorized bool
	DCNames    []string
	// Glance is one line per service; DrainList the drains in effect.
	Glance    []glanceLine
	DrainList []drainView
	Cluster   *clusterPage // nil without a cluster
}

// glanceLine is a service at a glance: its badge ("ok", "degraded" when a
// DC is out, "serving_all", "refusing"), what is out, and where traffic goes.
type glanceLine struct {
	Name     string
	Badge    string
	Out      []string
	Answer   []labelledAddr
	Proxy    string
	Networks []networkRoute
	// ServiceDrains are the service's own drains (not its DCs' nor its
	// endpoints').
	ServiceDrains []routing.ScopedDrain
}

type labelledAddr struct{ Addr, DC string }

// networkRoute is where a DC's client network is sent.
type networkRoute struct{ Network, DNS, Proxy string }

type drainView struct {
	DC string
	routing.Drain
}

type eventView struct {
	Time                                time.Time
	Kind, DC, Service, Endpoint, Reason string
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	_, authorized := s.opts.Tokens.who(r)
	data := pageData{Authorized: authorized, Locked: s.opts.ReadRequiresToken && !authorized}
	if data.Locked {
		if r.URL.Query().Get("traffic") != "" {
			writeError(w, http.StatusUnauthorized, "reads need the admin token")
			return
		}
		s.render(w, r, data)
		return
	}
	if r.URL.Query().Get("traffic") != "" {
		writeJSON(w, http.StatusOK, s.traffic())
		return
	}
	data.Status = s.buildStatus()
	data.Cluster = s.clusterSection()
	snap := s.opts.Snapshot()
	for _, dc := range snap.Config.Datacenters {
		data.DCNames = append(data.DCNames, dc.Name)
		if d, ok := snap.Drains[dc.Name]; ok {
			data.DrainList = append(data.DrainList, drainView{DC: dc.Name, Drain: d})
		}
	}
	data.Glance = glance(snap, data.Status)
	if s.opts.Events != nil {
		evs := s.opts.Events(time.Now().Add(-24 * time.Hour))
		for i := len(evs) - 1; i >= 0 && len(data.Events) < 50; i-- {
			e := evs[i]
			data.Events = append(data.Events, eventView{e.Time, string(e.Kind), e.DC, e.Service, e.Endpoint, e.Reason})
		}
	}
	s.render(w, r, data)
}

// glance builds the one-line-per-service view from the status and, for the
// client networks, the snapshot's decisions.
func glance(snap *routing.Snapshot, st Status) []glanceLine {
	owner := map[string]string{} // DNS address -> DC, per service
	for _, dc := range snap.Config.Datacenters {
		for name, ds := range dc.Services {
			for _, a := range ds.Addresses {
				owner[name+"/"+a] = dc.Name
			}
		}
	}
	var out []glanceLine
	for _, ss := range st.Services {
		g := glanceLine{Name: ss.Name, Badge: ss.State, Proxy: ss.ProxyTarget}
		for _, d := range snap.ScopedDrains {
			if d.Service == ss.Name && d.Endpoint == "" {
				g.ServiceDrains = append(g.ServiceDrains, d)
			}
		}
		for _, dc := range ss.Datacenters {
			if dc.State != "up" {
				g.Out = append(g.Out, dc.Name+" "+dc.State)
			}
		}
		if g.Badge == "ok" && len(g.Out) > 0 {
			g.Badge = "degraded"
		}
		for _, a := range ss.DNSAnswer {
			g.Answer = append(g.Answer, labelledAddr{Addr: a, DC: owner[ss.Name+"/"+a]})
		}
		if svc := findService(snap, ss.Name); svc != nil {
			for _, dc := range snap.Config.Datacenters {
				for _, p := range dc.Networks {
					g.Networks = append(g.Networks, route(svc, p))
				}
			}
		}
		out = append(out, g)
	}
	return out
}

func findService(snap *routing.Snapshot, name string) *routing.Service {
	for _, svc := range snap.Services {
		if svc.Name == name {
			return svc
		}
	}
	return nil
}

func route(svc *routing.Service, p netip.Prefix) networkRoute {
	d := svc.Decide(p.Addr())
	nr := networkRoute{Network: p.String()}
	if len(d.Targets) == 0 {
		return nr
	}
	nr.DNS = d.Targets[0].DC
	if svc.Config.Policy == "all" {
		nr.DNS = ""
		for i, t := range d.Targets {
			if i > 0 {
				nr.DNS += " "
			}
			nr.DNS += t.DC
		}
	}
	for i, t := range d.Targets {
		if i > 0 {
			nr.Proxy += " → "
		}
		nr.Proxy += t.DC
	}
	return nr
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
