#!/bin/bash
# The multi-site harness itself (sites.sh and tests/tools/delayproxy), without hsmd:
#  - sites_init makes one namespace, address, volume and config per site, certificates
#    that verify against the CA, and mutual TLS works between two sites;
#  - every site reaches every other one directly, and through each delay proxy it
#    reaches the right site;
#  - delayproxy -d 50 adds at least 100 ms to a round trip (and not much more) compared
#    with -d 0, passes 10 MB both ways byte-identical with a half-close, carries 100
#    connections at once, resets connections while its -r flag file exists, resets a
#    client whose target is down, and exits 0 on SIGTERM;
#  - sites_bw 100mbit puts a tbf on the path into and out of a site that shapes a
#    transfer and never lets it run faster than 100 Mbit/s plus one burst;
#  - site_isolate cuts a site off both ways, site_reconnect brings it back;
#  - sites_cleanup leaves no namespace, link or process; a script that bails out or is
#    terminated leaves nothing at all (mounts, loop devices, temp dir included); one
#    killed with SIGKILL leaves no process, and the next sweep removes its namespaces
#    and links.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sites.sh"
skip_unless_root
command -v openssl >/dev/null 2>&1 || skip_all "needs the openssl command"
it_init
[ -x "$SITES_PROXY_BIN" ] || bail_out "$SITES_PROXY_BIN is not built (make check builds it)"
# The interpreter itself: a version manager's python3 shim costs a few tenths of a second
# per start, and this script starts python a hundred times.
PY=$(python3 -c 'import sys; print(sys.executable)') || bail_out "python3 does not run"

# nettool.py: the TCP ends of the tests. "serve ADDR PORT NAME" answers, per
# connection, a first line "ping" (with "pong NAME", repeatedly), "echo" (the rest of
# the stream back, then FIN after the client's FIN) or "sink" (reads to the client's
# FIN, answers "BYTES SHA256"). The client verbs print one line:
#   rtt HOST PORT N            "NAME MS": the fastest of N ping round trips
#   echo HOST PORT FILE        "BYTES SHA256" of what came back
#   sink HOST PORT BYTES       "MBIT/S SECONDS" of sending BYTES (to the answer)
#   conc HOST PORT N BYTES     how many of N parallel sinks got BYTES intact
#   probe HOST PORT SECONDS    "pong NAME" or the error; exit 0 on pong
cat >"$T/nettool.py" <<'EOF'
import hashlib, os, socket, sys, threading, time

def serve(addr, port, name):
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, int(port)))
    ls.listen(256)
    print("ready", flush=True)

    def conn(s):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        f = s.makefile("rb")
        try:
            while True:
                cmd = f.readline().strip()
                if cmd == b"ping":
                    s.sendall(b"pong " + name.encode() + b"\n")
                    continue
                if cmd == b"echo":
                    while True:
                        b = f.read1(65536)
                        if not b:
                            break
                        s.sendall(b)
                elif cmd == b"sink":
                    h, n = hashlib.sha256(), 0
                    while True:
                        b = f.read1(1 << 20)
                        if not b:
                            break
                        h.update(b)
                        n += len(b)
                    s.sendall(b"%d %s\n" % (n, h.hexdigest().encode()))
                break
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            f.close()
            s.close()

    while True:
        s, _ = ls.accept()
        threading.Thread(target=conn, args=(s,), daemon=True).start()

def connect(host, port, timeout):
    s = socket.create_connection((host, int(port)), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s

def rtt(host, port, n):
    s = connect(host, port, 10)
    f = s.makefile("rb")
    best, who = None, ""
    for _ in range(int(n)):
        t = time.monotonic()
        s.sendall(b"ping\n")
        line = f.readline()
        d = time.monotonic() - t
        if not line.startswith(b"pong "):
            sys.exit("rtt: answer %r" % line)
        who = line.split()[1].decode()
        best = d if best is None else min(best, d)
    print("%s %.1f" % (who, best * 1000))

def echo(host, port, path):
    s = connect(host, port, 60)
    h, n = hashlib.sha256(), 0

    def send():
        s.sendall(b"echo\n")
        with open(path, "rb") as fh:
            while True:
                b = fh.read(1 << 16)
                if not b:
                    break
                s.sendall(b)
        s.shutdown(socket.SHUT_WR)

    th = threading.Thread(target=send)
    th.start()
    while True:
        b = s.recv(1 << 16)
        if not b:
            break
        h.update(b)
        n += len(b)
    th.join()
    print("%d %s" % (n, h.hexdigest()))

def sink(host, port, nbytes):
    nbytes = int(nbytes)
    s = connect(host, port, 60)
    buf = os.urandom(1 << 20)
    t = time.monotonic()
    s.sendall(b"sink\n")
    left = nbytes
    while left > 0:
        k = min(left, len(buf))
        s.sendall(buf[:k])
        left -= k
    s.shutdown(socket.SHUT_WR)
    line = s.makefile("rb").readline()
    d = time.monotonic() - t
    if not line or int(line.split()[0]) != nbytes:
        sys.exit("sink: %d bytes sent, answer %r" % (nbytes, line))
    print("%.1f %.4f" % (nbytes * 8 / d / 1e6, d))

def conc(host, port, count, size):
    data = os.urandom(int(size))
    want = hashlib.sha256(data).hexdigest()
    good = []

    def one():
        try:
            s = connect(host, port, 60)
            s.sendall(b"sink\n" + data)
            s.shutdown(socket.SHUT_WR)
            line = s.makefile("rb").readline().split()
            if len(line) == 2 and line[1].decode() == want:
                good.append(1)
            s.close()
        except OSError as e:
            print("conc: %s" % e, file=sys.stderr)

    ths = [threading.Thread(target=one) for _ in range(int(count))]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    print(len(good))

def probe(host, port, timeout):
    try:
        s = connect(host, port, float(timeout))
        s.sendall(b"ping\n")
        line = s.makefile("rb").readline().decode().strip()
        print(line or "no answer")
        sys.exit(0 if line.startswith("pong ") else 1)
    except OSError as e:
        print("%s:%s: %s" % (host, port, e))
        sys.exit(1)

{"serve": serve, "rtt": rtt, "echo": echo, "sink": sink, "conc": conc,
 "probe": probe}[sys.argv[1]](*sys.argv[2:])
EOF

# nt SITE|root VERB ARGS...: nettool.py in SITE's namespace (root: this one), bounded.
nt() {
	local where=$1
	shift
	if [ "$where" = root ]; then
		timeout -k 5 60 "$PY" "$T/nettool.py" "$@"
	else
		timeout -k 5 60 ip netns exec "$(site_netns "$where")" "$PY" "$T/nettool.py" "$@"
	fi
}

# nt_serve SITE|root ADDR PORT NAME: a nettool server in the background; waits for it.
# Not a job of this shell (so no "Killed" notice when clean-up kills it): tracked by pid.
nt_serve() {
	local where=$1 out="$T/serve.$1.$3" i pid
	shift
	if [ "$where" = root ]; then
		("$PY" "$T/nettool.py" serve "$@" >"$out" 2>&1 </dev/null & echo $! >"$out.pid")
	else
		(ip netns exec "$(site_netns "$where")" "$PY" "$T/nettool.py" serve "$@" \
			>"$out" 2>&1 </dev/null & echo $! >"$out.pid")
	fi
	pid=$(cat "$out.pid")
	track "$pid"
	for ((i = 0; i < 100; i++)); do
		grep -q '^ready' "$out" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	tap_diag "nettool server $where $*:"
	tap_diag_file "$out" 5
	return 1
}

# proxy_start NAME ARGS...: a delayproxy of this script's own (not one of sites.sh's);
# sets PROXY_PID and PROXY_PORT.
proxy_start() {
	local name=$1 i
	shift
	"$SITES_PROXY_BIN" "$@" >"$T/$name.out" 2>"$T/$name.log" </dev/null &
	PROXY_PID=$!
	track "$PROXY_PID"
	PROXY_PORT=""
	for ((i = 0; i < 100; i++)); do
		PROXY_PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' "$T/$name.out" 2>/dev/null)
		[ -n "$PROXY_PORT" ] && return 0
		kill -0 "$PROXY_PID" 2>/dev/null || break
		sleep 0.05
	done
	tap_diag_file "$T/$name.log" 5
	return 1
}

# ---------------------------------------------------------------- set-up

SITES_DELAY_MS=50 SITES_VOLSIZE=64M sites_init a b c
tap_ok "sites_init a b c (subnet $SITES_NET.0/24)"
NS_A=$(site_netns a)
ns_list=$(ip netns list | awk '{ print $1 }' | grep "^hsmt-$$-" | sort | tr '\n' ' ')
is "$ns_list" "hsmt-$$-a hsmt-$$-b hsmt-$$-c " "one network namespace per site"
is "$(ip -n "$NS_A" -4 -o addr show | awk '{ print $4 }' | sort | tr '\n' ' ')" \
	"$SITES_NET.1/24 127.0.0.1/8 " "site a has $SITES_NET.1 and a loopback"
is "$(ip -4 -o addr show dev "$SITES_BR" | awk '{ print $4 }')" "$SITES_GW/24" \
	"the bridge has $SITES_GW"
ok 'mountpoint -q "$(site_vol a)" && mountpoint -q "$(site_vol b)" && mountpoint -q "$(site_vol c)"' \
	"every site's volume is mounted"

conf=$(cat "$T/a.conf")
like "$conf" "^listen = $SITES_NET\.1:7443$" "a.conf: listen on a's address"
like "$conf" "\[peer b\]
url = https://$SITES_GW:${SITES_PROXY_PORT[a>b]}
cost = 20" "a.conf: peer b through the a -> b proxy, cost 20"
like "$conf" "\[volume v\]
path = $T/vol_a
peers = b,c$" "a.conf: volume v shared with b and c"
SITES_COST_a_c=5 SITES_VOLUME_EXTRA="recall = access" site_conf a
conf=$(cat "$T/a.conf")
like "$conf" "\[peer c\]
url = https://[0-9.:]+
cost = 5" "site_conf: SITES_COST_a_c overrides the cost"
like "$conf" "peers = b,c
recall = access$" "site_conf: SITES_VOLUME_EXTRA lands in [volume v]"

# ---------------------------------------------------------------- certificates

bad=""
for s in a b c; do
	out=$(openssl verify -CAfile "$T/pki/ca.crt" "$T/pki/$s.crt" 2>&1) || bad+="$out; "
	out=$(openssl x509 -in "$T/pki/$s.crt" -noout -subject 2>&1)
	[ "$out" = "subject=CN = $s" ] || bad+="$s.crt: $out; "
	san=$(openssl x509 -in "$T/pki/$s.crt" -noout -ext subjectAltName 2>&1)
	for want in "IP Address:$(site_ip "$s")" "IP Address:$SITES_GW" "IP Address:127.0.0.1"; do
		[[ $san == *"$want"* ]] || bad+="$s.crt lacks $want; "
	done
	[ "$(stat -c %a "$T/pki/$s.key")" = 600 ] || bad+="$s.key mode $(stat -c %a "$T/pki/$s.key"); "
done
ok '[ -z "$bad" ]' "hsm ca made the certificates: openssl verify -CAfile ca.crt passes, CN = site, addresses in subjectAltName, keys 0600" \
	"$bad"

# Mutual TLS 1.3 from a to b, as the peers will talk: each side checks the other.
ip netns exec "$(site_netns b)" timeout 20 openssl s_server -tls1_3 -naccept 1 \
	-accept "$(site_ip b):7444" -cert "$T/pki/b.crt" -key "$T/pki/b.key" \
	-CAfile "$T/pki/ca.crt" -Verify 1 -verify_return_error -www >"$T/s_server.out" 2>&1 </dev/null &
srv=$!
for ((i = 0; i < 50; i++)); do
	grep -q ACCEPT "$T/s_server.out" 2>/dev/null && break
	sleep 0.1
done
printf 'GET / HTTP/1.0\r\n\r\n' | ip netns exec "$NS_A" timeout 20 openssl s_client -tls1_3 \
	-connect "$(site_ip b):7444" -CAfile "$T/pki/ca.crt" -cert "$T/pki/a.crt" \
	-key "$T/pki/a.key" -verify_ip "$(site_ip b)" -verify_return_error >"$T/s_client.out" 2>&1
rc=$?
wait "$srv"
src=$?
ok '[ "$rc" -eq 0 ] && [ "$src" -eq 0 ] && grep -q "^Verification: OK" "$T/s_client.out" &&
	grep -q "^depth=0 CN = a" "$T/s_server.out" && grep -q "1 server accepts that finished" "$T/s_server.out"' \
	"mutual TLS 1.3 from a to b: both certificates verify (client $rc, server $src)" \
	"$(tail -n 5 "$T/s_client.out")" "$(tail -n 5 "$T/s_server.out")"

# ---------------------------------------------------------------- reachability

for s in a b c; do
	nt_serve "$s" "$(site_ip "$s")" 7443 "$s" || bail_out "nettool server in site $s"
done
nt_serve root "$SITES_GW" 7500 root || bail_out "nettool server on the bridge"

bad=""
for x in a b c; do
	for y in a b c root; do
		[ "$x" = "$y" ] && continue
		if [ "$y" = root ]; then
			out=$(nt "$x" probe "$SITES_GW" 7500 3)
		else
			out=$(nt "$x" probe "$(site_ip "$y")" 7443 3)
		fi
		[ "$out" = "pong $y" ] || bad+="$x -> $y: $out; "
	done
done
ok '[ -z "$bad" ]' "every site reaches every other site and the bridge address directly" "$bad"

bad=""
for x in a b c; do
	for y in a b c; do
		[ "$x" = "$y" ] && continue
		out=$(nt "$x" probe "$SITES_GW" "${SITES_PROXY_PORT[$x>$y]}" 3)
		[ "$out" = "pong $y" ] || bad+="$x -> $y: $out; "
	done
done
ok '[ -z "$bad" ]' "through the X -> Y proxy every site X reaches site Y" "$bad"

# ---------------------------------------------------------------- delay proxy

proxy_start proxy0 -d 0 "$SITES_GW:0" "$(site_ip b):7443" || bail_out "delayproxy -d 0 did not start"
P0_PID=$PROXY_PID
P0_PORT=$PROXY_PORT
direct=$(nt a rtt "$(site_ip b)" 7443 10)
d0=$(nt a rtt "$SITES_GW" "$P0_PORT" 10)
d50=$(nt a rtt "$SITES_GW" "${SITES_PROXY_PORT[a>b]}" 10)
tap_diag "round trip a -> b: direct ${direct#* } ms, proxy -d 0 ${d0#* } ms, proxy -d 50 ${d50#* } ms"
ok 'awk -v a="${d0#* }" -v b="${d50#* }" "BEGIN { exit !(b - a >= 100 && b - a < 160) }"' \
	"delayproxy -d 50 adds 100 ms (less than 160) to a round trip (${d0#* } -> ${d50#* } ms)"

head -c 10M /dev/urandom >"$T/ten"
want="10485760 $(sha256sum "$T/ten" | cut -d' ' -f1)"
is "$(nt a echo "$SITES_GW" "${SITES_PROXY_PORT[a>b]}" "$T/ten" 2>&1)" "$want" \
	"10 MB through the -d 50 proxy and back arrive byte-identical (half-close passed on)"
is "$(nt a echo "$SITES_GW" "$P0_PORT" "$T/ten" 2>&1)" "$want" \
	"10 MB through the -d 0 proxy and back arrive byte-identical"
rm -f "$T/ten"
is "$(nt a conc "$SITES_GW" "${SITES_PROXY_PORT[a>b]}" 100 200000 2>&1 | tail -n 3)" 100 \
	"100 connections at once through the -d 50 proxy all arrive intact"

site_proxy_refuse a b on
like "$(nt a probe "$SITES_GW" "${SITES_PROXY_PORT[a>b]}" 3)" "reset" \
	"while its -r flag file exists the proxy resets new connections"
site_proxy_refuse a b off
is "$(nt a probe "$SITES_GW" "${SITES_PROXY_PORT[a>b]}" 3)" "pong b" \
	"once the flag file is gone the proxy passes connections again"

proxy_start proxydead -d 10 "$SITES_GW:0" "$(site_ip b):7999" || bail_out "delayproxy did not start"
like "$(nt a probe "$SITES_GW" "$PROXY_PORT" 3)" "reset" \
	"a client of a proxy whose target refuses is reset"
ok 'kill -0 "$PROXY_PID"' "and the proxy keeps running"
kill -TERM "$PROXY_PID"
wait "$PROXY_PID"
is "$?" 0 "delayproxy exits 0 on SIGTERM"

# SIGTERM while a connection is open and holding bytes
"$PY" -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
s.sendall(b"echo\n" + b"x" * 100000)
time.sleep(10)' "$SITES_GW" "$P0_PORT" >/dev/null 2>&1 &
holder=$!
track "$holder"
sleep 0.5
kill -TERM "$P0_PID"
for ((i = 0; i < 50; i++)); do
	kill -0 "$P0_PID" 2>/dev/null || break
	sleep 0.1
done
wait "$P0_PID"
is "$?" 0 "delayproxy exits 0 on SIGTERM with a connection open"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null

# ---------------------------------------------------------------- bandwidth

ok_cmd "sites_bw 100mbit" sites_bw 100mbit
bad=""
for s in a b c; do
	i=${SITE_IDX[$s]}
	tc qdisc show dev "$(sites_veth_out "$i")" | grep -q "tbf .*rate 100Mbit" || bad+="$s outer; "
	tc -n "$(site_netns "$s")" qdisc show dev "$(sites_veth_in "$i")" |
		grep -q "tbf .*rate 100Mbit" || bad+="$s inner; "
done
ok '[ -z "$bad" ]' "tbf at 100 Mbit/s on both ends of every site's veth" "$bad"
# Into a, only the outer end's queue is on the path; out of a, only the inner end's.
# The rate is judged by tbf's own accounting (tc -s) and from above only: every one of
# the 30 MB crossed that queue while the sender's clock ran, and a token bucket lets
# through at most RATE * seconds + one burst in that time; a loaded machine only makes
# the seconds longer. That the rate is not lower than asked is tbf's configuration
# (checked above); that it shaped at all is its overlimits count.
# tbf_stats NS DEV: "RATE BURST BYTES OVERLIMITS" of the tbf at the root of DEV (RATE
# in bytes/s, BURST in bytes), NS "" for this namespace.
tbf_stats() {
	tc ${1:+-n "$1"} -s -j qdisc show dev "$2" | "$PY" -c '
import json, sys
q = [q for q in json.load(sys.stdin) if q.get("kind") == "tbf" and q.get("root")][0]
print(q["options"]["rate"], q["options"]["burst"], q["bytes"], q["overlimits"])'
}
for dir in in out; do
	i=${SITE_IDX[a]}
	if [ "$dir" = in ]; then
		q=("" "$(sites_veth_out "$i")")
	else
		q=("$NS_A" "$(sites_veth_in "$i")")
	fi
	read -r qrate qburst b0 o0 < <(tbf_stats "${q[@]}")
	if [ "$dir" = in ]; then
		out=$(nt root sink "$(site_ip a)" 7443 30000000 2>&1)
	else
		out=$(nt a sink "$SITES_GW" 7500 30000000 2>&1)
	fi
	read -r _ _ b1 o1 < <(tbf_stats "${q[@]}")
	read -r rate secs <<<"$out"
	tap_diag "30 MB $dir of a: $rate Mbit/s by the sender's clock over $secs s; tbf at $qrate B/s, burst $qburst: $((b1 - b0)) bytes, $((o1 - o0)) overlimits"
	ok '[ $((b1 - b0)) -ge 30000000 ]' "30 MB $dir of site a crossed its tbf queue" \
		"$out; tbf bytes $b0 -> $b1"
	ok '[ $((o1 - o0)) -gt 0 ]' "the tbf held the 30 MB $dir of a back (overlimits $((o1 - o0)))"
	ok 'awk -v s="$secs" -v r="$qrate" -v b="$qburst" "BEGIN { exit !(s + 0 > 0 && 30000000 <= r * s + b) }"' \
		"30 MB $dir of site a at 100mbit: no faster than the rate plus one burst ($rate Mbit/s)" "$out"
done
sites_bw off
ok '! tc qdisc show dev "$(sites_veth_out 1)" | grep -q tbf && ! tc -n "$NS_A" qdisc show | grep -q tbf' \
	"sites_bw off removes the limits"

# ---------------------------------------------------------------- isolation

site_isolate a
nt a probe "$(site_ip b)" 7443 2 >"$T/iso.1" &
p1=$!
nt b probe "$(site_ip a)" 7443 2 >"$T/iso.2" &
p2=$!
nt b probe "$SITES_GW" "${SITES_PROXY_PORT[b>a]}" 2 >"$T/iso.3" &
wait $p1 $! $p2
out=$(cat "$T"/iso.*)
ok '! [[ $out == *pong* ]]' "site_isolate a: a cannot reach b, b cannot reach a, not even through a proxy" "$out"
is "$(nt b probe "$(site_ip c)" 7443 2)" "pong c" "site_isolate a: b still reaches c"
site_reconnect a
for ((i = 0; i < 20; i++)); do
	out="$(nt a probe "$(site_ip b)" 7443 2) $(nt b probe "$(site_ip a)" 7443 2)"
	[ "$out" = "pong b pong a" ] && break
	sleep 0.5
done
is "$out" "pong b pong a" "site_reconnect a: a and b reach each other again"

# ---------------------------------------------------------------- clean-up

# what_is_left PID NET_PREFIX TEMPDIR PIDS...: what a run of sites.sh left behind:
# namespaces and links named after PID, mounts and loop devices of TEMPDIR, and the
# processes of PIDS still alive.
what_is_left() {
	local pid=$1 t=$2 p left=""
	shift 2
	left+=$(ip netns list | awk -v p="hsmt-$pid-" 'index($1, p) == 1 { printf "netns %s; ", $1 }')
	left+=$(ip -o link show | awk -F': ' -v p="$pid" '$2 ~ ("^(hsmtbr|hsv)" p "(o[0-9]+)?(@|$)") { printf "link %s; ", $2 }')
	if [ -n "$t" ]; then
		left+=$(awk -v t="$t/" 'index($5, t) == 1 { printf "mount %s; ", $5 }' /proc/self/mountinfo)
		left+=$(losetup -a | grep -F "$t/" | awk -F: '{ printf "loop %s; ", $1 }')
	fi
	printf '%s%s' "$left" "$(alive_of "$@")"
}

# alive_of PIDS...: those of PIDS still running, with their command lines.
alive_of() {
	local p
	for p; do
		sites_alive "$p" && printf 'process %s (%s); ' "$p" "$(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-80)"
	done
}

pids=("${SITES_PROXY_PIDS[@]}" $(for s in a b c; do ip netns pids "$(site_netns "$s")"; done))
ok '[ "${#pids[@]}" -ge 9 ]' "6 proxies and the servers in the namespaces run before sites_cleanup (${#pids[@]})"
sites_cleanup
is "$(what_is_left $$ "" "${pids[@]}")" "" "sites_cleanup leaves no namespace, link or process"
ok 'mountpoint -q "$T/vol_a"' "and leaves the volumes to lib.sh"

# child MODE: a script that makes two sites, then bails out (fail), waits to be
# terminated (term) or killed (kill). Writes what it made to $T/child.MODE.state.
cat >"$T/child.sh" <<'EOF'
. "$top_srcdir/tests/integration/lib.sh"
. "$top_srcdir/tests/integration/sites.sh"
mode=$1 state=$2
HSM_IT_LIMIT=120
it_init
SITES_DELAY_MS=10 SITES_VOLSIZE=64M sites_init x y
# A process nobody tracks, in a site's namespace: only the namespace knows it.
( ip netns exec "$(site_netns x)" sleep 1000 >/dev/null 2>&1 </dev/null & echo $! >"$state.sleeper" )
{
	echo "cpid=$$"
	echo "ct=$T"
	echo "cproxies=\"${SITES_PROXY_PIDS[*]}\""
	echo "csleeper=$(cat "$state.sleeper")"
	echo "cwatchdog=$IT_WATCHDOG"
	echo "ckids=\"$(pgrep -P $$ | tr '\n' ' ')\""
} >"$state.tmp"
mv "$state.tmp" "$state"
[ "$mode" = fail ] && bail_out "failing on purpose"
# Waits for the signal in a builtin: a sleep child would outlive a SIGKILL.
mkfifo "$T/hold"
exec 3<>"$T/hold"
read -r -t 600 -u 3
EOF
export top_srcdir top_builddir
for mode in fail term kill; do
	st="$T/child.$mode.state"
	bash "$T/child.sh" "$mode" "$st" >"$T/child.$mode.out" 2>&1 &
	child=$!
	for ((i = 0; i < 200; i++)); do
		[ -e "$st" ] && break
		kill -0 "$child" 2>/dev/null || break
		sleep 0.05
	done
	cpid="" ct="" cproxies="" csleeper="" cwatchdog="" ckids=""
	[ -e "$st" ] && . "$st"
	if [ -z "$cpid" ]; then
		tap_not_ok "$mode: the child script set up its sites"
		tap_diag_file "$T/child.$mode.out" 20
		kill -KILL "$child" 2>/dev/null
		wait "$child" 2>/dev/null
		continue
	fi
	case $mode in
	term) kill -TERM "$child" ;;
	kill) kill -KILL "$child" ;;
	esac
	{ wait "$child"; } 2>/dev/null
	rc=$?
	tap_diag "$mode: the child script exited with status $rc"
	if [ "$mode" = kill ]; then
		# The proxies die with their parent; the rest waits for the next sites_init.
		for ((i = 0; i < 30; i++)); do
			left=$(alive_of $cproxies)
			[ -z "$left" ] && break
			sleep 0.1
		done
		is "$left" "" "kill: the delay proxies died with the script"
		ok '[ -n "$(what_is_left "$cpid" "" "$csleeper")" ]' \
			"kill: its namespaces, links and the process in a namespace outlive it"
		sites_sweep_stale
		is "$(what_is_left "$cpid" "" $cproxies "$csleeper")" "" \
			"kill: the next sweep removes its namespaces, links and the processes in them"
		# What lib.sh would have undone: the watchdog, the volumes, the temp dir.
		kill "$cwatchdog" 2>/dev/null
		for ((i = 0; i < 20; i++)); do
			[ -z "$(alive_of $ckids)" ] && break
			sleep 0.1
		done
		is "$(alive_of $ckids)" "" "kill: no process the script started is left"
		for m in "$ct/vol_x" "$ct/vol_y"; do
			umount "$m" 2>/dev/null
		done
		for img in "$ct/vol_x.img" "$ct/vol_y.img"; do
			for dev in $(losetup -j "$img" | cut -d: -f1); do
				losetup -d "$dev"
			done
		done
		rm -rf --one-file-system "$ct"
	else
		is "$(what_is_left "$cpid" "$ct" $cproxies "$csleeper" "$cwatchdog" $ckids)" "" \
			"$mode: nothing is left (namespaces, links, mounts, loop devices, processes)"
		ok '[ ! -e "$ct" ]' "$mode: the child's temp dir is gone"
	fi
done

tap_done
