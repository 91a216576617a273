#!/bin/bash
# Release is refused (exit 1, a clear message, blocks and content unchanged) for a
# file open by another process, a mapped file, a file modified after archive, a
# pinned file and a never-archived file; once the cause is gone it succeeds, and
# nothing is ever lost. On ext4 and xfs.
. "$(dirname "$0")/lib.sh"
it_setup_root

# refused FILE REGEX WHAT: release of FILE must be refused with a message matching REGEX.
refused() {
	local f=$1 re=$2 what=$3 b0 s0 rc
	b0=$(blocks_of "$f")
	s0=$(sha "$f")
	hsm release "$f" >"$T/rel.out" 2>"$T/rel.err"
	rc=$?
	is "$rc" 1 "$what: release exits 1" "$(cat "$T/rel.out" "$T/rel.err")"
	like "$(cat "$T/rel.err")" "$re" "$what: the message says why"
	is "$(blocks_of "$f")" "$b0" "$what: blocks unchanged"
	is "$(sha "$f")" "$s0" "$what: content unchanged"
	isnt "$(state_of "$f")" stub "$what: not a stub"
}

# wait_open PID FILE: waits (up to 5 s) until process PID has FILE open.
wait_open() {
	local i fd
	for ((i = 0; i < 50; i++)); do
		for fd in /proc/"$1"/fd/*; do
			[ "$(readlink "$fd" 2>/dev/null)" = "$2" ] && return 0
		done
		sleep 0.1
	done
	tap_diag "process $1 did not open $2 within 5 s"
	return 1
}

# released FILE SHA WHAT: release of FILE succeeds and the data comes back.
released() {
	local f=$1 want=$2 what=$3
	ok_cmd "$what: release succeeds" hsm release "$f"
	is "$(stub_check "$f")" stub "$what: it is a stub"
	is "$(sha "$f")" "$want" "$what: nothing lost (read back)"
}

for fs in ext4 xfs; do
	mkvol "vol-$fs" "$fs" 512M
	V="$T/vol-$fs"
	HSM_STATE="$T/state-$fs" hsmd_conf "$V"
	ok 'hsmd_start' "$fs: hsmd starts" || continue

	# open by another process
	f="$V/open"
	mkrand "$f" 2000000
	w=$(sha "$f")
	hsm archive "$f" >/dev/null 2>&1
	sleep 60 <"$f" &
	holder=$!
	track "$holder"
	wait_open "$holder" "$f"
	refused "$f" "open|in use|busy" "$fs open file"
	kill "$holder"; wait "$holder" 2>/dev/null
	released "$f" "$w" "$fs open file, closed"

	# open for writing by another process (nothing written)
	f="$V/openw"
	mkrand "$f" 2000000
	w=$(sha "$f")
	hsm archive "$f" >/dev/null 2>&1
	sleep 60 >>"$f" &
	holder=$!
	track "$holder"
	wait_open "$holder" "$f"
	refused "$f" "open|in use|busy" "$fs file open for writing"
	kill "$holder"; wait "$holder" 2>/dev/null
	released "$f" "$w" "$fs file open for writing, closed"

	# mapped (the descriptor closed, the mapping kept)
	f="$V/mapped"
	mkrand "$f" 2000000
	w=$(sha "$f")
	hsm archive "$f" >/dev/null 2>&1
	python3 -c '
import mmap, sys, time
f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
f.close()
print("mapped", flush=True)
time.sleep(60)' "$f" >"$T/map.out" 2>&1 &
	holder=$!
	track "$holder"
	for ((i = 0; i < 100; i++)); do grep -q mapped "$T/map.out" && break; sleep 0.1; done
	refused "$f" "mapped|open|in use|busy" "$fs mapped file"
	kill "$holder"; wait "$holder" 2>/dev/null
	released "$f" "$w" "$fs mapped file, unmapped"

	# modified after archive
	f="$V/modified"
	mkrand "$f" 2000000
	hsm archive "$f" >/dev/null 2>&1
	printf 'new bytes' | vt dd of="$f" bs=1 seek=5000 conv=notrunc status=none
	w=$(sha "$f")
	refused "$f" "modified|changed|dirty|not archived|archive it" "$fs file modified after archive"
	ok_cmd "$fs modified file: re-archive" hsm archive "$f"
	released "$f" "$w" "$fs modified file, re-archived"

	# appended after archive (the size changes too)
	f="$V/appended"
	mkrand "$f" 2000000
	hsm archive "$f" >/dev/null 2>&1
	vsh 'echo more >>"$1"' "$f"
	w=$(sha "$f")
	refused "$f" "modified|changed|dirty|not archived|archive it" "$fs file appended after archive"

	# pinned
	f="$V/pinned"
	mkrand "$f" 2000000
	w=$(sha "$f")
	hsm archive "$f" >/dev/null 2>&1
	ok_cmd "$fs: pin exits 0" hsm pin "$f"
	like "$(flags_of "$f")" '"pinned"' "$fs: state shows the pinned flag"
	refused "$f" "pinned" "$fs pinned file"
	ok_cmd "$fs: unpin exits 0" hsm unpin "$f"
	ok '! flags_of "$f" | grep -q pinned' "$fs: the pinned flag is gone"
	released "$f" "$w" "$fs unpinned file"

	# never archived
	f="$V/never"
	mkrand "$f" 2000000
	w=$(sha "$f")
	refused "$f" "not archived|archive it" "$fs never-archived file"
	is "$(sha "$f")" "$w" "$fs never-archived file: content intact"

	# a release of several files: the refused one does not stop the others
	a="$V/multi-ok"
	b="$V/multi-never"
	mkrand "$a" 100000
	mkrand "$b" 100000
	hsm archive "$a" >/dev/null 2>&1
	hsm release "$a" "$b" >"$T/out" 2>&1
	rc=$?
	is "$rc" 1 "$fs: release of one good and one never-archived file exits 1"
	is "$(state_of "$a"):$(state_of "$b")" "stub:resident" \
		"$fs: the good one was released, the other left resident" "$(cat "$T/out")"

	ok 'hsmd_stop' "$fs: hsmd stops cleanly"
	rmvol "vol-$fs"
	rm -rf "$T/objects" "$T/state-$fs"
done

tap_done
