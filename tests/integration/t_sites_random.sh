#!/bin/bash
# Randomized convergence (issue "Sites converge"): three sites, random namespace
# operations at all three at once (create, overwrite, append, truncate, rename onto a
# new name and over an existing file, rename of a non-empty directory, delete, mkdir,
# rmdir, symlink, chmod, utimes), with a partition of one site and a restart of
# another thrown in, every successful write logged. Then quiesce and check that
#  - the namespaces are identical at every site (paths, types, sizes, modes, mtimes,
#    symlink targets) and every file's content is the same at every site;
#  - every file reads at every site (no EIO) and holds bytes some logged write wrote;
#  - no conflict copy nests another conflict suffix, and every conflict copy is explained
#    by concurrency: a first phase of SETTLED operations, each let reach every site
#    before the next, makes none at all; later, a copy holds the losing version of the
#    site its name says (the writer of its last line).
# SEED (default fixed, printed) and OPS pick the run: a failure replays with the same
# SEED. bench/soak-sites runs it longer with random seeds.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/sites.sh"
it_setup_root

SEED=${SEED:-20261204}
OPS=${OPS:-240}
SETTLED=${SETTLED:-30}
RANDOM=$SEED
tap_diag "seed $SEED, $SETTLED settled then $OPS concurrent operations (replay: SEED=$SEED OPS=$OPS SETTLED=$SETTLED $0)"

sites_init a b c
for s in a b c; do
	site_start "$s" || bail_out "site $s did not start"
done
declare -A VOL
for s in a b c; do VOL[$s]=$(site_vol "$s"); done
WLOG="$T/writes.log"
: >"$WLOG"

tree_of() {
	(cd "$1" && find . -mindepth 1 -path ./lost+found -prune -o \
		\( -type d -printf '%P %y %m %T@\n' \) -o \( -type l -printf '%P %y %l\n' \) -o \
		-printf '%P %y %s %m %T@\n') | sort
}
converged() {
	local ta
	ta=$(tree_of "${VOL[a]}")
	[ "$(tree_of "${VOL[b]}")" = "$ta" ] && [ "$(tree_of "${VOL[c]}")" = "$ta" ]
}

# pick ARRAY...: one of the arguments at random
pick() { local n=$#; shift $((RANDOM % n)); echo "$1"; }
# a random existing entry of TYPE (f, d, l) under a site's volume, relative, or empty
some() {
	local v=$1 type=$2
	(cd "$v" && find . -mindepth 1 -path ./lost+found -prune -o -type "$type" -printf '%P\n' |
		grep -v conflict | sort | sed -n "$((RANDOM % 40 + 1))p")
}
newname() { echo "$(pick d0 d1 d2 d0/s d1/s "")/$(pick f g h k m n)$((RANDOM % 6))" | sed 's|^/||'; }

seq=0
# write SITE REL MODE: writes a unique line (logged) with > (O_TRUNC) or >> (append)
write() {
	local v=${VOL[$1]} rel=$2 mode=$3 text
	seq=$((seq + 1))
	text="w$seq-$1"
	mkdir -p "$(dirname "$v/$rel")" 2>/dev/null
	if [ "$mode" = append ]; then
		vsh 'echo "$2" >>"$1"' "$v/$rel" "$text" 2>/dev/null
	else
		vsh 'echo "$2" >"$1"' "$v/$rel" "$text" 2>/dev/null
	fi && echo "$text" >>"$WLOG"
}

one_op() {
	local s=$1 v=${VOL[$1]} op f g d
	op=$(pick create create write append rename rename_over dir_rename delete mkdir rmdir \
		symlink chmod touch truncate)
	case $op in
	create) write "$s" "$(newname)" trunc ;;
	write) f=$(some "$v" f) && [ -n "$f" ] && write "$s" "$f" trunc ;;
	append) f=$(some "$v" f) && [ -n "$f" ] && write "$s" "$f" append ;;
	rename)
		f=$(some "$v" f) && [ -n "$f" ] && g=$(newname) && [ ! -e "$v/$g" ] &&
			mkdir -p "$(dirname "$v/$g")" && mv -n "$v/$f" "$v/$g" 2>/dev/null ;;
	rename_over)
		f=$(some "$v" f) && g=$(some "$v" f) && [ -n "$f" ] && [ -n "$g" ] &&
			[ "$f" != "$g" ] && mv -f "$v/$f" "$v/$g" 2>/dev/null ;;
	dir_rename)
		d=$(some "$v" d) && [ -n "$d" ] && g="$(pick d0 d1 d2 r)$((RANDOM % 3))" &&
			[ ! -e "$v/$g" ] && case "$g/" in "$d/"*) false ;; *) true ;; esac &&
			mv -n "$v/$d" "$v/$g" 2>/dev/null ;;
	delete) f=$(some "$v" f) && [ -n "$f" ] && rm -f "$v/$f" ;;
	mkdir) mkdir -p "$v/$(pick d0 d1 d2)/$(pick s t u)" 2>/dev/null ;;
	rmdir) d=$(some "$v" d) && [ -n "$d" ] && rmdir "$v/$d" 2>/dev/null ;;
	symlink)
		g=$(newname).ln && mkdir -p "$(dirname "$v/$g")" 2>/dev/null &&
			ln -s "target$((RANDOM % 3))" "$v/$g" 2>/dev/null ;;
	chmod) f=$(some "$v" f) && [ -n "$f" ] && chmod "$(pick 600 640 644 664)" "$v/$f" ;;
	touch) f=$(some "$v" f) && [ -n "$f" ] && touch -d "@$((1700000000 + RANDOM))" "$v/$f" ;;
	truncate) f=$(some "$v" f) && [ -n "$f" ] && vt truncate -s 0 "$v/$f" ;;
	esac
	return 0
}

# Each operation seen everywhere before the next: nothing is concurrent, so nothing may
# become a conflict copy.
unsettled=""
for ((i = 1; i <= SETTLED; i++)); do
	one_op "$(pick a b c)"
	wait_for 60 converged || unsettled="$unsettled $i"
done
is "$unsettled" "" "settled phase: every operation reached every site before the next"
is "$(cd "${VOL[a]}" && find . -name '*.conflict-*' | head -5)" "" \
	"settled phase: no conflict copy (none of its changes was concurrent)"

# Right before c comes back, the same files overwritten on both sides of the partition
# (an overwrite needs no bytes from across it):
# each must give one conflict copy, written at the site its name says.
# (in this shell, not a subshell: write numbers the logged lines)
both_sides() {
	local f
	while IFS= read -r f && [ "$concurrent" -lt 3 ]; do
		[ -f "${VOL[c]}/$f" ] || continue
		write a "$f" trunc && write c "$f" trunc && concurrent=$((concurrent + 1))
	done < <(cd "${VOL[a]}" && find . -path ./lost+found -prune -o -type f -printf '%P\n' |
		grep -v conflict | sort)
}
concurrent=0
start=$(date +%s.%N)
done_ops=0
for ((i = 1; i <= OPS; i++)); do
	case $i in
	$((OPS / 4))) site_isolate c ;;
	$((OPS / 2))) both_sides; site_reconnect c ;;
	$((OPS * 2 / 3))) site_stop b ;;
	$((OPS * 3 / 4))) site_start b >/dev/null || tap_diag "b did not start again" ;;
	esac
	s=$(pick a b c)
	[ $i -ge $((OPS * 2 / 3)) ] && [ $i -lt $((OPS * 3 / 4)) ] && [ "$s" = b ] && s=a
	one_op "$s"
	done_ops=$((done_ops + 1))
done
end=$(date +%s.%N)
tap_diag "$done_ops operations in $(echo "$end - $start" | bc) s"

ok 'wait_for 240 converged' "the namespaces converge" \
	"$(diff <(tree_of "${VOL[a]}") <(tree_of "${VOL[b]}") | head -20)" \
	"$(diff <(tree_of "${VOL[a]}") <(tree_of "${VOL[c]}") | head -20)"
tap_diag "converged $(echo "$(date +%s.%N) - $end" | bc) s after the last operation"

entries=$(tree_of "${VOL[a]}" | wc -l)
ok '[ "$entries" -ge 10 ]' "the workload left a real tree ($entries entries)"
bad_read="" bad_content="" differ=""
while IFS= read -r f; do
	ca=$(vt cat "${VOL[a]}/$f" 2>/dev/null) || { bad_read="$bad_read a:$f"; continue; }
	for s in b c; do
		cs=$(vt cat "${VOL[$s]}/$f" 2>/dev/null) || { bad_read="$bad_read $s:$f"; continue; }
		[ "$cs" = "$ca" ] || differ="$differ $s:$f"
	done
	# every line is a logged write (an append adds one); empty after a truncate
	while IFS= read -r line; do
		[ -z "$line" ] || grep -qxF -- "$line" "$WLOG" || bad_content="$bad_content $f"
	done <<<"$ca"
done < <(cd "${VOL[a]}" && find . -path ./lost+found -prune -o -type f -printf '%P\n')
is "$bad_read" "" "every file reads at every site"
is "$differ" "" "every file holds the same bytes at every site"
is "$bad_content" "" "every file holds bytes a logged write wrote"
is "$(cd "${VOL[a]}" && find . -name '*.conflict-*.conflict-*' | head -3)" "" \
	"no conflict copy nests another conflict suffix"
# A conflict copy holds the losing version: its last line was written at the site its
# name gives (an empty one was truncated there, which the name cannot be checked by).
unexplained=""
while IFS= read -r f; do
	owner=${f##*.conflict-}
	owner=${owner%%-*}
	last=$(vt tail -n 1 "${VOL[a]}/$f" 2>/dev/null)
	[ -z "$last" ] || [ "${last##*-}" = "$owner" ] || unexplained="$unexplained $f($last)"
done < <(cd "${VOL[a]}" && find . -name '*.conflict-*' -type f -printf '%P\n')
is "$unexplained" "" "every conflict copy holds a version written at the site it names"
copies=$(cd "${VOL[a]}" && find . -name '*.conflict-*' -type f | wc -l)
ok '[ "$concurrent" -gt 0 ] && [ "$copies" -ge "$concurrent" ]' \
	"the $concurrent files written on both sides of the partition made conflict copies ($copies)"
tap_diag "$(find "${VOL[a]}" -name '*.conflict-*' | wc -l) conflict copies, $(wc -l <"$WLOG") logged writes"
tap_done
