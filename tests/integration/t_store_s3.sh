#!/bin/bash
# The s3:// object store against real servers, through tests/tools/store_cli (no root
# needed):
#  - moto_server with signature checking: round trips of a small and a 20 MiB object
#    (multipart), ranged reads, head, delete, list across pages, a wrong secret
#    (EACCES, nothing written), close() cancelling what is in flight;
#  - unreachable and silent endpoints: EIO and ETIMEDOUT after the configured number of
#    attempts (the client's own count in the error, not a stopwatch);
#  - a fake S3 server (below) for what moto cannot be made to do: 503 SlowDown then
#    success, 403 not retried, a body cut short, CompleteMultipartUpload answering
#    200 with an <Error> (retried or not, then aborted), malformed list pages, and
#    the max_connections limit.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/moto.sh"

CLI="$top_builddir/tests/tools/store_cli"
[ -x "$CLI" ] || bail_out "$CLI is not built (make check builds it)"
command -v python3 >/dev/null 2>&1 || bail_out "python3 is needed"
it_init
mkdir -p "$T/state" "$T/vol"
moto_start "$T/moto" 2>"$T/moto.err" || bail_out "moto_start failed: $(cat "$T/moto.err")"

# conf NAME URL ENDPOINT CRED [EXTRA LINE...]: writes $T/NAME.conf.
conf() {
	local name=$1 url=$2 ep=$3 cred=$4
	shift 4
	{
		printf '[site]\nname = t1\nstate_dir = %s\nsocket = %s\n\n' "$T/state" "$T/sock"
		printf '[store]\nurl = %s\nendpoint = %s\nregion = us-east-1\n' "$url" "$ep"
		printf 'credentials = %s\n' "$cred"
		[ $# -gt 0 ] && printf '%s\n' "$@"
		printf '\n[volume v]\npath = %s\n' "$T/vol"
	} >"$T/$name.conf"
}

# cli CONF ARGS...: store_cli on $T/CONF.conf, stderr in $T/err, bounded in time.
cli() {
	local c=$1
	shift
	timeout 120 "$CLI" "$T/$c.conf" "$@" 2>"$T/err"
}

# okcli MSG CONF ARGS...: the call succeeds (its stderr is the diagnostic if not);
# its stdout is left in $T/out.
okcli() {
	local m=$1
	shift
	if cli "$@" >"$T/out"; then
		tap_ok "$m"
	else
		tap_not_ok "$m"
		tap_diag "store_cli $* failed:"
		tap_diag_file "$T/err" 10
	fi
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

MP=("multipart_threshold = 5M" "part_size = 5M" "max_connections = 4" "retries = 3"
    "timeout = 10")
conf s3 "s3://$MOTO_BUCKET/hsm" "$MOTO_ENDPOINT" "$MOTO_CRED" "${MP[@]}"
conf flat "s3://$MOTO_BUCKET" "$MOTO_ENDPOINT" "$MOTO_CRED" "max_connections = 8"
conf bad "s3://$MOTO_BUCKET/hsm" "$MOTO_ENDPOINT" "$MOTO_BAD_CRED" "${MP[@]}"

# ---------------------------------------------------------------- moto, signed

printf 'hello, object store\n' >"$T/small"
mkrand "$T/big" $((20 << 20))
BIG_SHA=$(sha256sum <"$T/big" | cut -d' ' -f1)

okcli "put a small object" s3 put dir/small "$T/small"
is "$(cli s3 get dir/small)" "hello, object store" "get returns it"
okcli "put 20 MiB (multipart: 5 MiB parts)" s3 put big/obj "$T/big"
is "$(grep -c 'PUT /[^ ]*/hsm/big/obj?partNumber=' "$MOTO_LOG")" 4 "it went up in 4 parts"
is "$(cli s3 get big/obj | sha256sum | cut -d' ' -f1)" "$BIG_SHA" \
	"get of 20 MiB returns the same sha256" "$(cat "$T/err")"
is "$(cli s3 get big/obj 5242000 1000 | sha256sum)" \
	"$(tail -c +5242001 "$T/big" | head -c 1000 | sha256sum)" \
	"ranged get across a part boundary" "$(cat "$T/err")"
is "$(cli s3 get big/obj $(((20 << 20) - 10)) 100 | wc -c)" 10 \
	"ranged get running past the end yields the bytes there are"
out=$(cli s3 get dir/small 1000 10)
is "$?:$(printf '%s' "$out" | wc -c)" "0:0" "ranged get beyond the end yields no bytes" \
	"$(cat "$T/err")"
is "$(cli s3 head big/obj)" "present $((20 << 20))" "head of a present object"
is "$(cli s3 head big/nothing)" "absent" "head of a missing object"
cli s3 get big/nothing >/dev/null
is "$?" 1 "get of a missing object fails"
like "$(cat "$T/err")" "ENOENT.*big/nothing.*NoSuchKey" "... with ENOENT naming it"

# Listing with a prefix: moto (in signature mode) rejects the correct signature of a
# query with prefix=a%2F (notes/dependencies.md), so the paged listing runs on the
# store without prefix and slash-free prefixes; the next test lists "dir/" with
# signature checking off.
okcli "put 1100 objects at once (they queue)" flat fill many 1100
cli flat list many >"$T/keys"
is "$?:$(wc -l <"$T/keys")" "0:1100" "list returns all 1100 keys" "$(cat "$T/err")"
is "$(sed -n '1p;1100p' "$T/keys" | tr '\n' ' ')" "many000000 many001099 " \
	"... first and last as named"
is "$(grep -c 'continuation-token=[0-9a-f]*&list-type=2&prefix=many HTTP' "$MOTO_LOG")" 1 \
	"... in two pages (one continuation-token)"
is "$(cli flat list many00109 | tr '\n' ' ')" "$(printf 'many00109%d ' 0 1 2 3 4 5 6 7 8 9)" \
	"list of a narrower prefix"
moto_auth off
is "$(cli s3 list dir/ | tr '\n' ' ')" "dir/small " \
	"list of dir/ under the store prefix (signatures unchecked: moto bug)" "$(cat "$T/err")"
moto_auth on

cli bad put dir/intruder "$T/small"
is "$?" 1 "put with a wrong secret fails"
like "$(cat "$T/err")" "EACCES.*dir/intruder.*SignatureDoesNotMatch" \
	"... with EACCES and the S3 error code"
is "$(cli s3 head dir/intruder)" "absent" "... and nothing was written"
cli bad put big/intruder "$T/big"
like "$?:$(cat "$T/err")" "^1:.*EACCES.*SignatureDoesNotMatch" \
	"multipart put with a wrong secret fails with EACCES"
cli bad get dir/small >/dev/null
like "$?:$(cat "$T/err")" "^1:.*EACCES" "get with a wrong secret fails with EACCES"

: >"$T/empty"
okcli "put an empty object" s3 put dir/empty "$T/empty"
is "$(cli s3 head dir/empty)" "present 0" "head of the empty object"
cli s3 get dir/empty >"$T/out"
is "$?:$(wc -c <"$T/out")" "0:0" "get of the empty object" "$(cat "$T/err")"
cli s3 get ../etc/passwd >/dev/null
like "$?:$(cat "$T/err")" "^1:.*EINVAL" "a hostile key fails with EINVAL"

okcli "delete" s3 delete dir/small
is "$(cli s3 head dir/small)" "absent" "... the object is gone"
cli s3 get dir/small >/dev/null
like "$?:$(cat "$T/err")" "^1:.*ENOENT" "... and get says ENOENT"

is "$(cli s3 cancel big/cancelled "$T/big")" "cancelled 2" \
	"close() answers a put and a get in flight with ECANCELED" "$(cat "$T/err")"

# ---------------------------------------------------------------- dead endpoints

conf refused "s3://bkt" "http://127.0.0.1:1" "$MOTO_CRED" "retries = 2" "timeout = 2"
t0=$(now_ms)
cli refused get some/key >/dev/null
rc=$?
el=$(($(now_ms) - t0))
like "$rc:$(cat "$T/err")" "^1:.*EIO.*127\.0\.0\.1:1.*gave up after 3 attempts" \
	"a refused connection fails with EIO after 1 + 2 retries"
tap_diag "refused: gave up after ${el} ms"

python3 -c 'import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(64)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
held = []
while True:
    held.append(s.accept()[0])' "$T/silent.port" &
track $!
for ((i = 0; i < 50; i++)); do [ -s "$T/silent.port" ] && break; sleep 0.1; done
conf silent "s3://bkt" "http://127.0.0.1:$(cat "$T/silent.port")" "$MOTO_CRED" "retries = 1" \
	"timeout = 1"
t0=$(now_ms)
cli silent head some/key >/dev/null
rc=$?
el=$(($(now_ms) - t0))
like "$rc:$(cat "$T/err")" "^1:.*ETIMEDOUT.*gave up after 2 attempts" \
	"a server that never answers fails with ETIMEDOUT"
tap_diag "silent: gave up after ${el} ms"

# ---------------------------------------------------------------- fake S3 server

FAKE_S3_PY='
import hashlib, http.server, json, re, sys, threading, time, urllib.parse

log = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()
counts, objects, uploads = {}, {}, {}
state = {"inflight": 0, "max": 0}

def err(code, msg="injected"):
    return ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code>"
            "<Message>%s</Message></Error>" % (code, msg)).encode()

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        u = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        parts = u.path.split("/", 2)
        key = urllib.parse.unquote(parts[2]) if len(parts) > 2 else ""
        log.write("%s %s\n" % (self.command, self.path))
        if self.headers.get("x-amz-security-token"):
            log.write("TOKEN %s\n" % self.headers["x-amz-security-token"])
        # What S3 checks: the payload hash that was signed is the body'"'"'s.
        if (u.path != "/_stats" and
                self.headers.get("x-amz-content-sha256") != hashlib.sha256(body).hexdigest()):
            return self.reply(400, err("XAmzContentSHA256Mismatch"))
        with lock:
            state["inflight"] += 1
            state["max"] = max(state["max"], state["inflight"])
            k = (self.command, key, tuple(sorted(q)))
            counts[k] = counts.get(k, 0) + 1
            nth = counts[k]
        try:
            time.sleep(0.02)
            self.route(u.path, key, q, body, nth)
        finally:
            with lock:
                state["inflight"] -= 1

    def route(self, path, key, q, body, nth):
        c = self.command
        if path == "/_stats":
            with lock:
                m, state["max"] = state["max"], 0
            return self.reply(200, json.dumps({"max_inflight": m}).encode())
        if key == "" and "list-type" in q:
            prefix = q.get("prefix", [""])[0]
            if prefix.startswith("garbage"):
                return self.reply(200, b"<ListBucketResult><IsTruncated>tr")
            if prefix.startswith("endless"):
                return self.reply(200, b"<ListBucketResult><IsTruncated>true"
                                  b"</IsTruncated></ListBucketResult>")
            keys = "".join("<Contents><Key>%s</Key></Contents>" % k
                           for k in sorted(objects) if k.startswith(prefix))
            return self.reply(200, ("<ListBucketResult><IsTruncated>false</IsTruncated>"
                                    "%s</ListBucketResult>" % keys).encode())
        if key.startswith("flaky") and nth <= 2:
            return self.reply(503, err("SlowDown", "Please reduce your request rate."))
        if key.startswith("forbidden"):
            return self.reply(403, err("AccessDenied", "Access Denied"))
        if key.startswith("partial") and c == "GET":
            if nth == 1:
                self.send_response(200)
                self.send_header("Content-Length", "100")
                self.end_headers()
                self.wfile.write(b"p" * 10)
                self.close_connection = True
                return None
            return self.reply(200, b"p" * 100)
        if c == "POST" and "uploads" in q:
            uid = "up-%d" % len(uploads)
            uploads[uid] = {}
            return self.reply(200, ("<InitiateMultipartUploadResult><Key>%s</Key>"
                                    "<UploadId>%s</UploadId>"
                                    "</InitiateMultipartUploadResult>" % (key, uid)).encode())
        if "uploadId" in q:
            up = uploads.get(q["uploadId"][0])
            if up is None:
                return self.reply(404, err("NoSuchUpload"))
            if c == "PUT":
                pn = int(q["partNumber"][0])
                up[pn] = body
                return self.reply(200, b"", [("ETag", "\"etag-%d\"" % pn)])
            if c == "DELETE":
                del uploads[q["uploadId"][0]]
                return self.reply(204)
            if key.startswith("c200err"):
                return self.reply(200, err("InternalError", "Please try again."))
            if key.startswith("c200bad"):
                return self.reply(200, err("InvalidPart", "A part was not found."))
            got = re.findall(r"<PartNumber>(\d+)</PartNumber><ETag>&quot;etag-(\d+)&quot;",
                             body.decode())
            want = [(str(i), str(i)) for i in range(1, len(up) + 1)]
            if got != want:
                return self.reply(400, err("InvalidPartOrder", repr(got)))
            objects[key] = b"".join(up[i] for i in range(1, len(up) + 1))
            del uploads[q["uploadId"][0]]
            return self.reply(200, b"<CompleteMultipartUploadResult/>")
        if c == "PUT":
            objects[key] = body
            return self.reply(200, b"", [("ETag", "\"x\"")])
        if c in ("GET", "HEAD"):
            if key not in objects:
                return self.reply(404, err("NoSuchKey"))
            data = objects[key]
            m = re.match(r"bytes=(\d+)-(\d*)$", self.headers.get("Range") or "")
            if m:
                a = int(m.group(1))
                b = int(m.group(2)) + 1 if m.group(2) else len(data)
                if a >= len(data):
                    return self.reply(416, err("InvalidRange"))
                return self.reply(206, data[a:b])
            return self.reply(200, data)
        if c == "DELETE":
            objects.pop(key, None)
            return self.reply(204)
        return self.reply(400, err("InvalidRequest"))

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
open(sys.argv[2], "w").write(str(srv.server_address[1]))
srv.serve_forever()
'
FAKE_LOG="$T/fake.log"
: >"$FAKE_LOG"
python3 -c "$FAKE_S3_PY" "$FAKE_LOG" "$T/fake.port" 2>"$T/fake.err" &
track $!
for ((i = 0; i < 50; i++)); do [ -s "$T/fake.port" ] && break; sleep 0.1; done
[ -s "$T/fake.port" ] || bail_out "the fake S3 server did not start: $(cat "$T/fake.err")"
FAKE="http://127.0.0.1:$(cat "$T/fake.port")"
conf fake "s3://fake-bucket" "$FAKE" "$MOTO_CRED" "${MP[@]}"
conf fake1 "s3://fake-bucket" "$FAKE" "$MOTO_CRED" "retries = 1" "timeout = 5"
conf fake3 "s3://fake-bucket" "$FAKE" "$MOTO_CRED" "max_connections = 3"
fake_count() { grep -c -- "$1" "$FAKE_LOG"; }

printf 'access_key = AKIDTEST\nsecret_key = s3cr3t\nsession_token = tok/123+abc=\n' \
	>"$T/token.cred"
chmod 0600 "$T/token.cred"
conf token "s3://fake-bucket" "$FAKE" "$T/token.cred"
okcli "put with a session token (and the body's sha256 checked)" token put tok1 "$T/small"
is "$(fake_count '^TOKEN tok/123+abc=$')" 1 "... sends x-amz-security-token"

okcli "put retried through 503 SlowDown succeeds" fake put flaky1 "$T/small"
is "$(fake_count '^PUT /fake-bucket/flaky1$')" 3 "... after 3 attempts"
is "$(cli fake get flaky1)" "hello, object store" "get retried through 503 SlowDown"
cli fake1 get flaky2 >/dev/null
like "$?:$(cat "$T/err")" "^1:.*EIO.*HTTP 503 SlowDown.*gave up after 2 attempts" \
	"503 on every allowed attempt: EIO naming the S3 code"
cli fake get forbidden1 >/dev/null
like "$?:$(cat "$T/err")" "^1:.*EACCES.*HTTP 403 AccessDenied" "403 AccessDenied: EACCES"
is "$(fake_count '^GET /fake-bucket/forbidden1$')" 1 "... and no retry of a 4xx"
is "$(cli fake get partial1)" "$(printf 'p%.0s' $(seq 100))" \
	"a body cut short is fetched again" "$(cat "$T/err")"
is "$(fake_count '^GET /fake-bucket/partial1$')" 2 "... in a second attempt"

mkrand "$T/mid" $((12 << 20))
okcli "multipart put to the fake server" fake put mpuok "$T/mid"
is "$(cli fake get mpuok | sha256sum)" "$(sha256sum <"$T/mid")" \
	"... the parts were completed in order with their ETags"
cli fake put c200err "$T/mid"
like "$?:$(cat "$T/err")" "^1:.*EIO.*complete multipart upload: HTTP 200 InternalError" \
	"CompleteMultipartUpload answering 200 + InternalError fails"
is "$(fake_count '^POST /fake-bucket/c200err?uploadId=')" 4 \
	"... after 1 + 3 retries of the complete"
is "$(fake_count '^DELETE /fake-bucket/c200err?uploadId=')" 1 "... then the upload is aborted"
cli fake put c200bad "$T/mid"
like "$?:$(cat "$T/err")" "^1:.*EIO.*HTTP 200 InvalidPart" \
	"CompleteMultipartUpload answering 200 + InvalidPart fails"
is "$(fake_count '^POST /fake-bucket/c200bad?uploadId=')" 1 "... without retrying"
is "$(fake_count '^DELETE /fake-bucket/c200bad?uploadId=')" 1 "... and the upload is aborted"
cli fake list garbage >/dev/null
like "$?:$(cat "$T/err")" "^1:.*EIO.*malformed ListObjectsV2" "a truncated list page: EIO"
cli fake list endless >/dev/null
like "$?:$(cat "$T/err")" "^1:.*EIO.*malformed ListObjectsV2" \
	"a list page truncated without a token: EIO (no endless paging)"

# _stats reports the most requests in flight at once since the last _stats.
fake_max() {
	curl -s --max-time 5 "$FAKE/_stats" | python3 -c 'import json, sys
print(json.load(sys.stdin)["max_inflight"])'
}
fake_max >/dev/null
okcli "30 puts with max_connections = 3" fake3 fill conc 30
max=$(fake_max)
ok '[ "$max" -ge 2 ] && [ "$max" -le 3 ]' "... ran in parallel, never more than 3 ($max)"

tap_done
