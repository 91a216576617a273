#!/bin/bash
# The S3 store against moto_server with signature checking (moto.sh):
#  - round trips (several sizes) and 16 readers of one stub, on ext4 and xfs;
#  - multipart: chunk_size 8M, multipart_threshold 5M, part_size 5M, a 40 MiB file;
#  - wrong credentials: archive fails (exit 1, says why), the file stays resident;
#    a stub cannot be recalled (EIO, never zeros);
#  - the store unreachable (moto stopped): EIO once hsmd's retries are spent, then a read
#    works once it is back.
. "$(dirname "$0")/lib.sh"
it_setup_root

MOTO_SH="$(dirname "$0")/moto.sh"
[ -r "$MOTO_SH" ] || bail_out "$MOTO_SH is missing"
. "$MOTO_SH"

if ! moto_start "$T/moto" >"$T/moto-start.log" 2>&1; then
	tap_not_ok "moto_server starts"
	tap_diag_file "$T/moto-start.log" 20
	tap_done
	exit 0
fi
tap_ok "moto_server starts ($MOTO_ENDPOINT, bucket $MOTO_BUCKET)"
HSM_STORE=s3
export HSM_STORE

# readers N FILE WANT: N concurrent readers; prints how many read WANT.
readers() {
	local n=$1 f=$2 want=$3 i pids=() good=0
	for ((i = 0; i < n; i++)); do
		timeout 120 sha256sum "$f" >"$T/rd.$i" 2>&1 &
		pids+=($!)
	done
	track "${pids[@]}"
	wait "${pids[@]}" 2>/dev/null
	for ((i = 0; i < n; i++)); do
		[ "$(cut -d' ' -f1 "$T/rd.$i")" = "$want" ] && good=$((good + 1))
	done
	echo "$good"
}

declare -A WANT=()

s3_roundtrip() {
	local fs=$1 size f want before after
	for size in 0 1 4096 4194305 20971520; do
		f="$V/s3-$size"
		mkrand "$f" "$size"
		want=$(sha "$f")
		WANT[$fs-$size]=$want
		ok_cmd "$fs s3 $size B: archive" hsm archive "$f"
		ok_cmd "$fs s3 $size B: release" hsm release "$f"
		is "$(stub_check "$f"):$(size_of "$f")" "stub:$size" \
			"$fs s3 $size B: a stub of the right size"
		is "$(sha "$f")" "$want" "$fs s3 $size B: read of the stub returns the data"
	done
	f="$V/s3-20971520"
	hsm release "$f" >/dev/null 2>&1
	is "$(state_of "$f")" stub "$fs s3: 20 MiB stub again"
	before=$(status_get recalls_done)
	is "$(readers 16 "$f" "$want")" 16 "$fs s3: 16 concurrent readers all read the right bytes" \
		"$(head -c 200 "$T/rd.0")"
	after=$(status_get recalls_done)
	is "$((after - before))" 1 "$fs s3: one recall for 16 readers"
}

for fs in ext4 xfs; do
	mkvol "vol-$fs" "$fs" 512M
	V="$T/vol-$fs"
	HSM_STATE="$T/state-$fs" hsmd_conf "$V"
	ok 'hsmd_start' "$fs: hsmd starts with the s3 store" || continue
	s3_roundtrip "$fs"
	# for the wrong-credentials part below: one stub, one archived file
	[ "$fs" = ext4 ] && ok_cmd "$fs s3: a stub left for later" hsm release "$V/s3-4194305"
	ok 'hsmd_stop' "$fs: hsmd stops cleanly"
	[ "$fs" = xfs ] && rmvol "vol-$fs"
done

# ---------------------------------------------------------------- wrong credentials
V="$T/vol-ext4"
f="$V/badcred-new"
mkrand "$f" 3000000
want=$(sha "$f")
stub="$V/s3-4194305"
archived="$V/s3-4096"
hsm_state_dir="$T/state-ext4"
HSM_STATE="$hsm_state_dir" HSM_CRED="$MOTO_BAD_CRED" hsmd_conf "$V"
if ok 'hsmd_start' "bad credentials: hsmd starts"; then
	b0=$(blocks_of "$f")
	hsm archive "$f" >"$T/out" 2>&1
	rc=$?
	is "$rc" 1 "bad credentials: archive exits 1" "$(cat "$T/out")"
	like "$(cat "$T/out")" "denied|credential|signature|forbidden|403|InvalidAccessKeyId|access key" \
		"bad credentials: the error says the store refused the credentials"
	is "$(state_of "$f"):$(blocks_of "$f")" "resident:$b0" "bad credentials: the file stays resident"
	is "$(sha "$f")" "$want" "bad credentials: the file is intact"
	# release checks the archived copy in the store first: it must refuse
	b0=$(blocks_of "$archived")
	hsm release "$archived" >"$T/out" 2>&1
	rc=$?
	is "$rc" 1 "bad credentials: release (which checks the archived copy) exits 1" "$(cat "$T/out")"
	is "$(state_of "$archived"):$(blocks_of "$archived")" "archived:$b0" \
		"bad credentials: the archived file stays resident"
	is "$(sha "$archived")" "${WANT[ext4-4096]}" "bad credentials: the archived file is intact"
	is "$(stub_check "$stub")" stub "bad credentials: the stub made before is a stub"
	VT=90 vt cat "$stub" >"$T/got" 2>"$T/got.err"
	rc=$?
	ok '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "Input/output error" "$T/got.err"' \
		"bad credentials: reading a stub fails with EIO" "rc=$rc $(cat "$T/got.err")"
	ok '[ ! -s "$T/got" ]' "bad credentials: no bytes were returned"
	is "$(state_of "$stub")" stub "bad credentials: the stub stays a stub"
	ok 'hsmd_stop' "bad credentials: hsmd stops cleanly"
fi

# ---------------------------------------------------------------- multipart + unreachable
HSM_STORE_EXTRA='chunk_size = 8M
multipart_threshold = 5M
part_size = 5M
retries = 1
timeout = 3' HSM_STATE="$hsm_state_dir" hsmd_conf "$V"
if ok 'hsmd_start' "multipart: hsmd starts (chunk_size 8M, part_size 5M)"; then
	is "$(sha "$stub")" "${WANT[ext4-4194305]}" "good credentials again: the stub is recalled"
	f="$V/multipart-40m"
	mkrand "$f" $((40 * 1048576))
	want=$(sha "$f")
	mparts=$(grep -c 'uploadId=' "$MOTO_LOG")
	hsm archive --json "$f" >"$T/arch.json" 2>&1
	rc=$?
	is "$rc" 0 "multipart: archive of 40 MiB exits 0" "$(tail -n 3 "$T/arch.json")"
	ok '[ "$(grep -c "uploadId=" "$MOTO_LOG")" -gt "$mparts" ]' \
		"multipart: the store saw multipart requests (uploadId=)" "$(tail -n 5 "$MOTO_LOG")"
	is "$(json_get chunks item <"$T/arch.json")" 5 "multipart: 40 MiB in 8 MiB chunks is 5 chunks"
	ok_cmd "multipart: release" hsm release "$f"
	is "$(stub_check "$f")" stub "multipart: released"
	is "$(sha "$f")" "$want" "multipart: read of the stub returns the data"

	# the store stops answering
	hsm release "$f" >/dev/null 2>&1
	is "$(state_of "$f")" stub "unreachable: stub made"
	kill -STOP "$MOTO_PID"
	s=$SECONDS
	VT=120 vt cat "$f" >"$T/got" 2>"$T/got.err"
	rc=$?
	kill -CONT "$MOTO_PID"
	tap_diag "unreachable: the read ended after $((SECONDS - s)) s with status $rc"
	ok '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "Input/output error" "$T/got.err"' \
		"unreachable: reading a stub fails with EIO (hsmd gives up, the read is not killed)" \
		"rc=$rc $(cat "$T/got.err")"
	ok '[ ! -s "$T/got" ]' "unreachable: no bytes were returned"
	is "$(state_of "$f")" stub "unreachable: the file stays a stub"
	is "$(sha "$f")" "$want" "unreachable: once the store is back the read works"
	ok 'hsmd_stop' "multipart: hsmd stops cleanly"
fi

moto_stop >/dev/null 2>&1
MOTO_PID=""
tap_done
