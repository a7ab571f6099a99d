#!/usr/bin/env bash
# bench/failover.sh: what a client sees when the primary datacenter fails
# and comes back, through coopr-gslb and through its peers, on loopback.
#
# A manual benchmark, not run in CI. It needs root (apt-get) and Debian 12's
# packages. Two simulated Coopr datacenters (bench/internal/simdcs), dc1
# primary and dc2 backup, each run as its OWN process. FAULT (or MODES, a
# list) says how dc1 fails:
#
#   kill       SIGKILL, which resets its open connections and leaves its
#              port refusing new ones, then a restart on the same port (a
#              fresh process, as a restarted coopr-server would be)
#   hang       dc1 accepts connections and reads requests but never answers
#              one, /status included (a wedged process)
#   blackhole  dc1's packets are dropped: connects time out (SYNs
#              unanswered) and requests on connections already open get no
#              answer either (simulator/blackhole.go; no root needed)
#   500        dc1 answers 500 to everything, /status included
#
# The last three go through simdcs's -control fault API (POST
# /dc/dc1/fault?mode=...) and are healed with mode=none after DOWN seconds;
# "restart" below means that heal for them.
#
# HTTP contenders get an open-loop load (bench/internal/openloop: GET
# /v2/clusters at a fixed rate, each of RATES, whatever the answers; every
# request records its send time, latency, status and the DC that served
# it, from the simulator's X-Coopr-DC header). Where a peer takes a per-try
# bound, it gets TRY_TIMEOUT (150ms, coopr-gslb's floor for its adaptive
# per-try timeout) for the response headers and CONNECT_TIMEOUT (100ms,
# coopr-gslb's floor for its adaptive dial timeout) for the connect. Those
# bounds fire only on hangs and black holes (a killed dc1 refuses at
# once), so the kill figures stay comparable with earlier runs:
#
#   direct          no proxy: the load goes straight to dc2, which nothing
#                   breaks. Not a contender but the noise floor: what this
#                   machine alone does to the worst request in that round
#   coopr-gslb      health interval 1s, timeout 800ms, fall 3, rise 2,
#                   fast_interval 200ms, down_interval 200ms (GSLB_DOWN_INTERVAL),
#                   proxy.slow_start 0s, dns_ttl 1; proxy.retry,
#                   proxy.dial_timeout and proxy.outlier left at their
#                   defaults (3 attempts, adaptive try_timeout, on_status
#                   500-504; adaptive dial; 3 failures, 10s). Its DNS answer
#                   is polled during the same run, so "DNS flip" here is
#                   with traffic flowing (passive signals)
#   coopr-gslb-ss   the same with proxy.slow_start 1s (ramped failback)
#   nginx           passive only: max_fails=1 fail_timeout=10s, dc2 backup,
#                   proxy_next_upstream error timeout http_500 http_502
#                   http_503 http_504 (a hang or a 500 from dc1 is tried on
#                   dc2 and counts as dc1's failure), proxy_connect_timeout
#                   CONNECT_TIMEOUT, proxy_read_timeout TRY_TIMEOUT
#   haproxy         as briefed: check inter 1s fall 3 rise 2, retries 3;
#                   timeout connect CONNECT_TIMEOUT, timeout server
#                   TRY_TIMEOUT (a hung request fails fast, but is not
#                   retried: no L7 retry here)
#   haproxy-best    + option redispatch 1, retry-on conn-failure
#                   empty-response response-timeout 500 502 503 504,
#                   observe layer7 error-limit 1 on-error mark-down (a
#                   refused connect, a response timeout or a 5xx marks dc1
#                   down at once, so the retry's redispatch lands on the
#                   backup)
#   caddy           lb_policy first, health_uri /status, health_interval 1s;
#                   transport dial_timeout CONNECT_TIMEOUT,
#                   response_header_timeout TRY_TIMEOUT (no retries: a
#                   hang fails fast as a 502)
#   caddy-best      + lb_try_duration 2s, lb_try_interval 10ms (default
#                   250ms: the wait before every retry), fail_duration 10s,
#                   max_fails 1, unhealthy_status 5xx. Caddy 2.6 retries a
#                   GET on a dial error or a response timeout, never on a
#                   status: dc1's first 500 reaches the client and marks
#                   dc1 down for fail_duration (unhealthy_latency would add
#                   nothing: the response timeout already counts a failure)
#
# DNS contenders get the GSLB name polled every POLL (one UDP query at a
# time, straight at the server, no cache) and no HTTP traffic; they run
# once per mode, in the first of RATES:
#
#   coopr-gslb-dns  the coopr-gslb configuration above, active probes only
#   pdns-lua        PowerDNS 4.7, LUA ifurlextup, enable-lua-records=shared,
#                   lua-health-checks-interval=1 (one failed check flips)
#   gdnsd           metafo over one multifo per DC, extmon running curl,
#                   interval 2s x 3 (gdnsd's minimum interval is 2s)
#
# One run: start the contender alone (the others are stopped, so their probes
# add no load), wait until it answers from dc1 and let it settle, start the
# load/poller, after WARM seconds break dc1, after DOWN seconds restart or
# heal it, watch UP seconds more. Figures per run:
#
#   failed          requests that got a non-2xx answer or a transport error
#   worst           the slowest request (send -> end of body), leaving out
#                   the first second of the load (connection set-up); then
#                   split by window: "fault" every request in flight at some
#                   moment between the fault and the restart/heal (the
#                   issue's figure: worst GET during the hang or black
#                   hole), "2s" the part of it sent in the first 2 s,
#                   "failback" 200 ms before to 1 s after the first request
#                   dc1 served again, "calm" all the rest (no failover going
#                   on: the run's own noise floor). "lag" is the load tool's
#                   worst send behind schedule: the client itself starved
#   to other DC     fault -> end of the first 2xx answer served by dc2
#   failback        restart/heal -> end of the first 2xx answer served by
#                   dc1 (a restarted dc1 process listens some ms after the
#                   command; "dc1 up" below shows how long)
#   full failback   restart/heal -> the last request served by dc2
#   DNS flip        fault -> the first answer naming dc2's address
#   DNS flip back   restart/heal -> the first answer naming dc1's address
#
# Every round runs each mode at each rate, contenders interleaved (A B C,
# A B C, ...), for ROUNDS rounds, and the table shows medians per mode and
# rate; every run's figures are printed too, with the load average and the
# CPU steal of the machine during the run, because other work on a shared
# machine moves these numbers.
#
# Environment:
#   ROUNDS=3        rounds of every contender
#   FAULT=kill      how dc1 fails: kill, hang, blackhole or 500
#   MODES="$FAULT"  several of them, e.g. MODES="hang blackhole 500 kill"
#   RATE=500        HTTP requests per second
#   RATES="$RATE"   several, e.g. RATES="100 500"
#   TRY_TIMEOUT=150ms      the peers' per-try response header bound
#   CONNECT_TIMEOUT=100ms  the peers' connect bound
#   POLL=10ms       time between DNS queries
#   WARM=3          seconds of load before the fault
#   DOWN=8          seconds dc1 stays broken in HTTP runs (nginx retries a dead
#                   server every fail_timeout=10s, so its failback depends on this)
#   DNS_DOWN=12     seconds dc1 stays broken in DNS-only runs (gdnsd needs ~7 s)
#   UP=10           seconds watched after the restart (DNS-only runs: DNS_UP=12)
#   CONTENDERS="direct coopr-gslb coopr-gslb-ss nginx haproxy haproxy-best caddy caddy-best coopr-gslb-dns pdns-lua gdnsd"
#   BASE_PORT=18560 loopback ports used: BASE_PORT+1..2 the DCs, +3 dc1's
#                   fault control API, +11..+31 the contenders
#   GSLB_BIN=path   use this binary instead of building the repository's
#   GSLB_ACCESS_LOG=true  coopr-gslb logs every request (with its retries) to
#                   $TMP/coopr-gslb*.log, to see where a slow request spent
#                   its time; it costs CPU, so leave it off for the table
#   KEEP_TMP=1      keep the working directory (configs, logs, records)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
RATE=${RATE:-500}
RATES=${RATES:-$RATE}
FAULT=${FAULT:-kill}
MODES=${MODES:-$FAULT}
TRY_TIMEOUT=${TRY_TIMEOUT:-150ms}
CONNECT_TIMEOUT=${CONNECT_TIMEOUT:-100ms}
POLL=${POLL:-10ms}
WARM=${WARM:-3}
DOWN=${DOWN:-8}
DNS_DOWN=${DNS_DOWN:-12}
UP=${UP:-10}
DNS_UP=${DNS_UP:-12}
CONTENDERS=${CONTENDERS:-"direct coopr-gslb coopr-gslb-ss nginx haproxy haproxy-best caddy caddy-best coopr-gslb-dns pdns-lua gdnsd"}
bench_init coopr-failover

ZONE=gslb.example.com
HOST=api.$ZONE
URL_PATH=/v2/clusters
DC1_IP=192.0.2.1
DC2_IP=192.0.2.2
BASE_PORT=${BASE_PORT:-18560}
DC1=127.0.0.1:$((BASE_PORT + 1))
DC2=127.0.0.1:$((BASE_PORT + 2))
CONTROL=127.0.0.1:$((BASE_PORT + 3)) # dc1's simdcs fault API
declare -A ADDR=(
	[direct]=$DC2
	[coopr-gslb]=127.0.0.1:$((BASE_PORT + 11))
	[coopr-gslb-ss]=127.0.0.1:$((BASE_PORT + 12))
	[nginx]=127.0.0.1:$((BASE_PORT + 13))
	[haproxy]=127.0.0.1:$((BASE_PORT + 14))
	[haproxy-best]=127.0.0.1:$((BASE_PORT + 15))
	[caddy]=127.0.0.1:$((BASE_PORT + 16))
	[caddy-best]=127.0.0.1:$((BASE_PORT + 17))
)
declare -A DNSADDR=(
	[coopr-gslb]=127.0.0.1:$((BASE_PORT + 21))
	[coopr-gslb-ss]=127.0.0.1:$((BASE_PORT + 22))
	[coopr-gslb-dns]=127.0.0.1:$((BASE_PORT + 21))
	[pdns-lua]=127.0.0.1:$((BASE_PORT + 23))
	[gdnsd]=127.0.0.1:$((BASE_PORT + 24))
)
# What each contender is measured on: http, dns, or both.
declare -A KIND=(
	[direct]=http
	[coopr-gslb]=both [coopr-gslb-ss]=both [nginx]=http [haproxy]=http [haproxy-best]=http
	[caddy]=http [caddy-best]=http [coopr-gslb-dns]=dns [pdns-lua]=dns [gdnsd]=dns
)

DC1_PID=""       # the primary's simulator, killed and restarted in kill runs
DC1_UP=0         # when it last listened (kill) or was healed, Unix ns
CONTENDER_PID="" # the contender running now

# cleanup stops the contender and dc1, which are not in PIDS, then the rest.
cleanup() {
	stop_pid "$CONTENDER_PID"
	stop_pid "$DC1_PID"
	bench_cleanup
}
trap cleanup EXIT

# install_packages installs what is missing; install_missing keeps the
# packages' own services from starting on ports 53 and 80 during the install.
install_packages() {
	want_cmd haproxy nginx caddy pdns_server:pdns-server
	want_pkg pdns-backend-bind
	want_cmd gdnsd kdig:knot-dnsutils curl
	install_missing haproxy nginx caddy pdns gdnsd
}

now_ns() { date +%s%N; }

# start_dc1 starts the primary's simulator in its own process, with the
# fault control API on CONTROL, sets DC1_PID, and sets DC1_UP to the Unix
# ns at which it printed "ready" (it listens by then).
start_dc1() {
	local logf=$TMP/dc1.log
	: >"$logf"
	"$TMP/simdcs" -dc "dc1=$DC1" -control "$CONTROL" >>"$logf" 2>&1 &
	DC1_PID=$!
	local deadline=$((SECONDS + 20))
	until grep -q '^ready' "$logf"; do
		((SECONDS < deadline)) || die "dc1 did not start; see $logf"
		kill -0 "$DC1_PID" 2>/dev/null || die "dc1 exited; see $logf"
		sleep 0.005
	done
	DC1_UP=$(now_ns)
}

# fault_dc1 MODE sets dc1's fault through its control API (none heals it);
# it returns once the simulator applied it (a black hole has filled its
# accept queue by then, a heal listens again).
fault_dc1() {
	local out
	out=$(curl -fsS -m 5 -X POST "http://$CONTROL/dc/dc1/fault?mode=$1" 2>&1) || die "fault $1 on dc1: $out"
}

# break_dc1 MODE breaks the primary at once; heal_dc1 MODE ends it and sets
# DC1_UP.
break_dc1() {
	case $1 in
	kill)
		kill -KILL "$DC1_PID"
		wait "$DC1_PID" 2>/dev/null || true
		;;
	*) fault_dc1 "$1" ;;
	esac
}
heal_dc1() {
	case $1 in
	kill) start_dc1 ;;
	*)
		fault_dc1 none
		DC1_UP=$(now_ns)
		;;
	esac
}

start_backends() {
	build simdcs ./bench/internal/simdcs
	build openloop ./bench/internal/openloop
	start dc2 "$TMP/simdcs" -dc "dc2=$DC2"
	start_dc1
	local dc
	for dc in "$DC1" "$DC2"; do
		wait_http "http://$dc/status" 20 || die "simulator $dc not answering"
	done
}

# --- contenders: write_* prepares a configuration once, launch_* starts it
# (setting CONTENDER_PID) and is called before every run.

write_coopr_gslb() {
	local name=$1 slow_start=$2
	cat >"$TMP/$name.yaml" <<EOF
listen:
  http: "${ADDR[$name]}"
  dns: "${DNSADDR[$name]}"
  admin: ""
health:
  interval: 1s
  timeout: 800ms
  fall: 3
  rise: 2
  fast_interval: 200ms
  down_interval: ${GSLB_DOWN_INTERVAL:-200ms}
proxy:
  access_log: ${GSLB_ACCESS_LOG:-false}
  slow_start: $slow_start
datacenters:
  - name: dc1
    priority: 1
    services:
      api: {endpoints: ["$DC1"], addresses: ["$DC1_IP"]}
  - name: dc2
    priority: 2
    services:
      api: {endpoints: ["$DC2"], addresses: ["$DC2_IP"]}
services:
  api:
    hostnames: ["$HOST"]
    check: {type: http, path: /status}
    policy: failover
    dns_ttl: 1
dns:
  zone: $ZONE
  nameservers: {ns1.$ZONE: ["127.0.0.1"]}
  soa: {mname: ns1.$ZONE, rname: hostmaster@example.com, negative_ttl: 60s}
EOF
	"$GSLB" check -config "$TMP/$name.yaml" >"$TMP/$name.check" 2>&1 || die "coopr-gslb check failed: $(cat "$TMP/$name.check")"
}

write_haproxy() {
	local name=$1 best=$2 dir=$TMP/$1 opts="" observe=""
	mkdir -p "$dir"
	if ((best)); then
		opts=$'    option redispatch 1\n    retry-on conn-failure empty-response response-timeout 500 502 503 504'
		# layer7 also counts layer4 errors, and response timeouts and 5xx.
		observe=" observe layer7 error-limit 1 on-error mark-down"
	fi
	cat >"$dir/haproxy.cfg" <<EOF
global
    maxconn 8192
    nbthread $(nproc)
defaults
    mode http
    timeout connect $CONNECT_TIMEOUT
    timeout client 30s
    timeout server $TRY_TIMEOUT
    retries 3
$opts
frontend fe
    bind ${ADDR[$name]}
    default_backend dcs
backend dcs
    option httpchk GET /status
    server dc1 $DC1 check inter 1s fall 3 rise 2$observe
    server dc2 $DC2 check inter 1s fall 3 rise 2 backup
EOF
	haproxy -c -f "$dir/haproxy.cfg" >"$dir/check.log" 2>&1 || die "haproxy config: $(cat "$dir/check.log")"
}

write_nginx() {
	local dir=$TMP/nginx
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    upstream dcs {
        zone dcs 64k;
        server $DC1 max_fails=1 fail_timeout=10s;
        server $DC2 backup;
        keepalive 64;
    }
    server {
        listen ${ADDR[nginx]};
        location / {
            proxy_pass http://dcs;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_next_upstream error timeout http_500 http_502 http_503 http_504;
            proxy_connect_timeout $CONNECT_TIMEOUT;
            proxy_read_timeout $TRY_TIMEOUT;
        }
    }
}
EOF
}

write_caddy() {
	local name=$1 best=$2 dir=$TMP/$1 extra=""
	mkdir -p "$dir"
	if ((best)); then
		extra=$'\t\tlb_try_duration 2s\n\t\tlb_try_interval 10ms\n\t\tfail_duration 10s\n\t\tmax_fails 1\n\t\tunhealthy_status 5xx'
	fi
	cat >"$dir/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://:${ADDR[$name]##*:} {
	bind ${ADDR[$name]%:*}
	reverse_proxy $DC1 $DC2 {
		lb_policy first
		health_uri /status
		health_interval 1s
$extra
		transport http {
			dial_timeout $CONNECT_TIMEOUT
			response_header_timeout $TRY_TIMEOUT
		}
	}
}
EOF
}

# write_pdns: ifurlextup answers dc1's address while dc1's /status is up
# (ifurlup would probe the answer address itself).
write_pdns() {
	local dir=$TMP/pdns-lua
	mkdir -p "$dir"
	cat >"$dir/zone" <<EOF
\$ORIGIN $ZONE.
\$TTL 300
@ 3600 IN SOA ns1.$ZONE. hostmaster.example.com. 1 3600 600 604800 60
@ IN NS ns1.$ZONE.
ns1 IN A 127.0.0.1
api 1 IN LUA A "ifurlextup({{['$DC1_IP']='http://$DC1/status'}, {['$DC2_IP']='http://$DC2/status'}})"
EOF
	echo "zone \"$ZONE\" { type master; file \"$dir/zone\"; };" >"$dir/named.conf"
	cat >"$dir/pdns.conf" <<EOF
launch=bind
bind-config=$dir/named.conf
local-address=${DNSADDR[pdns-lua]%:*}
local-port=${DNSADDR[pdns-lua]##*:}
socket-dir=$dir
guardian=no
daemon=no
disable-syslog=yes
loglevel=4
security-poll-suffix=
enable-lua-records=shared
lua-health-checks-interval=1
EOF
}

# write_gdnsd: metafo over one multifo per DC, each DC's health from extmon
# running curl against its /status (http_status would probe the answer).
write_gdnsd() {
	local dir=$TMP/gdnsd dc addr
	mkdir -p "$dir/zones"
	cat >"$dir/zones/$ZONE" <<EOF
\$ORIGIN $ZONE.
\$TTL 300
@ 3600 IN SOA ns1.$ZONE. hostmaster.example.com. 1 3600 600 604800 60
@ IN NS ns1.$ZONE.
ns1 IN A 127.0.0.1
api 1 DYNA metafo!api
EOF
	{
		echo "options => { listen => [ ${DNSADDR[gdnsd]} ], run_dir => $dir/run, state_dir => $dir/state }"
		echo "service_types => {"
		for dc in dc1 dc2; do
			addr=$DC1
			[[ $dc == dc2 ]] && addr=$DC2
			echo "  ${dc}_status => { plugin => extmon, cmd => [ \"$(command -v curl)\", \"-fsS\", \"-m\", \"1\", \"-o\", \"/dev/null\", \"http://$addr/status\" ], interval => 2, timeout => 1, up_thresh => 3, ok_thresh => 3, down_thresh => 3 }"
		done
		echo "}"
		echo "plugins => { metafo => { resources => {"
		echo "  api => { datacenters => [ dc1, dc2 ], dcmap => {"
		echo "    dc1 => { lb1 => $DC1_IP, service_types => [ dc1_status ] }"
		echo "    dc2 => { lb1 => $DC2_IP, service_types => [ dc2_status ] }"
		echo "  } }"
		echo "} } }"
	} >"$dir/config"
}

# launch NAME starts the contender in the background, logging to
# $TMP/NAME.log, and sets CONTENDER_PID.
launch() {
	local name=$1 dir=$TMP/$1
	case $name in
	direct)
		CONTENDER_PID=""
		return
		;;
	coopr-gslb | coopr-gslb-dns) set -- "$GSLB" run -config "$TMP/coopr-gslb.yaml" ;;
	coopr-gslb-ss) set -- "$GSLB" run -config "$TMP/coopr-gslb-ss.yaml" ;;
	nginx) set -- nginx -e "$dir/error.log" -c "$dir/nginx.conf" ;;
	haproxy | haproxy-best) set -- haproxy -db -f "$dir/haproxy.cfg" ;;
	caddy | caddy-best)
		# Caddy keeps data and autosaved config under XDG dirs: keep them in $TMP.
		set -- env HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config" \
			caddy run --adapter caddyfile --config "$dir/Caddyfile"
		;;
	pdns-lua) set -- pdns_server --config-dir="$dir" ;;
	gdnsd) set -- gdnsd -c "$dir" start ;;
	*) die "unknown contender $name" ;;
	esac
	"$@" >>"$TMP/$name.log" 2>&1 &
	CONTENDER_PID=$!
}

# ready waits until the contender answers from dc1: over HTTP for proxies,
# over DNS for the others (both for coopr-gslb).
ready() {
	local name=$1 deadline=$((SECONDS + 30)) body="" ans="" want=dc1
	[[ $name == direct ]] && want=dc2
	while ((SECONDS < deadline)); do
		[[ -z $CONTENDER_PID ]] || kill -0 "$CONTENDER_PID" 2>/dev/null || break
		if [[ ${KIND[$name]} != dns ]]; then
			body=$(curl -fsS -m 2 -H "Host: $HOST" -D - -o /dev/null "http://${ADDR[$name]}$URL_PATH" 2>/dev/null || true)
			if [[ ${body,,} != *"x-coopr-dc: $want"* ]]; then
				sleep 0.2
				continue
			fi
		fi
		if [[ ${KIND[$name]} != http ]]; then
			ans=$(kdig -p "${DNSADDR[$name]##*:}" "@${DNSADDR[$name]%:*}" +short +time=1 +retry=0 "$HOST" A 2>/dev/null || true)
			if [[ $ans != "$DC1_IP" ]]; then
				sleep 0.2
				continue
			fi
		fi
		return 0
	done
	log "$name does not answer from dc1 (http: ${body:-nothing}; dns: ${ans:-nothing}); see $TMP/$name.log:"
	show_log "$name"
	return 1
}

# run_one NAME MODE RATE ROUND runs the scenario once against NAME and
# stores its figures in RES under NAME,MODE,RATE,ROUND.
run_one() {
	local name=$1 mode=$2 rate=$3 round=$4 down=$DOWN up=$UP settle=2
	local out=$TMP/runs/$1-$2-$3-$4 key=$1,$2,$3,$4
	local args=() t_kill t_restart t_up b0 s0 t0 b1 s1 t1 line kv
	mkdir -p "$out"
	if [[ ${KIND[$name]} == dns ]]; then
		down=$DNS_DOWN
		up=$DNS_UP
	fi
	# gdnsd's failure count resets only after ok_thresh (3 x 2 s) good checks.
	[[ $name == gdnsd ]] && settle=7

	launch "$name"
	if ! ready "$name"; then
		stop_pid "$CONTENDER_PID"
		CONTENDER_PID=""
		RES[$key,ok]=0
		return
	fi
	sleep "$settle"

	if [[ ${KIND[$name]} != dns ]]; then
		args+=(-url "http://${ADDR[$name]}$URL_PATH" -host "$HOST" -rate "$rate")
	fi
	if [[ ${KIND[$name]} != http ]]; then
		args+=(-dns "${DNSADDR[$name]}" -name "$HOST" -poll "$POLL")
	fi
	read -r b0 s0 t0 < <(cpu_sample)
	"$TMP/openloop" run "${args[@]}" -duration "$((WARM + down + up))s" -out "$out" >"$out/openloop.log" 2>&1 &
	local load_pid=$!
	sleep "$WARM"
	t_kill=$(now_ns)
	break_dc1 "$mode"
	sleep "$down"
	t_restart=$(now_ns)
	heal_dc1 "$mode"
	t_up=$DC1_UP
	wait "$load_pid" || die "openloop failed: $(cat "$out/openloop.log")"
	echo "fault=$mode at=$t_kill restart=$t_restart up=$t_up" >"$out/times"
	read -r b1 s1 t1 < <(cpu_sample)
	stop_pid "$CONTENDER_PID"
	CONTENDER_PID=""

	line=$("$TMP/openloop" analyze -out "$out" -kill "$t_kill" -restart "$t_restart" -up "$t_up" \
		-primary-addr "$DC1_IP" -backup-addr "$DC2_IP")
	line+=" load1=$(cut -d' ' -f1 /proc/loadavg)"
	line+=" busy=$(awk -v b=$((b1 - b0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", (t > 0) ? 100 * b / t : 0 }')%"
	line+=" steal=$(awk -v s=$((s1 - s0)) -v t=$((t1 - t0)) 'BEGIN { printf "%.0f", (t > 0) ? 100 * s / t : 0 }')%"
	echo "$line" >"$out/figures"
	RES[$key,ok]=1
	for kv in $line; do
		RES[$key,${kv%%=*}]=${kv#*=}
	done
	log "round $round $mode ${rate}/s $name: $line"
}

# runs_here NAME RATE: DNS-only contenders send no HTTP load, so they run
# once per mode, in the first of RATES.
runs_here() {
	[[ ${KIND[$1]} != dns || $2 == "${RATES%% *}" ]]
}

# med NAME MODE RATE KEY prints the median of KEY over the rounds of NAME in
# MODE at RATE. A figure that did not happen within a run ("-": never
# failed back, never flipped) counts as larger than any number, so a
# median that lands on one prints "never".
med() {
	local name=$1 mode=$2 rate=$3 key=$4 round v out
	out=$(for ((round = 1; round <= ROUNDS; round++)); do
		[[ ${RES[$name,$mode,$rate,$round,ok]:-0} == 1 ]] || continue
		v=${RES[$name,$mode,$rate,$round,$key]:-}
		[[ -z $v ]] && continue
		[[ $v == - ]] && v=1e18
		echo "$v"
	done | median_or "")
	if [[ -z $out ]]; then
		echo "-"
	elif awk -v v="$out" 'BEGIN { exit !(v >= 1e17) }'; then
		echo "never"
	else
		awk -v v="$out" 'BEGIN { if (v == int(v)) printf "%d", v; else printf "%.1f", v }'
	fi
}

# cell NAME MODE RATE KEY NEED prints a median, or "n/a" for a figure the
# contender is not measured on.
cell() {
	local name=$1 mode=$2 rate=$3 key=$4 need=$5
	# direct has no failover: only its load figures mean something.
	[[ $need == failover && $name == direct ]] && need=dns
	[[ $need == failover ]] && need=http
	if [[ $need == http && ${KIND[$name]} == dns ]] || [[ $need == dns && ${KIND[$name]} == http ]]; then
		echo "n/a"
	else
		med "$name" "$mode" "$rate" "$key"
	fi
}

main() {
	command -v go >/dev/null || die "go is required to build coopr-gslb and the load tool"
	local name mode rate
	for mode in $MODES; do
		case $mode in
		kill | hang | blackhole | 500) ;;
		*) die "unknown fault $mode (want kill, hang, blackhole or 500)" ;;
		esac
	done
	for rate in $RATES; do
		[[ $rate =~ ^[1-9][0-9]*$ ]] || die "bad rate $rate"
	done
	install_packages
	build_gslb
	start_backends

	for name in $CONTENDERS; do
		[[ -n ${KIND[$name]:-} ]] || die "unknown contender $name"
		case $name in
		coopr-gslb | coopr-gslb-dns) [[ -e $TMP/coopr-gslb.yaml ]] || write_coopr_gslb coopr-gslb 0s ;;
		coopr-gslb-ss) write_coopr_gslb coopr-gslb-ss 1s ;;
		nginx) write_nginx ;;
		haproxy) write_haproxy haproxy 0 ;;
		haproxy-best) write_haproxy haproxy-best 1 ;;
		caddy) write_caddy caddy 0 ;;
		caddy-best) write_caddy caddy-best 1 ;;
		pdns-lua) write_pdns ;;
		gdnsd) write_gdnsd ;;
		esac
	done

	local load_before round
	load_before=$(uptime)
	log "load before: $load_before"
	log "$ROUNDS rounds of: $CONTENDERS; faults $MODES; HTTP $RATES req/s, DNS poll every $POLL; warm ${WARM}s, down ${DOWN}s (DNS-only ${DNS_DOWN}s), up ${UP}s (DNS-only ${DNS_UP}s)"
	declare -gA RES
	for ((round = 1; round <= ROUNDS; round++)); do
		for mode in $MODES; do
			for rate in $RATES; do
				for name in $CONTENDERS; do
					runs_here "$name" "$rate" || continue
					run_one "$name" "$mode" "$rate" "$round"
				done
			done
		done
		log "after round $round: $(uptime)"
	done

	echo
	echo "machine: $(cpu_desc)"
	echo "uptime before: $load_before"
	echo "uptime after:  $(uptime)"
	echo "versions: $(version_of haproxy); $(version_of nginx); $(version_of caddy); $(version_of pdns); $(version_of gdnsd); $(version_of go)"
	echo "HTTP: open loop $RATES req/s GET $URL_PATH; dc1 broken ($MODES) after ${WARM}s, restarted/healed ${DOWN}s later, watched ${UP}s"
	echo "peers' per-try bounds: response headers $TRY_TIMEOUT, connect $CONNECT_TIMEOUT; coopr-gslb: its proxy.retry defaults"
	echo "DNS-only: polled every $POLL; dc1 broken ${DNS_DOWN}s, watched ${DNS_UP}s; coopr-gslb(-ss) rows poll DNS during their HTTP run"
	echo
	echo "every run (ms; busy/steal: the whole machine's CPU during the run; * = disturbed before the fault)"
	local rd key f='| %-9s | %4s | %-14s | %-3s | %6s | %7s | %9s | %7s | %7s | %7s | %7s | %7s | %7s | %8s | %8s | %8s | %8s | %6s | %5s | %4s | %5s |\n'
	# shellcheck disable=SC2059 # the format is the variable
	printf "$f" fault rate contender rd failed worst "worst at" "w fault" "w 2s" "w fb" "w calm" "lag" "to dc2" failback "full fb" "DNS flip" "flip bk" "dc1 up" load1 busy steal
	for ((round = 1; round <= ROUNDS; round++)); do
		for mode in $MODES; do
			for rate in $RATES; do
				for name in $CONTENDERS; do
					runs_here "$name" "$rate" || continue
					key=$name,$mode,$rate,$round
					if [[ ${RES[$key,ok]:-0} != 1 ]]; then
						printf '| %-9s | %4s | %-14s | %-3s | did not start\n' "$mode" "$rate" "$name" "$round"
						continue
					fi
					# A run whose proxy failed requests or served from dc2 before the
					# fault was disturbed by something else (an overloaded machine):
					# its round number is starred.
					rd=$round
					if [[ ${RES[$key,pre_kill_failed]:-0} != 0 ]] ||
						{ [[ $name != direct ]] && awk -v p="${RES[$key,pre_kill_on_primary]:-1}" 'BEGIN { exit !(p < 0.99) }'; }; then
						rd="$round*"
					fi
					# shellcheck disable=SC2059
					printf "$f" "$mode" "$rate" "$name" "$rd" "${RES[$key,failed]:-n/a}" "${RES[$key,worst_ms]:-n/a}" \
						"${RES[$key,worst_at]:-n/a}" "${RES[$key,worst_fault_ms]:-n/a}" "${RES[$key,worst_kill_ms]:-n/a}" \
						"${RES[$key,worst_fb_ms]:-n/a}" "${RES[$key,worst_calm_ms]:-n/a}" \
						"${RES[$key,gen_lag_ms]:-n/a}" "${RES[$key,to_other_ms]:-n/a}" \
						"${RES[$key,failback_ms]:-n/a}" "${RES[$key,failback_all_ms]:-n/a}" \
						"${RES[$key,dns_flip_ms]:-n/a}" "${RES[$key,dns_flipback_ms]:-n/a}" \
						"${RES[$key,primary_up_ms]:-}" "${RES[$key,load1]}" \
						"${RES[$key,busy]}" "${RES[$key,steal]}"
				done
			done
		done
	done
	echo
	echo "medians over $ROUNDS rounds (ms; worst split by window: whole fault / its first 2 s / failback / calm)"
	f='| %-9s | %4s | %-14s | %6s | %7s | %7s | %7s | %7s | %7s | %7s | %8s | %9s | %8s | %8s |\n'
	# shellcheck disable=SC2059
	printf "$f" fault rate contender failed worst "w fault" "w 2s" "w fb" "w calm" "to dc2" failback "full fb" "DNS flip" "flip bk"
	# shellcheck disable=SC2059
	printf "$f" --------- ---- -------------- ------ ------- ------- ------- ------- ------- ------- -------- --------- -------- --------
	for mode in $MODES; do
		for rate in $RATES; do
			for name in $CONTENDERS; do
				runs_here "$name" "$rate" || continue
				# shellcheck disable=SC2059
				printf "$f" "$mode" "$rate" "$name" \
					"$(cell "$name" "$mode" "$rate" failed http)" "$(cell "$name" "$mode" "$rate" worst_ms http)" \
					"$(cell "$name" "$mode" "$rate" worst_fault_ms http)" "$(cell "$name" "$mode" "$rate" worst_kill_ms http)" \
					"$(cell "$name" "$mode" "$rate" worst_fb_ms failover)" "$(cell "$name" "$mode" "$rate" worst_calm_ms http)" \
					"$(cell "$name" "$mode" "$rate" to_other_ms failover)" "$(cell "$name" "$mode" "$rate" failback_ms failover)" \
					"$(cell "$name" "$mode" "$rate" failback_all_ms failover)" "$(cell "$name" "$mode" "$rate" dns_flip_ms dns)" \
					"$(cell "$name" "$mode" "$rate" dns_flipback_ms dns)"
			done
		done
	done
}

main "$@"
