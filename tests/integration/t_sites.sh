#!/bin/bash
# Three sites (a, b, c), each its own hsmd, volume and state in its own network
# namespace, joined over veth through a bridge, talking mutual TLS through delaying
# proxies (20 ms each way) on 100 Mbit/s links (tbf); one shared file:// object store;
# a fourth site d joins at the end. DESIGN §7 and issue "Sites":
#  - a file written at a appears at b and c as a stub, pushed by a (the peers'
#    long-polls woken by the change, by a's count); reading it at b
#    recalls it from a (the only holder: never archived) with identical bytes;
#  - with a stopped, c recalls it from b (the only other holder), never zeros;
#  - a stopped and the file never archived: a reader at c gets EIO (c gives up on its
#    own and counts the failed recall), and
#    reads work once a is back;
#  - rename, chmod, mkdir, symlink and delete at one site reach the others; a site
#    that was down catches up when it starts again;
#  - concurrent writes at a and b: exactly one conflict copy at every site, both
#    versions' bytes intact, and hsm conflicts lists it;
#  - a rename or a delete at one site racing a write at another: the write survives
#    everywhere (under the new name);
#  - hsm sites PATH prints the source order;
#  - a brand-new site d joining the volume gets the whole namespace as stubs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sites.sh"
it_setup_root

is_stub() { [ "$(site_state "$1" "$2")" = stub ]; }
reads_as() { [ "$(sha "$1")" = "$2" ]; }
exists() { [ -e "$1" ] || [ -L "$1" ]; }
gone() { ! [ -e "$1" ] && ! [ -L "$1" ]; }

: "${SITES_DELAY_MS:=20}"
export SITES_DELAY_MS
sites_init a b c d
sites_bw 100mbit
for s in a b c; do
	site_start "$s" || bail_out "site $s did not start"
done
A=$(site_vol a)
B=$(site_vol b)
C=$(site_vol c)
D=$(site_vol d)

# ---- a new file shows up everywhere as a stub and is recalled from its owner
mkrand "$T/one.orig" 3M
want=$(sha256sum <"$T/one.orig" | cut -d' ' -f1)
# Pushed, not picked up late: the peers' long-polls of a's feed are answered by the
# change itself (a counts them), which a stopwatch here cannot tell from a slow machine.
feed_wakeups() { site_hsm a metrics | awk '$1 == "hsm_sync_feed_wakeups_total" {print $2}'; }
w0=$(feed_wakeups)
cp "$T/one.orig" "$A/one"
ok 'wait_for 30 is_stub b "$B/one"' "a's new file is a stub at b" "$(site_state b "$B/one")"
ok 'wait_for 30 is_stub c "$C/one"' "a's new file is a stub at c" "$(site_state c "$C/one")"
w1=$(feed_wakeups)
ok '[ "${w1:-0}" -gt "${w0:-0}" ]' \
	"the change reached the peers by waking their long-polls at a (wakeups $w0 -> $w1)"
is "$(stat -c '%s %a %Y' "$B/one")" "$(stat -c '%s %a %Y' "$A/one")" \
	"the stub at b has a's size, mode and mtime"
is "$(stat -c %b "$B/one")" 0 "the stub at b holds no data"
like "$(site_hsm b sites "$B/one" 2>&1)" "1\\. +peer +a" "hsm sites at b lists the owner a first"
is "$(sha "$B/one")" "$want" "reading at b recalls a's bytes (never archived: only a has them)"
is "$(site_state b "$B/one")" resident "after the read the file is resident at b"
like "$(site_hsm b metrics)" "hsm_recalls_from_peers_total [1-9]" "b counts a recall from a peer"
like "$(site_hsm a metrics)" "hsm_peer_bytes_served_total [1-9][0-9]{6}" "a served the 3 MiB"

# ---- with the owner down, c recalls from b
site_stop a
is "$(sha "$C/one")" "$want" "a stopped: c recalls the file from b"
site_start a || bail_out "site a did not restart"

# ---- never archived, owner down: EIO, bounded in time; then it works
mkrand "$T/two.orig" 1M
cp "$T/two.orig" "$A/two"
ok 'wait_for 5 is_stub c "$C/two"' "a second file is a stub at c"
site_stop a
failed() { site_hsm c metrics | awk '$1 == "hsm_recalls_failed_total" {print $2}'; }
f0=$(failed)
VT=60 vt cat "$C/two" >/dev/null 2>"$T/two.err"
rc=$?
# EIO (not vt's 124) is c giving up on its own, not the read being killed.
ok '[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "Input/output error" "$T/two.err"' \
	"a down, not archived: the read at c fails with EIO" "rc=$rc $(cat "$T/two.err")"
ok '[ "$(failed)" -gt "${f0:-0}" ]' "and c counts the recall as failed (it gave up, not hung)"
is "$(site_state c "$C/two")" stub "the file is still a stub at c"
site_start a || bail_out "site a did not restart"
ok 'wait_for 20 reads_as "$C/two" "$(sha256sum <"$T/two.orig" | cut -d" " -f1)"' \
	"a back: the read at c returns the data"

# ---- rename, chmod, mkdir, symlink, delete
mkdir -p "$A/dir/sub"
echo hello >"$A/dir/sub/f"
ok 'wait_for 5 exists "$B/dir/sub/f"' "a file in new directories reaches b"
mv "$A/dir/sub/f" "$A/dir/g"
ok 'wait_for 5 exists "$B/dir/g" && gone "$B/dir/sub/f"' "a rename at a reaches b"
ok 'wait_for 5 exists "$C/dir/g" && gone "$C/dir/sub/f"' "a rename at a reaches c"
chmod 600 "$A/dir/g"
mode_is() { [ "$(stat -c %a "$1" 2>/dev/null)" = "$2" ]; }
ok 'wait_for 5 mode_is "$B/dir/g" 600' "a chmod at a reaches b"
cat "$B/dir/g" >/dev/null
touch -d '2021-02-03 04:05:06' "$A/dir/g"
mtime_is() { [ "$(stat -c %Y "$1" 2>/dev/null)" = "$2" ]; }
ok 'wait_for 5 mtime_is "$B/dir/g" "$(stat -c %Y "$A/dir/g")"' "a touch (atime and mtime) at a reaches b"
is "$(site_state b "$B/dir/g")" resident "a touch is not a new version: b's copy stays resident"
ln -s dir/g "$A/link"
link_is() { [ "$(readlink "$1" 2>/dev/null)" = "$2" ]; }
ok 'wait_for 5 link_is "$B/link" dir/g' "a symlink at a reaches b"
mkdir "$A/empty"
ok 'wait_for 5 test -d "$C/empty"' "an empty directory made at a reaches c"
rm "$B/dir/g"
ok 'wait_for 5 gone "$A/dir/g"' "a delete at b reaches a"
ok 'wait_for 5 gone "$C/dir/g"' "a delete at b reaches c"
rmdir "$A/empty"
ok 'wait_for 5 gone "$C/empty"' "an rmdir at a reaches c"

# ---- a site that was down catches up
site_stop c
echo late >"$A/late"
mv "$A/two" "$A/two-renamed"
rm -f "$A/one"
site_start c || bail_out "site c did not restart"
ok 'wait_for 10 exists "$C/late"' "c, down meanwhile, gets the new file"
ok 'wait_for 10 exists "$C/two-renamed" && gone "$C/two"' "c gets the rename"
ok 'wait_for 10 gone "$C/one"' "c gets the delete"
is "$(cat "$C/late" 2>&1)" late "and reads the new file"

# ---- concurrent writes at a and b
echo base >"$A/doc.txt"
ok 'wait_for 5 exists "$B/doc.txt"' "doc.txt reaches b"
cat "$B/doc.txt" >/dev/null
site_isolate b
echo "version of a" >"$A/doc.txt"
sleep 1.1 # b's write is the later one: b keeps the name
echo "version of b" >"$B/doc.txt"
site_reconnect b
conflicts_at() { ls "$1" | grep -c '^doc\.conflict-.*\.txt$'; }
one_conflict() { [ "$(conflicts_at "$1")" = 1 ]; }
for s in a b c; do
	v=$(site_vol "$s")
	ok 'wait_for 40 one_conflict "$v"' "exactly one conflict copy at $s" \
		"$(ls "$v")"
	is "$(cat "$v/doc.txt" 2>&1)" "version of b" "at $s doc.txt holds the later write (b's)"
	is "$(cat "$v"/doc.conflict-a-*.txt 2>&1)" "version of a" \
		"at $s the conflict copy holds a's version"
done
sleep 2
for s in a b c; do
	is "$(conflicts_at "$(site_vol "$s")")" 1 "still exactly one conflict copy at $s"
done
like "$(site_hsm c conflicts 2>&1)" "doc\\.conflict-a-.*\\.txt" "hsm conflicts at c lists it"

# ---- a rename and a delete racing writes: the writes survive
echo "first" >"$A/ren.txt"
echo "first" >"$A/del.txt"
ok 'wait_for 5 exists "$B/ren.txt" && wait_for 5 exists "$B/del.txt"' "ren.txt and del.txt reach b"
cat "$B/ren.txt" "$B/del.txt" >/dev/null
site_isolate b
mv "$A/ren.txt" "$A/renamed.txt"
rm "$A/del.txt"
echo "written at b" >"$B/ren.txt"
echo "written at b" >"$B/del.txt"
site_reconnect b
for s in a b c; do
	v=$(site_vol "$s")
	ok 'wait_for 40 reads_as "$v/renamed.txt" "$(echo "written at b" | sha256sum | cut -d" " -f1)"' \
		"at $s the file renamed at a holds b's write, under a's new name" "$(ls "$v")"
	ok 'gone "$v/ren.txt"' "at $s the old name is gone"
	ok 'wait_for 40 reads_as "$v/del.txt" "$(echo "written at b" | sha256sum | cut -d" " -f1)"' \
		"at $s the file deleted at a survives with b's write"
done

# ---- the writer of the losing version hears of the conflict from a third site, the
# winner first and the copy later: its data must still become the copy
echo base2 >"$A/doc2.txt"
ok 'wait_for 5 exists "$B/doc2.txt" && wait_for 5 exists "$C/doc2.txt"' "doc2.txt reaches b and c"
cat "$B/doc2.txt" >/dev/null
site_isolate b
echo "a's doc2" >"$A/doc2.txt"
c_has_a_version() { [ "$(site_hsm c state --json "$C/doc2.txt" | json_get owner item)" = a ] &&
	[ "$(site_hsm c state --json "$C/doc2.txt" | json_get version item)" != 1 ]; }
ok 'wait_for 10 c_has_a_version' "c has a's new version of doc2.txt"
site_isolate a
sleep 1.1
echo "b's doc2" >"$B/doc2.txt"
site_reconnect b
conflict2() { ls "$1" | grep -c '^doc2\.conflict-a-.*\.txt$'; }
one_conflict2() { [ "$(conflict2 "$1")" = 1 ]; }
ok 'wait_for 40 one_conflict2 "$C"' "c made the conflict copy of a's version"
chmod 600 "$C"/doc2.conflict-a-*.txt # c republishes the copy after the winner
sleep 1
site_stop b
site_reconnect a
ok 'wait_for 40 one_conflict2 "$A"' "a, hearing only from c, has the conflict copy too"
is "$(cat "$A"/doc2.conflict-a-*.txt 2>&1)" "a's doc2" "a kept its own data as the conflict copy"
is "$(site_state a "$A/doc2.txt")" stub "a's doc2.txt is a stub of b's version (b is down)"
site_start b || bail_out "site b did not restart"
is "$(cat "$C"/doc2.conflict-a-*.txt 2>&1)" "a's doc2" "c reads a's version from a"
is "$(cat "$A/doc2.txt" 2>&1)" "b's doc2" "and a reads b's version once b is back"

# ---- a new site joins and gets the whole namespace
site_start d || bail_out "site d did not start"
listing() { (cd "$1" && find . -path ./lost+found -prune -o -print | sort); }
ns_same() { [ "$(listing "$A")" = "$(listing "$D")" ]; }
ok 'wait_for 30 ns_same' "the new site d has a's whole namespace" \
	"$(diff <(listing "$A") <(listing "$D") | head -10)"
is "$(site_state d "$D/late")" stub "files are stubs at d"
is "$(cat "$D/late" 2>&1)" late "and read right at d"

tap_done
