package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"

	"github.com/coopr-gslb/coopr-gslb/admin"
	"github.com/coopr-gslb/coopr-gslb/config"
	"github.com/coopr-gslb/coopr-gslb/instance"
	"github.com/coopr-gslb/coopr-gslb/internal/logging"
	"github.com/coopr-gslb/coopr-gslb/simulator"
)

func cmdDemo(args []string) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: coopr-gslb demo [flags]\n\nStarts two simulated Coopr datacenters (east and west) on loopback and the GSLB in front\nof them, and prints what to try. A busy default port is replaced by a free one.\n\n")
		fs.PrintDefaults()
	}
	httpAddr := fs.String("http", "127.0.0.1:8080", "proxy listen address")
	dnsAddr := fs.String("dns", "127.0.0.1:8053", "DNS listen address (UDP and TCP)")
	adminAddr := fs.String("admin", "127.0.0.1:9090", "status page and API listen address")
	controlAddr := fs.String("control", "127.0.0.1:9099", "simulator control listen address (fail and recover DCs)")
	stateLog := fs.String("state-log", "", "append every routing event as a JSON line, numbered as in /api/v1/events, to this file (\"-\" for stdout)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := demo(*httpAddr, *dnsAddr, *adminAddr, *controlAddr, *stateLog); err != nil {
		fmt.Fprintf(os.Stderr, "coopr-gslb demo: %v\n", err)
		return 1
	}
	return 0
}

func demo(httpAddr, dnsAddr, adminAddr, controlAddr, stateLog string) error {
	fleet, err := simulator.StartFleet(
		simulator.DCOptions{Name: "east", IDStart: 1, IDIncrement: 10},
		simulator.DCOptions{Name: "west", IDStart: 2, IDIncrement: 10},
	)
	if err != nil {
		return err
	}
	defer fleet.Close()

	controlLn, err := listenOrFree("tcp", controlAddr)
	if err != nil {
		return err
	}
	control := &http.Server{Handler: fleet.Handler()}
	controlDone := make(chan struct{})
	go func() {
		defer close(controlDone)
		_ = control.Serve(controlLn)
	}()
	defer func() {
		control.Close()
		<-controlDone
	}()

	dir, err := os.MkdirTemp("", "coopr-gslb-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	token := os.Getenv(admin.TokenEnv)
	if token == "" {
		token = rand.Text()
	}
	tokenFile := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(tokenFile, []byte("demo "+token+"\n"), 0o600); err != nil {
		return err
	}
	yaml, err := demoConfig(fleet, freeAddr("tcp", httpAddr), freeAddr("udp", dnsAddr), freeAddr("tcp", adminAddr), dir, tokenFile)
	if err != nil {
		return err
	}
	path := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		return err
	}
	cfg, _, err := config.LoadFile(path)
	if err != nil {
		return fmt.Errorf("the demo configuration is invalid (a bug): %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logs := logging.New(os.Stderr, cfg.Log)
	defer logs.Close()
	opts := instance.Options{ConfigPath: path, Logs: logs, Version: version}
	if stateLog != "" {
		w, closeFn, err := openStateLog(stateLog)
		if err != nil {
			return err
		}
		defer closeFn()
		opts.StateLog = w
	}
	return runInstance(ctx, cfg, opts, func(b instance.Addrs) {
		got := demoAddrs{HTTP: b.HTTP, DNS: b.DNS, Admin: b.Admin, Control: controlLn.Addr().String()}
		asked := demoAddrs{HTTP: httpAddr, DNS: dnsAddr, Admin: adminAddr, Control: controlAddr}
		printDemo(os.Stdout, got, asked, path, token)
	})
}

// listenOrFree listens on addr, or on a free port of the same host when addr is busy.
func listenOrFree(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err == nil {
		return ln, nil
	}
	host, _, _ := net.SplitHostPort(addr)
	return net.Listen(network, net.JoinHostPort(host, "0"))
}

// freeAddr returns addr if nothing listens there, else a free port on the
// same host. The port is released before use, so a race is possible; this is
// only for the demo.
func freeAddr(network, addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	if network == "udp" {
		if pc, err := net.ListenPacket("udp", addr); err == nil {
			// The DNS port must be free for TCP too.
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				pc.Close()
				return addr
			}
			pc.Close()
		}
		for range 20 {
			pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "0"))
			if err != nil {
				break
			}
			a := pc.LocalAddr().String()
			pc.Close()
			if ln, err := net.Listen("tcp", a); err == nil {
				ln.Close()
				return a
			}
		}
		return addr
	}
	ln, err := listenOrFree("tcp", addr)
	if err != nil {
		return addr
	}
	defer ln.Close()
	return ln.Addr().String()
}

var demoTmpl = template.Must(template.New("demo").Parse(`# coopr-gslb demo: two simulated Coopr datacenters on loopback.
listen:
  http: "{{.HTTP}}"
  dns: "{{.DNS}}"
  admin: "{{.Admin}}"
health:
  interval: 1s
  timeout: 800ms
  rise: 2
  fall: 3
  fast_interval: 200ms
  down_interval: 500ms
datacenters:
{{- range $i, $dc := .DCs}}
  - name: {{$dc.Name}}
    priority: {{$dc.Priority}}
    weight: 100
    client_networks: ["{{$dc.Network}}"]
    coopr_ids: {start: {{$dc.Start}}, increment: {{$dc.Increment}}}
    takeover: [{{$dc.Takeover}}]
    services:
      api:
        endpoints: [{{$dc.Servers}}]
        addresses: ["{{$dc.Address}}"]
      ui:
        endpoints: [{{$dc.UIs}}]
        addresses: ["{{$dc.UIAddress}}"]
{{- end}}
services:
  api:
    hostnames: ["api.coopr.example.com"]
    check: {type: http, path: /status, expect_status: [200], expect_body: "OK"}
    policy: failover
    min_healthy: 1
    when_all_down: serve_all
    dns_ttl: 20
  ui:
    hostnames: ["coopr.example.com", "localhost", "127.0.0.1"]
    check: {type: http, path: /status}
    policy: failover
    affinity: cookie
admin:
  state_dir: "{{.StateDir}}"
  token_file: "{{.TokenFile}}"
dns:
  zone: "coopr.example.com."
  nameservers:
    ns1.coopr.example.com.: ["127.0.0.1"]
  soa: {mname: ns1.coopr.example.com., rname: hostmaster.coopr.example.com.}
  records:
    - "www 300 IN CNAME coopr.example.com."
`))

type demoDC struct {
	Name, Network, Takeover, Servers, UIs, Address, UIAddress string
	Priority, Start, Increment                                int
}

func demoConfig(fleet *simulator.Fleet, httpAddr, dnsAddr, adminAddr, stateDir, tokenFile string) (string, error) {
	var dcs []demoDC
	all := fleet.Datacenters()
	for i, d := range all {
		other := all[(i+1)%len(all)].Name()
		dcs = append(dcs, demoDC{
			Name: d.Name(), Priority: i + 1, Network: fmt.Sprintf("10.%d.0.0/16", i+1),
			Start: d.IDStart(), Increment: d.IDIncrement(), Takeover: other,
			Servers: quoteAddrs(d.Servers()), UIs: quoteAddrs(d.UIs()),
			Address: fmt.Sprintf("192.0.2.%d", 10*(i+1)), UIAddress: fmt.Sprintf("192.0.2.%d", 10*(i+1)+1),
		})
	}
	var b strings.Builder
	err := demoTmpl.Execute(&b, map[string]any{"HTTP": httpAddr, "DNS": dnsAddr, "Admin": adminAddr, "DCs": dcs, "StateDir": stateDir, "TokenFile": tokenFile})
	return b.String(), err
}

func quoteAddrs(ss []*simulator.Server) string {
	var q []string
	for _, s := range ss {
		q = append(q, `"`+s.Addr()+`"`)
	}
	return strings.Join(q, ", ")
}

// demoAddrs are the demo's addresses, as asked for (flags or defaults) or
// as bound.
type demoAddrs struct{ HTTP, DNS, Admin, Control string }

// busyNote says that the address asked for was busy and got was bound
// instead; "" when got has the port asked for (or port 0 was asked for).
func busyNote(asked, got string) string {
	_, port, err := net.SplitHostPort(asked)
	_, gotPort, err2 := net.SplitHostPort(got)
	if err != nil || err2 != nil || port == "0" || port == gotPort {
		return ""
	}
	return "   (" + asked + " was busy)"
}

func printDemo(w io.Writer, b, asked demoAddrs, path, token string) {
	dnsHost, dnsPort, _ := net.SplitHostPort(b.DNS)
	control := "http://" + b.Control
	fmt.Fprintf(w, `
coopr-gslb demo is running: datacenters east (priority 1) and west (priority 2).
  configuration   %s
  proxy           http://%s%s
  DNS             %s (UDP and TCP), zone coopr.example.com.%s
  status page     http://%s/%s
  simulator       %s/   (JSON of every simulated endpoint)%s

Try:
  curl -si -H 'Host: api.coopr.example.com' http://%s/v2/clusters
  curl -si -H 'Host: api.coopr.example.com' -X POST -d '{}' http://%s/v2/clusters
  dig @%s -p %s api.coopr.example.com A +norec
  curl -s http://%s/api/v1/status
  curl -s 'http://%s/api/v1/explain?name=api.coopr.example.com&client=10.2.3.4'

Make east fail (refuse connections; also: hang, slow, 500, flap), watch the status page, then recover:
  curl -X POST '%s/dc/east/fail?mode=refuse'
  curl -X POST %s/dc/east/recover

Operate it (the admin token is also accepted by the status page's token box):
  export COOPR_GSLB_ADMIN=%s COOPR_GSLB_ADMIN_TOKEN=%s
  go run . status
  go run . drain east -reason "maintenance" -mode soft -deadline 2m
  go run . undrain east
  go run . explain api.coopr.example.com -client 10.2.3.4

Press Ctrl-C to stop.
`, path, b.HTTP, busyNote(asked.HTTP, b.HTTP), b.DNS, busyNote(asked.DNS, b.DNS), b.Admin, busyNote(asked.Admin, b.Admin),
		control, busyNote(asked.Control, b.Control), b.HTTP, b.HTTP, dnsHost, dnsPort, b.Admin, b.Admin, control, control, b.Admin, token)
}
