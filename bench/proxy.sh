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
# "bench/proxy.sh tls" (or MODE=tls) measures the TLS path instead, as
# production runs it: every proxy serves HTTPS with the same self-signed
# ECDSA P-256 certificate for api.coopr.example.com (HAProxy "ssl crt ...
# alpn h2,http/1.1", nginx "ssl http2", Caddy "tls cert key", coopr-gslb
# tls.certificates) in front of the same plain-HTTP DCs, under three loads:
#
#   keepalive    wrk -t2 -c64, HTTP/1.1 keep-alive over TLS
#   handshake    wrk -t2 -c16 -H "Connection: close": a full TLS handshake
#                per request
#   h2           h2load -c16 -m8 (Debian nghttp2-client), HTTP/2
#
# The table then shows each peer's req/s as a ratio to coopr-gslb's in the
# same round (there is no "direct" over TLS). wrk sends no SNI to an IP
# address, so the run adds "127.0.0.1 api.coopr.example.com" to /etc/hosts
# (and removes it at exit) and the URLs use the name.
#
# Environment:
#   MODE=plain      plain or tls (or the first argument)
#   ROUNDS=3        rounds of every contender
#   DURATION=10     seconds per wrk run (-d)
#   THREADS=2       wrk threads (-t)
#   CONNECTIONS=64  wrk connections (-c)
#   CONTENDERS="direct coopr-gslb haproxy nginx caddy" (tls: no direct)
#   LOADS="keepalive handshake h2"  the TLS loads to run
#   BASE_PORT=18460 loopback ports used: BASE_PORT+1..2 the DCs, +11..+14 the proxies
#   GSLB_BIN=path   use this binary instead of building the repository's
#   KEEP_TMP=1      keep the working directory (configs, logs, wrk output)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE=${1:-${MODE:-plain}}
[[ $MODE == plain || $MODE == tls ]] || {
	echo "usage: bench/proxy.sh [plain|tls]" >&2
	exit 2
}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
if [[ $MODE == tls ]]; then
	CONTENDERS=${CONTENDERS:-"coopr-gslb haproxy nginx caddy"}
else
	CONTENDERS=${CONTENDERS:-"direct coopr-gslb haproxy nginx caddy"}
fi
LOADS=${LOADS:-"keepalive handshake h2"}
bench_init coopr-proxybench

HOST=api.bench.example.com
[[ $MODE == tls ]] && HOST=api.coopr.example.com
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
if [[ $MODE == tls ]]; then
	ADDR[coopr-gslb]=127.0.0.1:$((BASE_PORT + 21))
	ADDR[haproxy]=127.0.0.1:$((BASE_PORT + 22))
	ADDR[nginx]=127.0.0.1:$((BASE_PORT + 23))
	ADDR[caddy]=127.0.0.1:$((BASE_PORT + 24))
fi
HOSTS_LINE="127.0.0.1 $HOST # bench/proxy.sh tls"

# url NAME is the URL a load tool and ready use for a contender.
url() {
	if [[ $MODE == tls ]]; then
		echo "https://$HOST:${ADDR[$1]##*:}$URL_PATH"
	else
		echo "http://${ADDR[$1]}$URL_PATH"
	fi
}

# make_cert writes the one certificate every TLS contender serves:
# $TMP/cert.pem, $TMP/key.pem, and both in $TMP/both.pem for HAProxy.
make_cert() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
		-subj "/CN=$HOST" -addext "subjectAltName=DNS:$HOST" \
		-keyout "$TMP/key.pem" -out "$TMP/cert.pem" 2>/dev/null || die "openssl could not make a certificate"
	cat "$TMP/cert.pem" "$TMP/key.pem" >"$TMP/both.pem"
}

# add_hosts_entry points $HOST at loopback for the run, so that wrk sends
# SNI; remove_hosts_entry (at exit) takes the line out again.
add_hosts_entry() {
	grep -qF "$HOSTS_LINE" /etc/hosts || echo "$HOSTS_LINE" >>/etc/hosts
}
remove_hosts_entry() {
	local kept
	kept=$(grep -vF "$HOSTS_LINE" /etc/hosts || true)
	printf '%s\n' "$kept" >/etc/hosts
}

# install_packages installs what is missing; install_missing keeps the
# packages' own services from starting on port 80 during the install.
install_packages() {
	want_cmd wrk haproxy nginx caddy curl
	[[ $MODE == tls ]] && want_cmd h2load:nghttp2-client openssl
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
	local listen="  http: \"${ADDR[coopr-gslb]}\""
	local tls=""
	if [[ $MODE == tls ]]; then
		listen="  https: \"${ADDR[coopr-gslb]}\""
		tls="tls:
  certificates:
    - {cert: \"$TMP/cert.pem\", key: \"$TMP/key.pem\"}"
	fi
	cat >"$TMP/gslb.yaml" <<EOF
listen:
$listen
  dns: ""
  admin: ""
$tls
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
    bind ${ADDR[haproxy]}$([[ $MODE == tls ]] && echo " ssl crt $TMP/both.pem alpn h2,http/1.1")
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
        listen ${ADDR[nginx]}$([[ $MODE == tls ]] && echo " ssl http2");
$([[ $MODE == tls ]] && printf '        ssl_certificate %s;\n        ssl_certificate_key %s;\n' "$TMP/cert.pem" "$TMP/key.pem")
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
$([[ $MODE == tls ]] && echo "https://$HOST:${ADDR[caddy]##*:}" || echo "http://:${ADDR[caddy]##*:}") {
	bind ${ADDR[caddy]%:*}
$([[ $MODE == tls ]] && echo "	tls $TMP/cert.pem $TMP/key.pem")
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
		body=$(curl -fsS -k -m 2 -H "Host: $HOST" "$(url "$name")" 2>/dev/null || true)
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
# With a third argument (tls mode) it runs that load: keepalive, handshake
# (Connection: close) or h2 (h2load, which reports no p99: 0).
measure() {
	local name=$1 out=$TMP/wrk-$1-$2${3:+-$3}.txt before after
	before=$(cpu_ticks "${PID[$name]}")
	case ${3:-keepalive} in
	keepalive)
		wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: $HOST" \
			"$(url "$name")" >"$out" 2>&1 || true
		;;
	handshake)
		wrk -t"$THREADS" -c16 -d"${DURATION}s" --latency -H "Host: $HOST" -H "Connection: close" \
			"$(url "$name")" >"$out" 2>&1 || true
		;;
	h2)
		h2load -c16 -m8 -D "$DURATION" "$(url "$name")" >"$out" 2>&1 || true
		after=$(cpu_ticks "${PID[$name]}")
		awk -v ticks=$((after - before)) -v hz="$(getconf CLK_TCK)" '
			/^finished in/ { rps = $4; gsub(/,/, "", rps) }
			/^requests:/ { n = $8; errs = $10 + $12 } # failed (non-2xx included), errored
			END { printf "%.0f 0 %d %.1f\n", rps, errs, (n > 0) ? ticks * 1e6 / hz / n : 0 }
		' "$out"
		return
		;;
	esac
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
	if [[ $MODE == tls ]]; then
		echo "TLS (ECDSA P-256), loads: $LOADS; ${DURATION}s each, GET $URL_PATH, $ROUNDS rounds; $(version_of_h2load)"
	else
		echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, GET $URL_PATH, $ROUNDS rounds"
	fi
}

version_of_h2load() { h2load --version 2>/dev/null | head -1 || echo "h2load ?"; }

# main_tls runs the TLS loads, interleaved per round and load, and prints
# each peer's req/s over coopr-gslb's within the round, then the medians,
# and the issue's targets (>= 2x Caddy, >= 0.6x HAProxy on every load).
main_tls() {
	local live=("$@") round load name rps p99 errs cpu
	declare -gA TRES
	for ((round = 1; round <= ROUNDS; round++)); do
		for load in $LOADS; do
			for name in "${live[@]}"; do
				read -r rps p99 errs cpu < <(measure "$name" "$round" "$load")
				TRES[$name-$load,$round,rps]=$rps
				TRES[$name-$load,$round,cpu]=$cpu
				TRES[$name-$load,$round,errs]=$errs
				log "round $round, $load: $name $rps req/s, p99 $p99 ms, $errs errors, $cpu us CPU/req"
			done
		done
	done
	echo
	machine_notes
	echo
	printf '| %-9s | %-10s | %9s | %12s | %11s | %6s |\n' load contender "med req/s" "x coopr-gslb" "CPU us/req" errors
	printf '| %-9s | %-10s | %9s | %12s | %11s | %6s |\n' --------- ---------- --------- ------------ ----------- ------
	for load in $LOADS; do
		for name in "${live[@]}"; do
			printf '| %-9s | %-10s | %9.0f | %12s | %11.1f | %6s |\n' "$load" "$name" \
				"$(per_round TRES "$name-$load" rps | median)" \
				"$(median_ratio TRES "$name-$load" "coopr-gslb-$load" rps)" \
				"$(per_round TRES "$name-$load" cpu | median)" \
				"$(per_round TRES "$name-$load" errs | awk '{ s += $1 } END { print s + 0 }')"
		done
	done
	[[ " ${live[*]} " == *" coopr-gslb "* ]] || return 0
	echo
	local peer r want verdict
	for load in $LOADS; do
		for peer in haproxy caddy; do
			[[ " ${live[*]} " == *" $peer "* ]] || continue
			r=$(median_ratio TRES "coopr-gslb-$load" "$peer-$load" rps)
			want=0.6
			[[ $peer == caddy ]] && want=2.0
			verdict=$(awk -v r="$r" -v w="$want" 'BEGIN { print (r >= w) ? "met" : "MISSED" }')
			printf '%-9s coopr-gslb req/s / %-8s %.2f  (target >= %s: %s)\n' "$load" "$peer" "$r" "$want" "$verdict"
		done
	done
}

main() {
	command -v go >/dev/null || die "go is required to build coopr-gslb"
	install_packages
	LOAD_BEFORE=$(loadavg)
	if [[ $MODE == tls ]]; then
		make_cert
		trap 'remove_hosts_entry; bench_cleanup' EXIT
		add_hosts_entry
	fi
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
	if [[ $MODE == tls ]]; then
		main_tls "${live[@]}"
		return
	fi
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
