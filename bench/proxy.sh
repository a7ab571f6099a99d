#!/usr/bin/env bash
# bench/proxy.sh: HTTP reverse-proxy throughput and p99 latency of
# coopr-gslb against its peers, on loopback.
#
# A manual benchmark, not run in CI. It needs root (apt-get) and Debian 12's
# packages. Two simulated Coopr datacenters (bench/internal/simdcs), dc1
# primary and dc2 backup, serve the same small JSON answer (GET /v2/clusters
# with one cluster, ~100 bytes). wrk (keep-alive, -t2 -c64) measures:
#
#   direct       the dc1 simulator itself: the reference, no proxy
#   coopr-gslb   built from this repository, "coopr-gslb run -config FILE",
#                access log off
#   haproxy      HAProxy 2.6, dc2 "backup", redispatch + retry-on + observe
#   nginx        nginx 1.22, upstream with a zone, dc2 "backup", keepalive
#   caddy        Caddy 2.6, lb_policy first, active and passive health
#
# Each proxy is set up for its best failover as shared/PEERS.md describes,
# so the numbers are the price of a proxy that fails over well. Absolute
# speed on a shared machine drifts a lot, so the contenders run interleaved
# (A B C, A B C, ...) and the table shows each round's req/s and p99 with
# their ratios to direct in the same round, then the medians. It also shows
# each contender's own CPU time per request (user+system, from /proc), which
# drifts far less than req/s when other work shares the machine.
#
# Environment:
#   ROUNDS=3        rounds of every contender
#   DURATION=10     seconds per wrk run (-d)
#   THREADS=2       wrk threads (-t)
#   CONNECTIONS=64  wrk connections (-c)
#   CONTENDERS="direct coopr-gslb haproxy nginx caddy"
#   BASE_PORT=18460 loopback ports used: BASE_PORT+1..2 the DCs, +11..+14 the proxies
#   GSLB_BIN=path   use this binary instead of building the repository's
#   KEEP_TMP=1      keep the working directory (configs, logs, wrk output)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
CONTENDERS=${CONTENDERS:-"direct coopr-gslb haproxy nginx caddy"}
bench_init coopr-proxybench

HOST=api.bench.example.com
URL_PATH=/v2/clusters
BASE_PORT=${BASE_PORT:-18460}
DC1=127.0.0.1:$((BASE_PORT + 1))
DC2=127.0.0.1:$((BASE_PORT + 2))
declare -A ADDR=(
	[direct]=$DC1
	[coopr-gslb]=127.0.0.1:$((BASE_PORT + 11))
	[haproxy]=127.0.0.1:$((BASE_PORT + 12))
	[nginx]=127.0.0.1:$((BASE_PORT + 13))
	[caddy]=127.0.0.1:$((BASE_PORT + 14))
)

# install_packages installs what is missing; install_missing keeps the
# packages' own services from starting on port 80 during the install.
install_packages() {
	want_cmd wrk haproxy nginx caddy curl
	install_missing haproxy nginx caddy
}

# start_backends runs the two simulated DCs and gives each one cluster, so
# GET /v2/clusters answers a small JSON list.
start_backends() {
	build simdcs ./bench/internal/simdcs
	start simdcs "$TMP/simdcs" -dc "dc1=$DC1" -dc "dc2=$DC2"
	local dc
	for dc in "$DC1" "$DC2"; do
		wait_http "http://$dc/status" 20 || die "simulator $dc not answering; see $TMP/simdcs.log"
		curl -fsS -o /dev/null -X POST "http://$dc/v2/clusters" || die "creating a cluster on $dc failed"
	done
	log "backend answer: $(curl -fsS "http://$DC1$URL_PATH") ($(curl -fsS "http://$DC1$URL_PATH" | wc -c) bytes)"
}

# PID (from lib.sh's start) maps a contender to the process whose CPU time
# it costs: direct's is the simulator's.
setup_direct() { PID[direct]=${PID[simdcs]}; }

setup_coopr_gslb() {
	build_gslb
	cat >"$TMP/gslb.yaml" <<EOF
listen:
  http: "${ADDR[coopr-gslb]}"
  dns: ""
  admin: ""
health:
  interval: 1s
  timeout: 800ms
  rise: 2
  fall: 3
proxy:
  access_log: false
datacenters:
  - name: dc1
    priority: 1
    services:
      api: {endpoints: ["$DC1"], addresses: ["192.0.2.1"]}
  - name: dc2
    priority: 2
    services:
      api: {endpoints: ["$DC2"], addresses: ["192.0.2.2"]}
services:
  api:
    hostnames: ["$HOST"]
    check: {type: http, path: /status}
    policy: failover
EOF
	start coopr-gslb "$GSLB" run -config "$TMP/gslb.yaml"
}

# setup_haproxy: its best failover per PEERS.md (redispatch, retry-on and
# observe layer4), active checks at 1 s, fall 3, rise 2.
setup_haproxy() {
	local dir=$TMP/haproxy
	mkdir -p "$dir"
	cat >"$dir/haproxy.cfg" <<EOF
global
    maxconn 4096
    nbthread $(nproc)
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
frontend fe
    bind ${ADDR[haproxy]}
    default_backend dcs
backend dcs
    option httpchk GET /status
    server dc1 $DC1 check inter 1s fall 3 rise 2 observe layer4 error-limit 1 on-error mark-down
    server dc2 $DC2 check inter 1s fall 3 rise 2 backup
EOF
	start haproxy haproxy -db -f "$dir/haproxy.cfg"
}

# setup_nginx: passive checks only; a zone shares failure state between
# workers and proxy_next_upstream retries a refused connection on the
# backup; upstream keep-alive as any production setup has it.
setup_nginx() {
	local dir=$TMP/nginx
	mkdir -p "$dir"
	cat >"$dir/nginx.conf" <<EOF
user root;
worker_processes auto;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
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
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_next_upstream error timeout;
        }
    }
}
EOF
	start nginx nginx -e "$dir/error.log" -c "$dir/nginx.conf"
}

# setup_caddy: active health at 1 s plus its best failover per PEERS.md
# (lb_try_duration and passive health).
setup_caddy() {
	local dir=$TMP/caddy
	mkdir -p "$dir"
	cat >"$dir/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://:${ADDR[caddy]##*:} {
	bind ${ADDR[caddy]%:*}
	reverse_proxy $DC1 $DC2 {
		lb_policy first
		health_uri /status
		health_interval 1s
		lb_try_duration 2s
		fail_duration 10s
		max_fails 1
	}
}
EOF
	# Caddy keeps its data and autosaved config under XDG dirs: keep them in $TMP.
	start caddy env HOME="$dir" XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config" \
		caddy run --adapter caddyfile --config "$dir/Caddyfile"
}

# ready waits until a contender answers GET $URL_PATH from dc1 (the primary).
ready() {
	local name=$1 deadline=$((SECONDS + 30)) body=""
	while ((SECONDS < deadline)); do
		body=$(curl -fsS -m 2 -H "Host: $HOST" "http://${ADDR[$name]}$URL_PATH" 2>/dev/null || true)
		if [[ $body == *'"dc":"dc1"'* ]]; then
			return 0
		fi
		sleep 0.5
	done
	log "$name does not answer from dc1 on ${ADDR[$name]} (got: ${body:-nothing}); see $TMP/$name.log:"
	show_log "$name"
	return 1
}

# measure runs wrk against a contender and prints "REQ_PER_S P99_MS ERRORS
# CPU_US", errors counting socket errors and non-2xx/3xx answers, CPU_US
# the contender's own CPU time per request in microseconds (for direct, the
# simulator's). CPU per request drifts far less than req/s on a busy machine.
measure() {
	local name=$1 out=$TMP/wrk-$1-$2.txt before after
	before=$(cpu_ticks "${PID[$name]}")
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $HOST" \
		"http://${ADDR[$name]}$URL_PATH" >"$out" 2>&1 || true
	after=$(cpu_ticks "${PID[$name]}")
	awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
		function ms(v) {
			if (v ~ /us$/) return v / 1000
			if (v ~ /ms$/) return v + 0
			if (v ~ /m$/) return v * 60000
			if (v ~ /s$/) return v * 1000
			return v + 0
		}
		/requests in/ { n = $1 }
		/Requests\/sec:/ { rps = $2 }
		$1 == "99%" { p99 = ms($2) }
		/Non-2xx or 3xx responses:/ { errs += $5 }
		/Socket errors:/ { gsub(/,/, ""); errs += $4 + $6 + $8 + $10 }
		END { printf "%.0f %.2f %d %.1f\n", rps, p99, errs, (n > 0) ? ticks * 1e6 / hz / n : 0 }
	' "$out"
}

machine_notes() {
	echo "machine: $(cpu_desc), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "load average before: $LOAD_BEFORE; after: $(loadavg)"
	echo "versions: $(version_of wrk); $(version_of haproxy); nginx version: $(version_of nginx); $(version_of caddy); $(version_of go)"
	echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, GET $URL_PATH, $ROUNDS rounds"
}

main() {
	command -v go >/dev/null || die "go is required to build coopr-gslb"
	install_packages
	LOAD_BEFORE=$(loadavg)
	start_backends

	local name
	for name in $CONTENDERS; do
		case $name in
		direct) setup_direct ;;
		coopr-gslb) setup_coopr_gslb ;;
		haproxy) setup_haproxy ;;
		nginx) setup_nginx ;;
		caddy) setup_caddy ;;
		*) die "unknown contender $name" ;;
		esac
	done
	local live=()
	keep_ready live
	[[ " ${live[*]} " == *" direct "* ]] || log "direct is not measured: ratios will be empty"

	log "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, $ROUNDS rounds of: ${live[*]}"
	declare -gA RES
	local round rps p99 errs cpu
	for ((round = 1; round <= ROUNDS; round++)); do
		for name in "${live[@]}"; do
			read -r rps p99 errs cpu < <(measure "$name" "$round")
			RES[$name,$round,rps]=$rps
			RES[$name,$round,p99]=$p99
			RES[$name,$round,errs]=$errs
			RES[$name,$round,cpu]=$cpu
			log "round $round: $name $rps req/s, p99 $p99 ms, $errs errors, $cpu us CPU/req"
		done
	done

	# The table: each round's req/s and p99 with their ratios to direct in
	# the same round, then the medians (of values and of per-round ratios).
	echo
	machine_notes
	echo
	printf '| %-5s | %-10s | %9s | %6s | %9s | %6s | %11s | %6s |\n' round contender "req/s" "x dir" "p99 ms" "x dir" "CPU us/req" errors
	printf '| %-5s | %-10s | %9s | %6s | %9s | %6s | %11s | %6s |\n' ----- ---------- --------- ------ --------- ------ ----------- ------
	for ((round = 1; round <= ROUNDS; round++)); do
		for name in "${live[@]}"; do
			printf '| %-5s | %-10s | %9s | %6s | %9s | %6s | %11s | %6s |\n' "$round" "$name" \
				"${RES[$name,$round,rps]}" "$(ratio "${RES[$name,$round,rps]}" "${RES[direct,$round,rps]:-}")" \
				"${RES[$name,$round,p99]}" "$(ratio "${RES[$name,$round,p99]}" "${RES[direct,$round,p99]:-}")" \
				"${RES[$name,$round,cpu]}" "${RES[$name,$round,errs]}"
		done
	done
	for name in "${live[@]}"; do
		rps=$(per_round RES "$name" rps | median)
		p99=$(per_round RES "$name" p99 | median)
		cpu=$(per_round RES "$name" cpu | median)
		printf '| %-5s | %-10s | %9.0f | %6.2f | %9.2f | %6.2f | %11.1f | %6s |\n' med "$name" "$rps" \
			"$(median_ratio RES "$name" direct rps)" "$p99" "$(median_ratio RES "$name" direct p99)" "$cpu" ""
	done

	# The issue's targets, on medians of per-round ratios.
	if [[ " ${live[*]} " == *" coopr-gslb "* ]]; then
		echo
		local peer r want verdict
		for peer in haproxy caddy nginx; do
			[[ " ${live[*]} " == *" $peer "* ]] || continue
			r=$(median_ratio RES coopr-gslb "$peer" rps)
			case $peer in
			haproxy) want=0.8 ;;
			caddy) want=1.0 ;;
			*) want="" ;;
			esac
			verdict=""
			[[ -n $want ]] && verdict=$(awk -v r="$r" -v w="$want" 'BEGIN { print (r >= w) ? "  (target >= " w ": met)" : "  (target >= " w ": MISSED)" }')
			printf 'coopr-gslb req/s / %-8s %.2f%s\n' "$peer" "$r" "$verdict"
		done
		if [[ " ${live[*]} " == *" haproxy "* ]]; then
			r=$(median_ratio RES coopr-gslb haproxy p99)
			verdict=$(awk -v r="$r" 'BEGIN { print (r <= 1.5) ? "met" : "MISSED" }')
			printf 'coopr-gslb p99 / haproxy   %.2f  (target <= 1.5: %s)\n' "$r" "$verdict"
			printf 'coopr-gslb CPU/req / haproxy %.2f\n' "$(median_ratio RES coopr-gslb haproxy cpu)"
		fi
	fi
}

main "$@"
