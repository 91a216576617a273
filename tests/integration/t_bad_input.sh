#!/bin/bash
# Bad input gets a clear error and changes nothing:
#  - hsmd with a bad config (missing file, unknown key, bad volume path, credentials
#    file mode 0644) exits non-zero with a "FILE:LINE:" message and starts nothing;
#  - junk on the control socket (binary bytes, non-JSON, a line over 16 MiB, unknown
#    verb, bad version, hostile paths: "..", relative, outside any volume, 5000
#    bytes, NUL, a symlink out of the volume) gets an error reply, hsmd stays up and
#    no file or object changes;
#  - a client that is not root is refused (SO_PEERCRED);
#  - `hsm` usage errors exit 2.
. "$(dirname "$0")/lib.sh"
it_setup_root

# ---------------------------------------------------------------- bad configs

mkvol vol ext4 256M
V="$T/vol"
hsmd_conf "$V"
GOOD="$HSMD_CONF"

# bad_start NAME REGEX WHAT: hsmd -f on $T/NAME.conf must exit non-zero by itself
# with a message matching REGEX, leaving no socket and no process behind.
bad_start() {
	local c="$T/$1.conf" re=$2 what=$3 out rc
	rm -f "$HSMD_SOCK"
	timeout 20 "$HSMD_BIN" -c "$c" -f >"$T/bad.out" 2>&1 </dev/null
	rc=$?
	out=$(cat "$T/bad.out")
	ok '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -lt 128 ]' \
		"$what: hsmd exits non-zero by itself (status $rc)" "$out"
	like "$out" "$re" "$what: the message says where and what"
	ok '[ ! -S "$HSMD_SOCK" ]' "$what: no control socket was created"
	ok '! pgrep -f -- "$c" >/dev/null' "$what: no hsmd process left"
}

esc() { printf '%s' "$1" | sed 's/[.[\*^$()+?{|]/\\&/g'; }

bad_start missing-file "does-not-exist\.conf|$(esc "$T")/missing-file\.conf" \
	"missing config file"

sed '/^\[site\]$/a\
frobnicate = yes' "$GOOD" >"$T/unknown-key.conf"
bad_start unknown-key "$(esc "$T/unknown-key.conf"):2: " "unknown key"

sed "s|^path = .*|path = $T/no-such-dir|" "$GOOD" >"$T/bad-volpath.conf"
n=$(grep -n '^path = ' "$T/bad-volpath.conf" | cut -d: -f1)
bad_start bad-volpath "$(esc "$T/bad-volpath.conf"):$n: " "volume path that does not exist"

printf 'access_key = AKIAEXAMPLEEXAMPLE\nsecret_key = wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY\n' \
	>"$T/cred644"
chmod 0644 "$T/cred644"
sed "s|^url = .*|url = s3://bucket\\
endpoint = http://127.0.0.1:9\\
credentials = $T/cred644|" "$GOOD" >"$T/cred644.conf"
n=$(grep -n '^credentials = ' "$T/cred644.conf" | cut -d: -f1)
bad_start cred644 "$(esc "$T/cred644.conf"):$n: .*(0600|mode|permission)" \
	"credentials file of mode 0644"

# ---------------------------------------------------------------- socket junk

ok 'hsmd_start' "hsmd starts with the good config" || bail_out "hsmd does not start"

mkdir -p "$V/sub"
F="$V/sub/target"
mkrand "$F" 1000000
R="$V/resident"
mkrand "$R" 100000
ln -s /etc "$V/etclink"
hsm archive "$F" >/dev/null 2>&1
is "$(state_of "$F")" archived "the target file is archived"
F_SHA=$(sha "$F")
R_SHA=$(sha "$R")
F_BLOCKS=$(blocks_of "$F")
OBJS_BEFORE=$(find "$T/objects" -type f | sort | sha256sum)

cat >"$T/client.py" <<'EOF'
# client.py SOCK PAYLOAD [ENDS]: sends PAYLOAD's bytes (a "\x01PAUSE\x01" in them
# means: stop for half a second), then prints every reply line until ENDS "end"
# lines (default 1), EOF ("EOF"), a reset ("RESET") or 20 s ("TIMEOUT").
import json, socket, sys, time
path, payload = sys.argv[1], open(sys.argv[2], "rb").read()
want = int(sys.argv[3]) if len(sys.argv) > 3 else 1
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(20)
try:
    s.connect(path)
except OSError as e:
    print("CONNECT-ERROR " + str(e))
    sys.exit(0)
try:
    for i, part in enumerate(payload.split(b"\x01PAUSE\x01")):
        if i:
            time.sleep(0.5)
        s.sendall(part)
except OSError as e:
    print("SEND-ERROR " + e.__class__.__name__)
buf, ends = b"", 0
try:
    while ends < want:
        d = s.recv(1 << 16)
        if not d:
            print("EOF")
            break
        buf += d
        while b"\n" in buf and ends < want:
            line, buf = buf.split(b"\n", 1)
            print(line.decode("utf-8", "replace")[:2000])
            try:
                if json.loads(line).get("type") == "end":
                    ends += 1
            except (ValueError, AttributeError):
                pass
except socket.timeout:
    print("TIMEOUT")
except OSError:
    print("RESET")
EOF

# req VERB PATH...: a request line; "{NUL}" in a path becomes a NUL character.
req() {
	python3 -c '
import json, sys
paths = [p.replace("{NUL}", "\0") for p in sys.argv[2:]]
print(json.dumps({"v": 1, "verb": sys.argv[1], "paths": paths}))' "$@"
}

# send NAME [ENDS]: sends $T/NAME.req, replies in $T/NAME.rep
send() {
	timeout 60 python3 "$T/client.py" "$HSMD_SOCK" "$T/$1.req" "${2:-1}" >"$T/$1.rep" 2>&1
}

# refused_request NAME WHAT: the reply to $T/NAME.req ends with ok:false and an error
# (in the end line or an item), and hsmd is still alive.
refused_request() {
	local name=$1 what=$2 endok err
	send "$name"
	endok=$(json_get ok end <"$T/$name.rep")
	err=$( { json_get error end; } <"$T/$name.rep")
	[ -z "$err" ] && err=$(json_get error item <"$T/$name.rep")
	ok '[ "$endok" = false ] && [ -n "$err" ]' "$what: an error reply" \
		"reply: $(head -c 1500 "$T/$name.rep")"
	ok 'kill -0 "$HSMD_PID" 2>/dev/null && hsm status >/dev/null 2>&1' \
		"$what: hsmd still answers"
}

head -c 300 /dev/urandom >"$T/junk.req"
printf '\x00\xff\xfe garbage\n' >>"$T/junk.req"
refused_request junk "binary junk"

echo 'hello, this is not JSON' >"$T/nonjson.req"
refused_request nonjson "a non-JSON line"

echo '[1, 2, 3]' >"$T/array.req"
refused_request array "a JSON array instead of an object"

echo '{"v": 1}' >"$T/noverb.req"
refused_request noverb "a request without a verb"

echo '{"v": 1, "verb": "explode"}' >"$T/unknownverb.req"
refused_request unknownverb "an unknown verb"

echo '{"v": 99, "verb": "status"}' >"$T/badversion.req"
refused_request badversion "protocol version 99"

echo '{"v": 1, "verb": "release", "paths": "'"$F"'"}' >"$T/pathsstring.req"
refused_request pathsstring "paths as a string, not an array"

echo '{"v": 1, "verb": "release", "paths": [42]}' >"$T/pathsnum.req"
refused_request pathsnum "a path that is a number"

echo '{"v": 1, "verb": "recall", "paths": ["'"$F"'"], "opts": {"jobs": 100000}}' >"$T/badjobs.req"
refused_request badjobs "opts.jobs out of range"

python3 -c '
import sys
sys.stdout.write("{\"v\": 1, \"verb\": \"status\", \"pad\": \"" + "a" * (17 * 1024 * 1024) + "\"}\n")' \
	>"$T/huge.req"
refused_request huge "a 17 MiB line"
rm -f "$T/huge.req"

req release "$V/sub/../sub/target" >"$T/dotdot.req"
refused_request dotdot "release of a path with '..'"

req release "sub/target" >"$T/relative.req"
refused_request relative "release of a relative path"

req archive "/etc/hostname" >"$T/outside.req"
refused_request outside "archive of a path outside any volume"

req archive "$V/etclink/hostname" >"$T/symlink.req"
refused_request symlink "archive through a symlink out of the volume"

long="$V/sub/$(printf 'a%.0s' $(seq 1 5000))"
req release "$long" >"$T/long.req"
refused_request long "release of a 5000-byte path"

req release "$F{NUL}x" >"$T/nul.req"
refused_request nul "release of a path with a NUL"
like "$(json_get error item <"$T/nul.rep") $(json_get error end <"$T/nul.rep")" "NUL|nul byte|zero byte|null byte|null character" \
	"release of a path with a NUL: the error says so"

req pin "$V/sub/./../sub/target" >"$T/pindots.req"
refused_request pindots "pin of a path with '..'"

# a request written in pieces is still one request
printf '{"v": 1, "ve\x01PAUSE\x01rb": "sta\x01PAUSE\x01tus"}\n' >"$T/pieces.req"
send pieces
is "$(json_get ok end <"$T/pieces.rep")" true "a request written in three pieces is answered" \
	"$(head -c 500 "$T/pieces.rep")"

# two requests on one connection
{ echo '{"v": 1, "verb": "status"}'; echo '{"v": 1, "verb": "status"}'; } >"$T/two.req"
send two 2
is "$(grep -c '"type": *"end"' "$T/two.rep")" 2 "two requests on one connection get two answers" \
	"$(head -c 500 "$T/two.rep")"

# a client that hangs up in the middle of a line
printf '{"v": 1, "verb": "sta' >"$T/hangup.req"
timeout 10 python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
s.sendall(open(sys.argv[2], "rb").read()); s.close()' "$HSMD_SOCK" "$T/hangup.req" 2>/dev/null
sleep 0.2
ok 'kill -0 "$HSMD_PID" 2>/dev/null && hsm status >/dev/null 2>&1' \
	"a client hanging up mid-line does not hurt hsmd"

# a client that is not root nor in the socket group: the socket is opened to
# everyone, so that only hsmd's SO_PEERCRED check stands in the way. A copy of hsm
# in $T, so that the build tree's permissions do not matter.
mode=$(stat -c %a "$HSMD_SOCK")
chmod 0666 "$HSMD_SOCK"
cp "$HSM_BIN" "$T/hsm-copy"
chmod 0755 "$T/hsm-copy"
timeout 30 setpriv --reuid=65534 --regid=65534 --clear-groups \
	"$T/hsm-copy" -s "$HSMD_SOCK" release "$F" >"$T/nobody.out" 2>&1
rc=$?
chmod "$mode" "$HSMD_SOCK"
is "$rc" 1 "a client that is not root: hsm exits 1" "$(cat "$T/nobody.out")"
ok '! grep -q "cannot connect" "$T/nobody.out" && grep -Eqi "EACCES|permission|not allowed|denied" "$T/nobody.out"' \
	"a client that is not root: hsmd refuses it (SO_PEERCRED), saying so" "$(cat "$T/nobody.out")"

# nothing changed
is "$(state_of "$F"):$(blocks_of "$F")" "archived:$F_BLOCKS" "after all that, the target is unchanged"
is "$(sha "$F")" "$F_SHA" "the target's content is unchanged"
is "$(flags_of "$F")" "[]" "the target has no flags"
is "$(state_of "$R"):$(sha "$R")" "resident:$R_SHA" "the other file is unchanged"
is "$(find "$T/objects" -type f | sort | sha256sum)" "$OBJS_BEFORE" "no object was added to the store"
ok 'kill -0 "$HSMD_PID" 2>/dev/null' "hsmd survived all of it"

# ---------------------------------------------------------------- hsm usage errors

usage() {
	local what=$1 rc
	shift
	hsm "$@" >"$T/usage.out" 2>&1
	rc=$?
	is "$rc" 2 "hsm usage error exits 2: $what" "$(head -c 300 "$T/usage.out")"
}
usage "no verb"
usage "unknown verb" frobnicate
usage "unknown option" status --bogus
usage "unknown global option" --bogus status
usage "archive without paths" archive
usage "recall -j 0" recall -j 0 "$F"
usage "recall -j 65" recall -j 65 "$F"
usage "recall -j abc" recall -j abc "$F"
usage "status with an argument" status extra
usage "-j on a verb without jobs" release -j 2 "$F"
"$HSM_BIN" -s >"$T/usage.out" 2>&1
is "$?" 2 "hsm usage error exits 2: -s without its argument"

hsm release /etc/hostname >"$T/out" 2>&1
is "$?" 1 "hsm release of a path outside any volume exits 1" "$(cat "$T/out")"
"$HSM_BIN" -s "$T/no-such.sock" status >"$T/out" 2>&1
is "$?" 1 "hsm with no daemon on the socket exits 1" "$(cat "$T/out")"
like "$(cat "$T/out")" "not running|no such file|connect" "hsm with no daemon says so"

ok 'hsmd_stop' "hsmd stops cleanly"
tap_done
