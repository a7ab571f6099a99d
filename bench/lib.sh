# shellcheck shell=bash
# bench/lib.sh: what the manual benchmarks (bench/proxy.sh, bench/dns.sh,
# bench/failover.sh) share. Not run on its own: each script sets bash's
# strict mode and then sources it,
#
#   set -euo pipefail
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# and every function here works under that strict mode. Sourcing only
# defines functions and these globals:
#
#   REPO            the repository's root (the parent of bench/)
#   PIDS            background processes that bench_cleanup stops
#   PID             NAME -> the process "start NAME ..." started
#   MISSING         packages that want_cmd/want_pkg found missing
#   POLICY_CREATED  1 while install_missing's policy-rc.d is in place
#
# Set-up and teardown:
#   bench_init PREFIX     makes TMP, the working directory
#                         ${TMPDIR:-/tmp}/PREFIX.XXXXXX, and traps EXIT
#                         (bench_cleanup) and INT/TERM (exit 130)
#   bench_cleanup         stops PIDS, removes a policy-rc.d left by
#                         install_missing, removes TMP unless KEEP_TMP=1
#   stop_pid PID          kills PID (if any) and waits for it
#   log MSG..., die MSG...  a line on stderr; die prefixes the script's name
#                         and exits 1
#   want_cmd CMD[:PKG]... adds PKG (default CMD) to MISSING when CMD is not
#                         on PATH
#   want_pkg PKG...       adds PKG to MISSING when dpkg has not installed it
#   install_missing SVC...  apt-get installs MISSING (root only) with a
#                         policy-rc.d that exits 101 in place, so the
#                         packages' services do not start on their standard
#                         ports (we run our own instances on high loopback
#                         ports), then stops the services SVC should they
#                         have started anyway
#   build NAME PKG        builds the repository's Go package PKG into $TMP/NAME
#   build_gslb            sets GSLB to $GSLB_BIN, or builds the repository's
#                         coopr-gslb into $TMP/coopr-gslb and sets GSLB to it
#   start NAME CMD...     runs CMD in the background, output in $TMP/NAME.log,
#                         its process in PIDS and PID[NAME]
#   wait_http URL SECS    waits (at most SECS seconds) until GET URL answers 2xx
#   show_log NAME         the last lines of $TMP/NAME.log, on stderr
#   keep_ready ARR        sets the array ARR to the CONTENDERS for which the
#                         script's "ready NAME" succeeds, logs the others as
#                         skipped, dies when none is ready
#
# Figures and tables:
#   median                the median of the numbers on stdin, one a line;
#                         0 when there are none
#   median_or EMPTY       the same, but EMPTY when there are none
#   ratio A B             A / B with two decimals, "-" when B is 0 or empty
#   per_round ARR NAME [KEY]  ARR[NAME,ROUND] (ARR[NAME,ROUND,KEY] with KEY)
#                         for ROUND = 1..ROUNDS, one a line
#   median_ratio ARR A B [KEY]  the median over the rounds of A's figure
#                         over B's, each ratio taken within its own round
#                         (rounds where B's is 0 or missing left out)
#   cpu_ticks PID         user+system CPU clock ticks of PID and its children
#   cpu_sample            the machine's "busy steal total" jiffies
#   loadavg               the three load averages, from /proc/loadavg
#   cpu_desc              "N CPUs (model name)"
#   version_of TOOL       TOOL's version as the tables show it (haproxy,
#                         nginx, caddy, wrk, pdns, gdnsd, go)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=${BASH_SOURCE[-1]##*/} # the script that sourced this file
PIDS=()
declare -gA PID=()
MISSING=()
POLICY_CREATED=0

log() { printf '%s\n' "$*" >&2; }
die() {
	log "$BENCH_NAME: $*"
	exit 1
}

bench_init() {
	TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

stop_pid() {
	[[ -n ${1:-} ]] || return 0
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

bench_cleanup() {
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

want_cmd() {
	local spec
	for spec; do
		command -v "${spec%%:*}" >/dev/null || MISSING+=("${spec#*:}")
	done
}

want_pkg() {
	local pkg
	for pkg; do
		dpkg -s "$pkg" >/dev/null 2>&1 || MISSING+=("$pkg")
	done
}

install_missing() {
	local svc
	((${#MISSING[@]} > 0)) || return 0
	((EUID == 0)) || die "need root to install: ${MISSING[*]}"
	if [[ ! -e /usr/sbin/policy-rc.d ]]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		POLICY_CREATED=1
	fi
	log "installing ${MISSING[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >"$TMP/apt.log"
	if ((POLICY_CREATED)); then
		rm -f /usr/sbin/policy-rc.d
		POLICY_CREATED=0
	fi
	# Should a service have started anyway, stop it.
	for svc; do
		systemctl stop "$svc" 2>/dev/null || service "$svc" stop >/dev/null 2>&1 || true
	done
}

build() {
	(cd "$REPO" && go build -o "$TMP/$1" "$2") || die "building $1 failed"
}

build_gslb() {
	GSLB=${GSLB_BIN:-}
	if [[ -z $GSLB ]]; then
		build coopr-gslb .
		GSLB=$TMP/coopr-gslb
	fi
}

start() {
	local name=$1
	shift
	"$@" >"$TMP/$name.log" 2>&1 &
	PIDS+=($!)
	# shellcheck disable=SC2034 # PID is for the scripts (proxy.sh's CPU time)
	PID[$name]=$!
}

wait_http() {
	local deadline=$((SECONDS + $2))
	until curl -fsS -o /dev/null "$1" 2>/dev/null; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

show_log() { tail -5 "$TMP/$1.log" >&2 || true; }

keep_ready() {
	local -n _kr_live=$1
	local name
	_kr_live=()
	for name in $CONTENDERS; do
		if ready "$name"; then
			_kr_live+=("$name")
		else
			log "skipping $name"
		fi
	done
	((${#_kr_live[@]} > 0)) || die "no contender answers"
}

median() { median_or 0; }
median_or() {
	sort -g | awk -v empty="$1" '{ v[NR] = $1 } END { if (NR == 0) print empty; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="${2:-0}" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "-" }'; }

per_round() {
	local -n _pr_arr=$1
	local name=$2 key=${3:+,$3} round
	for ((round = 1; round <= ROUNDS; round++)); do
		echo "${_pr_arr[$name,$round$key]}"
	done
}

median_ratio() {
	local -n _mr_arr=$1
	local a=$2 b=$3 key=${4:+,$4} round
	for ((round = 1; round <= ROUNDS; round++)); do
		awk -v x="${_mr_arr[$a,$round$key]:-0}" -v y="${_mr_arr[$b,$round$key]:-0}" 'BEGIN { if (y > 0) printf "%.4f\n", x / y }'
	done | median
}

cpu_ticks() {
	local total=0 p
	for p in "$1" $(pgrep -P "$1" || true); do
		total=$((total + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
}

cpu_sample() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

cpu_desc() { echo "$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))"; }

version_of() {
	case $1 in
	haproxy) haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3 ;;
	nginx) nginx -v 2>&1 | cut -d' ' -f3 ;;
	caddy) echo "caddy $(caddy version 2>/dev/null | cut -d' ' -f1)" ;;
	wrk) wrk -v 2>&1 | head -1 | cut -d' ' -f1-2 ;;
	pdns) pdns_server --version 2>&1 | grep -o 'PowerDNS Authoritative Server [0-9.]*' | head -1 ;;
	gdnsd) gdnsd -V 2>&1 | grep -o 'gdnsd version [0-9.]*' | head -1 ;;
	go) go version | cut -d' ' -f3 ;;
	*) die "version_of: unknown tool $1" ;;
	esac
}
