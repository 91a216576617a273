#!/bin/bash
# Copies that carry trusted.hsm (cp -a, rsync -X, restores from backups) bring their
# original's fid along. hsmd must give such a copy a fresh fid of its own before a
# release, recall or namespace note can mix the two files up: both keep their own
# bytes, in both orders (copy changed then original released, original changed then
# copy released), also after a restart with a rebuilt catalog. A restore (the original
# gone, its copy put back) is the same file and keeps its fid. A copy whose record says
# stub but which holds real data is never punched.
. "$(dirname "$0")/lib.sh"
it_setup_root

fid_of() { hsm state --json "$1" 2>/dev/null | json_get fid item; }
ver_of() { hsm state --json "$1" 2>/dev/null | json_get version item; }
# xhex FILE: FILE's record in hex, read by path (no open, so no recall)
xhex() {
	getfattr --absolute-names -n trusted.hsm -e hex -- "$1" 2>/dev/null |
		sed -n 's/^trusted.hsm=0x//p'
}
# xstate FILE: the state byte of the record (1 resident, 2 archived, 3 stub)
xstate() { local h; h=$(xhex "$1"); [ -n "$h" ] && echo $((16#${h:2:2})); }
xfid() { local h; h=$(xhex "$1"); echo "${h:6:32}"; }
# fid_differs A B: both files have a fid and they differ (hsmd renamed one)
fid_differs() {
	local a b
	a=$(xfid "$1")
	b=$(xfid "$2")
	[ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ]
}

mkvol vol ext4 512M
V="$T/vol"
hsmd_conf "$V"
ok 'hsmd_start' "hsmd starts" || bail_out "no daemon"

# 1. The issue's case: archive, cp -a, change the copy, release the original.
mkrand "$V/a" 300000
sa=$(sha "$V/a")
ok_cmd "archive a" hsm archive "$V/a"
fa=$(fid_of "$V/a")
vt cp -a "$V/a" "$V/a.copy"
ok 'wait_for 10 grep -q "a.copy carries the fid of v/a " "$HSMD_LOG"' "cp -a carried the original's fid, and hsmd saw it"
vsh 'echo x >>"$1"' "$V/a.copy"
sc=$(sha "$V/a.copy")
ok 'wait_for 10 fid_differs "$V/a" "$V/a.copy"' "the copy gets a fid of its own"
ok_cmd "release of the original" hsm release "$V/a"
is "$(fid_of "$V/a")" "$fa" "the original keeps its fid"
is "$(stub_check "$V/a")" stub "the original is a stub"
is "$(sha "$V/a")" "$sa" "the original reads back its own bytes"
is "$(sha "$V/a.copy")" "$sc" "the copy keeps its own bytes"

# 2. The other order: the original changed, then the copy released.
mkrand "$V/b" 300000
ok_cmd "archive b" hsm archive "$V/b"
fb=$(fid_of "$V/b")
vt cp -a "$V/b" "$V/b.copy"
sbc=$(sha "$V/b.copy")
vsh 'echo y >>"$1"' "$V/b"
sb=$(sha "$V/b")
ok 'wait_for 10 fid_differs "$V/b" "$V/b.copy"' "b: the copy gets a fid of its own"
hsm release "$V/b.copy" >/dev/null 2>&1
is "$(sha "$V/b.copy")" "$sbc" "b: the copy keeps its bytes (released or refused)"
ok_cmd "b: archive and release of the copy" archive_release "$V/b.copy"
is "$(sha "$V/b.copy")" "$sbc" "b: the released copy reads back its own bytes"
is "$(fid_of "$V/b")" "$fb" "b: the original keeps its fid"
is "$(sha "$V/b")" "$sb" "b: the original keeps its changed bytes"

# 3. A release asked for before hsmd saw the copy's events: the copy is checked then.
mkrand "$V/c" 300000
ok_cmd "archive c" hsm archive "$V/c"
vt cp -a "$V/c" "$V/c.copy" && hsm release "$V/c.copy" >"$T/c.out" 2>&1
vsh 'echo z >>"$1"' "$V/c"
sc2=$(sha "$V/c")
ok_cmd "c: archive and release of the original" archive_release "$V/c"
is "$(sha "$V/c")" "$sc2" "c: the original reads back its changed bytes"
ok 'fid_differs "$V/c" "$V/c.copy"' "c: the two have different fids"

# 4. cp -a of a stub (the read recalls it first) and of a resident file.
mkrand "$V/d" 300000
sd=$(sha "$V/d")
ok_cmd "d: archive and release" archive_release "$V/d"
vt cp -a "$V/d" "$V/d.copy"
ok 'wait_for 10 fid_differs "$V/d" "$V/d.copy"' "d: the copy of a stub gets a fid of its own"
vsh 'echo w >>"$1"' "$V/d.copy"
sdc=$(sha "$V/d.copy")
ok_cmd "d: release of the original again" hsm release "$V/d"
is "$(sha "$V/d")" "$sd" "d: the original reads back"
is "$(sha "$V/d.copy")" "$sdc" "d: the copy keeps its bytes"
mkrand "$V/e" 100000
wait_for 10 test -n "$(xfid "$V/e")"
vt cp -a "$V/e" "$V/e.copy"
ok 'wait_for 10 fid_differs "$V/e" "$V/e.copy"' "e: a copy of a resident file gets a fid of its own"

# 5. rsync -X of a stub: rsync reads the xattrs before the data, so the copy says stub
# but holds the data.
mkrand "$V/f" 300000
sf=$(sha "$V/f")
ok_cmd "f: archive and release" archive_release "$V/f"
vt rsync -X "$V/f" "$V/f.copy"
ok 'wait_for 10 fid_differs "$V/f" "$V/f.copy"' "f: the rsync -X copy gets a fid of its own"
isnt "$(xstate "$V/f.copy")" 3 "f: the copy is not a stub (it has its data)"
ok '[ "$(blocks_of "$V/f.copy")" -gt 0 ]' "f: the copy's data blocks are kept"
is "$(sha "$V/f.copy")" "$sf" "f: the copy reads its bytes"

# 6. A stub-state record on real data, written after the data (a copy tool's order),
# with the original alive: never punched, never recalled over.
mkrand "$V/g" 300000
ok_cmd "g: archive and release" archive_release "$V/g"
mkrand "$T/g.data" 300000
sg=$(sha "$T/g.data")
vt python3 -c '
import os, sys
rec = os.getxattr(sys.argv[1], "trusted.hsm")
data = open(sys.argv[3], "rb").read()
with open(sys.argv[2], "wb") as f:
    f.write(data)
    f.flush()
    os.setxattr(f.fileno(), "trusted.hsm", rec)
' "$V/g" "$V/g.copy" "$T/g.data"
ok 'wait_for 10 fid_differs "$V/g" "$V/g.copy"' "g: the copy gets a fid of its own"
is "$(sha "$V/g.copy")" "$sg" "g: the copy keeps its own bytes"

# 7. A restore: the original moved away off the volume, its copy put back with cp -a.
mkrand "$V/h" 300000
sh_=$(sha "$V/h")
ok_cmd "h: archive" hsm archive "$V/h"
fh=$(fid_of "$V/h")
vt cp -a "$V/h" "$T/h.bak"
rm -f "$V/h"
vt cp -a "$T/h.bak" "$V/h"
sleep 1
is "$(xfid "$V/h")" "$fh" "h: the restored file keeps its fid"
# cp writes the data before the record: when hsmd handles that write after the record
# is there, it takes it for a change and the restore is archived again (same chunks).
ok_cmd "h: release of the restored file" archive_release "$V/h"
is "$(sha "$V/h")" "$sh_" "h: it reads back"

# 8. Restart with a rebuilt catalog: copies made while hsmd was down are told apart too.
mkrand "$V/i" 300000
si=$(sha "$V/i")
ok_cmd "i: archive" hsm archive "$V/i"
fi_=$(fid_of "$V/i")
hsmd_stop
vt cp -a "$V/i" "$V/i.copy"
vsh 'echo q >>"$1"' "$V/i.copy"
sic=$(sha "$V/i.copy")
rm -rf "$T/state"
ok 'hsmd_start' "hsmd restarts with an empty catalog"
wait_scan
ok 'fid_differs "$V/i" "$V/i.copy"' "i: after the rebuild the two have different fids"
hsm release "$V/i" >/dev/null 2>&1
hsm release "$V/i.copy" >/dev/null 2>&1
is "$(sha "$V/i")" "$si" "i: the original reads its bytes"
is "$(sha "$V/i.copy")" "$sic" "i: the copy reads its bytes"
ok_cmd "i: archive and release both" archive_release "$V/i" "$V/i.copy"
is "$(sha "$V/i")" "$si" "i: the original reads back after release"
is "$(sha "$V/i.copy")" "$sic" "i: the copy reads back after release"
ok '[ "$(fid_of "$V/i")" = "$fi_" ] || [ "$(fid_of "$V/i.copy")" = "$fi_" ]' "i: one of them kept the fid"

# 9. Hard links are one file: they keep one fid.
mkrand "$V/j" 100000
ok_cmd "j: archive" hsm archive "$V/j"
ln "$V/j" "$V/j.link"
sleep 1
is "$(xfid "$V/j.link")" "$(xfid "$V/j")" "j: a hard link keeps the fid"
ok_cmd "j: release through one name" hsm release "$V/j"
is "$(sha "$V/j.link")" "$(sha "$V/j")" "j: both names read the same"

hsmd_stop
tap_done
