#!/bin/bash
# Failures (ext4 and xfs), with the file:// store:
#  - a chunk object corrupted, truncated or missing, the manifest missing: reading
#    the stub fails with EIO (never zeros, never wrong bytes), the file stays a stub,
#    and once the object is back a read returns the right bytes;
#  - the worker killed with SIGKILL during the recall of a 200 MiB stub: readers get
#    the right bytes or EIO, the supervisor starts a new worker, a later read works;
#  - a reader killed during a recall: no half-recalled file is ever served;
#  - hsmd stopped and started: states survive, files written meanwhile are found.
. "$(dirname "$0")/lib.sh"
it_setup_root

CHUNK=4194304

# read_fails_cleanly FILE ORIG WHAT: a read of FILE must fail with EIO and return
# no byte that is not ORIG's; FILE must stay a stub: state, blocks and mtime as
# they were.
read_fails_cleanly() {
	local f=$1 orig=$2 what=$3 rc n b0 m0
	b0=$(blocks_of "$f")
	m0=$(mtime_of "$f")
	VT=60 vt cat "$f" >"$T/got" 2>"$T/got.err"
	rc=$?
	ok '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "Input/output error" "$T/got.err"' \
		"$what: reading the stub fails with EIO" "rc=$rc: $(cat "$T/got.err")"
	n=$(size_of "$T/got")
	ok '[ "$n" -eq 0 ] || cmp -s -n "$n" "$T/got" "$orig"' \
		"$what: no wrong bytes were returned ($n bytes read)"
	is "$(state_of "$f")" stub "$what: the file is still a stub"
	is "$(blocks_of "$f")" "$b0" "$what: the failed recall left no data behind (blocks as before)"
	is "$(mtime_of "$f")" "$m0" "$what: the failed recall left the mtime alone"
}

# object_path KEY-NAME: the file of an object under the store root.
object_path() {
	find "$T/objects" -type f -name "$1" 2>/dev/null | head -n 1
}

# failures_store FS HOW: a 9 MiB stub (three chunks) whose second chunk object is
# damaged (HOW = corrupt, truncate, delete) or whose manifest is removed (manifest);
# a read fails cleanly; once the object is back a read returns the data. Each case
# has its own file (chunks are shared by content).
failures_store() {
	local fs=$1 how=$2 f="$V/nine-$2" orig="$T/nine.orig" id csha obj save="$T/object.save" w mt
	mkrand "$orig" $((9 * 1048576))
	w=$(sha "$orig")
	vt cp "$orig" "$f"
	mt=$(mtime_of "$f")
	hsm archive --json "$f" >"$T/arch.json" 2>&1
	id=$(json_get manifest item <"$T/arch.json")
	ok '[ -n "$id" ]' "$fs $how: archive reports a manifest id" "$(cat "$T/arch.json")"
	ok_cmd "$fs $how: 9 MiB file released" hsm release "$f"

	if [ "$how" = manifest ]; then
		obj=$(object_path "$id")
		ok '[ -n "$id" ] && [ -n "$obj" ]' "$fs $how: the manifest object is in the store" \
			"$(find "$T/objects" -type f | grep -v /chunks/ | head -n 5)"
	else
		csha=$(tail -c +$((CHUNK + 1)) "$orig" | head -c "$CHUNK" | sha256sum | cut -d' ' -f1)
		obj=$(object_path "$csha")
		ok '[ -n "$obj" ]' "$fs $how: the second chunk's object is in the store ($csha)" \
			"$(find "$T/objects" -type f | head -n 20)"
	fi
	if [ -z "$obj" ]; then
		rm -f "$orig"
		return
	fi
	cp -p "$obj" "$save"
	case "$how" in
	corrupt)
		python3 - "$obj" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as fh:
    fh.seek(1000)
    b = fh.read(1)
    fh.seek(1000)
    fh.write(bytes([b[0] ^ 0xFF]))
EOF
		;;
	truncate) truncate -s 100000 "$obj" ;;
	delete | manifest) rm -f "$obj" ;;
	esac
	read_fails_cleanly "$f" "$orig" "$fs $how"
	cp -p "$save" "$obj"
	is "$(sha "$f")" "$w" "$fs $how: once the object is back the read returns the data"
	is "$(mtime_of "$f")" "$mt" "$fs $how: and the file has its own mtime"
	ok_cmd "$fs $how: and the file can be released again" hsm release "$f"
	rm -f "$orig" "$save"
}

failures_worker_kill() {
	local fs=$1 f="$V/big" want w0 w1 i b b0 pids=() good=0 eio=0 bad="" rc
	mkrand "$f" $((200 * 1048576))
	want=$(sha "$f")
	ok_cmd "$fs: 200 MiB file archived and released" archive_release "$f"
	is "$(stub_check "$f")" stub "$fs: 200 MiB stub made"
	b0=$(blocks_of "$f")
	m0=$(mtime_of "$f")
	w0=$(worker_pid)
	ok '[ -n "$w0" ]' "$fs: hsmd has a worker process (child of $HSMD_PID)"
	for i in 0 1 2; do
		timeout 120 sha256sum "$f" >"$T/kr.$i" 2>&1 &
		pids+=($!)
	done
	track "${pids[@]}"
	# kill the worker once the recall has started writing
	for ((i = 0; i < 2000; i++)); do
		b=$(blocks_of "$f")
		[ "$b" -gt "$b0" ] && break
		sleep 0.005
	done
	[ -n "$w0" ] && kill -KILL "$w0"
	tap_diag "$fs: worker $w0 killed with $b blocks of $((200 * 2048)) written"
	for i in 0 1 2; do
		wait "${pids[$i]}"
		rc=$?
		if [ "$rc" -eq 0 ] && [ "$(cut -d' ' -f1 "$T/kr.$i")" = "$want" ]; then
			good=$((good + 1))
		elif [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "Input/output error" "$T/kr.$i"; then
			eio=$((eio + 1))
		else
			bad+="reader $i: rc=$rc $(head -c 200 "$T/kr.$i")"$'\n'
		fi
	done
	ok '[ -z "$bad" ]' "$fs: readers during the worker crash got the data or EIO ($good right, $eio EIO)" \
		"$bad"
	ok 'kill -0 "$HSMD_PID" 2>/dev/null' "$fs: the supervisor survives the worker's death"
	w1=""
	for ((i = 0; i < 100; i++)); do
		w1=$(worker_pid)
		[ -n "$w1" ] && [ "$w1" != "$w0" ] && break
		sleep 0.1
	done
	ok '[ -n "$w1" ] && [ "$w1" != "$w0" ]' "$fs: a new worker is started (old $w0, new ${w1:-none})"
	if [ "$good" -eq 0 ]; then
		# the recall died with the worker: once the new worker's scan has cleaned up,
		# the file must be the stub it was
		ok wait_scan "$fs: the new worker finishes its start-up scan"
		is "$(state_of "$f")" stub "$fs: after the crash the file is still a stub"
		is "$(mtime_of "$f")" "$m0" "$fs: after the crash the mtime is unchanged"
	else
		tap_skip "$fs: the recall finished before the kill (no crash mid-recall to check)"
		tap_skip "$fs: the recall finished before the kill (mtime)"
	fi
	is "$(sha "$f")" "$want" "$fs: a read after the worker restart returns the data"
	is "$(mtime_of "$f")" "$m0" "$fs: and the file has its own mtime"
	is "$(state_of "$f")" archived "$fs: archived after the recall"

	ok_cmd "$fs: the recalled file can be released again" hsm release "$f"
	rm -f "$f"

	# a reader killed during a recall (a file of its own)
	f="$V/big2"
	mkrand "$f" $((100 * 1048576))
	want=$(sha "$f")
	ok_cmd "$fs: 100 MiB file archived and released" archive_release "$f"
	is "$(stub_check "$f")" stub "$fs: stub for the killed reader"
	b0=$(blocks_of "$f")
	timeout 120 cat "$f" >/dev/null 2>&1 &
	i=$!
	for ((b = 0; b < 2000; b++)); do
		[ "$(blocks_of "$f")" -gt "$b0" ] && break
		sleep 0.005
	done
	kill -KILL "$i" 2>/dev/null
	wait "$i" 2>/dev/null
	is "$(sha "$f")" "$want" "$fs: after a reader was killed mid-recall the data is right"
	ok_cmd "$fs: and the file can be released again" hsm release "$f"
	rm -f "$f" "$T"/kr.*
}

failures_restart() {
	local fs=$1 s="$V/survivor" a="$V/stays-archived" n="$V/written-while-down" ws wa
	mkrand "$s" 300000
	mkrand "$a" 300000
	ws=$(sha "$s")
	wa=$(sha "$a")
	hsm archive "$s" "$a" >/dev/null 2>&1 && hsm release "$s" >/dev/null 2>&1
	is "$(stub_check "$s"):$(state_of "$a")" "stub:archived" "$fs: a stub and an archived file before restart"
	ok 'hsmd_stop' "$fs: hsmd stops on SIGTERM"
	# while hsmd is down: metadata only (reading a stub now would not be protected)
	is "$(size_of "$s")" 300000 "$fs: stub size right while hsmd is down"
	ok '[ "$(blocks_of "$s")" -le "$STUB_MAX_BLOCKS" ]' "$fs: the stub has no data blocks while hsmd is down"
	mkrand "$n" 5000
	ok 'hsmd_start' "$fs: hsmd starts again"
	is "$(state_of "$s")" stub "$fs: the stub is still a stub after restart"
	is "$(state_of "$a")" archived "$fs: the archived file is still archived after restart"
	ok 'wait_state "$n" resident 15' "$fs: a file written while hsmd was down is found (state $(state_of "$n"))"
	is "$(sha "$s")" "$ws" "$fs: the stub is recalled after restart"
	ok_cmd "$fs: the file written while down can be archived and released" archive_release "$n"
	is "$(sha "$a")" "$wa" "$fs: the archived file is intact"
}

for fs in ext4 xfs; do
	mkvol "vol-$fs" "$fs" 1G
	V="$T/vol-$fs"
	HSM_STATE="$T/state-$fs" hsmd_conf "$V"
	ok 'hsmd_start' "$fs: hsmd starts" || continue
	for how in corrupt truncate delete manifest; do
		failures_store "$fs" "$how"
	done
	failures_worker_kill "$fs"
	failures_restart "$fs"
	ok 'hsmd_stop' "$fs: hsmd stops cleanly"
	rmvol "vol-$fs"
	rm -rf "$T/objects" "$T/state-$fs"
done

tap_done
