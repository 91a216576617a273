#!/bin/bash
# recall = access volumes: a stub is recalled at its first read or write, not at open,
# and keeps its first page so that tools that look for data first (cp, SEEK_DATA) read
# it. Writes to such stubs must never be lost nor brick the file:
#  - an open with O_TRUNC (`: >`, `>`) raises no pre-content event for its truncation:
#    the emptied stub becomes an empty resident file of the next version, and what is
#    written after the truncation is kept;
#  - truncate -s, >> and dd conv=notrunc recall first and apply to the whole file;
#  - the same while hsmd is stopped (the guard holds the write, or lets the O_TRUNC open
#    through and the next hsmd finds the emptied stub at its scan).
. "$(dirname "$0")/lib.sh"
it_setup_root

for fs in ext4 xfs; do
	mkvol "vol$fs" "$fs" 320M
done
V="$T/volext4"
X="$T/volxfs"
HSM_VOLUME_EXTRA="recall = access" hsmd_conf "$V"
printf '\n[volume x]\npath = %s\nrecall = access\n' "$X" >>"$HSMD_CONF"
ok 'hsmd_start' "hsmd starts" || bail_out "no daemon"

ver_of() { hsm state --json "$1" 2>/dev/null | json_get version item; }
# stubs DIR N: N released files DIR/s1..sN of 300 kB, their sums in $T/sums.DIR-BASENAME
stubs() {
	local d=$1 n=$2 i
	for ((i = 1; i <= n; i++)); do
		mkrand "$d/s$i" 300000
		sha "$d/s$i" >"$T/sum.$(basename "$d").s$i"
	done
	for ((i = 1; i <= n; i++)); do
		wait_state "$d/s$i" resident || return 1
	done
	hsm archive "$d"/s* >/dev/null && hsm release "$d"/s* >/dev/null
}
sum_of() { cat "$T/sum.$(basename "$1").$(basename "$2")"; }

for d in "$V" "$X"; do
	fs=$(basename "$d")
	ok "stubs $d 9" "$fs: nine stubs"

	# an open alone does not recall
	vsh 'exec 3<"$1"; exec 3<&-' "$d/s1"
	is "$(state_of "$d/s1")" stub "$fs: an open without a read leaves the stub"
	is "$(sha "$d/s1")" "$(sum_of "$d" s1)" "$fs: the first read recalls the right bytes"

	# O_TRUNC without a write
	v2=$(ver_of "$d/s2")
	ok 'vsh ": >\"\$1\"" "$d/s2"' "$fs: : > stub succeeds"
	ok 'wait_state "$d/s2" resident' "$fs: the emptied stub becomes resident"
	is "$(size_of "$d/s2")" 0 "$fs: and empty"
	is "$(ver_of "$d/s2")" $((v2 + 1)) "$fs: at the next version"
	is "$(vt cat "$d/s2" | wc -c)" 0 "$fs: it reads empty"
	ok_cmd "$fs: it can be archived again" hsm archive "$d/s2"

	# O_TRUNC then a write
	ok 'vsh "echo new-content >\"\$1\"" "$d/s3"' "$fs: echo > stub succeeds"
	is "$(vt cat "$d/s3")" new-content "$fs: the file holds what was written"
	ok 'wait_state "$d/s3" resident' "$fs: it is resident"
	ok_cmd "$fs: archive and release it" archive_release "$d/s3"
	is "$(vt cat "$d/s3")" new-content "$fs: it reads back after a release"

	# cp over it (O_TRUNC, then many writes)
	mkrand "$T/new.$fs" 500000
	ok 'vt cp "$T/new.$fs" "$d/s4"' "$fs: cp over a stub succeeds"
	is "$(sha "$d/s4")" "$(sha "$T/new.$fs")" "$fs: it holds the new bytes"

	# writes that keep data: recalled first
	ok 'vsh "echo tail >>\"\$1\"" "$d/s5"' "$fs: >> stub succeeds"
	is "$(size_of "$d/s5")" 300005 "$fs: the append applies to the whole file"
	is "$(vt head -c 300000 "$d/s5" | sha256sum | cut -d' ' -f1)" "$(sum_of "$d" s5)" \
		"$fs: the original bytes are kept before the append"
	ok 'vt truncate -s 100000 "$d/s6"' "$fs: truncate -s of a stub succeeds"
	is "$(size_of "$d/s6")" 100000 "$fs: the size is the new one"
	ok '[ "$(vt cat "$d/s6" | tr -d "\\0" | wc -c)" -gt 90000 ]' \
		"$fs: the kept part holds data, not zeros"

	# cp of a stub reads its bytes (first page kept, so SEEK_DATA finds data)
	ok 'vt cp "$d/s7" "$T/copy.$fs"' "$fs: cp of a stub succeeds"
	is "$(sha "$T/copy.$fs")" "$(sum_of "$d" s7)" "$fs: the copy holds the right bytes"
done

# ---- while hsmd is stopped
ok 'hsmd_stop' "hsmd stops"
ok 'vsh ": >\"\$1\"" "$V/s8"' "hsmd down: : > stub succeeds (the guard lets the open through)"
(vsh 'echo while-down >"$1"' "$X/s8" && echo done >"$T/x8.rc") 2>"$T/x8.err" &
writer=$!
(vsh 'echo appended >>"$1"' "$V/s9" && echo done >"$T/v9.rc") 2>"$T/v9.err" &
appender=$!
sleep 1
ok 'hsmd_start' "hsmd starts again"
wait "$writer" "$appender"
ok 'wait_state "$V/s8" resident' "the stub emptied while hsmd was down is resident"
is "$(size_of "$V/s8")" 0 "and empty"
if [ -f "$T/x8.rc" ]; then
	is "$(vt cat "$X/s8")" while-down "a write held by the guard lands after the restart"
else
	like "$(cat "$T/x8.err")" "Input/output error" "a write held past guard_hold fails with EIO"
fi
if [ -f "$T/v9.rc" ]; then
	is "$(size_of "$V/s9")" 300009 "an append held by the guard applies to the whole file"
else
	is "$(sha "$V/s9")" "$(sum_of "$V" s9)" "an append that failed changed nothing"
fi
ok_cmd "every file can be archived" hsm archive -r "$V" "$X"
tap_done
