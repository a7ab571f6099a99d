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

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
CONTENDERS=${CONTENDERS:-"direct coopr-gslb haproxy nginx caddy"}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/coopr-proxybench.XXXXXX")

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

PIDS=()
declare -A PID # contender (or simdcs) -> the process whose CPU time it costs
POLICY_CREATED=0

log() { printf '%s\n' "$*" >&2; }
die() {
	log "proxy.sh: $*"
	exit 1
}

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if ((POLICY_CREATED)); then
		rm -f /usr/sbin/policy-rc.d
	fi
	if [[ ${KEEP_TMP:-0} == 1 ]]; then
		log "kept $TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# install_packages installs what is missing. A policy-rc.d that exits 101
# keeps the packages' own services from starting on port 80 during the
# install; we run our own instances on high loopback ports.
install_packages() {
	local missing=() pkg
	command -v wrk >/dev/null || missing+=(wrk)
	command -v haproxy >/dev/null || missing+=(haproxy)
	command -v nginx >/dev/null || missing+=(nginx)
	command -v caddy >/dev/null || missing+=(caddy)
	command -v curl >/dev/null || missing+=(curl)
	((${#missing[@]} == 0)) && return
	((EUID == 0)) || die "need root to install: ${missing[*]}"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		POLICY_CREATED=1
	fi
	log "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$TMP/apt.log"
	if ((POLICY_CREATED)); then
		rm -f /usr/sbin/policy-rc.d
		POLICY_CREATED=0
	fi
	# Should a service have started anyway, stop it.
	for pkg in haproxy nginx caddy; do
		systemctl stop "$pkg" 2>/dev/null || service "$pkg" stop >/dev/null 2>&1 || true
	done
}

# start runs a command in the background with its output in $TMP/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
	PID[$name]=$!
}

# start_backends runs the two simulated DCs and gives each one cluster, so
# GET /v2/clusters answers a small JSON list.
start_backends() {
	(cd "$REPO" && go build -o "$TMP/simdcs" ./bench/internal/simdcs) || die "building simdcs failed"
	start simdcs "$TMP/simdcs" -dc "dc1=$DC1" -dc "dc2=$DC2"
	local deadline=$((SECONDS + 20)) dc
	for dc in "$DC1" "$DC2"; do
		until curl -fsS -o /dev/null "http://$dc/status" 2>/dev/null; do
			((SECONDS < deadline)) || die "simulator $dc not answering; see $TMP/simdcs.log"
			sleep 0.2
		done
		curl -fsS -o /dev/null -X POST "http://$dc/v2/clusters" || die "creating a cluster on $dc failed"
	done
	log "backend answer: $(curl -fsS "http://$DC1$URL_PATH") ($(curl -fsS "http://$DC1$URL_PATH" | wc -c) bytes)"
}

setup_direct() { PID[direct]=${PID[simdcs]}; }

setup_coopr_gslb() {
	local bin=${GSLB_BIN:-}
	if [[ -z $bin ]]; then
		(cd "$REPO" && go build -o "$TMP/coopr-gslb" .) || die "building coopr-gslb failed"
		bin=$TMP/coopr-gslb
	fi
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
	start coopr-gslb "$bin" run -config "$TMP/gslb.yaml"
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
	tail -5 "$TMP/$name.log" >&2 || true
	return 1
}

# cpu_ticks prints the user+system CPU time, in clock ticks, that a process
# and its children (nginx's workers) have used.
cpu_ticks() {
	local total=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
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

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# ratio prints a / b, or "-" when b is zero or missing.
ratio() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

# median_ratio prints the median over the rounds of A's METRIC over B's, each
# ratio taken within its own round.
median_ratio() {
	local a=$1 b=$2 metric=$3 round
	for ((round = 1; round <= ROUNDS; round++)); do
		awk -v x="${RES[$a,$round,$metric]:-0}" -v y="${RES[$b,$round,$metric]:-0}" 'BEGIN { if (y > 0) printf "%.4f\n", x / y }'
	done | median
}

machine_notes() {
	echo "machine: $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "load average before: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "versions: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2); $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1); caddy $(caddy version 2>/dev/null | cut -d' ' -f1); $(go version | cut -d' ' -f3)"
	echo "wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s --latency, GET $URL_PATH, $ROUNDS rounds"
}

main() {
	command -v go >/dev/null || die "go is required to build coopr-gslb"
	install_packages
	LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
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
	for name in $CONTENDERS; do
		if ready "$name"; then
			live+=("$name")
		else
			log "skipping $name"
		fi
	done
	((${#live[@]} > 0)) || die "no contender answers"
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
		rps=$(for ((round = 1; round <= ROUNDS; round++)); do echo "${RES[$name,$round,rps]}"; done | median)
		p99=$(for ((round = 1; round <= ROUNDS; round++)); do echo "${RES[$name,$round,p99]}"; done | median)
		cpu=$(for ((round = 1; round <= ROUNDS; round++)); do echo "${RES[$name,$round,cpu]}"; done | median)
		printf '| %-5s | %-10s | %9.0f | %6.2f | %9.2f | %6.2f | %11.1f | %6s |\n' med "$name" "$rps" \
			"$(median_ratio "$name" direct rps)" "$p99" "$(median_ratio "$name" direct p99)" "$cpu" ""
	done

	# The issue's targets, on medians of per-round ratios.
	if [[ " ${live[*]} " == *" coopr-gslb "* ]]; then
		echo
		local peer r want verdict
		for peer in haproxy caddy nginx; do
			[[ " ${live[*]} " == *" $peer "* ]] || continue
			r=$(median_ratio coopr-gslb "$peer" rps)
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
			r=$(median_ratio coopr-gslb haproxy p99)
			verdict=$(awk -v r="$r" 'BEGIN { print (r <= 1.5) ? "met" : "MISSED" }')
			printf 'coopr-gslb p99 / haproxy   %.2f  (target <= 1.5: %s)\n' "$r" "$verdict"
			printf 'coopr-gslb CPU/req / haproxy %.2f\n' "$(median_ratio coopr-gslb haproxy cpu)"
		fi
	fi
}

main "$@"
