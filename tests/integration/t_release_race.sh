#!/bin/bash
# Release never races a writer past the lease break. With fs.lease-break-time at 1 s,
# writers open a 1 GiB file at several moments of its release (which re-hashes every
# chunk, so it takes a while): by path with O_APPEND, an overwrite with dd, an O_PATH
# descriptor reopened through /proc/self/fd, a shared mmap, and a writer that opened
# before the release started. Each time the release either succeeds or is refused, and
# the writer's bytes are in the file afterwards: never punched away, never overwritten
# by a recall.
. "$(dirname "$0")/lib.sh"
: "${HSM_IT_LIMIT:=900}"
it_setup_root

LBT=/proc/sys/fs/lease-break-time
OLD_LBT=$(cat "$LBT") || bail_out "cannot read $LBT"
restore_lbt() { echo "$OLD_LBT" >"$LBT"; }
IT_CLEANUP_HOOKS+=(restore_lbt)
echo 1 >"$LBT" || bail_out "cannot set $LBT"

mkvol vol ext4 3G
V="$T/vol"
hsmd_conf "$V"
ok 'hsmd_start' "hsmd starts" || bail_out "no daemon"

F="$V/big"
# 1 GiB of real data that costs little room: allocated, mostly zeros, random blocks.
fallocate -l 1G "$F" || bail_out "fallocate failed"
for off in 3 77 200 513 800 1000; do
	head -c 1048576 /dev/urandom | dd of="$F" bs=1M seek=$off conv=notrunc status=none
done
HSM_TIMEOUT=300

# prepare: archived, with a ctime the catalog does not know (chmod), so release
# re-hashes all 1 GiB and the writer has time to arrive in the middle of it.
prepare() {
	hsm archive "$F" >"$T/arch.out" 2>&1 || { tap_diag_file "$T/arch.out"; return 1; }
	chmod 0644 "$F" && chmod 0664 "$F"
}

# at_bytes OFFSET LEN: LEN bytes of the file at OFFSET, in hex (reads, so recalls)
at_bytes() {
	VT=300 vt python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
print(os.pread(fd, int(sys.argv[3]), int(sys.argv[2])).hex())
' "$F" "$1" "$2"
}

# round NAME DELAY OFFSET WRITER...: release in the background, the writer after DELAY
# seconds; then check the outcome. WRITER writes marker $MARK at OFFSET (-1: appends).
round() {
	local name=$1 delay=$2 off=$3 rpid wrc rrc got size0
	shift 3
	MARK=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
	ok 'prepare' "$name: archived again" || return
	size0=$(size_of "$F")
	hsm release "$F" >"$T/rel.out" 2>&1 &
	rpid=$!
	track "$rpid"
	sleep "$delay"
	# under timeout: a writer held on a wedged recall must not hang the script
	VT=300 vt env F="$F" MARK="$MARK" bash -c "$(declare -f "$1"); \"\$@\"" _ "$@" \
		>"$T/w.out" 2>&1
	wrc=$?
	wait "$rpid"
	rrc=$?
	if [ "$rrc" -ne 0 ]; then
		# open by the writer, or already changed by it: any refusal is safe
		is "$rrc" 1 "$name: the release is refused (exit 1)" "$(cat "$T/rel.out")"
	else
		tap_ok "$name: released (the writer waited for it)"
	fi
	is "$wrc" 0 "$name: the writer succeeded" "$(cat "$T/w.out")"
	[ "$off" = -1 ] && off=$size0
	got=$(at_bytes "$off" 16)
	is "$got" "$MARK" "$name: the writer's bytes are in the file (release exit $rrc)"
}

w_append() { printf "%s" "$MARK" | xxd -r -p >>"$F"; }
w_dd() { printf "%s" "$MARK" | xxd -r -p | dd of="$F" bs=16 seek=$(($1 / 16)) conv=notrunc status=none; }
w_opath() {
	python3 -c '
import os, sys
p = os.open(sys.argv[1], os.O_PATH)
fd = os.open("/proc/self/fd/%d" % p, os.O_WRONLY)
os.pwrite(fd, bytes.fromhex(sys.argv[2]), int(sys.argv[3]))
os.fsync(fd)
' "$F" "$MARK" "$1"
}
w_mmap() {
	python3 -c '
import mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[3])
m = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED, offset=off & ~((1 << 20) - 1))
i = off & ((1 << 20) - 1)
m[i:i + 16] = bytes.fromhex(sys.argv[2])
m.flush()
' "$F" "$MARK" "$1"
}

round "append at once" 0 -1 w_append
round "dd overwrite after 1 s" 1 $((77 * 1048576 + 4096)) w_dd $((77 * 1048576 + 4096))
round "O_PATH reopen after 2 s" 2 $((513 * 1048576 + 160)) w_opath $((513 * 1048576 + 160))
round "mmap after 0.5 s" 0.5 $((900 * 1048576 + 32)) w_mmap $((900 * 1048576 + 32))
round "append after 3 s" 3 -1 w_append

# A writer that opened before the release started: the lease is refused; its write
# goes on during the release and stays.
ok 'prepare' "early writer: archived again"
MARK=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
OFF=$((1000 * 1048576 + 48))
python3 -c '
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
open(sys.argv[4], "w").close()
while not os.path.exists(sys.argv[5]):
    time.sleep(0.05)
os.pwrite(fd, bytes.fromhex(sys.argv[2]), int(sys.argv[3]))
os.fsync(fd)
' "$F" "$MARK" "$OFF" "$T/opened" "$T/go" >"$T/early.out" 2>&1 &
wpid=$!
track "$wpid"
wait_for 10 test -e "$T/opened"
hsm release "$F" >"$T/rel.out" 2>&1 &
rpid=$!
track "$rpid"
sleep 0.5
touch "$T/go"
wait "$wpid"
is "$?" 0 "early writer: it wrote" "$(cat "$T/early.out")"
wait "$rpid"
is "$?" 1 "early writer: the release is refused"
like "$(cat "$T/rel.out")" "open|mapped" "early writer: the refusal says why"
is "$(at_bytes "$OFF" 16)" "$MARK" "early writer: its bytes are in the file"

is "$(cat "$LBT")" 1 "fs.lease-break-time was 1 s throughout"
ok '[ "$(metric hsm_releases_total)" -ge 1 ]' "at least one release went through" \
	"$(hsm metrics 2>&1 | grep release)"
hsmd_stop
tap_done
