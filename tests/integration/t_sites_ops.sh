#!/bin/bash
# Namespace operations that editors and users do all day, at one of three sites, leave
# the same namespace at all three (issue "Sites converge"):
#  - a rename over an existing file (save through a temp file: vim, LibreOffice, sed -i,
#    rsync) is a replace: the replaced file is gone everywhere, no conflict copy, no
#    entry that reads EIO; also when the moved file is the older one;
#  - a backup-and-rewrite save (mv f f~; write f; rm f~);
#  - a rename of a non-empty directory (subdirectories, files, symlinks) moves the whole
#    tree everywhere and leaves nothing under the old name; a file made at a site cut
#    off meanwhile under the old name follows it to the new one;
#  - an O_TRUNC overwrite of a stub whose only source is down succeeds (it needs none
#    of the old bytes) and replaces that version everywhere;
#  - a restart of a site changes no file's metadata (never-read stubs keep their mtime)
#    and reports no interrupted recall where there was none.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sites.sh"
it_setup_root

sites_init a b c
for s in a b c; do
	site_start "$s" || bail_out "site $s did not start"
done
A=$(site_vol a)
B=$(site_vol b)
C=$(site_vol c)

# tree_of DIR: every entry with its type, size, mode and (files and directories) mtime
tree_of() {
	(cd "$1" && find . -mindepth 1 -path ./lost+found -prune -o \( -type d -printf '%P %y %m %T@\n' \) -o \
		\( -type l -printf '%P %y %l\n' \) -o -printf '%P %y %s %m %T@\n') | sort
}
same_as_a() { [ "$(tree_of "$1")" = "$(tree_of "$A")" ]; }
converged() { same_as_a "$B" && same_as_a "$C"; }
conflicts_at() { find "$1" -name '*.conflict-*' | wc -l; }
reads_as() { [ "$(vt cat "$1" 2>/dev/null)" = "$2" ]; }
# everything_reads DIR: every file of DIR reads without an error
everything_reads() {
	local f bad=""
	while IFS= read -r f; do
		vt cat "$f" >/dev/null 2>&1 || bad="$bad ${f#"$1"/}"
	done < <(find "$1" -type f)
	[ -z "$bad" ] || { echo "unreadable:$bad"; return 1; }
}
wait_converged() {
	wait_for 60 converged || {
		diff <(tree_of "$A") <(tree_of "$B") | head -20 | sed 's/^/# a|b /'
		diff <(tree_of "$A") <(tree_of "$C") | head -20 | sed 's/^/# a|c /'
		return 1
	}
}

# ---- rename over a file: the moved one is the older
echo "x content" >"$A/x"
sleep 1.1
echo "y content" >"$A/y"
ok 'wait_converged' "two files reach b and c"
mv "$A/x" "$A/y"
ok 'wait_converged' "mv x y (x older): the sites converge"
for s in b c; do
	v=$(site_vol "$s")
	ok 'reads_as "$v/y" "x content"' "$s: y holds x's bytes"
	ok '[ ! -e "$v/x" ]' "$s: x is gone"
	is "$(conflicts_at "$v")" 0 "$s: no conflict copy"
done

# ---- rename over a file: the moved one is the newer (a save through a temp file)
echo "old text" >"$A/doc.txt"
ok 'wait_converged' "doc.txt reaches b and c"
for s in b c; do vt cat "$(site_vol "$s")/doc.txt" >/dev/null; done
printf 'new text\n' >"$A/.doc.txt.swp"
mv "$A/.doc.txt.swp" "$A/doc.txt"
ok 'wait_converged' "save through a temp file: the sites converge"
for s in b c; do
	v=$(site_vol "$s")
	ok 'reads_as "$v/doc.txt" "new text"' "$s: doc.txt holds the saved text (it was resident there)"
	is "$(conflicts_at "$v")" 0 "$s: no conflict copy"
done
# the same with sed -i, five saves in a row
for i in 1 2 3 4 5; do sed -i "s/.*/edit $i/" "$A/doc.txt"; done
ok 'wait_converged' "five sed -i saves: the sites converge"
for s in b c; do
	ok 'reads_as "$(site_vol "$s")/doc.txt" "edit 5"' "$s: doc.txt holds the last edit"
done

# ---- backup and rewrite
echo "first" >"$A/notes"
ok 'wait_converged' "notes reaches b and c"
mv "$A/notes" "$A/notes~"
echo "second" >"$A/notes"
rm "$A/notes~"
ok 'wait_converged' "backup-and-rewrite save: the sites converge"
for s in b c; do
	ok 'reads_as "$(site_vol "$s")/notes" "second"' "$s: notes holds the rewrite"
done

# ---- rename of a non-empty directory
mkdir -p "$A/d/sub/deeper" "$A/d/empty"
echo "f" >"$A/d/f"
echo "g" >"$A/d/sub/g"
ln -s ../f "$A/d/sub/link"
ok 'wait_converged' "a tree reaches b and c"
mv "$A/d" "$A/d2"
ok 'wait_converged' "mv d d2: the sites converge"
for s in b c; do
	v=$(site_vol "$s")
	ok '[ ! -e "$v/d" ]' "$s: nothing is left under the old name"
	ok 'reads_as "$v/d2/sub/g" g' "$s: a file deep in the tree reads under the new name"
	is "$(readlink "$v/d2/sub/link")" "../f" "$s: the symlink moved too"
	ok '[ -d "$v/d2/sub/deeper" ] && [ -d "$v/d2/empty" ]' "$s: the empty directories moved too"
done
mv "$A/d2/sub" "$A/sub-top"
ok 'wait_converged' "mv d2/sub sub-top (a subdirectory out of its tree): the sites converge"

# ---- files, directories and symlinks made at a partitioned site inside a directory
# ---- renamed meanwhile elsewhere
mkdir -p "$A/top/dir/sub"
echo "a1" >"$A/top/dir/sub/a1"
ok 'wait_converged' "top/dir/sub reaches b and c"
site_isolate b
mv "$A/top/dir" "$A/moved"
echo "made at b" >"$B/top/dir/sub/newfile"
mkdir "$B/top/dir/sub/newdir" "$B/top/dir/newtop"
echo "inner at b" >"$B/top/dir/sub/newdir/inner"
ln -s ../newfile "$B/top/dir/sub/newdir/newlink"
ok 'wait_for 60 reads_as "$C/moved/sub/a1" a1' "c gets a's directory rename while b is cut off"
site_reconnect b
ok 'wait_converged' "b back: the sites converge"
for s in a b c; do
	v=$(site_vol "$s")
	ok 'reads_as "$v/moved/sub/newfile" "made at b"' "$s: b's new file followed the rename"
	ok '[ -d "$v/moved/sub/newdir" ] && [ -d "$v/moved/newtop" ]' \
		"$s: so did b's new directories"
	ok 'reads_as "$v/moved/sub/newdir/inner" "inner at b"' "$s: and the file in one"
	is "$(readlink "$v/moved/sub/newdir/newlink" 2>&1)" "../newfile" \
		"$s: and b's new symlink"
	ok '[ ! -e "$v/top/dir" ]' "$s: the old directory does not come back"
done

for s in a b c; do
	v=$(site_vol "$s")
	ok 'everything_reads "$v"' "$s: every file reads"
	is "$(site_hsm "$s" conflicts 2>/dev/null | grep -c conflict-)" 0 "$s: hsm conflicts lists none"
done

# ---- an overwrite of a stub whose only source is down needs none of its bytes
echo "only at a" >"$A/lonely"
echo "only at a too" >"$A/lonely2"
ok 'wait_converged' "lonely files reach b and c"
ok 'site_stop a' "a stops (the files were never archived: a is their only source)"
ok '! vt cat "$B/lonely" >/dev/null 2>&1' "b: reading the stub fails (EIO), never zeros"
ok 'vsh "echo replaced at b >\"\$1\"" "$B/lonely"' "b: echo > stub succeeds all the same"
ok 'reads_as "$B/lonely" "replaced at b"' "b: the file holds the new bytes"
ok 'vt cp "$B/lonely" "$B/lonely2"' "b: cp over the other stub succeeds"
ok 'site_start a' "a starts again"
ok 'wait_converged' "the sites converge"
ok 'reads_as "$A/lonely" "replaced at b"' "a: b's overwrite replaced its version"
ok 'reads_as "$C/lonely2" "replaced at b"' "c: so did the cp"
is "$(conflicts_at "$A")" 0 "a: no conflict copy (b's write saw a's version)"

# ---- a restart changes no metadata
echo "never read at b" >"$A/cold"
ok 'wait_converged' "cold reaches b"
before=$(tree_of "$B")
n0=$(grep -c "cleaned up an interrupted recall" "$(site_log b)")
ok 'site_stop b' "b stops"
ok 'site_start b' "b starts again"
ok 'wait_for 30 site_hsm b status' "b answers"
is "$(tree_of "$B")" "$before" "after a restart every entry at b has the same metadata"
is "$(grep -c "cleaned up an interrupted recall" "$(site_log b)")" "$n0" \
	"no interrupted recall reported where there was none"
ok 'reads_as "$B/cold" "never read at b"' "the never-read stub reads"
tap_done
