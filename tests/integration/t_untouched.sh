#!/bin/bash
# hsmd changes nothing it does not manage: no atime, mtime or ctime of a file,
# directory, symlink or FIFO changes because hsmd looked at it (change events, the
# start-up scan, an archive, new files beside them). Copy tools (cp -a, rsync -a,
# tar x) set a symlink's times after making it; a readlink by hsmd after that would
# put its atime back to "now" (pjdfstest utimensat/05.t test 7).
#
# What hsmd does change, and so is not checked here: adopting a new regular file
# writes its trusted.hsm record (its ctime: so the times are set after adoption),
# and archiving writes it again (the archived files' ctime, which is checked to
# change, so that a snapshot that cannot see changes fails this test). The test's
# own new files change their directories' mtime and ctime: those directories are
# checked for atime only.
#
# A symlink's target can only be read with readlink(2), which sets the link's atime
# unless the mount is noatime (there is no O_NOATIME for it). hsmd reads targets for
# the namespace feed through its admin mount, which hsmd/supervisor.c makes noatime:
# the test checks that it is, and the symlinks' times like every other.
. "$(dirname "$0")/lib.sh"
it_setup_root

mkvol vol ext4 256M
V="$T/vol"
hsmd_conf "$V"
ok 'hsmd_start' "hsmd starts" || bail_out "hsmd did not start"

# The per-mount options of the admin mount of volume v, from hsmd's mount namespace.
admin_mount_opts() {
	local p
	for p in $HSMD_PID $(pgrep -P "$HSMD_PID" 2>/dev/null); do
		awk -v m="$T/state/admin/v" '$5 == m { print $6; exit }' "/proc/$p/mountinfo" 2>/dev/null
	done | head -n 1
}
ADMIN_OPTS=$(admin_mount_opts)
ok '[ -n "$ADMIN_OPTS" ]' "hsmd's admin mount is found (options: $ADMIN_OPTS)"
ok 'printf "%s\n" "$ADMIN_OPTS" | tr , "\n" | grep -qx noatime' \
	"hsmd's admin mount is noatime (readlink of a symlink then leaves its atime alone)"

# Every event before a marker's creation has been handled once hsmd has adopted the
# marker: notify reads the queue in order.
MARKS=0
sync_events() {
	MARKS=$((MARKS + 1))
	vt bash -c "echo m >'$V/m/$MARKS'"
	wait_state "$V/m/$MARKS" resident 30
}

mkdir -p "$V/m" "$V/d/sub" "$V/e"
mkrand "$V/d/f1" 300000
mkrand "$V/d/f2" 5000
mkrand "$V/d/sub/f3" 70000
vt mkfifo "$V/d/fifo"
ln -s f1 "$V/d/l1"
ln -s /nonexistent/target "$V/d/l2"
ln -s sub "$V/d/ldir"
ok 'sync_events' "hsmd has seen the new tree"

OBJS="d d/sub e d/f1 d/f2 d/sub/f3 d/fifo d/l1 d/l2 d/ldir"
# Old, distinct times with nanoseconds, set without following symlinks.
vt python3 - "$V" $OBJS <<'EOF'
import os, sys
v = sys.argv[1]
for i, rel in enumerate(sys.argv[2:]):
    at = (978307200 + i) * 10**9 + 123456789
    mt = (1012608000 + i) * 10**9 + 987654321
    os.utime(os.path.join(v, rel), ns=(at, mt), follow_symlinks=False)
EOF
ok 'sync_events' "hsmd has seen the time changes"

# "ATIME MTIME CTIME" in nanoseconds, of the object itself (lstat: no readlink).
times_of() {
	python3 -c 'import os, sys; s = os.lstat(sys.argv[1]); print(s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns)' "$V/$1"
}
field() { echo "$1" | cut -d' ' -f"$2"; }
declare -A S0
i=0
for o in $OBJS; do
	S0[$o]=$(times_of "$o")
	is "$(field "${S0[$o]}" 1-2)" \
		"$(((978307200 + i) * 1000000000 + 123456789)) $(((1012608000 + i) * 1000000000 + 987654321))" \
		"$o: the atime and mtime set are still there after hsmd saw the change"
	i=$((i + 1))
done

# The start-up scan walks the whole tree.
ok 'hsmd_stop' "hsmd stops"
ok 'hsmd_start && wait_scan' "hsmd restarts and finishes its start-up scan"
ok_cmd "archive d/f1 and d/sub/f3" hsm archive "$V/d/f1" "$V/d/sub/f3"
vt bash -c "echo new >'$V/d/new'; echo new >'$V/d/sub/new'; echo new >'$V/e/new'"
vt touch "$V/d/f2.sibling"
ok 'wait_state "$V/d/new" resident 30 && wait_state "$V/e/new" resident 30' \
	"hsmd has adopted the new files"
ok 'sync_events' "hsmd has handled every event since"

for o in $OBJS; do
	now=$(times_of "$o")
	case "$o" in
	d | d/sub | e)
		is "$(field "$now" 1)" "$(field "${S0[$o]}" 1)" "$o: atime unchanged (a new file inside)"
		;;
	d/f1 | d/sub/f3)
		is "$(field "$now" 1-2)" "$(field "${S0[$o]}" 1-2)" "$o: atime and mtime unchanged by its archive"
		isnt "$(field "$now" 3)" "$(field "${S0[$o]}" 3)" \
			"$o: its ctime changed (the trusted.hsm record of the archive)"
		;;
	d/l*)
		is "$now" "${S0[$o]}" "$o: atime, mtime and ctime unchanged"
		;;
	*)
		is "$now" "${S0[$o]}" "$o: atime, mtime and ctime unchanged"
		;;
	esac
done
is "$(state_of "$V/d/f1")" archived "d/f1 is archived"

ok 'hsmd_stop' "hsmd stops cleanly"
tap_done
