#!/bin/bash
# Concurrent readers of stubs (ext4 and xfs): 16 readers of one 20 MiB stub all get
# the right bytes from exactly one recall; 8 readers of each of 10 stubs; a batch
# `hsm recall` racing readers of the same stub joins the same single recall.
. "$(dirname "$0")/lib.sh"
it_setup_root

# readers N OUTPREFIX FILE...: N background sha256sum readers per FILE; waits for all.
readers() {
	local n=$1 pfx=$2 f i pids=()
	shift 2
	for f in "$@"; do
		for ((i = 0; i < n; i++)); do
			timeout 120 sha256sum "$f" >"$pfx.$(basename "$f").$i" 2>&1 &
			pids+=($!)
		done
	done
	track "${pids[@]}"
	wait "${pids[@]}" 2>/dev/null
}

# check_readers N PFX WANT FILE: the number of reader outputs with the right sum.
count_good() {
	local n=$1 pfx=$2 want=$3 f=$4 i good=0
	for ((i = 0; i < n; i++)); do
		[ "$(cut -d' ' -f1 "$pfx.$(basename "$f").$i" 2>/dev/null)" = "$want" ] &&
			good=$((good + 1))
	done
	echo "$good"
}

bad_outputs() {
	local n=$1 pfx=$2 want=$3 f=$4 i
	for ((i = 0; i < n; i++)); do
		if [ "$(cut -d' ' -f1 "$pfx.$(basename "$f").$i" 2>/dev/null)" != "$want" ]; then
			echo "reader $i: $(head -c 300 "$pfx.$(basename "$f").$i")"
		fi
	done | head -n 5
}

# want_fetches FILE...: "1 SHA" for every 4 MiB chunk of the (resident) FILEs: each
# chunk object fetched once.
want_fetches() {
	vt python3 -c '
import hashlib, sys
for p in sys.argv[1:]:
    with open(p, "rb") as f:
        while True:
            b = f.read(4 << 20)
            if not b:
                break
            print("1 " + hashlib.sha256(b).hexdigest())' "$@" | sort
}

# chunk objects opened since store_watch_start, as "COUNT SHA" lines
got_fetches() {
	store_watch_stop | grep -E ' [0-9a-f]{64}$' | sort
}

recalls_done() {
	status_get recalls_done
}

# log lines saying a recall of FID finished (if hsmd logs them)
recall_log_lines() {
	grep -i "recall" "$HSMD_LOG" | grep -i "$1" | grep -ciE "recalled|recall (done|finished|complete)"
}

for fs in ext4 xfs; do
	mkvol "vol-$fs" "$fs" 1G
	V="$T/vol-$fs"
	HSM_STATE="$T/state-$fs" hsmd_conf "$V"
	ok 'hsmd_start' "$fs: hsmd starts" || continue

	# 16 readers of one 20 MiB stub
	f="$V/one"
	mkrand "$f" 20971520
	want=$(sha "$f")
	hsm archive "$f" >/dev/null 2>&1 && hsm release "$f" >"$T/out" 2>&1
	is "$(state_of "$f")" stub "$fs: 20 MiB stub made" "$(cat "$T/out")"
	fid=$(hsm state --json "$f" | json_get fid item)
	before=$(recalls_done)
	bytes_before=$(metric hsm_recall_bytes_total)
	ok 'store_watch_start "$T/objects/chunks"' "$fs: watching the store's chunk objects"
	logs_before=0
	[ -n "$fid" ] && logs_before=$(recall_log_lines "$fid")
	readers 16 "$T/r1" "$f"
	good=$(count_good 16 "$T/r1" "$want" "$f")
	is "$good" 16 "$fs: 16 concurrent readers of one stub all read the right bytes" \
		"$(bad_outputs 16 "$T/r1" "$want" "$f")"
	after=$(recalls_done)
	fetched=$(got_fetches)
	is "$((after - before))" 1 "$fs: exactly one recall for 16 readers (recalls_done $before -> $after)"
	is "$(( $(metric hsm_recall_bytes_total) - bytes_before ))" 20971520 \
		"$fs: hsm_recall_bytes_total grew by the file's size, once"
	is "$fetched" "$(want_fetches "$f")" "$fs: the store was read once per chunk (5 chunk objects)"
	is "$(state_of "$f")" archived "$fs: archived after the reads"
	logs_after=0
	[ -n "$fid" ] && logs_after=$(recall_log_lines "$fid")
	if [ -n "$fid" ] && [ "${logs_after:-0}" -gt 0 ]; then
		is "$((logs_after - logs_before))" 1 "$fs: exactly one 'recalled' log line for fid $fid"
	else
		tap_skip "$fs: hsmd logs no 'recalled' line with the fid to count"
	fi

	# 8 readers of each of 10 stubs
	files=()
	for ((k = 0; k < 10; k++)); do
		mkrand "$V/many-$k" $((6 * 1048576 + k * 1000))
		files+=("$V/many-$k")
	done
	declare -A wants=()
	for g in "${files[@]}"; do wants[$g]=$(sha "$g"); done
	hsm archive "${files[@]}" >/dev/null 2>&1
	ok_cmd "$fs: 10 stubs made" hsm release "${files[@]}"
	before=$(recalls_done)
	store_watch_start "$T/objects/chunks"
	readers 8 "$T/r2" "${files[@]}"
	fetched=$(got_fetches)
	allgood=0
	diag=""
	for g in "${files[@]}"; do
		n=$(count_good 8 "$T/r2" "${wants[$g]}" "$g")
		allgood=$((allgood + n))
		[ "$n" -eq 8 ] || diag+="$(basename "$g"): $n of 8 good; $(bad_outputs 8 "$T/r2" "${wants[$g]}" "$g")"$'\n'
	done
	is "$allgood" 80 "$fs: 8 readers x 10 stubs: all 80 reads right" "$diag"
	after=$(recalls_done)
	is "$((after - before))" 10 "$fs: one recall per stub (recalls_done $before -> $after)"
	is "$fetched" "$(want_fetches "${files[@]}")" "$fs: the store was read once per chunk of the 10 files"
	stubs=0
	for g in "${files[@]}"; do [ "$(state_of "$g")" = stub ] && stubs=$((stubs + 1)); done
	is "$stubs" 0 "$fs: none of the 10 files is still a stub"
	unset wants

	# a batch recall racing 4 readers of the same stub
	hsm release "$f" >/dev/null 2>&1
	is "$(state_of "$f")" stub "$fs: stub again for the batch race"
	before=$(recalls_done)
	hsm recall "$f" >"$T/recall.out" 2>&1 &
	rpid=$!
	track "$rpid"
	readers 4 "$T/r3" "$f"
	wait "$rpid"
	rrc=$?
	is "$rrc" 0 "$fs: hsm recall racing readers exits 0" "$(cat "$T/recall.out")"
	is "$(count_good 4 "$T/r3" "$want" "$f")" 4 "$fs: the 4 racing readers read the right bytes" \
		"$(bad_outputs 4 "$T/r3" "$want" "$f")"
	after=$(recalls_done)
	is "$((after - before))" 1 "$fs: batch recall and readers share one recall (recalls_done $before -> $after)"
	is "$(sha "$f")" "$want" "$fs: content right after the race"

	ok 'hsmd_stop' "$fs: hsmd stops cleanly"
	rm -f "$T"/r[123].*
	rmvol "vol-$fs"
	rm -rf "$T/objects" "$T/state-$fs"
done

tap_done
