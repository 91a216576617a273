# A real S3 server for integration tests: moto_server (on 127.0.0.1 unless told) with signature
# checking on. Source this file, then:
#
#   moto_start DIR [HOST]
#                    starts it (log, credentials in DIR) on HOST (an address of this
#                    machine, default 127.0.0.1; sites.sh uses its bridge address so
#                    that network namespaces reach it) and exports
#                    MOTO_PID, MOTO_ENDPOINT (http://HOST:PORT), MOTO_BUCKET,
#                    MOTO_CRED (credentials file, mode 0600, "access_key = ..." /
#                    "secret_key = ..."), MOTO_BAD_CRED (same key id, wrong secret),
#                    MOTO_LOG. Returns 1 with a message on stderr when it cannot.
#   moto_stop        stops it.
#   moto_auth on|off turns signature checking on or off while it runs.
#
# moto checks signatures only after INITIAL_NO_AUTH_ACTION_COUNT unchecked actions:
# those make an IAM user with an allow-all policy and an access key; everything after
# (the bucket too) must be signed with that key. moto_start proves it by checking that
# a wrong secret is refused.

MOTO_NO_AUTH_ACTIONS=4 # create_user, create_policy, attach_user_policy, create_access_key
: "${MOTO_BUCKET:=hsm-test}"

# moto_free_port [HOST]: a TCP port free on HOST (default 127.0.0.1).
moto_free_port() {
	python3 -c 'import socket, sys
s = socket.socket()
s.bind((sys.argv[1], 0))
print(s.getsockname()[1])' "${1:-127.0.0.1}"
}

# moto_wait_up URL PID: polls for up to 30 s until moto answers.
moto_wait_up() {
	local url=$1 pid=$2 i
	for ((i = 0; i < 300; i++)); do
		kill -0 "$pid" 2>/dev/null || return 1
		curl -s -o /dev/null --max-time 2 "$url/moto-api/" && return 0
		sleep 0.1
	done
	return 1
}

moto_setup_py='
import json, sys
import boto3
from botocore.exceptions import ClientError

ep, bucket, cred, bad = sys.argv[1:5]
anon = dict(endpoint_url=ep, region_name="us-east-1",
            aws_access_key_id="AKIAIOSFODNN7EXAMPLE", aws_secret_access_key="unchecked")
iam = boto3.client("iam", **anon)
iam.create_user(UserName="hsm-test")
pol = iam.create_policy(PolicyName="hsm-test-all", PolicyDocument=json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
iam.attach_user_policy(UserName="hsm-test", PolicyArn=pol["Policy"]["Arn"])
key = iam.create_access_key(UserName="hsm-test")["AccessKey"]
kid, secret = key["AccessKeyId"], key["SecretAccessKey"]

def s3(secret_key):
    return boto3.client("s3", endpoint_url=ep, region_name="us-east-1",
                        aws_access_key_id=kid, aws_secret_access_key=secret_key)

s3(secret).create_bucket(Bucket=bucket)
try:
    s3("wrong" + secret).head_bucket(Bucket=bucket)
    sys.exit("moto does not check signatures: a wrong secret was accepted")
except ClientError as e:
    if e.response["ResponseMetadata"]["HTTPStatusCode"] != 403:
        raise
for path, sec in ((cred, secret), (bad, "wrong" + secret)):
    with open(path, "w") as f:
        f.write("access_key = %s\nsecret_key = %s\n" % (kid, sec))
'

moto_start() {
	local dir=$1 host=${2:-127.0.0.1} port try
	if ! command -v moto_server >/dev/null 2>&1; then
		echo "moto_start: moto_server is not on PATH (pip install 'moto[server]')" >&2
		return 1
	fi
	if ! python3 -c 'import boto3' 2>/dev/null; then
		echo "moto_start: python3 cannot import boto3 (pip install boto3)" >&2
		return 1
	fi
	mkdir -p "$dir" || return 1
	MOTO_LOG="$dir/moto.log"
	MOTO_CRED="$dir/moto.cred"
	MOTO_BAD_CRED="$dir/moto-bad.cred"
	# The port is free when chosen and may be taken before moto binds it: try again.
	for try in 1 2 3; do
		port=$(moto_free_port "$host") || { echo "moto_start: no free port on $host" >&2; return 1; }
		MOTO_ENDPOINT="http://$host:$port"
		INITIAL_NO_AUTH_ACTION_COUNT=$MOTO_NO_AUTH_ACTIONS \
			moto_server -H "$host" -p "$port" >>"$MOTO_LOG" 2>&1 </dev/null &
		MOTO_PID=$!
		moto_wait_up "$MOTO_ENDPOINT" "$MOTO_PID" && break
		moto_stop
		if [ "$try" -eq 3 ]; then
			echo "moto_start: moto_server did not answer on $MOTO_ENDPOINT" \
				"(log: $MOTO_LOG):" >&2
			tail -n 5 "$MOTO_LOG" >&2
			return 1
		fi
	done
	if ! (umask 077 && python3 -c "$moto_setup_py" "$MOTO_ENDPOINT" "$MOTO_BUCKET" \
		"$MOTO_CRED" "$MOTO_BAD_CRED") >>"$MOTO_LOG" 2>&1; then
		echo "moto_start: setting up the IAM user and bucket failed (log: $MOTO_LOG):" >&2
		tail -n 5 "$MOTO_LOG" >&2
		moto_stop
		return 1
	fi
	chmod 0600 "$MOTO_CRED" "$MOTO_BAD_CRED"
	export MOTO_PID MOTO_ENDPOINT MOTO_BUCKET MOTO_CRED MOTO_BAD_CRED MOTO_LOG
}

# moto_auth on|off: moto's reset-auth call sets how many more actions go unchecked.
moto_auth() {
	local n
	case "$1" in
	on) n=0 ;;
	off) n=1000000000 ;;
	*) echo "moto_auth: on or off" >&2; return 2 ;;
	esac
	# A form content type would hide the body from moto (Flask parses it as a form).
	curl -s -f -o /dev/null --max-time 5 -H "Content-Type: text/plain" --data-binary "$n" \
		"$MOTO_ENDPOINT/moto-api/reset-auth"
}

moto_stop() {
	local i
	[ -n "${MOTO_PID:-}" ] || return 0
	# A test may have stopped it (kill -STOP) to play an unresponsive server.
	kill -CONT "$MOTO_PID" 2>/dev/null
	kill -TERM "$MOTO_PID" 2>/dev/null
	for ((i = 0; i < 50; i++)); do
		kill -0 "$MOTO_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$MOTO_PID" 2>/dev/null
	wait "$MOTO_PID" 2>/dev/null
	MOTO_PID=""
	return 0
}
