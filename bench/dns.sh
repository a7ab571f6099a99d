#!/usr/bin/env bash
# bench/dns.sh: DNS throughput of coopr-gslb against its peers, on loopback.
#
# A manual benchmark, not run in CI. It needs root (apt-get) and Debian 12's
# packages. Every contender serves the same zone, gslb.example.com, with two
# GSLB names that fail over from dc1 to dc2 when dc1's GET /status fails:
#
#   coopr-gslb          built from this repository, "coopr-gslb run -config FILE"
#   pdns-lua-shared     PowerDNS 4.7, bind backend, LUA ifurlextup, enable-lua-records=shared
#   pdns-lua-yes        the same with enable-lua-records=yes (a Lua state per query)
#   gdnsd               metafo over one multifo per DC, extmon probes running curl
#   knot                Knot DNS with a static zone: the reference, no health at all
#   coopr-gslb-base     a second coopr-gslb binary, BASE_BIN (e.g. built before a
#                       change), added to the contenders when BASE_BIN is set
#
# Two simulated Coopr datacenters (bench/internal/simdcs) answer /status.
# The query mix is 60% GSLB names, 20% static names, 20% NXDOMAIN. Absolute
# speed on a shared machine drifts a lot, so the contenders run interleaved
# (A B C, A B C, ...) and the table shows each round's q/s with its ratio to
# Knot in the same round, then the medians.
#
# Environment:
#   ROUNDS=3        rounds of every contender
#   DURATION=10     seconds per dnsperf run (-l)
#   CLIENTS=4       dnsperf clients (-c)
#   CONTENDERS="knot coopr-gslb pdns-lua-shared pdns-lua-yes gdnsd"
#   GSLB_BIN=path   use this binary instead of building the repository's
#   BASE_BIN=path   also measure this coopr-gslb binary, as coopr-gslb-base
#   KEEP_TMP=1      keep the working directory (configs, logs, dnsperf output)
#   SIGNED=1        DNSSEC: every query sets DO (dnsperf -D); coopr-gslb signs
#                   with a key from "coopr-gslb dnssec keygen", PowerDNS signs
#                   its LUA records live (pdnsutil secure-zone, bind-dnssec-db),
#                   Knot signs its static zone (dnssec-signing: on); gdnsd has
#                   no DNSSEC and is left out. The default contenders are then
#                   "knot coopr-gslb pdns-lua-shared pdns-lua-yes".
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-4}
SIGNED=${SIGNED:-0}
if [[ $SIGNED == 1 ]]; then
	CONTENDERS=${CONTENDERS:-"knot coopr-gslb pdns-lua-shared pdns-lua-yes"}
else
	CONTENDERS=${CONTENDERS:-"knot coopr-gslb pdns-lua-shared pdns-lua-yes gdnsd"}
fi
if [[ -n ${BASE_BIN:-} && " $CONTENDERS " != *" coopr-gslb-base "* ]]; then
	CONTENDERS+=" coopr-gslb-base"
fi
bench_init coopr-dnsbench

ZONE=gslb.example.com
DC1=127.0.0.1:18081
DC2=127.0.0.1:18082
declare -A PORT=([coopr-gslb]=15301 [pdns-lua-shared]=15302 [pdns-lua-yes]=15303 [gdnsd]=15304 [knot]=15305 [coopr-gslb-base]=15306)

# install_packages installs what is missing; install_missing keeps the
# packages' own services from starting on port 53 during the install.
install_packages() {
	want_cmd dnsperf pdns_server:pdns-server
	want_pkg pdns-backend-bind
	want_cmd gdnsd knotd:knot kdig:knot-dnsutils curl # kdig checks every answer before measuring
	install_missing pdns gdnsd knot
}

# zone_common is the part of the zone every contender serves alike.
zone_common() {
	cat <<EOF
\$ORIGIN $ZONE.
\$TTL 300
@ 3600 IN SOA ns1.$ZONE. hostmaster.example.com. 1 3600 600 604800 60
@ IN NS ns1.$ZONE.
ns1 IN A 127.0.0.1
static IN A 192.0.2.10
txt IN TXT "static record"
EOF
}

write_queries() {
	local i
	for ((i = 0; i < 10; i++)); do
		printf '%s\n' "api.$ZONE A" "ui.$ZONE A" "api.$ZONE A" "ui.$ZONE A" "api.$ZONE A" "ui.$ZONE A" \
			"static.$ZONE A" "txt.$ZONE TXT" "nx-$((2 * i + 1)).$ZONE A" "nx-$((2 * i + 2)).$ZONE A"
	done >"$TMP/queries.txt"
}

# setup_coopr_gslb runs coopr-gslb as contender NAME from BIN (built from
# the repository if empty).
setup_coopr_gslb() {
	local name=$1 bin=$2
	if [[ -z $bin ]]; then
		build_gslb
		bin=$GSLB
	fi
	local dnssec=""
	if [[ $SIGNED == 1 ]]; then
		rm -f "$TMP/$name.key"
		"$bin" dnssec keygen -zone "$ZONE" -out "$TMP/$name.key" >/dev/null 2>&1 || die "$name: dnssec keygen failed"
		dnssec="  dnssec: {key_file: $TMP/$name.key}"
	fi
	cat >"$TMP/$name.yaml" <<EOF
listen:
  dns: "127.0.0.1:${PORT[$name]}"
  http: ""
  admin: ""
health:
  interval: 1s
  timeout: 800ms
datacenters:
  - name: dc1
    priority: 1
    services:
      api: {endpoints: ["$DC1"], addresses: ["192.0.2.1"]}
      ui: {endpoints: ["$DC1"], addresses: ["192.0.2.1"]}
  - name: dc2
    priority: 2
    services:
      api: {endpoints: ["$DC2"], addresses: ["192.0.2.2"]}
      ui: {endpoints: ["$DC2"], addresses: ["192.0.2.2"]}
services:
  api: {hostnames: ["api.$ZONE"], dns_ttl: 20}
  ui: {hostnames: ["ui.$ZONE"], dns_ttl: 20}
dns:
  zone: $ZONE
  nameservers: {ns1.$ZONE: ["127.0.0.1"]}
  # DNS Cookies are on (the default; dnsperf sends none). Nothing newer than
  # BASE_BIN understands is written here, so older builds still run.
  soa: {mname: ns1.$ZONE, rname: hostmaster@example.com, negative_ttl: 60s}
  records:
    - 'static 300 IN A 192.0.2.10'
    - 'txt 300 IN TXT "static record"'
$dnssec
EOF
	start "$name" "$bin" run -config "$TMP/$name.yaml"
}

# setup_pdns runs PowerDNS with LUA records in the given mode (yes|shared).
# ifurlextup answers an address while a different URL (the DC's /status) is
# up; ifurlup would probe the answer address itself.
setup_pdns() {
	local name=$1 mode=$2 dir=$TMP/$1
	mkdir -p "$dir"
	{
		zone_common
		for svc in api ui; do
			echo "$svc 20 IN LUA A \"ifurlextup({{['192.0.2.1']='http://$DC1/status'}, {['192.0.2.2']='http://$DC2/status'}})\""
		done
	} >"$dir/zone"
	echo "zone \"$ZONE\" { type master; file \"$dir/zone\"; };" >"$dir/named.conf"
	cat >"$dir/pdns.conf" <<EOF
launch=bind
bind-config=$dir/named.conf
local-address=127.0.0.1
local-port=${PORT[$name]}
socket-dir=$dir
guardian=no
daemon=no
disable-syslog=yes
loglevel=4
security-poll-suffix=
enable-lua-records=$mode
lua-health-checks-interval=1
receiver-threads=2
reuseport=yes
EOF
	if [[ $SIGNED == 1 ]]; then
		# Live signing: the bind backend keeps its keys in a sqlite DB.
		echo "bind-dnssec-db=$dir/dnssec.db" >>"$dir/pdns.conf"
		pdnsutil --config-dir="$dir" create-bind-db "$dir/dnssec.db" >>"$TMP/$name.log" 2>&1 || die "$name: pdnsutil create-bind-db failed"
		pdnsutil --config-dir="$dir" secure-zone "$ZONE" >>"$TMP/$name.log" 2>&1 || die "$name: pdnsutil secure-zone failed"
	fi
	start "$name" pdns_server --config-dir="$dir"
}

# setup_gdnsd runs gdnsd: metafo fails over from dc1 to dc2, each DC a
# multifo whose health comes from extmon running curl against the DC's
# /status (http_status would probe the answer address itself).
setup_gdnsd() {
	local dir=$TMP/gdnsd dc addr
	mkdir -p "$dir/zones"
	{
		zone_common
		echo "api 20 DYNA metafo!api"
		echo "ui 20 DYNA metafo!ui"
	} >"$dir/zones/$ZONE"
	{
		echo "options => { listen => [ 127.0.0.1:${PORT[gdnsd]} ], run_dir => $dir/run, state_dir => $dir/state }"
		echo "service_types => {"
		for dc in dc1 dc2; do
			addr=$DC1
			[[ $dc == dc2 ]] && addr=$DC2
			echo "  ${dc}_status => { plugin => extmon, cmd => [ \"$(command -v curl)\", \"-fsS\", \"-m\", \"1\", \"-o\", \"/dev/null\", \"http://$addr/status\" ], interval => 2, timeout => 1, up_thresh => 3, ok_thresh => 3, down_thresh => 3 }"
		done
		echo "}"
		echo "plugins => { metafo => { resources => {"
		for svc in api ui; do
			echo "  $svc => { datacenters => [ dc1, dc2 ], dcmap => {"
			echo "    dc1 => { lb1 => 192.0.2.1, service_types => [ dc1_status ] }"
			echo "    dc2 => { lb1 => 192.0.2.2, service_types => [ dc2_status ] }"
			echo "  } }"
		done
		echo "} } }"
	} >"$dir/config"
	start gdnsd gdnsd -c "$dir" start
}

setup_knot() {
	local dir=$TMP/knot
	mkdir -p "$dir/db"
	{
		zone_common
		echo "api 20 IN A 192.0.2.1"
		echo "ui 20 IN A 192.0.2.1"
	} >"$dir/$ZONE.zone"
	cat >"$dir/knot.conf" <<EOF
server:
    listen: 127.0.0.1@${PORT[knot]}
    rundir: $dir
log:
  - target: stderr
    any: warning
database:
    storage: $dir/db
template:
  - id: default
    storage: $dir
zone:
  - domain: $ZONE
    file: $ZONE.zone
EOF
	if [[ $SIGNED == 1 ]]; then
		echo "    dnssec-signing: on" >>"$dir/knot.conf"
	fi
	start knot knotd -c "$dir/knot.conf"
}

# ready waits until a contender answers every kind of query as it should.
ready() {
	local name=$1 port=${PORT[$1]} deadline=$((SECONDS + 20)) api static nx
	while ((SECONDS < deadline)); do
		api=$(kdig -p "$port" @127.0.0.1 +short +time=1 +retry=0 "api.$ZONE" A 2>/dev/null || true)
		static=$(kdig -p "$port" @127.0.0.1 +short +time=1 +retry=0 "static.$ZONE" A 2>/dev/null || true)
		nx=$(kdig -p "$port" @127.0.0.1 +time=1 +retry=0 "nx-1.$ZONE" A 2>/dev/null | grep -o 'status: [A-Z]*' || true)
		if [[ $api == 192.0.2.1 && $static == 192.0.2.10 && $nx == "status: NXDOMAIN" ]]; then
			# Signed mode: a DO answer must carry its RRSIG.
			if [[ $SIGNED != 1 ]] || kdig -p "$port" @127.0.0.1 +dnssec +time=1 +retry=0 "api.$ZONE" A 2>/dev/null | grep -q RRSIG; then
				return 0
			fi
		fi
		sleep 0.5
	done
	log "$name is not answering correctly on port $port (api=${api:-none} static=${static:-none} nx=${nx:-none}); see $TMP/$name.log:"
	show_log "$name"
	return 1
}

# measure prints the q/s dnsperf reaches against a contender.
measure() {
	local name=$1 out=$TMP/dnsperf-$1-$2.txt dnssec_ok=()
	[[ $SIGNED == 1 ]] && dnssec_ok=(-D)
	dnsperf -s 127.0.0.1 -p "${PORT[$name]}" -d "$TMP/queries.txt" -c "$CLIENTS" -l "$DURATION" -Q 1000000 "${dnssec_ok[@]}" >"$out" 2>&1 || true
	awk '/Queries per second:/ { printf "%.0f", $4; found = 1 } END { if (!found) printf "0" }' "$out"
}

main() {
	command -v go >/dev/null || die "go is required to build coopr-gslb"
	install_packages
	write_queries
	build simdcs ./bench/internal/simdcs
	start simdcs "$TMP/simdcs" -dc "dc1=$DC1" -dc "dc2=$DC2"

	local name
	for name in $CONTENDERS; do
		case $name in
		coopr-gslb) setup_coopr_gslb coopr-gslb "${GSLB_BIN:-}" ;;
		coopr-gslb-base)
			[[ -n ${BASE_BIN:-} ]] || die "coopr-gslb-base needs BASE_BIN"
			setup_coopr_gslb coopr-gslb-base "$BASE_BIN"
			;;
		pdns-lua-shared) setup_pdns "$name" shared ;;
		pdns-lua-yes) setup_pdns "$name" yes ;;
		gdnsd) setup_gdnsd ;;
		knot) setup_knot ;;
		*) die "unknown contender $name" ;;
		esac
	done
	local live=()
	keep_ready live
	[[ " ${live[*]} " == *" knot "* ]] || log "knot is not running: ratios will be empty"

	local mode=""
	[[ $SIGNED == 1 ]] && mode=" -D (DNSSEC OK on every query)"
	log "dnsperf -c $CLIENTS -l $DURATION$mode, $ROUNDS rounds of: ${live[*]} (load average $(loadavg) on $(nproc) CPUs)"
	declare -A QPS
	local round qps
	for ((round = 1; round <= ROUNDS; round++)); do
		for name in "${live[@]}"; do
			qps=$(measure "$name" "$round")
			QPS[$name,$round]=$qps
			log "round $round: $name $qps q/s (load average $(loadavg))"
		done
	done

	# The table: q/s per round with the ratio to Knot of the same round.
	local header="round" row ratio
	for name in "${live[@]}"; do header+=$(printf ' | %-24s' "$name"); done
	echo
	echo "$header"
	for ((round = 1; round <= ROUNDS; round++)); do
		row=$(printf '%-5s' "$round")
		for name in "${live[@]}"; do
			qps=${QPS[$name,$round]}
			ratio=$(ratio "$qps" "${QPS[knot,$round]:-0}")
			row+=$(printf ' | %9s q/s  x%-8s' "$qps" "$ratio")
		done
		echo "$row"
	done
	row=$(printf '%-5s' "med")
	for name in "${live[@]}"; do
		qps=$(per_round QPS "$name" | median)
		ratio=$(median_ratio QPS "$name" knot)
		row+=$(printf ' | %9.0f q/s  x%-8.2f' "$qps" "$ratio")
	done
	echo "$row"

	# Issue 7's targets compare coopr-gslb with its peers, not with Knot:
	# the median over the rounds of coopr-gslb's ratio to each in the round.
	if [[ " ${live[*]} " == *" coopr-gslb "* ]]; then
		echo
		for name in "${live[@]}"; do
			[[ $name == coopr-gslb ]] && continue
			ratio=$(median_ratio QPS coopr-gslb "$name")
			printf 'coopr-gslb / %-16s x%.2f (median of the rounds)\n' "$name" "$ratio"
		done
	fi
	echo "load average at the end: $(loadavg) on $(nproc) CPUs"
}

main "$@"
