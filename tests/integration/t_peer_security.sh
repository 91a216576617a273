#!/bin/bash
# The peer server under attack (DESIGN §7, docs/protocol.md): two sites a and b; the
# attacker is curl or openssl in the root namespace, on the bridge.
#  - a certificate from another CA: the handshake fails, no HTTP answer;
#  - a valid certificate whose CN is not a peer of b: 403;
#  - no client certificate, TLS 1.2: refused;
#  - a real peer asking for a volume it does not share, "../" in paths, bad fids and
#    numbers, huge headers, a truncated body, a slow client: errors, and b's namespace,
#    feed and files do not change;
#  - a real peer's ordinary request still works afterwards (the server is alive).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sites.sh"
it_setup_root

sites_init a b
site_start a || bail_out "site a did not start"
site_start b || bail_out "site b did not start"
A=$(site_vol a)
B=$(site_vol b)
PKI=$T/pki
URL="https://$(site_ip b):$SITES_PORT"

echo "hello" >"$A/keep"
for ((i = 0; i < 50; i++)); do [ -e "$B/keep" ] && break; sleep 0.1; done
ok '[ -e "$B/keep" ]' "the two sites sync (control)"

# pcurl CERT-NAME PATH [CURL-ARGS...]: curl as CERT-NAME (a file pair in $PKI or $PKI2);
# prints the HTTP status (000 when there was no answer).
pcurl() {
	local who=$1 path=$2 dir=$PKI
	shift 2
	[ -e "$PKI/$who.crt" ] || dir=$T/pki2
	curl -s -o "$T/body" -w '%{http_code}' --max-time 15 --cacert "$PKI/ca.crt" \
		--cert "$dir/$who.crt" --key "$dir/$who.key" "$@" "$URL$path" 2>"$T/curl.err"
}

snapshot() {
	(cd "$B" && find . -printf '%p %s %m %T@\n' | sort)
	site_hsm b state --json -r "$B" 2>/dev/null | grep -v '"type":"summary"' | sort
}
snapshot >"$T/before"
pcurl a "/v1/changes/v?since=0" >/dev/null
feed_before=$(wc -l <"$T/body")

# ---- identities
"$HSM_BIN" ca init --dir "$T/pki2" >/dev/null 2>&1 &&
	"$HSM_BIN" ca issue a --dir "$T/pki2" --host 127.0.0.1 >/dev/null 2>&1 ||
	bail_out "second CA"
is "$(pcurl a /v1/health --cert "$T/pki2/a.crt" --key "$T/pki2/a.key")" 000 \
	"a certificate named a from another CA gets no answer"
"$HSM_BIN" ca issue mallory --dir "$PKI" --host 127.0.0.1 >/dev/null 2>&1 || bail_out "issue"
is "$(pcurl mallory /v1/health)" 403 "a valid certificate for a site that is not a peer: 403"
is "$(curl -s -o /dev/null -w '%{http_code}' --max-time 15 --cacert "$PKI/ca.crt" "$URL/v1/health")" \
	000 "no client certificate: no answer"
is "$(pcurl a /v1/health --tls-max 1.2)" 000 "TLS 1.2: no answer"
is "$(pcurl a /v1/health)" 200 "the peer a is let in (control)"
like "$(cat "$T/body")" "^ok b" "health answers with the site name"

# ---- hostile requests from a real peer
is "$(pcurl a /v1/changes/w?since=0)" 403 "a volume not shared with the peer: 403"
is "$(pcurl a '/v1/changes/v?since=-1')" 400 "a negative cursor: 400"
is "$(pcurl a '/v1/changes/v?since=0&wait=99999')" 400 "a wait beyond the limit: 400"
is "$(pcurl a '/v1/changes/v?since=0&max=0')" 400 "max=0: 400"
code=$(pcurl a '/v1/changes/../../etc/passwd' --path-as-is)
ok '[ "$code" = 403 ] || [ "$code" = 404 ] || [ "$code" = 400 ]' \
	"../ in the path is refused ($code)"
code=$(pcurl a '/v1/data/v/..%2F..%2Fetc%2Fpasswd/manifest?owner=a&version=1' --path-as-is)
ok '[ "$code" = 400 ] || [ "$code" = 404 ]' "an escaped ../ as a fid is refused ($code)"
is "$(pcurl a '/v1/data/v/zz/manifest?owner=a&version=1')" 400 "a fid that is not hex: 400"
fid=$(site_hsm a state --json "$A/keep" | json_get fid item)
code=$(pcurl a "/v1/data/v/$fid/chunk?owner=a&version=1&off=0&len=99999999999&sha=00")
ok '[ "$code" = 400 ]' "an absurd chunk length and a short sha: 400 ($code)"
code=$(pcurl a "/v1/data/v/$fid/manifest?owner=../x&version=1")
ok '[ "$code" = 400 ]' "a bad owner site name: 400 ($code)"
big=$(head -c 20000 /dev/zero | tr '\0' 'x')
is "$(pcurl a /v1/health -H "X-Big: $big")" 431 "a 20 KB header: 431"
is "$(pcurl a "/v1/health?$(head -c 5000 /dev/zero | tr '\0' 'y')")" 414 "a 5 KB URL: 414"
is "$(pcurl a /v1/health -X DELETE)" 405 "DELETE: 405"
is "$(pcurl a /v1/changes/v -X POST --data-binary "@/dev/null" -H 'Content-Length: 5000000')" \
	413 "a 5 MB body announced: 413 before it is sent"

# a truncated body and a slow client, over raw TLS
{
	printf 'POST /v1/health HTTP/1.1\r\nHost: b\r\nContent-Length: 1000\r\n\r\nonly a little'
	sleep 1
} | timeout 20 openssl s_client -quiet -connect "$(site_ip b):$SITES_PORT" \
	-CAfile "$PKI/ca.crt" -cert "$PKI/a.crt" -key "$PKI/a.key" >"$T/trunc.out" 2>&1
ok '! grep -q "^HTTP/1.1 200" "$T/trunc.out"' "a truncated body gets no 200"
# The client sends a byte a second of a request that never ends; judged by order, not
# seconds: the server must cut it off before the client runs out of bytes (it then
# leaves a mark). Cut off, s_client exits and the trickle dies on the broken pipe.
rm -f "$T/slow.unfinished"
{
	printf 'GET /v1/health HTTP/1.1\r\nX-Slow: '
	for ((i = 0; i < 120; i++)); do printf 'x' || exit 0; sleep 1; done
	: >"$T/slow.unfinished"
} | timeout 180 openssl s_client -quiet -connect "$(site_ip b):$SITES_PORT" \
	-CAfile "$PKI/ca.crt" -cert "$PKI/a.crt" -key "$PKI/a.key" >"$T/slow.out" 2>&1
ok '! [ -e "$T/slow.unfinished" ]' "a client trickling its request is cut off before it is done"
like "$(cat "$(site_log b)")" "request not received within" "b logs why it cut the client off"
ok '! grep -q "^HTTP/1.1 200" "$T/slow.out"' "and gets no answer"

# ---- nothing changed, and the server still serves
snapshot >"$T/after"
diff -u "$T/before" "$T/after" >"$T/diff"
ok '[ ! -s "$T/diff" ]' "b's files and states are unchanged" "$(head -20 "$T/diff")"
pcurl a "/v1/changes/v?since=0" >/dev/null
feed_after=$(wc -l <"$T/body")
is "$feed_after" "$feed_before" "b's feed is unchanged"
echo more >"$A/after-attack"
for ((i = 0; i < 50; i++)); do [ -e "$B/after-attack" ] && break; sleep 0.1; done
ok '[ -e "$B/after-attack" ]' "the sites still sync after the attack"
like "$(cat "$(site_log b)")" "refused peer CN=mallory" "b logged the refused CN"

tap_done
