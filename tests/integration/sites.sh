# Multi-site helpers (DESIGN §7), sourced by integration tests after lib.sh:
#
#   . "$(dirname "$0")/lib.sh"
#   . "$(dirname "$0")/sites.sh"
#   it_setup_root
#   sites_init a b c
#   site_start a && site_start b && site_start c
#   site_hsm a status
#
# Each site is one hsmd in a network namespace of its own (site_netns), joined by a veth
# pair to a bridge in the root namespace. The bridge has address $SITES_NET.254 and site
# i (1-based, in the order given to sites_init) has $SITES_NET.i; sites serve their peers
# on port $SITES_PORT. Everything else is this machine's: volumes, state dirs, sockets and
# the file:// store are plain paths in $T, and hsm reaches every site through its unix
# socket from the root namespace. Only peer traffic crosses the namespaces, so only it is
# slowed (sites_bw), delayed (SITES_DELAY_MS) or cut (site_isolate).
#
# The kernel has no netem qdisc: latency comes from delayproxy (tests/tools), one per
# ordered pair of sites X -> Y, listening on the bridge address and forwarding to Y with
# the delay both ways; X's [peer Y] url points at it. Bandwidth comes from tbf on both
# ends of each veth.
#
# Knobs (environment, read by sites_init and site_conf):
#   SITES_NET           the subnet's first three octets, e.g. 10.77.0 (default: a /24 in
#                       10.77-126.0.0 that no interface here uses, picked under a lock
#                       so that parallel runs do not collide)
#   SITES_PORT          peer port of every site (default 7443)
#   SITES_FS            ext4 | xfs (default ext4)
#   SITES_VOLSIZE       volume size as truncate(1) takes it (default 256M)
#   SITES_DELAY_MS      when set: delay proxies between every pair, with this delay
#   SITES_COST_<X>_<Y>  cost of X's [peer Y] (default 10 x Y's index); a '-' in a site
#                       name is written '_' here
#   SITES_SITE_EXTRA, SITES_VOLUME_EXTRA
#                       extra lines for [site] and [volume v] of every site;
#                       SITES_SITE_EXTRA_<X>, SITES_VOLUME_EXTRA_<X> for site X only
#   HSM_STORE=file|s3, HSM_STORE_EXTRA, HSM_CRED as for hsmd_conf (lib.sh). The file://
#                       store $T/objects is shared by every site. With s3, sites_init
#                       starts moto on the bridge address (the namespaces cannot reach
#                       127.0.0.1) unless MOTO_ENDPOINT is already set.
#
# Clean-up: sites_init adds sites_cleanup to lib.sh's IT_CLEANUP_HOOKS, so on any exit
# (end of script, failure, bail out, INT, TERM, the watchdog) every site process, every
# process in a site's namespace and every proxy is killed, and the namespaces, veths and
# bridge are deleted; lib.sh then unmounts the volumes. The proxies and hsmd also die
# with the script when it is killed with SIGKILL (parent-death signal); what such a run
# leaves in the network (namespaces, links) is removed by the next sites_init
# (sites_sweep_stale).

SITES=()                     # site names, in sites_init order
declare -gA SITE_IDX=()      # name -> index (1-based)
declare -gA SITE_PID=()      # name -> pid of its running hsmd (the supervisor)
declare -gA SITES_PROXY_PID=()  # "X>Y" -> pid of the proxy X uses to reach Y
declare -gA SITES_PROXY_PORT=() # "X>Y" -> its port on the bridge address
SITES_PROXY_PIDS=()          # every proxy started
SITES_BR=""                  # the bridge, once sites_init named it
SITES_GW=""                  # the bridge's address
SITES_MOTO=0                 # sites_init started moto
SITES_NET_PICKED=0           # sites_init chose SITES_NET (it was not set)
: "${SITES_PORT:=7443}"
: "${SITES_PROXY_BIN:=$top_builddir/tests/tools/delayproxy}" # a wrapper may stand in (valgrind)

# ---------------------------------------------------------------- names

# sites_idx NAME: the site's index; fails with a message on stderr for an unknown name.
sites_idx() {
	local i=${SITE_IDX[${1:-}]:-}
	if [ -z "$i" ]; then
		echo "sites.sh: no site '${1:-}' (sites: ${SITES[*]:-none})" >&2
		return 1
	fi
	echo "$i"
}

# site_netns NAME: the name of the site's network namespace.
site_netns() {
	sites_idx "$1" >/dev/null || return 1
	echo "hsmt-$$-$1"
}

# site_ip NAME: the site's address.
site_ip() {
	local i
	i=$(sites_idx "$1") || return 1
	echo "$SITES_NET.$i"
}

# site_vol NAME: the site's volume (mount point).
site_vol() {
	sites_idx "$1" >/dev/null || return 1
	echo "$T/vol_$1"
}

# site_conf_path NAME, site_sock NAME, site_log NAME: its config, control socket, log.
site_conf_path() { echo "$T/$1.conf"; }
site_sock() { echo "$T/$1.sock"; }
site_log() { echo "$T/$1.log"; }

# site_pid NAME: pid of the site's hsmd supervisor (empty when not running).
site_pid() {
	echo "${SITE_PID[$1]:-}"
}

# site_worker_pid NAME: the worker child of the site's supervisor (empty if none).
site_worker_pid() {
	local pid=${SITE_PID[$1]:-}
	[ -n "$pid" ] || return 0
	pgrep -P "$pid" 2>/dev/null | head -n 1
}

# The two ends of site i's veth pair: the outer one is on the bridge in the root
# namespace, the inner one in the site's namespace. At most 15 characters with any pid.
sites_veth_out() { echo "hsv$$o$1"; }
sites_veth_in() { echo "hsv$$i$1"; }

# site_peer_url X Y: the url X uses for its peer Y (through the X -> Y proxy when there
# is one).
site_peer_url() {
	local port=${SITES_PROXY_PORT["$1>$2"]:-}
	if [ -n "$port" ]; then
		echo "https://$SITES_GW:$port"
	else
		echo "https://$(site_ip "$2"):$SITES_PORT"
	fi
}

# site_proxy_pid X Y: pid of the X -> Y delay proxy (empty without SITES_DELAY_MS).
site_proxy_pid() {
	echo "${SITES_PROXY_PID["$1>$2"]:-}"
}

# ---------------------------------------------------------------- set-up

# sites_run WHAT CMD...: runs a set-up command; bails out with its output if it fails.
sites_run() {
	local what=$1 out
	shift
	out=$("$@" 2>&1) || bail_out "sites_init: $what failed: $* ($(printf '%s' "$out" | tr '\n' ' ' | head -c 300))"
}

# sites_sweep_stale: deletes the namespaces, veths and bridges that sites.sh made for a
# script that no longer runs (one killed with SIGKILL has no clean-up), and kills what
# still runs in those namespaces. Names carry the pid of the script that made them.
sites_sweep_stale() {
	local ns pid p l
	for ns in $(ip netns list 2>/dev/null | awk '$1 ~ /^hsmt-[0-9]+-/ { print $1 }'); do
		pid=${ns#hsmt-}
		pid=${pid%%-*}
		kill -0 "$pid" 2>/dev/null && continue
		for p in $(ip netns pids "$ns" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null
		done
		ip netns del "$ns" 2>/dev/null
	done
	for l in $(ip -o link show 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }' |
		grep -E '^(hsmtbr[0-9]+|hsv[0-9]+o[0-9]+)$'); do
		pid=$(printf '%s\n' "$l" | sed -E 's/^(hsmtbr|hsv)([0-9]+).*/\2/')
		kill -0 "$pid" 2>/dev/null && continue
		ip link del "$l" 2>/dev/null
	done
}

# sites_net_free N: true when no interface here has an address in 10.N.0.0/24 and no
# route covers it specifically.
sites_net_free() {
	! ip -4 -o addr show 2>/dev/null | grep -q " inet 10\.$1\.0\." &&
		! ip -4 route show 2>/dev/null | grep -q "^10\.$1\.0\."
}

# sites_net_up: the bridge with its address, then per site a namespace and a veth pair.
# The subnet is picked and the bridge given its address under one lock, so parallel
# scripts never pick the same one.
sites_net_up() {
	local lock="${SITES_LOCK:-/run/lock/hsmd-it-sites.lock}" fd n i name ns vo vi start
	SITES_BR="hsmtbr$$"
	[ -d "$(dirname "$lock")" ] || lock="/tmp/hsmd-it-sites.lock"
	exec {fd}>>"$lock" || bail_out "sites_init: cannot open the lock $lock"
	flock -w 60 "$fd" || bail_out "sites_init: could not take the lock $lock within 60 s"
	sites_sweep_stale
	if [ -z "${SITES_NET:-}" ]; then
		start=$(($$ % 50))
		for ((i = 0; i < 50; i++)); do
			n=$((77 + (start + i) % 50))
			if sites_net_free "$n"; then
				SITES_NET="10.$n.0"
				SITES_NET_PICKED=1
				break
			fi
		done
		[ -n "${SITES_NET:-}" ] || bail_out "sites_init: every subnet 10.77-126.0.0/24 is in use"
	fi
	SITES_GW="$SITES_NET.254"
	sites_run "making the bridge" ip link add "$SITES_BR" type bridge
	sites_run "addressing the bridge" ip addr add "$SITES_GW/24" dev "$SITES_BR"
	flock -u "$fd"
	exec {fd}>&-
	sites_run "starting the bridge" ip link set "$SITES_BR" up
	for name in "${SITES[@]}"; do
		i=${SITE_IDX[$name]}
		ns=$(site_netns "$name")
		vo=$(sites_veth_out "$i")
		vi=$(sites_veth_in "$i")
		sites_run "making namespace $ns" ip netns add "$ns"
		sites_run "making veth $vo" ip link add "$vo" type veth peer name "$vi" netns "$ns"
		sites_run "adding $vo to the bridge" ip link set "$vo" master "$SITES_BR" up
		sites_run "addressing $name" ip -n "$ns" addr add "$SITES_NET.$i/24" dev "$vi"
		sites_run "starting $vi" ip -n "$ns" link set "$vi" up
		sites_run "starting lo in $ns" ip -n "$ns" link set lo up
	done
}

# sites_pki: the deployment CA ($T/pki/ca.crt, ca.key) and per site NAME.crt, NAME.key
# (CN = NAME; subjectAltName DNS:NAME, the site's address, the bridge address, 127.0.0.1)
# by `hsm ca`. Output in $T/pki.log.
sites_pki() {
	local dir="$T/pki" name log="$T/pki.log"
	"$HSM_BIN" ca init --dir "$dir" >>"$log" 2>&1 ||
		{ tap_diag_file "$log" 10; bail_out "sites_init: hsm ca init --dir $dir failed"; }
	for name in "${SITES[@]}"; do
		"$HSM_BIN" ca issue "$name" --dir "$dir" --host "$(site_ip "$name")" \
			--host "$SITES_GW" --host 127.0.0.1 >>"$log" 2>&1 ||
			{ tap_diag_file "$log" 10; bail_out "sites_init: hsm ca issue $name failed"; }
	done
}

# sites_proxy_start X Y: the X -> Y delay proxy on the bridge address (a port the kernel
# picks), with a flag file for site_proxy_refuse. It dies with this script.
sites_proxy_start() {
	local x=$1 y=$2 out="$T/proxy.$1-$2.out" log="$T/proxy.$1-$2.log" pid i port=""
	local pdeath=()
	command -v setpriv >/dev/null 2>&1 && pdeath=(setpriv --pdeathsig KILL)
	"${pdeath[@]}" "$SITES_PROXY_BIN" -v -d "$SITES_DELAY_MS" -r "$T/proxy.$x-$y.refuse" \
		"$SITES_GW:0" "$(site_ip "$y"):$SITES_PORT" >"$out" 2>"$log" </dev/null &
	pid=$!
	SITES_PROXY_PIDS+=("$pid")
	SITES_PROXY_PID["$x>$y"]=$pid
	for ((i = 0; i < 100; i++)); do
		port=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$out" 2>/dev/null)
		[ -n "$port" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	if [ -z "$port" ]; then
		tap_diag_file "$log" 10
		bail_out "sites_init: the $x -> $y delay proxy did not start"
	fi
	SITES_PROXY_PORT["$x>$y"]=$port
}

# sites_init NAMES...: sets up one site per name (1 to 253 of them; names as hsmd takes
# them: 1 to 32 of a-z, 0-9, '_', '-', starting with a letter; "ca" is the CA's):
# network, certificates, delay proxies
# (with SITES_DELAY_MS), moto (with HSM_STORE=s3), a volume $T/vol_NAME, and the config
# $T/NAME.conf. Does not start hsmd. Bails out when any step fails.
sites_init() {
	local name i=0 x y
	[ -n "$T" ] || bail_out "sites_init: call it_init (or it_setup_root) first"
	[ -z "$SITES_BR" ] || bail_out "sites_init: already called"
	[ $# -ge 1 ] || bail_out "sites_init: no site names"
	[ $# -le 253 ] || bail_out "sites_init: at most 253 sites"
	for x in ip tc flock; do
		command -v "$x" >/dev/null 2>&1 || skip_all "sites.sh needs $x"
	done
	if [ -n "${SITES_DELAY_MS:-}" ] && [ ! -x "$SITES_PROXY_BIN" ]; then
		bail_out "$SITES_PROXY_BIN is not built (make check builds it)"
	fi
	for name; do
		[[ $name =~ ^[a-z][a-z0-9_-]{0,31}$ ]] && [ "$name" != ca ] ||
			bail_out "sites_init: bad site name '$name' (1 to 32 of a-z, 0-9, _, -, from a letter; not ca)"
		[ -z "${SITE_IDX[$name]:-}" ] || bail_out "sites_init: site '$name' given twice"
		i=$((i + 1))
		SITE_IDX[$name]=$i
	done
	SITES=("$@")
	# Registered before anything exists, so that a bail-out half-way is undone too.
	[[ " ${IT_CLEANUP_HOOKS[*]} " == *" sites_cleanup "* ]] || IT_CLEANUP_HOOKS+=(sites_cleanup)
	sites_net_up
	sites_pki
	if [ -n "${SITES_DELAY_MS:-}" ]; then
		for x in "${SITES[@]}"; do
			for y in "${SITES[@]}"; do
				[ "$x" = "$y" ] || sites_proxy_start "$x" "$y"
			done
		done
	fi
	if [ "${HSM_STORE:-file}" = s3 ] && [ -z "${MOTO_ENDPOINT:-}" ]; then
		declare -F moto_start >/dev/null || . "$top_srcdir/tests/integration/moto.sh"
		moto_start "$T/moto" "$SITES_GW" >"$T/moto-start.log" 2>&1 ||
			{ tap_diag_file "$T/moto-start.log" 10; bail_out "sites_init: moto_start failed"; }
		SITES_MOTO=1
	fi
	for name in "${SITES[@]}"; do
		mkvol "vol_$name" "${SITES_FS:-ext4}" "${SITES_VOLSIZE:-256M}"
		site_conf "$name"
	done
}

# sites_extra VAR NAME: the lines of $VAR and of ${VAR}_NAME ('-' in NAME as '_').
sites_extra() {
	local all=${!1:-} v="${1}_${2//-/_}"
	[ -n "$all" ] && printf '%s\n' "$all"
	[ -n "${!v:-}" ] && printf '%s\n' "${!v}"
	return 0
}

# site_conf NAME: writes $T/NAME.conf from the knobs above (call it again after changing
# them; a running hsmd reads it when it starts).
site_conf() {
	local name=$1 other j cost var peers=""
	sites_idx "$name" >/dev/null || return 1
	{
		echo "[site]"
		echo "name = $name"
		echo "state_dir = $T/state_$name"
		echo "socket = $(site_sock "$name")"
		echo "log_level = debug"
		echo "listen = $(site_ip "$name"):$SITES_PORT"
		echo "tls_ca = $T/pki/ca.crt"
		echo "tls_cert = $T/pki/$name.crt"
		echo "tls_key = $T/pki/$name.key"
		sites_extra SITES_SITE_EXTRA "$name"
		echo
		echo "[store]"
		if [ "${HSM_STORE:-file}" = s3 ]; then
			echo "url = s3://$MOTO_BUCKET"
			echo "endpoint = $MOTO_ENDPOINT"
			echo "region = us-east-1"
			echo "credentials = ${HSM_CRED:-$MOTO_CRED}"
		else
			echo "url = file://$T/objects"
		fi
		[ -n "${HSM_STORE_EXTRA:-}" ] && printf '%s\n' "$HSM_STORE_EXTRA"
		for other in "${SITES[@]}"; do
			[ "$other" = "$name" ] && continue
			j=${SITE_IDX[$other]}
			var="SITES_COST_${name//-/_}_${other//-/_}"
			cost=${!var:-$((10 * j))}
			echo
			echo "[peer $other]"
			echo "url = $(site_peer_url "$name" "$other")"
			echo "cost = $cost"
			peers+="${peers:+,}$other"
		done
		echo
		echo "[volume v]"
		echo "path = $(site_vol "$name")"
		echo "peers = $peers"
		sites_extra SITES_VOLUME_EXTRA "$name"
	} >"$(site_conf_path "$name")"
}

# ---------------------------------------------------------------- hsmd per site

# site_start NAME: starts the site's hsmd -f in its namespace, output appended to
# $T/NAME.log; waits up to 10 s for its socket and a successful `hsm status`. Returns 1
# (with diagnostics) if it does not come up.
site_start() {
	local name=$1 ns conf sock log pid i pdeath=()
	ns=$(site_netns "$name") || return 1
	conf=$(site_conf_path "$name")
	sock=$(site_sock "$name")
	log=$(site_log "$name")
	if [ -n "${SITE_PID[$name]:-}" ]; then
		tap_diag "site_start $name: already running (pid ${SITE_PID[$name]})"
		return 1
	fi
	# hsmd dies with this script even when the script is killed with SIGKILL.
	command -v setpriv >/dev/null 2>&1 && pdeath=(setpriv --pdeathsig KILL)
	echo "=== $(date +%T.%N) site $name start: $conf" >>"$log"
	rm -f "$sock"
	# ip netns exec and setpriv exec: $! is hsmd's own pid.
	ip netns exec "$ns" "${pdeath[@]}" "$HSMD_BIN" -c "$conf" -f >>"$log" 2>&1 </dev/null &
	pid=$!
	SITE_PID[$name]=$pid
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$pid" 2>/dev/null; then
			wait "$pid" 2>/dev/null
			tap_diag "site $name: hsmd exited during start-up (status $?)"
			tap_diag_file "$log" 20
			SITE_PID[$name]=""
			return 1
		fi
		if [ -S "$sock" ] && timeout 5 "$HSM_BIN" -s "$sock" status >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	tap_diag "site $name: hsmd did not answer 'hsm status' within 10 s"
	tap_diag_file "$log" 20
	return 1
}

# site_stop NAME: SIGTERM, up to 10 s, then SIGKILL of the supervisor and its children.
# Returns 0 when it exited by itself after SIGTERM with status 0.
site_stop() {
	local name=$1 pid kids i rc=0 st
	pid=${SITE_PID[$name]:-}
	[ -n "$pid" ] || return 0
	kids=$(pgrep -P "$pid" 2>/dev/null)
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		tap_diag "site $name: hsmd (pid $pid) ignored SIGTERM for 10 s: killed"
		kill -KILL "$pid" 2>/dev/null
		rc=1
	fi
	wait "$pid" 2>/dev/null
	st=$?
	[ "$rc" -eq 0 ] && [ "$st" -ne 0 ] && { tap_diag "site $name: hsmd exited with status $st"; rc=1; }
	for i in $kids; do
		kill -KILL "$i" 2>/dev/null
	done
	echo "=== $(date +%T.%N) site $name stopped (pid $pid)" >>"$(site_log "$name")"
	SITE_PID[$name]=""
	return $rc
}

# site_kill NAME: SIGKILL of the site's supervisor and its worker at once (a crash).
site_kill() {
	local name=$1 pid kids p
	pid=${SITE_PID[$name]:-}
	[ -n "$pid" ] || return 0
	kids=$(pgrep -P "$pid" 2>/dev/null)
	kill -KILL "$pid" $kids 2>/dev/null
	wait "$pid" 2>/dev/null
	for p in $kids; do
		while kill -0 "$p" 2>/dev/null; do
			sleep 0.05
		done
	done
	echo "=== $(date +%T.%N) site $name killed (pid $pid $kids)" >>"$(site_log "$name")"
	SITE_PID[$name]=""
	return 0
}

# site_hsm NAME ARGS...: the CLI against that site, bounded in time like hsm().
site_hsm() {
	local name=$1
	shift
	VT=${HSM_TIMEOUT:-120} vt "$HSM_BIN" -s "$(site_sock "$name")" "$@"
}

# site_state SITE FILE [KEY]: a field (default state) of `hsm state` of FILE at SITE,
# or "error: ..." when the request failed.
site_state() {
	local out s
	out=$(site_hsm "$1" state --json "$2" 2>&1)
	s=$(printf '%s\n' "$out" | json_get "${3:-state}" item)
	[ -n "$s" ] && echo "$s" || echo "error: $(printf '%s' "$out" | tr '\n' ' ' | head -c 200)"
}

# ---------------------------------------------------------------- the network

# sites_rate_bits RATE: RATE (N followed by bit, kbit, mbit or gbit, as tc takes it) in
# bits per second.
sites_rate_bits() {
	[[ $1 =~ ^([0-9]+)(bit|kbit|mbit|gbit)$ ]] || return 1
	case ${BASH_REMATCH[2]} in
	bit) echo "${BASH_REMATCH[1]}" ;;
	kbit) echo $((BASH_REMATCH[1] * 1000)) ;;
	mbit) echo $((BASH_REMATCH[1] * 1000000)) ;;
	gbit) echo $((BASH_REMATCH[1] * 1000000000)) ;;
	esac
}

# site_bw NAME RATE|off: limits the site's traffic to RATE each way with tbf on both
# ends of its veth (the outer end's queue holds what goes to the site, the inner end's
# what leaves it); off removes the limit.
site_bw() {
	local name=$1 rate=$2 i ns vo vi bits burst
	i=$(sites_idx "$name") || return 1
	ns=$(site_netns "$name")
	vo=$(sites_veth_out "$i")
	vi=$(sites_veth_in "$i")
	if [ "$rate" = off ]; then
		tc qdisc del dev "$vo" root 2>/dev/null
		tc -n "$ns" qdisc del dev "$vi" root 2>/dev/null
		return 0
	fi
	bits=$(sites_rate_bits "$rate") || { echo "site_bw: bad rate '$rate'" >&2; return 2; }
	# 10 ms worth of bytes: enough for a 64 KiB GSO packet at 100mbit, small enough that
	# a transfer of a few seconds sees the rate and not the burst.
	burst=$((bits / 8 / 100))
	[ "$burst" -ge 16384 ] || burst=16384
	tc qdisc replace dev "$vo" root tbf rate "$rate" burst "$burst" latency 50ms &&
		tc -n "$ns" qdisc replace dev "$vi" root tbf rate "$rate" burst "$burst" latency 50ms
}

# sites_bw RATE|off: site_bw on every site (e.g. sites_bw 100mbit).
sites_bw() {
	local name rc=0
	for name in "${SITES[@]}"; do
		site_bw "$name" "$1" || rc=1
	done
	return $rc
}

# site_isolate NAME: cuts the site off (a WAN cut): the outer end of its veth goes down,
# so nothing passes either way; the site's own address stays up and connections stall
# rather than fail at once.
site_isolate() {
	local i
	i=$(sites_idx "$1") || return 1
	ip link set "$(sites_veth_out "$i")" down
}

# site_reconnect NAME: undoes site_isolate.
site_reconnect() {
	local i
	i=$(sites_idx "$1") || return 1
	ip link set "$(sites_veth_out "$i")" up
}

# site_proxy_refuse X Y on|off: while on, the X -> Y proxy resets new connections and
# open ones at their next bytes (a peer dying mid-transfer). Needs SITES_DELAY_MS.
site_proxy_refuse() {
	local flag="$T/proxy.$1-$2.refuse"
	[ -n "${SITES_PROXY_PID["$1>$2"]:-}" ] || { echo "site_proxy_refuse: no $1 -> $2 proxy" >&2; return 1; }
	case "$3" in
	on) : >"$flag" ;;
	off) rm -f "$flag" ;;
	*) echo "site_proxy_refuse: on or off" >&2; return 2 ;;
	esac
}

# ---------------------------------------------------------------- clean-up

# sites_alive PID: the process exists and has not exited (a zombie waiting for its
# parent's wait counts as exited; kill -0 does not know the difference).
sites_alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$st" ] && [ "${st%% *}" != Z ] && [ "${st%% *}" != X ]
}

# sites_cleanup: kills every site's hsmd (and anything else running in a site's
# namespace) and every proxy, deletes the veths, namespaces and bridge. Runs from
# lib.sh's cleanup (IT_CLEANUP_HOOKS); a test may call it earlier. Volumes are left to
# lib.sh. Shows the end of each site's log when a test failed.
sites_cleanup() {
	local name pid p i ns pids=() left
	[ -n "$SITES_BR" ] || return 0
	if [ "${TAP_FAILED:-0}" -gt 0 ]; then
		for name in "${SITES[@]}"; do
			[ -s "$(site_log "$name")" ] || continue
			echo "# ---- last lines of $name.log ----"
			tail -n "${HSM_IT_LOG_LINES:-60}" "$(site_log "$name")" | cut -c1-400 | sed 's/^/# /'
		done
	fi
	for name in "${SITES[@]}"; do
		pid=${SITE_PID[$name]:-}
		[ -n "$pid" ] || continue
		kill -KILL $(pgrep -P "$pid" 2>/dev/null) "$pid" 2>/dev/null
		pids+=("$pid")
	done
	# A proxy exits 0 on SIGTERM: no "Killed" notice from bash for each of them.
	for pid in "${SITES_PROXY_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
		pids+=("$pid")
	done
	for pid in "${SITES_PROXY_PIDS[@]}"; do
		for ((i = 0; i < 20; i++)); do
			sites_alive "$pid" || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		{ wait "$pid"; } 2>/dev/null
	done
	# Workers, helpers a test started with ip netns exec, orphans: whatever is left.
	for name in "${SITES[@]}"; do
		ns=$(site_netns "$name")
		for ((i = 0; i < 50; i++)); do
			left=$(ip netns pids "$ns" 2>/dev/null)
			[ -n "$left" ] || break
			kill -KILL $left 2>/dev/null
			sleep 0.1
		done
		[ -z "$left" ] || echo "# sites_cleanup: processes $left in $ns would not die"
	done
	# Deleting one end of a veth pair deletes both at once; deleting the namespace
	# would leave that to the kernel, later.
	for name in "${SITES[@]}"; do
		ip link del "$(sites_veth_out "${SITE_IDX[$name]}")" 2>/dev/null
		ip netns del "$(site_netns "$name")" 2>/dev/null
	done
	ip link del "$SITES_BR" 2>/dev/null
	# moto listened on the bridge address, which is gone.
	if [ "$SITES_MOTO" -eq 1 ]; then
		moto_stop >/dev/null 2>&1
		unset MOTO_ENDPOINT
		SITES_MOTO=0
	fi
	# sites_init may be called again.
	[ "$SITES_NET_PICKED" -eq 1 ] && SITES_NET=""
	SITES=()
	SITE_IDX=()
	SITE_PID=()
	SITES_PROXY_PIDS=()
	SITES_PROXY_PID=()
	SITES_PROXY_PORT=()
	SITES_BR=""
	SITES_GW=""
	SITES_NET_PICKED=0
	return 0
}
