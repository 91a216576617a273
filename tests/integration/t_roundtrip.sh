#!/bin/bash
# Round trips on ext4 and xfs: write, archive, release (size, blocks, mtime, state),
# read back (cat, mmap, exec), a 1 GiB file, truncate/append of stubs, and dirty
# tracking (chmod does not dirty a file, a write does; re-archive stores the new
# version).
. "$(dirname "$0")/lib.sh"
it_setup_root

MMAP_SHA='import hashlib, mmap, sys
f = open(sys.argv[1], "rb")
m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
print(hashlib.sha256(m).hexdigest())'

mmap_sha() {
	vt python3 -c "$MMAP_SHA" "$1" 2>"$T/mmap.err" || echo READ-FAILED
}

# One file of SIZE bytes through archive, release, read, release, mmap read.
roundtrip_size() {
	local fs=$1 size=$2 f="$V/data-$2" want mt st
	mkrand "$f" "$size"
	vt touch -d '2021-03-04 05:06:07.123456789' "$f"
	want=$(sha "$f")
	mt=$(mtime_of "$f")

	ok_cmd "$fs $size B: archive exits 0" hsm archive "$f"
	is "$(state_of "$f")" archived "$fs $size B: state archived after archive"
	ok_cmd "$fs $size B: release exits 0" hsm release "$f"
	stat "$f" >/dev/null; ls -l "$f" >/dev/null   # must not recall
	is "$(size_of "$f")" "$size" "$fs $size B: size unchanged by release"
	is "$(blocks_of "$f")" 0 "$fs $size B: no blocks after release" \
		"trusted.hsm is $(xattr_len "$f") bytes"
	is "$(mtime_of "$f")" "$mt" "$fs $size B: mtime unchanged by release"
	is "$(state_of "$f")" stub "$fs $size B: state stub (stat/ls did not recall)"
	is "$(sha "$f")" "$want" "$fs $size B: read of the stub returns the data"
	is "$(state_of "$f")" archived "$fs $size B: archived after the read"
	is "$(mtime_of "$f")" "$mt" "$fs $size B: mtime unchanged by recall"
	if [ "$size" -gt 0 ]; then
		ok '[ "$(blocks_of "$f")" -gt 0 ]' "$fs $size B: blocks allocated after recall"
		ok_cmd "$fs $size B: release again" hsm release "$f"
		is "$(mmap_sha "$f")" "$want" "$fs $size B: mmap read of the stub" \
			"$(cat "$T/mmap.err")"
		st=$(state_of "$f")
		is "$st" archived "$fs $size B: archived after the mmap read"
	fi
}

roundtrip_exec() {
	local fs=$1 f="$V/envcopy" out rc s
	vt cp /usr/bin/env "$f"
	ok_cmd "$fs: executable archived and released" archive_release "$f"
	is "$(stub_check "$f")" stub "$fs: released executable is a stub"
	out=$(vt "$f" echo hello-from-a-stub 2>&1)
	rc=$?
	is "$rc:$out" "0:hello-from-a-stub" "$fs: a released executable runs"
	s=$(state_of "$f")
	ok '[ "$s" != stub ]' "$fs: the executed file is no longer a stub (state $s)"
	vt cmp -s /usr/bin/env "$f"
	is "$?" 0 "$fs: the executed file has the original bytes"

	# A released binary started while another process reads it: both work. (No
	# ETXTBSY test: since Linux 6.14 a file on a filesystem with pre-content watches
	# may be written while it runs, so that an HSM can fill it.)
	f="$V/sleepcopy"
	vt cp /bin/sleep "$f"
	archive_release "$f" >/dev/null 2>&1
	is "$(state_of "$f")" stub "$fs: released copy of sleep is a stub"
	"$f" 20 &
	local pid=$! i
	track "$pid"
	sha "$f" >"$T/sleep.sha" &
	local rpid=$!
	# wait until the exec is done (it waits for the recall before it runs)
	for ((i = 0; i < 100; i++)); do
		[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$f" ] && break
		sleep 0.1
	done
	is "$(readlink "/proc/$pid/exe" 2>/dev/null)" "$f" "$fs: the released copy of sleep runs"
	wait "$rpid"
	is "$(cat "$T/sleep.sha")" "$(sha /bin/sleep)" "$fs: a reader racing the exec reads the binary"
	kill "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	vt cmp -s /bin/sleep "$f"
	is "$?" 0 "$fs: the binary is unchanged"
}

roundtrip_big() {
	local fs=$1 f="$V/big-1g" want
	mkrand "$f" 1G
	want=$(sha "$f")
	ok_cmd "$fs 1 GiB: archive" hsm archive "$f"
	ok_cmd "$fs 1 GiB: release" hsm release "$f"
	is "$(stub_check "$f"):$(size_of "$f")" "stub:1073741824" "$fs 1 GiB: stub of full size"
	is "$(sha "$f")" "$want" "$fs 1 GiB: read of the stub returns the data"
	rm -f "$f"
}

# Stubs opened for writing are recalled first: truncate and append keep the data.
roundtrip_modify_stub() {
	local fs=$1 f="$V/trunc" orig="$T/trunc.orig"
	mkrand "$orig" 3000000
	vt cp "$orig" "$f"
	hsm archive "$f" >/dev/null 2>&1 && hsm release "$f" >/dev/null 2>&1
	is "$(state_of "$f")" stub "$fs: stub made for truncate down"
	vt truncate -s 1000000 "$f"
	head -c 1000000 "$orig" >"$T/want"
	vt cmp -s "$T/want" "$f"
	is "$?" 0 "$fs: truncate down of a stub keeps the first bytes"

	vt cp "$orig" "$f"
	hsm archive "$f" >/dev/null 2>&1 && hsm release "$f" >/dev/null 2>&1
	is "$(state_of "$f")" stub "$fs: stub made for truncate up"
	vt truncate -s 3004096 "$f"
	{ cat "$orig"; head -c 4096 /dev/zero; } >"$T/want"
	vt cmp -s "$T/want" "$f"
	is "$?" 0 "$fs: truncate up of a stub keeps the data, zeros after"

	vt cp "$orig" "$f"
	hsm archive "$f" >/dev/null 2>&1 && hsm release "$f" >/dev/null 2>&1
	is "$(state_of "$f")" stub "$fs: stub made for append"
	vsh 'echo appended >>"$1"' "$f"
	{ cat "$orig"; echo appended; } >"$T/want"
	vt cmp -s "$T/want" "$f"
	is "$?" 0 "$fs: append to a stub keeps the data"
	rm -f "$orig"
}

# chmod/chown do not make a file dirty; a write does; re-archive stores the new data.
roundtrip_dirty() {
	local fs=$1 f="$V/dirty" want new out rc
	mkrand "$f" 1048576
	want=$(sha "$f")
	hsm archive "$f" >/dev/null 2>&1
	chmod 0600 "$f"
	chown nobody "$f"
	ok_cmd "$fs: release after chmod/chown needs no re-archive" hsm release "$f"
	is "$(stat -c '%a %U' "$f")" "600 nobody" "$fs: mode and owner kept by release"
	is "$(sha "$f")" "$want" "$fs: content after chmod + release + read"

	printf 'CHANGED' | vt dd of="$f" bs=1 seek=100 conv=notrunc status=none
	new=$(sha "$f")
	isnt "$new" "$want" "$fs: the write changed the content"
	out=$(hsm release "$f" 2>&1)
	rc=$?
	is "$rc" 1 "$fs: release of a file written after archive is refused (exit 1)"
	ok '[ "$(blocks_of "$f")" -gt 0 ]' "$fs: the refused file keeps its blocks" "$out"
	is "$(sha "$f")" "$new" "$fs: the refused file keeps the new content"
	is "$(state_of "$f")" resident "$fs: a written file is resident (dirty)"
	ok_cmd "$fs: re-archive after the change" hsm archive "$f"
	ok_cmd "$fs: release of the re-archived file" hsm release "$f"
	is "$(stub_check "$f")" stub "$fs: re-archived file released"
	is "$(sha "$f")" "$new" "$fs: recall returns the new version"
}

for fs in ext4 xfs; do
	mkvol "vol-$fs" "$fs" 3G
	V="$T/vol-$fs"
	HSM_STATE="$T/state-$fs" hsmd_conf "$V"
	if ! ok 'hsmd_start' "$fs: hsmd starts"; then
		continue
	fi
	for size in 0 1 4096 4194305 20971520; do
		roundtrip_size "$fs" "$size"
	done
	roundtrip_exec "$fs"
	roundtrip_modify_stub "$fs"
	roundtrip_dirty "$fs"
	roundtrip_big "$fs"
	ok 'hsmd_stop' "$fs: hsmd stops cleanly on SIGTERM"
	rmvol "vol-$fs"
	rm -rf "$T/objects" "$T/state-$fs"
done

tap_done
