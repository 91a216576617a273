#!/bin/bash
# Hard links are one file: one inode, one state record, one fid, one catalog record.
#  - two names of one file: archive from one name, then from the other (no error),
#    and from both in one command; release from either name: both names show 0
#    blocks and `hsm state` says stub with the same fid; a read through the other
#    name recalls the right bytes;
#  - hsm release -r of a tree holding both names of several files exits 0;
#  - a writer holding the file open through one name makes a release through the
#    other refuse (the write lease is per inode), and nothing is lost;
#  - hsm status counts files (inodes), not names, also after the record's name is
#    deleted (the record moves to the surviving name) and after a restart.
. "$(dirname "$0")/lib.sh"
it_setup_root

mkvol vol ext4 256M
V="$T/vol"
hsmd_conf "$V"
hsmd_start || bail_out "hsmd did not start"

files_total() {
	hsm status --json | python3 -c '
import json, sys
o = json.loads(sys.stdin.readline())
print(sum(o["volumes"][0]["files"].values()))'
}
fid_of() { hsm state --json "$1" 2>/dev/null | json_get fid item; }

# ---- two names, archived and released from either
mkrand "$V/one" 1000000
ln "$V/one" "$V/two"
want=$(sha "$V/one")
ok 'wait_state "$V/two" resident' "both names are managed"
fid=$(fid_of "$V/one")
is "$(fid_of "$V/two")" "$fid" "both names have the same fid"
ok_cmd "archive through the first name" hsm archive "$V/one"
ok_cmd "archive through the second name: no error" hsm archive "$V/two"
is "$(state_of "$V/two")" archived "the second name is archived too"
ok_cmd "release through the second name" hsm release "$V/two"
is "$(blocks_of "$V/one")" 0 "the first name shows 0 blocks"
is "$(blocks_of "$V/two")" 0 "the second name shows 0 blocks"
is "$(state_of "$V/one")" stub "hsm state of the first name: stub"
is "$(state_of "$V/two")" stub "hsm state of the second name: stub"
is "$(fid_of "$V/one") $(fid_of "$V/two")" "$fid $fid" "still one fid"
is "$(sha "$V/one")" "$want" "a read through the other name recalls the right bytes"
is "$(state_of "$V/two")" archived "recalled through one name, archived under both"
ok_cmd "release through the first name" hsm release "$V/one"
is "$(blocks_of "$V/two")" 0 "released through the first name: 0 blocks"
is "$(sha "$V/two")" "$want" "and read back through the second"

# ---- both names in one command, and a tree with hard links
mkdir -p "$V/tree/x" "$V/tree/y"
for i in 1 2 3 4; do
	mkrand "$V/tree/x/f$i" 300000
	ln "$V/tree/x/f$i" "$V/tree/y/g$i"
	ln "$V/tree/x/f$i" "$V/tree/x/h$i"
done
mkrand "$V/tree/single" 300000
ok 'wait_state "$V/tree/x/h4" resident' "the tree's files are managed"
ok_cmd "archive of three names of one file in one command" \
	hsm archive "$V/tree/x/f1" "$V/tree/y/g1" "$V/tree/x/h1"
ok_cmd "hsm archive -r of the tree exits 0" hsm archive -r "$V/tree"
ok_cmd "hsm release -r of the tree exits 0" hsm release -r "$V/tree"
bad=""
for f in $(find "$V/tree" -type f); do
	[ "$(blocks_of "$f")" = 0 ] || bad="$bad $f:blocks"
	[ "$(state_of "$f")" = stub ] || bad="$bad $f:$(state_of "$f")"
done
is "$bad" "" "every name in the tree is a stub with 0 blocks"
is "$(sha "$V/tree/y/g3")" "$(sha "$V/tree/x/h3")" "two names read the same bytes"
is "$(state_of "$V/tree/x/f3")" archived "and the file is archived again"
# one, the tree's four linked files and its single one
is "$(files_total)" 6 "hsm status counts files, not names (6 files, 14 names)"

# ---- a writer through one name makes a release through the other refuse
timeout 10 cat "$V/one" >/dev/null
ok 'wait_state "$V/one" archived' "the file is archived and resident"
(exec 3>>"$V/one"; sleep 60) &
holder=$!
track "$holder"
held() {
	local fd
	for fd in /proc/"$holder"/fd/*; do
		[ "$(readlink "$fd" 2>/dev/null)" = "$V/one" ] && return 0
	done
	return 1
}
ok 'wait_for 5 held' "a writer holds the first name open"
out=$(hsm release "$V/two" 2>&1)
rc=$?
is "$rc" 1 "release through the second name is refused" "$out"
like "$out" "open or mapped" "because the file is open"
isnt "$(blocks_of "$V/two")" 0 "the data is still there"
kill "$holder"
wait "$holder" 2>/dev/null
ok_cmd "the writer gone, the release works" hsm release "$V/two"
is "$(sha "$V/two")" "$want" "nothing lost"

# ---- the record's name deleted: the file lives on under the other name
rm -f "$V/one"
# Change events are handled in order: once a file made after the delete is managed,
# the delete has been seen.
mkrand "$V/marker" 1000
ok 'wait_state "$V/marker" resident' "a file made after the delete is managed"
is "$(files_total)" 7 "deleting one name leaves the file counted (6 and the marker)"
is "$(fid_of "$V/two")" "$fid" "the surviving name keeps the fid"
ok_cmd "the surviving name can be released" hsm release "$V/two"
is "$(sha "$V/two")" "$want" "and read back"
rm -f "$V/tree/x/f2" "$V/tree/y/g2" "$V/tree/x/h2"
gone6() { [ "$(files_total)" = 6 ]; }
ok 'wait_for 5 gone6' "deleting every name of a file removes it" "$(files_total)"

# ---- a restart keeps one record per file and the fids
ok 'hsmd_stop' "hsmd stops"
ok 'hsmd_start' "hsmd starts again"
wait_scan
is "$(files_total)" 6 "after a restart: still one record per file"
is "$(fid_of "$V/two")" "$fid" "after a restart: the same fid"
is "$(fid_of "$V/tree/y/g4") $(fid_of "$V/tree/x/h4")" \
	"$(fid_of "$V/tree/x/f4") $(fid_of "$V/tree/x/f4")" "after a restart: links share a fid"
ok_cmd "after a restart: hsm release -r of the tree exits 0" hsm release -r "$V/tree"
tap_done
