# Helpers sourced by the integration test scripts (tests/integration/t_*.sh).
#
# Each script prints TAP on stdout for automake's TAP driver. It needs root (loop
# mounts, fanotify); one that cannot run prints "1..0 # SKIP why" and exits 0.
# Everything a script makes (temp dir, loop devices, mounts, daemons, background
# readers) is recorded here and undone by cleanup(), which runs on EXIT, INT and
# TERM. Every command that could hang on a stub runs under `timeout`.
#
# Environment: top_builddir, top_srcdir (absolute; set by `make check`; when run by
# hand they default to the source tree), HSM_IT_LIMIT (seconds the whole script may
# take, default 420), HSM_IT_MAX_HANGS (timed-out operations before the script gives
# up, default 3), HSM_IT_KEEP=1 (keep the temp dir, for debugging).

set -u
export LC_ALL=C

: "${top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
HSMD_BIN="$top_builddir/hsmd/hsmd"
HSM_BIN="$top_builddir/tools/hsm"
: "${HSM_IT_LIMIT:=420}"

T=""                 # per-script temp dir
TAP_N=0              # tests reported so far
TAP_PLANNED=0
TAP_FAILED=0
TAP_PLAN_DONE=0
HSMD_PID=""          # the running daemon (supervisor)
HSMD_CONF=""         # its config
HSMD_SOCK=""         # its control socket
HSMD_LOG=""          # where its output goes (appended across restarts)
IT_LOOPS=()          # loop devices we attached
IT_MOUNTS=()         # mount points we mounted
IT_PIDS=()           # other processes we started
IT_CLEANUP_HOOKS=()  # functions cleanup runs before it kills processes and unmounts
IT_WATCHDOG=""
IT_CLEANED=0
IT_FINISHED=0        # tap_done ran: the script reached its end

# ---------------------------------------------------------------- TAP

tap_plan() {
	TAP_PLANNED=$1
	TAP_PLAN_DONE=1
	echo "1..$1"
}

tap_diag() {
	local line
	while IFS= read -r line || [ -n "$line" ]; do
		printf '# %s\n' "$line"
	done <<<"$*"
}

# Prints a file (or its last N lines) as diagnostics.
tap_diag_file() {
	local f=$1 n=${2:-30}
	[ -e "$f" ] || { tap_diag "($f does not exist)"; return; }
	tail -n "$n" -- "$f" | cut -c1-400 | sed 's/^/#   /'
}

tap_ok() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $*"
}

tap_not_ok() {
	TAP_N=$((TAP_N + 1))
	TAP_FAILED=$((TAP_FAILED + 1))
	echo "not ok $TAP_N - $*"
}

tap_skip() {
	TAP_N=$((TAP_N + 1))
	echo "ok $TAP_N - $* # SKIP"
}

# ok COND MSG [DIAG...]: COND is a shell expression, evaluated with eval.
ok() {
	local __c=$1 __m=$2
	shift 2
	if eval "$__c"; then
		tap_ok "$__m"
		return 0
	fi
	tap_not_ok "$__m"
	tap_diag "failed: $__c"
	[ $# -gt 0 ] && tap_diag "$@"
	return 1
}

# ok_cmd MSG CMD...: runs CMD (output to $T/cmd.out); passes when it exits 0,
# else shows its status and output.
ok_cmd() {
	local __m=$1 __rc
	shift
	"$@" >"$T/cmd.out" 2>&1
	__rc=$?
	if [ "$__rc" -eq 0 ]; then
		tap_ok "$__m"
		return 0
	fi
	tap_not_ok "$__m"
	tap_diag "exit status $__rc: $*"
	tap_diag_file "$T/cmd.out" 15
	return 1
}

# is GOT WANT MSG [DIAG...]
is() {
	if [ "$1" == "$2" ]; then
		tap_ok "$3"
		return 0
	fi
	tap_not_ok "$3"
	tap_diag "got:  '$1'"
	tap_diag "want: '$2'"
	shift 3
	[ $# -gt 0 ] && tap_diag "$@"
	return 1
}

# isnt GOT UNWANTED MSG [DIAG...]
isnt() {
	if [ "$1" != "$2" ]; then
		tap_ok "$3"
		return 0
	fi
	tap_not_ok "$3"
	tap_diag "got '$1', which it must not be"
	shift 3
	[ $# -gt 0 ] && tap_diag "$@"
	return 1
}

# like GOT REGEX MSG [DIAG...] (extended regex, grep -E, case-insensitive)
like() {
	if printf '%s\n' "$1" | grep -Eiq -- "$2"; then
		tap_ok "$3"
		return 0
	fi
	tap_not_ok "$3"
	tap_diag "got:  '$(printf '%s' "$1" | head -c 2000)'"
	tap_diag "want: /$2/"
	shift 3
	[ $# -gt 0 ] && tap_diag "$@"
	return 1
}

# tap_done: the script ran to its end; prints the plan unless tap_plan did.
tap_done() {
	IT_FINISHED=1
	if [ "$TAP_PLAN_DONE" -eq 0 ]; then
		echo "1..$TAP_N"
		TAP_PLAN_DONE=1
		TAP_PLANNED=$TAP_N
	fi
}

bail_out() {
	echo "Bail out! $*"
	exit 1
}

skip_all() {
	echo "1..0 # SKIP $*"
	TAP_PLAN_DONE=1
	exit 0
}

# ---------------------------------------------------------------- setup

skip_unless_root() {
	[ "$(id -u)" -eq 0 ] || skip_all "needs root (loop mounts, fanotify)"
	local t
	for t in mkfs.ext4 mkfs.xfs losetup python3 timeout; do
		command -v "$t" >/dev/null 2>&1 || skip_all "needs $t"
	done
	[ -x "$HSMD_BIN" ] || bail_out "$HSMD_BIN is not built"
	[ -x "$HSM_BIN" ] || bail_out "$HSM_BIN is not built"
}

# Makes the per-script temp dir and installs the cleanup trap and the watchdog.
it_init() {
	T=$(mktemp -d "${TMPDIR:-/tmp}/hsmd-it.XXXXXX") || bail_out "mktemp failed"
	chmod 0755 "$T"
	HSMD_LOG="$T/hsmd.log"
	: >"$HSMD_LOG"
	trap cleanup EXIT
	trap 'echo "# interrupted"; exit 130' INT
	trap 'echo "# terminated (time limit of ${HSM_IT_LIMIT}s or a signal)"; exit 143' TERM
	# The watchdog turns a hang into a failure: every blocking step is also under
	# timeout(1), so the TERM trap runs soon after. It is one process (read -t is a
	# builtin; a FIFO opened read-write never delivers data), so killing it by its
	# pid leaves nothing behind.
	mkfifo "$T/.watchdog"
	(
		exec 3<>"$T/.watchdog"
		read -r -t "$HSM_IT_LIMIT" -u 3
		kill -TERM $$
	) >/dev/null 2>&1 &
	IT_WATCHDOG=$!
}

# Skips the whole script unless this kernel has fanotify pre-content events
# (FAN_PRE_ACCESS, Linux 6.14+). Probed on a file in $T.
skip_unless_precontent() {
	local probe="$T/.fanprobe" out rc
	: >"$probe"
	out=$(python3 - "$probe" <<'EOF' 2>&1
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64,
                               ctypes.c_int, ctypes.c_char_p]
FAN_CLASS_PRE_CONTENT, FAN_CLOEXEC = 0x08, 0x01
fd = libc.fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC, os.O_RDONLY)
if fd < 0:
    print("fanotify_init(FAN_CLASS_PRE_CONTENT): " + os.strerror(ctypes.get_errno()))
    sys.exit(2)
FAN_MARK_ADD, FAN_PRE_ACCESS, AT_FDCWD = 0x1, 0x00100000, -100
r = libc.fanotify_mark(fd, FAN_MARK_ADD, FAN_PRE_ACCESS, AT_FDCWD, sys.argv[1].encode())
e = ctypes.get_errno()
os.close(fd)
if r == 0:
    sys.exit(0)
if e == 95:   # EOPNOTSUPP: the temp dir's filesystem, not the kernel
    sys.exit(3)
print("fanotify_mark(FAN_PRE_ACCESS): " + os.strerror(e))
sys.exit(2)
EOF
)
	rc=$?
	rm -f "$probe"
	[ "$rc" -eq 2 ] && skip_all "kernel lacks fanotify pre-content events ($out)"
	return 0
}

# Standard preamble of a script that needs root and the kernel feature.
it_setup_root() {
	skip_unless_root
	it_init
	skip_unless_precontent
}

# mkvol NAME FSTYPE SIZE: a sparse image $T/NAME.img with a FSTYPE filesystem,
# mounted at $T/NAME. Prints nothing; fails the script (bail out) on error.
mkvol() {
	local name=$1 fstype=$2 size=$3 img="$T/$1.img" mnt="$T/$1" dev
	truncate -s "$size" "$img" || bail_out "truncate $img failed"
	case "$fstype" in
	ext4) mkfs.ext4 -q -F -I 512 -E lazy_itable_init=0,lazy_journal_init=0 "$img" \
		>"$T/mkfs.$name.log" 2>&1 ;;
	xfs) mkfs.xfs -q -f "$img" >"$T/mkfs.$name.log" 2>&1 ;;
	*) bail_out "mkvol: unknown filesystem type $fstype" ;;
	esac || { cat "$T/mkfs.$name.log" | sed 's/^/# /'; bail_out "mkfs.$fstype failed"; }
	dev=$(losetup -f --show "$img") || bail_out "losetup of $img failed"
	IT_LOOPS+=("$dev")
	mkdir -p "$mnt"
	mount -t "$fstype" "$dev" "$mnt" || bail_out "mount $dev ($fstype) on $mnt failed"
	IT_MOUNTS+=("$mnt")
}

# rmvol NAME: unmount a volume made by mkvol, detach its loop device and delete
# its image (cleanup does it otherwise; this frees the space early).
rmvol() {
	local mnt="$T/$1" img="$T/$1.img" i dev
	# A guard lives as long as its volumes are mounted: the script's go with them.
	[ -z "$HSMD_PID" ] && guards_kill
	timeout 30 umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null
	for i in "${!IT_LOOPS[@]}"; do
		dev=${IT_LOOPS[$i]}
		if losetup "$dev" 2>/dev/null | grep -qF "($img)"; then
			losetup -d "$dev" 2>/dev/null
			unset 'IT_LOOPS[$i]'
		fi
	done
	rm -f "$img"
	rmdir "$mnt" 2>/dev/null
}

# ---------------------------------------------------------------- hsmd

# hsmd_conf [VOLPATH]: writes $T/hsmd.conf (path in HSMD_CONF) for one volume "v".
# Knobs (environment):
#   HSM_STORE=file|s3 (default file; s3 uses MOTO_* from moto.sh)
#   HSM_CRED          credentials file for s3 (default $MOTO_CRED)
#   HSM_STATE         state dir (default $T/state)
#   HSM_STORE_EXTRA   extra lines for [store]
#   HSM_VOLUME_EXTRA  extra lines for [volume v]
hsmd_conf() {
	local vol=${1:-$T/vol}
	HSMD_CONF="$T/hsmd.conf"
	HSMD_SOCK="$T/hsmd.sock"
	{
		echo "[site]"
		echo "name = t1"
		echo "state_dir = ${HSM_STATE:-$T/state}"
		echo "socket = $HSMD_SOCK"
		echo "log_level = debug"
		[ -n "${HSM_SITE_EXTRA:-}" ] && printf '%s\n' "$HSM_SITE_EXTRA"
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
		echo
		echo "[volume v]"
		echo "path = $vol"
		[ -n "${HSM_VOLUME_EXTRA:-}" ] && printf '%s\n' "$HSM_VOLUME_EXTRA"
	} >"$HSMD_CONF"
}

# hsmd_start: starts hsmd -f on HSMD_CONF, output appended to $T/hsmd.log; waits up
# to 10 s for the socket and a successful `hsm status`. Returns 1 (with diagnostics)
# if it does not come up.
hsmd_start() {
	local i
	[ -n "$HSMD_CONF" ] || hsmd_conf
	echo "=== $(date +%T.%N) hsmd start: $HSMD_CONF" >>"$HSMD_LOG"
	rm -f "$HSMD_SOCK"
	"$HSMD_BIN" -c "$HSMD_CONF" -f >>"$HSMD_LOG" 2>&1 </dev/null &
	HSMD_PID=$!
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "$HSMD_PID" 2>/dev/null; then
			wait "$HSMD_PID" 2>/dev/null
			tap_diag "hsmd exited during start-up (status $?)"
			tap_diag_file "$HSMD_LOG" 20
			HSMD_PID=""
			return 1
		fi
		if [ -S "$HSMD_SOCK" ] &&
		   timeout 5 "$HSM_BIN" -s "$HSMD_SOCK" status >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	tap_diag "hsmd did not answer 'hsm status' within 10 s"
	tap_diag_file "$HSMD_LOG" 20
	return 1
}

# hsmd_stop: SIGTERM, up to 10 s, then SIGKILL of the supervisor and its children.
# Returns 0 when it exited by itself after SIGTERM with status 0.
hsmd_stop() {
	local pid=$HSMD_PID kids i rc=0
	[ -n "$pid" ] || return 0
	kids=$(pgrep -P "$pid" 2>/dev/null)
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		tap_diag "hsmd (pid $pid) ignored SIGTERM for 10 s: killed"
		kill -KILL "$pid" 2>/dev/null
		rc=1
	fi
	wait "$pid" 2>/dev/null
	local st=$?
	[ "$rc" -eq 0 ] && [ "$st" -ne 0 ] && { tap_diag "hsmd exited with status $st"; rc=1; }
	for i in $kids; do
		kill -KILL "$i" 2>/dev/null
	done
	echo "=== $(date +%T.%N) hsmd stopped (pid $pid)" >>"$HSMD_LOG"
	HSMD_PID=""
	return $rc
}

# hsm ARGS...: the CLI against this script's daemon, bounded in time
# (HSM_TIMEOUT, default 120 s); running out of time counts as a hang.
hsm() {
	VT=${HSM_TIMEOUT:-120} vt "$HSM_BIN" -s "$HSMD_SOCK" "$@"
}

# archive_release FILE...: hsm archive, then (if it worked) hsm release.
archive_release() {
	hsm archive "$@" && hsm release "$@"
}

# worker_pid: the worker child of the supervisor (empty if none).
# wait_scan: waits (up to 30 s) until the worker's start-up scan has finished, which
# is when it has cleaned up after a recall that died with the previous worker.
wait_scan() {
	local i
	for ((i = 0; i < 300; i++)); do
		hsm status --json 2>/dev/null | grep -q '"scanning":false' && return 0
		sleep 0.1
	done
	return 1
}

# guard_pid [CONF-SOCKET]: the pid of the hsmd-guard of a control socket (default this
# script's daemon), from its lock file; empty when none runs.
guard_pid() {
	local lock="${1:-$HSMD_SOCK}.guard.lock" pid
	[ -s "$lock" ] || return 0
	pid=$(head -n1 -- "$lock" 2>/dev/null)
	[ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = hsmd-guard ] && echo "$pid"
	return 0
}

# guards_kill: SIGKILL of every hsmd-guard whose lock file lies in $T (each hsmd of a
# script starts its own, named after its control socket).
guards_kill() {
	local lock pid
	[ -n "$T" ] && [ -d "$T" ] || return 0
	while IFS= read -r lock; do
		pid=$(guard_pid "${lock%.guard.lock}")
		[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
	done < <(find "$T" -maxdepth 3 -name '*.guard.lock' 2>/dev/null)
	return 0
}

worker_pid() {
	[ -n "$HSMD_PID" ] || return 0
	pgrep -P "$HSMD_PID" 2>/dev/null | head -n 1
}

# json_get KEY [TYPE]: reads JSON lines on stdin and prints KEY (dotted path)
# of the first object (of "type" TYPE, when given) that has it. Strings print
# bare, other values as JSON.
json_get() {
	python3 -c '
import json, sys
key = sys.argv[1].split(".")
typ = sys.argv[2] if len(sys.argv) > 2 else None
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    try:
        o = json.loads(line)
    except ValueError:
        continue
    if not isinstance(o, dict) or (typ and o.get("type") != typ):
        continue
    v = o
    for k in key:
        if isinstance(v, dict) and k in v:
            v = v[k]
        else:
            v = None
            break
    if v is None:
        continue
    print(v if isinstance(v, str) else json.dumps(v))
    break
' "$@"
}

# state_of FILE: hsmd's state of FILE (stub, resident, archived, unmanaged), or
# "error: ..." when the request failed.
state_of() {
	local out s
	out=$(hsm state --json "$1" 2>&1)
	s=$(printf '%s\n' "$out" | json_get state item)
	if [ -n "$s" ]; then
		echo "$s"
	else
		echo "error: $(printf '%s' "$out" | tr '\n' ' ' | head -c 300)"
	fi
}

# flags_of FILE: the flags array of FILE as JSON.
flags_of() {
	hsm state --json "$1" 2>/dev/null | json_get flags item
}

# wait_for SECONDS CMD...: polls CMD every 0.1 s until it succeeds; 1 on timeout.
wait_for() {
	local limit=$1 i
	shift
	for ((i = 0; i < limit * 10; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	return 1
}

# wait_state FILE STATE [SECONDS]: polls until hsmd reports STATE (default 10 s).
wait_state() {
	local f=$1 want=$2 n=$(( ${3:-10} * 10 )) i
	for ((i = 0; i < n; i++)); do
		[ "$(state_of "$f")" = "$want" ] && return 0
		sleep 0.1
	done
	return 1
}

# status_get KEY: a field of `hsm status --json` (dotted path).
status_get() {
	hsm status --json 2>/dev/null | json_get "$1"
}

# metric NAME: the sum of the values of a Prometheus metric (all label sets) from
# `hsm metrics`, or empty if absent.
metric() {
	hsm metrics 2>/dev/null | awk -v m="$1" '
		$1 == m || index($1, m "{") == 1 { s += $NF; found = 1 }
		END { if (found) printf "%.0f\n", s }'
}

# ---------------------------------------------------------------- hangs

# vt CMD...: runs CMD under timeout(1), VT seconds (default 120), then SIGKILL 5 s
# later. Use it for everything that opens a volume file: an unanswered fanotify
# event blocks the opener (a redirection of this shell would hang the script).
# A timeout counts as a hang; after HSM_IT_MAX_HANGS (default 3) hangs the script
# stops itself, since hsmd is evidently not answering.
vt() {
	timeout -k 5 "${VT:-120}" "$@"
	local rc=$?
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		it_hung "$*"
	fi
	return $rc
}

it_hung() {
	[ -n "$T" ] || return 0
	printf '%s hung (killed after %ss): %s\n' "$(date +%T)" "${VT:-120}" "$*" |
		cut -c1-300 >>"$T/hangs"
	if [ "$(wc -l <"$T/hangs")" -ge "${HSM_IT_MAX_HANGS:-3}" ]; then
		printf '%s giving up after %s hangs\n' "$(date +%T)" "${HSM_IT_MAX_HANGS:-3}" >>"$T/hangs"
		kill -TERM $$
	fi
}

# ---------------------------------------------------------------- store fetches

# store_watch_start DIR: records every open of a file in DIR (a file:// store's
# chunks/ directory) by any process, with a fanotify notification group, until
# store_watch_stop, which prints "COUNT NAME" per file opened.
store_watch_start() {
	STORE_WATCH_OUT="$T/store-watch.$RANDOM"
	python3 -c '
import ctypes, os, signal, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64,
                               ctypes.c_int, ctypes.c_char_p]
FAN_CLASS_NOTIF, FAN_OPEN, FAN_EVENT_ON_CHILD, FAN_MARK_ADD = 0, 0x20, 0x08000000, 1
fd = libc.fanotify_init(FAN_CLASS_NOTIF, os.O_RDONLY)
if fd < 0 or libc.fanotify_mark(fd, FAN_MARK_ADD, FAN_OPEN | FAN_EVENT_ON_CHILD,
                                -100, sys.argv[1].encode()) < 0:
    print("error: " + os.strerror(ctypes.get_errno()), flush=True)
    sys.exit(1)
out = open(sys.argv[2], "a")
signal.signal(signal.SIGTERM, lambda *a: (out.flush(), os._exit(0)))
print("ready", flush=True)
while True:
    buf = os.read(fd, 65536)
    off = 0
    while off + 24 <= len(buf):
        elen, vers, _, mlen, mask, efd, pid = struct.unpack_from("=IBBHQii", buf, off)
        if efd >= 0:
            try:
                out.write(os.path.basename(os.readlink("/proc/self/fd/%d" % efd)) + "\n")
                out.flush()
            except OSError:
                pass
            os.close(efd)
        off += elen
' "$1" "$STORE_WATCH_OUT" >"$STORE_WATCH_OUT.status" 2>&1 &
	STORE_WATCH_PID=$!
	track "$STORE_WATCH_PID"
	local i
	for ((i = 0; i < 50; i++)); do
		grep -q . "$STORE_WATCH_OUT.status" 2>/dev/null && break
		sleep 0.1
	done
	grep -q '^ready' "$STORE_WATCH_OUT.status"
}

store_watch_stop() {
	kill -TERM "$STORE_WATCH_PID" 2>/dev/null
	wait "$STORE_WATCH_PID" 2>/dev/null
	sort "$STORE_WATCH_OUT" 2>/dev/null | uniq -c | awk '{ print $1, $2 }'
}

# ---------------------------------------------------------------- files

blocks_of() { stat -c %b -- "$1"; }
# A stub has no data blocks, but st_blocks may count one 4 KiB block for the
# trusted.hsm record: ext4 keeps an xattr that does not fit in the inode (about 70
# bytes with 256-byte inodes) in a block of its own. t_roundtrip.sh checks for
# st_blocks 0 exactly; other scripts use stub_check, which allows that block.
STUB_MAX_BLOCKS=0

# stub_check FILE: "stub" when hsmd says stub and FILE has at most STUB_MAX_BLOCKS
# blocks, else "STATE, N blocks".
stub_check() {
	local s b
	s=$(state_of "$1")
	b=$(blocks_of "$1")
	if [ "$s" = stub ] && [ "$b" -le "$STUB_MAX_BLOCKS" ]; then
		echo stub
	else
		echo "$s, $b blocks"
	fi
}

# xattr_len FILE: bytes of FILE's trusted.hsm record (getxattr by path: no open)
xattr_len() {
	python3 -c 'import os, sys; print(len(os.getxattr(sys.argv[1], "trusted.hsm")))' "$1" 2>/dev/null ||
		echo "?"
}
size_of() { stat -c %s -- "$1"; }
mtime_of() { stat -c '%Y %y' -- "$1"; }

# sha FILE: sha256 of FILE's content read through the volume (this recalls a stub),
# bounded to SHA_TIMEOUT (120) s; prints "READ-FAILED" when the read fails.
sha() {
	local out
	out=$(VT=${SHA_TIMEOUT:-120} vt sha256sum -- "$1" 2>/dev/null) || {
		echo READ-FAILED
		return 1
	}
	echo "${out%% *}"
}

# mkrand FILE BYTES: random content (BYTES as head -c takes it: 4096, 20M, 1G).
mkrand() {
	VT=${VT:-300} vt bash -c 'head -c "$2" /dev/urandom >"$1"' _ "$1" "$2"
}

# vsh 'SCRIPT' ARGS...: a bash script under vt (for redirections into volume files).
vsh() {
	vt bash -c "$1" _ "${@:2}"
}

# track PID: kill PID in cleanup if it is still running.
track() {
	IT_PIDS+=("$@")
}

# is_zeros FILE: true if FILE is non-empty and all zero bytes.
is_zeros() {
	[ -s "$1" ] && ! tr -d '\0' <"$1" | head -c 1 | grep -q .
}

# ---------------------------------------------------------------- cleanup

dump_logs_on_failure() {
	if [ "$TAP_FAILED" -gt 0 ] && [ -n "$HSMD_LOG" ] && [ -s "$HSMD_LOG" ]; then
		echo "# ---- last lines of hsmd.log ($TAP_FAILED failed) ----"
		tail -n "${HSM_IT_LOG_LINES:-60}" "$HSMD_LOG" | cut -c1-400 | sed 's/^/# /'
	fi
}

# Mount points under $T or on our loop devices, deepest first.
it_our_mounts() {
	local dev
	{
		[ -n "$T" ] && awk -v t="$T/" '{ m = $5; gsub(/\\040/, " ", m); if (index(m, t) == 1) print m }' /proc/self/mountinfo
		for dev in "${IT_LOOPS[@]}"; do
			awk -v d="$dev" '$0 ~ (" - [^ ]+ " d " ") { print $5 }' /proc/self/mountinfo
		done
		printf '%s\n' "${IT_MOUNTS[@]}"
	} | awk 'NF && !seen[$0]++' | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2-
}

cleanup() {
	local rc=$? p m i
	[ "$IT_CLEANED" -eq 1 ] && return
	IT_CLEANED=1
	trap - INT TERM
	[ -n "$IT_WATCHDOG" ] && kill "$IT_WATCHDOG" 2>/dev/null
	# A script that stopped early fails, whatever it had printed so far.
	if [ "$TAP_PLAN_DONE" -eq 0 ] && [ "$T" != "" ]; then
		tap_not_ok "the script ran to its end (it stopped early, status $rc)"
		echo "1..$TAP_N"
		TAP_PLAN_DONE=1
		TAP_PLANNED=$TAP_N
	fi
	# Tests the plan promised but that never ran are failures, not silence.
	if [ "$TAP_PLAN_DONE" -eq 1 ] && [ "$TAP_N" -lt "$TAP_PLANNED" ]; then
		echo "# the script stopped early (status $rc); tests not run are failures"
		while [ "$TAP_N" -lt "$TAP_PLANNED" ]; do
			tap_not_ok "not run (script stopped early)"
		done
	fi
	if [ -n "$T" ] && [ -s "$T/hangs" ]; then
		echo "# ---- operations that hung ----"
		sed 's/^/# /' "$T/hangs"
	fi
	dump_logs_on_failure
	# Helpers with resources of their own (sites.sh: namespaces, links) undo them
	# first, while the volumes they use are still mounted.
	for p in "${IT_CLEANUP_HOOKS[@]}"; do
		"$p"
	done
	if [ -n "$HSMD_PID" ]; then
		for p in $(pgrep -P "$HSMD_PID" 2>/dev/null); do
			kill -KILL "$p" 2>/dev/null
		done
		kill -KILL "$HSMD_PID" 2>/dev/null
	fi
	for p in "${IT_PIDS[@]}" $(jobs -p); do
		kill -KILL "$p" 2>/dev/null
	done
	# Guards last: while one runs, readers of stubs wait instead of reading zeros.
	guards_kill
	if declare -F moto_stop >/dev/null && [ -n "${MOTO_PID:-}" ]; then
		moto_stop >/dev/null 2>&1
	fi
	wait 2>/dev/null
	for m in $(it_our_mounts); do
		for ((i = 0; i < 3; i++)); do
			mountpoint -q "$m" || break
			timeout 20 umount "$m" 2>/dev/null && break
			sleep 0.3
		done
		mountpoint -q "$m" && umount -l "$m" 2>/dev/null
	done
	for p in $(printf '%s\n' "${IT_LOOPS[@]}" | tac); do
		losetup -d "$p" 2>/dev/null
	done
	if [ -n "$T" ] && [ -d "$T" ]; then
		if [ "${HSM_IT_KEEP:-0}" = 1 ]; then
			echo "# kept $T"
		else
			rm -rf --one-file-system "$T"
		fi
	fi
}
